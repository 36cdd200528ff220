"""`SwinXSegPlanner`: nnU-Net plans `nnUNetPlansSwinXSeg` for the Swin-X Seg network (FLARE 2023).

The paper's preprocessing, expressed with stock nnU-Net classes only so that `nnUNetv2_preprocess`,
`nnUNetv2_train` and `nnUNetv2_predict` reproduce it without our code:

- 1.0 mm isotropic spacing, one `3d_fullres` configuration with 96x96x96 patches;
- CT window [-250, 250] HU scaled to [0, 1]: stock `CTNormalization` clips to the plans'
  `percentile_00_5` / `percentile_99_5` and standardises with `mean` / `std`, so the planner writes
  percentiles -250 / 250, mean -250 and std 500 for every channel;
- consistent orientation: nnU-Net's default `SimpleITKIO` keeps each file's voxel order (the direction matrix is
  only stored and written back), so two scans stored with different axis flips reach the network flipped. For
  NIfTI datasets the plans name the stock `NibabelIOWithReorient`, which reorients every image and label to RAS
  when reading and back to the file's own orientation when writing predictions;
- the network by dotted path (`nnunet_cdl.networks.swinxseg.SwinXSeg`) in the `architecture` section.

Values come from `configs/swinxseg.json`; a user file may override any subset (`preset=` path).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from batchgenerators.utilities.file_and_folder_operations import join
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
from nnunetv2.paths import nnUNet_preprocessed
from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape

from nnunet_cdl.errors import CdlError
from nnunet_cdl.io import read_json_object
from nnunet_cdl.networks.swinxseg import INPUT_MULTIPLE
from nnunet_cdl.planning.shared import reader_writer_class, window_intensity_properties

CONFIGURATION = "3d_fullres"
NETWORK_CLASS = "nnunet_cdl.networks.swinxseg.SwinXSeg"
NETWORK_KEYS = {"patch_size", "embed_dim", "depths", "num_heads", "window_size", "decoder_channels", "mlp_ratio",
                "drop_path_rate", "norm_name"}
PLAN_KEYS = {"plans_name", "target_spacing", "patch_size", "batch_size", "ct_window_hu", "reorient_to_ras",
             "batch_dice", "network"}


def default_config_path() -> Path:
    """The shipped `configs/swinxseg.json` (inside the installed package)."""
    return Path(str(resources.files("nnunet_cdl") / "configs" / "swinxseg.json"))


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """Shipped values, overridden by `path` (any subset; `network` merges key by key), validated."""
    values = read_json_object(default_config_path(), "a Swin-X Seg config")
    if path is not None:
        override = read_json_object(path, "a Swin-X Seg config")
        unknown = sorted(set(override) - PLAN_KEYS) + sorted(set(override.get("network", {})) - NETWORK_KEYS)
        if unknown:
            raise CdlError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {sorted(PLAN_KEYS | NETWORK_KEYS)}")
        network = {**values["network"], **override.get("network", {})}
        values.update(override)
        values["network"] = network
    validate_config(values, str(path or default_config_path()))
    return values


def validate_config(values: dict[str, Any], source: str) -> None:
    """Raise `CdlError` naming `source` and the key for every inconsistent value."""
    spacing, patch, window = values["target_spacing"], values["patch_size"], values["ct_window_hu"]
    if not (isinstance(spacing, list) and len(spacing) == 3 and all(_positive(v) for v in spacing)):
        raise CdlError(f"{source}: target_spacing must be 3 positive numbers (z, y, x) in mm, got {spacing!r}")
    if not (isinstance(patch, list) and len(patch) == 3 and all(isinstance(v, int) and v > 0 for v in patch)):
        raise CdlError(f"{source}: patch_size must be 3 positive integers (z, y, x), got {patch!r}")
    if any(v % INPUT_MULTIPLE for v in patch):
        raise CdlError(f"{source}: patch_size {patch} must be multiples of {INPUT_MULTIPLE} (Swin-X Seg down-samples "
                       f"{INPUT_MULTIPLE} times)")
    if not (isinstance(values["batch_size"], int) and values["batch_size"] >= 1):
        raise CdlError(f"{source}: batch_size must be a positive integer, got {values['batch_size']!r}")
    if not (isinstance(window, list) and len(window) == 2 and all(isinstance(v, (int, float)) for v in window)
            and window[0] < window[1]):
        raise CdlError(f"{source}: ct_window_hu must be [lower, upper] HU with lower < upper, got {window!r}")
    for key in ("reorient_to_ras", "batch_dice"):
        if not isinstance(values[key], bool):
            raise CdlError(f"{source}: {key} must be true or false")
    if not (isinstance(values["plans_name"], str) and values["plans_name"]):
        raise CdlError(f"{source}: plans_name must be a non-empty string")


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def network_architecture(network: dict[str, Any]) -> dict[str, Any]:
    """The plans' `architecture` section: dotted class path and keyword arguments."""
    return {"network_class_name": NETWORK_CLASS, "arch_kwargs": json.loads(json.dumps(network)),
            "_kw_requires_import": []}


class SwinXSegPlanner(ExperimentPlanner):
    """Fixed Swin-X Seg plans; call signature of nnU-Net's `ExperimentPlanner` plus `preset` (a JSON file path)."""

    def __init__(self, dataset_name_or_id: str | int, gpu_memory_target_in_gb: float = 8,
                 preprocessor_name: str = "DefaultPreprocessor", plans_name: str | None = None,
                 overwrite_target_spacing: Sequence[float] | None = None, suppress_transpose: bool = False,
                 preset: str | Path | None = None) -> None:
        self.config = load_config(preset)
        super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, preprocessor_name,
                         plans_name or self.config["plans_name"], overwrite_target_spacing, suppress_transpose)

    def determine_fullres_target_spacing(self) -> np.ndarray:
        """Configured spacing (z, y, x) in mm (1.0 isotropic), unless `overwrite_target_spacing` was given."""
        spacing = self.overwrite_target_spacing if self.overwrite_target_spacing is not None \
            else self.config["target_spacing"]
        return np.array(spacing, dtype=np.float64)

    def determine_transpose(self) -> tuple[list[int], list[int]]:
        """Identity: isotropic spacing needs no axis sorting, and RAS order stays RAS order."""
        return [0, 1, 2], [0, 1, 2]

    def determine_normalization_scheme_and_whether_mask_is_used_for_norm(self) -> tuple[list[str], list[bool]]:
        """`CTNormalization` for every channel; the window lives in the intensity properties."""
        channels = self.dataset_json.get("channel_names", self.dataset_json.get("modality", {}))
        not_ct = {k: v for k, v in channels.items() if str(v).upper() != "CT"}
        if not_ct:
            raise CdlError(f"{join(self.raw_dataset_folder, 'dataset.json')}: Swin-X Seg windows CT intensities, "
                           f"but channel_names has non-CT channels {not_ct}")
        return ["CTNormalization"] * len(channels), [False] * len(channels)

    def determine_reader_writer(self) -> type:
        """`NibabelIOWithReorient` (RAS) for NIfTI datasets when `reorient_to_ras`, else nnU-Net's choice."""
        return reader_writer_class(self.dataset_json["file_ending"], self.config["reorient_to_ras"],
                                   super().determine_reader_writer(), type(self).__name__)

    def get_plans_for_configuration(self, spacing: np.ndarray | Sequence[float],
                                    median_shape: np.ndarray | Sequence[int], data_identifier: str,
                                    approximate_n_voxels_dataset: float, _cache: dict) -> dict[str, Any]:
        """The 3d_fullres configuration: configured patch, batch size and network; nnU-Net's resampling."""
        resampling_data, data_kwargs, resampling_seg, seg_kwargs = self.determine_resampling()
        resampling_softmax, softmax_kwargs = self.determine_segmentation_softmax_export_fn()
        normalization_schemes, mask_for_norm = self.determine_normalization_scheme_and_whether_mask_is_used_for_norm()
        return {
            "data_identifier": data_identifier,
            "preprocessor_name": self.preprocessor_name,
            "batch_size": self.config["batch_size"],
            "patch_size": list(self.config["patch_size"]),
            "median_image_size_in_voxels": [float(v) for v in median_shape],
            "spacing": [float(v) for v in spacing],
            "normalization_schemes": normalization_schemes,
            "use_mask_for_norm": mask_for_norm,
            "resampling_fn_data": resampling_data.__name__,
            "resampling_fn_seg": resampling_seg.__name__,
            "resampling_fn_data_kwargs": data_kwargs,
            "resampling_fn_seg_kwargs": seg_kwargs,
            "resampling_fn_probabilities": resampling_softmax.__name__,
            "resampling_fn_probabilities_kwargs": softmax_kwargs,
            "architecture": network_architecture(self.config["network"]),
            "batch_dice": self.config["batch_dice"],
        }

    def plan_experiment(self) -> dict[str, Any]:
        """Write `<plans_name>.json` with one `3d_fullres` configuration, print a summary, return the plans."""
        spacing = self.determine_fullres_target_spacing()
        shapes = [compute_new_shape(shape, old, spacing) for old, shape in
                  zip(self.dataset_fingerprint["spacings"], self.dataset_fingerprint["shapes_after_crop"])]
        median_shape = np.median(np.array(shapes, dtype=np.float64), axis=0)
        configuration = self.get_plans_for_configuration(
            spacing, median_shape, self.generate_data_identifier(CONFIGURATION),
            float(np.prod(median_shape) * self.dataset_json["numTraining"]), {})
        shutil.copy(join(self.raw_dataset_folder, "dataset.json"),
                    join(nnUNet_preprocessed, self.dataset_name, "dataset.json"))
        n_channels = len(configuration["normalization_schemes"])
        lower, upper = self.config["ct_window_hu"]
        plans = {
            "dataset_name": self.dataset_name,
            "plans_name": self.plans_identifier,
            "original_median_spacing_after_transp": [float(v) for v in
                                                     np.median(self.dataset_fingerprint["spacings"], 0)],
            "original_median_shape_after_transp": [int(round(v)) for v in
                                                   np.median(self.dataset_fingerprint["shapes_after_crop"], 0)],
            "image_reader_writer": self.determine_reader_writer().__name__,
            "transpose_forward": [0, 1, 2],
            "transpose_backward": [0, 1, 2],
            "configurations": {CONFIGURATION: configuration},
            "experiment_planner_used": self.__class__.__name__,
            "label_manager": "LabelManager",
            "foreground_intensity_properties_per_channel": {
                str(c): window_intensity_properties(lower, upper) for c in range(n_channels)},
        }
        self.plans = plans
        self.save_plans(plans)
        print(f"{self.__class__.__name__}: {self.plans_identifier} / {CONFIGURATION} for {self.dataset_name}: "
              f"spacing {configuration['spacing']} mm, patch {configuration['patch_size']}, batch "
              f"{configuration['batch_size']}, CT window {self.config['ct_window_hu']} HU -> [0, 1], reader "
              f"{plans['image_reader_writer']}, median shape {[round(v) for v in median_shape]}")
        return plans
