"""Logits kept only where the in-plane linear export reads them: at the pixels of label boundaries.

`export.inplane_linear_labels` interpolates logits only for output pixels whose four in-plane source pixels (a
2x2 block of the network grid, clamped at the edges) hold different labels, and reads the logits of exactly those
four pixels. So a plane's logits are needed only at the pixels of its non-constant 2x2 blocks
(`boundary_pixels`), a few per cent of the plane, instead of every pixel (14 float16 values per voxel: 377 MB at
1000 slices). Post-processing only sets whole connected components to background, and the four pixels of a block
are always one 26-connected component, so a block that is constant before post-processing stays constant: the
pixels the export reads after post-processing are among those marked before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


def boundary_pixels(labels: np.ndarray) -> np.ndarray:
    """Bool (n, Y, X): the pixels of label planes `labels` (n, Y, X) that lie in a 2x2 in-plane block of differing
    labels (the last row and column pair with themselves, as the export's clamped taps do)."""
    padded = np.pad(labels, ((0, 0), (0, 1), (0, 1)), mode="edge")
    top_left = padded[:, :-1, :-1]
    mixed = (top_left != padded[:, 1:, :-1]) | (top_left != padded[:, :-1, 1:]) | (top_left != padded[:, 1:, 1:])
    needed = mixed.copy()
    needed[:, 1:, :] |= mixed[:, :-1, :]
    needed[:, :, 1:] |= mixed[:, :, :-1]
    needed[:, 1:, 1:] |= mixed[:, :-1, :-1]
    return needed


@dataclass
class BoundaryLogits:
    """Logits of a (K, Z, Y, X) volume kept per plane at some pixels only: `index[z]` the sorted flat in-plane
    positions (y * X + x, int64), `values[z]` their logits (K, n) float16."""

    shape: tuple[int, int, int, int]
    index: list[np.ndarray] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        classes, depth = self.shape[0], self.shape[1]
        if not self.index:
            self.index = [np.zeros(0, dtype=np.int64) for _ in range(depth)]
            self.values = [np.zeros((classes, 0), dtype=np.float16) for _ in range(depth)]

    @classmethod
    def from_dense(cls, logits: np.ndarray, labels: np.ndarray) -> BoundaryLogits:
        """Keep `logits` (K, Z, Y, X) at the boundary pixels of `labels` (Z, Y, X)."""
        kept = cls(tuple(int(s) for s in logits.shape))  # type: ignore[arg-type]
        for z, mask in enumerate(boundary_pixels(labels)):
            ys, xs = np.nonzero(mask)
            kept.store(z, ys, xs, logits[:, z, ys, xs])
        return kept

    def store(self, z: int, ys: np.ndarray, xs: np.ndarray, values: np.ndarray) -> None:
        """Keep plane `z`'s logits `values` (K, n) at pixels (`ys`, `xs`) in row-major order (as `np.nonzero`)."""
        self.index[z] = ys.astype(np.int64) * self.shape[3] + xs
        self.values[z] = values.astype(np.float16)

    def at(self, z: int, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """Logits (K, n) float32 of plane `z` at pixels (`ys`, `xs`); ValueError for a pixel that was not kept."""
        flat = ys.astype(np.int64) * self.shape[3] + xs
        index = self.index[z]
        if flat.size == 0:
            return np.zeros((self.shape[0], 0), dtype=np.float32)
        position = np.minimum(np.searchsorted(index, flat), max(index.size - 1, 0))
        if index.size == 0 or not np.array_equal(index[position], flat):
            raise ValueError(f"logits of plane {z} requested at pixels that were not kept")
        return self.values[z][:, position].astype(np.float32)

    def crop(self, spatial: Sequence[slice]) -> BoundaryLogits:
        """The kept logits inside the (z, y, x) box `spatial` (slices with explicit start and stop), re-indexed."""
        z_box, y_box, x_box = spatial
        depth, rows, cols = (s.stop - s.start for s in spatial)
        cropped = BoundaryLogits((self.shape[0], depth, rows, cols))
        for z in range(depth):
            index = self.index[z_box.start + z]
            ys, xs = np.divmod(index, self.shape[3])
            inside = (ys >= y_box.start) & (ys < y_box.stop) & (xs >= x_box.start) & (xs < x_box.stop)
            cropped.store(z, ys[inside] - y_box.start, xs[inside] - x_box.start, self.values[z_box.start + z][:, inside])
        return cropped
