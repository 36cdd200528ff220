"""FLARE organ metrics on hand-computable masks, and agreement with the official script's way of computing them."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from surface_distance import compute_dice_coefficient, compute_surface_dice_at_tolerance, compute_surface_distances

from nnunet_cdl.evaluation.metrics import case_scores, dice_and_nsd, organ_boxes, tube_slab, union_box
from nnunet_cdl.labels import NSD_TOLERANCE_MM, TUBE_ORGANS

TOTALSEG = Path(__file__).resolve().parents[3] / "shared" / "data" / "totalseg"

RIGHT_ADRENAL, AORTA, LIVER = 7, 5, 1


def box_labels(shape: tuple[int, int, int], start: tuple[int, int, int], size: tuple[int, int, int], label: int):
    volume = np.zeros(shape, np.uint8)
    volume[tuple(slice(s, s + n) for s, n in zip(start, size))] = label
    return volume


def shifted_box_nsd_by_hand(a: int, b: int, c: int, sz: float, sy: float, sx: float) -> float:
    """NSD of an a x b x c box (z, y, x voxels) and the same box one slice higher, tolerance below sz, sy and sx.

    surface-distance puts surface elements on voxel corners with marching-cubes areas: a flat-face point has
    the area of one voxel face, an edge point sx * hypot(sz, sy) / 2 (for an edge along x), a corner point
    sqrt((sy sx)^2 + (sz sx)^2 + (sz sy)^2) / 8. The truth's bottom face (with its edges and corners) lies one
    slice (sz mm) from the prediction's surface, the top face's inner points sz (or >= sy, sx in-plane) from it:
    both fail. Side faces, vertical edges and the top edges and corners lie on the prediction's surface: 0 mm.
    By symmetry the prediction's surface gives the same fraction.
    """
    face_z, face_y, face_x = sy * sx, sz * sx, sz * sy
    edge_x, edge_y = sx * math.hypot(sz, sy) / 2, sy * math.hypot(sz, sx) / 2
    edge_z = sz * math.hypot(sy, sx) / 2
    corner = math.sqrt((sy * sx) ** 2 + (sz * sx) ** 2 + (sz * sy) ** 2) / 8
    top_rim = 2 * (c - 1) * edge_x + 2 * (b - 1) * edge_y + 4 * corner
    passing = 2 * (a - 1) * (c - 1) * face_y + 2 * (a - 1) * (b - 1) * face_x + 4 * (a - 1) * edge_z + top_rim
    failing = 2 * (b - 1) * (c - 1) * face_z + top_rim
    return passing / (passing + failing)


def test_box_shifted_one_slice_at_anisotropic_spacing_matches_hand_values() -> None:
    spacing_zyx = (3.0, 2.5, 4.0)  # tolerance 2 mm (right adrenal) is below every spacing
    truth = box_labels((9, 8, 10), (2, 2, 2), (4, 3, 5), RIGHT_ADRENAL)
    pred = np.roll(truth, 1, axis=0)
    dsc, nsd = case_scores(truth, pred, spacing_zyx)[RIGHT_ADRENAL]
    assert dsc == pytest.approx(3 / 4, abs=1e-12)  # (a - 1) / a of the voxels overlap
    expected = shifted_box_nsd_by_hand(4, 3, 5, *spacing_zyx)
    assert nsd == pytest.approx(expected, abs=1e-12)
    assert 0.6 < expected < 0.75
    # The same shift read with the spacing in (x, y, z) order would give another number: axis order matters.
    assert case_scores(truth, pred, spacing_zyx[::-1])[RIGHT_ADRENAL][1] != pytest.approx(expected, abs=1e-3)


def test_shift_within_tolerance_gives_nsd_one_and_tolerance_is_inclusive() -> None:
    truth = box_labels((9, 9, 12), (2, 2, 2), (4, 4, 6), RIGHT_ADRENAL)
    along_x = np.roll(truth, 1, axis=2)
    assert case_scores(truth, along_x, (5.0, 5.0, 0.5))[RIGHT_ADRENAL] == (pytest.approx(5 / 6), pytest.approx(1.0))
    # A shift of exactly the 2 mm tolerance along z: every surface point is within <= 2 mm.
    along_z = np.roll(truth, 1, axis=0)
    assert case_scores(truth, along_z, (2.0, 5.0, 5.0))[RIGHT_ADRENAL][1] == pytest.approx(1.0)
    assert case_scores(truth, along_z, (2.01, 5.0, 5.0))[RIGHT_ADRENAL][1] < 0.9


def test_absent_organs() -> None:
    truth = box_labels((6, 6, 6), (1, 1, 1), (3, 3, 3), LIVER)
    empty = np.zeros_like(truth)
    scores = case_scores(truth, empty, (1.0, 1.0, 1.0))
    assert scores[LIVER] == (0.0, 0.0)  # in truth only
    assert case_scores(empty, truth, (1.0, 1.0, 1.0))[LIVER] == (0.0, 0.0)  # in prediction only
    assert all(scores[organ] == (1.0, 1.0) for organ in scores if organ != LIVER)  # absent from both
    assert len(scores) == 13


def test_nsd_is_zero_when_dsc_below_0_2() -> None:
    truth = box_labels((8, 8, 8), (2, 2, 2), (1, 4, 4), LIVER)  # one-voxel-thick plate
    pred = np.roll(truth, 1, axis=0)  # 1 mm away: every surface point within the 5 mm tolerance
    assert case_scores(truth, pred, (1.0, 1.0, 1.0))[LIVER] == (0.0, 0.0)
    thicker = box_labels((12, 8, 8), (2, 2, 2), (5, 4, 4), LIVER)
    shifted = np.roll(thicker, 4, axis=0)  # DSC 0.2 exactly: NSD is computed
    dsc, nsd = case_scores(thicker, shifted, (1.0, 1.0, 1.0))[LIVER]
    assert dsc == pytest.approx(0.2) and nsd == pytest.approx(1.0)


def test_tube_judged_on_truth_slices_without_the_highest() -> None:
    truth = box_labels((12, 6, 6), (3, 2, 2), (5, 2, 2), AORTA)  # slices 3..7
    pred = truth.copy()
    pred[0:3, 2:4, 2:4] = AORTA  # below the truth's range: not judged
    pred[8:12, 2:4, 2:4] = AORTA  # above: not judged
    assert case_scores(truth, pred, (2.0, 1.0, 1.0))[AORTA] == (1.0, 1.0)
    top_only = truth.copy()
    top_only[7] = 0  # the highest truth slice is left out, as in the official script
    assert case_scores(truth, top_only, (2.0, 1.0, 1.0))[AORTA] == (1.0, 1.0)
    bottom_missing = truth.copy()
    bottom_missing[3] = 0  # the lowest truth slice counts: 3 of the 4 judged slices remain
    assert case_scores(truth, bottom_missing, (2.0, 1.0, 1.0))[AORTA][0] == pytest.approx(6 / 7)
    # A non-tube organ with the same extra voxels is judged on the whole volume.
    liver_truth = np.where(truth > 0, LIVER, 0).astype(np.uint8)
    liver_pred = np.where(pred > 0, LIVER, 0).astype(np.uint8)
    assert case_scores(liver_truth, liver_pred, (2.0, 1.0, 1.0))[LIVER][0] == pytest.approx(40 / 68)


def test_tube_outside_truth_slices_scores_zero_and_one_slice_tube_is_undefined() -> None:
    truth = box_labels((12, 6, 6), (3, 2, 2), (4, 2, 2), AORTA)
    elsewhere = box_labels((12, 6, 6), (8, 2, 2), (3, 2, 2), AORTA)  # present, but not on the truth's slices
    assert case_scores(truth, elsewhere, (1.0, 1.0, 1.0))[AORTA] == (0.0, 0.0)
    one_slice = box_labels((12, 6, 6), (5, 2, 2), (1, 2, 2), AORTA)
    dsc, nsd = case_scores(one_slice, one_slice, (1.0, 1.0, 1.0))[AORTA]
    assert math.isnan(dsc) and math.isnan(nsd)  # z_lower:z_upper is empty: the official script's 0/0
    assert set(TUBE_ORGANS) == {5, 6, 10}


def test_boxes_and_slab_helpers() -> None:
    labels = np.zeros((5, 6, 7), np.int16)
    labels[1:3, 2:5, 0:1] = 4
    labels[4, 5, 6] = 200  # beyond the organ ids: ignored
    boxes = organ_boxes(labels)
    assert boxes[4] == (slice(1, 3), slice(2, 5), slice(0, 1)) and boxes[1] is None
    assert union_box(boxes[4], None, labels.shape) == (slice(0, 4), slice(1, 6), slice(0, 2))
    assert tube_slab(boxes[4]) == slice(1, 2)
    with pytest.raises(TypeError):
        organ_boxes(labels.astype(float))


def test_dice_and_nsd_of_empty_masks() -> None:
    empty = np.zeros((3, 3, 3), bool)
    full = np.ones((3, 3, 3), bool)
    assert all(math.isnan(v) for v in dice_and_nsd(empty, empty, (1.0, 1.0, 1.0), 2.0))
    assert dice_and_nsd(full, empty, (1.0, 1.0, 1.0), 2.0) == (0.0, 0.0)


def official_way(truth_zyx: np.ndarray, pred_zyx: np.ndarray, spacing_xyz: tuple[float, ...]) -> dict:
    """Scores the way FLARE24's script computes them: (x, y, z) arrays as nibabel reads them, whole volumes."""
    truth, pred = truth_zyx.transpose(2, 1, 0), pred_zyx.transpose(2, 1, 0)
    scores = {}
    for organ, tolerance in NSD_TOLERANCE_MM.items():
        in_truth, in_pred = (truth == organ).any(), (pred == organ).any()
        if not in_truth and not in_pred:
            scores[organ] = (1.0, 1.0)
            continue
        if not (in_truth and in_pred):
            scores[organ] = (0.0, 0.0)
            continue
        organ_truth, organ_pred = truth == organ, pred == organ
        if organ in (5, 6, 10):
            z = np.nonzero(organ_truth)[2]
            organ_truth, organ_pred = organ_truth[:, :, z.min() : z.max()], organ_pred[:, :, z.min() : z.max()]
        dsc = compute_dice_coefficient(organ_truth, organ_pred)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            nsd = 0.0
            if dsc >= 0.2:
                nsd = compute_surface_dice_at_tolerance(
                    compute_surface_distances(organ_truth, organ_pred, spacing_xyz), tolerance
                )
        scores[organ] = (dsc, nsd)
    return scores


def test_matches_the_official_way_on_the_real_ct_pair() -> None:
    truth_image = sitk.ReadImage(str(TOTALSEG / "label_ts_default.nii.gz"))
    pred_image = sitk.ReadImage(str(TOTALSEG / "label_ts_fast.nii.gz"))
    truth, pred = sitk.GetArrayFromImage(truth_image), sitk.GetArrayFromImage(pred_image)
    ours = case_scores(truth, pred, truth_image.GetSpacing()[::-1])
    reference = official_way(truth, pred, truth_image.GetSpacing())
    for organ in NSD_TOLERANCE_MM:
        assert ours[organ] == pytest.approx(reference[organ], abs=1e-9), organ
    assert ours[10] == (1.0, 1.0)  # esophagus: not in this field of view


def test_matches_the_official_way_on_random_anisotropic_blobs() -> None:
    rng = np.random.default_rng(7)
    shape = (14, 20, 17)
    truth = np.zeros(shape, np.uint8)
    for organ in (1, 5, 9, 12):
        center = rng.integers(4, 10, size=3)
        zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
        blob = ((zz - center[0]) / 3.0) ** 2 + ((yy - center[1]) / 5.0) ** 2 + ((xx - center[2]) / 4.0) ** 2 < 1
        truth[blob] = organ
    noisy = truth.copy()
    flip = rng.random(shape) < 0.04
    noisy[flip] = rng.choice([0, 1, 5, 9, 12], size=int(flip.sum()))
    spacing_xyz = (0.8, 1.3, 2.7)
    ours = case_scores(truth, noisy, spacing_xyz[::-1])
    reference = official_way(truth, noisy, spacing_xyz)
    for organ in NSD_TOLERANCE_MM:
        assert ours[organ] == pytest.approx(reference[organ], abs=1e-9), organ
