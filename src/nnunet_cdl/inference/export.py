"""From network-resolution predictions back to the input's exact grid.

Fast path: where nnU-Net's export would resample the logits linearly in-plane and by nearest neighbour along z
(anisotropic network spacing, order 1 / order_z 0: the light U-Net's plans), the same, computed only for the pixels
whose four in-plane source pixels disagree (`inplane_linear_labels`); otherwise argmax at network resolution, then
nearest-neighbour label resampling (index arithmetic, uint8 only). Stock path: nnU-Net's resampling of every
class's logits, then argmax. Both finish by undoing nnU-Net's crop and transpose and pasting the body box into a
full-size background volume. The fast path is torch-free (nnU-Net's export, which the stock path calls, is
imported only there).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nnunet_cdl.inference.body import Box
from nnunet_cdl.inference.boundary import BoundaryLogits
from nnunet_cdl.inference.preprocess import linear_taps

ANISOTROPY_THRESHOLD = 3.0
"""nnU-Net's ANISO_THRESHOLD: a spacing whose coarsest axis exceeds this times its finest is resampled separately."""


def nearest_indices(size_in: int, size_out: int) -> np.ndarray:
    """Source index of every output index for nearest-neighbour resizing (voxel centers, align_corners=False)."""
    return np.minimum(((np.arange(size_out) + 0.5) * (size_in / size_out)).astype(np.int64), size_in - 1)


def resize_labels_nearest(labels: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of a label map (z, y, x) to `shape`, dtype kept."""
    if tuple(labels.shape) == tuple(shape):
        return labels
    index = [nearest_indices(i, o) for i, o in zip(labels.shape, shape)]
    return labels[np.ix_(*index)]


def uncrop_untranspose(segmentation: np.ndarray, properties: dict, plans_manager) -> np.ndarray:
    """Undo nnU-Net's crop to non-zero (pad with background; the box lies inside the image) and its transpose."""
    full = np.zeros(properties["shape_before_cropping"], dtype=segmentation.dtype)
    full[tuple(slice(int(lo), int(hi)) for lo, hi in properties["bbox_used_for_cropping"])] = segmentation
    return np.ascontiguousarray(full.transpose(plans_manager.transpose_backward))


def separate_axis(force_separate_z: bool | None, current_spacing: Sequence[float],
                  new_spacing: Sequence[float]) -> int | None:
    """The axis nnU-Net's `resample_data_or_seg_to_shape` resamples on its own (its `determine_do_sep_z_and_axis`),
    None when it resamples in 3-D. Spacings in mm, network axis order."""
    def coarsest(spacing: Sequence[float]) -> np.ndarray:
        return np.flatnonzero(max(spacing) / np.asarray(spacing, dtype=np.float64) == 1)

    def anisotropic(spacing: Sequence[float]) -> bool:
        return max(spacing) / min(spacing) > ANISOTROPY_THRESHOLD

    if force_separate_z is not None:
        axes = coarsest(current_spacing) if force_separate_z else None
    elif anisotropic(current_spacing):
        axes = coarsest(current_spacing)
    elif anisotropic(new_spacing):
        axes = coarsest(new_spacing)
    else:
        axes = None
    return int(axes[0]) if axes is not None and len(axes) == 1 else None


def exports_inplane_linear(configuration: dict, original_spacing: Sequence[float]) -> bool:
    """True when nnU-Net's export of this configuration (plans dict, inheritance resolved) resamples the logits to
    a case of `original_spacing` (mm, network axis order) bilinearly in-plane and by nearest neighbour along z."""
    kwargs = configuration.get("resampling_fn_probabilities_kwargs", {})
    if configuration.get("resampling_fn_probabilities") != "resample_data_or_seg_to_shape" or kwargs.get("is_seg"):
        return False
    if kwargs.get("order", 3) != 1 or kwargs.get("order_z", 0) != 0:
        return False
    return separate_axis(kwargs.get("force_separate_z", False), configuration["spacing"], original_spacing) == 0


def inplane_linear_labels(logits: np.ndarray | BoundaryLogits, labels: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Labels (z, y, x) of `shape` from network logits (K, Z, Y, X; dense, or `BoundaryLogits` kept at least at the
    boundaries of `labels`) and their post-processed argmax `labels` (Z, Y, X) uint8, as nnU-Net's anisotropic
    export computes them: each plane's logits resized bilinearly in-plane (voxel centers, edges clamped), then
    nearest neighbour along z, then argmax.

    A pixel whose four in-plane source pixels hold one label takes it (a convex combination of logits keeps their
    common argmax); only the others interpolate. Where post-processing removed a source pixel's organ (its label
    differs from its logits' argmax), the pixel chooses among its four source pixels' labels, so that what
    post-processing removed stays removed.
    """
    classes, depth, rows, cols = logits.shape
    if labels.shape != (depth, rows, cols):
        raise ValueError(f"labels {labels.shape} do not match logits {logits.shape}")
    if isinstance(logits, np.ndarray):
        logits = BoundaryLogits.from_dense(logits, labels)
    y0, y1, wy = linear_taps(rows, int(shape[1]))
    x0, x1, wx = linear_taps(cols, int(shape[2]))
    planes = nearest_indices(depth, int(shape[0]))
    out = np.empty(tuple(int(s) for s in shape), dtype=np.uint8)
    for z in np.unique(planes):
        plane = labels[z]
        corners = [plane[np.ix_(ys, xs)] for ys in (y0, y1) for xs in (x0, x1)]
        result = corners[0].copy()
        mixed = (corners[0] != corners[1]) | (corners[0] != corners[2]) | (corners[0] != corners[3])
        iy, ix = np.nonzero(mixed)
        if iy.size:
            v = [logits.at(z, ys[iy], xs[ix]) for ys in (y0, y1) for xs in (x0, x1)]
            wyv, wxv = wy[iy], wx[ix]
            interpolated = (v[0] + (v[1] - v[0]) * wxv) * (1 - wyv) + (v[2] + (v[3] - v[2]) * wxv) * wyv
            kept = [corner[iy, ix] for corner in corners]
            altered = np.flatnonzero(np.any([value.argmax(0) != k for value, k in zip(v, kept)], axis=0))
            if altered.size:  # post-processing removed a source pixel's organ: choose among what it kept
                allowed = np.zeros((classes, altered.size), dtype=bool)
                for k in kept:
                    allowed[k[altered], np.arange(altered.size)] = True
                interpolated[:, altered] = np.where(allowed, interpolated[:, altered], -np.inf)
            result[iy, ix] = interpolated.argmax(0)
        out[planes == z] = result
    return out


def fast_labels(labels: np.ndarray, properties: dict, plans_manager,
                logits: np.ndarray | BoundaryLogits | None = None) -> np.ndarray:
    """Network-resolution labels (Z, Y, X) -> labels on the (cropped) input grid in file axis order: with the
    logits (K, Z, Y, X; dense or `BoundaryLogits`) by `inplane_linear_labels`, without them by nearest
    neighbour."""
    shape = properties["shape_after_cropping_and_before_resampling"]
    if logits is not None:
        resized = inplane_linear_labels(logits, labels, shape)
    else:
        resized = resize_labels_nearest(labels, shape)
    return uncrop_untranspose(resized, properties, plans_manager)


def stock_labels(
    logits,
    properties: dict,
    plans_manager,
    configuration_manager,
    label_manager,
    threads: int,
    with_probabilities: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """nnU-Net's export: resample logits (K, Z, Y, X; numpy or torch) to the input grid, argmax (and softmax on
    request). nnU-Net's `PlansManager`, `ConfigurationManager` and `LabelManager`."""
    import torch
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

    result = convert_predicted_logits_to_segmentation_with_correct_shape(
        torch.as_tensor(logits), plans_manager, configuration_manager, label_manager, properties, with_probabilities, threads
    )
    if with_probabilities:
        return result[0], result[1]
    return result, None


def paste_box(crop: np.ndarray, box: Box, shape: Sequence[int], background: float = 0) -> np.ndarray:
    """A full array of `shape` (trailing axes z, y, x), `background` everywhere except `crop` at `box`."""
    full = np.full(tuple(shape), background, dtype=crop.dtype)
    full[(..., *box)] = crop
    return full
