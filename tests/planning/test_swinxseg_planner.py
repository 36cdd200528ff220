"""SwinXSegPlanner: config validation, the CT window through stock CTNormalization, and stock preprocessing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_cdl.errors import CdlError
from nnunet_cdl.planning.shared import window_intensity_properties
from nnunet_cdl.planning.swinxseg import load_config, network_architecture

BIN = Path(sys.executable).parent


def test_shipped_config_is_the_papers() -> None:
    config = load_config()
    assert config["plans_name"] == "nnUNetPlansSwinXSeg"
    assert config["target_spacing"] == [1.0, 1.0, 1.0]
    assert config["patch_size"] == [96, 96, 96]
    assert config["ct_window_hu"] == [-250.0, 250.0]
    assert config["network"]["window_size"] == [4, 4, 4]


def test_override_merges_network_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"patch_size": [64, 64, 64], "network": {"embed_dim": 12}}))
    config = load_config(path)
    assert config["patch_size"] == [64, 64, 64]
    assert config["network"]["embed_dim"] == 12 and config["network"]["depths"] == [2, 2, 2, 2]


@pytest.mark.parametrize("override, message", [
    ({"patch_size": [96, 96, 80]}, "multiples of 32"),
    ({"target_spacing": [1.0, 0.0, 1.0]}, "target_spacing"),
    ({"ct_window_hu": [250, -250]}, "ct_window_hu"),
    ({"batch_size": 0}, "batch_size"),
    ({"pach_size": [96, 96, 96]}, "unknown key"),
    ({"network": {"embedding": 48}}, "unknown key"),
])
def test_bad_config_names_file_and_key(tmp_path: Path, override: dict, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(override))
    with pytest.raises(CdlError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_window_maps_to_unit_interval_with_stock_ct_normalization() -> None:
    from nnunetv2.preprocessing.normalization.default_normalization_schemes import CTNormalization

    hu = np.array([-1000.0, -250.0, 0.0, 125.0, 250.0, 3000.0])
    normalised = CTNormalization(intensityproperties=window_intensity_properties(-250, 250)).run(hu.copy())
    np.testing.assert_allclose(normalised, [0.0, 0.0, 0.5, 0.75, 1.0, 1.0], atol=1e-6)


def test_architecture_rebuilds_with_stock_nnunet() -> None:
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    network = dict(load_config()["network"], embed_dim=12, num_heads=[1, 1, 2, 2],
                   decoder_channels=[8, 8, 16, 16, 32, 32])
    arch = json.loads(json.dumps(network_architecture(network)))
    net = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                 1, 5, allow_init=True, deep_supervision=False)
    assert type(net).__name__ == "SwinXSeg"
    assert net.decoder.seg_layers.out_channels == 5


def _write_case(folder: Path, case: str, image: np.ndarray, label: np.ndarray, flip_x: bool) -> None:
    """Write (z, y, x) arrays at 2.0 x 1.5 x 1.5 mm; `flip_x` stores the same anatomy with a flipped x axis."""
    spacing, origin, direction = (1.5, 1.5, 2.0), [0.0, 0.0, 0.0], [1.0, 0, 0, 0, 1, 0, 0, 0, 1]
    if flip_x:
        image, label = image[:, :, ::-1], label[:, :, ::-1]
        origin[0] = (image.shape[2] - 1) * spacing[0]
        direction[0] = -1.0
    for array, path in ((image, folder / "imagesTr" / f"{case}_0000.nii.gz"),
                        (label, folder / "labelsTr" / f"{case}.nii.gz")):
        itk = sitk.GetImageFromArray(np.ascontiguousarray(array))
        itk.SetSpacing(spacing)
        itk.SetOrigin(origin)
        itk.SetDirection(direction)
        sitk.WriteImage(itk, str(path))


@pytest.mark.slow
def test_stock_preprocessing_windows_and_reorients(tmp_path: Path) -> None:
    raw = tmp_path / "raw" / "Dataset951_SwinPlan"
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    z, y, x = np.meshgrid(np.arange(24), np.arange(32), np.arange(40), indexing="ij")
    image = (x * 40.0 - 800.0 + y).astype(np.int16)  # -800 .. 791 HU, increasing along x
    label = ((abs(z - 12) < 6) & (abs(y - 16) < 8) & (x < 12)).astype(np.uint8)
    _write_case(raw, "case_0000", image, label, flip_x=False)
    _write_case(raw, "case_0001", image, label, flip_x=True)
    (raw / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1}, "numTraining": 2,
        "file_ending": ".nii.gz"}))
    env = dict(os.environ, nnUNet_raw=str(tmp_path / "raw"), nnUNet_preprocessed=str(tmp_path / "pre"),
               nnUNet_results=str(tmp_path / "res"), nnUNet_n_proc_DA="0")
    run = dict(env=env, check=True, capture_output=True, text=True)
    subprocess.run([str(BIN / "nnUNetv2_extract_fingerprint"), "-d", "951", "-np", "1"], **run)
    planned = subprocess.run([sys.executable, "-c", "from nnunet_cdl.planning.swinxseg import SwinXSegPlanner; "
                              "SwinXSegPlanner('951').plan_experiment()"], **run)
    assert "NibabelIOWithReorient" in planned.stdout
    subprocess.run([str(BIN / "nnUNetv2_preprocess"), "-d", "951", "-plans_name", "nnUNetPlansSwinXSeg", "-c",
                    "3d_fullres", "-np", "1"], **run)

    plans = json.loads((tmp_path / "pre" / "Dataset951_SwinPlan" / "nnUNetPlansSwinXSeg.json").read_text())
    assert plans["image_reader_writer"] == "NibabelIOWithReorient"
    assert plans["foreground_intensity_properties_per_channel"]["0"]["std"] == 500.0
    configuration = plans["configurations"]["3d_fullres"]
    assert configuration["spacing"] == [1.0, 1.0, 1.0] and configuration["patch_size"] == [96, 96, 96]
    assert configuration["normalization_schemes"] == ["CTNormalization"]

    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    folder = tmp_path / "pre" / "Dataset951_SwinPlan" / "nnUNetPlansSwinXSeg_3d_fullres"
    dataset = infer_dataset_class(str(folder))(str(folder))
    data = {case: np.asarray(dataset.load_case(case)[0][0]) for case in ("case_0000", "case_0001")}
    assert data["case_0000"].shape == (48, 48, 60)  # 24 x 32 x 40 voxels at 2 x 1.5 x 1.5 mm -> 1 mm
    assert data["case_0000"].min() >= 0.0 and data["case_0000"].max() <= 1.0
    # Both scans land in the same (RAS) orientation although they are stored with opposite x axes.
    np.testing.assert_allclose(data["case_0000"], data["case_0001"], atol=1e-4)
    # ITK's x index runs towards the patient's left (LPS); in RAS order the last axis runs to the right, so the
    # HU ramp that rises with the stored x index falls along the preprocessed last axis.
    assert data["case_0000"][24, 24, 0] > 0.95 and data["case_0000"][24, 24, -1] < 0.05
