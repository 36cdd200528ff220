"""Fusing K candidate label maps into one: the `--refine` alternatives to picking one candidate.

CDL-UNet keeps the single candidate with the highest Reliability Score. Where the candidates' errors are not the
same errors, a voxel-wise vote undoes most of them instead; `trusted_vote` (the default) first takes away a
candidate's say on the organs where it agrees with nobody, so one failing labeler cannot decide between two good
ones; `staple` is SimpleITK's STAPLE (docs/consensus.md has the measurements). Label maps are integer arrays of
one shape, usually (z, y, x), holding values in `0..num_classes-1`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nnunet_cdl.consensus.scores import check_range

_CHUNK_VOXELS = 1 << 22
"""Disagreement voxels per counting pass: bounds the (num_classes, chunk) int16 vote table (112 MiB at 14 classes)."""


def disagreement(labels: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """Bool mask of the voxels where not every candidate gives the same label; checks shapes and label range."""
    shape = labels[0].shape
    for label in labels:
        if label.shape != shape:
            raise ValueError(f"label maps differ in shape: {label.shape} vs {shape}")
        check_range(label, num_classes)
    disagree = np.zeros(shape, dtype=bool)
    for label in labels[1:]:
        disagree |= label != labels[0]
    return disagree


def majority_vote(labels: Sequence[np.ndarray], num_classes: int, tie_break: int) -> tuple[np.ndarray, int]:
    """Per voxel, the label most candidates give; (fused map with `labels[tie_break]`'s dtype, voxels it changed).

    A tie between labels goes to the one candidate `tie_break` gives (the selected, highest-RS candidate) when it
    is among the tied labels, otherwise to the lowest label value. With two candidates every disagreement is a
    tie, so the vote returns `labels[tie_break]`. "Changed" counts voxels where the result differs from it.
    """
    k = len(labels)
    if k < 2 or not 0 <= tie_break < k:
        raise ValueError(f"need at least 2 candidates and 0 <= tie_break < {k}, got {k} and {tie_break}")
    disagree = disagreement(labels, num_classes)
    fused = labels[tie_break].copy()
    if not disagree.any():
        return fused, 0
    candidates = np.stack([label[disagree] for label in labels])
    winners = np.empty(candidates.shape[1], dtype=fused.dtype)
    for start in range(0, candidates.shape[1], _CHUNK_VOXELS):
        chunk = candidates[:, start : start + _CHUNK_VOXELS]
        columns = np.arange(chunk.shape[1])
        votes = np.zeros((num_classes, chunk.shape[1]), dtype=np.int16)
        for row in chunk:
            votes[row, columns] += 2
        votes[chunk[tie_break], columns] += 1
        winners[start : start + chunk.shape[1]] = votes.argmax(axis=0)
    changed = int(np.count_nonzero(winners != candidates[tie_break]))
    fused[disagree] = winners
    return fused, changed


def priority_weights(priority: np.ndarray) -> np.ndarray:
    """Vote weights (K,): 1 each plus a tie-breaking bonus by rank of `priority` (highest first), summing below 0.5.

    A majority therefore always wins, and a tie goes to the candidate of highest priority among those tied.
    """
    k = priority.shape[0]
    order = np.argsort(-priority, kind="stable")
    bonus = np.empty(k)
    bonus[order] = 0.5 * (k - np.arange(k)) / (k * k + 1)
    return 1.0 + bonus


def organ_reliability(per_organ: np.ndarray) -> np.ndarray:
    """Per-organ RS, (K, num_classes - 1): mean Dice of candidate k on organ o with every other candidate.

    per_organ: (K, K, num_classes - 1) pairwise Dice; NaN (neither map holds the organ) counts as agreement.
    """
    k = per_organ.shape[0]
    agreement = np.nan_to_num(per_organ, nan=1.0)
    return (agreement.sum(axis=1) - agreement[np.arange(k), np.arange(k)]) / (k - 1)


def trusted_vote(
    labels: Sequence[np.ndarray], num_classes: int, trusted: np.ndarray, missing: np.ndarray, organ_rs: np.ndarray,
    priority: np.ndarray,
) -> np.ndarray:
    """Voxel-wise vote in which a candidate has no say on the organs it is not trusted for.

    labels: K maps of one shape; trusted: (K, num_classes - 1) bool (`scores.trusted_organs`); missing: the
    untrusted organs a candidate leaves out (`scores.missing_organs`); organ_rs: (K, num_classes - 1) per-organ RS
    (`organ_reliability`); priority: (K,) (robust RS), the last tie-break. A candidate does not vote where it
    says an organ it is not trusted for, nor where it says background while another candidate says an organ it
    left out: a labeler that dropped, truncated or shifted an organ cannot erase it, one that swapped or
    relabelled organs cannot move them, yet its background still counts where it drew the outline right. Among
    the others the majority wins; a tie goes to the voter most reliable on the organs in play at that voxel (mean
    per-organ RS), then to priority. Where every candidate abstains the highest-priority candidate's label is
    kept. Returns the fused map (dtype of the labels).
    """
    k = len(labels)
    if k < 2:
        raise ValueError(f"need at least 2 candidates, got {k}")
    shapes_ok = trusted.shape == missing.shape == organ_rs.shape == (k, num_classes - 1)
    if not shapes_ok or priority.shape != (k,):
        raise ValueError(f"trusted, missing and organ_rs must be ({k}, {num_classes - 1}) and priority ({k},)")
    top = int(np.argmax(priority))
    disagree = disagreement(labels, num_classes)
    fused = labels[top].copy()
    if not disagree.any():
        return fused
    final_bonus = (priority_weights(priority) - 1.0) * 1e-3
    skill_weight = min(0.4, 0.9 / (k - 1))  # below 1 / (k - 1): k - 1 skilled voters never outweigh k plain ones
    distrusted = np.zeros((k, num_classes), dtype=bool)
    distrusted[:, 1:] = ~trusted
    left_out = np.zeros((k, num_classes), dtype=bool)
    left_out[:, 1:] = missing & ~trusted
    reliability = np.zeros((k, num_classes), dtype=np.float32)
    reliability[:, 1:] = organ_rs
    candidates = np.stack([label[disagree] for label in labels])
    winners = np.empty(candidates.shape[1], dtype=fused.dtype)
    chunk_size = _CHUNK_VOXELS // 2
    for start in range(0, candidates.shape[1], chunk_size):
        chunk = candidates[:, start : start + chunk_size]
        columns = np.arange(chunk.shape[1])
        distinct = [(chunk[j] != 0) & np.all([chunk[j] != chunk[i] for i in range(j)], axis=0) if j else chunk[j] != 0
                    for j in range(k)]
        in_play = np.maximum(np.sum(distinct, axis=0), 1).astype(np.float32)
        votes = np.zeros((num_classes, chunk.shape[1]), dtype=np.float32)
        for i in range(k):
            skill = sum(np.where(distinct[j], reliability[i][chunk[j]], 0.0) for j in range(k)) / in_play
            voice = (1.0 + skill_weight * skill + final_bonus[i]).astype(np.float32)
            if distrusted[i].any():
                abstain = distrusted[i][chunk[i]]
                if left_out[i].any():
                    erased = np.zeros(chunk.shape[1], dtype=bool)
                    for row in chunk:
                        erased |= left_out[i][row]
                    abstain |= erased & (chunk[i] == 0)
                voice[abstain] = 0.0
            votes[chunk[i], columns] += voice
        best = votes.argmax(axis=0).astype(fused.dtype)
        silent = votes.max(axis=0) == 0
        best[silent] = chunk[top][silent]
        winners[start : start + chunk.shape[1]] = best
    fused[disagree] = winners
    return fused


def staple(labels: Sequence[np.ndarray], num_classes: int, tie_break: int) -> np.ndarray:
    """SimpleITK's multi-label STAPLE (Warfield et al.; each labeler's confusion matrix estimated by EM).

    Run on the bounding box of all candidates' foreground (outside it every candidate says background); voxels
    STAPLE leaves undecided take candidate `tie_break`'s label.
    """
    import SimpleITK as sitk

    union = np.zeros(labels[0].shape, dtype=bool)
    for label in labels:
        union |= label != 0
    fused = labels[tie_break].copy()
    if not union.any():
        return fused
    box = []
    for axis in range(union.ndim):
        other = tuple(a for a in range(union.ndim) if a != axis)
        index = np.flatnonzero(union.any(axis=other))
        box.append(slice(int(index[0]), int(index[-1]) + 1))
    region = tuple(box)
    undecided = num_classes
    filter_ = sitk.MultiLabelSTAPLEImageFilter()
    filter_.SetLabelForUndecidedPixels(undecided)
    result = sitk.GetArrayFromImage(filter_.Execute([sitk.GetImageFromArray(label[region].astype(np.uint16))
                                                     for label in labels]))
    crop = fused[region]
    decided = result != undecided
    crop[decided] = result[decided].astype(fused.dtype)
    return fused
