"""Locate first: the center column, its organ components, and slab decisions taken from them."""

from __future__ import annotations

import numpy as np
import pytest

from nnunet_cdl.inference.locate import center_column, located_organs
from nnunet_cdl.inference.sliding import run_plan
from nnunet_cdl.inference.tiling import TilingRules, plan_tiling

PATCH = (8, 16, 16)
K = 14


def oracle(x: np.ndarray) -> np.ndarray:
    labels = x[0, 0].round().astype(np.int64)
    return np.moveaxis(np.eye(K, dtype=np.float32)[labels], -1, 0) * 5


def test_center_column_takes_each_plane_from_the_nearest_center_window():
    plan = plan_tiling((24, 40, 48), PATCH, 0.5, TilingRules())
    starts = [slab.center.start[0] for slab in plan.slabs]
    assert starts == [0, 4, 8, 12, 16]
    labels = [np.full(PATCH, slab.index + 1, dtype=np.uint8) for slab in plan.slabs]
    column = center_column(plan.slabs, labels, 24)
    assert column.shape == (24, 16, 16)
    middles = [s + (PATCH[0] - 1) / 2 for s in starts]
    for z in range(24):
        covering = [i for i, s in enumerate(starts) if s <= z < s + PATCH[0]]
        nearest = min(covering, key=lambda i: (abs(z - middles[i]), i))
        assert (column[z] == nearest + 1).all(), z


def test_center_column_refuses_mismatched_inputs():
    plan = plan_tiling((24, 40, 48), PATCH, 0.5, TilingRules())
    with pytest.raises(ValueError, match="center label maps"):
        center_column(plan.slabs, [], 24)
    with pytest.raises(ValueError, match="labels of shape"):
        center_column(plan.slabs, [np.zeros((4, 16, 16), np.uint8)] * len(plan.slabs), 24)


def test_located_organs_drop_small_separate_blobs_per_organ():
    column = np.zeros((30, 20, 20), dtype=np.uint8)
    column[2:22, 2:12, 2:12] = 1  # the liver: 2000 voxels
    column[26:28, 15:18, 15:18] = 1  # a false liver blob: 18 voxels (< 10 %)
    column[10:20, 14:19, 14:19] = 1  # a second liver piece: 250 voxels (>= 10 %)
    column[25:27, 2:4, 2:4] = 2  # the only kidney voxels: the largest kidney component, kept
    located = located_organs(column, 0.1)
    assert located.dtype == column.dtype and located.shape == column.shape
    assert not located[26:28, 15:18, 15:18].any()
    assert (located[10:20, 14:19, 14:19] == 1).all()
    assert (located[2:22, 2:12, 2:12] == 1).all()
    assert (located[25:27, 2:4, 2:4] == 2).all()
    largest_only = located_organs(column, 1.0)
    assert not largest_only[10:20, 14:19, 14:19].any()
    assert int((largest_only == 1).sum()) == 2000 and int((largest_only == 2).sum()) == 8
    assert not located_organs(np.zeros((3, 3, 3), np.uint8), 0.1).any()
    with pytest.raises(ValueError, match="min_fraction"):
        located_organs(column, 0.0)


def organ_volume() -> np.ndarray:
    """Organ 1 through the middle slabs' center column; a false organ-1 blob in the first slab's center."""
    labels = np.zeros((24, 40, 48), dtype=np.uint8)
    labels[8:22, 14:26, 18:30] = 1
    labels[8:20, 30:38, 2:8] = 3  # off center, found by the other windows of the organ slabs
    labels[0:2, 14:17, 20:23] = 1  # 18 voxels, far from the organ: not located
    return labels


def test_locate_first_skips_slabs_whose_center_holds_only_false_blobs():
    labels = organ_volume()
    data = labels[None].astype(np.float32)
    plain = TilingRules(empty_center_voxels=10, tube_rule=False)
    located = TilingRules(empty_center_voxels=10, tube_rule=False, locate_first=True)
    plan = plan_tiling(labels.shape, PATCH, 0.5, plain)
    own = run_plan(data, plan, plain, oracle, K)
    first = run_plan(data, plan, located, oracle, K, keep_logits=True)
    assert own.slabs[0].reason == "foreground" and own.slabs[0].center_voxels == {1: 18}
    assert first.slabs[0].reason == "empty" and first.slabs[0].located_voxels == {}
    assert first.slabs[0].center_voxels == {1: 18}
    assert first.windows_run < own.windows_run
    assert first.windows_run + first.windows_skipped == plan.num_windows
    assert np.array_equal(first.labels == 3, labels == 3)  # the organ slabs still ran their other windows
    assert np.array_equal(first.logits.astype(np.float32).argmax(0)[8:], labels[8:])


def test_locate_first_without_false_blobs_gives_the_same_prediction():
    labels = organ_volume()
    labels[0:2] = 0
    data = labels[None].astype(np.float32)
    plain = TilingRules(empty_center_voxels=10)
    located = TilingRules(empty_center_voxels=10, locate_first=True)
    plan = plan_tiling(labels.shape, PATCH, 0.5, plain)
    own = run_plan(data, plan, plain, oracle, K, keep_logits=True)
    first = run_plan(data, plan, located, oracle, K, keep_logits=True)
    assert first.windows_run == own.windows_run and first.slab_reasons == own.slab_reasons
    assert np.array_equal(first.labels, own.labels)
    assert np.array_equal(first.logits, own.logits)


def test_locate_first_excludes_skipping_the_next_slab():
    with pytest.raises(ValueError, match="skip_slab_after_empty"):
        TilingRules(locate_first=True, skip_slab_after_empty=True)
    with pytest.raises(ValueError, match="locate_min_fraction"):
        TilingRules(locate_min_fraction=1.5)
