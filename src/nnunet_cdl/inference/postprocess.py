"""Post-processing: remove small connected components per organ with connected-components-3d."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cc3d
import numpy as np


@dataclass(frozen=True)
class PostprocessRules:
    """Settings (preset: `configs/inference.json`, key "postprocess")."""

    enabled: bool = True
    keep_largest_labels: tuple[int, ...] = tuple(range(1, 14))
    """Organs that are one connected structure: only their largest component is kept."""
    min_component_voxels: int = 100
    """Other labels: components smaller than this many voxels are removed."""
    connectivity: int = 26


def foreground_box(labels: np.ndarray) -> tuple[slice, ...] | None:
    """Tight bounding box of the non-zero voxels of a label map, or None when it is all background."""
    box = []
    for axis in range(labels.ndim):
        other = tuple(a for a in range(labels.ndim) if a != axis)
        hits = np.flatnonzero(labels.any(axis=other))
        if hits.size == 0:
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def remove_small_components(
    labels: np.ndarray, keep_largest_labels: Sequence[int], min_component_voxels: int, connectivity: int = 26
) -> np.ndarray:
    """A copy of the label map (z, y, x) in which every label of `keep_largest_labels` keeps only its largest
    connected component and every other label loses its components below `min_component_voxels` voxels."""
    out = labels.copy()
    box = foreground_box(labels)
    if box is None:
        return out
    crop = labels[box]
    components, count = cc3d.connected_components(crop, connectivity=connectivity, return_N=True)
    flat = components.ravel()
    sizes = np.bincount(flat, minlength=count + 1)
    component_label = np.zeros(count + 1, dtype=np.int64)
    component_label[flat] = crop.ravel()
    keep = sizes >= min_component_voxels
    for label in keep_largest_labels:
        ids = np.flatnonzero(component_label == label)
        ids = ids[ids > 0]
        if ids.size:
            keep[ids] = False
            keep[ids[np.argmax(sizes[ids])]] = True
    keep[0] = True
    out[box] = np.where(keep[components], crop, 0)
    return out
