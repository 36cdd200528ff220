"""Running a plan: an oracle network that returns the labels it sees must reproduce them where windows run."""

from __future__ import annotations

import numpy as np
import pytest

from nnunet_cdl.inference import sliding
from nnunet_cdl.inference.sliding import argmax_labels, gaussian_weights, pad_to_patch, run_plan
from nnunet_cdl.inference.tiling import TilingRules, plan_tiling

PATCH = (8, 16, 16)
K = 14


def oracle(calls: list):
    def window_fn(x: np.ndarray) -> np.ndarray:
        calls.append(x.shape)
        labels = x[0, 0].round().astype(np.int64)
        return np.moveaxis(np.eye(K, dtype=np.float32)[labels], -1, 0) * 5

    return window_fn


def volume(shape=(24, 40, 48)) -> np.ndarray:
    labels = np.zeros(shape, dtype=np.uint8)
    labels[2:20, 15:25, 18:30] = 1  # centered organ over most slabs
    labels[4:10, 30:38, 2:8] = 3  # off-center organ in slabs whose center also sees organ 1
    return labels


def test_all_windows_reproduce_the_labels_and_logits():
    labels = volume()
    data = labels[None].astype(np.float32)
    rules = TilingRules(empty_center_voxels=0, tube_rule=False)
    plan = plan_tiling(labels.shape, PATCH, 0.5, rules)
    calls: list = []
    result = run_plan(data, plan, rules, oracle(calls), K, keep_logits=True)
    assert np.array_equal(result.labels, labels)
    assert result.windows_run == plan.num_windows == len(calls) and result.windows_skipped == 0
    assert result.logits.shape == (K, *labels.shape)
    assert np.array_equal(result.logits.astype(np.float32).argmax(0), labels)


def test_empty_centers_skip_their_slab_and_uncovered_voxels_are_background():
    labels = np.zeros((24, 40, 48), dtype=np.uint8)
    labels[0:4, 0:5, 0:5] = 2  # only in a corner: the center windows never see it
    data = labels[None].astype(np.float32)
    rules = TilingRules(empty_center_voxels=1)
    plan = plan_tiling(labels.shape, PATCH, 0.5, rules)
    calls: list = []
    result = run_plan(data, plan, rules, oracle(calls), K, keep_logits=True)
    assert result.windows_run == len(plan.slabs)
    assert result.windows_skipped == plan.num_windows - len(plan.slabs)
    assert set(result.slab_reasons) == {"empty"}
    assert not result.labels.any()
    logits = result.logits.astype(np.float32)
    probabilities = np.exp(logits) / np.exp(logits).sum(0)
    assert (probabilities[0] > 0.9).all()


def test_skip_next_slab_after_empty():
    labels = volume()
    labels[:] = 0
    data = labels[None].astype(np.float32)
    rules = TilingRules(empty_center_voxels=1, skip_slab_after_empty=True)
    plan = plan_tiling(labels.shape, PATCH, 0.5, rules)
    result = run_plan(data, plan, rules, oracle([]), K)
    assert result.slab_reasons == ["empty", "skipped"] * (len(plan.slabs) // 2) + ["empty"] * (len(plan.slabs) % 2)


def test_foreground_slabs_find_off_center_organs():
    labels = volume()
    data = labels[None].astype(np.float32)
    rules = TilingRules(empty_center_voxels=10)
    result = run_plan(data, plan_tiling(labels.shape, PATCH, 0.5, rules), rules, oracle([]), K)
    assert np.array_equal(result.labels == 3, labels == 3)

def test_slab_outcomes_report_what_each_center_saw():
    labels = volume()
    labels[16:] = 0  # the last slab (z 16-24) is empty
    data = labels[None].astype(np.float32)
    rules = TilingRules(empty_center_voxels=10, tube_rule=False)
    plan = plan_tiling(labels.shape, PATCH, 0.5, rules)
    result = run_plan(data, plan, rules, oracle([]), K)
    assert len(result.slabs) == len(plan.slabs)
    for slab, outcome in zip(plan.slabs, result.slabs):
        center = labels[slab.center.slicer()]
        expected = {label: int((center == label).sum()) for label in (1, 3) if (center == label).any()}
        assert outcome.center == tuple(zip(slab.center.start, slab.center.stop))
        assert outcome.center_voxels == expected
        assert outcome.reason == ("foreground" if sum(expected.values()) >= 10 else "empty")
        assert outcome.windows_run == (len(slab.windows) if outcome.reason == "foreground" else 1)
    assert "empty" in result.slab_reasons and "foreground" in result.slab_reasons
    assert sum(outcome.windows_run for outcome in result.slabs) == result.windows_run



def test_gaussian_weights_shape_peak_and_floor():
    weights = gaussian_weights((9, 16, 16))
    assert weights.shape == (9, 16, 16)
    assert float(weights.max()) == 1.0 and float(weights.min()) > 0
    assert float(weights[4, 7, 7]) > float(weights[0, 0, 0])


@pytest.mark.parametrize("shape", [(1, 5, 7, 9), (1, 40, 200, 33), (2, 31, 128, 191), (1, 32, 128, 192)])
def test_padding_matches_nnunets_pad_nd_image(shape):
    torch = pytest.importorskip("torch")
    from acvl_utils.cropping_and_padding.padding import pad_nd_image

    data = np.random.default_rng(0).random(shape, dtype=np.float32)
    expected, expected_revert = pad_nd_image(torch.from_numpy(data), (32, 128, 192), "constant", {"value": 0}, True)
    padded, revert = pad_to_patch(data, (32, 128, 192))
    assert np.array_equal(padded, expected.numpy())
    assert np.array_equal(padded[revert], data) and np.array_equal(expected.numpy()[tuple(expected_revert)], data)


def test_boundary_logits_are_the_dense_logits_at_label_boundaries():
    from nnunet_cdl.inference.boundary import boundary_pixels

    labels = volume()
    data = labels[None].astype(np.float32)
    rules = TilingRules(empty_center_voxels=0, tube_rule=False, locate_first=True)
    plan = plan_tiling(labels.shape, PATCH, 0.5, rules)
    dense = run_plan(data, plan, rules, oracle([]), K, keep_logits=True)
    kept = run_plan(data, plan, rules, oracle([]), K, boundary_logits=True)
    assert np.array_equal(kept.labels, dense.labels)
    for z, mask in enumerate(boundary_pixels(dense.labels)):
        ys, xs = np.nonzero(mask)
        assert np.array_equal(kept.logits.at(z, ys, xs), dense.logits[:, z, ys, xs].astype(np.float32))
    assert sum(index.size for index in kept.logits.index) < labels.size / 4
    with pytest.raises(ValueError, match="exclude each other"):
        run_plan(data, plan, rules, oracle([]), K, keep_logits=True, boundary_logits=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_argmax_labels_equals_numpy_ties_included(dtype):
    scores = np.random.default_rng(3).integers(-2, 3, size=(K, 5, 6, 7)).astype(dtype)  # many ties
    scores[:, 0, 0, 0] = 1  # every class tied: class 0
    labels = argmax_labels(scores)
    assert labels.dtype == np.uint8 and np.array_equal(labels, scores.argmax(0))
    assert labels[0, 0, 0] == 0


def test_argmax_labels_refuses_more_classes_than_uint8_holds():
    with pytest.raises(ValueError, match="257 classes"):
        argmax_labels(np.zeros((257, 2, 2), dtype=np.float32))


def smooth_network(x: np.ndarray) -> np.ndarray:
    """Logits (K, pz, py, px) that depend on each input voxel only: K different smooth functions of it."""
    return np.stack([np.sin(x[0, 0] * (k + 1) / 3) for k in range(K)]).astype(np.float32)


@pytest.mark.parametrize("step", [0.25, 0.5, 1.0])
@pytest.mark.parametrize("locate_first, kept_centers", [(False, None), (True, np.float32), (True, np.float16)])
def test_streamed_accumulation_equals_a_whole_volume_sum(step, locate_first, kept_centers, monkeypatch):
    if kept_centers is np.float16:
        monkeypatch.setattr(sliding, "KEPT_CENTERS_FLOAT32_BYTES", 0)
    data = np.random.default_rng(5).normal(size=(1, 30, 40, 48)).astype(np.float32) * 4
    rules = TilingRules(empty_center_voxels=0, tube_rule=False, locate_first=locate_first)
    plan = plan_tiling(data.shape[1:], PATCH, step, rules)
    weights = gaussian_weights(PATCH)
    acc = np.zeros((K, *data.shape[1:]), dtype=np.float32)
    wsum = np.zeros(data.shape[1:], dtype=np.float32)
    for slab in plan.slabs:
        for window in slab.windows:
            logits = smooth_network(data[(slice(None), *window.slicer())][None])
            if kept_centers is np.float16 and window.role == "center":
                logits = logits.astype(np.float16).astype(np.float32)  # kept as float16 until their slab
            acc[(slice(None), *window.slicer())] += logits * weights
            wsum[window.slicer()] += weights
    result = run_plan(data, plan, rules, smooth_network, K, keep_logits=True)
    assert result.windows_run == plan.num_windows
    assert np.array_equal(result.labels, argmax_labels(acc))
    assert np.array_equal(result.logits, (acc / wsum).astype(np.float16))
