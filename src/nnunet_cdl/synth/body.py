"""Body outline and the unlabelled tissues around the organs: wall layers, spine, ribs, pelvis, lungs, bowel.

Patient frame as in `presets` (mm, +x patient left, +y posterior, +z superior). The reference adult has a body
half width of 160 mm, half depth 118 mm and a 31 mm wall; `anatomy` stretches it to each case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnunet_cdl.synth.shapes import Coords, Ellipsoid, Shape, Tube, Union, ZSlab

FAR = 1.0e4
"""A z extent (mm) beyond any scan: tubes such as the spine run through the whole field of view."""


@dataclass
class Torso(Shape):
    """Body outline: a rounded rectangle-like super-ellipse whose half axes vary smoothly along z (mm).

    Chest (z > 150 mm) is a little wider and deeper, the pelvis a little narrower; `inset` (mm) shrinks it.
    """

    half_width: float
    half_depth: float
    center_y: float = 0.0
    power: float = 2.4
    inset: float = 0.0

    def half_axes(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        chest = np.tanh((z - 150.0) / 80.0).astype(np.float32)
        pelvis = np.tanh((-150.0 - z) / 80.0).clip(0, None).astype(np.float32)
        ax = self.half_width * (1.0 + 0.04 * chest - 0.03 * pelvis)
        ay = self.half_depth * (1.0 + 0.08 * chest - 0.02 * pelvis)
        return ax.astype(np.float32), ay.astype(np.float32)

    def phi(self, coords: Coords) -> np.ndarray:
        x, y, z = coords
        ax, ay = self.half_axes(z)
        dy = y - np.float32(self.center_y)
        rho = (np.abs(x / ax) ** self.power + np.abs(dy / ay) ** self.power) ** np.float32(1.0 / self.power)
        radius = np.sqrt(x * x + dy * dy)
        return (radius * (1.0 - 1.0 / np.maximum(rho, 1e-3)) + np.float32(self.inset)).astype(np.float32)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        ax, ay = self.half_width * 1.1, self.half_depth * 1.15
        return np.array([-ax, self.center_y - ay, -FAR]), np.array([ax, self.center_y + ay, FAR])


@dataclass
class WallBand(Shape):
    """A band inside the body wall at `depth` mm below the skin, `thickness` mm thick, between lo_z and hi_z.

    Optional periodic gaps along z (ribs: `period`, `on`, `slope` mm of z per mm of y), a midline gap
    `min_abs_x` (mm), a posterior-only limit `min_y` (mm) and, below `lateral_below_z`, only the lateral part
    |x| > `lateral_frac` * half width (the lower ribs).
    """

    torso: Torso
    depth: float
    thickness: float
    lo_z: float
    hi_z: float
    period: float = 0.0
    on: float = 0.0
    slope: float = 0.0
    min_abs_x: float = 0.0
    min_y: float = -FAR
    lateral_below_z: float = -FAR
    lateral_frac: float = 0.0

    def phi(self, coords: Coords) -> np.ndarray:
        x, y, z = coords
        out = np.abs(self.torso.phi(coords) + np.float32(self.depth)) - np.float32(self.thickness / 2)
        out = np.maximum(out, np.maximum(np.float32(self.lo_z) - z, z - np.float32(self.hi_z)))
        if self.period > 0:
            u = np.mod(z + np.float32(self.slope) * y, np.float32(self.period))
            out = np.maximum(out, np.abs(u - np.float32(self.on / 2)) - np.float32(self.on / 2))
        out = np.maximum(out, np.float32(self.min_abs_x) - np.abs(x))
        out = np.maximum(out, np.float32(self.min_y) - y)
        if self.lateral_frac > 0:
            ax, _ = self.torso.half_axes(z)
            lateral = np.where(z < self.lateral_below_z, self.lateral_frac * ax - np.abs(x), -FAR)
            out = np.maximum(out, lateral.astype(np.float32))
        return out.astype(np.float32)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.torso.bounds()
        return np.array([lo[0], lo[1], self.lo_z]), np.array([hi[0], hi[1], self.hi_z])


@dataclass
class Dome(Shape):
    """`base` kept only above a diaphragm-like dome z0 + height * (1 - ((x - xc) / width)^2) - slope * y (mm)."""

    base: Shape
    z0: float
    height: float
    width: float
    xc: float
    slope: float

    def phi(self, coords: Coords) -> np.ndarray:
        x, y, z = coords
        dome = self.z0 + self.height * (1.0 - ((x - self.xc) / self.width) ** 2) - self.slope * y
        return np.maximum(self.base.phi(coords), (dome - z).astype(np.float32))

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.base.bounds()


@dataclass
class Table(Shape):
    """Patient table: a slab below the back, `top` mm (y) to `top + thickness`, `half_width` mm wide."""

    top: float
    thickness: float
    half_width: float

    def phi(self, coords: Coords) -> np.ndarray:
        x, y, _ = coords
        mid = np.float32(self.top + self.thickness / 2)
        slab = np.abs(y - mid) - np.float32(self.thickness / 2)
        return np.maximum(slab, np.abs(x) - np.float32(self.half_width)).astype(np.float32)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.array([-self.half_width, self.top, -FAR]),
            np.array([self.half_width, self.top + self.thickness, FAR]),
        )


Tissue = tuple[str, Shape, float]
"""(tissue name, shape, inset mm): voxels with phi < -inset get the tissue."""


def _z_tube(x: float, y: float, r: float, aspect: float = 1.0, lo: float = -FAR, hi: float = FAR) -> Tube:
    return Tube(np.array([[x, y, lo], [x, y, hi]]), np.array([r, r]), aspect)


def skeleton(torso: Torso, s: float, spine_y: float, wall_mm: float, rng: np.random.Generator) -> list[Tissue]:
    """Spine (vertebral bodies, discs, canal, posterior arches), ribs, sternum, pelvis and femurs, in paint order.

    s: body size relative to the reference adult; spine_y: centre of the vertebral bodies (mm, posterior).
    """
    pitch = 30.0 * s
    phase = float(rng.uniform(0, pitch))
    column = Tube(
        np.array([[0, spine_y, -FAR], [0, spine_y - 3 * s, -120], [0, spine_y + 2 * s, 60], [0, spine_y + 8 * s, FAR]]),
        np.full(4, 17.0 * s),
        aspect=0.9,
    )
    bodies = ZSlab(column, -FAR, FAR, period=pitch, on=pitch - 7.0 * s, phase=phase)
    arch = ZSlab(_z_tube(0, spine_y + 44 * s, 13 * s, 1.5), -FAR, FAR, period=pitch, on=pitch * 0.6, phase=phase)
    canal = _z_tube(0, spine_y + 25 * s, 8.0 * s)
    ribs = WallBand(
        torso, wall_mm - 5.0 * s, 9.0 * s, -40.0 * s, 480.0, period=26.0 * s, on=9.0 * s, slope=0.35,
        min_abs_x=28.0 * s, lateral_below_z=110.0 * s, lateral_frac=0.45,
    )
    sternum = ZSlab(_z_tube(0, -torso.half_depth + wall_mm, 16 * s, 0.45), 120.0 * s, 330.0 * s)
    ilium = WallBand(torso, wall_mm + 4.0 * s, 10.0 * s, -230.0 * s, -120.0 * s, min_abs_x=45.0 * s, min_y=-30.0 * s)
    femurs = Union([
        Ellipsoid((side * 92 * s, 5 * s, -290 * s), (25 * s, 25 * s, 25 * s)) for side in (-1, 1)
    ] + [Tube(np.array([[side * 95 * s, 5 * s, -290 * s], [side * 115 * s, 15 * s, -FAR]]), np.array([16 * s] * 2))
         for side in (-1, 1)])
    return [
        ("disc", column, 0.0),
        ("cortical_bone", bodies, 0.0),
        ("cancellous_bone", bodies, 2.5 * s),
        ("cortical_bone", arch, 0.0),
        ("cancellous_bone", arch, 3.0 * s),
        ("spinal_canal", canal, 0.0),
        ("cortical_bone", ribs, 0.0),
        ("cancellous_bone", ribs, 2.0 * s),
        ("cortical_bone", sternum, 0.0),
        ("cortical_bone", ilium, 0.0),
        ("cancellous_bone", ilium, 2.5 * s),
        ("cortical_bone", femurs, 0.0),
        ("cancellous_bone", femurs, 4.0 * s),
    ]


def soft_tissues(dz: float) -> list[Tissue]:
    """Lungs under the diaphragm dome, heart, psoas, colon and bladder of the reference adult (mm).

    dz: the case's breathing shift of the diaphragm and abdominal organs (mm).
    """
    lungs = [
        Dome(Ellipsoid((side * 78, 12, 270), (72, 100, 190)),
             z0=118.0 + (12 if side < 0 else 0) + dz, height=25, width=150, xc=side * 70, slope=0.25)
        for side in (-1, 1)
    ]
    heart = Ellipsoid((18, -42, 205 + dz), (62, 50, 58), (0.0, -20.0, 25.0))
    psoas = Union([
        Tube(np.array([[side * 28, 48, 60], [side * 40, 45, -100], [side * 62, 20, -230]]), np.array([6, 17, 20]))
        for side in (-1, 1)
    ])
    colon = Tube(
        np.array([[-85, 10, -170], [-95, 5, -60], [-92, -20, 25], [-60, -70, 30], [20, -75, 35], [80, -30, 55],
                  [100, 20, 20], [98, 20, -90], [70, 0, -170], [20, -10, -200], [0, 20, -230]]) + np.array([0, 0, dz]),
        np.full(11, 22.0), aspect=0.9,
    )
    bladder = Ellipsoid((0, -45, -265), (42, 32, 35))
    tissues: list[Tissue] = [("lung", lung, 0.0) for lung in lungs]
    return tissues + [("blood", heart, 0.0), ("muscle", psoas, 0.0), ("colon", colon, 0.0), ("bladder", bladder, 0.0)]
