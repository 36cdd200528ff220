"""Phantom realism: organs present, in place and inside the body, plausible HU and volumes, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from nnunet_cdl.errors import CdlError
from nnunet_cdl.io import Geometry
from nnunet_cdl.labels import LABEL_IDS
from nnunet_cdl.synth import synth_case
from nnunet_cdl.synth.phantom import layout_for

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def cases() -> list[tuple[np.ndarray, np.ndarray, Geometry]]:
    return [synth_case("small", seed) for seed in SEEDS]


def world_centroid(label: np.ndarray, organ: int, geometry: Geometry) -> np.ndarray:
    """Patient-frame (LPS, mm) centre of an organ, whatever the axis flips."""
    zyx = np.argwhere(label == organ).mean(axis=0)
    index_xyz = zyx[::-1]
    direction = np.asarray(geometry.direction).reshape(3, 3)
    return np.asarray(geometry.origin) + direction @ (index_xyz * np.asarray(geometry.spacing))


def test_types_values_and_shape(cases) -> None:
    for image, label, geometry in cases:
        assert image.dtype == np.int16 and label.dtype == np.uint8
        assert image.shape == label.shape and 56 <= image.shape[0] <= 72 and image.shape[1:] == (160, 160)
        assert set(np.unique(label)) <= set(range(14))
        assert all(1.9 < s < 4.6 for s in geometry.spacing)


def test_every_organ_present_inside_the_body(cases) -> None:
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    for image, label, _ in cases:
        assert set(np.unique(label)) == set(range(14))
        body = ndimage.binary_fill_holes(image > -400, structure=in_plane)
        assert np.all(body[label > 0]), "organ voxels outside the body outline"
        assert np.median(image[~body]) < -900


def test_anatomical_relations(cases) -> None:
    ids = LABEL_IDS
    for _, label, geometry in cases:
        c = {name: world_centroid(label, i, geometry) for name, i in ids.items()}
        # LPS: +x patient left, +y posterior, +z superior
        assert c["liver"][0] < c["spleen"][0] and c["liver"][0] < 0 + c["aorta"][0]
        assert c["right_kidney"][0] < c["aorta"][0] < c["left_kidney"][0]
        assert c["inferior_vena_cava"][0] < c["aorta"][0]
        assert c["right_kidney"][1] > c["pancreas"][1] and c["left_kidney"][1] > c["stomach"][1]
        assert c["right_adrenal_gland"][2] > c["right_kidney"][2] and c["left_adrenal_gland"][2] > c["left_kidney"][2]
        assert c["gallbladder"][2] < c["liver"][2] and c["esophagus"][2] > c["stomach"][2]


def test_adrenal_glands_lie_in_fat_not_in_the_liver(cases) -> None:
    """A gland inside liver parenchyma has nearly the liver's HU and cannot be learned (the right one did, once)."""
    for _, label, _ in cases:
        for name in ("right_adrenal_gland", "left_adrenal_gland"):
            gland = label == LABEL_IDS[name]
            ring = ndimage.binary_dilation(gland) & ~gland
            assert np.mean(label[ring] == LABEL_IDS["liver"]) < 0.5, name


VOLUME_ML = {"liver": (800, 3000), "spleen": (60, 700), "right_kidney": (60, 400), "left_kidney": (60, 400),
             "pancreas": (15, 200), "right_adrenal_gland": (0.5, 20), "left_adrenal_gland": (0.5, 20),
             "gallbladder": (5, 120), "stomach": (100, 1500), "duodenum": (15, 250)}


def test_organ_volumes_plausible(cases) -> None:
    for _, label, geometry in cases:
        voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
        counts = np.bincount(label.ravel(), minlength=14)
        for name, (lo, hi) in VOLUME_ML.items():
            volume = counts[LABEL_IDS[name]] * voxel_ml
            assert lo <= volume <= hi, (name, volume)


def test_hounsfield_ranges(cases) -> None:
    for image, label, _ in cases:
        def median(organ: str) -> float:
            return float(np.median(image[label == LABEL_IDS[organ]]))

        assert 25 <= median("liver") <= 150
        assert 20 <= median("spleen") <= 160
        assert 30 <= median("aorta") <= 360
        assert -15 <= median("gallbladder") <= 45
        assert image.max() > 500, "no bone"
        body = image[image > -900]
        fat = np.mean((body > -160) & (body < -40))
        assert fat > 0.05, "no fat layer"


def test_deterministic_for_a_seed() -> None:
    a = synth_case("small", 7)
    b = synth_case("small", 7)
    c = synth_case("small", 8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert not np.array_equal(a[1], c[1])


def test_flipped_geometry_keeps_anatomy() -> None:
    seed = next(s for s in range(40) if any(layout_for("small", s).flips))
    image, label, geometry = synth_case("small", seed)
    assert min(geometry.direction[0], geometry.direction[4], geometry.direction[8]) == -1.0
    c = {name: world_centroid(label, i, geometry) for name, i in LABEL_IDS.items()}
    assert c["liver"][0] < c["spleen"][0] and c["esophagus"][2] > c["right_kidney"][2]
    assert c["right_kidney"][1] > c["stomach"][1]


def test_flare_geometry_and_slice_counts() -> None:
    short = layout_for("flare", 3, num_slices=24)
    long = layout_for("flare", 3, num_slices=1000)
    assert short.shape == (24, 512, 512) and long.shape == (1000, 512, 512)
    for layout in (short, long, layout_for("flare", 4)):
        assert 0.8 <= layout.spacing_zyx[0] <= 5.0 and 0.6 <= layout.spacing_zyx[1] <= 1.0
    assert long.shape[0] * long.spacing_zyx[0] > 700, "long scans reach beyond the abdomen"
    image, label, geometry = synth_case("flare", 5, num_slices=24)
    assert image.shape == (24, 512, 512) and geometry.origin != (0.0, 0.0, 0.0)
    assert (label > 0).any() and set(np.unique(label)) <= set(range(14))
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    assert np.all(ndimage.binary_fill_holes(image > -400, structure=in_plane)[label > 0])


def test_bad_arguments() -> None:
    with pytest.raises(CdlError, match="unknown preset"):
        synth_case("huge", 0)
    with pytest.raises(CdlError, match="num_slices"):
        synth_case("flare", 0, num_slices=0)


def test_only_tubes_leave_the_abdomen() -> None:
    from nnunet_cdl.labels import TUBE_ORGANS
    from nnunet_cdl.synth.anatomy import organ_shapes

    for seed in range(5):
        for label, shape in organ_shapes(np.random.default_rng(seed), 1.0, 0.0):
            lo, hi = shape.bounds()
            if label in TUBE_ORGANS:
                assert hi[2] - lo[2] > 250, label
            else:
                assert -160 < lo[2] and hi[2] < 200, (label, lo[2], hi[2])
