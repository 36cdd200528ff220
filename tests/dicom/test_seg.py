"""DICOM SEG written by highdicom from a label map, read back by highdicom and by dcmqi (an independent reader):
the same label map on the same grid as the series, with coded organs and the source's patient and study."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from nnunet_cdl.dicom.seg import ORGAN_CODES, write_dicom_seg
from nnunet_cdl.dicom.series import find_series
from nnunet_cdl.errors import CdlError
from nnunet_cdl.labels import LABEL_IDS, ORGANS
from nnunet_cdl.synth.dicom import write_ct_series


def seg_labels_by_highdicom(path: Path, series) -> np.ndarray:
    """Label map (z, y, x; FLARE ids) of a DICOM SEG, frame by source image in the series' slice order."""
    import highdicom as hd

    seg = hd.seg.segread(path)
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in series.files]
    numbers = seg.get_pixels_by_source_instance(uids, combine_segments=True, relabel=False)
    to_flare = np.zeros(seg.number_of_segments + 1, np.uint8)
    for number in seg.segment_numbers:
        to_flare[number] = LABEL_IDS[seg.get_segment_description(number).segment_label.replace(" ", "_")]
    return to_flare[numbers]


def seg_labels_by_dcmqi(path: Path, folder: Path) -> sitk.Image:
    """dcmqi's `segimage2itkimage --mergeSegments`: one label map, its segment numbers mapped to FLARE ids."""
    tool = Path(sys.executable).with_name("segimage2itkimage")
    folder.mkdir()
    subprocess.run([str(tool) if tool.exists() else str(shutil.which("segimage2itkimage")), "--inputDICOM", str(path),
                    "--outputDirectory", str(folder), "--outputType", "nifti", "--mergeSegments"],
                   check=True, capture_output=True)
    meta = json.loads((folder / "meta.json").read_text())
    image = sitk.ReadImage(str(folder / "1.nii.gz"))
    numbers = sitk.GetArrayFromImage(image)
    to_flare = np.zeros(int(numbers.max()) + 1, np.uint8)
    for segment in meta["segmentAttributes"][0]:
        to_flare[int(segment["labelID"])] = LABEL_IDS[segment["SegmentLabel"].replace(" ", "_")]
    out = sitk.GetImageFromArray(to_flare[numbers])
    out.CopyInformation(image)
    return out


def on_series_grid(part: sitk.Image, grid: sitk.Image) -> np.ndarray:
    """`part` (a reader's volume over the slices that hold segments) pasted into `grid`'s voxels, after checking
    that it lies on that grid: same spacing and direction, its origin on a voxel of `grid`."""
    assert np.allclose(part.GetSpacing(), grid.GetSpacing(), atol=1e-4)
    assert np.allclose(part.GetDirection(), grid.GetDirection(), atol=1e-5)
    index = np.asarray(grid.TransformPhysicalPointToContinuousIndex(part.GetOrigin()))
    assert np.allclose(index, np.round(index), atol=1e-3), "origin off the series' grid"
    start = np.round(index).astype(int)[::-1]
    out = np.zeros(sitk.GetArrayFromImage(grid).shape, np.uint8)
    values = sitk.GetArrayFromImage(part)
    out[tuple(slice(s, s + n) for s, n in zip(start, values.shape))] = values
    return out


@pytest.fixture
def series_and_labels(tmp_path):
    volume = np.full((10, 40, 48), -50, np.int16)
    write_ct_series(tmp_path / "dicom", volume, spacing_zyx=(3.0, 0.9, 0.8), row=(-1, 0, 0), column=(0, 1, 0),
                    origin=(60.0, -40.0, 20.0), patient_id="SEG", reverse_files=True)
    series = find_series(tmp_path / "dicom")[0]
    labels = np.zeros(volume.shape, np.uint8)
    labels[1:8, 5:25, 4:30] = LABEL_IDS["liver"]
    labels[2:6, 28:36, 30:44] = LABEL_IDS["left_kidney"]
    labels[3:5, 2:6, 40:46] = LABEL_IDS["right_adrenal_gland"]
    labels[0, 0, 0] = LABEL_IDS["esophagus"]
    return series, labels


def test_seg_round_trip_through_highdicom_and_dcmqi(series_and_labels, tmp_path) -> None:
    series, labels = series_and_labels
    path = tmp_path / "out" / "case.dcm"
    organs = write_dicom_seg(path, series, labels, "test-model")
    assert organs == sorted(LABEL_IDS[n] for n in ("liver", "left_kidney", "right_adrenal_gland", "esophagus"))
    assert np.array_equal(seg_labels_by_highdicom(path, series), labels)
    assert np.array_equal(on_series_grid(seg_labels_by_dcmqi(path, tmp_path / "dcmqi"), series.read()), labels)


def test_seg_header_codes_and_references(series_and_labels, tmp_path) -> None:
    series, labels = series_and_labels
    write_dicom_seg(tmp_path / "case.dcm", series, labels, "test-model")
    seg = pydicom.dcmread(tmp_path / "case.dcm")
    source = pydicom.dcmread(series.files[0], stop_before_pixels=True)
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    for keyword in ("PatientID", "PatientName", "PatientBirthDate", "StudyInstanceUID", "StudyDate",
                    "FrameOfReferenceUID", "AccessionNumber"):
        assert seg.get(keyword) == source.get(keyword), keyword
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    referenced = {i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in series.files}
    by_label = {item.SegmentLabel: item for item in seg.SegmentSequence}
    kidney = by_label["left kidney"]
    assert kidney.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91723000"
    assert kidney.SegmentedPropertyTypeCodeSequence[0].CodeValue == "64033007"
    assert kidney.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence[0].CodeValue == "7771000"
    adrenal = by_label["right adrenal gland"].SegmentedPropertyTypeCodeSequence[0]
    assert adrenal.CodeValue == "23451007" and adrenal.SegmentedPropertyTypeModifierCodeSequence[0].CodeValue == "24028007"
    assert by_label["liver"].SegmentAlgorithmName == "nnunet-cdl" and by_label["liver"].SegmentAlgorithmType == "AUTOMATIC"
    assert seg.ManufacturerModelName == "test-model"


def test_every_flare_organ_has_a_code_and_empty_maps_are_refused(series_and_labels, tmp_path) -> None:
    series, labels = series_and_labels
    assert sorted(ORGAN_CODES) == sorted(ORGANS)
    with pytest.raises(CdlError, match="no organ found"):
        write_dicom_seg(tmp_path / "empty.dcm", series, np.zeros_like(labels), "m")
    assert not (tmp_path / "empty.dcm").exists()


REAL_SERIES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dicom_ct3slice"


@pytest.mark.skipif(not REAL_SERIES.is_dir(), reason="shared/ data not beside the checkout")
def test_seg_of_the_real_ge_series(tmp_path) -> None:
    series = find_series(REAL_SERIES)[0]
    labels = np.zeros((3, 512, 512), np.uint8)
    labels[:, 200:300, 150:320] = LABEL_IDS["liver"]
    labels[1:, 320:360, 330:380] = LABEL_IDS["stomach"]
    write_dicom_seg(tmp_path / "ge.dcm", series, labels, "test-model")  # GE's empty SpecificCharacterSet is fine
    assert np.array_equal(seg_labels_by_highdicom(tmp_path / "ge.dcm", series), labels)
    assert np.array_equal(on_series_grid(seg_labels_by_dcmqi(tmp_path / "ge.dcm", tmp_path / "q"), series.read()),
                          labels)
    assert pydicom.dcmread(tmp_path / "ge.dcm").PatientID == "99000"
