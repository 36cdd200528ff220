"""Implicit shapes in the patient frame: approximate signed distances in mm (negative inside).

Every shape takes broadcastable patient coordinates (x, y, z) in mm and returns a float32 field; `bounds` gives
a patient-frame box (x, y, z) that contains the shape, so it is only evaluated near where it can be.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Coords = tuple[np.ndarray, np.ndarray, np.ndarray]


def rotation(angles_deg: tuple[float, float, float]) -> np.ndarray:
    """3x3 rotation matrix from rotations about x, y and z (degrees, applied in that order)."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


class Shape:
    """Base class: `phi(coords)` signed distance-like field (mm), `bounds()` containing box (lo, hi), mm."""

    def phi(self, coords: Coords) -> np.ndarray:
        raise NotImplementedError

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


@dataclass
class Ellipsoid(Shape):
    """Super-ellipsoid: centre (x, y, z) mm, semi-axes (mm) along its own axes, `angles` (deg), `power` >= 2."""

    center: tuple[float, float, float]
    semi: tuple[float, float, float]
    angles: tuple[float, float, float] = (0.0, 0.0, 0.0)
    power: float = 2.0

    def phi(self, coords: Coords) -> np.ndarray:
        rot = rotation(self.angles).T.astype(np.float32)
        d = [c - np.float32(o) for c, o in zip(coords, self.center)]
        total = None
        for row, semi in zip(rot, self.semi):
            local = d[0] * row[0] + d[1] * row[1] + d[2] * row[2]
            term = np.abs(local / np.float32(semi)) ** np.float32(self.power)
            total = term if total is None else total + term
        rho = total ** np.float32(1.0 / self.power)
        return ((rho - 1.0) * np.float32(min(self.semi))).astype(np.float32)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        reach = max(self.semi) * 1.05
        c = np.asarray(self.center, dtype=float)
        return c - reach, c + reach


@dataclass
class Tube(Shape):
    """Tube along a polyline: points (n, 3) mm, radii (n,) mm, cross-section squeezed in y by `aspect`."""

    points: np.ndarray
    radii: np.ndarray
    aspect: float = 1.0

    def phi(self, coords: Coords) -> np.ndarray:
        x, y, z = np.broadcast_arrays(*coords)
        q = (x.astype(np.float32), (y / np.float32(self.aspect)).astype(np.float32), z.astype(np.float32))
        pts = np.asarray(self.points, dtype=np.float32).copy()
        pts[:, 1] /= self.aspect
        best = np.full(x.shape, np.inf, dtype=np.float32)
        for i in range(len(pts) - 1):
            a, b = pts[i], pts[i + 1]
            ab = b - a
            length2 = float(ab @ ab) or 1e-6
            t = ((q[0] - a[0]) * ab[0] + (q[1] - a[1]) * ab[1] + (q[2] - a[2]) * ab[2]) / np.float32(length2)
            np.clip(t, 0.0, 1.0, out=t)
            dist = np.sqrt(
                (q[0] - a[0] - t * ab[0]) ** 2 + (q[1] - a[1] - t * ab[1]) ** 2 + (q[2] - a[2] - t * ab[2]) ** 2
            )
            radius = np.float32(self.radii[i]) + t * np.float32(self.radii[i + 1] - self.radii[i])
            np.minimum(best, dist - radius, out=best)
        return best

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        pts = np.asarray(self.points, dtype=float)
        reach = float(np.max(self.radii)) * 1.05
        return pts.min(axis=0) - reach, pts.max(axis=0) + reach


@dataclass
class Union(Shape):
    """Union of shapes (pointwise minimum)."""

    parts: list[Shape]

    def phi(self, coords: Coords) -> np.ndarray:
        out = self.parts[0].phi(coords)
        for part in self.parts[1:]:
            np.minimum(out, part.phi(coords), out=out)
        return out

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        boxes = [p.bounds() for p in self.parts]
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)


@dataclass
class Difference(Shape):
    """`base` with `cut` removed."""

    base: Shape
    cut: Shape

    def phi(self, coords: Coords) -> np.ndarray:
        return np.maximum(self.base.phi(coords), -self.cut.phi(coords))

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.base.bounds()


@dataclass
class ZSlab(Shape):
    """`base` restricted to lo_z <= z <= hi_z (mm), with optional periodic gaps along z.

    period/on: when period > 0 only the first `on` mm of every `period` mm (offset by `phase` and sloped by
    `slope` mm of z per mm of y) is kept, e.g. ribs and vertebral bodies.
    """

    base: Shape
    lo_z: float
    hi_z: float
    period: float = 0.0
    on: float = 0.0
    phase: float = 0.0
    slope: float = 0.0

    def phi(self, coords: Coords) -> np.ndarray:
        x, y, z = coords
        out = np.maximum(self.base.phi(coords), np.maximum(np.float32(self.lo_z) - z, z - np.float32(self.hi_z)))
        if self.period > 0:
            u = np.mod(z + np.float32(self.slope) * y - np.float32(self.phase), np.float32(self.period))
            half = np.float32(self.on / 2)
            gap = np.abs(u - half) - half
            out = np.maximum(out, gap)
        return out.astype(np.float32)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.base.bounds()
        lo, hi = lo.copy(), hi.copy()
        lo[2], hi[2] = max(lo[2], self.lo_z), min(hi[2], self.hi_z)
        return lo, hi


@dataclass
class Scaled(Shape):
    """`base` defined in a reference frame, stretched by `scale` (x, y, z) about the patient-frame origin."""

    base: Shape
    scale: tuple[float, float, float]

    def phi(self, coords: Coords) -> np.ndarray:
        local = tuple(c / np.float32(s) for c, s in zip(coords, self.scale))
        return self.base.phi(local) * np.float32(min(self.scale))  # type: ignore[arg-type]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.base.bounds()
        scale = np.asarray(self.scale)
        return lo * scale, hi * scale
