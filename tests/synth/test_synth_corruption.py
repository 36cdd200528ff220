"""Label corruption: severity 0 is the identity, true Dice falls monotonically with severity, stray values."""

from __future__ import annotations

import numpy as np
import pytest

from nnunet_cdl.consensus import clean_labels
from nnunet_cdl.synth import CORRUPTIONS, corrupt_label, multi_organ_dice, synth_case
from nnunet_cdl.synth.labelers import simulate_source

SEVERITIES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@pytest.fixture(scope="module")
def case() -> tuple[np.ndarray, tuple[float, float, float]]:
    _, label, geometry = synth_case("small", 11)
    return label, geometry.spacing_zyx


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_dice_monotone_in_severity(case, kind: str) -> None:
    label, spacing = case
    before = label.copy()
    for seed in (0, 1):
        dice = []
        for severity in SEVERITIES:
            noisy, records = corrupt_label(label, np.random.default_rng(seed), {kind: severity}, spacing)
            assert noisy.shape == label.shape and noisy.dtype == np.uint8
            assert records[0]["kind"] == kind
            dice.append(multi_organ_dice(noisy, label))
        assert dice[0] == 1.0
        assert all(b <= a + 0.01 for a, b in zip(dice, dice[1:])), (kind, dice)
        assert dice[-1] < 0.999, (kind, dice)
    assert np.array_equal(label, before), "input modified"


def test_boundary_modes(case) -> None:
    label, spacing = case
    for mode, sign in (("erode", -1), ("dilate", 1)):
        noisy, _ = corrupt_label(label, np.random.default_rng(0), {"boundary": 0.5}, spacing, boundary_mode=mode)
        assert np.sign(np.count_nonzero(noisy) - np.count_nonzero(label)) == sign


def test_stray_values_and_cleaning(case) -> None:
    label, spacing = case
    noisy, records = corrupt_label(label, np.random.default_rng(3), {"stray": 1.0}, spacing)
    stray = noisy > 13
    assert stray.any() and records[0]["voxels"] == int(stray.sum())
    assert set(records[0]["values"]) <= {14, 15, 20, 99, 255}
    cleaned, changed = clean_labels(noisy, range(14))
    assert changed == int(stray.sum()) and cleaned.max() <= 13 and cleaned.dtype == noisy.dtype
    assert np.array_equal(cleaned[~stray], noisy[~stray]) and np.all(cleaned[stray] == 0)
    assert (noisy > 13).any(), "clean_labels modified its input"


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.uint32])
def test_clean_labels_keeps_allowed_and_dtype(dtype) -> None:
    label = np.array([[[0, 1, 14], [255, 13, 2]]], dtype=dtype)
    cleaned, changed = clean_labels(label, [0, 1, 2, 300])  # 300 does not fit uint8: ignored there
    assert changed == 3 and cleaned.dtype == dtype
    assert cleaned.tolist() == [[[0, 1, 0], [0, 0, 2]]]
    assert label.tolist() == [[[0, 1, 14], [255, 13, 2]]]


def test_multi_organ_dice() -> None:
    truth = np.zeros((4, 4, 4), np.uint8)
    truth[:2] = 1
    truth[2:] = 2
    assert multi_organ_dice(truth, truth) == 1.0
    swapped = np.where(truth == 1, 2, 1).astype(np.uint8)
    assert multi_organ_dice(swapped, truth) == 0.0
    stray = truth.copy()
    stray[:1] = 14
    assert multi_organ_dice(stray, truth) == pytest.approx((2 * 16 / 48 + 1.0) / 2)


def test_unknown_kind_rejected(case) -> None:
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt_label(case[0], np.random.default_rng(0), {"melt": 0.5})


def test_simulated_sources_land_in_their_group_band(case) -> None:
    label, spacing = case
    dice = {}
    for group in ("easy", "hard", "broken"):
        records = [simulate_source(label, spacing, group, k, 100 + k)[1] for k in range(3)]
        assert all(r["in_band"] for r in records), (group, records)
        dice[group] = [r["dice"] for r in records]
    assert min(dice["easy"]) > max(dice["hard"]) and min(dice["hard"]) > max(dice["broken"])
