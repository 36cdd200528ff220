"""Layout of the 13 FLARE organs in the patient frame, with per-case position, size and tilt variation.

Reference adult (body half width 160 mm), patient frame of `presets` (mm; +x patient left, +y posterior,
+z superior; z = 0 at the renal hila). Organs are listed in paint order: a later organ wins where two overlap,
so vessels carve the liver, adrenals sit on the kidneys, and no voxel has two labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnunet_cdl.labels import LABEL_IDS
from nnunet_cdl.synth.body import FAR, Table, Torso, Tissue, skeleton, soft_tissues
from nnunet_cdl.synth.presets import ScanLayout, synth_config
from nnunet_cdl.synth.shapes import Difference, Ellipsoid, Scaled, Shape, Tube, Union

PAINT_ORDER: tuple[str, ...] = (
    "liver", "spleen", "stomach", "right_kidney", "left_kidney", "pancreas", "duodenum", "gallbladder",
    "esophagus", "right_adrenal_gland", "left_adrenal_gland", "inferior_vena_cava", "aorta",
)
"""Organ names from lowest to highest priority."""

ROUGHNESS: dict[int, float] = {
    LABEL_IDS[name]: factor
    for name, factor in {
        "right_adrenal_gland": 0.25, "left_adrenal_gland": 0.25, "aorta": 0.15, "inferior_vena_cava": 0.3,
        "esophagus": 0.3, "gallbladder": 0.4, "pancreas": 0.7, "duodenum": 0.6, "right_kidney": 0.4,
        "left_kidney": 0.4, "spleen": 0.6, "stomach": 0.8,
    }.items()
}
"""Surface-noise amplitude per organ relative to the configured one (thin and smooth organs get less); else 1."""

# Ellipsoid organs: centre (x, y, z) mm, semi-axes mm, tilt (deg about x, y, z).
_ELLIPSOIDS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]] = {
    "spleen": ((86, 40, 72), (26, 48, 52), (10, 0, -35)),
    "gallbladder": ((-52, -46, 8), (15, 17, 36), (-35, 10, 0)),
    "right_adrenal_gland": ((-36, 44, 60), (3.5, 15, 20), (0, -10, -30)),
    "left_adrenal_gland": ((42, 42, 46), (3.5, 15, 20), (0, 10, 30)),
}
ADRENAL_FAT_PAD_MM = 2.0
"""Least fat between the right adrenal gland and the liver (mm), where the liver's surface noise pushes furthest
into the pad (elsewhere there is more), as in real abdomens, where the gland sits in perirenal fat."""
_KIDNEY = {"right_kidney": ((-60, 52, -12), -1), "left_kidney": ((60, 50, 0), 1)}
# Tube organs: points (x, y, z) mm, radii mm, cross-section aspect (y / x).
_TUBES: dict[str, tuple[list[tuple[float, float, float]], list[float], float]] = {
    "aorta": (
        [(12, 16, -95), (14, 18, 0), (15, 22, 100), (18, 34, 150), (20, 40, 265), (10, 15, 305), (0, -20, 312),
         (-10, -38, 285), (-10, -42, 230)],
        [9, 10.5, 11, 12, 12.5, 14, 15, 15, 15], 1.0,
    ),
    "inferior_vena_cava": (
        [(-22, 20, -100), (-22, 22, 0), (-26, 26, 60), (-20, 22, 120), (-10, 6, 152)],
        [10, 11, 12, 13, 14], 0.75,
    ),
    "esophagus": (
        [(2, 32, FAR), (2, 30, 400), (3, 26, 200), (10, 16, 140), (26, 8, 114), (40, 4, 100)],
        [8, 8, 8, 8, 8, 9], 0.7,
    ),
    "stomach": (
        [(40, 4, 100), (55, 14, 122), (66, -4, 84), (50, -36, 46), (14, -48, 24), (-8, -44, 20)],
        [12, 28, 33, 29, 19, 11], 0.9,
    ),
    "duodenum": (
        [(-8, -44, 20), (-34, -30, 22), (-54, -6, 10), (-58, 4, -24), (-50, 8, -50), (-20, 0, -62), (14, -4, -60),
         (34, -6, -40), (40, -10, -22)],
        [11, 12, 11, 11, 11, 10.5, 10, 10, 10], 0.9,
    ),
    "pancreas": (
        [(-30, 6, -22), (-28, 0, -8), (-5, -10, -4), (28, 0, 6), (62, 24, 20), (82, 34, 28)],
        [15, 14, 10.5, 11, 9, 7.5], 0.65,
    ),
}


@dataclass
class Anatomy:
    """One case's body: torso outline and wall layers (mm), tissues and organs as shapes, in paint order."""

    torso: Torso
    fat_mm: float
    muscle_mm: float
    tissues: list[Tissue]
    organs: list[tuple[int, Shape]]
    bones: list[Tissue]
    stomach_gas: float
    """Fraction of the stomach's anterior-posterior extent filled with gas (anterior part)."""


class _Jitter:
    """Per-organ random placement: shared breathing shift `dz`, own offset, size factor and tilt."""

    def __init__(self, rng: np.random.Generator, s: float, dz: float) -> None:
        self.rng, self.s, self.dz = rng, s, dz
        self.cfg = synth_config()["body"]

    def offset(self) -> np.ndarray:
        return self.rng.normal(0, self.cfg["organ_jitter_mm"] / 2, 3) * self.s + np.array([0, 0, self.dz])

    def size(self) -> float:
        j = self.cfg["organ_size_jitter"]
        return float(self.rng.uniform(1 - j, 1 + j))

    def tilt(self) -> np.ndarray:
        return self.rng.normal(0, self.cfg["organ_tilt_deg"] / 2, 3)

    def ellipsoid(self, center: tuple, semi: tuple, angles: tuple, power: float = 2.0) -> Ellipsoid:
        c = np.asarray(center, dtype=float) * self.s + self.offset()
        axes = np.asarray(semi, dtype=float) * self.s * self.size()
        return Ellipsoid(tuple(c), tuple(axes), tuple(np.asarray(angles) + self.tilt()), power)

    def tube(self, points: list, radii: list, aspect: float) -> Tube:
        pts = np.asarray(points, dtype=float)
        finite = np.abs(pts) < FAR
        wobble = self.rng.normal(0, self.cfg["organ_jitter_mm"] / 4, pts.shape) * self.s
        pts = np.where(finite, pts * self.s + self.offset() + wobble, pts)
        return Tube(pts, np.asarray(radii, dtype=float) * self.s * self.size(), aspect)


def _liver(j: _Jitter) -> Shape:
    right = j.ellipsoid((-62, 8, 64), (67, 75, 71), (0, 8, 0), power=2.2)
    left = j.ellipsoid((12, -44, 84), (56, 30, 40), (0, 0, 12))
    caudate = j.ellipsoid((-8, 10, 70), (18, 20, 30), (0, 0, 0))
    return Union([right, left, caudate])


def _kidney(j: _Jitter, name: str) -> Shape:
    (cx, cy, cz), side = _KIDNEY[name]
    tilt = (0.0, side * 12.0, side * 25.0)
    body = j.ellipsoid((cx, cy, cz), (25, 30, 54), tilt)
    hilum_center = (body.center[0] - side * 22 * j.s, body.center[1] - 8 * j.s, body.center[2])
    hilum = Ellipsoid(hilum_center, (11 * j.s, 11 * j.s, 16 * j.s), body.angles)
    return Difference(body, hilum)


def _fat_pad(gland: Ellipsoid) -> Ellipsoid:
    """The retroperitoneal fat around an adrenal gland, to be cut from the liver: the gland with one margin m (mm)
    added to every semi-axis, the smallest m for which the pad's field is at least `ADRENAL_FAT_PAD_MM` plus the
    largest surface noise (`2 * surface_noise_mm`, how far the liver's surface may bulge into the cut) everywhere
    on the gland's surface.

    An ellipsoid's field is its semi-axis ratio times its shortest semi-axis, so along a semi-axis g the pad's
    field at the gland's surface is m / (g + m) * (g_min + m): the long axes need the margin, and the pad is
    solved for the longest. The right adrenal's place lies inside the right liver lobe's ellipsoid; without this
    pad it sat in liver parenchyma of nearly its own HU (0.2-0.8 noise SD apart) and could not be learned.
    """
    need = ADRENAL_FAT_PAD_MM + 2.0 * float(synth_config()["body"]["surface_noise_mm"])
    shortest, longest = min(gland.semi), max(gland.semi)
    margin = (need - shortest + np.sqrt((shortest - need) ** 2 + 4.0 * need * longest)) / 2.0
    return Ellipsoid(gland.center, tuple(axis + margin for axis in gland.semi), gland.angles, gland.power)


def organ_shapes(rng: np.random.Generator, s: float, dz: float) -> list[tuple[int, Shape]]:
    """The 13 organs as (label id, shape) in paint order for body scale `s` and breathing shift `dz` (mm)."""
    j = _Jitter(rng, s, dz)
    shapes: dict[str, Shape] = {"liver": _liver(j)}
    for name in _KIDNEY:
        shapes[name] = _kidney(j, name)
    for name, (center, semi, angles) in _ELLIPSOIDS.items():
        shapes[name] = j.ellipsoid(center, semi, angles)
    shapes["liver"] = Difference(shapes["liver"], _fat_pad(shapes["right_adrenal_gland"]))
    for name, (points, radii, aspect) in _TUBES.items():
        shapes[name] = j.tube(points, radii, aspect)
    return [(LABEL_IDS[name], shapes[name]) for name in PAINT_ORDER]


def build_anatomy(rng: np.random.Generator, layout: ScanLayout) -> Anatomy:
    """Draw one case's anatomy: wall thickness, organ placement and the stretch of the reference adult.

    Organs and soft tissues are laid out for the reference adult (cavity half width 129 mm, half depth 87 mm)
    and stretched so that they fill this case's body cavity.
    """
    cfg = synth_config()["body"]
    s = layout.half_width_mm / 160.0
    torso = Torso(layout.half_width_mm, layout.half_width_mm * layout.depth_ratio)
    fat = float(rng.uniform(*cfg["fat_fraction"])) * layout.half_width_mm
    muscle = float(rng.uniform(*cfg["muscle_mm"])) * s
    wall = fat + muscle
    stretch = ((torso.half_width - wall) / 129.0, (torso.half_depth - wall) / 87.0, s)
    dz = float(rng.normal(0, 8.0))
    tissues: list[Tissue] = [(name, Scaled(shape, stretch), inset) for name, shape, inset in soft_tissues(dz)]
    if layout.table:
        tissues.append(("table", Table(torso.half_depth * 1.02 + float(rng.uniform(2, 25)), 14.0, 230.0 * s), 0.0))
    return Anatomy(
        torso=torso,
        fat_mm=fat,
        muscle_mm=muscle,
        tissues=tissues,
        organs=[(label, Scaled(shape, stretch)) for label, shape in organ_shapes(rng, 1.0, dz)],
        bones=skeleton(torso, s, 55.0 * stretch[1], wall, rng),
        stomach_gas=float(rng.uniform(0.0, 0.35)),
    )
