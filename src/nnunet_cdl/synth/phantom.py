"""One synthetic abdominal CT case: int16 HU image, uint8 label map (0..13) and its geometry.

`synth_case(preset, seed)` draws a scan layout, an anatomy and a contrast phase, paints tissues and organs
from coarse implicit fields (so a 512x512x300 scan takes seconds), adds noise and applies the axis flips.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nnunet_cdl.io import Geometry
from nnunet_cdl.labels import ORGANS
from nnunet_cdl.synth.anatomy import ROUGHNESS, Anatomy, build_anatomy
from nnunet_cdl.synth.fields import CoarseGrid, smooth_noise, upsample
from nnunet_cdl.synth.presets import ScanLayout, preset_config, sample_layout, synth_config
from nnunet_cdl.synth.shapes import Ellipsoid, Shape

TISSUE_IDS: dict[str, int] = {
    name: 16 + i
    for i, name in enumerate(
        ["fat", "muscle", "visceral_fat", "cortical_bone", "cancellous_bone", "disc", "spinal_canal", "lung",
         "blood", "colon", "bladder", "table", "bowel", "gas"]
    )
}
"""Unlabelled tissue classes of the internal tissue map (0 is air, 1..13 the organs)."""

STOMACH = 11
TILE = 16
"""Coarse points per tile side when painting large shapes."""
CHUNK = 32
"""Slices per block when computing intensities (bounds the float32 working memory)."""
LESION = 240
"""Tissue-map value of a lesion is LESION + its organ's label."""
NOISE_KEPT = 0.375
"""Standard deviation left of white noise after `_blur_in_plane` (3/8), to reach the preset's noise level."""


@dataclass
class _Canvas:
    """The fine tissue map being painted and the coarse fields shared by all shapes."""

    grid: CoarseGrid
    tissue: np.ndarray
    cavity: np.ndarray
    displacement: tuple[np.ndarray, np.ndarray, np.ndarray]
    surface: np.ndarray

    def paint(
        self, value: int, shape: Shape, inset: float = 0.0, roughness: float | None = None,
        clip_cavity: float | None = None, only: int | None = None, want_mask: bool = False,
    ) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
        """Set `value` where `shape` (minus `inset` mm) covers a fine voxel.

        roughness: evaluate at displaced coordinates plus this factor times the surface noise (organs);
        clip_cavity: keep the shape that many mm inside the body cavity; only: paint over this tissue value only;
        want_mask: paint in one piece and return the fine box and its mask (else tiles, returns None).
        """
        lo, hi = shape.bounds()
        box = self.grid.coarse_box(lo, hi)
        if box is None:
            return None
        x, y, z = self.grid.coords(box)
        if roughness is not None:
            dx, dy, dz = (d[box] for d in self.displacement)
            phi = shape.phi((x + dx, y + dy, z + dz)) + np.float32(roughness) * self.surface[box]
        else:
            phi = shape.phi((x, y, z))
        phi = np.broadcast_to(phi, tuple(b.stop - b.start for b in box)) + np.float32(inset)
        if clip_cavity is not None:
            phi = np.maximum(phi, self.cavity[box] + np.float32(clip_cavity))
        if not want_mask:
            self.fill(value, phi, box, None if only is None else (only,))
            return None
        near = phi < self.step
        if not near.any():
            return None
        box, phi = _tighten(box, phi, near)
        fine = self.grid.fine_box(box)
        mask = upsample(phi, box, self.grid) < 0
        if only is not None:
            mask &= self.tissue[fine] == only
        self.tissue[fine][mask] = value
        return fine, mask

    @property
    def step(self) -> float:
        """Largest coarse spacing (mm): a coarse point farther outside than this cannot touch the shape."""
        return max(s * f for s, f in zip(self.grid.spacing_zyx, self.grid.factor))

    def fill(self, value: int, phi: np.ndarray, box: tuple[slice, slice, slice], only: tuple[int, ...] | None) -> None:
        """Paint where the coarse field `phi` (on coarse `box`) is negative, tile by tile, skipping far tiles."""
        near = phi < self.step
        starts = [range(0, max(n - 1, 1), TILE) for n in phi.shape]
        for i in starts[0]:
            for j in starts[1]:
                for k in starts[2]:
                    tile = (slice(i, i + TILE + 1), slice(j, j + TILE + 1), slice(k, k + TILE + 1))
                    if not near[tile].any():
                        continue
                    sub = tuple(slice(b.start + t.start, min(b.start + t.stop, b.stop)) for b, t in zip(box, tile))
                    fine = self.grid.fine_box(sub)  # type: ignore[arg-type]
                    mask = upsample(phi[tile], sub, self.grid) < 0  # type: ignore[arg-type]
                    if only is not None:
                        mask &= np.isin(self.tissue[fine], only)
                    self.tissue[fine][mask] = value


def _tighten(
    box: tuple[slice, slice, slice], phi: np.ndarray, near: np.ndarray
) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """Shrink a coarse box (and its field) to the points flagged `near`, plus one point of margin."""
    sub = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(near.any(axis=other))
        sub.append(slice(max(idx[0] - 1, 0), min(idx[-1] + 2, near.shape[axis])))
    new_box = tuple(slice(b.start + s.start, b.start + s.stop) for b, s in zip(box, sub))
    return new_box, phi[tuple(sub)]  # type: ignore[return-value]


def _hu_table(rng: np.random.Generator) -> tuple[np.ndarray, str, float]:
    """Mean HU per tissue-map value (256 entries; 255 is stomach gas) for a random contrast phase, per-case
    contrast strength and organ jitter; also returns the phase and the strength."""
    cfg = synth_config()
    phase = str(rng.choice(cfg["phases"]))
    scale = float(rng.uniform(*cfg["contrast_scale"]))
    jitter = cfg["organ_hu_jitter"]
    table = np.full(256, -1000.0, dtype=np.float32)
    for name, tid in TISSUE_IDS.items():
        if name == "blood":
            hu = cfg["blood_hu"]
            table[tid] = hu["non_contrast"] + scale * (hu[phase] - hu["non_contrast"])
        else:
            table[tid] = cfg["tissue_hu"][name]
    for label, name in ORGANS.items():
        hu = cfg["organ_hu"][name]
        table[label] = hu["non_contrast"] + scale * (hu[phase] - hu["non_contrast"]) + rng.normal(0, jitter)
    table[0] = cfg["tissue_hu"]["air"]
    for organ in cfg["lesions"]["organs"]:
        table[LESION + organ] = rng.uniform(*cfg["lesions"]["hu"])
    table[255] = cfg["tissue_hu"]["gas"]
    return table, phase, scale


def _paint_body(canvas: _Canvas, anatomy: Anatomy, rng: np.random.Generator) -> None:
    """Body wall layers, soft tissues, small bowel loops with gas, organs (with stomach gas recorded), bones."""
    grid = canvas.grid
    full = tuple(slice(0, n) for n in grid.shape)
    torso_fine = upsample(canvas.cavity - np.float32(anatomy.fat_mm + anatomy.muscle_mm), full, grid)
    canvas.tissue[torso_fine < 0] = TISSUE_IDS["fat"]
    canvas.tissue[torso_fine < -anatomy.fat_mm] = TISSUE_IDS["muscle"]
    canvas.tissue[torso_fine < -(anatomy.fat_mm + anatomy.muscle_mm)] = TISSUE_IDS["visceral_fat"]
    del torso_fine
    for name, shape, inset in anatomy.tissues:
        if name == "table":
            canvas.paint(TISSUE_IDS[name], shape, inset, only=0)
        else:
            canvas.paint(TISSUE_IDS[name], shape, inset, clip_cavity=1.0)
    coarse_spacing = tuple(s * f for s, f in zip(grid.spacing_zyx, grid.factor))
    loops = smooth_noise(rng, grid.shape, coarse_spacing, 22.0)
    gas = smooth_noise(rng, grid.shape, coarse_spacing, 12.0)
    x, y, z = grid.coords(full)
    s = anatomy.torso.half_width / 160.0
    region = np.maximum(np.maximum(z - np.float32(-15 * s), np.float32(-230 * s) - z), y - np.float32(35 * s))
    canvas.fill(TISSUE_IDS["bowel"], np.maximum((0.2 - loops) * 10, region), full,
                (TISSUE_IDS["visceral_fat"],))
    canvas.fill(TISSUE_IDS["gas"], (1.3 - gas) * 10, full, (TISSUE_IDS["bowel"], TISSUE_IDS["colon"]))
    for label, shape in anatomy.organs:
        painted = canvas.paint(
            label, shape, roughness=ROUGHNESS.get(label, 1.0), clip_cavity=2.0, want_mask=label == STOMACH
        )
        if label == STOMACH and painted is not None:
            _stomach_gas(canvas, painted, anatomy.stomach_gas)
    _paint_lesions(canvas, rng)
    for name, shape, inset in anatomy.bones:
        canvas.paint(TISSUE_IDS[name], shape, inset)


def _paint_lesions(canvas: _Canvas, rng: np.random.Generator) -> None:
    """Hypodense lesions (cysts, tumours) inside liver, spleen and kidneys: tissue value LESION + organ, labelled
    as their organ like FLARE's organ masks, with their own HU."""
    cfg = synth_config()["lesions"]
    grid = canvas.grid
    for organ in cfg["organs"]:
        count = int(rng.integers(1, cfg["max_count"] + 1)) if rng.random() < cfg["probability"] else 0
        voxels = np.flatnonzero(canvas.tissue.reshape(-1) == organ) if count else np.empty(0, dtype=np.intp)
        for _ in range(count if voxels.size else 0):
            zyx = np.unravel_index(voxels[int(rng.integers(voxels.size))], canvas.tissue.shape)
            center = tuple(grid.corner_mm[a] + zyx[2 - a] * grid.spacing_zyx[2 - a] for a in range(3))
            semi = tuple(float(r) for r in rng.uniform(*cfg["radius_mm"]) * rng.uniform(0.7, 1.0, 3))
            canvas.paint(LESION + organ, Ellipsoid(center, semi), only=organ)  # type: ignore[arg-type]


def _stomach_gas(canvas: _Canvas, painted: tuple[tuple[slice, slice, slice], np.ndarray], fraction: float) -> None:
    """Mark the anterior `fraction` of the stomach as gas (tissue map value 255, relabelled stomach later)."""
    fine, mask = painted
    mask = mask & (canvas.tissue[fine] == STOMACH)
    rows = np.flatnonzero(mask.any(axis=(0, 2)))
    if fraction <= 0 or rows.size == 0:
        return
    level = rows[0] + int(fraction * (rows[-1] - rows[0]))
    gas = mask.copy()
    gas[:, level:, :] = False
    canvas.tissue[fine][gas] = 255


def _blur_in_plane(values: np.ndarray) -> np.ndarray:
    """[1, 2, 1] / 4 smoothing along y and x of a float32 (z, y, x) block, in place: the scanner's point spread
    function (partial volume at edges, spatially correlated noise). Border rows and columns stay as they are."""
    for axis in (1, 2):
        core = [slice(None)] * 3
        left = [slice(None)] * 3
        right = [slice(None)] * 3
        core[axis], left[axis], right[axis] = slice(1, -1), slice(0, -2), slice(2, None)
        neighbours = values[tuple(left)] + values[tuple(right)]
        values[tuple(core)] *= np.float32(0.5)
        neighbours *= np.float32(0.25)
        values[tuple(core)] += neighbours
    return values


def _geometry(layout: ScanLayout, rng: np.random.Generator) -> Geometry:
    """World geometry: patient frame shifted by a random table position, flipped axes reversed."""
    shift = rng.uniform([-40, -60, -900], [40, 60, 300])
    spacing = (layout.spacing_zyx[2], layout.spacing_zyx[1], layout.spacing_zyx[0])
    sizes = (layout.shape[2], layout.shape[1], layout.shape[0])
    origin, direction = [], np.eye(3)
    for axis in range(3):
        start = layout.corner_mm[axis] + shift[axis]
        if layout.flips[axis]:
            start += (sizes[axis] - 1) * spacing[axis]
            direction[axis, axis] = -1.0
        origin.append(float(round(start, 3)))
    return Geometry(tuple(float(s) for s in spacing), tuple(origin), tuple(float(v) for v in direction.ravel()))


def synth_case(preset: str, seed: int, num_slices: int | None = None) -> tuple[np.ndarray, np.ndarray, Geometry]:
    """Generate one phantom: int16 HU image (z, y, x), uint8 label (z, y, x) with values 0..13, geometry.

    Deterministic for (`preset`, `seed`, `num_slices`); `num_slices` fixes the slice count (flare: 24..1000).
    """
    image, label, geometry, _ = synth_case_with_info(preset, seed, num_slices)
    return image, label, geometry


def synth_case_with_info(
    preset: str, seed: int, num_slices: int | None = None
) -> tuple[np.ndarray, np.ndarray, Geometry, dict[str, Any]]:
    """`synth_case` plus a description of the scan: contrast phase and strength, noise (HU), flipped ITK axes,
    table, body half width and depth (mm)."""
    rng = np.random.default_rng(seed)
    layout = sample_layout(preset, rng, num_slices)
    anatomy = build_anatomy(rng, layout)
    grid = CoarseGrid.build(layout.shape, layout.spacing_zyx, layout.corner_mm, preset_config(preset)["coarse_mm"])
    body = synth_config()["body"]
    coarse_spacing = tuple(s * f for s, f in zip(grid.spacing_zyx, grid.factor))
    displacement = tuple(
        smooth_noise(rng, grid.shape, coarse_spacing, body["deformation_scale_mm"]) * np.float32(body["deformation_mm"])
        for _ in range(3)
    )
    surface = smooth_noise(rng, grid.shape, coarse_spacing, body["surface_noise_scale_mm"])
    np.clip(surface, -2.0, 2.0, out=surface)
    surface *= np.float32(body["surface_noise_mm"])
    full = tuple(slice(0, n) for n in grid.shape)
    cavity = anatomy.torso.phi(grid.coords(full)) + np.float32(anatomy.fat_mm + anatomy.muscle_mm)
    canvas = _Canvas(grid, np.zeros(layout.shape, dtype=np.uint8), cavity, displacement, surface)  # type: ignore[arg-type]
    _paint_body(canvas, anatomy, rng)
    table, phase, strength = _hu_table(rng)
    tissue = canvas.tissue
    image = np.empty(layout.shape, dtype=np.int16)
    for start in range(0, layout.shape[0], CHUNK):
        chunk = slice(start, start + CHUNK)
        values = rng.standard_normal(tissue[chunk].shape, dtype=np.float32)
        values *= np.float32(layout.noise_hu / NOISE_KEPT)
        values += table[tissue[chunk]]
        image[chunk] = np.maximum(np.rint(_blur_in_plane(values)), -1024)
    tissue[tissue == 255] = STOMACH
    lesion = (tissue > LESION) & (tissue <= LESION + 13)
    tissue[lesion] -= LESION
    tissue[tissue > 13] = 0
    label = tissue
    flip_axes = tuple(2 - axis for axis in range(3) if layout.flips[axis])
    if flip_axes:
        image = np.ascontiguousarray(np.flip(image, flip_axes))
        label = np.ascontiguousarray(np.flip(label, flip_axes))
    info = {
        "phase": phase,
        "contrast_strength": round(strength, 3),
        "noise_hu": round(layout.noise_hu, 2),
        "flipped_axes_xyz": list(layout.flips),
        "table": layout.table,
        "body_half_width_mm": round(anatomy.torso.half_width, 1),
        "body_half_depth_mm": round(anatomy.torso.half_depth, 1),
    }
    return image, label, _geometry(layout, rng), info


def layout_for(preset: str, seed: int, num_slices: int | None = None) -> ScanLayout:
    """The scan layout `synth_case` draws for these arguments (for tests and the manifest)."""
    return sample_layout(preset, np.random.default_rng(seed), num_slices)

