"""The generator's difficulty groups land in the matching consensus tiers (easy / hard / erroneous).

Scores the shared `small_dataset` fixture (6 training cases: 3 easy, 2 hard, 1 broken, 3 sources) with the
consensus module's public pure functions and its default settings (configs/consensus.json: DS mode "others",
fixed thresholds 0.90 / 0.80), exactly as `nnunet-cdl consensus` does: clean, pairwise Dice, RS, select, DS, tier.
A change to the `dice_band`s or severities in configs/synth_presets.json that breaks the calibration fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nnunet_cdl.consensus import (
    assign_tiers,
    difficulty_score,
    load_config,
    pairwise_dice,
    reliability_scores,
    select_candidate,
)
from nnunet_cdl.io import read_volume
from nnunet_cdl.labels import NUM_CLASSES
from nnunet_cdl.consensus import clean_labels

TIER_OF_GROUP = {"easy": "easy", "hard": "hard", "broken": "erroneous"}


def _case_ds(dataset: Path, case: str, sources: list[str], num_classes: int) -> float:
    """DS of one case, computed like `nnunet-cdl consensus` (default DS mode from configs/consensus.json)."""
    allowed = range(num_classes)
    labels = [clean_labels(read_volume(dataset / "pseudolabels" / s / f"{case}.nii.gz").array, allowed)[0]
              for s in sources]
    dice = pairwise_dice(labels, num_classes)
    return difficulty_score(dice, select_candidate(reliability_scores(dice)), load_config().ds_mode)


def test_groups_land_in_matching_tiers(small_dataset: Path) -> None:
    manifest = json.loads((small_dataset / "manifest.json").read_text())
    train = {case: entry for case, entry in manifest["cases"].items() if entry["split"] == "train"}
    ds = {case: _case_ds(small_dataset, case, manifest["sources"], NUM_CLASSES) for case in train}
    config = load_config()
    assert config.tier_mode == "fixed"
    tiers, thresholds = assign_tiers(ds, config)
    table: dict[str, dict[str, int]] = {}
    for case, entry in train.items():
        row = table.setdefault(entry["group"], {})
        row[tiers[case]] = row.get(tiers[case], 0) + 1
    wrong = {case: (train[case]["group"], round(ds[case], 3)) for case in train
             if tiers[case] != TIER_OF_GROUP[train[case]["group"]]}
    assert not wrong, f"group -> tier table {table}; mismatched cases (group, DS): {wrong}"
    # Not at the edge of a tier: hard cases sit inside (0.80, 0.90) with room on both sides.
    hard = [ds[c] for c, e in train.items() if e["group"] == "hard"]
    assert thresholds.hard + 0.01 < float(np.median(hard)) < thresholds.easy - 0.01, hard
