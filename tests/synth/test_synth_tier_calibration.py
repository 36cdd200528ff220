"""The generator's difficulty groups land in the matching consensus tiers (easy / hard / erroneous).

Scores the shared `small_dataset` fixture (6 training cases: 3 easy, 2 hard, 1 broken, 3 sources) with the
consensus module's public pure functions and its default settings (configs/consensus.json: DS mode "trusted",
fixed thresholds 0.90 / 0.80), exactly as `nnunet-cdl consensus` does: clean, pairwise Dice, trust, DS, tier.
A change to the `dice_band`s or severities in configs/synth_presets.json that breaks the calibration fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nnunet_cdl.consensus import (
    Thresholds,
    assign_tiers,
    difficulty_score,
    load_config,
    pairwise_agreement,
    reliability_scores,
    select_candidate,
    trusted_agreement,
    trusted_organs,
)
from nnunet_cdl.io import read_volume
from nnunet_cdl.labels import NUM_CLASSES
from nnunet_cdl.consensus import clean_labels

TIER_OF_GROUP = {"easy": "easy", "hard": "hard", "broken": "erroneous"}


def _case_ds(dataset: Path, case: str, sources: list[str], num_classes: int, ds_mode: str) -> float:
    """DS of one case, computed like `nnunet-cdl consensus` (trust margin from configs/consensus.json)."""
    allowed = range(num_classes)
    labels = [clean_labels(read_volume(dataset / "pseudolabels" / s / f"{case}.nii.gz").array, allowed)[0]
              for s in sources]
    dice, per_organ, _ = pairwise_agreement(labels, num_classes)
    trusted_mean = trusted_agreement(per_organ, trusted_organs(per_organ, load_config().trust_margin))[1]
    return difficulty_score(dice, select_candidate(reliability_scores(dice)), ds_mode, None, trusted_mean)


def _tiers(dataset: Path, manifest: dict, ds_mode: str) -> tuple[dict[str, str], dict[str, float], Thresholds]:
    train = [case for case, entry in manifest["cases"].items() if entry["split"] == "train"]
    ds = {case: _case_ds(dataset, case, manifest["sources"], NUM_CLASSES, ds_mode) for case in train}
    config = load_config()
    assert config.tier_mode == "fixed"
    tiers, thresholds = assign_tiers(ds, config)
    return tiers, ds, thresholds


def test_groups_land_in_matching_tiers_by_candidate_agreement(small_dataset: Path) -> None:
    """DS "others" (the agreement of all candidates, as the paper scores): every group lands in its own tier."""
    manifest = json.loads((small_dataset / "manifest.json").read_text())
    tiers, ds, thresholds = _tiers(small_dataset, manifest, "others")
    groups = {case: manifest["cases"][case]["group"] for case in tiers}
    wrong = {case: (groups[case], round(ds[case], 3)) for case in tiers if tiers[case] != TIER_OF_GROUP[groups[case]]}
    assert not wrong, f"mismatched cases (group, DS): {wrong}"
    # Not at the edge of a tier: hard cases sit inside (0.80, 0.90) with room on both sides.
    hard = [ds[c] for c in tiers if groups[c] == "hard"]
    assert thresholds.hard + 0.01 < float(np.median(hard)) < thresholds.easy - 0.01, hard


def test_default_trusted_ds_keeps_easy_and_hard_and_finds_the_broken(small_dataset: Path) -> None:
    """The default DS discounts one candidate's organ-level errors, which is most of what makes a hard case hard
    (and what trusted-vote repairs), so hard cases may rate easy; easy stay easy and broken are erroneous."""
    manifest = json.loads((small_dataset / "manifest.json").read_text())
    assert load_config().ds_mode == "trusted"
    tiers, ds, _ = _tiers(small_dataset, manifest, "trusted")
    for case, tier in tiers.items():
        group = manifest["cases"][case]["group"]
        expected = {"easy": {"easy"}, "hard": {"easy", "hard"}, "broken": {"erroneous"}}[group]
        assert tier in expected, (case, group, round(ds[case], 3))
