"""Logits kept at label boundaries: exactly what the in-plane linear export reads, so its output is unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from nnunet_cdl.inference.boundary import BoundaryLogits, boundary_pixels
from nnunet_cdl.inference.export import inplane_linear_labels
from nnunet_cdl.inference.postprocess import remove_small_components
from nnunet_cdl.inference.preprocess import linear_taps


def blob_labels(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """Label planes with a few rectangular organs and scattered single pixels."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.uint8)
    for label in range(1, 6):
        z, y, x = (int(rng.integers(0, s - 2)) for s in shape)
        labels[z : z + int(rng.integers(2, 6)), y : y + int(rng.integers(3, 12)), x : x + int(rng.integers(3, 12))] = label
    noise = rng.random(shape) < 0.01
    labels[noise] = rng.integers(1, 6, size=int(noise.sum()))
    return labels


def pixels_read_by_export(labels: np.ndarray, out_rows: int, out_cols: int) -> np.ndarray:
    """Bool (Z, Y, X): the source pixels whose logits the export reads (corners of output pixels whose four
    source labels differ), straight from the export's taps."""
    depth, rows, cols = labels.shape
    y0, y1, _ = linear_taps(rows, out_rows)
    x0, x1, _ = linear_taps(cols, out_cols)
    read = np.zeros(labels.shape, dtype=bool)
    for z in range(depth):
        corners = [labels[z][np.ix_(ys, xs)] for ys in (y0, y1) for xs in (x0, x1)]
        iy, ix = np.nonzero((corners[0] != corners[1]) | (corners[0] != corners[2]) | (corners[0] != corners[3]))
        for ys in (y0, y1):
            for xs in (x0, x1):
                read[z, ys[iy], xs[ix]] = True
    return read


@pytest.mark.parametrize("out_rows, out_cols", [(37, 61), (20, 30), (19, 33), (80, 90)])
def test_boundary_pixels_cover_every_pixel_the_export_reads(out_rows, out_cols):
    labels = blob_labels((6, 20, 30), seed=out_rows)
    marked = boundary_pixels(labels)
    read = pixels_read_by_export(labels, out_rows, out_cols)
    assert read.any()
    assert not (read & ~marked).any()
    assert marked.mean() < 0.5  # a boundary set, not the whole plane


def test_boundary_pixels_of_post_processed_labels_are_among_those_before():
    labels = blob_labels((8, 24, 24), seed=5)
    processed = remove_small_components(labels, [1, 2], min_component_voxels=4)
    assert not np.array_equal(processed, labels)
    assert not (boundary_pixels(processed) & ~boundary_pixels(labels)).any()


def test_export_from_boundary_logits_equals_export_from_dense_logits():
    rng = np.random.default_rng(0)
    labels = blob_labels((5, 18, 22), seed=9)
    logits = (rng.normal(size=(6, *labels.shape)) + 6 * np.moveaxis(np.eye(6)[labels], -1, 0)).astype(np.float16)
    argmax = logits.astype(np.float32).argmax(0).astype(np.uint8)
    processed = remove_small_components(argmax, [1, 2, 3], min_component_voxels=3)
    kept = BoundaryLogits.from_dense(logits, argmax)  # marked before post-processing, as the sliding window does
    dense = inplane_linear_labels(logits, processed, (9, 41, 37))
    assert np.array_equal(inplane_linear_labels(kept, processed, (9, 41, 37)), dense)


def test_boundary_logits_crop_reindexes_and_refuses_pixels_not_kept():
    labels = blob_labels((4, 16, 20), seed=2)
    logits = np.random.default_rng(1).normal(size=(3, *labels.shape)).astype(np.float16)
    kept = BoundaryLogits.from_dense(logits, labels)
    box = (slice(1, 3), slice(2, 14), slice(3, 17))
    cropped = kept.crop(box)
    assert cropped.shape == (3, 2, 12, 14)
    z, (ys, xs) = 1, np.nonzero(boundary_pixels(labels[box])[1])
    assert np.array_equal(cropped.at(z, ys, xs), logits[:, 2, ys + 2, xs + 3].astype(np.float32))
    inside = np.nonzero(~boundary_pixels(labels)[0])
    with pytest.raises(ValueError, match="not kept"):
        kept.at(0, inside[0][:1], inside[1][:1])
