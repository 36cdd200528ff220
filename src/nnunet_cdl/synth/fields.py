"""Coarse sampling grids, smooth random fields and exact linear upsampling to the fine voxel grid.

Shapes are evaluated as signed distance-like fields (mm, negative inside) on a coarse grid whose points are every
`factor`-th fine voxel, then interpolated linearly onto the fine voxels of a bounding box only, so a 512x512x300
scan never evaluates anatomy per fine voxel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CoarseGrid:
    """A coarse lattice over a fine (z, y, x) grid: coarse index i sits on fine index i * factor.

    fine_shape: (z, y, x) voxels; spacing_zyx: fine spacing in mm; corner_mm: patient (x, y, z) of fine voxel 0.
    """

    fine_shape: tuple[int, int, int]
    spacing_zyx: tuple[float, float, float]
    corner_mm: tuple[float, float, float]
    factor: tuple[int, int, int]

    @classmethod
    def build(
        cls,
        fine_shape: tuple[int, int, int],
        spacing_zyx: tuple[float, float, float],
        corner_mm: tuple[float, float, float],
        coarse_mm: float,
    ) -> CoarseGrid:
        factor = tuple(max(1, int(round(coarse_mm / s))) for s in spacing_zyx)
        return cls(fine_shape, spacing_zyx, corner_mm, factor)  # type: ignore[arg-type]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Coarse shape (z, y, x): enough points to cover every fine voxel."""
        return tuple(-(-(n - 1) // f) + 1 for n, f in zip(self.fine_shape, self.factor))  # type: ignore[return-value]

    def axis_mm(self, axis: int) -> np.ndarray:
        """Patient coordinates (mm) of the coarse points along numpy axis 0 (z), 1 (y) or 2 (x)."""
        corner = self.corner_mm[2 - axis]
        step = self.spacing_zyx[axis] * self.factor[axis]
        return (corner + step * np.arange(self.shape[axis])).astype(np.float32)

    def coords(self, box: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable patient (x, y, z) mm coordinates of the coarse points in `box` (coarse index slices)."""
        z = self.axis_mm(0)[box[0]][:, None, None]
        y = self.axis_mm(1)[box[1]][None, :, None]
        x = self.axis_mm(2)[box[2]][None, None, :]
        return x, y, z

    def coarse_box(self, lo_mm: np.ndarray, hi_mm: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Coarse index slices covering the patient-frame box [lo_mm, hi_mm] (x, y, z), or None when outside."""
        box = []
        for axis in range(3):
            coords = self.axis_mm(axis)
            lo, hi = lo_mm[2 - axis], hi_mm[2 - axis]
            start = int(np.searchsorted(coords, lo, side="left")) - 1
            stop = int(np.searchsorted(coords, hi, side="right")) + 1
            start, stop = max(start, 0), min(stop, len(coords))
            if stop - start < 1 or coords[-1] < lo or coords[0] > hi:
                return None
            box.append(slice(start, stop))
        return tuple(box)  # type: ignore[return-value]

    def fine_box(self, box: tuple[slice, slice, slice]) -> tuple[slice, slice, slice]:
        """Fine voxel slices spanned by a coarse box (its first to its last coarse point, clipped)."""
        return tuple(
            slice(b.start * f, min((b.stop - 1) * f + 1, n)) for b, f, n in zip(box, self.factor, self.fine_shape)
        )  # type: ignore[return-value]


def _upsample_axis(values: np.ndarray, axis: int, factor: int, start: int, stop: int) -> np.ndarray:
    """Linear interpolation by an integer `factor` along `axis`, keeping fine positions start..stop-1.

    `values` ends with a repeated last point along `axis` (see `upsample`), so position (L - 1) * factor, the
    last real point, comes out exactly and no concatenation is needed.
    """
    lo = [slice(None)] * values.ndim
    hi = [slice(None)] * values.ndim
    lo[axis], hi[axis] = slice(0, -1), slice(1, None)
    base = values[tuple(lo)]
    shape = list(base.shape)
    shape.insert(axis + 1, 1)
    t_shape = [1] * (values.ndim + 1)
    t_shape[axis + 1] = factor
    t = (np.arange(factor, dtype=np.float32) / np.float32(factor)).reshape(t_shape)
    fine = (values[tuple(hi)] - base).reshape(shape) * t
    fine += base.reshape(shape)
    merged = list(base.shape)
    merged[axis] *= factor
    keep = [slice(None)] * values.ndim
    keep[axis] = slice(start, stop)
    return fine.reshape(merged)[tuple(keep)]


def upsample(coarse: np.ndarray, box: tuple[slice, slice, slice], grid: CoarseGrid) -> np.ndarray:
    """Linearly interpolate a coarse field sampled on coarse `box` onto its fine voxels (`grid.fine_box(box)`).

    coarse: float32 (z, y, x) values at the coarse points of `box`; returns float32 of the fine box's shape.
    Axes with the largest factor go last, so the big intermediate arrays are made once.
    """
    fine = grid.fine_box(box)
    pad = [(0, 1 if f > 1 else 0) for f in grid.factor]
    out = np.pad(coarse.astype(np.float32, copy=False), pad, mode="edge")
    for axis in sorted(range(3), key=lambda a: grid.factor[a]):
        f = grid.factor[axis]
        if f == 1:
            continue
        offset = box[axis].start * f
        out = _upsample_axis(out, axis, f, fine[axis].start - offset, fine[axis].stop - offset)
    return out


def smooth_noise(
    rng: np.random.Generator, shape: tuple[int, ...], spacing_mm: tuple[float, ...], scale_mm: float
) -> np.ndarray:
    """Smooth random field (float32, zero mean, unit standard deviation) with features about `scale_mm` large.

    White noise on a lattice of spacing `scale_mm` is spread by separable Gaussian weights (one small matrix
    product per axis), so the cost is a few operations per output point.
    """
    lattice = [max(2, int(np.ceil(n * s / scale_mm)) + 3) for n, s in zip(shape, spacing_mm)]
    field = rng.standard_normal(lattice).astype(np.float32)
    for axis, (n, s) in enumerate(zip(shape, spacing_mm)):
        pos = np.arange(n) * s / scale_mm + 1.0
        weights = np.exp(-0.5 * ((pos[:, None] - np.arange(lattice[axis])[None, :]) / 0.75) ** 2).astype(np.float32)
        field = np.moveaxis(np.tensordot(field, weights, axes=([axis], [1])), -1, axis)
    field -= field.mean()
    field /= float(field.std()) or 1.0
    return np.ascontiguousarray(field, dtype=np.float32)
