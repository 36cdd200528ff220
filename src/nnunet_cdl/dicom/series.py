"""CT series in a DICOM folder tree: found, checked and read as 3-D volumes in HU.

Series come from GDCM's series IDs (SimpleITK), folder by folder. Each series is checked from its headers
(pydicom, no pixel data) before anything is read: CT modality, single-frame CT images, one orientation and one
slice size, no gantry tilt, slices evenly spaced along the slice normal (no missing or duplicate slice).
Localisers and secondary captures mixed into a series are left out and named. Pixels are then read by SimpleITK's
series reader in the checked order (slices sorted by their position along the normal; rescale slope and intercept
applied), with the spacing between slices taken from the positions, never from SliceThickness.

Geometry is ITK's (LPS), as the NIfTI reader nnU-Net uses gives it, so a DICOM series and its NIfTI conversion
reach the network identically.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_cdl.errors import CdlError

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
STEP_TOLERANCE = 0.02
"""Largest relative deviation of a slice step from the median step (missing or duplicate slices exceed it)."""
TILT_TOLERANCE_DEG = 0.1
"""Largest angle between the line through the slice positions and the slice normal (gantry tilt)."""


def is_dicom_file(path: Path) -> bool:
    """True for a file with the DICOM preamble marker (`DICM` at byte 128)."""
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def dicom_files_below(folder: Path) -> Iterator[Path]:
    """DICOM files in `folder` and its sub-folders (hidden entries skipped), sorted."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if not name.startswith(".") and is_dicom_file(path):
                yield path


@dataclass
class DicomSeries:
    """One CT series: its slice files in position order and what identifies it.

    `error` is set when the series cannot be one 3-D volume (then `files` may be empty); `skipped` names the files
    left out of it (localisers, secondary captures) and why.
    """

    folder: Path
    series_uid: str
    files: list[Path] = field(default_factory=list)
    case: str = ""
    patient_id: str = ""
    study_uid: str = ""
    study_date: str = ""
    series_number: str = ""
    series_description: str = ""
    frame_of_reference_uid: str = ""
    spacing_mm: float = 0.0
    error: str | None = None
    skipped: list[str] = field(default_factory=list)

    def read(self) -> sitk.Image:
        """The volume (HU) in the checked slice order, spacing between slices from the positions."""
        if self.error is not None:
            raise CdlError(f"{self.folder}: series {self.series_uid}: {self.error}")
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames([str(f) for f in self.files])
        try:
            image = reader.Execute()
        except RuntimeError as exc:
            raise CdlError(f"{self.folder}: series {self.series_uid}: cannot read the pixels ({exc})") from exc
        spacing = list(image.GetSpacing())
        spacing[2] = self.spacing_mm
        image.SetSpacing(spacing)
        return image


def _text(dataset, keyword: str) -> str:
    value = getattr(dataset, keyword, "")
    return "" if value is None else str(value).strip()


def _floats(dataset, keyword: str) -> np.ndarray | None:
    value = getattr(dataset, keyword, None)
    return None if value is None else np.asarray([float(v) for v in value], dtype=np.float64)


def _leave_out(dataset) -> str | None:
    """Why a file of a series is not one of its slices (localiser, secondary capture), or None."""
    image_type = [str(v).upper() for v in (getattr(dataset, "ImageType", None) or [])]
    if "LOCALIZER" in image_type:
        return "localiser (ImageType LOCALIZER)"
    if _text(dataset, "SOPClassUID").startswith(SECONDARY_CAPTURE_PREFIX):
        return "secondary capture"
    return None


def check_series(folder: Path, series_uid: str, files: list[Path]) -> DicomSeries:
    """Headers of one series checked and its slices sorted along the normal (see the module docstring)."""
    import pydicom

    series = DicomSeries(folder, series_uid)
    slices = []
    for path in files:
        try:
            dataset = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as exc:  # pydicom raises assorted errors for damaged files
            series.error = f"{path.name}: not readable as DICOM ({type(exc).__name__}: {exc})"
            return series
        reason = _leave_out(dataset)
        if reason is not None:
            series.skipped.append(f"{path.name}: {reason}")
            continue
        slices.append((path, dataset))
    if not slices:
        series.error = "no image slices (only " + "; ".join(series.skipped) + ")"
        return series
    first = slices[0][1]
    series.patient_id, series.study_uid = _text(first, "PatientID"), _text(first, "StudyInstanceUID")
    series.study_date, series.series_number = _text(first, "StudyDate"), _text(first, "SeriesNumber")
    series.series_description = _text(first, "SeriesDescription")
    series.frame_of_reference_uid = _text(first, "FrameOfReferenceUID")
    modality = _text(first, "Modality")
    if modality != "CT":
        series.error = f"modality {modality or 'missing'}, not CT"
        return series
    sop_classes = {_text(d, "SOPClassUID") for _, d in slices}
    if ENHANCED_CT_IMAGE_STORAGE in sop_classes or any(int(getattr(d, "NumberOfFrames", 1) or 1) > 1 for _, d in slices):
        series.error = "multi-frame (enhanced) CT is not supported; export the series as single-frame CT images"
        return series
    if sop_classes - {CT_IMAGE_STORAGE}:
        series.error = f"SOP class(es) {', '.join(sorted(sop_classes - {CT_IMAGE_STORAGE}))} are not CT images"
        return series
    orientations = {tuple(np.round(_floats(d, "ImageOrientationPatient"), 4)) for _, d in slices
                    if _floats(d, "ImageOrientationPatient") is not None}
    if len(orientations) != 1 or any(_floats(d, "ImagePositionPatient") is None for _, d in slices):
        series.error = ("slices have different orientations" if len(orientations) > 1 else
                        "slices lack ImageOrientationPatient or ImagePositionPatient")
        return series
    sizes = {(int(d.Rows), int(d.Columns)) for _, d in slices}
    if len(sizes) != 1:
        series.error = f"slices have different sizes {sorted(sizes)}"
        return series
    if len(slices) < 2:
        series.error = "a single slice is not a 3-D volume"
        return series
    row, column = np.reshape(next(iter(orientations)), (2, 3))
    normal = np.cross(row, column)
    positions = np.array([_floats(d, "ImagePositionPatient") for _, d in slices])
    order = np.argsort(positions @ normal, kind="stable")
    positions = positions[order]
    along = positions @ normal
    steps = np.diff(along)
    median = float(np.median(steps))
    if median <= 0 or np.any(steps <= 1e-3 * max(median, 1e-3)):
        series.error = "duplicate slice positions (two files at one position)"
        return series
    uneven = np.abs(steps - median) > STEP_TOLERANCE * median
    if uneven.any():
        where = int(np.flatnonzero(uneven)[0])
        series.error = (f"uneven slice spacing: {steps[where]:.3f} mm after slice {where + 1} where the series steps "
                        f"{median:.3f} mm (a missing slice?); fill the gap or split the series")
        return series
    drift = positions - positions[0] - np.outer(along - along[0], normal)
    length = float(along[-1] - along[0])
    off_axis = float(np.linalg.norm(drift[-1]))
    angle = float(np.degrees(np.arctan2(off_axis, length)))
    if off_axis > 0.1 and angle > TILT_TOLERANCE_DEG:
        series.error = (f"gantry tilt of {angle:.1f} degrees (slice positions drift {off_axis:.1f} mm off the slice "
                        "normal); resample the series to an untilted grid first")
        return series
    series.files = [slices[i][0] for i in order]
    series.spacing_mm = round(float(np.mean(steps)), 6)
    return series


def find_series(folder: Path) -> list[DicomSeries]:
    """Every series below `folder`, checked, named (`case`) uniquely and readably; sorted by case name."""
    reader = sitk.ImageSeriesReader()
    found: list[DicomSeries] = []
    folders = sorted({path.parent for path in dicom_files_below(folder)})
    for sub in folders:
        for series_uid in reader.GetGDCMSeriesIDs(str(sub)):
            files = [Path(f) for f in reader.GetGDCMSeriesFileNames(str(sub), series_uid)]
            found.append(check_series(sub, series_uid, files))
    name_cases(found)
    return sorted(found, key=lambda s: s.case)


def _sanitise(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "-", text).strip("-")[:40]


def name_cases(series: list[DicomSeries]) -> None:
    """`case` = patient, study date and series number (letters, digits and '-' only, joined by '_'), with a short
    hash of the series UID where two series would share a name. Never a path separator or '..'."""
    base = {}
    for item in series:
        parts = [_sanitise(item.patient_id) or "patient", _sanitise(item.study_date) or "study",
                 "s" + (_sanitise(item.series_number) or "x")]
        base[id(item)] = "_".join(parts)
    counts: dict[str, int] = {}
    for name in base.values():
        counts[name] = counts.get(name, 0) + 1
    for item in series:
        name = base[id(item)]
        if counts[name] > 1:
            name += "_" + hashlib.sha1(item.series_uid.encode()).hexdigest()[:8]
        item.case = name
