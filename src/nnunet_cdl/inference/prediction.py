"""What both of our predictors share, torch-free: the folder and DICOM front ends (`predict_from_files`,
`predict_from_dicom`), the body crop, the adaptive sliding window and post-processing.

`nnUNetCdlPredictor` (the nnU-Net-compatible Python API, any backend) and `LeanPredictor` (the OpenVINO command
path, no torch) mix this in; they provide `settings`, `plans_manager`, `configuration_manager`, `dataset_json`,
`tile_step_size`, `use_gaussian`, `backend_name`, `window_fn()`, `_input_channels()` and `num_heads()`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from nnunet_cdl.dicom.series import find_series
from nnunet_cdl.errors import CdlError
from nnunet_cdl.inference import body as body_crop
from nnunet_cdl.inference.boundary import BoundaryLogits
from nnunet_cdl.inference.cases import list_cases, select_cases
from nnunet_cdl.inference.postprocess import remove_small_components
from nnunet_cdl.inference.sliding import SlidingResult, pad_to_patch, run_plan
from nnunet_cdl.inference.tiling import plan_tiling


def process_age_s() -> float | None:
    """Seconds since this process started (Linux: /proc), None where that is not known."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return round(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 3)


class FolderPrediction:
    """The shared half of `nnUNetCdlPredictor` and `LeanPredictor` (see the module docstring)."""

    first_window_after_start_s: float | None = None
    """Seconds from process start to the first window this predictor ran (the start-up cost a user waits)."""

    def _patch(self) -> tuple[int, int, int]:
        return tuple(int(p) for p in self.configuration_manager.patch_size)  # type: ignore[return-value]

    def _note_first_window(self) -> None:
        if self.first_window_after_start_s is None:
            self.first_window_after_start_s = process_age_s()

    def adaptive_sliding_window(self, data: np.ndarray, keep_logits: bool,
                                boundary_logits: bool = False) -> SlidingResult:
        """Center-first adaptive sliding window over a preprocessed image (C, Z, Y, X) float32; padded to the
        patch as nnU-Net pads (zeros) and cropped back. Logits: all of them with `keep_logits`, only at label
        boundaries with `boundary_logits` (what the in-plane linear export reads), else none."""
        patch = self._patch()
        padded, revert = pad_to_patch(np.asarray(data, dtype=np.float32), patch)
        plan = plan_tiling(padded.shape[1:], patch, self.tile_step_size, self.settings.tiling)
        result = run_plan(padded, plan, self.settings.tiling, self.window_fn(), self.num_heads(), self.use_gaussian,
                          keep_logits, on_window=self._note_first_window, boundary_logits=boundary_logits)
        spatial = tuple(revert[1:])
        result.labels = np.ascontiguousarray(result.labels[spatial])
        if isinstance(result.logits, BoundaryLogits):
            result.logits = result.logits.crop(spatial)
        elif result.logits is not None:
            result.logits = result.logits[(slice(None), *spatial)]
        return result

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
        ending = self.dataset_json["file_ending"]
        problems: list[tuple[str, str, str]] = []
        if isinstance(list_of_lists_or_source_folder, str):
            folder = list_of_lists_or_source_folder
            if not os.path.isdir(folder):
                raise CdlError(f"{folder}: input folder not found")
            list_of_lists_or_source_folder, problems = list_cases(folder, ending, self._input_channels())
            if not list_of_lists_or_source_folder and not problems:
                raise CdlError(f"{folder}: no input images (files named CASE_0000{ending}); nothing was written")
            problems = problems[part_id::num_parts]
        output = output_folder_or_list_of_truncated_output_files
        lists, outputs = select_cases(list_of_lists_or_source_folder, output, ending, overwrite, part_id, num_parts,
                                      save_probabilities)
        return run_cases(self, lists, outputs, save_probabilities, output, problems)

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
