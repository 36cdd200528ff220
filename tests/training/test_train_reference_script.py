"""scripts/train_reference.py's pieces that need no training: recipe flags, weights-only export, the model card."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_reference.py"


def load_script():
    spec = importlib.util.spec_from_file_location("train_reference", SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_flags_override_the_recipe_file() -> None:
    script = load_script()
    recipe_file = SCRIPT.parents[1] / "configs" / "reference_model.json"
    flags = argparse.Namespace(budget_min=7.5, train_cases=None, trainer=None, max_epochs=3)
    recipe = script.load_recipe(recipe_file, flags)
    assert recipe["budget_min"] == 7.5 and recipe["max_epochs"] == 3
    assert recipe["trainer"] == json.loads(recipe_file.read_text())["trainer"]


def test_export_keeps_weights_and_loading_keys_but_no_optimizer_state(tmp_path: Path) -> None:
    script = load_script()
    trained, out = tmp_path / "trained", tmp_path / "model"
    (trained / "fold_0").mkdir(parents=True)
    for name in ("plans.json", "dataset.json", "dataset_fingerprint.json"):
        (trained / name).write_text("{}")
    checkpoint = {key: f"<{key}>" for key in script.CHECKPOINT_KEYS}
    checkpoint.update(network_weights={"w": torch.ones(2)}, optimizer_state={"state": torch.zeros(1000)},
                      grad_scaler_state=None, _best_ema=0.1)
    torch.save(checkpoint, trained / "fold_0" / "checkpoint_final.pth")
    exported = torch.load(script.export_model(trained, out), map_location="cpu", weights_only=False)
    assert set(exported) == set(script.CHECKPOINT_KEYS)
    assert torch.equal(exported["network_weights"]["w"], torch.ones(2))
    assert (out / "plans.json").is_file() and not (out / "fold_0" / "checkpoint_final.pth.tmp").exists()


def test_model_card_says_whether_the_target_is_met() -> None:
    script = load_script()
    recipe = json.loads((SCRIPT.parents[1] / "configs" / "reference_model.json").read_text())
    record = {
        "plans": {"image_reader_writer": "NibabelIOWithReorient", "spacing": [4.0, 1.2, 1.2],
                  "patch_size": [32, 128, 192]},
        "checkpoint_mb": 5.3, "continued_from": None, "seconds": {"predict": 60.0},
        "training": {"trainer": recipe["trainer"], "epochs": 2, "iterations": 50, "seconds": 240.0,
                     "precision": "float32", "device": "cpu"},
        "cpu": {"model": "Test CPU", "cores": 2, "extensions": ["avx2"]}, "torch": "2.x",
        "cases": [{"case": "heldout_00_0024", "split": "heldout", "shape_zyx": [24, 512, 512]}],
    }

    def summary(liver: float, others: float) -> dict:
        organs = {str(o): {"dsc": {"mean": liver if o == 1 else others}, "nsd": {"mean": 0.5}} for o in range(1, 14)}
        mean = (liver + 12 * others) / 13
        return {"organs": organs, "overall": {"dsc": {"mean": mean, "n": 8}, "nsd": {"mean": 0.5}}}

    failing = script.model_card(recipe, record, summary(0.8, 0.0), "python scripts/train_reference.py")
    assert "not met" in failing and "right_kidney" in failing and "python scripts/train_reference.py" in failing
    passing = script.model_card(recipe, record, summary(0.95, 0.9), "python scripts/train_reference.py")
    assert "): met." in passing
    assert "Predictor: predictor settings not recorded." in passing


def test_model_card_names_the_predictor_settings_of_each_run() -> None:
    script = load_script()
    settings = json.loads((SCRIPT.parents[1] / "configs" / "inference.json").read_text())
    settings["tiling"] |= {"locate_first": True, "locate_min_fraction": 1.0}
    assert script.predictor_summary(settings) == (
        f"locate-first tiling (locate_min_fraction 1.0), {settings['export']} export, backend {settings['backend']}")
    settings["tiling"]["locate_first"] = False
    assert script.predictor_summary(settings).startswith("center-first tiling, ")
    assert script.predictor_summary(None) == "predictor settings not recorded"
