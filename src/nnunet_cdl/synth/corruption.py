"""Controlled corruption of label maps, to simulate imperfect pseudo-labelers, and the true Dice it causes.

Every corruption is a pure function `(label, rng, severity, spacing_zyx) -> (corrupted copy, params)`:
label is a uint8 (z, y, x) map, severity in [0, 1] (0 leaves the label unchanged), spacing in mm. The random
choices (which organs, which direction) are drawn before the amount, so for one `rng` state a higher severity
corrupts a superset of what a lower one does and the true Dice falls monotonically with severity.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from scipy import ndimage

from nnunet_cdl.labels import LABEL_IDS, ORGAN_IDS
from nnunet_cdl.synth.presets import synth_config

Spacing = tuple[float, float, float]
Corruption = Callable[[np.ndarray, np.random.Generator, float, Spacing], tuple[np.ndarray, dict[str, Any]]]

_SMALL_ORGANS = {LABEL_IDS[n] for n in ("right_adrenal_gland", "left_adrenal_gland", "gallbladder", "esophagus",
                                        "pancreas", "duodenum")}
SWAP_PAIRS: tuple[tuple[int, int], ...] = ((2, 13), (7, 8), (5, 6), (11, 12), (1, 3), (4, 12))
"""Label pairs a labeler confuses: kidneys, adrenals, aorta/IVC, stomach/duodenum, liver/spleen, pancreas/duodenum."""
MERGES: tuple[tuple[int, int], ...] = ((6, 1), (9, 1), (12, 4), (10, 11), (7, 2), (8, 13))
"""(absorbed, into): IVC and gallbladder into liver, duodenum into pancreas, esophagus into stomach, adrenals into
kidneys."""


def _scale() -> dict[str, Any]:
    return synth_config()["corruption_scale"]


def _present(label: np.ndarray) -> list[int]:
    counts = np.bincount(label.ravel(), minlength=256)
    return [i for i in ORGAN_IDS if counts[i] > 0]


def _foreground_box(label: np.ndarray, margin: tuple[int, int, int]) -> tuple[slice, ...]:
    """Bounding box of non-zero voxels, grown by `margin` voxels per axis (whole array when empty)."""
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(label.any(axis=other))
        if idx.size == 0:
            return tuple(slice(0, n) for n in label.shape)
        box.append(slice(max(int(idx[0]) - margin[axis], 0), min(int(idx[-1]) + margin[axis] + 1, label.shape[axis])))
    return tuple(box)


def boundary(
    label: np.ndarray, rng: np.random.Generator, severity: float, spacing: Spacing, mode: str | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Erode or dilate every organ by `severity * boundary_mm` mm times a per-organ factor in 0.5..1.5.

    Boundaries lie half a voxel outside the outermost voxel centres, so radii under half a voxel change nothing.
    mode: "erode", "dilate" or None (drawn). Dilation grows organs into background only.
    """
    mode = mode or str(rng.choice(["erode", "dilate"]))
    factors = rng.uniform(0.5, 1.5, 256)
    radius = float(severity) * _scale()["boundary_mm"]
    out = label.copy()
    if radius <= 0:
        return out, {"kind": "boundary", "severity": float(severity), "mode": mode, "radius_mm": 0.0}
    margin = tuple(int(math.ceil(1.5 * radius / s)) + 1 for s in spacing)
    box = _foreground_box(label, margin)  # type: ignore[arg-type]
    crop = label[box]
    radius_of = (radius * factors).astype(np.float32)
    half_voxel = np.float32(0.5 * min(spacing))
    if mode == "erode":
        edge = np.zeros(crop.shape, dtype=bool)
        for axis in range(3):
            diff = np.diff(crop, axis=axis) != 0
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[axis], hi[axis] = slice(0, -1), slice(1, None)
            edge[tuple(lo)] |= diff
            edge[tuple(hi)] |= diff
        dist = ndimage.distance_transform_edt(~edge, sampling=spacing).astype(np.float32) + half_voxel
        gone = (crop > 0) & (dist <= radius_of[crop])
        out[box][gone] = 0
    else:
        out[box] = _dilate(crop, radius_of, half_voxel, spacing)
    return out, {"kind": "boundary", "severity": float(severity), "mode": mode, "radius_mm": round(radius, 3)}


def _dilate(crop: np.ndarray, radius_of: np.ndarray, half_voxel: np.float32, spacing: Spacing) -> np.ndarray:
    """Grow each organ into background by its radius (mm); a voxel reachable by several goes to the nearest.

    One distance transform per organ on its own box (grown by its radius), cheaper than one with indices.
    """
    out = crop.copy()
    best = np.full(crop.shape, np.inf, dtype=np.float32)
    for organ in _present(crop):
        reach = tuple(int(math.ceil((float(radius_of[organ]) + half_voxel) / s)) + 1 for s in spacing)
        mask = crop == organ
        box = _foreground_box(mask, reach)  # type: ignore[arg-type]
        dist = ndimage.distance_transform_edt(~mask[box], sampling=spacing).astype(np.float32)
        grow = (crop[box] == 0) & (dist - half_voxel <= radius_of[organ]) & (dist < best[box])
        best[box][grow] = dist[grow]
        out[box][grow] = organ
    return out


def shift(label: np.ndarray, rng: np.random.Generator, severity: float, spacing: Spacing) -> tuple[np.ndarray, dict]:
    """Move a random subset of organs (each in its own random direction) by `severity * shift_mm` mm."""
    present = _present(label)
    chosen = [i for i in present if rng.random() < 0.6] or present[:1]
    directions = rng.normal(size=(len(chosen), 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    distance = float(severity) * _scale()["shift_mm"]
    out = label.copy()
    moved = []
    if distance <= 0 or not chosen:
        return out, {"kind": "shift", "severity": float(severity), "distance_mm": 0.0, "organs": []}
    out[np.isin(label, chosen)] = 0
    for organ, direction in zip(chosen, directions):
        step = np.round(direction * distance / np.asarray(spacing)).astype(int)
        src = tuple(slice(max(0, -d), n - max(0, d)) for d, n in zip(step, label.shape))
        dst = tuple(slice(max(0, d), n - max(0, -d)) for d, n in zip(step, label.shape))
        mask = label[src] == organ
        out[dst][mask] = organ
        moved.append(organ)
    return out, {"kind": "shift", "severity": float(severity), "distance_mm": round(distance, 3), "organs": moved}


def drop_organs(label: np.ndarray, rng: np.random.Generator, severity: float, spacing: Spacing) -> tuple[np.ndarray, dict]:
    """Remove ceil(severity * 6) organs, small ones (adrenals, gallbladder, pancreas, ...) more likely."""
    present = _present(label)
    order: list[int] = []
    if present:
        weights = np.array([3.0 if i in _SMALL_ORGANS else 1.0 for i in present])
        order = [int(i) for i in rng.choice(present, size=len(present), replace=False, p=weights / weights.sum())]
    dropped = order[: int(math.ceil(float(severity) * 6))]
    out = label.copy()
    out[np.isin(label, dropped)] = 0
    return out, {"kind": "drop", "severity": float(severity), "organs": dropped}


def swap_labels(label: np.ndarray, rng: np.random.Generator, severity: float, spacing: Spacing) -> tuple[np.ndarray, dict]:
    """Exchange the labels of ceil(severity * 6) commonly confused organ pairs (left/right kidney, ...)."""
    pairs = [SWAP_PAIRS[i] for i in rng.permutation(len(SWAP_PAIRS))]
    chosen: list[tuple[int, int]] = []
    used: set[int] = set()
    for a, b in pairs[: int(math.ceil(float(severity) * len(pairs)))]:
        if a not in used and b not in used:
            chosen.append((a, b))
            used |= {a, b}
    lut = np.arange(256, dtype=np.uint8)
    for a, b in chosen:
        lut[a], lut[b] = b, a
    return lut[label], {"kind": "swap", "severity": float(severity), "pairs": [list(p) for p in chosen]}


def merge_labels(label: np.ndarray, rng: np.random.Generator, severity: float, spacing: Spacing) -> tuple[np.ndarray, dict]:
    """Relabel ceil(severity * 6) organs as a neighbour (IVC as liver, duodenum as pancreas, ...)."""
    merges = [MERGES[i] for i in rng.permutation(len(MERGES))][: int(math.ceil(float(severity) * len(MERGES)))]
    lut = np.arange(256, dtype=np.uint8)
    for absorbed, into in merges:
        lut[absorbed] = into
    return lut[label], {"kind": "merge", "severity": float(severity), "merges": [list(m) for m in merges]}


def spurious_blobs(label: np.ndarray, rng: np.random.Generator, severity: float, spacing: Spacing) -> tuple[np.ndarray, dict]:
    """Paint ceil(severity * max_blobs) ellipsoidal blobs of organ labels near the organs (false positives)."""
    scale = _scale()
    box = _foreground_box(label, (0, 0, 0))
    count = int(math.ceil(float(severity) * scale["max_blobs"]))
    lo_r, hi_r = scale["blob_radius_mm"]
    centers = [rng.uniform([b.start for b in box], [b.stop for b in box]) for _ in range(scale["max_blobs"])]
    radii = [rng.uniform(lo_r, hi_r, 3) * (0.5 + 0.5 * float(severity)) for _ in range(scale["max_blobs"])]
    values = rng.choice(ORGAN_IDS, size=scale["max_blobs"])
    out = label.copy()
    blobs = []
    for center, semi, value in list(zip(centers, radii, values))[:count]:
        reach = [int(math.ceil(r / s)) for r, s in zip(semi, spacing)]
        sl = tuple(slice(max(int(c) - r, 0), min(int(c) + r + 1, n)) for c, r, n in zip(center, reach, label.shape))
        grids = np.ogrid[sl]
        inside = sum(((g - c) * s / r) ** 2 for g, c, s, r in zip(grids, center, spacing, semi)) <= 1.0
        out[sl][inside] = value
        blobs.append({"center_voxel": [int(c) for c in center], "semi_mm": [round(float(r), 2) for r in semi],
                      "label": int(value)})
    return out, {"kind": "blobs", "severity": float(severity), "blobs": blobs}


def stray_values(label: np.ndarray, rng: np.random.Generator, severity: float, spacing: Spacing) -> tuple[np.ndarray, dict]:
    """Set about `severity * max_stray_fraction` of the foreground voxels to values outside 0..13 (14, 255, ...).

    Half are single organ voxels, half come as 3x3x3 specks, as written by a buggy export.
    """
    scale = _scale()
    values = np.asarray(scale["stray_values"], dtype=np.uint8)
    fg = np.flatnonzero(label.ravel() > 0)
    out = label.copy()
    if fg.size == 0 or severity <= 0:
        return out, {"kind": "stray", "severity": float(severity), "values": [], "voxels": 0}
    order = rng.permutation(fg.size)
    picks = values[rng.integers(0, values.size, fg.size)]
    count = int(math.ceil(float(severity) * scale["max_stray_fraction"] * fg.size))
    singles = order[: count - count // 2]
    out.reshape(-1)[fg[singles]] = picks[singles]
    specks = order[fg.size - (count // 2) // 27:]
    for z, y, x, value in zip(*np.unravel_index(fg[specks], label.shape), picks[specks]):
        out[max(z - 1, 0): z + 2, max(y - 1, 0): y + 2, max(x - 1, 0): x + 2] = value
    used = sorted(int(v) for v in np.unique(out) if v > 13)
    return out, {"kind": "stray", "severity": float(severity), "values": used,
                 "voxels": int(np.count_nonzero(out > 13))}


CORRUPTIONS: dict[str, Corruption] = {
    "swap": swap_labels,
    "merge": merge_labels,
    "drop": drop_organs,
    "boundary": boundary,
    "shift": shift,
    "blobs": spurious_blobs,
    "stray": stray_values,
}
"""Corruption kinds in the order `corrupt_label` applies them."""


TOTALSEGMENTATOR_IDS: dict[int, int] = {1: 5, 2: 2, 3: 1, 4: 7, 5: 52, 6: 63, 7: 8, 8: 9, 9: 4, 10: 15, 11: 6, 12: 19,
                                        13: 3}
"""FLARE organ id -> TotalSegmentator v2 id of the same organ: a labeler that exports another label convention."""
FAILURES: tuple[str, ...] = ("drop", "swap", "shift_map", "truncate", "label_ids")
"""Ways one labeler fails on a case (`fail_label`)."""


def fail_label(
    label: np.ndarray, rng: np.random.Generator, kind: str, spacing: Spacing, settings: Mapping[str, Any]
) -> tuple[np.ndarray, dict[str, Any]]:
    """One labeler failing on a case: a corrupted copy of `label` (uint8 (z, y, x)) and the failure's record.

    kind "drop" / "swap": `drop_organs` / `swap_labels` at a severity drawn from `settings[kind]` (3-6 organs or
    pairs); "shift_map": the whole map moved by `settings["shift_map_mm"]` mm in a random direction (a
    registration error); "truncate": only a fraction `settings["truncate_kept"]` of the foreground's z extent kept,
    from one end (a labeler run on part of the scan); "label_ids": every organ written with its TotalSegmentator
    v2 id (`TOTALSEGMENTATOR_IDS`; ids above 13 are cleaned away downstream).
    """
    if kind in ("drop", "swap"):
        severity = float(rng.uniform(*settings[kind]))
        out, record = (drop_organs if kind == "drop" else swap_labels)(label, rng, severity, spacing)
        return out, {**record, "failure": True}
    if kind == "shift_map":
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        distance = float(rng.uniform(*settings["shift_map_mm"]))
        step = np.round(direction * distance / np.asarray(spacing)).astype(int)
        out = np.zeros_like(label)
        src = tuple(slice(max(0, -d), n - max(0, d)) for d, n in zip(step, label.shape))
        dst = tuple(slice(max(0, d), n - max(0, -d)) for d, n in zip(step, label.shape))
        out[dst] = label[src]
        return out, {"kind": "shift_map", "failure": True, "distance_mm": round(distance, 2),
                     "step_voxels_zyx": [int(s) for s in step]}
    if kind == "truncate":
        rows = np.flatnonzero(label.any(axis=(1, 2)))
        kept = float(rng.uniform(*settings["truncate_kept"]))
        out = label.copy()
        keep_high = bool(rng.random() < 0.5)
        if rows.size:
            length = int(round(kept * (rows[-1] - rows[0] + 1)))
            if keep_high:
                out[: rows[-1] + 1 - length] = 0
            else:
                out[rows[0] + length:] = 0
        return out, {"kind": "truncate", "failure": True, "kept_fraction": round(kept, 3),
                     "kept_end": "high z" if keep_high else "low z"}
    if kind == "label_ids":
        lut = np.arange(256, dtype=np.uint8)
        for flare, other in TOTALSEGMENTATOR_IDS.items():
            lut[flare] = other
        return lut[label], {"kind": "label_ids", "failure": True, "convention": "TotalSegmentator v2"}
    raise ValueError(f"unknown failure {kind!r}; known: {FAILURES}")


def corrupt_label(
    label: np.ndarray, rng: np.random.Generator, severities: Mapping[str, float], spacing: Spacing = (1.0, 1.0, 1.0),
    boundary_mode: str | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Apply the corruptions named in `severities` (kind -> severity in [0, 1]) in `CORRUPTIONS` order.

    Returns the corrupted copy and one record per applied kind (its parameters, JSON-ready). Work happens on the
    organs' bounding box plus the farthest reach of any corruption, so large scans cost what their organs do.
    """
    unknown = set(severities) - set(CORRUPTIONS)
    if unknown:
        raise ValueError(f"unknown corruption kind(s) {sorted(unknown)}; known: {list(CORRUPTIONS)}")
    scale = _scale()
    reach_mm = max(scale["shift_mm"], 1.5 * scale["boundary_mm"], max(scale["blob_radius_mm"])) + 2 * max(spacing)
    box = _foreground_box(label, tuple(int(math.ceil(reach_mm / s)) for s in spacing))  # type: ignore[arg-type]
    out, records = label[box], []
    for kind, func in CORRUPTIONS.items():
        if kind not in severities:
            continue
        severity = float(np.clip(severities[kind], 0.0, 1.0))
        if kind == "boundary":
            out, record = boundary(out, rng, severity, spacing, boundary_mode)
        else:
            out, record = func(out, rng, severity, spacing)
        for blob in record.get("blobs", []):
            blob["center_voxel"] = [int(c + b.start) for c, b in zip(blob["center_voxel"], box)]
        records.append(record)
    full = np.zeros_like(label)
    full[box] = out
    return full, records


def multi_organ_dice(pred: np.ndarray, truth: np.ndarray, organs: tuple[int, ...] = ORGAN_IDS) -> float:
    """Mean Dice over the organs present in `truth` or `pred` (1.0 when none is); values > 13 match nothing."""
    fg = (truth > 0) | (pred > 0)
    t = truth[fg].astype(np.int64)
    p = pred[fg].astype(np.int64)
    both = np.bincount(t[t == p], minlength=256)
    n_t = np.bincount(t, minlength=256)
    n_p = np.bincount(p, minlength=256)
    scores = [2.0 * both[i] / (n_t[i] + n_p[i]) for i in organs if n_t[i] + n_p[i] > 0]
    return float(np.mean(scores)) if scores else 1.0
