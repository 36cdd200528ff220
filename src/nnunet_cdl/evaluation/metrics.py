"""FLARE 2024 organ metrics: Dice (DSC) and normalised surface Dice (NSD) per organ, as the official script.

Matches `FLARE24/T2andT3_FLARE24_DSC_NSD_Eval.py` of JunMa11/FLARE, computed with DeepMind's `surface-distance`
package (the library that script uses), with two differences that change no number:

* arrays are (z, y, x) as SimpleITK reads them, with spacing in the same order (the official script reads
  (x, y, z) with nibabel and its header zooms); surface distances do not depend on the axis order;
* each organ is cropped to the bounding box of truth and prediction (plus a 1-voxel margin) before the
  metrics, which `surface-distance` would otherwise do itself after scanning the whole volume.

The official script's rules:

* an organ absent from truth and prediction scores DSC 1, NSD 1; absent from exactly one scores 0, 0;
* NSD is 0 (not computed) when DSC < 0.2;
* aorta, IVC and esophagus (`labels.TUBE_ORGANS`) are judged on the truth's axial slices
  `z_lower:z_upper` only, where z_lower / z_upper are the lowest / highest slice holding that organ in the
  truth: Python's slice leaves out the highest slice. A tube whose truth lies on one slice gives an empty
  slab; the official script then scores 0/0, NaN for both metrics, and so do we (`math.nan`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping

import numpy as np
from scipy import ndimage
from surface_distance import compute_dice_coefficient, compute_surface_dice_at_tolerance, compute_surface_distances

from nnunet_cdl.labels import NSD_TOLERANCE_MM, ORGAN_IDS, TUBE_ORGANS

NSD_MIN_DSC = 0.2
"""Below this DSC the official script does not compute NSD and scores it 0."""

CROP_MARGIN = 1
"""Voxels added around each organ's bounding box before the metrics (any margin >= 0 gives the same numbers)."""

Box = tuple[slice, slice, slice]


def dice_and_nsd(
    truth: np.ndarray, pred: np.ndarray, spacing_zyx: tuple[float, float, float], tolerance_mm: float
) -> tuple[float, float]:
    """DSC and NSD of two boolean masks (z, y, x) with voxel spacing (z, y, x) and tolerance in mm.

    NSD is 0 when DSC < 0.2. Both masks empty (the slab of a one-slice tube) is 0/0 in the official script:
    (nan, nan).
    """
    if not truth.any() and not pred.any():
        return math.nan, math.nan
    dsc = float(compute_dice_coefficient(truth, pred))
    if dsc < NSD_MIN_DSC:
        return dsc, 0.0
    with warnings.catch_warnings():
        # surface-distance still calls scipy.ndimage.filters / .morphology, deprecated in SciPy 1.x.
        warnings.simplefilter("ignore", DeprecationWarning)
        distances = compute_surface_distances(truth, pred, tuple(float(s) for s in spacing_zyx))
    return dsc, float(compute_surface_dice_at_tolerance(distances, tolerance_mm))


def tube_slab(truth_box: Box) -> slice:
    """The axial slices a tube organ is judged on: truth's lowest slice up to, excluding, its highest slice.

    `truth_box` is the organ's bounding box in the truth (z, y, x); `z_upper` = stop - 1 is the highest slice,
    and the official script's `z_lower:z_upper` leaves it out.
    """
    return slice(truth_box[0].start, truth_box[0].stop - 1)


def organ_boxes(labels: np.ndarray, organ_ids: Iterable[int] = ORGAN_IDS) -> dict[int, Box | None]:
    """Bounding box (z, y, x slices) of each organ id in a label map (z, y, x), None when the organ is absent.

    One pass over the volume (`scipy.ndimage.find_objects`); label values above the largest id are ignored.
    """
    organ_ids = tuple(organ_ids)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"label map must have an integer dtype, got {labels.dtype}")
    work = labels if labels.dtype.kind == "u" else np.where(labels < 0, 0, labels)
    found = ndimage.find_objects(work, max_label=max(organ_ids))
    return {i: found[i - 1] for i in organ_ids}


def union_box(first: Box | None, second: Box | None, shape: tuple[int, ...], margin: int = CROP_MARGIN) -> Box:
    """Smallest box holding both boxes (at least one given), grown by `margin` voxels and clipped to `shape`."""
    boxes = [b for b in (first, second) if b is not None]
    if not boxes:
        raise ValueError("union_box needs at least one box")
    return tuple(  # type: ignore[return-value]
        slice(max(min(b[axis].start for b in boxes) - margin, 0), min(max(b[axis].stop for b in boxes) + margin, n))
        for axis, n in enumerate(shape)
    )


def organ_scores(
    truth: np.ndarray,
    pred: np.ndarray,
    organ: int,
    spacing_zyx: tuple[float, float, float],
    truth_box: Box | None,
    pred_box: Box | None,
    tolerance_mm: float,
    tube: bool,
) -> tuple[float, float]:
    """DSC and NSD of one organ in label maps `truth`, `pred` (z, y, x), given its boxes in each (None: absent)."""
    if truth_box is None and pred_box is None:
        return 1.0, 1.0
    if truth_box is None or pred_box is None:
        return 0.0, 0.0
    box = union_box(truth_box, pred_box, truth.shape)
    if tube:
        box = (tube_slab(truth_box), box[1], box[2])
    return dice_and_nsd(truth[box] == organ, pred[box] == organ, spacing_zyx, tolerance_mm)


def case_scores(
    truth: np.ndarray,
    pred: np.ndarray,
    spacing_zyx: tuple[float, float, float],
    tolerances_mm: Mapping[int, float] = NSD_TOLERANCE_MM,
    tube_organs: Iterable[int] = TUBE_ORGANS,
) -> dict[int, tuple[float, float]]:
    """Organ id -> (DSC, NSD) for two integer label maps (z, y, x) of one case; spacing (z, y, x) in mm.

    Organs are the keys of `tolerances_mm` (NSD tolerance in mm); `tube_organs` get the slice-range rule.
    """
    if truth.shape != pred.shape:
        raise ValueError(f"truth shape {truth.shape} differs from prediction shape {pred.shape}")
    organs = tuple(tolerances_mm)
    tubes = set(tube_organs)
    truth_boxes, pred_boxes = organ_boxes(truth, organs), organ_boxes(pred, organs)
    return {
        organ: organ_scores(
            truth, pred, organ, spacing_zyx, truth_boxes[organ], pred_boxes[organ], tolerances_mm[organ], organ in tubes
        )
        for organ in organs
    }
