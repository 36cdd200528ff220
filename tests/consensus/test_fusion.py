from collections import Counter

import numpy as np
import pytest

from nnunet_cdl.consensus import fusion
from nnunet_cdl.consensus.fusion import majority_vote


def _reference_vote(labels: list[np.ndarray], tie_break: int) -> np.ndarray:
    """Voxel by voxel with a Counter: most votes, ties to the tie-break candidate's label, else the lowest value."""
    out = np.empty_like(labels[tie_break])
    for index in np.ndindex(labels[0].shape):
        counts = Counter(int(label[index]) for label in labels)
        top = max(counts.values())
        tied = sorted(value for value, n in counts.items() if n == top)
        own = int(labels[tie_break][index])
        out[index] = own if own in tied else tied[0]
    return out


def test_disjoint_errors_are_voted_away() -> None:
    truth = np.zeros((6, 8, 8), np.uint8)
    truth[1:5, 1:6, 1:6] = 1
    truth[2:4, 6:8, 2:7] = 2
    a, b, c = truth.copy(), truth.copy(), truth.copy()
    a[1, 1:6, 1:6] = 0  # each candidate makes its own mistake
    b[2:4, 6:8, 2:4] = 1
    c[5, 0:3, 0:3] = 2
    fused, changed = majority_vote([a, b, c], 3, tie_break=0)
    np.testing.assert_array_equal(fused, truth)
    assert changed == int(np.count_nonzero(a != truth)) == 25
    assert fused.dtype == a.dtype and a[1, 1, 1] == 0  # inputs untouched


def test_ties_go_to_the_tie_break_candidate() -> None:
    a = np.array([[1, 1, 0, 2]], np.uint8)
    b = np.array([[2, 1, 3, 2]], np.uint8)
    fused, changed = majority_vote([a, b], 4, tie_break=1)
    np.testing.assert_array_equal(fused, b)  # two candidates: every disagreement is a tie
    assert changed == 0
    c = np.array([[3, 0, 1, 1]], np.uint8)
    fused, changed = majority_vote([a, b, c], 4, tie_break=2)
    np.testing.assert_array_equal(fused, [[3, 1, 1, 2]])  # three-way tie at 0 and 2: candidate c's label
    assert changed == 2


def test_matches_a_voxel_by_voxel_count_and_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    labels = [rng.integers(0, 4, (5, 6, 7)).astype(np.uint16) for _ in range(4)]
    expected = _reference_vote(labels, tie_break=2)
    fused, changed = majority_vote(labels, 4, tie_break=2)
    np.testing.assert_array_equal(fused, expected)
    assert changed == int(np.count_nonzero(expected != labels[2]))
    monkeypatch.setattr(fusion, "_CHUNK_VOXELS", 7)
    np.testing.assert_array_equal(majority_vote(labels, 4, tie_break=2)[0], expected)


def test_bad_input() -> None:
    a = np.zeros((2, 3), np.uint8)
    with pytest.raises(ValueError, match="differ in shape"):
        majority_vote([a, np.zeros((3, 2), np.uint8)], 2, 0)
    with pytest.raises(ValueError, match="clean the labels"):
        majority_vote([a, a + 5], 2, 0)
    with pytest.raises(ValueError, match="at least 2"):
        majority_vote([a], 2, 0)
    with pytest.raises(ValueError, match="tie_break"):
        majority_vote([a, a], 2, 2)
