"""`nnUNetCdlPredictor`: nnU-Net's predictor with center-first adaptive tiling, a body crop, CPU backends,
a fast export, post-processing and a per-case record. Same Python API as `nnUNetPredictor`."""

from __future__ import annotations

import copy
import itertools
import os
import sys
from pathlib import Path

import numpy as np
import torch
from acvl_utils.cropping_and_padding.padding import pad_nd_image
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

from nnunet_cdl import fast_gzip
from nnunet_cdl.dicom.series import find_series
from nnunet_cdl.errors import CdlError
from nnunet_cdl.inference import body as body_crop
from nnunet_cdl.inference.backends import Backend, backend_choice_file, build_backend, choose_backend, resolve_backend
from nnunet_cdl.inference.cases import list_cases
from nnunet_cdl.inference.config import InferenceSettings, load_settings
from nnunet_cdl.inference.model_loading import load_model_folder
from nnunet_cdl.inference.postprocess import remove_small_components
from nnunet_cdl.inference.sliding import SlidingResult, run_plan
from nnunet_cdl.inference.tiling import plan_tiling

fast_gzip.install()  # the case reader and writer are nibabel's: ISA-L decompresses 2x faster than zlib


def auto_backend_line(measured: dict, checkpoint: Path | None) -> str:
    """One log line on what `--backend auto` chose and why (seconds per window of every candidate)."""
    timings = ", ".join(f"{name} {seconds:.3f} s" for name, seconds in measured["seconds_per_window"].items())
    where = (f"cached in {backend_choice_file(checkpoint)}" if measured["cached"] else
             f"measured now{f', kept in {backend_choice_file(checkpoint)}' if checkpoint is not None else ''}")
    return f"backend auto: {measured['choice']} (per window on this CPU: {timings}; {where}; --backend forces one)"


class nnUNetCdlPredictor(nnUNetPredictor):
    """Drop-in `nnUNetPredictor` for CPUs. Differences (see docs/inference.md):

    - sliding window: per z-slab the in-plane center window first; the rest of the slab only when the center
      shows organs (`TilingRules`); fold ensembles and mirroring are averaged per window;
    - torch threads = `settings.threads` (all given cores, no cap at 8); bf16 / OpenVINO backends;
    - `predict_from_files`: per case body crop, fast or stock export, post-processing, atomic outputs, a JSON
      record and a progress line; a failing case is reported and the others go on.
    """

    def __init__(
        self,
        tile_step_size: float = 0.5,
        use_gaussian: bool = True,
        use_mirroring: bool = True,
        perform_everything_on_device: bool = False,
        device: torch.device = torch.device("cpu"),
        verbose: bool = False,
        verbose_preprocessing: bool = False,
        allow_tqdm: bool = True,
        settings: InferenceSettings | None = None,
    ):
        super().__init__(
            tile_step_size, use_gaussian, use_mirroring, perform_everything_on_device and device.type == "cuda",
            device, verbose, verbose_preprocessing, allow_tqdm,
        )
        self.settings = settings if settings is not None else load_settings()
        self.backend_name = resolve_backend(self.settings.backend, device)
        self.checkpoints: list[Path] | None = None
        self._backends: list[Backend] | None = None
        self.last_records: list = []
        """`CaseRecord`s of the last `predict_from_files` call."""

    # ---------------------------------------------------------------- model loading
    def initialize_from_trained_model_folder(
        self, model_training_output_dir: str, use_folds: tuple | list | str | None, checkpoint_name: str = "checkpoint_final.pth"
    ) -> None:
        """As nnU-Net's (torch.compile aside), with clear errors for a missing folder, plans or checkpoint, and
        without importing nnU-Net's whole trainer tree for nnunet-cdl's trainers."""
        folder = Path(model_training_output_dir)
        for name in ("dataset.json", "plans.json"):
            if not (folder / name).is_file():
                raise CdlError(f"{folder}: not a trained nnU-Net model folder ({name} missing)")
        if use_folds is None:
            use_folds = self.auto_detect_available_folds(str(folder), checkpoint_name)
            if not use_folds:
                raise CdlError(f"{folder}: no fold_X/{checkpoint_name} found; train the model or pass -chk")
        folds = [use_folds] if isinstance(use_folds, str) else list(use_folds)
        checkpoints = [folder / f"fold_{f}" / checkpoint_name for f in folds]
        missing = [str(c) for c in checkpoints if not c.is_file()]
        if missing:
            raise CdlError(f"checkpoint not found: {', '.join(missing)} (choose folds with -f, the file with -chk)")
        for name, value in load_model_folder(folder, checkpoints).items():
            setattr(self, name, value)
        self.checkpoints = checkpoints
        self.model_folder = folder
        self._backends = None

    def manual_initialization(self, *args, **kwargs) -> None:  # noqa: D401 - same signature as nnU-Net's
        super().manual_initialization(*args, **kwargs)
        self.checkpoints = None
        self.model_folder = None
        self._backends = None

    def _patch(self) -> tuple[int, int, int]:
        return tuple(int(p) for p in self.configuration_manager.patch_size)  # type: ignore[return-value]

    def window_backends(self) -> list[Backend]:
        """One backend per fold (built once): the network with that fold's weights."""
        if self._backends is None:
            torch.set_num_threads(self.settings.threads)
            channels = self._input_channels()
            example = torch.zeros((1, channels, *self._patch()))
            parameters = self.list_of_parameters or [None]
            backends = []
            for index, params in enumerate(parameters):
                network = self.network if len(parameters) == 1 else copy.deepcopy(self.network)
                if params is not None:
                    network.load_state_dict(params)
                checkpoint = self.checkpoints[index] if self.checkpoints else None
                if self.backend_name == "auto":
                    self.backend_name, measured, built = choose_backend(network, example, self.settings.threads,
                                                                        checkpoint)
                    self.log(auto_backend_line(measured, checkpoint))
                    if built is not None:
                        backends.append(built)
                        continue
                backends.append(build_backend(self.backend_name, network, self.device, example, self.settings.threads,
                                              checkpoint, self.int8_calibration_folder()))
            self._backends = backends
        return self._backends

    def int8_calibration_folder(self) -> Path | None:
        """Preprocessed training data to calibrate int8 on: `settings.int8_calibration`, else the model's dataset
        in `nnUNet_preprocessed` when it is there."""
        from nnunet_cdl.inference.quantize import preprocessed_folder

        if self.settings.int8_calibration is not None:
            return self.settings.int8_calibration
        configuration = getattr(self, "configuration_name", None)
        return preprocessed_folder(self.plans_manager.plans, configuration) if configuration else None

    def _input_channels(self) -> int:
        from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

        return determine_num_input_channels(self.plans_manager, self.configuration_manager, self.dataset_json)

    def window_fn(self):
        """(1, C, pz, py, px) -> (K, pz, py, px) logits averaged over folds and allowed mirror axes."""
        backends = self.window_backends()
        axes = self.allowed_mirroring_axes if self.use_mirroring and self.allowed_mirroring_axes else ()
        flips = [()] + [tuple(a + 2 for a in c) for i in range(len(axes)) for c in itertools.combinations(axes, i + 1)]

        def predict(x: torch.Tensor) -> torch.Tensor:
            total = None
            for backend in backends:
                for flip in flips:
                    out = backend(torch.flip(x, flip) if flip else x)
                    out = torch.flip(out, flip) if flip else out
                    total = out if total is None else total + out
            return total[0] / (len(backends) * len(flips))

        return predict

    # ---------------------------------------------------------------- sliding window
    def adaptive_sliding_window(self, data: torch.Tensor, keep_logits: bool) -> SlidingResult:
        """Center-first adaptive sliding window over a preprocessed image (C, Z, Y, X); padded to the patch as
        nnU-Net pads (zeros) and cropped back."""
        patch = self._patch()
        padded, revert = pad_nd_image(data, patch, "constant", {"value": 0}, True, None)
        plan = plan_tiling(padded.shape[1:], patch, self.tile_step_size, self.settings.tiling)
        result = run_plan(
            padded.float(), plan, self.settings.tiling, self.window_fn(),
            self.label_manager.num_segmentation_heads, self.use_gaussian, keep_logits,
        )
        spatial = tuple(revert[1:])
        result.labels = np.ascontiguousarray(result.labels[spatial])
        if result.logits is not None:
            result.logits = result.logits[(slice(None), *spatial)]
        return result

    @torch.inference_mode()
    def predict_sliding_window_return_logits(self, input_image: torch.Tensor) -> torch.Tensor:
        """Logits (K, Z, Y, X) of a preprocessed image (C, Z, Y, X) by the adaptive sliding window (3-D
        configurations; 2-D ones use nnU-Net's)."""
        if len(self._patch()) != 3:
            return super().predict_sliding_window_return_logits(input_image)
        return self.adaptive_sliding_window(input_image, keep_logits=True).logits

    @torch.inference_mode()
    def predict_logits_from_preprocessed_data(self, data: torch.Tensor) -> torch.Tensor:
        """As nnU-Net's, but on all `settings.threads` threads and with the fold ensemble averaged per window."""
        torch.set_num_threads(self.settings.threads)
        if len(self._patch()) != 3:
            return super().predict_logits_from_preprocessed_data(data)
        return self.predict_sliding_window_return_logits(data)

    # ---------------------------------------------------------------- files
    def predict_from_files(
        self,
        list_of_lists_or_source_folder: str | list[list[str]],
        output_folder_or_list_of_truncated_output_files: str | None | list[str],
        save_probabilities: bool = False,
        overwrite: bool = True,
        num_processes_preprocessing: int = 1,
        num_processes_segmentation_export: int = 1,
        folder_with_segs_from_prev_stage: str | None = None,
        num_parts: int = 1,
        part_id: int = 0,
    ):
        """nnU-Net's signature. Cases run one after the other, each on all threads (the process counts are
        accepted for compatibility). Returns the segmentations when no output is given, else the records.
        Raises `CdlError` after the last case when any case failed."""
        from nnunet_cdl.inference.pipeline import run_cases

        if self.configuration_manager.previous_stage_name is not None or folder_with_segs_from_prev_stage:
            raise CdlError("cascaded configurations are not supported by the adaptive predictor; use --tiling full")
        if not 0 <= part_id < num_parts:
            raise CdlError(f"-part_id must be in 0..{num_parts - 1}, got {part_id}")
        problems: list[tuple[str, str]] = []
        if isinstance(list_of_lists_or_source_folder, str):
            folder, ending = list_of_lists_or_source_folder, self.dataset_json["file_ending"]
            if not os.path.isdir(folder):
                raise CdlError(f"{folder}: input folder not found")
            list_of_lists_or_source_folder, problems = list_cases(folder, ending, self._input_channels())
            if not list_of_lists_or_source_folder and not problems:
                raise CdlError(f"{folder}: no input images (files named CASE_0000{ending}); nothing was written")
            problems = problems[part_id::num_parts]
        lists, outputs, _ = self._manage_input_and_output_lists(
            list_of_lists_or_source_folder, output_folder_or_list_of_truncated_output_files, None, overwrite,
            part_id, num_parts, save_probabilities,
        )
        return run_cases(self, lists, outputs, save_probabilities, output_folder_or_list_of_truncated_output_files,
                         problems)

    def predict_from_dicom(self, input_folder: str, output_folder: str, overwrite: bool = True):
        """Predict every CT series found below `input_folder` (DICOM files, sub-folders included) into
        `output_folder/<case>.nii.gz` (or `<case>.dcm`, a DICOM SEG, with `settings.output_type` "dicom-seg"),
        with `cases.csv` mapping each case to its patient, study and series (and
        why a series was refused or failed). Raises `CdlError` after the last case when any failed."""
        from nnunet_cdl.inference.pipeline import run_cases, write_cases_csv

        if self._input_channels() != 1:
            raise CdlError(f"{input_folder}: DICOM input needs a one-channel (CT) model; this one takes "
                           f"{self._input_channels()} channels")
        series = find_series(Path(input_folder))
        if not series:
            raise CdlError(f"{input_folder}: no DICOM series found; nothing was written")
        problems = [(item.case, str(item.folder), f"series {item.series_uid}: {item.error}")
                    for item in series if item.error is not None]
        good = [item for item in series if item.error is None]
        for item in good:
            for skipped in item.skipped:
                self.log(f"{item.case}: left out of series {item.series_uid}: {skipped}")
        ending = ".dcm" if self.settings.output_type == "dicom-seg" else self.dataset_json["file_ending"]
        if not overwrite:
            good = [item for item in good if not os.path.isfile(os.path.join(output_folder, item.case + ending))]
        outputs = [os.path.join(output_folder, item.case) for item in good]
        try:
            return run_cases(self, good, outputs, False, output_folder, problems)
        finally:
            write_cases_csv(Path(output_folder) / "cases.csv", series, getattr(self, "last_records", []))

    def predict_from_files_sequential(
        self,
        list_of_lists_or_source_folder: str | list[list[str]],
        output_folder_or_list_of_truncated_output_files: str | None | list[str],
        save_probabilities: bool = False,
        overwrite: bool = True,
        folder_with_segs_from_prev_stage: str | None = None,
    ):
        """Same as `predict_from_files` (which is already sequential here)."""
        return self.predict_from_files(
            list_of_lists_or_source_folder, output_folder_or_list_of_truncated_output_files, save_probabilities,
            overwrite, folder_with_segs_from_prev_stage=folder_with_segs_from_prev_stage,
        )

    def crop_to_body(self, image: np.ndarray, spacing_zyx: list[float]) -> body_crop.Box:
        """Body box of a CT image (C, z, y, x) in file axis order; the whole image when the body crop is off, the
        first channel is not CT-normalised, or nothing exceeds the threshold."""
        full = body_crop.full_box(image.shape[1:])
        if not self.settings.body.enabled or self.configuration_manager.normalization_schemes[0] != "CTNormalization":
            return full
        box = body_crop.body_box(image[0], spacing_zyx, self.settings.body)
        return full if box is None else box

    def postprocess(self, labels: np.ndarray) -> np.ndarray:
        rules = self.settings.postprocess
        if not rules.enabled:
            return labels
        return remove_small_components(labels, rules.keep_largest_labels, rules.min_component_voxels, rules.connectivity)

    def log(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)
