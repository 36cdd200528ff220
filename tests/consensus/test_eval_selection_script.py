"""scripts/eval_selection.py on the shared phantom dataset: selection report and refined-label Dice agree."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "eval_selection.py"


def test_eval_selection_reports_selection_and_both_refinements(small_dataset: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("eval_selection", SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "results.json"
    assert script.main(["--work", str(tmp_path), "--dataset", str(small_dataset), "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["cases"] == 6 and results["failed"] == 0
    refined = results["refined_label_true_dice"]["all"]
    assert refined["cases"] == 6
    # the selected labels' Dice recomputed from the written labelsTr equals the generator manifest's
    assert refined["select"] == pytest.approx(results["true_dice_selected"], abs=2e-4)
    assert refined["best_candidate"] == pytest.approx(results["true_dice_best"], abs=1e-4)
    assert 0.0 < refined["vote"] <= 1.0
