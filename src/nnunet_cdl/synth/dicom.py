"""Synthetic CT volumes written as DICOM series with pydicom (single-frame CT Image Storage, LPS): test and
benchmark inputs for the DICOM reader, with the faults it must refuse (missing slices, gantry tilt, localisers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def write_ct_series(folder: Path, volume_hu: np.ndarray, spacing_zyx=(2.5, 0.8, 0.8), origin=(-100.0, -80.0, 50.0),
                    row=(1.0, 0.0, 0.0), column=(0.0, 1.0, 0.0), patient_id="P001", series_number=3,
                    tilt_mm_per_slice=0.0, drop_slices=(), reverse_files=False, modality="CT",
                    series_uid: str | None = None, study_uid: str | None = None) -> list[Path]:
    """One file per slice of `volume_hu` (z, y, x), slice k at origin + k * spacing_z along row x column.

    `tilt_mm_per_slice` shifts each slice along the column direction (gantry tilt); `drop_slices` leaves slices out;
    `reverse_files` numbers the files against the slice order. Returns the files written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    row, column = np.asarray(row, float), np.asarray(column, float)
    normal = np.cross(row, column)
    series_uid, study_uid = series_uid or generate_uid(), study_uid or generate_uid()
    frame_uid = generate_uid()
    stored = (volume_hu.astype(np.int32) + 1024).astype(np.uint16)
    paths = []
    kept = [k for k in range(volume_hu.shape[0]) if k not in set(drop_slices)]
    for number, k in enumerate(kept):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        name = f"IM{(len(kept) - number if reverse_files else number + 1):04d}.dcm"
        ds = FileDataset(str(folder / name), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.ImageType = modality, ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = patient_id, "Test^Phantom", "19700101", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", "A1"
        ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer = series_number, number + 1, "pydicom-test"
        ds.ReferringPhysicianName = ""
        position = (np.asarray(origin) + k * spacing_zyx[0] * normal + k * tilt_mm_per_slice * column)
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row, *column)]
        ds.PixelSpacing = [f"{spacing_zyx[1]:.6f}", f"{spacing_zyx[2]:.6f}"]
        ds.SliceThickness = f"{spacing_zyx[0] * 1.5:.3f}"  # deliberately not the spacing: it must not be used
        ds.Rows, ds.Columns = volume_hu.shape[1:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
        ds.PixelData = stored[k].tobytes()
        ds.save_as(folder / name, enforce_file_format=True)
        paths.append(folder / name)
    return paths


def write_localizer(folder: Path, series_uid: str, study_uid: str, patient_id: str = "P001") -> Path:
    """A coronal localiser file that claims to belong to series `series_uid`."""
    image = np.zeros((1, 32, 48), np.int16)
    path = write_ct_series(folder / "_tmp_localizer", image, row=(1, 0, 0), column=(0, 0, -1), patient_id=patient_id,
                           series_uid=series_uid, study_uid=study_uid)[0]
    ds = pydicom.dcmread(path)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    target = folder / "LOCALIZER.dcm"
    ds.save_as(target, enforce_file_format=True)
    path.unlink()
    (folder / "_tmp_localizer").rmdir()
    return target
