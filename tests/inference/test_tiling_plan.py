"""The tiling plan: coverage, center-first order, fine/coarse switch, skip decisions, tube rule."""

from __future__ import annotations

import numpy as np
import pytest

from nnunet_cdl.inference.body import BodyRules
from nnunet_cdl.inference.config import rules_from_dict
from nnunet_cdl.inference.postprocess import PostprocessRules
from nnunet_cdl.inference.tiling import (
    TilingRules,
    Window,
    axis_positions,
    decide_others,
    plan_tiling,
    skip_whole_slab,
    tube_edge_contacts,
)

PATCH = (32, 128, 192)


def coverage(plan) -> np.ndarray:
    covered = np.zeros(plan.image_shape, dtype=bool)
    for slab in plan.slabs:
        for window in slab.windows:
            covered[window.slicer()] = True
    return covered


@pytest.mark.parametrize(
    "shape,patch",
    [((125, 290, 341), PATCH), ((32, 128, 192), PATCH), ((600, 300, 500), PATCH), ((97, 97, 200), (96, 96, 96)),
     ((40, 130, 600), PATCH)],
)
@pytest.mark.parametrize("fine_max", [0, 10_000])
def test_every_voxel_is_covered_center_first(shape, patch, fine_max):
    plan = plan_tiling(shape, patch, 0.5, TilingRules(fine_max_windows=fine_max))
    assert coverage(plan).all()
    for slab in plan.slabs:
        assert slab.windows[0].role == "center"
        assert all(w.role == "grid" for w in slab.others)
        center = slab.center
        for axis in (1, 2):  # the center window is centered in-plane
            assert abs(center.start[axis] - (shape[axis] - center.stop[axis])) <= 1
        assert len({w.start for w in slab.windows}) == len(slab.windows)
        assert all(w.stop[a] <= shape[a] for w in slab.windows for a in range(3))
    zs = [s.center.start[0] for s in plan.slabs]
    assert zs == sorted(zs) and zs[0] == 0 and zs[-1] == shape[0] - patch[0]


def test_fine_grid_is_3x3_and_coarse_is_center_plus_4_corners():
    rules = TilingRules(fine_max_windows=100)
    small = plan_tiling((60, 200, 300), PATCH, 0.5, rules)  # 3 slabs x 9 = 27 windows
    assert small.grid == "fine" and small.estimated_fine_windows == 27
    assert all(len(s.windows) == 9 for s in small.slabs)
    big = plan_tiling((400, 200, 300), PATCH, 0.5, rules)
    assert big.grid == "coarse" and big.estimated_fine_windows > 100
    slab = big.slabs[0]
    assert len(slab.windows) == 5
    corners = {(w.start[1], w.start[2]) for w in slab.others}
    assert corners == {(0, 0), (0, 300 - 192), (200 - 128, 0), (200 - 128, 300 - 192)}


def test_grid_fine_or_coarse_overrides_the_window_estimate():
    assert plan_tiling((60, 200, 300), PATCH, 0.5, TilingRules(grid="coarse")).grid == "coarse"
    big = plan_tiling((400, 200, 300), PATCH, 0.5, TilingRules(grid="fine", fine_max_windows=0))
    assert big.grid == "fine" and big.num_windows == big.estimated_fine_windows
    with pytest.raises(ValueError, match="grid must be one of auto, fine, coarse"):
        TilingRules(grid="dense")


def test_coarse_z_step_sets_slab_spacing():
    plan = plan_tiling((320, 128, 192), PATCH, 0.5, TilingRules(fine_max_windows=0, coarse_z_step=1.0))
    assert [s.center.start[0] for s in plan.slabs] == list(range(0, 320 - 32 + 1, 32))


def test_axis_positions_match_nnunet():
    from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

    for size, patch, step in [(110, 64, 0.5), (341, 192, 0.5), (128, 128, 0.5), (1000, 32, 0.75)]:
        assert axis_positions(size, patch, step) == list(compute_steps_for_sliding_window((size,), (patch,), step)[0])
    with pytest.raises(ValueError):
        axis_positions(10, 32, 0.5)


def counts(**labels: int) -> list[int]:
    out = [0] * 14
    for name, n in labels.items():
        out[int(name[1:])] = n
    return out


def test_empty_center_skips_the_slab_and_optionally_the_next():
    plan = plan_tiling((60, 200, 300), PATCH, 0.5, TilingRules())
    slab = plan.slabs[0]
    rules = TilingRules(empty_center_voxels=1000)
    assert decide_others(slab, counts(l1=999), {}, rules).reason == "empty"
    assert decide_others(slab, counts(l1=999), {}, rules).run == []
    full = decide_others(slab, counts(l1=1000), {}, rules)
    assert full.reason == "foreground" and full.run == list(slab.others)
    assert not skip_whole_slab("empty", rules)
    cdl = TilingRules(skip_slab_after_empty=True)
    assert skip_whole_slab("empty", cdl) and not skip_whole_slab("skipped", cdl)
    assert not skip_whole_slab("foreground", cdl) and not skip_whole_slab(None, cdl)


def test_tube_rule_runs_only_windows_past_the_touched_edge():
    plan = plan_tiling((32, 300, 500), PATCH, 0.5, TilingRules())
    slab = plan.slabs[0]
    center = slab.center
    labels = np.zeros(PATCH, dtype=np.uint8)
    labels[:, 0:20, 90:100] = 5  # aorta touching the front edge, in the middle of the window
    contacts = tube_edge_contacts(labels, (5, 6, 10))
    assert contacts == {"front": (90, 99)}
    rules = TilingRules()
    decision = decide_others(slab, counts(l5=6400), contacts, rules)
    assert decision.reason == "tube"
    assert decision.run, "the front window of the center column must run"
    for window in decision.run:
        assert window.start[1] < center.start[1]
        assert window.start[2] <= center.start[2] + 99 and window.stop[2] > center.start[2] + 90
    assert (0, center.start[2]) in {(w.start[1], w.start[2]) for w in decision.run}
    # a tube that touches no edge needs no other window; another organ in the center needs all of them
    assert decide_others(slab, counts(l5=6400), {}, rules).run == []
    assert decide_others(slab, counts(l5=6400, l1=2000), contacts, rules).reason == "foreground"
    off = decide_others(slab, counts(l5=6400), contacts, TilingRules(tube_rule=False))
    assert off.reason == "foreground" and len(off.run) == len(slab.others)


def test_tube_contacts_back_edge_and_window_geometry():
    labels = np.zeros((4, 10, 12), dtype=np.uint8)
    labels[:, 9, 3:5] = 10
    labels[:, 4, 11] = 6
    assert tube_edge_contacts(labels, (5, 6, 10)) == {"back": (3, 4), "right": (4, 4)}
    window = Window((1, 2, 3), (4, 5, 6))
    assert window.stop == (5, 7, 9) and window.slicer() == (slice(1, 5), slice(2, 7), slice(3, 9))


def test_rules_from_dict_rejects_unknown_keys():
    assert rules_from_dict(TilingRules, {"tube_labels": [5]}, "tiling").tube_labels == (5,)
    assert rules_from_dict(PostprocessRules, {"keep_largest_labels": [1, 2]}, "postprocess").keep_largest_labels == (1, 2)
    with pytest.raises(ValueError, match=r"unknown tiling rule\(s\) \['empty_voxels'\]; known: .*empty_center_voxels"):
        rules_from_dict(TilingRules, {"empty_voxels": 3}, "tiling")
    with pytest.raises(ValueError, match="unknown body rule"):
        rules_from_dict(BodyRules, {"treshold_hu": -500}, "body")
