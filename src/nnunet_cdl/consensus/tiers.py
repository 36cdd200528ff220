"""Difficulty tiers (easy / hard / erroneous) from Difficulty Scores, and the consensus settings file."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from nnunet_cdl.consensus.scores import DS_MODES
from nnunet_cdl.errors import CdlError
from nnunet_cdl.io import read_json

TIERS: tuple[str, ...] = ("easy", "hard", "erroneous")
TRAINABLE_TIERS: tuple[str, ...] = ("easy", "hard")
TIER_MODES: tuple[str, ...] = ("fixed", "quantile")
REFINE_MODES: tuple[str, ...] = ("trusted-vote", "select", "vote", "staple")
"""How the refined label is made: a vote without the candidates untrusted for an organ, the highest-RS candidate
(CDL-UNet), a plain voxel-wise majority vote, or SimpleITK's multi-label STAPLE."""
DEFAULT_REFINE = "select"
"""Used when a settings or part file predates `refine`."""
DEFAULT_TRUST_MARGIN = 0.1
"""Used when a settings or part file predates `trust_margin`."""
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "consensus.json"


@dataclass(frozen=True)
class Thresholds:
    """DS >= easy -> easy; hard <= DS < easy -> hard; DS < hard -> erroneous (DS is unitless, 0..1)."""

    easy: float
    hard: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.hard <= self.easy <= 1.0:
            raise CdlError(f"tier thresholds need 0 <= hard <= easy <= 1, got easy={self.easy}, hard={self.hard}")


@dataclass(frozen=True)
class ConsensusConfig:
    """Settings of `nnunet-cdl consensus` (configs/consensus.json, overridable by flags)."""

    ds_mode: str
    tier_mode: str
    thresholds: Thresholds
    quantiles: Thresholds
    """In quantile mode: the easy / hard thresholds are these quantiles of the cases' DS distribution."""
    refine: str
    trust_margin: float = DEFAULT_TRUST_MARGIN
    """Per-organ Dice below the best pair's by more than this: the candidate is not trusted for that organ."""

    def with_overrides(self, **changes: Any) -> ConsensusConfig:
        """A copy with the non-None keyword values replaced (thresholds / quantiles given as floats by role)."""
        out = self
        for key in ("ds_mode", "tier_mode", "refine", "trust_margin"):
            if changes.get(key) is not None:
                out = replace(out, **{key: changes[key]})
        for key in ("thresholds", "quantiles"):
            easy, hard = changes.get(f"{key}_easy"), changes.get(f"{key}_hard")
            if easy is not None or hard is not None:
                old: Thresholds = getattr(out, key)
                new = Thresholds(old.easy if easy is None else easy, old.hard if hard is None else hard)
                out = replace(out, **{key: new})
        out.validate()
        return out

    def validate(self) -> None:
        if self.ds_mode not in DS_MODES:
            raise CdlError(f"ds_mode {self.ds_mode!r} is not one of {DS_MODES}")
        if self.tier_mode not in TIER_MODES:
            raise CdlError(f"tier_mode {self.tier_mode!r} is not one of {TIER_MODES}")
        if self.refine not in REFINE_MODES:
            raise CdlError(f"refine {self.refine!r} is not one of {REFINE_MODES}")
        if not 0.0 <= self.trust_margin <= 1.0:
            raise CdlError(f"trust_margin must be in 0..1, got {self.trust_margin}")


def load_config(path: str | os.PathLike[str] | None = None) -> ConsensusConfig:
    """Read a consensus settings file (default: the packaged configs/consensus.json)."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    data = read_json(path)
    try:
        config = ConsensusConfig(
            ds_mode=str(data["ds_mode"]),
            tier_mode=str(data["tier_mode"]),
            thresholds=Thresholds(float(data["thresholds"]["easy"]), float(data["thresholds"]["hard"])),
            quantiles=Thresholds(float(data["quantiles"]["easy"]), float(data["quantiles"]["hard"])),
            refine=str(data.get("refine", DEFAULT_REFINE)),
            trust_margin=float(data.get("trust_margin", DEFAULT_TRUST_MARGIN)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CdlError(
            f"{path}: expected ds_mode, tier_mode, thresholds.easy/hard, quantiles.easy/hard, optional refine and "
            f"trust_margin "
            f"({exc!r})"
        ) from exc
    except CdlError as exc:
        raise CdlError(f"{path}: {exc}") from exc
    config.validate()
    return config


def quantile_thresholds(ds: Sequence[float], quantiles: Thresholds) -> Thresholds:
    """Fixed thresholds at the given quantiles of the DS values (linear interpolation), for `--tier-mode quantile`."""
    values = np.asarray(ds, dtype=np.float64)
    if values.size == 0:
        raise CdlError("quantile tiers need at least one scored case")
    easy, hard = np.quantile(values, [quantiles.easy, quantiles.hard])
    return Thresholds(float(easy), float(hard))


def assign_tier(ds: float, thresholds: Thresholds) -> str:
    """The tier of one case with Difficulty Score `ds`."""
    if ds >= thresholds.easy:
        return "easy"
    if ds >= thresholds.hard:
        return "hard"
    return "erroneous"


def assign_tiers(ds: Mapping[str, float], config: ConsensusConfig) -> tuple[dict[str, str], Thresholds]:
    """Case -> tier for every case, and the thresholds used (computed from the DS values in quantile mode)."""
    thresholds = config.thresholds
    if config.tier_mode == "quantile":
        thresholds = quantile_thresholds(list(ds.values()), config.quantiles)
    return {case: assign_tier(value, thresholds) for case, value in ds.items()}, thresholds
