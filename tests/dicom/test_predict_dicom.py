"""`nnunet-cdl predict -i DICOM_FOLDER`: one case per CT series, the same prediction as the series' NIfTI
conversion, refused series reported in cases.csv, and a folder mixing NIfTI and DICOM refused."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_cdl.cli import main as cli_main
from nnunet_cdl.dicom.series import find_series
from nnunet_cdl.synth.dicom import write_ct_series


@pytest.fixture(scope="module")
def ct_volume(trained_light_unet) -> tuple[np.ndarray, tuple[float, float, float]]:
    source = sorted((trained_light_unet.raw / trained_light_unet.dataset_name / "imagesTs").glob("*_0000.nii.gz"))[0]
    image = sitk.ReadImage(str(source))
    return sitk.GetArrayFromImage(image)[:24].astype(np.int16), image.GetSpacing()[::-1]


def predict(model, inputs, out, capsys) -> tuple[int, str]:
    code = cli_main(["predict", "-i", str(inputs), "-o", str(out), "-m", str(model), "-f", "0", "--threads", "2",
                     "--backend", "torch-fp32", "--disable_progress_bar"])
    return code, capsys.readouterr().err


@pytest.mark.slow
def test_dicom_series_predict_like_their_nifti_conversion(trained_light_unet, ct_volume, tmp_path, capsys):
    volume, spacing = ct_volume
    dicom = tmp_path / "dicom"
    write_ct_series(dicom / "study" / "axial", volume, spacing_zyx=spacing, patient_id="P1", series_number=2)
    write_ct_series(dicom / "study" / "flipped", volume[:, ::-1, ::-1], spacing_zyx=spacing, row=(-1, 0, 0),
                    column=(0, -1, 0), origin=(90.0, 60.0, 10.0), patient_id="P1", series_number=3,
                    reverse_files=True)
    write_ct_series(dicom / "study" / "gap", volume, spacing_zyx=spacing, patient_id="P1", series_number=4,
                    drop_slices=(7,))
    nifti = tmp_path / "nifti"
    nifti.mkdir()
    for series in find_series(dicom):
        if series.error is None:
            sitk.WriteImage(series.read(), str(nifti / f"{series.case}_0000.nii.gz"))
    model = trained_light_unet.model_folder
    code, err = predict(model, dicom, tmp_path / "from_dicom", capsys)
    assert code == 2 and "P1_20260101_s4: FAILED" in err and "uneven slice spacing" in err
    assert predict(model, nifti, tmp_path / "from_nifti", capsys)[0] == 0
    for case in ("P1_20260101_s2", "P1_20260101_s3"):
        a = sitk.ReadImage(str(tmp_path / "from_dicom" / f"{case}.nii.gz"))
        b = sitk.ReadImage(str(tmp_path / "from_nifti" / f"{case}.nii.gz"))
        assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
        assert a.GetSize() == b.GetSize() and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4)
        assert np.allclose(a.GetDirection(), b.GetDirection()) and np.allclose(a.GetSpacing(), b.GetSpacing())
    rows = {row["case"]: row for row in csv.DictReader((tmp_path / "from_dicom" / "cases.csv").open())}
    assert rows["P1_20260101_s2"]["status"] == "ok" and rows["P1_20260101_s2"]["slices"] == "24"
    assert rows["P1_20260101_s4"]["status"] == "failed" and "missing slice" in rows["P1_20260101_s4"]["error"]
    assert rows["P1_20260101_s3"]["patient_id"] == "P1" and rows["P1_20260101_s3"]["series_number"] == "3"


@pytest.mark.slow
def test_a_folder_mixing_nifti_and_dicom_is_refused(trained_light_unet, ct_volume, tmp_path, capsys):
    volume, spacing = ct_volume
    mixed = tmp_path / "mixed"
    write_ct_series(mixed / "series", volume[:4], spacing_zyx=spacing)
    sitk.WriteImage(sitk.GetImageFromArray(volume), str(mixed / "case_0000.nii.gz"))
    code, err = predict(trained_light_unet.model_folder, mixed, tmp_path / "out", capsys)
    assert code == 2 and "holds both .nii.gz images" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_dicom_seg_output_matches_the_nifti_output(trained_light_unet, ct_volume, tmp_path, capsys):
    from tests.dicom.test_seg import seg_labels_by_highdicom

    volume, spacing = ct_volume
    dicom = tmp_path / "dicom"
    write_ct_series(dicom / "s", volume[:, ::-1], spacing_zyx=spacing, row=(1, 0, 0), column=(0, -1, 0),
                    patient_id="SEG1", series_number=5, reverse_files=True)
    series = find_series(dicom)[0]
    base = ["predict", "-i", str(dicom), "-m", str(trained_light_unet.model_folder), "-f", "0", "--threads", "2",
            "--backend", "torch-fp32", "--disable_progress_bar", "--no-postprocess"]
    assert cli_main([*base, "-o", str(tmp_path / "nifti")]) == 0
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "nifti" / f"{series.case}.nii.gz")))
    code = cli_main([*base, "-o", str(tmp_path / "seg"), "--output-type", "dicom-seg"])
    err = capsys.readouterr().err
    if not expected.any():  # a SEG needs a segment: an empty prediction fails its case with the reason
        assert code == 2 and "no organ found" in err and not (tmp_path / "seg" / f"{series.case}.dcm").exists()
        return
    assert code == 0, err
    assert np.array_equal(seg_labels_by_highdicom(tmp_path / "seg" / f"{series.case}.dcm", series), expected)
    assert sorted(p.name for p in (tmp_path / "seg").iterdir()) == sorted(["cases.csv", f"{series.case}.dcm"])
    code = cli_main([*base, "-o", str(tmp_path / "x"), "--output-type", "dicom-seg", "-i", str(tmp_path / "nifti")])
    assert code == 2 and "needs DICOM input" in capsys.readouterr().err
