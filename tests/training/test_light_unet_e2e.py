"""End to end with stock nnU-Net commands: nnunet-cdl plan -> nnUNetv2_train (our trainer) -> nnUNetv2_predict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nnunet_cdl.io import read_geometry, read_volume
from nnunet_cdl.labels import NUM_CLASSES

pytestmark = pytest.mark.slow


def test_training_wrote_a_final_checkpoint_without_mirroring(trained_light_unet) -> None:
    model = trained_light_unet.model_folder
    fold = model / f"fold_{trained_light_unet.fold}"
    checkpoint = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["trainer_name"] == trained_light_unet.trainer
    assert checkpoint["inference_allowed_mirroring_axes"] is None
    plans = json.loads((model / "plans.json").read_text())
    config = plans["configurations"]["3d_fullres"]
    assert plans["plans_name"] == "nnUNetPlansLightUNet" and config["patch_size"] == [32, 128, 192]
    assert config["spacing"] == [4.0, 2.4, 2.4]
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    assert len(summary["metric_per_case"]) == 1  # splits_final.json written by the fixture
    log = next(fold.glob("training_log_*.txt")).read_text()
    assert "schedule overridden by environment" in log and "1 epochs x 2 iterations (validation 1)" in log


def test_stock_predict_keeps_the_input_geometry(trained_light_unet, tmp_path: Path) -> None:
    images = trained_light_unet.raw / trained_light_unet.dataset_name / "imagesTs"
    output = tmp_path / "predictions"
    command = [str(Path(sys.executable).with_name("nnUNetv2_predict")), "-i", str(images), "-o", str(output),
               "-d", str(trained_light_unet.dataset_id), "-c", trained_light_unet.configuration,
               "-f", str(trained_light_unet.fold), "-tr", trained_light_unet.trainer, "-p", trained_light_unet.plans,
               "-chk", "checkpoint_final.pth", "-device", "cpu", "-npp", "1", "-nps", "1", "--disable_progress_bar"]
    result = subprocess.run(command, env=trained_light_unet.env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    inputs = sorted(images.glob("*_0000.nii.gz"))
    assert inputs
    for image in inputs:
        prediction = output / image.name.replace("_0000.nii.gz", ".nii.gz")
        shape, geometry = read_geometry(image)
        predicted_shape, predicted_geometry = read_geometry(prediction)
        assert predicted_shape == shape
        assert predicted_geometry.matches(geometry)
        labels = np.unique(read_volume(prediction).array)
        assert labels.min() >= 0 and labels.max() < NUM_CLASSES
