"""Agreement between candidate label maps: confusion matrices, multi-organ Dice, RS and DS (CDL-UNet Eq. 1, 2).

All functions are pure numpy. Label maps are integer arrays of identical shape, usually (z, y, x), holding values
in `0..num_classes-1` (cleaned beforehand); 0 is background.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

DsMode = Literal["trusted", "others", "paper"]
DS_MODES: tuple[str, ...] = ("trusted", "others", "paper")
TIE_TOLERANCE = 1e-9
"""Reliability scores closer than this count as tied (the earlier source wins)."""

_CHUNK_VOXELS = 1 << 23
"""Voxels per bincount pass: bounds the int64 temporary to 64 MiB whatever the volume size."""


def confusion_matrix(a: np.ndarray, b: np.ndarray, num_classes: int) -> np.ndarray:
    """Voxel counts `m[i, j]` = #voxels with `a == i` and `b == j`, shape (num_classes, num_classes), int64.

    One bincount of `a * num_classes + b` per chunk of voxels; `a` and `b` must hold values in `0..num_classes-1`.
    """
    if a.shape != b.shape:
        raise ValueError(f"label maps differ in shape: {a.shape} vs {b.shape}")
    check_range(a, num_classes)
    check_range(b, num_classes)
    flat_a, flat_b = a.reshape(-1), b.reshape(-1)
    counts = np.zeros(num_classes * num_classes, dtype=np.int64)
    for start in range(0, flat_a.size, _CHUNK_VOXELS):
        codes = flat_a[start : start + _CHUNK_VOXELS].astype(np.int64)
        codes *= num_classes
        codes += flat_b[start : start + _CHUNK_VOXELS]
        counts += np.bincount(codes, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def organ_dice(confusion: np.ndarray) -> np.ndarray:
    """Per-organ Dice (classes 1..C-1) from a confusion matrix, shape (C-1,); NaN where both maps lack the organ."""
    intersection = np.diag(confusion)[1:].astype(np.float64)
    sizes = confusion.sum(axis=1)[1:] + confusion.sum(axis=0)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sizes > 0, 2.0 * intersection / sizes, np.nan)


def multi_organ_dice(confusion: np.ndarray) -> float:
    """Mean Dice over the organs present in either map; 1.0 when neither map holds any organ (they agree)."""
    per_organ = organ_dice(confusion)
    present = ~np.isnan(per_organ)
    return float(per_organ[present].mean()) if present.any() else 1.0


def check_range(label: np.ndarray, num_classes: int) -> None:
    """ValueError unless every value of `label` is in 0..num_classes-1."""
    if label.size and (int(label.max()) >= num_classes or int(label.min()) < 0):
        raise ValueError(f"label values outside 0..{num_classes - 1}: clean the labels first")


def pairwise_dice(labels: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """Symmetric (K, K) matrix of multi-organ Dice between K label maps of equal shape, ones on the diagonal."""
    return pairwise_agreement(labels, num_classes)[0]


def pairwise_agreement(labels: Sequence[np.ndarray], num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(multi-organ Dice (K, K), per-organ Dice (K, K, C - 1), missed (K, K, C - 1)) between K label maps.

    C = num_classes. Diagonals of the Dice arrays are 1; a per-organ entry is NaN where neither map of the pair
    holds that organ. `missed[i, j, o - 1]`: the fraction of map j's organ-o voxels that map i calls background
    (NaN where j has no organ o; 0 on the diagonal). Voxels that are background in every map only add to the
    background count, so each map's foreground union is gathered once and each unordered pair costs one bincount
    over that union (K*(K-1)/2 confusion matrices).
    """
    k = len(labels)
    shape = labels[0].shape
    union = np.zeros(shape, dtype=bool)
    for label in labels:
        if label.shape != shape:
            raise ValueError(f"label maps differ in shape: {label.shape} vs {shape}")
        check_range(label, num_classes)
        union |= label != 0
    outside = union.size - int(np.count_nonzero(union))
    compact = [label[union] for label in labels]
    del union
    dice = np.eye(k, dtype=np.float64)
    per_organ = np.ones((k, k, num_classes - 1), dtype=np.float64)
    missed = np.zeros((k, k, num_classes - 1), dtype=np.float64)
    for i in range(k):
        for j in range(i + 1, k):
            confusion = confusion_matrix(compact[i], compact[j], num_classes)
            confusion[0, 0] += outside
            dice[i, j] = dice[j, i] = multi_organ_dice(confusion)
            per_organ[i, j] = per_organ[j, i] = organ_dice(confusion)
            with np.errstate(invalid="ignore", divide="ignore"):
                missed[j, i] = confusion[1:, 0] / confusion[1:].sum(axis=1)
                missed[i, j] = confusion[0, 1:] / confusion[:, 1:].sum(axis=0)
    return dice, per_organ, missed


def missing_organs(missed: np.ndarray, trusted: np.ndarray) -> np.ndarray:
    """(K, C - 1) bool: the organs a candidate is not trusted for *because it leaves them out* (calls most of
    their voxels background, in the maps of the candidates trusted for them).

    Such a candidate's background says nothing where the organ is (dropped, truncated, shifted away), while one
    that writes another label there (swapped, another label convention) still draws the organ's outline: its
    background votes count. An untrusted organ no trusted candidate holds counts as missing.
    """
    k = missed.shape[0]
    out = np.zeros(trusted.shape, dtype=bool)
    for i, o in zip(*np.nonzero(~trusted)):
        partners = [j for j in range(k) if j != i and trusted[j, o] and not np.isnan(missed[i, j, o])]
        out[i, o] = not partners or float(np.mean([missed[i, j, o] for j in partners])) > 0.5
    return out


def reliability_scores(dice: np.ndarray) -> np.ndarray:
    """RS_i = mean Dice of candidate i with every other candidate (Eq. 1 for any K >= 2), shape (K,)."""
    k = dice.shape[0]
    if k < 2 or dice.shape != (k, k):
        raise ValueError(f"need a square Dice matrix of at least 2 candidates, got shape {dice.shape}")
    return (dice.sum(axis=1) - np.diag(dice)) / (k - 1)


def select_candidate(rs: np.ndarray, selectable: Sequence[bool] | None = None) -> int:
    """Index of the highest RS among the selectable candidates; ties (within `TIE_TOLERANCE`) go to the lowest index.

    The lowest index is the source listed first on the command line, so users rank their sources by trust.
    """
    mask = np.ones(rs.shape[0], dtype=bool) if selectable is None else np.asarray(selectable, dtype=bool)
    if mask.shape != rs.shape or not mask.any():
        raise ValueError("at least one candidate must be selectable")
    best = np.max(rs[mask])
    return int(np.flatnonzero(mask & (rs >= best - TIE_TOLERANCE))[0])


def trusted_organs(per_organ: np.ndarray, margin: float) -> np.ndarray:
    """Which candidate is trusted for which organ, (K, num_classes - 1) bool, from per-organ pairwise Dice.

    Candidate k is trusted for organ o when its best agreement on o with another candidate, max_j D[k, j, o], is
    within `margin` of the best agreement of any pair on o. One candidate that drops, swaps, shifts or invents an
    organ agrees with nobody on it and loses its say there; when all candidates disagree alike (a case that is
    truly hard) all stay trusted. A pair where neither map holds the organ agrees on it (Dice 1). With fewer than
    three candidates nobody can be outvoted, so all are trusted.
    """
    k = per_organ.shape[0]
    if k < 3:
        return np.ones((k, per_organ.shape[2]), dtype=bool)
    agreement = np.nan_to_num(per_organ, nan=1.0).copy()
    agreement[np.arange(k), np.arange(k)] = -np.inf
    best_partner = agreement.max(axis=1)
    return best_partner >= best_partner.max(axis=0, keepdims=True) - margin


def trusted_agreement(per_organ: np.ndarray, trusted: np.ndarray) -> tuple[np.ndarray, float]:
    """(robust RS per candidate (K,), agreement of the trusted candidates) from per-organ Dice and `trusted`.

    Robust RS_k: over the organs k is trusted for, the mean per-organ Dice of k with the other candidates trusted
    for that organ (organs neither map of a pair holds are skipped, as in `multi_organ_dice`); 0 for a
    candidate trusted for nothing that counts. Agreement: per organ, the mean Dice over the pairs of trusted
    candidates, averaged over the organs; 1.0 when no pair holds any organ.
    """
    k, _, organs = per_organ.shape
    sums, counts = np.zeros(k), np.zeros(k)
    organ_means = []
    for o in range(organs):
        members = np.flatnonzero(trusted[:, o])
        pair_values = []
        for a in members:
            for b in members:
                if a < b and not np.isnan(per_organ[a, b, o]):
                    pair_values.append(per_organ[a, b, o])
                    sums[[a, b]] += per_organ[a, b, o]
                    counts[[a, b]] += 1
        if pair_values:
            organ_means.append(float(np.mean(pair_values)))
    robust_rs = np.divide(sums, counts, out=np.zeros(k), where=counts > 0)
    return robust_rs, float(np.mean(organ_means)) if organ_means else 1.0


def difficulty_score(
    dice: np.ndarray, selected: int, mode: DsMode = "others", challenge: Sequence[int] | None = None,
    trusted_mean: float | None = None,
) -> float:
    """Difficulty Score of a case, in [0, 1] (high = candidates agree = easy).

    mode "trusted": the agreement of the candidates trusted for each organ (`trusted_agreement`, passed as
    `trusted_mean`): one failing candidate does not drag it down.
    mode "others": mean Dice between the selected label and every other candidate (equals the selected RS).
    mode "paper": CDL-UNet Eq. 2, mean Dice of the selected label with the challenge labels `challenge`
    (indices, default all), which counts a Dice of 1 with itself when the selected label is one of them.
    """
    k = dice.shape[0]
    if mode == "trusted":
        if trusted_mean is None:
            raise ValueError("trusted mode needs the trusted candidates' agreement (trusted_agreement)")
        return float(trusted_mean)
    if mode == "others":
        return float(reliability_scores(dice)[selected])
    if mode == "paper":
        indices = list(range(k)) if challenge is None else list(challenge)
        if not indices:
            raise ValueError("paper mode needs at least one challenge label")
        return float(np.mean(dice[selected, indices]))
    raise ValueError(f"unknown DS mode {mode!r}; choose one of {DS_MODES}")
