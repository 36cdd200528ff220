"""Run a tiling plan: windows through a network, Gaussian-weighted accumulation streamed along z.

Only a (classes, patch_z, y, x) accumulator lives in memory: once the next slab starts at z, every plane below z
is final and is reduced to labels (and, on request, to logits: all of them, or only at label boundaries, where the
in-plane linear export reads them); with locate-first tiling the center windows run
before the rest and their logits wait for their slab. Pure numpy (no torch, so the OpenVINO command
path never imports it); the network is a callable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from nnunet_cdl.inference.boundary import BoundaryLogits, boundary_pixels
from nnunet_cdl.inference.locate import center_column, located_organs
from nnunet_cdl.inference.tiling import (
    Slab,
    SlabDecision,
    TilingPlan,
    TilingRules,
    Window,
    decide_others,
    skip_whole_slab,
    tube_edge_contacts,
)

WindowFn = Callable[[np.ndarray], np.ndarray]
"""(1, C, pz, py, px) float32 input -> (K, pz, py, px) float32 logits, an array the caller may scale in place and
that must stay valid until the call after next (`run_plan` asks for the next window before it is done with this
one; it never holds two)."""

KEPT_CENTERS_FLOAT32_BYTES = 1 << 30
"""Locate-first keeps every center window's logits until its slab: as float32 up to this many bytes in all (the
300-slice phantom: 10 windows, 440 MB), as float16 above (half the memory, two conversions per window)."""

UNCOVERED_BACKGROUND_LOGIT = 10.0
"""Logit given to background where no window ran, so probabilities there say background."""


@dataclass
class SlabOutcome:
    """What one slab's center window decided: `reason` (`decide_others`' empty / tube / foreground, or skipped),
    the center window's (start, stop) per axis (z, y, x) on the padded network grid, the windows the slab ran,
    and the center window's predicted voxels per organ label (organs it predicted only; none for a skipped
    slab)."""

    reason: str
    center: tuple[tuple[int, int], ...]
    windows_run: int
    center_voxels: dict[int, int]
    located_voxels: dict[int, int] | None = None
    """With `locate_first`: the organ voxels located in the slab's part of the center column (what decided)."""


@dataclass
class SlidingResult:
    """labels: (Z, Y, X) uint8 argmax at network resolution; logits: (K, Z, Y, X) float16 when requested, or
    `BoundaryLogits` (kept at label boundaries only) when those were requested."""

    labels: np.ndarray
    logits: np.ndarray | BoundaryLogits | None
    grid: str
    windows_planned: int
    windows_run: int = 0
    windows_skipped: int = 0
    slabs: list[SlabOutcome] = field(default_factory=list)

    @property
    def slab_reasons(self) -> list[str]:
        return [slab.reason for slab in self.slabs]


def gaussian_weights(patch: tuple[int, int, int], sigma_scale: float = 1.0 / 8) -> np.ndarray:
    """Importance map (pz, py, px) float32, 1 at the center, falling off with sigma = patch * sigma_scale, never
    below 1e-3."""
    axes = []
    for size in patch:
        coords = np.arange(size, dtype=np.float32) - np.float32((size - 1) / 2)
        sigma = np.float32(max(size * sigma_scale, 1e-3))
        axes.append(np.exp(np.float32(-0.5) * (coords / sigma) ** 2))
    weights = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    weights /= weights.max()
    return np.maximum(weights, np.float32(1e-3)).astype(np.float32)


def argmax_labels(scores: np.ndarray) -> np.ndarray:
    """`scores.argmax(0)` as uint8 for (K, ...) scores with K <= 256, ties to the lower class as numpy breaks
    them; a running maximum over the classes, about twice as fast as numpy's strided argmax over the first axis
    of a window's logits."""
    if scores.shape[0] > 256:
        raise ValueError(f"{scores.shape[0]} classes do not fit uint8 labels")
    best = scores[0].copy()
    labels = np.zeros(scores.shape[1:], dtype=np.uint8)
    greater = np.empty(scores.shape[1:], dtype=bool)
    for k in range(1, scores.shape[0]):
        np.greater(scores[k], best, out=greater)
        labels[greater] = k
        np.maximum(best, scores[k], out=best)
    return labels


def pad_to_patch(data: np.ndarray, patch: Sequence[int]) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Zero-pad the spatial axes of `data` (C, Z, Y, X) to at least `patch`, the extra split as nnU-Net's
    `pad_nd_image` splits it (half before, the odd voxel after). Returns the padded array and the slicer that
    crops it back."""
    spatial = data.shape[1:]
    widths = [(0, 0)] + [((max(p - s, 0)) // 2, max(p - s, 0) - (max(p - s, 0)) // 2) for s, p in zip(spatial, patch)]
    padded = np.pad(data, widths) if any(w != (0, 0) for w in widths) else data
    revert = (slice(None), *(slice(lo, lo + s) for (lo, _), s in zip(widths[1:], spatial)))
    return padded, revert


class _ZStream:
    """Accumulator over the planes [z0, z0 + pz) of the current slab; earlier planes are finalised."""

    def __init__(self, shape: tuple[int, int, int], patch: tuple[int, int, int], num_classes: int, keep_logits: bool,
                 boundary_logits: bool):
        self.shape, self.patch, self.k = shape, patch, num_classes
        self.z0 = 0
        self.acc = np.zeros((num_classes, patch[0], shape[1], shape[2]), dtype=np.float32)
        self.wsum = np.zeros((patch[0], shape[1], shape[2]), dtype=np.float32)
        self.labels = np.zeros(shape, dtype=np.uint8)
        self.logits = np.zeros((num_classes, *shape), dtype=np.float16) if keep_logits else None
        self.boundary = BoundaryLogits((num_classes, *shape)) if boundary_logits else None
        self.scratch: np.ndarray | None = None

    def _finalise(self, count: int) -> None:
        count = min(count, self.shape[0] - self.z0)
        if count <= 0:
            return
        acc, wsum = self.acc[:, :count], self.wsum[:count]
        labels = argmax_labels(acc)
        self.labels[self.z0 : self.z0 + count] = labels
        if self.logits is not None:
            logits = acc / np.maximum(wsum, np.float32(1e-8))
            logits[0][wsum == 0] = UNCOVERED_BACKGROUND_LOGIT
            self.logits[:, self.z0 : self.z0 + count] = logits.astype(np.float16)
        if self.boundary is not None:
            for plane, mask in enumerate(boundary_pixels(labels)):
                ys, xs = np.nonzero(mask)
                weight = wsum[plane, ys, xs]
                logits = acc[:, plane, ys, xs] / np.maximum(weight, np.float32(1e-8))
                logits[0][weight == 0] = UNCOVERED_BACKGROUND_LOGIT
                self.boundary.store(self.z0 + plane, ys, xs, logits)

    def advance(self, z: int) -> None:
        """Finalise planes below `z` and move the buffer to start at `z` (z >= current start)."""
        shift = z - self.z0
        if shift <= 0:
            return
        self._finalise(shift)
        keep = max(0, self.patch[0] - shift)
        if keep:
            self.acc[:, :keep] = self.acc[:, shift:]  # numpy copies through a temporary only where the two overlap
            self.wsum[:keep] = self.wsum[shift:]
        self.acc[:, keep:] = 0
        self.wsum[keep:] = 0
        self.z0 = z

    def add(self, window: Window, prediction: np.ndarray, weights: np.ndarray) -> None:
        """Accumulate a window's logits (K, pz, py, px): float32 ones are scaled by `weights` in place, float16
        ones (kept center windows) into a reused float32 buffer, in one pass either way."""
        z = window.start[0] - self.z0
        ys, xs = window.slicer()[1:]
        if prediction.dtype == np.float32:
            np.multiply(prediction, weights, out=prediction)
        else:
            if self.scratch is None:
                self.scratch = np.empty(prediction.shape, dtype=np.float32)
            prediction = np.multiply(prediction, weights, out=self.scratch)
        self.acc[:, z : z + window.size[0], ys, xs] += prediction
        self.wsum[z : z + window.size[0], ys, xs] += weights

    def finish(self) -> None:
        self._finalise(self.shape[0] - self.z0)


def run_plan(
    data: np.ndarray,
    plan: TilingPlan,
    rules: TilingRules,
    window_fn: WindowFn,
    num_classes: int,
    use_gaussian: bool = True,
    keep_logits: bool = False,
    on_window: Callable[[], None] | None = None,
    boundary_logits: bool = False,
) -> SlidingResult:
    """Predict a padded image `data` (C, Z, Y, X) float32 window by window in plan order, center first per slab.

    With `rules.locate_first`, every slab's center window runs first (their logits kept until their slab is
    accumulated) and each slab is decided from the organs located in the center column; otherwise from
    its own center window. Wherever the next windows are known, the network runs one window ahead in a worker
    thread while this one accumulates (same order, same sums: the output does not change). Returns labels
    (Z, Y, X) and, with `keep_logits`, Gaussian-averaged logits (K, Z, Y, X) float16, or with `boundary_logits`
    the same logits only at label boundaries (`BoundaryLogits`, what the in-plane linear export reads); voxels
    that no run window covered are background. `on_window` is called after every network call (progress).
    """
    shape = tuple(int(s) for s in data.shape[1:])
    if shape != plan.image_shape:
        raise ValueError(f"data shape {shape} does not match the plan's image shape {plan.image_shape}")
    if keep_logits and boundary_logits:
        raise ValueError("keep_logits and boundary_logits exclude each other")
    weights = gaussian_weights(plan.patch) if use_gaussian else np.ones(plan.patch, dtype=np.float32)
    stream = _ZStream(shape, plan.patch, num_classes, keep_logits, boundary_logits)  # type: ignore[arg-type]
    result = SlidingResult(stream.labels, None, plan.grid, plan.num_windows)

    def network(window: Window) -> np.ndarray:
        patch = np.ascontiguousarray(data[(slice(None), *window.slicer())][None], dtype=np.float32)
        return np.require(window_fn(patch), np.float32, ["C", "W"])

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cdl-window") as worker:

        def predictions(windows: Iterable[Window]) -> Iterator[np.ndarray]:
            """Logits of `windows` in order; the first starts now, and each next one while the caller uses the
            one before."""
            queue = list(windows)
            if not queue:
                return iter(())
            first = worker.submit(network, queue[0])

            def results() -> Iterator[np.ndarray]:
                pending = first
                for following in [*queue[1:], None]:
                    prediction = pending.result()
                    if following is not None:
                        pending = worker.submit(network, following)
                    result.windows_run += 1
                    if on_window is not None:
                        on_window()
                    yield prediction

            return results()

        if rules.locate_first:
            _run_located(plan, rules, num_classes, stream, weights, result, predictions)
        else:
            _run_center_decided(plan, rules, num_classes, stream, weights, result, predictions)
    stream.finish()
    result.logits = stream.logits if stream.boundary is None else stream.boundary
    return result


Predictions = Callable[[Iterable[Window]], Iterator[np.ndarray]]


def _decide(slab: Slab, deciding_labels: np.ndarray, rules: TilingRules,
            num_classes: int) -> tuple[SlabDecision, dict[int, int]]:
    """The slab's decision from `deciding_labels`, and their voxels per organ label (`organ_voxels`)."""
    counts = np.bincount(deciding_labels.ravel(), minlength=num_classes).tolist()
    contacts = tube_edge_contacts(deciding_labels, rules.tube_labels) if rules.tube_rule else {}
    return decide_others(slab, counts, contacts, rules), _nonzero_organs(counts)


def _run_located(plan: TilingPlan, rules: TilingRules, num_classes: int, stream: _ZStream, weights: np.ndarray,
                 result: SlidingResult, predictions: Predictions) -> None:
    """Locate-first: all center windows, the organs of the center column, then every slab's decided windows
    (all known in advance, so the network never waits for the accumulation). The center windows' logits wait
    for their slab as float32 while all of them fit in `KEPT_CENTERS_FLOAT32_BYTES`, else as float16."""
    kept = np.float32 if len(plan.slabs) * num_classes * np.prod(plan.patch) * 4 <= KEPT_CENTERS_FLOAT32_BYTES \
        else np.float16
    centers = [(prediction.astype(kept), argmax_labels(prediction))
               for prediction in predictions(slab.center for slab in plan.slabs)]
    column = center_column(plan.slabs, [labels for _, labels in centers], plan.image_shape[0])
    located = located_organs(column, rules.locate_min_fraction)
    decisions = [_decide(slab, located[slab.center.slicer()[0]], rules, num_classes) for slab in plan.slabs]
    others = predictions(window for decision, _ in decisions for window in decision.run)
    for slab, (stored, center_labels), (decision, located_voxels) in zip(plan.slabs, centers, decisions):
        stream.advance(slab.center.start[0])
        stream.add(slab.center, stored, weights)
        for window in decision.run:
            stream.add(window, next(others), weights)
        result.windows_skipped += len(slab.others) - len(decision.run)
        result.slabs.append(SlabOutcome(decision.reason, _box(slab.center), 1 + len(decision.run),
                                        organ_voxels(center_labels, num_classes), located_voxels))


def _run_center_decided(plan: TilingPlan, rules: TilingRules, num_classes: int, stream: _ZStream,
                        weights: np.ndarray, result: SlidingResult, predictions: Predictions) -> None:
    """Each slab decided by its own center window (and CDL-UNet's skip of the slab after an empty one)."""
    previous: str | None = None
    for slab in plan.slabs:
        stream.advance(slab.center.start[0])
        if skip_whole_slab(previous, rules):
            result.windows_skipped += len(slab.windows)
            result.slabs.append(SlabOutcome("skipped", _box(slab.center), 0, {}))
            previous = "skipped"
            continue
        prediction = next(predictions([slab.center]))
        center_labels = argmax_labels(prediction)
        stream.add(slab.center, prediction, weights)
        decision, center_voxels = _decide(slab, center_labels, rules, num_classes)
        for window, logits in zip(decision.run, predictions(decision.run)):
            stream.add(window, logits, weights)
        result.windows_skipped += len(slab.others) - len(decision.run)
        result.slabs.append(SlabOutcome(decision.reason, _box(slab.center), 1 + len(decision.run), center_voxels))
        previous = decision.reason


def _box(window: Window) -> tuple[tuple[int, int], ...]:
    return tuple(zip(window.start, window.stop))


def organ_voxels(labels: np.ndarray, num_classes: int) -> dict[int, int]:
    """Voxels per organ label present in `labels` (background left out)."""
    return _nonzero_organs(np.bincount(labels.ravel(), minlength=num_classes).tolist())


def _nonzero_organs(counts: list[int]) -> dict[int, int]:
    return {label: int(n) for label, n in enumerate(counts) if label and n}
