"""Curriculum schedules: which tiers a training samples from which epoch (pure; used by `nnUNetTrainerCDL`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nnunet_cdl.consensus.curriculum_file import Curriculum
from nnunet_cdl.consensus.tiers import TRAINABLE_TIERS
from nnunet_cdl.errors import CdlError

PAPER_EASY_EPOCHS = 1000
PAPER_HARD_EPOCHS = 1500
"""CDL-UNet's Easy Course and Hard Course lengths (epochs)."""


@dataclass(frozen=True)
class Phase:
    """From epoch `start_epoch` (0-based) on, training samples the cases of `tiers`."""

    start_epoch: int
    tiers: tuple[str, ...]

    def describe(self) -> str:
        return "+".join(self.tiers)


def easy_then_hard(num_epochs: int) -> list[Phase]:
    """The paper's two phases, easy then easy + hard, split 1000 : 1500 of `num_epochs` (each phase >= 1 epoch)."""
    boundary = round(num_epochs * PAPER_EASY_EPOCHS / (PAPER_EASY_EPOCHS + PAPER_HARD_EPOCHS))
    boundary = max(1, min(boundary, num_epochs - 1))
    return [Phase(0, ("easy",)), Phase(boundary, ("easy", "hard"))]


def validate_phases(phases: Sequence[Phase]) -> None:
    """`CdlError` unless phases start at epoch 0, strictly increase, and name only trainable tiers (never erroneous)."""
    if not phases or phases[0].start_epoch != 0:
        raise CdlError("a curriculum schedule needs a first phase starting at epoch 0")
    for previous, phase in zip(phases, phases[1:]):
        if phase.start_epoch <= previous.start_epoch:
            raise CdlError(f"curriculum phases must start at increasing epochs: {previous} then {phase}")
    for phase in phases:
        bad = [t for t in phase.tiers if t not in TRAINABLE_TIERS]
        if not phase.tiers or bad:
            raise CdlError(f"phase {phase}: tiers must be a non-empty subset of {TRAINABLE_TIERS} (got {bad or 'none'})")


def phase_index(phases: Sequence[Phase], epoch: int) -> int:
    """Index of the phase that epoch `epoch` (0-based) belongs to."""
    index = 0
    for i, phase in enumerate(phases):
        if phase.start_epoch <= epoch:
            index = i
    return index


def phase_keys(train_keys: Iterable[str], curriculum: Curriculum, tiers: Sequence[str]) -> list[str]:
    """The training keys (in their order) whose tier is in `tiers`; erroneous and unknown cases never pass."""
    tier_of = curriculum.tier_of()
    allowed = set(tiers) & set(TRAINABLE_TIERS)
    return [key for key in train_keys if tier_of.get(key) in allowed]
