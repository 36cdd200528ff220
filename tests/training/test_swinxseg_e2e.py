"""End to end on CPU with stock nnU-Net commands: plan, preprocess, pretrain, fine-tune, predict (Swin-X Seg).

Sizes are shrunk by a preset (6 mm voxels, 32x64x64 patches, embedding 12) so that the whole chain runs in a few
minutes on 2 cores; the shipped 1 mm / 96^3 / embedding-48 values are covered by the unit tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunet_cdl.nnunet_env import ensure_nnunet_env

BIN = Path(sys.executable).parent
SMALL_PRESET = {
    "target_spacing": [6.0, 6.0, 6.0], "patch_size": [32, 64, 64], "batch_size": 1,
    "network": {"embed_dim": 12, "num_heads": [1, 2, 2, 4], "decoder_channels": [8, 8, 16, 32, 32, 32]},
}


def _run(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


@pytest.mark.slow
def test_pretrain_finetune_predict_with_stock_nnunet(small_dataset: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(small_dataset, raw / small_dataset.name)
    env = dict(os.environ, nnUNet_raw=str(raw), nnUNet_preprocessed=str(tmp_path / "pre"),
               nnUNet_results=str(tmp_path / "res"), nnUNet_n_proc_DA="0", OMP_NUM_THREADS="2",
               nnUNet_def_n_proc="1")
    ensure_nnunet_env(env)
    preset = tmp_path / "swinxseg_small.json"
    preset.write_text(json.dumps(SMALL_PRESET))

    _run([str(BIN / "nnUNetv2_extract_fingerprint"), "-d", "501", "-np", "1"], env)
    _run([sys.executable, "-c", "import sys; from nnunet_cdl.planning.swinxseg import SwinXSegPlanner; "
          "SwinXSegPlanner(501, preset=sys.argv[1]).plan_experiment()", str(preset)], env)
    _run([str(BIN / "nnUNetv2_preprocess"), "-d", "501", "-plans_name", "nnUNetPlansSwinXSeg", "-c", "3d_fullres",
          "-np", "1"], env)

    weights = tmp_path / "smit.pth"
    log = _run([str(BIN / "nnunet-cdl"), "swinxseg-pretrain", "-d", "501", "--steps", "2", "--batch-size", "1",
                "--unlabeled", str(raw / small_dataset.name / "imagesTs"), "--device", "cpu", "-o", str(weights)],
               env)
    assert "8 images" in log  # 6 preprocessed training cases + 2 unlabeled images
    checkpoint = torch.load(weights, weights_only=False)
    assert checkpoint["swinxseg_pretrain"]["images"] == 8
    assert any(k.startswith("encoder.layers4") for k in checkpoint["network_weights"])

    trainer = "nnUNetTrainerSwinXSeg_1epoch"
    log = _run([str(BIN / "nnUNetv2_train"), "501", "3d_fullres", "0", "-p", "nnUNetPlansSwinXSeg", "-tr", trainer,
                "-device", "cpu", "-pretrained_weights", str(weights)], env)
    assert "Loading pretrained weights" in log
    model = tmp_path / "res" / small_dataset.name / f"{trainer}__nnUNetPlansSwinXSeg__3d_fullres"
    final = torch.load(model / "fold_0" / "checkpoint_final.pth", weights_only=False)
    assert final["inference_allowed_mirroring_axes"] is None
    assert type(final["optimizer_state"]["param_groups"][0]["lr"]) is float
    train_log = next((model / "fold_0").glob("training_log_*.txt")).read_text()
    assert "AdamW lr 0.0002" in train_log and "flips only" in train_log

    out = tmp_path / "predictions"
    _run([str(BIN / "nnUNetv2_predict"), "-i", str(raw / small_dataset.name / "imagesTs"), "-o", str(out), "-d", "501",
          "-p", "nnUNetPlansSwinXSeg", "-tr", trainer, "-c", "3d_fullres", "-f", "0", "-device", "cpu",
          "-npp", "1", "-nps", "1"], env)
    for image in sorted((raw / small_dataset.name / "imagesTs").glob("*_0000.nii.gz")):
        prediction = sitk.ReadImage(str(out / image.name.replace("_0000.nii.gz", ".nii.gz")))
        reference = sitk.ReadImage(str(image))
        assert prediction.GetSize() == reference.GetSize()
        np.testing.assert_allclose(prediction.GetDirection(), reference.GetDirection(), atol=1e-6)
        labels = sitk.GetArrayFromImage(prediction)
        assert labels.min() >= 0 and labels.max() <= 13
