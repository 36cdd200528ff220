"""Body crop, small-component removal, nearest-neighbour label resizing and box pasting."""

from __future__ import annotations

import numpy as np
import pytest

from nnunet_cdl.inference.body import BodyRules, body_box, box_shape, full_box
from nnunet_cdl.inference.export import nearest_indices, paste_box, resize_labels_nearest
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
