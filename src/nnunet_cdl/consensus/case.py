"""One case of `nnunet-cdl consensus`: read and clean its candidates, score them, write the refined label.

At most the K candidate label maps of one case are in memory (uint8 after cleaning), never the image itself.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnunet_cdl.consensus.clean import clean_labels
from nnunet_cdl.consensus.fusion import majority_vote, organ_reliability, staple, trusted_vote
from nnunet_cdl.consensus.scores import (
    difficulty_score,
    missing_organs,
    pairwise_agreement,
    reliability_scores,
    select_candidate,
    trusted_agreement,
    trusted_organs,
)
from nnunet_cdl.errors import CdlError
from nnunet_cdl.image_checks import check_image_file
from nnunet_cdl.io import Geometry, atomic_path, read_geometry, read_volume, write_volume


@dataclass(frozen=True)
class CaseJob:
    """Everything one worker needs for one case (picklable)."""

    case: str
    image: Path | None
    candidates: tuple[Path | None, ...]
    """Label file per source, in source order; None where the source lacks the case."""
    source_names: tuple[str, ...]
    challenge: tuple[int, ...]
    """Indices of the challenge sources (`--labels`), the ones Eq. 2 averages over."""
    selectable: tuple[bool, ...]
    allowed: tuple[int, ...]
    ds_mode: str
    out_label: Path
    refine: str
    """How the refined label is made: "select" (the highest-RS candidate), "vote", "trusted-vote" or "staple"."""
    trust_margin: float
    """A candidate is not trusted for an organ when its best agreement on it is this far below the best pair's."""


@dataclass
class CaseResult:
    """Scores of one case; `error` set (and scores None) when the case could not be scored."""

    case: str
    rs: list[float] | None = None
    dice: list[list[float]] | None = None
    """Pairwise multi-organ Dice between the candidates, K x K."""
    selected: int | None = None
    ds: float | None = None
    cleaned: list[int] | None = None
    """Voxels set to 0 by cleaning, per source."""
    voted: int | None = None
    """With a fusing refine mode: voxels where the written label differs from the selected candidate."""
    excluded: list[list[int]] | None = None
    """Per source, the organs it was not trusted for (`scores.trusted_organs`)."""
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CaseResult:
        return cls(**data)


def label_dtype(allowed: tuple[int, ...]) -> type[np.unsignedinteger]:
    """The smallest unsigned dtype that holds every allowed label value."""
    return np.uint8 if max(allowed) < 256 else np.uint16


def check_geometry(
    path: Path, shape: tuple[int, ...], geometry: Geometry, ref_shape: tuple[int, ...], ref: Geometry, ref_name: str
) -> None:
    """Raise `CdlError` when a label's shape or geometry differs from the reference (never resampled)."""
    if tuple(shape) != tuple(ref_shape):
        raise CdlError(f"{path}: shape {tuple(shape)} (z, y, x) differs from {ref_name}'s {tuple(ref_shape)}")
    if not geometry.matches(ref):
        raise CdlError(
            f"{path}: geometry differs from {ref_name}'s (spacing {geometry.spacing} vs {ref.spacing} mm, "
            f"origin {geometry.origin} vs {ref.origin} mm, direction {geometry.direction} vs {ref.direction})"
        )


def already_clean(label: np.ndarray, allowed: tuple[int, ...]) -> bool:
    """True when every value between the label's min and max is allowed (two cheap passes instead of a sort)."""
    if label.size == 0:
        return True
    low, high = int(label.min()), int(label.max())
    allowed_set = set(allowed)
    return high - low < 65536 and all(v in allowed_set for v in range(low, high + 1))


def load_candidate(path: Path, allowed: tuple[int, ...]) -> tuple[np.ndarray, Geometry, int, np.dtype]:
    """Read and clean one candidate: (label (z, y, x) uint8/uint16, geometry, voxels cleaned, file dtype)."""
    volume = read_volume(path)
    file_dtype = volume.array.dtype
    array = volume.array
    if not np.issubdtype(file_dtype, np.integer):
        if not np.array_equal(array, np.round(array)):
            raise CdlError(f"{path}: label map holds non-integer values (dtype {file_dtype})")
        array = array.astype(np.int32)
    if already_clean(array, allowed):
        return array.astype(label_dtype(allowed), copy=False), volume.geometry, 0, file_dtype
    cleaned, n_changed = clean_labels(array, allowed)
    return np.asarray(cleaned).astype(label_dtype(allowed), copy=False), volume.geometry, int(n_changed), file_dtype


def score_case(job: CaseJob) -> CaseResult:
    """Score one case and write its refined label to `job.out_label`; per-case problems go into `error`."""
    result = CaseResult(job.case)
    missing = [name for name, path in zip(job.source_names, job.candidates) if path is None]
    problems = [f"missing in source(s) {', '.join(missing)}"] if missing else []
    if job.image is None:
        problems.append("no image in --images")
    if problems:
        result.error = "; ".join(problems)
        return result
    try:
        _score(job, result)
    except CdlError as exc:
        result.error = str(exc)
    return result


def _score(job: CaseJob, result: CaseResult) -> None:
    assert job.image is not None
    check_image_file(job.image)
    ref_shape, ref_geometry = read_geometry(job.image)
    labels: list[np.ndarray] = []
    geometries: list[Geometry] = []
    cleaned: list[int] = []
    file_dtypes: list[np.dtype] = []
    for path in job.candidates:
        assert path is not None
        label, geometry, n_changed, file_dtype = load_candidate(path, job.allowed)
        check_geometry(path, label.shape, geometry, ref_shape, ref_geometry, f"image {job.image.name}")
        labels.append(label)
        geometries.append(geometry)
        cleaned.append(n_changed)
        file_dtypes.append(file_dtype)
    num_classes = max(job.allowed) + 1
    scores = case_scores(labels, num_classes, job.trust_margin, job.selectable, job.ds_mode, job.challenge)
    selected = scores.selected
    source = job.candidates[selected]
    assert source is not None
    fused = fuse(job.refine, labels, num_classes, scores, job.selectable)
    if fused is not None:
        result.voted = int(np.count_nonzero(fused != labels[selected]))
        write_volume(job.out_label, fused, geometries[selected])
    elif cleaned[selected] == 0 and np.issubdtype(file_dtypes[selected], np.integer):
        with atomic_path(job.out_label) as tmp:
            shutil.copyfile(source, tmp)  # already clean: keep the source file byte for byte
    else:
        write_volume(job.out_label, labels[selected], geometries[selected])
    result.rs = [float(v) for v in scores.rs]
    result.dice = [[float(v) for v in row] for row in scores.dice]
    result.selected = selected
    result.ds = scores.ds
    result.cleaned = cleaned
    result.excluded = [[int(o) + 1 for o in np.flatnonzero(~row)] for row in scores.trusted]


@dataclass(frozen=True)
class CaseScores:
    """What the candidates of one case say about each other (K candidates, C classes)."""

    dice: np.ndarray
    """(K, K) multi-organ Dice."""
    per_organ: np.ndarray
    """(K, K, C - 1) per-organ Dice."""
    rs: np.ndarray
    """(K,) Reliability Scores (Eq. 1)."""
    selected: int
    trusted: np.ndarray
    """(K, C - 1) bool, `trusted_organs`."""
    missing: np.ndarray
    """(K, C - 1) bool, `missing_organs`."""
    robust_rs: np.ndarray
    """(K,) mean per-organ Dice with the trusted candidates."""
    ds: float


def case_scores(labels: list[np.ndarray], num_classes: int, trust_margin: float, selectable: tuple[bool, ...],
                ds_mode: str, challenge: tuple[int, ...]) -> CaseScores:
    """Agreement, RS, selection, trust and DS of one case's cleaned candidate maps (one pass over the voxels)."""
    dice, per_organ, missed = pairwise_agreement(labels, num_classes)
    rs = reliability_scores(dice)
    selected = select_candidate(rs, selectable)
    trusted = trusted_organs(per_organ, trust_margin)
    robust_rs, trusted_mean = trusted_agreement(per_organ, trusted)
    ds = difficulty_score(dice, selected, ds_mode, challenge, trusted_mean)  # type: ignore[arg-type]
    return CaseScores(dice, per_organ, rs, selected, trusted, missing_organs(missed, trusted), robust_rs, ds)


def fuse(refine: str, labels: list[np.ndarray], num_classes: int, scores: CaseScores,
         selectable: tuple[bool, ...]) -> np.ndarray | None:
    """The fused label of a fusing refine mode, None for "select" (the selected candidate is written as it is).

    Ties in "trusted-vote" go by robust RS, candidates that may not be selected (`--reference-votes-only`) last.
    """
    if refine == "select":
        return None
    if refine == "vote":
        return majority_vote(labels, num_classes, scores.selected)[0]
    if refine == "staple":
        return staple(labels, num_classes, scores.selected)
    if refine == "trusted-vote":
        priority = scores.robust_rs - 2.0 * ~np.asarray(selectable, dtype=bool)
        return trusted_vote(labels, num_classes, scores.trusted, scores.missing, organ_reliability(scores.per_organ),
                            priority)
    raise CdlError(f"unknown refine mode {refine!r}")
