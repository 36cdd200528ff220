"""Locate first: the organs the center windows found, kept only where they form an organ's main body.

Every slab's center window shares one in-plane box, so together they see a *center column* of the image. The
column's label map, split into connected components per organ, tells a real organ (one large body across slabs)
from scattered false voxels (small separate blobs, typically in the pelvis or the chest, where the network was
never shown an organ). A slab then runs its other windows only when located organs lie in its part of the column.

Pure numpy / cc3d on label maps; no network. Coordinates are voxels (z, y, x) of the padded network grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import cc3d
import numpy as np

from nnunet_cdl.inference.tiling import Slab


def center_column(slabs: Sequence[Slab], center_labels: Sequence[np.ndarray], depth: int) -> np.ndarray:
    """The center windows' labels (each (pz, py, px) uint8, one per slab in `slabs` order) as one (depth, py, px)
    column: each z plane is taken from the slab whose center window's middle is nearest (overlapping slabs split
    their overlap halfway). `depth` is the image's z size; planes no center window covers stay background."""
    if len(slabs) != len(center_labels):
        raise ValueError(f"{len(slabs)} slabs but {len(center_labels)} center label maps")
    if not slabs:
        raise ValueError("no slabs")
    column = np.zeros((depth, *center_labels[0].shape[1:]), dtype=np.uint8)
    distance = np.full(depth, np.inf)
    for slab, labels in zip(slabs, center_labels):
        z0, z1 = slab.center.start[0], slab.center.stop[0]
        if labels.shape != tuple(slab.center.size):
            raise ValueError(f"slab {slab.index}: labels of shape {labels.shape}, window {slab.center.size}")
        middle = (z0 + z1 - 1) / 2
        for z in range(z0, min(z1, depth)):
            if abs(z - middle) < distance[z]:
                distance[z] = abs(z - middle)
                column[z] = labels[z - z0]
    return column


def located_organs(column: np.ndarray, min_fraction: float, connectivity: int = 26) -> np.ndarray:
    """`column` (z, y, x) labels with every connected component removed that has fewer than `min_fraction` times
    the voxels of its organ's largest component (1.0: the largest component of each organ only)."""
    if not 0 < min_fraction <= 1:
        raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}")
    components, count = cc3d.connected_components(column, connectivity=connectivity, return_N=True)
    if count == 0:
        return column.copy()
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    organ_of = np.zeros(count + 1, dtype=np.int64)
    organ_of[components.ravel()] = column.ravel()
    largest = np.zeros(int(column.max()) + 1, dtype=np.int64)
    np.maximum.at(largest, organ_of[1:], sizes[1:])
    keep = sizes >= min_fraction * largest[organ_of]
    keep[0] = False
    return np.where(keep[components], column, 0).astype(column.dtype)
