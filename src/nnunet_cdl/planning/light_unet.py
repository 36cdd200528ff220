"""`LightUNetPlanner`: nnU-Net experiment planner for the CDL-UNet light 3D U-Net (plans `nnUNetPlansLightUNet`).

Unlike nnU-Net's planners it does not search a topology for a GPU memory budget: spacing, patch, batch size and the
whole `PlainConvUNet` come from a preset (`configs/light_unet.json`, override with `preset=`). Everything else is
nnU-Net's: fingerprint, CT normalisation (from the dataset's channel names), resampling functions, preprocessor,
reader/writer (`NibabelIOWithReorient`, nnU-Net's RAS-reorienting NIfTI reader, when the preset says
`reorient_to_ras`). Only a `3d_fullres` configuration is written. Axes are the image's numpy axes (z, y, x) and are never
transposed, so the preset's patch and kernels mean what they say.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from batchgenerators.utilities.file_and_folder_operations import join
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
from nnunetv2.paths import nnUNet_preprocessed
from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

from nnunet_cdl.networks.light_unet import NetworkCost, network_cost
from nnunet_cdl.planning.preset import PlannerPreset, load_preset
from nnunet_cdl.planning.shared import reader_writer_class, window_intensity_properties

CONFIGURATION = "3d_fullres"


def resampled_median_shape(
    spacings: Sequence[Sequence[float]], shapes: Sequence[Sequence[int]], target_spacing: Sequence[float]
) -> np.ndarray:
    """Median (z, y, x) voxel shape of the cases after resampling to `target_spacing` (mm)."""
    new_shapes = [compute_new_shape(shape, spacing, target_spacing) for spacing, shape in zip(spacings, shapes)]
    return np.median(np.array(new_shapes, dtype=np.float64), axis=0)


class LightUNetPlanner(ExperimentPlanner):
    """Fixed light 3D U-Net plans from a preset; call signature of nnU-Net's `ExperimentPlanner` plus `preset`."""

    def __init__(
        self,
        dataset_name_or_id: str | int,
        gpu_memory_target_in_gb: float = 8,
        preprocessor_name: str = "DefaultPreprocessor",
        plans_name: str | None = None,
        overwrite_target_spacing: Sequence[float] | None = None,
        suppress_transpose: bool = False,
        preset: PlannerPreset | str | Path | None = None,
    ) -> None:
        self.preset = preset if isinstance(preset, PlannerPreset) else load_preset(preset)
        super().__init__(
            dataset_name_or_id,
            gpu_memory_target_in_gb,
            preprocessor_name,
            plans_name or self.preset.plans_name,
            overwrite_target_spacing,
            suppress_transpose,
        )
        self.network_cost: NetworkCost | None = None

    def determine_fullres_target_spacing(self) -> np.ndarray:
        """Preset spacing (z, y, x) in mm, unless `overwrite_target_spacing` was given."""
        if self.overwrite_target_spacing is not None:
            return np.array(self.overwrite_target_spacing, dtype=np.float64)
        return np.array(self.preset.target_spacing, dtype=np.float64)

    def determine_reader_writer(self) -> type:
        """nnU-Net's reader for the dataset, or its RAS-reorienting NIfTI reader when the preset's
        `reorient_to_ras` is on."""
        return reader_writer_class(self.dataset_json["file_ending"], self.preset.reorient_to_ras,
                                   super().determine_reader_writer(), type(self).__name__)

    def determine_transpose(self) -> tuple[list[int], list[int]]:
        """Identity: the preset's axes are the image's axes."""
        return [0, 1, 2], [0, 1, 2]

    def get_plans_for_configuration(
        self,
        spacing: np.ndarray | Sequence[float],
        median_shape: np.ndarray | Sequence[int],
        data_identifier: str,
        approximate_n_voxels_dataset: float,
        _cache: dict,
    ) -> dict[str, Any]:
        """The 3d_fullres configuration: preset patch, batch size and architecture, nnU-Net's everything else."""
        if len(spacing) != 3:
            raise ValueError("LightUNetPlanner plans 3-D configurations only")
        resampling_data, resampling_data_kwargs, resampling_seg, resampling_seg_kwargs = self.determine_resampling()
        resampling_softmax, resampling_softmax_kwargs = self.determine_segmentation_softmax_export_fn()
        normalization_schemes, mask_is_used_for_norm = (
            self.determine_normalization_scheme_and_whether_mask_is_used_for_norm()
        )
        return {
            "data_identifier": data_identifier,
            "preprocessor_name": self.preprocessor_name,
            "batch_size": self.preset.batch_size,
            "patch_size": list(self.preset.patch_size),
            "median_image_size_in_voxels": [float(v) for v in median_shape],
            "spacing": [float(v) for v in spacing],
            "normalization_schemes": normalization_schemes,
            "use_mask_for_norm": mask_is_used_for_norm,
            "resampling_fn_data": resampling_data.__name__,
            "resampling_fn_seg": resampling_seg.__name__,
            "resampling_fn_data_kwargs": resampling_data_kwargs,
            "resampling_fn_seg_kwargs": resampling_seg_kwargs,
            "resampling_fn_probabilities": resampling_softmax.__name__,
            "resampling_fn_probabilities_kwargs": resampling_softmax_kwargs,
            "architecture": self.preset.architecture(),
            "batch_dice": self.preset.batch_dice,
        }

    def plan_experiment(self) -> dict[str, Any]:
        """Write `<plans_name>.json` with one `3d_fullres` configuration and print a summary; returns the plans."""
        transpose_forward, transpose_backward = self.determine_transpose()
        spacing = self.determine_fullres_target_spacing()
        median_shape = resampled_median_shape(
            self.dataset_fingerprint["spacings"], self.dataset_fingerprint["shapes_after_crop"], spacing
        )
        approximate_n_voxels_dataset = float(np.prod(median_shape) * self.dataset_json["numTraining"])
        configuration = self.get_plans_for_configuration(
            spacing, median_shape, self.generate_data_identifier(CONFIGURATION), approximate_n_voxels_dataset, {}
        )
        median_spacing = np.median(self.dataset_fingerprint["spacings"], 0)
        median_original_shape = np.median(self.dataset_fingerprint["shapes_after_crop"], 0)
        shutil.copy(
            join(self.raw_dataset_folder, "dataset.json"), join(nnUNet_preprocessed, self.dataset_name, "dataset.json")
        )
        plans = {
            "dataset_name": self.dataset_name,
            "plans_name": self.plans_identifier,
            "original_median_spacing_after_transp": [float(v) for v in median_spacing],
            "original_median_shape_after_transp": [int(round(v)) for v in median_original_shape],
            "image_reader_writer": self.determine_reader_writer().__name__,
            "transpose_forward": transpose_forward,
            "transpose_backward": transpose_backward,
            "configurations": {CONFIGURATION: configuration},
            "experiment_planner_used": self.__class__.__name__,
            "label_manager": "LabelManager",
            "foreground_intensity_properties_per_channel": self.intensity_properties(configuration["normalization_schemes"]),
        }
        self.network_cost = self.estimate_network_cost(configuration)
        self.plans = plans
        self.save_plans(plans)
        print(self.summary(configuration))
        return plans

    def intensity_properties(self, normalization_schemes: Sequence[str]) -> dict[str, dict[str, float]]:
        """The fingerprint's foreground intensities per channel (nnU-Net's CT window: 0.5-99.5 percentiles), or
        the preset's fixed `ct_window_hu` for every `CTNormalization` channel."""
        properties = dict(self.dataset_fingerprint["foreground_intensity_properties_per_channel"])
        if self.preset.ct_window_hu is not None:
            for channel, scheme in enumerate(normalization_schemes):
                if scheme == "CTNormalization":
                    properties[str(channel)] = window_intensity_properties(*self.preset.ct_window_hu)
        return properties

    def estimate_network_cost(self, configuration: dict[str, Any]) -> NetworkCost:
        """Parameters and GFLOPs per patch of the planned network, with this dataset's input and output channels."""
        architecture = configuration["architecture"]
        network = get_network_from_plans(
            architecture["network_class_name"],
            architecture["arch_kwargs"],
            architecture["_kw_requires_import"],
            len(self.dataset_json["channel_names"]),
            len(self.dataset_json["labels"]),
            allow_init=False,
            deep_supervision=True,
        )
        return network_cost(network, configuration["patch_size"], len(self.dataset_json["channel_names"]))

    def summary(self, configuration: dict[str, Any]) -> str:
        """Human-readable summary of the 3d_fullres plan (spacing mm, shapes z, y, x)."""
        arch = configuration["architecture"]["arch_kwargs"]
        lines = [
            f"{self.__class__.__name__}: {self.plans_identifier} / {CONFIGURATION} for {self.dataset_name}",
            f"  spacing (z, y, x):        {configuration['spacing']} mm",
            f"  median shape after resampling: {[round(v) for v in configuration['median_image_size_in_voxels']]}",
            f"  patch size:               {configuration['patch_size']}, batch size {configuration['batch_size']}",
            f"  normalisation:            {configuration['normalization_schemes']}"
            + (f", CT window {list(self.preset.ct_window_hu)} HU -> [0, 1]" if self.preset.ct_window_hu else ""),
            f"  reader/writer:            {self.determine_reader_writer().__name__}",
            f"  network:                  {configuration['architecture']['network_class_name'].rsplit('.', 1)[-1]}, "
            f"{arch['n_stages']} stages, features {arch['features_per_stage']}",
            f"  kernels {arch['kernel_sizes']}, strides {arch['strides']}",
        ]
        small = [axis for axis, (m, p) in zip("zyx", zip(configuration["median_image_size_in_voxels"],
                                                         configuration["patch_size"])) if m < p]
        if small:
            lines.append(f"  note: the median image is smaller than the patch along {', '.join(small)}; "
                         "nnU-Net pads those axes")
        if self.network_cost is not None:
            outputs = len(self.dataset_json["labels"])
            lines.append(f"  cost ({outputs} output channels): {self.network_cost.describe()}")
        return "\n".join(lines)
