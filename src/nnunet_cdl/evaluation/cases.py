"""Pairing truth and prediction files, and scoring one case (read, check geometry, score every organ)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_cdl.errors import CdlError
from nnunet_cdl.evaluation.metrics import case_scores
from nnunet_cdl.io import NIFTI_ENDING, Geometry, list_label_files, read_volume
from nnunet_cdl.labels import ORGAN_IDS

DECIMALS = 4
"""The official script rounds each DSC and NSD to 4 decimals before writing them; so do we."""


@dataclass(frozen=True)
class CaseTask:
    """One case to score: its truth file and its prediction file (None when the prediction is missing)."""

    case: str
    truth: Path
    pred: Path | None


@dataclass
class CaseResult:
    """Scores of one case: organ id -> (DSC, NSD) rounded to `DECIMALS`; `error` set when it could not be scored.

    status: "ok", "missing" (no prediction: every organ 0, 0) or "error" (no scores).
    """

    case: str
    status: str
    scores: dict[int, tuple[float, float]] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Pairing:
    """Cases to score (sorted by case id) and prediction files that have no truth."""

    tasks: list[CaseTask]
    unmatched_predictions: list[str]

    @property
    def missing_predictions(self) -> list[str]:
        return [t.case for t in self.tasks if t.pred is None]


def pair_cases(
    truth_dir: str | os.PathLike[str], pred_dir: str | os.PathLike[str], file_ending: str = NIFTI_ENDING
) -> Pairing:
    """Match `CASE{file_ending}` files of the truth folder with those of the prediction folder."""
    truth_files = list_label_files(truth_dir, file_ending)
    if not truth_files:
        raise CdlError(f"{truth_dir}: no *{file_ending} label files")
    pred_files = list_label_files(pred_dir, file_ending)
    tasks = [CaseTask(case, path, pred_files.get(case)) for case, path in truth_files.items()]
    unmatched = sorted(set(pred_files) - set(truth_files))
    return Pairing(tasks, unmatched)


def as_label_map(array: np.ndarray, path: Path) -> np.ndarray:
    """An integer label map (z, y, x); float maps are accepted when every value is a whole number."""
    if array.dtype.kind in "iu":
        return array
    if array.dtype.kind == "b":
        return array.astype(np.uint8)
    if array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.array_equal(array, np.round(array)):
        return array.astype(np.int32)
    raise CdlError(f"{path}: not a label map (values of type {array.dtype} that are not whole numbers)")


def geometry_problem(
    truth_shape: tuple[int, ...], pred_shape: tuple[int, ...], truth_geo: Geometry, pred_geo: Geometry
) -> str | None:
    """A sentence naming how a prediction's shape or geometry differs from its truth's, None when they agree."""
    if truth_shape != pred_shape:
        return f"shape (z, y, x) {pred_shape} differs from the truth's {truth_shape}"
    if not truth_geo.matches(pred_geo):
        return (
            f"geometry differs from the truth's: spacing {pred_geo.spacing} vs {truth_geo.spacing}, "
            f"origin {pred_geo.origin} vs {truth_geo.origin}, direction {pred_geo.direction} vs {truth_geo.direction}"
        )
    return None


def evaluate_case(task: CaseTask) -> CaseResult:
    """Score every organ of one case; a missing prediction scores 0, 0; unreadable or mismatched files an error.

    Spacing comes from the truth's header, in the arrays' (z, y, x) order.
    """
    if task.pred is None:
        return CaseResult(task.case, "missing", {organ: (0.0, 0.0) for organ in ORGAN_IDS})
    try:
        truth = read_volume(task.truth)
        pred = read_volume(task.pred)
        problem = geometry_problem(truth.array.shape, pred.array.shape, truth.geometry, pred.geometry)
        if problem is not None:
            raise CdlError(f"{task.pred}: {problem}")
        scores = case_scores(
            as_label_map(truth.array, task.truth), as_label_map(pred.array, task.pred), truth.geometry.spacing_zyx
        )
    except CdlError as exc:
        return CaseResult(task.case, "error", error=str(exc))
    rounded = {organ: (round_score(dsc), round_score(nsd)) for organ, (dsc, nsd) in scores.items()}
    return CaseResult(task.case, "ok", rounded)


def round_score(value: float) -> float:
    """Round to `DECIMALS` as the official script does; NaN stays NaN."""
    return value if math.isnan(value) else round(float(value), DECIMALS)
