"""Voxel-wise majority vote of K candidate label maps: the `--refine vote` alternative to picking one candidate.

CDL-UNet keeps the single candidate with the highest Reliability Score. Where the candidates' errors are not the
same errors, a voxel-wise vote undoes most of them instead (docs/consensus.md has the measurement). Pure numpy;
label maps are integer arrays of one shape, usually (z, y, x), holding values in `0..num_classes-1`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nnunet_cdl.consensus.scores import check_range

_CHUNK_VOXELS = 1 << 22
"""Disagreement voxels per counting pass: bounds the (num_classes, chunk) int16 vote table (112 MiB at 14 classes)."""


def majority_vote(labels: Sequence[np.ndarray], num_classes: int, tie_break: int) -> tuple[np.ndarray, int]:
    """Per voxel, the label most candidates give; (fused map with `labels[tie_break]`'s dtype, voxels it changed).

    A tie between labels goes to the one candidate `tie_break` gives (the selected, highest-RS candidate) when it
    is among the tied labels, otherwise to the lowest label value. With two candidates every disagreement is a
    tie, so the vote returns `labels[tie_break]`. "Changed" counts voxels where the result differs from it.
    """
    k = len(labels)
    if k < 2 or not 0 <= tie_break < k:
        raise ValueError(f"need at least 2 candidates and 0 <= tie_break < {k}, got {k} and {tie_break}")
    shape = labels[0].shape
    for label in labels:
        if label.shape != shape:
            raise ValueError(f"label maps differ in shape: {label.shape} vs {shape}")
        check_range(label, num_classes)
    disagree = np.zeros(shape, dtype=bool)
    for label in labels[1:]:
        disagree |= label != labels[0]
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
