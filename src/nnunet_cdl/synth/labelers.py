"""Simulated pseudo-labelers: per case and source, corruptions whose true Dice lands in the case group's band.

A case's difficulty group (easy / hard / broken, CDL-UNet section 2.2.1) sets the severity ranges of
`corruption_levels` in configs/synth_presets.json and a target band of true multi-organ Dice. Severities are
drawn once, then scaled together (bisection, same random choices each try) until the Dice lands in the band,
so the groups stay separated whatever the organ sizes and voxel spacing of the preset.

A regime (`regimes` in the same file, `nnunet-cdl synth --regime`) decides how the sources' errors relate:
boundary habits shared or independent, one source failing on a case, or a last source that is a weaker model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nnunet_cdl.errors import CdlError
from nnunet_cdl.synth.corruption import FAILURES, Spacing, corrupt_label, fail_label, multi_organ_dice
from nnunet_cdl.synth.presets import synth_config

MAX_TRIES = 8


def regime_names() -> tuple[str, ...]:
    return tuple(synth_config()["regimes"])


def default_regime() -> str:
    return str(synth_config()["default_regime"])


def regime_config(regime: str) -> dict[str, Any]:
    """The settings of one labeler regime; `CdlError` for an unknown name."""
    regimes = synth_config()["regimes"]
    if regime not in regimes:
        raise CdlError(f"unknown regime {regime!r}; choose one of {', '.join(regimes)}")
    return regimes[regime]


def source_role(regime: str, source_index: int, num_sources: int) -> str:
    """"reference" for the weaker model of the weak-reference regime (the last source), else "labeler"."""
    if "reference_levels" in regime_config(regime) and num_sources >= 2 and source_index == num_sources - 1:
        return "reference"
    return "labeler"


def case_failure(regime: str, group: str, num_sources: int, seed: int) -> tuple[int | None, str | None]:
    """(index of the source that fails on this case, failure kind), or (None, None); drawn from the case's `seed`.

    Only the failing-labeler regime fails a source, and only on easy and hard cases (broken cases are bad for
    every source already).
    """
    config = regime_config(regime)
    if "failing_probability" not in config or group == "broken" or num_sources < 2:
        return None, None
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    if rng.random() >= float(config["failing_probability"]):
        return None, None
    return int(rng.integers(num_sources)), str(rng.choice(FAILURES))


def source_severities(levels_name: str, rng: np.random.Generator) -> dict[str, float]:
    """Corruption kind -> severity for one source, drawn from `corruption_levels[levels_name]`."""
    levels = synth_config()["corruption_levels"][levels_name]
    severities = {kind: float(rng.uniform(*levels[kind])) for kind in ("boundary", "shift", "blobs", "stray")}
    for kind, (lo, hi, probability) in levels["optional"].items():
        if rng.random() < probability:
            severities[kind] = float(rng.uniform(lo, hi))
    return severities


def simulate_source(
    label: np.ndarray, spacing: Spacing, group: str, source_index: int, seed: int, regime: str | None = None,
    num_sources: int = 3, failure: str | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """One labeler's pseudo-label of `label` (uint8 (z, y, x), spacing mm) for a case of `group`.

    `regime` (default: the configured default) sets the source's boundary habit and, for the weak-reference
    regime's last source, its corruption levels; `failure` (a `FAILURES` kind, from `case_failure`) is applied
    after the group's corruptions. Returns the pseudo-label and its manifest record: corruptions with parameters,
    true Dice, severity scale, whether the Dice is inside the band, the number of stray voxels (values > 13),
    the source's role and its failure (or None).
    """
    regime = regime or default_regime()
    config = regime_config(regime)
    role = source_role(regime, source_index, num_sources)
    levels = config["reference_levels"] if role == "reference" and group != "broken" else group
    habits = config["boundary_habits"]
    style = config.get("reference_habit") if role == "reference" else habits[source_index % len(habits)]
    lo, hi = synth_config()["corruption_levels"][levels]["dice_band"]
    base = source_severities(levels, np.random.default_rng(np.random.SeedSequence([seed, 0])))
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
    in_band = bool(lo <= dice <= hi)
    if failure is not None:
        noisy, failure_record = fail_label(noisy, np.random.default_rng(np.random.SeedSequence([seed, 2])), failure,
                                           spacing, config["failures"])
        records.append(failure_record)
        dice = multi_organ_dice(noisy, label)
    return noisy, {
        "corruptions": records,
        "dice": round(dice, 4),
        "severity_scale": round(used, 4),
        "in_band": in_band,
        "stray_voxels": int(np.count_nonzero(noisy > 13)),
        "role": role,
        "failure": failure,
    }
