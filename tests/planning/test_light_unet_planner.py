"""`nnunet-cdl plan` with LightUNetPlanner on a tiny raw dataset: plans values, stock preprocessing, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from nnunetv2.preprocessing.normalization.default_normalization_schemes import CTNormalization

from nnunet_cdl.errors import CdlError
from nnunet_cdl.planning.cli import main, num_processes, target_spacing
from nnunet_cdl.planning.light_unet import resampled_median_shape

DATASET_ID = 951


def make_raw_dataset(root: Path, dataset_id: int, num_cases: int, with_labels: bool = True) -> Path:
    """Cases of 24x48x48 voxels at (z, y, x) 4 x 2 x 2 mm with two box-shaped labels."""
    folder = root / f"Dataset{dataset_id:03d}_Tiny"
    (folder / "imagesTr").mkdir(parents=True)
    if with_labels:
        (folder / "labelsTr").mkdir()
    rng = np.random.default_rng(dataset_id)
    for case in range(num_cases):
        image = rng.normal(-100, 20, (24, 48, 48)).astype(np.float32)
        label = np.zeros((24, 48, 48), np.uint8)
        label[6:18, 10:30, 10:25] = 1
        label[8:16, 30:40, 28:40] = 2
        image += np.where(label == 1, 150, 0) + np.where(label == 2, 250, 0)
        arrays = [(image, folder / "imagesTr" / f"case{case:03d}_0000.nii.gz")]
        if with_labels:
            arrays.append((label, folder / "labelsTr" / f"case{case:03d}.nii.gz"))
        for array, path in arrays:
            itk = sitk.GetImageFromArray(array)
            itk.SetSpacing((2.0, 2.0, 4.0))
            sitk.WriteImage(itk, str(path))
    dataset_json = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1, "b": 2},
                    "numTraining": num_cases, "file_ending": ".nii.gz"}
    (folder / "dataset.json").write_text(json.dumps(dataset_json))
    return folder


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One `nnunet-cdl plan` run with the default preset, then a plan-only run with a preset and overrides."""
    root = tmp_path_factory.mktemp("plan")
    raw, preprocessed = root / "raw", root / "preprocessed"
    make_raw_dataset(raw, DATASET_ID, 3)
    preset = root / "tiny.json"
    preset.write_text(json.dumps({"patch_size": [16, 64, 96], "batch_size": 3, "reorient_to_ras": True,
                                  "ct_window_hu": [-160, 240]}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("nnUNet_raw", str(raw))
        mp.setenv("nnUNet_preprocessed", str(preprocessed))
        assert main(["-d", str(DATASET_ID), "-npfp", "1", "-np", "1", "--no_pbar"], "plan") == 0
        assert main(["-d", str(DATASET_ID), "--no_pp", "--preset", str(preset), "-overwrite_plans_name",
                     "nnUNetPlansTiny", "-overwrite_target_spacing", "4", "2.4", "2.4"], "plan") == 0
    return {"raw": raw, "dataset": preprocessed / f"Dataset{DATASET_ID:03d}_Tiny"}


def test_plans_hold_the_preset_and_stock_classes(planned: dict[str, Path]) -> None:
    plans = json.loads((planned["dataset"] / "nnUNetPlansLightUNet.json").read_text())
    assert plans["plans_name"] == "nnUNetPlansLightUNet"
    assert plans["experiment_planner_used"] == "LightUNetPlanner"
    assert list(plans["configurations"]) == ["3d_fullres"]
    config = plans["configurations"]["3d_fullres"]
    assert config["spacing"] == [4.0, 1.2, 1.2]
    assert config["patch_size"] == [32, 128, 192] and config["batch_size"] == 2
    assert config["normalization_schemes"] == ["CTNormalization"]
    assert config["preprocessor_name"] == "DefaultPreprocessor"
    assert config["median_image_size_in_voxels"] == [24.0, 80.0, 80.0]
    arch = config["architecture"]
    assert arch["network_class_name"] == "dynamic_network_architectures.architectures.unet.PlainConvUNet"
    assert arch["arch_kwargs"]["features_per_stage"] == [16, 32, 64, 128]
    assert plans["transpose_forward"] == [0, 1, 2]
    assert plans["image_reader_writer"] == "SimpleITKIO"  # nnU-Net's choice: the preset does not reorient
    fingerprint = json.loads((planned["dataset"] / "dataset_fingerprint.json").read_text())
    assert plans["foreground_intensity_properties_per_channel"] == \
        fingerprint["foreground_intensity_properties_per_channel"]


def test_stock_preprocessing_ran(planned: dict[str, Path]) -> None:
    data = planned["dataset"] / "nnUNetPlansLightUNet_3d_fullres"
    assert len(list(data.glob("case*.pkl"))) == 3
    assert len(list((planned["dataset"] / "gt_segmentations").glob("*.nii.gz"))) == 3


def test_preset_file_and_stock_overrides(planned: dict[str, Path]) -> None:
    plans = json.loads((planned["dataset"] / "nnUNetPlansTiny.json").read_text())
    config = plans["configurations"]["3d_fullres"]
    assert config["patch_size"] == [16, 64, 96] and config["batch_size"] == 3
    assert config["spacing"] == [4.0, 2.4, 2.4]
    assert config["data_identifier"] == "nnUNetPlansTiny_3d_fullres"
    assert not (planned["dataset"] / "nnUNetPlansTiny_3d_fullres").exists()  # --no_pp
    assert plans["image_reader_writer"] == "NibabelIOWithReorient"
    window = plans["foreground_intensity_properties_per_channel"]["0"]
    assert (window["percentile_00_5"], window["percentile_99_5"]) == (-160.0, 240.0)
    normalised = CTNormalization(intensityproperties=window).run(np.array([-1000.0, -160.0, 40.0, 240.0, 900.0]))
    assert np.allclose(normalised, [0.0, 0.0, 0.5, 1.0, 1.0])


def test_dataset_without_labels_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_raw_dataset(tmp_path, 952, 2, with_labels=False)
    monkeypatch.setenv("nnUNet_raw", str(tmp_path))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "pre"))
    with pytest.raises(CdlError, match="has no labels.*labelsTr"):
        main(["-d", "952"], "plan")
    assert not (tmp_path / "pre").exists()


def test_user_errors_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("nnUNet_raw", raising=False)
    with pytest.raises(CdlError, match="nnUNet_raw is not set"):
        main(["-d", "1"], "plan")
    make_raw_dataset(tmp_path, 953, 2)
    monkeypatch.setenv("nnUNet_raw", str(tmp_path))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "pre"))
    with pytest.raises(CdlError, match="no dataset with id 954"):
        main(["-d", "954"], "plan")
    with pytest.raises(CdlError, match="did you mean LightUNetPlanner"):
        main(["-d", "953", "-pl", "LightUnetPlaner"], "plan")
    with pytest.raises(CdlError, match="takes no preset"):
        main(["-d", "953", "-pl", "ExperimentPlanner", "--preset", str(tmp_path / "x.json")], "plan")
    with pytest.raises(CdlError, match="-preprocessor_name"):
        main(["-d", "953", "-preprocessor_name", "NoSuchPreprocessor"], "plan")
    with pytest.raises(CdlError, match="three positive numbers"):
        main(["-d", "953", "-overwrite_target_spacing", "4", "1.2"], "plan")
    assert not (tmp_path / "pre").exists()


def test_bad_training_cases_are_named_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = make_raw_dataset(tmp_path, 955, 3)
    monkeypatch.setenv("nnUNet_raw", str(tmp_path))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "pre"))
    short = folder / "labelsTr" / "case001.nii.gz"
    label = sitk.ReadImage(str(short))
    sitk.WriteImage(label[:, :, 2:], str(short))
    truncated = folder / "imagesTr" / "case002_0000.nii.gz"
    truncated.write_bytes(truncated.read_bytes()[:-2000])
    with pytest.raises(CdlError) as error:
        main(["-d", "955"], "plan")
    message = str(error.value)
    assert "2 training case(s) cannot be planned" in message
    assert "case001.nii.gz: 22x48x48 voxels (z, y, x), but the image case001_0000.nii.gz has 24x48x48" in message
    assert "case002_0000.nii.gz: truncated" in message
    assert not (tmp_path / "pre").exists()


def test_numbers_and_shapes() -> None:
    assert target_spacing(None) is None and target_spacing(["4", "1.2", "1.2"]) == (4.0, 1.2, 1.2)
    assert num_processes(["3d_fullres"], [3]) == [3]
    assert num_processes(["2d", "3d_fullres"], [1]) == [1, 1]
    assert all(n >= 1 for n in num_processes(["2d", "3d_fullres", "3d_lowres"], None))
    with pytest.raises(CdlError):
        num_processes(["2d", "3d_fullres", "3d_lowres"], [1, 2])
    shape = resampled_median_shape([[4.0, 2.0, 2.0], [2.0, 1.0, 1.0]], [[24, 48, 48], [40, 100, 100]], [4.0, 1.2, 1.2])
    assert shape.tolist() == [22.0, 81.5, 81.5]  # (24, 80, 80) and (20, 83, 83)
