import numpy as np
import pytest

from nnunet_cdl.consensus.scores import (
    confusion_matrix,
    difficulty_score,
    multi_organ_dice,
    organ_dice,
    pairwise_dice,
    reliability_scores,
    select_candidate,
)


def _reference_dice(a: np.ndarray, b: np.ndarray, num_classes: int) -> float:
    values = []
    for c in range(1, num_classes):
        sa, sb = a == c, b == c
        if sa.sum() + sb.sum():
            values.append(2 * (sa & sb).sum() / (sa.sum() + sb.sum()))
    return float(np.mean(values)) if values else 1.0


def test_confusion_matrix_matches_direct_count() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, size=(7, 9, 11), dtype=np.uint8)
    b = rng.integers(0, 5, size=(7, 9, 11), dtype=np.uint8)
    cm = confusion_matrix(a, b, 5)
    assert cm.shape == (5, 5) and cm.sum() == a.size
    for i in range(5):
        for j in range(5):
            assert cm[i, j] == np.count_nonzero((a == i) & (b == j))


def test_confusion_matrix_chunks_large_volumes(monkeypatch: pytest.MonkeyPatch) -> None:
    import nnunet_cdl.consensus.scores as scores

    monkeypatch.setattr(scores, "_CHUNK_VOXELS", 100)
    rng = np.random.default_rng(1)
    a = rng.integers(0, 4, size=1234, dtype=np.uint8)
    b = rng.integers(0, 4, size=1234, dtype=np.uint8)
    expected = np.array([[np.count_nonzero((a == i) & (b == j)) for j in range(4)] for i in range(4)])
    np.testing.assert_array_equal(scores.confusion_matrix(a, b, 4), expected)


def test_confusion_matrix_rejects_uncleaned_values() -> None:
    a = np.zeros((2, 2, 2), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 15
    with pytest.raises(ValueError, match="clean"):
        confusion_matrix(a, b, 14)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(a, np.zeros((2, 2, 3), np.uint8), 14)


def test_multi_organ_dice_matches_reference_and_ignores_absent_organs() -> None:
    rng = np.random.default_rng(2)
    a = rng.integers(0, 4, size=(6, 8, 8), dtype=np.uint8)  # organs 4..13 absent from both
    b = a.copy()
    b[rng.random(a.shape) < 0.2] = 0
    dice = multi_organ_dice(confusion_matrix(a, b, 14))
    assert dice == pytest.approx(_reference_dice(a, b, 14))
    assert 0.5 < dice < 1.0
    assert np.isnan(organ_dice(confusion_matrix(a, b, 14))[5])


def test_organ_in_one_map_only_counts_as_zero() -> None:
    a = np.zeros((4, 4, 4), np.uint8)
    b = a.copy()
    a[:2] = 1
    b[:2] = 1
    b[3, 0, 0] = 2  # organ 2 only in b: Dice 0, averaged with organ 1's Dice 1
    assert multi_organ_dice(confusion_matrix(a, b, 14)) == pytest.approx(0.5)


def test_two_empty_maps_agree() -> None:
    a = np.zeros((3, 3, 3), np.uint8)
    assert multi_organ_dice(confusion_matrix(a, a, 14)) == 1.0


def test_reliability_selects_the_candidate_closest_to_the_others() -> None:
    truth = np.zeros((10, 10, 10), np.uint8)
    truth[2:8, 2:8, 2:8] = 1
    truth[0:2, 0:3, 0:3] = 2
    good = truth.copy()  # independent, disjoint errors: the smallest error agrees best with the others
    good[2, 2, 2] = 0
    medium = truth.copy()
    medium[7] = 0
    bad = truth.copy()
    bad[3:5] = 0
    bad[0:2, 0:2] = 0
    dice = pairwise_dice([bad, good, medium], 14)
    assert np.allclose(dice, dice.T) and np.allclose(np.diag(dice), 1)
    rs = reliability_scores(dice)
    assert rs[1] == pytest.approx((dice[1, 0] + dice[1, 2]) / 2)
    assert select_candidate(rs) == 1
    assert select_candidate(rs, selectable=[True, False, True]) == 2


def test_ties_go_to_the_first_source() -> None:
    assert select_candidate(np.array([0.7, 0.9, 0.9])) == 1
    assert select_candidate(np.array([0.8, 0.8])) == 0
    with pytest.raises(ValueError):
        select_candidate(np.array([0.8, 0.8]), selectable=[False, False])


def test_difficulty_score_modes() -> None:
    dice = np.array([[1.0, 0.9, 0.7], [0.9, 1.0, 0.8], [0.7, 0.8, 1.0]])
    selected = select_candidate(reliability_scores(dice))
    assert selected == 1
    assert difficulty_score(dice, selected, "others") == pytest.approx(0.85)
    # Eq. 2 with challenge labels 0 and 1: the selected label 1 counts its Dice of 1 with itself.
    assert difficulty_score(dice, selected, "paper", challenge=[0, 1]) == pytest.approx(0.95)
    # The reference (index 2) selected: Eq. 2 averages its Dice with both challenge labels.
    assert difficulty_score(dice, 2, "paper", challenge=[0, 1]) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        difficulty_score(dice, 1, "median")  # type: ignore[arg-type]


def test_pairwise_dice_over_the_foreground_union_equals_full_confusion_matrices() -> None:
    rng = np.random.default_rng(5)
    labels = []
    for _ in range(4):
        label = rng.integers(0, 14, size=(9, 10, 11), dtype=np.uint8)
        label[rng.random(label.shape) < 0.7] = 0  # mostly background, as in CT
        labels.append(label)
    labels[3][:] = 0  # an empty map: Dice 0 with any map holding organs
    dice = pairwise_dice(labels, 14)
    for i in range(4):
        for j in range(4):
            expected = 1.0 if i == j else multi_organ_dice(confusion_matrix(labels[i], labels[j], 14))
            assert dice[i, j] == pytest.approx(expected)
    assert dice[0, 3] == 0.0


def test_already_clean_fast_path() -> None:
    from nnunet_cdl.consensus.case import already_clean

    allowed = tuple(range(14))
    assert already_clean(np.array([0, 3, 13], np.uint8), allowed)
    assert not already_clean(np.array([0, 3, 14], np.uint8), allowed)
    assert not already_clean(np.array([0, 2], np.uint8), (0, 1, 3))  # 2 not allowed: not provably clean
    assert not already_clean(np.array([-1, 2], np.int16), allowed)
