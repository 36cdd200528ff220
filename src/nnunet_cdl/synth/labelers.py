"""Simulated pseudo-labelers: per case and source, corruptions whose true Dice lands in the case group's band.

A case's difficulty group (easy / hard / broken, CDL-UNet section 2.2.1) sets the severity ranges of
`corruption_levels` in configs/synth_presets.json and a target band of true multi-organ Dice. Severities are
drawn once, then scaled together (bisection, same random choices each try) until the Dice lands in the band,
so the groups stay separated whatever the organ sizes and voxel spacing of the preset.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nnunet_cdl.synth.corruption import Spacing, corrupt_label, multi_organ_dice
from nnunet_cdl.synth.presets import synth_config

BOUNDARY_STYLE: tuple[str | None, ...] = ("dilate", "erode", None)
"""Each source's habit at organ boundaries, by source index modulo 3 (None: either, drawn per case)."""
MAX_TRIES = 8


def source_severities(group: str, rng: np.random.Generator) -> dict[str, float]:
    """Corruption kind -> severity for one source on a case of `group`, drawn from `corruption_levels`."""
    levels = synth_config()["corruption_levels"][group]
    severities = {kind: float(rng.uniform(*levels[kind])) for kind in ("boundary", "shift", "blobs", "stray")}
    for kind, (lo, hi, probability) in levels["optional"].items():
        if rng.random() < probability:
            severities[kind] = float(rng.uniform(lo, hi))
    return severities


def simulate_source(
    label: np.ndarray, spacing: Spacing, group: str, source_index: int, seed: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """One labeler's pseudo-label of `label` (uint8 (z, y, x), spacing mm) for a case of `group`.

    Returns the pseudo-label and its manifest record: corruptions with parameters, true Dice, severity scale,
    whether the Dice is inside the group's band, and the number of stray voxels (values > 13).
    """
    lo, hi = synth_config()["corruption_levels"][group]["dice_band"]
    base = source_severities(group, np.random.default_rng(np.random.SeedSequence([seed, 0])))
    style = BOUNDARY_STYLE[source_index % len(BOUNDARY_STYLE)]
    scale, low, high = 1.0, 0.0, np.inf
    for _ in range(MAX_TRIES):
        used = scale
        severities = {kind: min(1.0, value * scale) for kind, value in base.items()}
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
        noisy, records = corrupt_label(label, rng, severities, spacing, boundary_mode=style)
        dice = multi_organ_dice(noisy, label)
        if lo <= dice <= hi:
            break
        if dice < lo:
            high = scale
        else:
            low = scale
            if all(v >= 1.0 for v in severities.values()):
                break
        scale = (low + high) / 2 if np.isfinite(high) else scale * 2.0
    return noisy, {
        "corruptions": records,
        "dice": round(dice, 4),
        "severity_scale": round(used, 4),
        "in_band": bool(lo <= dice <= hi),
        "stray_voxels": int(np.count_nonzero(noisy > 13)),
    }
