"""Choices shared by our planners: the reader/writer (nnU-Net's own, or its RAS-reorienting NIfTI reader) and a
fixed CT window written as intensity properties that stock `CTNormalization` applies."""

from __future__ import annotations

NIFTI_ENDINGS = (".nii", ".nii.gz")


def reader_writer_class(file_ending: str, reorient_to_ras: bool, default: type, planner_name: str) -> type:
    """`NibabelIOWithReorient` for NIfTI files when `reorient_to_ras` (every image and label in RAS order, so scans
    stored with flipped axes reach the network alike), else `default` (nnU-Net's choice for the dataset)."""
    if not reorient_to_ras:
        return default
    if file_ending in NIFTI_ENDINGS:
        from nnunetv2.imageio.nibabel_reader_writer import NibabelIOWithReorient

        return NibabelIOWithReorient
    print(f"{planner_name}: {file_ending} files are read as stored (RAS reorientation needs NIfTI)")
    return default


def window_intensity_properties(lower_hu: float, upper_hu: float) -> dict[str, float]:
    """Intensity properties that make stock `CTNormalization` map [lower, upper] HU linearly to [0, 1]."""
    return {"mean": float(lower_hu), "std": float(upper_hu - lower_hu), "median": float(lower_hu + upper_hu) / 2,
            "min": float(lower_hu), "max": float(upper_hu), "percentile_00_5": float(lower_hu),
            "percentile_99_5": float(upper_hu)}
