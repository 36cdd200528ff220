"""CT series found, checked and read from DICOM folders (real GE headers and series written with pydicom)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_cdl.dicom.series import find_series
from nnunet_cdl.synth.dicom import write_ct_series, write_localizer

REAL_SERIES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dicom_ct3slice"


def phantom_volume(shape=(12, 40, 48)) -> np.ndarray:
    """HU ramp along z plus a bright box: any slice-order mistake shows."""
    z = np.arange(shape[0])[:, None, None]
    volume = np.broadcast_to(-900 + 40 * z, shape).astype(np.int16).copy()
    volume[3:8, 10:20, 5:30] = 300
    return volume


def only(series_list):
    assert len(series_list) == 1, [(s.case, s.error) for s in series_list]
    return series_list[0]


@pytest.mark.skipif(not REAL_SERIES.is_dir(), reason="shared/ data not beside the checkout")
def test_real_ge_series() -> None:
    series = only(find_series(REAL_SERIES))
    assert series.error is None and series.case == "99000_20030417_s2" and len(series.files) == 3
    image = series.read()
    assert image.GetSize() == (512, 512, 3)
    assert np.allclose(image.GetSpacing(), (0.810547, 0.810547, 1.0), atol=1e-5)
    assert np.allclose(image.GetOrigin(), (-235.2, -226.8, -128.69), atol=1e-3)
    values = sitk.GetArrayFromImage(image)
    assert values.min() == -3024 and values.max() == 1381, "rescale intercept applied (HU)"


@pytest.mark.parametrize("row, column", [((1, 0, 0), (0, 1, 0)), ((-1, 0, 0), (0, -1, 0)), ((0, 1, 0), (0, 0, -1))])
@pytest.mark.parametrize("reverse_files", [False, True])
def test_orientations_and_file_order_give_the_volume_in_position_order(tmp_path, row, column, reverse_files) -> None:
    volume = phantom_volume()
    write_ct_series(tmp_path / "s", volume, spacing_zyx=(2.5, 0.8, 0.7), row=row, column=column,
                    reverse_files=reverse_files)
    series = only(find_series(tmp_path))
    assert series.error is None and series.spacing_mm == pytest.approx(2.5)
    image = series.read()
    assert np.array_equal(sitk.GetArrayFromImage(image), volume)
    assert np.allclose(image.GetSpacing(), (0.7, 0.8, 2.5))
    normal = np.cross(row, column)
    assert np.allclose(np.reshape(image.GetDirection(), (3, 3)).T, [row, column, normal], atol=1e-6)
    assert np.allclose(image.GetOrigin(), (-100.0, -80.0, 50.0), atol=1e-4)


def test_series_that_cannot_be_one_volume_are_refused_with_the_reason(tmp_path) -> None:
    volume = phantom_volume()
    write_ct_series(tmp_path / "gap", volume, patient_id="GAP", drop_slices=(5,))
    write_ct_series(tmp_path / "tilt", volume, patient_id="TILT", tilt_mm_per_slice=0.3)
    write_ct_series(tmp_path / "mr", volume, patient_id="MR", modality="MR")
    write_ct_series(tmp_path / "one", volume[:1], patient_id="ONE")
    errors = {s.patient_id: s.error for s in find_series(tmp_path)}
    assert "uneven slice spacing" in errors["GAP"] and "missing slice" in errors["GAP"]
    assert "gantry tilt of 6.8 degrees" in errors["TILT"]
    assert "modality MR, not CT" in errors["MR"]
    assert "single slice" in errors["ONE"]


def test_localiser_in_a_series_is_left_out_and_named(tmp_path) -> None:
    volume = phantom_volume()
    files = write_ct_series(tmp_path / "s", volume)
    import pydicom

    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    write_localizer(tmp_path / "s", first.SeriesInstanceUID, first.StudyInstanceUID)
    series = only(find_series(tmp_path))
    assert series.error is None and len(series.files) == volume.shape[0]
    assert series.skipped == ["LOCALIZER.dcm: localiser (ImageType LOCALIZER)"]
    assert np.array_equal(sitk.GetArrayFromImage(series.read()), volume)


def test_case_names_are_readable_unique_and_safe(tmp_path) -> None:
    volume = phantom_volume((3, 20, 20))
    write_ct_series(tmp_path / "a", volume, patient_id="../../etc/passwd", series_number=2)
    write_ct_series(tmp_path / "b", volume, patient_id="../../etc/passwd", series_number=2)
    write_ct_series(tmp_path / "c", volume, patient_id="Müller, Anna", series_number=7)
    cases = [s.case for s in find_series(tmp_path)]
    assert len(set(cases)) == 3
    for case in cases:
        assert "/" not in case and ".." not in case and case == case.strip()
    assert "M-ller-Anna_20260101_s7" in cases
    assert sum(c.startswith("etc-passwd_20260101_s2_") for c in cases) == 2


def test_duplicate_slices_mixed_sizes_and_enhanced_ct_are_refused(tmp_path) -> None:
    import pydicom

    volume = phantom_volume()
    files = write_ct_series(tmp_path / "dup", volume, patient_id="DUP")
    copy = pydicom.dcmread(files[3])
    copy.SOPInstanceUID = copy.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    copy.save_as(tmp_path / "dup" / "copy.dcm", enforce_file_format=True)
    files = write_ct_series(tmp_path / "size", volume, patient_id="SIZE")
    small = pydicom.dcmread(files[2])
    small.Rows, small.Columns = 20, 24
    small.PixelData = np.zeros((20, 24), np.uint16).tobytes()
    small.save_as(files[2], enforce_file_format=True)
    files = write_ct_series(tmp_path / "enh", volume, patient_id="ENH")
    for path in files:
        ds = pydicom.dcmread(path)
        ds.NumberOfFrames = 2
        ds.save_as(path, enforce_file_format=True)
    errors = {s.patient_id: s.error for s in find_series(tmp_path)}
    assert "duplicate slice positions" in errors["DUP"]
    assert "different sizes" in errors["SIZE"]
    assert "multi-frame" in errors["ENH"]
