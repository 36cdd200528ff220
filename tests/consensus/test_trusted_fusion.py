"""Trust per organ, robust agreement, the trusted vote and STAPLE: one failing candidate cannot decide."""

import numpy as np
import pytest

from nnunet_cdl.consensus import (
    difficulty_score,
    majority_vote,
    missing_organs,
    multi_organ_dice,
    confusion_matrix,
    organ_reliability,
    pairwise_agreement,
    reliability_scores,
    staple,
    trusted_agreement,
    trusted_organs,
    trusted_vote,
)

SHAPE = (8, 20, 12)


def _truth() -> np.ndarray:
    truth = np.zeros(SHAPE, np.uint8)
    truth[1:7, 2:9, 2:10] = 1
    truth[1:7, 11:18, 2:10] = 2
    return truth


def _one_failing_labeler() -> tuple[np.ndarray, list[np.ndarray]]:
    """A and B are good with different small errors; C dropped organ 2. Where A and B disagree on organ 2, the
    plain vote lets C (background there) decide."""
    truth = _truth()
    a, b, c = truth.copy(), truth.copy(), truth.copy()
    b[1:7, 2:9, 10] = 1  # B over-segments organ 1 by one slice ...
    b[1:7, 11:18, 9] = 0  # ... and misses one slice of organ 2
    c[truth == 2] = 0  # C fails: organ 2 dropped
    return truth, [a, b, c]


def _dice(label: np.ndarray, truth: np.ndarray) -> float:
    return multi_organ_dice(confusion_matrix(label, truth, 3))


def test_a_candidate_that_dropped_an_organ_is_not_trusted_for_it() -> None:
    _, labels = _one_failing_labeler()
    dice, per_organ, missed = pairwise_agreement(labels, 3)
    assert per_organ.shape == (3, 3, 2) and np.allclose(np.diagonal(per_organ, axis1=0, axis2=1), 1.0)
    np.testing.assert_allclose(dice, np.nanmean(np.where(np.isnan(per_organ), np.nan, per_organ), axis=2))
    trusted = trusted_organs(per_organ, 0.1)
    np.testing.assert_array_equal(trusted, [[True, True], [True, True], [True, False]])
    assert trusted_organs(per_organ, 1.0).all()  # a margin of 1 trusts everybody
    assert trusted_organs(per_organ[:2, :2], 0.0).all()  # two candidates: nobody can be outvoted


def test_trusted_agreement_ignores_the_failing_candidate() -> None:
    _, labels = _one_failing_labeler()
    dice, per_organ, missed = pairwise_agreement(labels, 3)
    trusted = trusted_organs(per_organ, 0.1)
    robust_rs, agreement = trusted_agreement(per_organ, trusted)
    organ2 = per_organ[0, 1, 1]  # the only trusted pair on organ 2
    organ1 = np.mean([per_organ[0, 1, 0], per_organ[0, 2, 0], per_organ[1, 2, 0]])
    assert agreement == pytest.approx((organ1 + organ2) / 2)
    assert difficulty_score(dice, 0, "trusted", trusted_mean=agreement) == agreement
    others = difficulty_score(dice, int(np.argmax(reliability_scores(dice))), "others")
    assert agreement > 0.9 > others  # "others" is dragged down by the dropped organ
    assert robust_rs[0] > robust_rs[1]  # A agrees with C on organ 1, B does not
    with pytest.raises(ValueError, match="trusted"):
        difficulty_score(dice, 0, "trusted")


def test_trusted_vote_beats_the_plain_vote_when_one_labeler_fails() -> None:
    truth, labels = _one_failing_labeler()
    dice, per_organ, missed = pairwise_agreement(labels, 3)
    trusted = trusted_organs(per_organ, 0.1)
    robust_rs, _ = trusted_agreement(per_organ, trusted)
    missing = missing_organs(missed, trusted)
    np.testing.assert_array_equal(missing, ~trusted)  # C left organ 2 out: its background there does not count
    fused = trusted_vote(labels, 3, trusted, missing, organ_reliability(per_organ), robust_rs)
    np.testing.assert_array_equal(fused, truth)
    voted, _ = majority_vote(labels, 3, int(np.argmax(reliability_scores(dice))))
    assert _dice(voted, truth) < _dice(fused, truth) == 1.0
    everybody = np.ones_like(trusted)  # with everybody trusted it is the plain majority again
    assert np.array_equal(trusted_vote(labels, 3, everybody, ~everybody, organ_reliability(per_organ), robust_rs),
                          voted)


def test_a_relabelled_candidate_still_draws_the_outlines() -> None:
    """C writes organ 1 as 2 and 2 as 1 (another label convention): not trusted for either, but its background is
    right, so where A over-segments organ 1 and B does not, C's background still outvotes A."""
    truth = _truth()
    a, b = truth.copy(), truth.copy()
    a[1:7, 2:9, 10] = 1  # A over-segments organ 1 by one slice
    b[1:7, 11:18, 9] = 0  # B misses one slice of organ 2
    c = np.choose(truth, [0, 2, 1]).astype(np.uint8)
    labels = [a, b, c]
    _, per_organ, missed = pairwise_agreement(labels, 3)
    trusted = trusted_organs(per_organ, 0.1)
    np.testing.assert_array_equal(trusted, [[True, True], [True, True], [False, False]])
    missing = missing_organs(missed, trusted)
    assert not missing.any()  # C calls none of the others' organ voxels background
    robust_rs, _ = trusted_agreement(per_organ, trusted)
    fused = trusted_vote(labels, 3, trusted, missing, organ_reliability(per_organ), robust_rs)
    np.testing.assert_array_equal(fused, truth)
    silenced = trusted_vote(labels, 3, trusted, ~trusted, organ_reliability(per_organ), robust_rs)
    assert not np.array_equal(silenced, truth)  # without C's background a tie between A and B decides


@pytest.mark.parametrize("k", [3, 5, 9])
def test_a_majority_always_beats_more_reliable_voters(k: int) -> None:
    """k - 1 voters of the highest reliability and priority lose to k plain ones."""
    many = k  # candidates saying organ 1
    few = k - 1  # candidates saying background, far more reliable
    labels = [np.ones((2, 2, 2), np.uint8)] * many + [np.zeros((2, 2, 2), np.uint8)] * few
    reliability = np.array([[0.0]] * many + [[1.0]] * few)
    priority = np.array([0.0] * many + [1.0] * few)
    trusted = np.ones((many + few, 1), bool)
    fused = trusted_vote(labels, 2, trusted, ~trusted, reliability, priority)
    assert (fused == 1).all()
    with pytest.raises(ValueError, match="at least 2"):
        trusted_vote(labels[:1], 2, trusted[:1], ~trusted[:1], reliability[:1], priority[:1])


def test_trusted_vote_checks_its_input_and_leaves_it_alone() -> None:
    _, labels = _one_failing_labeler()
    copies = [label.copy() for label in labels]
    _, per_organ, _ = pairwise_agreement(labels, 3)
    with pytest.raises(ValueError, match="trusted"):
        trusted_vote(labels, 3, np.ones((3, 5), bool), np.ones((3, 5), bool), organ_reliability(per_organ),
                     np.ones(3))
    with pytest.raises(ValueError, match="outside"):
        trusted_vote([label + 3 for label in labels], 3, np.ones((3, 2), bool), np.zeros((3, 2), bool),
                     organ_reliability(per_organ), np.ones(3))
    assert all(np.array_equal(a, b) for a, b in zip(labels, copies))


def test_staple_recovers_independent_errors_and_keeps_geometry() -> None:
    truth = _truth()
    a, b, c = truth.copy(), truth.copy(), truth.copy()
    a[1, 2:9, 2:10] = 0
    b[1:7, 2:9, 10] = 1
    c[6, 11:18, 2:10] = 0
    fused = staple([a, b, c], 3, tie_break=0)
    assert fused.shape == truth.shape and fused.dtype == truth.dtype
    np.testing.assert_array_equal(fused, truth)
    empty = np.zeros(SHAPE, np.uint8)
    assert not staple([empty, empty, empty], 3, 0).any()
