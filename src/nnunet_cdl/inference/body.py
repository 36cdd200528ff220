"""Body crop: the bounding box of the patient's body in a CT, found by thresholding HU, so air is never tiled."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cc3d
import numpy as np

Box = tuple[slice, slice, slice]


@dataclass(frozen=True)
class BodyRules:
    """Body crop settings (preset: `configs/inference.json`, key "body")."""

    enabled: bool = True
    threshold_hu: float = -500.0
    """Voxels above this (HU) are body (soft tissue, bone, table); air and lung parenchyma are below."""
    sample_mm: float = 4.0
    """The threshold mask is sampled every ~this many mm per axis before the components are found."""
    min_component_fraction: float = 0.1
    """Components at least this fraction of the largest one are body too (arms, a split field of view)."""
    margin_mm: float = 8.0
    """Margin added on every side of the box, in mm."""


def body_box(image_hu: np.ndarray, spacing_zyx: Sequence[float], rules: BodyRules) -> Box | None:
    """Bounding box (z, y, x slices) of the body in a CT image (z, y, x) in HU, `spacing_zyx` in mm.

    The mask `image > threshold_hu` is sampled on a ~`sample_mm` grid; its largest 26-connected component and every
    component of at least `min_component_fraction` of it (this drops the table and scanner noise) give the box,
    grown by `margin_mm`. Returns None when no voxel exceeds the threshold.
    """
    if image_hu.ndim != 3:
        raise ValueError(f"3-D image expected, got shape {image_hu.shape}")
    strides = [max(1, int(rules.sample_mm // max(s, 1e-6))) for s in spacing_zyx]
    sampled = image_hu[:: strides[0], :: strides[1], :: strides[2]] > rules.threshold_hu
    if not sampled.any():
        return None
    components, count = cc3d.connected_components(sampled, connectivity=26, return_N=True)
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    sizes[0] = 0
    keep = sizes >= rules.min_component_fraction * sizes.max()
    mask = keep[components]
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        margin = int(math.ceil(rules.margin_mm / spacing_zyx[axis]))
        lo = max(0, int(hits[0]) * strides[axis] - margin)
        hi = min(image_hu.shape[axis], (int(hits[-1]) + 1) * strides[axis] + margin)
        box.append(slice(lo, hi))
    return tuple(box)  # type: ignore[return-value]


def full_box(shape: Sequence[int]) -> Box:
    """The box of a whole (z, y, x) array."""
    return tuple(slice(0, int(s)) for s in shape)  # type: ignore[return-value]


def box_shape(box: Box) -> tuple[int, int, int]:
    return tuple(int(s.stop - s.start) for s in box)  # type: ignore[return-value]
