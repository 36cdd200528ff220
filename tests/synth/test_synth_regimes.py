"""Labeler regimes of the generator: shared habits, independent errors, one failing labeler, a weak reference."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from nnunet_cdl.cli import main as cli_main
from nnunet_cdl.synth import multi_organ_dice, synth_case
from nnunet_cdl.synth.corruption import FAILURES, TOTALSEGMENTATOR_IDS, fail_label
from nnunet_cdl.synth.labelers import case_failure, regime_config, regime_names, simulate_source, source_role
from nnunet_cdl.synth.presets import synth_config

FAILURE_SETTINGS = synth_config()["regimes"]["failing-labeler"]["failures"]


@pytest.fixture(scope="module")
def case() -> tuple[np.ndarray, tuple[float, float, float]]:
    _, label, geometry = synth_case("small", 11)
    return label, geometry.spacing_zyx


def test_regimes_are_configured() -> None:
    assert regime_names() == ("shared-bias", "independent", "failing-labeler", "weak-reference")
    assert synth_config()["default_regime"] == "shared-bias"
    with pytest.raises(Exception, match="unknown regime"):
        regime_config("chaos")


@pytest.mark.parametrize("kind", FAILURES)
def test_each_failure_ruins_the_label(case, kind: str) -> None:
    label, spacing = case
    before = label.copy()
    failed, record = fail_label(label, np.random.default_rng(3), kind, spacing, FAILURE_SETTINGS)
    assert record["kind"] == kind and record["failure"] is True
    assert failed.shape == label.shape and failed.dtype == label.dtype
    assert multi_organ_dice(failed, label) < 0.9, kind
    assert np.array_equal(label, before)


def test_label_ids_failure_writes_another_convention(case) -> None:
    label, spacing = case
    failed, _ = fail_label(label, np.random.default_rng(0), "label_ids", spacing, FAILURE_SETTINGS)
    for flare, other in TOTALSEGMENTATOR_IDS.items():
        assert np.array_equal(failed == other, label == flare) or not (label == flare).any()


def test_case_failure_is_seeded_and_only_in_its_regime() -> None:
    draws = [case_failure("failing-labeler", "easy", 3, seed) for seed in range(200)]
    assert draws == [case_failure("failing-labeler", "easy", 3, seed) for seed in range(200)]
    failing = [d for d in draws if d[0] is not None]
    assert 0.7 < len(failing) / len(draws) < 0.9  # failing_probability 0.8
    assert set(Counter(source for source, _ in failing)) == {0, 1, 2}
    assert set(kind for _, kind in failing) == set(FAILURES)
    assert case_failure("failing-labeler", "broken", 3, 1) == (None, None)
    assert all(case_failure(regime, "easy", 3, 5) == (None, None)
               for regime in ("shared-bias", "independent", "weak-reference"))


def test_weak_reference_is_worse_than_the_labelers(case) -> None:
    label, spacing = case
    assert [source_role("weak-reference", k, 3) for k in range(3)] == ["labeler", "labeler", "reference"]
    assert source_role("independent", 2, 3) == "labeler"
    records = [simulate_source(label, spacing, "easy", k, 40 + k, regime="weak-reference")[1] for k in range(3)]
    assert records[2]["role"] == "reference" and 0.8 <= records[2]["dice"] <= 0.9
    assert min(r["dice"] for r in records[:2]) >= 0.95


def test_default_regime_is_unchanged_shared_bias(case) -> None:
    label, spacing = case
    default = simulate_source(label, spacing, "hard", 0, 7)
    shared = simulate_source(label, spacing, "hard", 0, 7, regime="shared-bias")
    assert np.array_equal(default[0], shared[0]) and default[1] == shared[1]
    modes = [c["mode"] for c in default[1]["corruptions"] if c["kind"] == "boundary"]
    assert modes == ["dilate"]  # source 1's habit


def test_synth_cli_regime_flag_writes_failures_into_the_manifest(tmp_path: Path) -> None:
    assert cli_main(["synth", "--out", str(tmp_path), "--dataset-id", "77", "--cases", "4", "--test-cases", "0",
                     "--regime", "failing-labeler", "--seed", "3"]) == 0
    manifest = json.loads((tmp_path / "Dataset077_CDLPhantom" / "manifest.json").read_text())
    assert manifest["regime"] == "failing-labeler" and manifest["reference_sources"] == []
    for entry in manifest["cases"].values():
        failing = entry["failing_source"]
        for name, source in entry["sources"].items():
            assert (source["failure"] is not None) == (name == failing)
            if name == failing:
                assert source["failure"] in FAILURES and source["corruptions"][-1]["failure"] is True
    assert any(e["failing_source"] for e in manifest["cases"].values())
    with pytest.raises(SystemExit) as stop:
        cli_main(["synth", "--out", str(tmp_path), "--dataset-id", "78", "--cases", "1", "--regime", "chaos"])
    assert stop.value.code == 2 and not (tmp_path / "Dataset078_CDLPhantom").exists()
