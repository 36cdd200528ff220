"""Center-first adaptive tiling: which sliding windows to run, in which order, and which to skip.

Pure functions on shapes and label counts (no torch, no nnU-Net). Coordinates are voxels in the network's
(z, y, x) array order; y is the in-plane "front-back" axis, x the "left-right" axis.

A plan groups windows per z-slab. Each slab has an in-plane *center* window, which always runs first (unless the
slab is skipped whole), and *other* windows whose fate `decide_others` settles from the center window's output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

Shape3 = tuple[int, int, int]

GRIDS = ("auto", "fine", "coarse")
"""`TilingRules.grid`: fine = nnU-Net's positions at the step size, at least `fine_min_positions` per in-plane axis,
center included; coarse = the fewest in-plane windows that cover the image plus the center one, z at
`coarse_z_step`."""

EDGES = ("front", "back", "left", "right")
"""In-plane window edges: front = low y, back = high y, left = low x, right = high x (array order)."""


@dataclass(frozen=True)
class TilingRules:
    """Thresholds of the adaptive tiling (preset: `configs/inference.json`, key "tiling")."""

    empty_center_voxels: int = 1000
    """A center window with fewer foreground voxels than this counts as empty: its slab's other windows are skipped."""
    skip_slab_after_empty: bool = False
    """CDL-UNet's rule: also skip the whole next slab after an empty one (at most one slab per empty one)."""
    grid: str = "auto"
    """auto: the fine grid while its estimated window count stays at or under `fine_max_windows`, the coarse grid
    above; fine or coarse: always that grid."""
    fine_max_windows: int = 120
    """With grid auto: the fine grid while its estimated window count stays at or under this; coarse above."""
    fine_min_positions: int = 3
    """The fine in-plane grid has at least this many positions per axis (3 -> 3x3)."""
    coarse_z_step: float = 0.5
    """z step of the coarse grid, as a fraction of the patch (the fine grid uses the predictor's step size)."""
    tube_rule: bool = True
    """When the center shows only tube organs, run only the windows beyond the edges the tubes touch."""
    tube_labels: tuple[int, ...] = (5, 6, 10)
    """Tube organs (aorta, inferior vena cava, esophagus)."""
    locate_first: bool = False
    """Run every slab's center window first, then decide each slab from the organs located in the center column
    (`nnunet_cdl.inference.locate`) instead of from its own center window alone."""
    locate_min_fraction: float = 1.0
    """With `locate_first`: an organ's components in the center column smaller than this fraction of its largest
    one are not organs (1.0: the largest component only)."""

    def __post_init__(self) -> None:
        if self.grid not in GRIDS:
            raise ValueError(f"grid must be one of {', '.join(GRIDS)}, got {self.grid!r}")
        if self.locate_first and self.skip_slab_after_empty:
            raise ValueError("locate_first runs every slab's center window: it cannot be combined with "
                             "skip_slab_after_empty")
        if not 0 < self.locate_min_fraction <= 1:
            raise ValueError(f"locate_min_fraction must be in (0, 1], got {self.locate_min_fraction}")


@dataclass(frozen=True)
class Window:
    """One patch: `start` (z, y, x) voxel of its corner, `size` the patch, `role` "center" or "grid"."""

    start: Shape3
    size: Shape3
    role: str = "grid"

    @property
    def stop(self) -> Shape3:
        return (self.start[0] + self.size[0], self.start[1] + self.size[1], self.start[2] + self.size[2])

    def slicer(self) -> tuple[slice, slice, slice]:
        """Slices (z, y, x) of this window in the image."""
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))  # type: ignore[return-value]


@dataclass(frozen=True)
class Slab:
    """The windows of one z position: the center window first, then the others (row-major in y, x)."""

    index: int
    center: Window
    others: tuple[Window, ...]

    @property
    def windows(self) -> tuple[Window, ...]:
        return (self.center, *self.others)


@dataclass(frozen=True)
class TilingPlan:
    """All windows that may run, per slab in ascending z; `grid` is "fine" or "coarse"."""

    image_shape: Shape3
    patch: Shape3
    grid: str
    slabs: tuple[Slab, ...]
    estimated_fine_windows: int = 0

    @property
    def num_windows(self) -> int:
        return sum(len(s.windows) for s in self.slabs)


@dataclass
class SlabDecision:
    """What runs after a slab's center window: `run` windows; `reason` one of empty/tube/foreground."""

    run: list[Window] = field(default_factory=list)
    reason: str = "foreground"


def axis_positions(size: int, patch: int, step: float) -> list[int]:
    """Window starts along one axis as nnU-Net spaces them: ceil((size - patch) / (patch * step)) + 1 evenly
    spaced starts from 0 to size - patch (both ends included). Requires size >= patch, 0 < step <= 1."""
    if size < patch:
        raise ValueError(f"axis of {size} voxels is smaller than the patch ({patch}); pad first")
    if not 0 < step <= 1:
        raise ValueError(f"step must be in (0, 1], got {step}")
    if size == patch:
        return [0]
    count = math.ceil((size - patch) / (patch * step)) + 1
    return evenly_spaced(size - patch, count)


def evenly_spaced(last: int, count: int) -> list[int]:
    """`count` integer starts spread evenly over [0, last], both ends included, without duplicates."""
    if count <= 1 or last == 0:
        return [0]
    return sorted({int(round(i * last / (count - 1))) for i in range(count)})


def center_start(size: int, patch: int) -> int:
    """Start of the window centered on an axis of `size` voxels."""
    return int(round((size - patch) / 2))


def fine_axis(size: int, patch: int, step: float, min_positions: int) -> list[int]:
    """Fine in-plane grid starts: nnU-Net's positions at `step`, at least `min_positions` of them, center included."""
    positions = axis_positions(size, patch, step)
    if len(positions) < min_positions:
        positions = evenly_spaced(size - patch, min_positions)
    return sorted(set(positions) | {center_start(size, patch)})


def coarse_axis(size: int, patch: int) -> list[int]:
    """Coarse in-plane grid starts: the fewest windows that cover the axis (the corners when 2 suffice)."""
    return axis_positions(size, patch, 1.0)


def plan_tiling(image_shape: Sequence[int], patch: Sequence[int], step: float, rules: TilingRules) -> TilingPlan:
    """Ordered windows over a (z, y, x) image already padded to at least the patch on every axis.

    Every voxel of the image lies in at least one window of the plan (the image is the body crop, so coverage of
    the body is decided by the crop, not by a fixed central fraction of the field of view).
    """
    shape = tuple(int(s) for s in image_shape)
    psize = tuple(int(p) for p in patch)
    if len(shape) != 3 or len(psize) != 3:
        raise ValueError(f"3-D image and patch expected, got {shape} and {psize}")
    if any(s < p for s, p in zip(shape, psize)):
        raise ValueError(f"image {shape} is smaller than the patch {psize}; pad first")
    fine_y = fine_axis(shape[1], psize[1], step, rules.fine_min_positions)
    fine_x = fine_axis(shape[2], psize[2], step, rules.fine_min_positions)
    fine_z = axis_positions(shape[0], psize[0], step)
    estimate = len(fine_z) * len(fine_y) * len(fine_x)
    if rules.grid == "fine" or (rules.grid == "auto" and estimate <= rules.fine_max_windows):
        grid, zs, ys, xs = "fine", fine_z, fine_y, fine_x
    else:
        grid = "coarse"
        zs = axis_positions(shape[0], psize[0], rules.coarse_z_step)
        ys, xs = coarse_axis(shape[1], psize[1]), coarse_axis(shape[2], psize[2])
    cy, cx = center_start(shape[1], psize[1]), center_start(shape[2], psize[2])
    slabs = []
    for index, z in enumerate(zs):
        center = Window((z, cy, cx), psize, "center")  # type: ignore[arg-type]
        others = tuple(
            Window((z, y, x), psize)  # type: ignore[arg-type]
            for y in ys
            for x in xs
            if (y, x) != (cy, cx)
        )
        slabs.append(Slab(index, center, others))
    return TilingPlan(shape, psize, grid, tuple(slabs), estimate)  # type: ignore[arg-type]


def tube_edge_contacts(center_labels: np.ndarray, tube_labels: Sequence[int]) -> dict[str, tuple[int, int]]:
    """Where tube organs touch the in-plane edges of a window's label map (z, y, x).

    Returns edge -> (first, last) voxel index, inside the window, along the edge's own axis (x for front/back,
    y for left/right) of the tube voxels on that edge. Edges without tube voxels are absent.
    """
    tube = np.isin(center_labels, np.asarray(tube_labels))
    faces = {
        "front": tube[:, 0, :].any(axis=0),
        "back": tube[:, -1, :].any(axis=0),
        "left": tube[:, :, 0].any(axis=0),
        "right": tube[:, :, -1].any(axis=0),
    }
    contacts = {}
    for edge, line in faces.items():
        hits = np.flatnonzero(line)
        if hits.size:
            contacts[edge] = (int(hits[0]), int(hits[-1]))
    return contacts


def _beyond_edge(window: Window, center: Window, edge: str, extent: tuple[int, int]) -> bool:
    """True when `window` reaches past `center`'s `edge` and overlaps the touching `extent` (center-relative)."""
    axis, along = (1, 2) if edge in ("front", "back") else (2, 1)
    if edge in ("front", "left"):
        past = window.start[axis] < center.start[axis]
    else:
        past = window.stop[axis] > center.stop[axis]
    lo, hi = center.start[along] + extent[0], center.start[along] + extent[1]
    overlaps = window.start[along] <= hi and window.stop[along] > lo
    return past and overlaps


def decide_others(
    slab: Slab, class_counts: Sequence[int], contacts: dict[str, tuple[int, int]], rules: TilingRules
) -> SlabDecision:
    """The slab's other windows to run, given the center window's predicted voxels per class (index 0 =
    background) and its tube edge contacts (`tube_edge_contacts`).

    - empty: fewer than `empty_center_voxels` foreground voxels -> none;
    - tube: enough foreground, but (almost) all of it tube organs -> only windows past an edge the tubes touch,
      overlapping where they touch it (`tube_rule`);
    - foreground: all other windows.
    """
    counts = np.asarray(class_counts, dtype=np.int64)
    foreground = int(counts[1:].sum())
    if foreground < rules.empty_center_voxels:
        return SlabDecision([], "empty")
    if rules.tube_rule:
        tube = int(sum(counts[t] for t in rules.tube_labels if t < counts.size))
        if foreground - tube < rules.empty_center_voxels:
            run = [
                w
                for w in slab.others
                if any(_beyond_edge(w, slab.center, edge, ext) for edge, ext in contacts.items())
            ]
            return SlabDecision(run, "tube")
    return SlabDecision(list(slab.others), "foreground")


def skip_whole_slab(previous_reason: str | None, rules: TilingRules) -> bool:
    """CDL-UNet's rule: skip a slab (even its center) right after a slab whose center was empty."""
    return rules.skip_slab_after_empty and previous_reason == "empty"
