"""The shipped reference model (models/light-unet-phantoms): a complete, small nnU-Net model folder that our
predictor and nnU-Net's stock `nnUNetv2_predict_from_modelfolder` both load, and that segments a phantom it never
saw (a seed outside its training and held-out seeds) well above chance."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_cdl.cli import main as cli_main
from nnunet_cdl.inference.model_loading import read_checkpoint
from nnunet_cdl.io import read_json, write_volume
from nnunet_cdl.consensus.scores import confusion_matrix
from nnunet_cdl.consensus.scores import organ_dice as scores_organ_dice
from nnunet_cdl.labels import NUM_CLASSES, ORGAN_IDS
from nnunet_cdl.nnunet_env import ensure_nnunet_env
from nnunet_cdl.synth.phantom import synth_case

REFERENCE = Path(__file__).resolve().parents[2] / "models" / "light-unet-phantoms"
FRESH_SEED = 424242
MEAN_DSC_FLOOR = 0.3
"""Mean Dice over the organs in the truth; well under the model card's held-out FLARE mean DSC (0.864 after 5600
iterations: every organ at 0.63-0.97)."""
pytestmark = pytest.mark.skipif(
    not (REFERENCE / "fold_0" / "checkpoint_final.pth").is_file(),
    reason="no reference model shipped yet (models/light-unet-phantoms; make it with scripts/train_reference.py)",
)


def organ_dice(prediction: np.ndarray, truth: np.ndarray) -> dict[int, float]:
    """Dice per organ present in the truth."""
    per_organ = scores_organ_dice(confusion_matrix(truth, prediction, NUM_CLASSES))
    return {organ: float(per_organ[organ - 1]) for organ in ORGAN_IDS if (truth == organ).any()}


@pytest.fixture(scope="module")
def fresh_phantom(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("reference")
    image, labels, geometry = synth_case("flare", FRESH_SEED, num_slices=60)
    write_volume(root / "images" / "fresh_0000.nii.gz", image, geometry)
    write_volume(root / "truth.nii.gz", labels, geometry)
    return {"root": root, "images": root / "images", "truth": root / "truth.nii.gz"}


def test_model_folder_is_complete_and_small() -> None:
    for name in ("plans.json", "dataset.json", "MODEL_CARD.md", "fold_0/checkpoint_final.pth"):
        assert (REFERENCE / name).is_file(), name
    checkpoint_file = REFERENCE / "fold_0" / "checkpoint_final.pth"
    assert checkpoint_file.stat().st_size < 10 * 2**20
    checkpoint = read_checkpoint(checkpoint_file)
    assert "optimizer_state" not in checkpoint
    assert {"network_weights", "init_args", "trainer_name", "inference_allowed_mirroring_axes"} <= set(checkpoint)
    plans = read_json(REFERENCE / "plans.json")
    assert plans["plans_name"] == "nnUNetPlansLightUNet"
    assert plans["configurations"]["3d_fullres"]["patch_size"] == [32, 128, 192]
    assert "scripts/train_reference.py" in (REFERENCE / "MODEL_CARD.md").read_text()


@pytest.mark.slow
def test_our_predictor_segments_a_fresh_phantom(fresh_phantom: dict[str, Path]) -> None:
    out = fresh_phantom["root"] / "ours"
    assert cli_main(["predict", "-i", str(fresh_phantom["images"]), "-o", str(out), "-m", str(REFERENCE),
                     "-f", "0", "--threads", "2"]) == 0
    prediction = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "fresh.nii.gz")))
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(fresh_phantom["truth"])))
    scores = organ_dice(prediction, truth)
    assert len(scores) >= 8
    assert np.mean(list(scores.values())) >= MEAN_DSC_FLOOR, scores


@pytest.mark.slow
def test_stock_nnunet_loads_and_predicts_with_it(fresh_phantom: dict[str, Path]) -> None:
    out = fresh_phantom["root"] / "stock"
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    env.update(nnUNet_raw=str(fresh_phantom["root"]), nnUNet_preprocessed=str(fresh_phantom["root"]),
               nnUNet_results=str(fresh_phantom["root"]), nnUNet_def_n_proc="1", OMP_NUM_THREADS="2")
    ensure_nnunet_env(env)
    command = [str(Path(sys.executable).with_name("nnUNetv2_predict_from_modelfolder")), "-i",
               str(fresh_phantom["images"]), "-o", str(out), "-m", str(REFERENCE), "-f", "0", "-device", "cpu",
               "-npp", "1", "-nps", "1", "--disable_progress_bar"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    prediction = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "fresh.nii.gz")))
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(fresh_phantom["truth"])))
    assert prediction.shape == truth.shape
    assert np.mean(list(organ_dice(prediction, truth).values())) >= MEAN_DSC_FLOOR
