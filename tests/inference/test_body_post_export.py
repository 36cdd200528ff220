"""Body crop, small-component removal, nearest-neighbour label resizing and box pasting."""

from __future__ import annotations

import numpy as np
import pytest

from nnunet_cdl.inference.body import BodyRules, body_box, box_shape, full_box
from nnunet_cdl.inference.export import inplane_linear_labels, nearest_indices, paste_box, resize_labels_nearest
from nnunet_cdl.inference.postprocess import foreground_box, remove_small_components


def ct_with_body(shape=(40, 120, 140)) -> np.ndarray:
    image = np.full(shape, -1000.0, dtype=np.float32)
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    body = ((yy - 55) / 35.0) ** 2 + ((xx - 70) / 50.0) ** 2 <= 1
    image[:, body[0]] = 40.0
    image[:, 105:108, 20:120] = 300.0  # the table, separate from the body and much smaller
    image[5, 3, 3] = 500.0  # a noise voxel in the air
    return image


def test_body_box_contains_the_body_with_margin_and_drops_table_and_noise():
    image = ct_with_body()
    spacing = (2.0, 1.0, 1.0)
    box = body_box(image, spacing, BodyRules(margin_mm=8.0, sample_mm=4.0))
    assert box is not None
    body = image > -500
    body[:, 100:, :] = False
    body[5, 3, 3] = False
    ys, xs = np.flatnonzero(body.any(axis=(0, 2))), np.flatnonzero(body.any(axis=(0, 1)))
    assert box[1].start <= ys[0] and box[1].stop > ys[-1] and box[2].start <= xs[0] and box[2].stop > xs[-1]
    assert box[1].stop < 105, "the table must not be in the box"
    assert box[1].start >= ys[0] - 8 - 4 and box[2].start >= xs[0] - 8 - 4
    assert box[0] == slice(0, 40)


def test_body_box_none_for_all_air_and_full_box():
    assert body_box(np.full((5, 6, 7), -1000.0), (1, 1, 1), BodyRules()) is None
    assert box_shape(full_box((5, 6, 7))) == (5, 6, 7)
    with pytest.raises(ValueError):
        body_box(np.zeros((5, 6)), (1, 1), BodyRules())


def test_remove_small_components_keeps_largest_and_drops_specks():
    labels = np.zeros((20, 30, 30), dtype=np.uint8)
    labels[2:10, 2:10, 2:10] = 1
    labels[15:17, 20:22, 20:22] = 1  # second liver component: removed (keep largest)
    labels[12:18, 12:18, 2:8] = 4
    labels[0, 29, 29] = 4  # pancreas speck
    labels[14, 25:29, 25:29] = 7  # 16 voxels of label 7
    out = remove_small_components(labels, keep_largest_labels=[1], min_component_voxels=10)
    assert (out == 1).sum() == 8**3
    assert out[0, 29, 29] == 0 and (out == 4).sum() == 6**3
    assert (out == 7).sum() == 16
    assert labels[0, 29, 29] == 4, "input unchanged"
    empty = np.zeros((4, 4, 4), dtype=np.uint8)
    assert not remove_small_components(empty, [1], 5).any()
    assert foreground_box(empty) is None


def test_nearest_resize_round_trip_and_box_paste():
    labels = np.random.default_rng(0).integers(0, 14, size=(6, 7, 9)).astype(np.uint8)
    up = resize_labels_nearest(labels, (12, 14, 27))
    assert up.dtype == np.uint8 and up.shape == (12, 14, 27)
    assert np.array_equal(resize_labels_nearest(up, (6, 7, 9)), labels)
    assert np.array_equal(nearest_indices(3, 6), [0, 0, 1, 1, 2, 2])
    assert resize_labels_nearest(labels, labels.shape) is labels
    pasted = paste_box(labels, (slice(1, 7), slice(2, 9), slice(0, 9)), (10, 12, 9))
    assert pasted.shape == (10, 12, 9) and np.array_equal(pasted[1:7, 2:9], labels)
    assert not pasted[0].any() and not pasted[:, :2].any()


def smooth_logits(shape: tuple[int, ...], classes: int, seed: int) -> np.ndarray:
    """(classes, z, y, x) float16 logits varying smoothly in-plane (organ-like regions, not pixel noise)."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(classes, shape[0], shape[1] // 4 + 2, shape[2] // 4 + 2)).astype(np.float32)
    fine = np.repeat(np.repeat(coarse, 4, axis=2), 4, axis=3)[:, :, : shape[1], : shape[2]]
    kernel = np.ones(5, dtype=np.float32) / 5
    for axis in (2, 3):
        fine = np.apply_along_axis(lambda line: np.convolve(line, kernel, mode="same"), axis, fine)
    return (fine * 4).astype(np.float16)


@pytest.mark.parametrize("network_shape, output_shape", [((9, 30, 34), (25, 47, 55)), ((6, 21, 20), (6, 21, 20)),
                                                         ((8, 40, 44), (30, 31, 70))])
def test_inplane_linear_labels_match_nnunets_export_resampling(network_shape, output_shape):
    from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape

    logits = smooth_logits(network_shape, 14, seed=sum(output_shape))
    expected = resample_data_or_seg_to_shape(logits.astype(np.float32), output_shape, [4.0, 1.2, 1.2],
                                             [1.5, 0.8, 0.8], is_seg=False, order=1, order_z=0,
                                             force_separate_z=None).argmax(0)
    labels = logits.astype(np.float32).argmax(0).astype(np.uint8)
    ours = inplane_linear_labels(logits, labels, output_shape)
    assert ours.shape == tuple(output_shape) and ours.dtype == np.uint8
    agreement = float((ours == expected).mean())
    assert agreement >= 0.999, agreement
    nearest = resize_labels_nearest(labels, output_shape)
    if network_shape != output_shape:
        assert float((nearest == expected).mean()) < agreement


def test_inplane_linear_labels_keep_post_processing_removals():
    logits = smooth_logits((4, 24, 24), 5, seed=3)
    labels = logits.astype(np.float32).argmax(0).astype(np.uint8)
    removed = labels.copy()
    removed[removed == 2] = 0  # post-processing dropped organ 2 everywhere
    out = inplane_linear_labels(logits, removed, (8, 40, 40))
    assert not (out == 2).any() and (out == 0).any()
    with pytest.raises(ValueError, match="do not match"):
        inplane_linear_labels(logits, labels[:2], (8, 40, 40))


def test_inplane_linear_export_follows_nnunets_separate_z_rule():
    from nnunet_cdl.inference.export import exports_inplane_linear, separate_axis

    light = {"spacing": [4.0, 1.2, 1.2], "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
             "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                                    "force_separate_z": None}}
    assert exports_inplane_linear(light, [1.5, 0.8, 0.8])
    isotropic = {**light, "spacing": [1.0, 1.0, 1.0]}
    assert not exports_inplane_linear(isotropic, [1.0, 0.8, 0.8])
    assert exports_inplane_linear(isotropic, [5.0, 0.8, 0.8])  # the case's own spacing is anisotropic along z
    cubic = {**light, "resampling_fn_probabilities_kwargs": {"order": 3, "order_z": 0, "force_separate_z": None}}
    assert not exports_inplane_linear(cubic, [1.5, 0.8, 0.8])
    assert not exports_inplane_linear({**light, "resampling_fn_probabilities_kwargs": {"order": 1}}, [1.5, 0.8, 0.8])
    assert separate_axis(None, [1.2, 4.0, 1.2], [1, 1, 1]) == 1
    assert separate_axis(None, [0.24, 1.25, 1.25], [1, 1, 1]) is None  # two coarse axes: 3-D
    assert separate_axis(True, [2.0, 1.0, 1.0], [1, 1, 1]) == 0


def test_separate_axis_is_nnunets_rule():
    """Our torch-free copy of nnU-Net's `determine_do_sep_z_and_axis` (nnU-Net's module imports torch) agrees with
    it on spacings around the anisotropy threshold, with and without `force_separate_z`."""
    from nnunetv2.configuration import ANISO_THRESHOLD
    from nnunetv2.preprocessing.resampling.default_resampling import determine_do_sep_z_and_axis

    from nnunet_cdl.inference.export import ANISOTROPY_THRESHOLD, separate_axis

    assert ANISOTROPY_THRESHOLD == ANISO_THRESHOLD
    spacings = [[4.0, 1.2, 1.2], [1.2, 4.0, 1.2], [1.0, 1.0, 1.0], [3.0, 1.0, 1.0], [3.1, 1.0, 1.0],
                [0.24, 1.25, 1.25], [5.0, 5.0, 0.8], [1.5, 0.8, 0.8]]
    for force in (None, True, False):
        for current in spacings:
            for new in spacings:
                do_separate, axis = determine_do_sep_z_and_axis(force, current, new)
                expected = int(np.atleast_1d(axis)[0]) if do_separate and axis is not None else None
                assert separate_axis(force, current, new) == expected, (force, current, new)
