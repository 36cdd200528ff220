"""Time `nnunet-cdl evaluate`'s per-case scoring on a synthetic full-size CT label pair (default 300x512x512).

The pair is 13 ellipsoid / cylinder organs at 2.5 x 0.8 x 0.8 mm and a prediction with every organ moved and
resized by a few mm, so that every organ gets its surface distances computed (the slowest path).
Usage: .venv/bin/python scripts/bench_evaluate.py [--shape Z Y X] [--whole-volume]
`--whole-volume` also times the official script's way (whole volumes, no crop) on the same pair.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from surface_distance import compute_dice_coefficient, compute_surface_dice_at_tolerance, compute_surface_distances

from nnunet_cdl.evaluation.cases import CaseTask, evaluate_case
from nnunet_cdl.evaluation.metrics import case_scores
from nnunet_cdl.io import Geometry, write_volume
from nnunet_cdl.labels import NSD_TOLERANCE_MM, TUBE_ORGANS

# Organ id -> centre (z, y, x) as fractions of the field of view, radii (z, y, x) in mm.
ORGAN_LAYOUT: dict[int, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    1: ((0.62, 0.45, 0.32), (75, 80, 65)),
    2: ((0.45, 0.62, 0.30), (50, 28, 25)),
    3: ((0.62, 0.62, 0.74), (45, 45, 25)),
    4: ((0.50, 0.48, 0.55), (18, 15, 55)),
    5: ((0.50, 0.60, 0.52), (400, 12, 12)),
    6: ((0.50, 0.60, 0.43), (400, 13, 11)),
    7: ((0.70, 0.60, 0.38), (18, 6, 9)),
    8: ((0.70, 0.60, 0.62), (18, 6, 9)),
    9: ((0.52, 0.35, 0.37), (30, 14, 14)),
    10: ((0.85, 0.62, 0.53), (60, 8, 9)),
    11: ((0.65, 0.40, 0.65), (55, 40, 45)),
    12: ((0.45, 0.45, 0.45), (35, 16, 30)),
    13: ((0.45, 0.62, 0.70), (50, 28, 25)),
}


def paint(labels: np.ndarray, spacing_zyx: np.ndarray, rng: np.random.Generator | None) -> None:
    """Paint every organ's ellipsoid into `labels` (z, y, x); with `rng`, move each by <= 3 mm and resize <= 8 %."""
    shape = np.array(labels.shape)
    for organ, (fraction, radii_mm) in ORGAN_LAYOUT.items():
        centre_mm = np.array(fraction) * shape * spacing_zyx
        radii = np.array(radii_mm, float)
        if rng is not None:
            centre_mm = centre_mm + rng.uniform(-3, 3, 3)
            radii = radii * rng.uniform(0.92, 1.08, 3)
        low = np.maximum(np.floor((centre_mm - radii) / spacing_zyx).astype(int), 0)
        high = np.minimum(np.ceil((centre_mm + radii) / spacing_zyx).astype(int) + 1, shape)
        axes = [(np.arange(lo, hi) * s - c) / r for lo, hi, s, c, r in zip(low, high, spacing_zyx, centre_mm, radii)]
        inside = axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2 <= 1
        box = tuple(slice(lo, hi) for lo, hi in zip(low, high))
        labels[box][inside] = organ


def whole_volume_scores(truth: np.ndarray, pred: np.ndarray, spacing_zyx: tuple[float, float, float]) -> None:
    """The official script's computation: each organ on the whole volume, no crop (results discarded)."""
    warnings.simplefilter("ignore", DeprecationWarning)
    for organ, tolerance in NSD_TOLERANCE_MM.items():
        organ_truth, organ_pred = truth == organ, pred == organ
        if organ in TUBE_ORGANS:
            z = np.nonzero(organ_truth.any(axis=(1, 2)))[0]
            organ_truth, organ_pred = organ_truth[z.min() : z.max()], organ_pred[z.min() : z.max()]
        if compute_dice_coefficient(organ_truth, organ_pred) >= 0.2:
            distances = compute_surface_distances(organ_truth, organ_pred, spacing_zyx)
            compute_surface_dice_at_tolerance(distances, tolerance)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(300, 512, 512), metavar=("Z", "Y", "X"))
    parser.add_argument("--whole-volume", action="store_true", help="also time the uncropped official way")
    args = parser.parse_args()
    spacing_zyx = np.array([2.5, 0.8, 0.8])
    truth = np.zeros(args.shape, np.uint8)
    pred = np.zeros(args.shape, np.uint8)
    paint(truth, spacing_zyx, None)
    paint(pred, spacing_zyx, np.random.default_rng(0))
    spacing_xyz = (float(spacing_zyx[2]), float(spacing_zyx[1]), float(spacing_zyx[0]))
    geometry = Geometry(spacing_xyz, (0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    spacing = geometry.spacing_zyx

    start = time.perf_counter()
    scores = case_scores(truth, pred, spacing)
    in_memory = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        write_volume(Path(folder) / "truth.nii.gz", truth, geometry)
        write_volume(Path(folder) / "pred.nii.gz", pred, geometry)
        start = time.perf_counter()
        result = evaluate_case(CaseTask("synthetic", Path(folder) / "truth.nii.gz", Path(folder) / "pred.nii.gz"))
        with_reading = time.perf_counter() - start
    assert result.status == "ok", result.error
    print(f"shape (z, y, x) {tuple(args.shape)}, spacing (z, y, x) {spacing} mm")
    print("organ DSC / NSD: " + ", ".join(f"{o}: {d:.3f}/{n:.3f}" for o, (d, n) in scores.items()))
    print(f"case_scores (in memory, 13 organs): {in_memory:.2f} s")
    print(f"evaluate_case (read two .nii.gz + score): {with_reading:.2f} s")
    if args.whole_volume:
        start = time.perf_counter()
        whole_volume_scores(truth, pred, spacing)
        print(f"official way, whole volumes (in memory): {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
