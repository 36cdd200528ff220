"""From network-resolution predictions back to the input's exact grid.

Fast path: argmax at network resolution, then nearest-neighbour label resampling (index arithmetic, uint8 only).
Stock path: nnU-Net's resampling of every class's logits, then argmax. Both finish by undoing nnU-Net's crop and
transpose and pasting the body box into a full-size background volume. The fast path is torch-free (nnU-Net's
export, which the stock path calls, is imported only there).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nnunet_cdl.inference.body import Box


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


def fast_labels(labels: np.ndarray, properties: dict, plans_manager) -> np.ndarray:
    """Network-resolution labels (Z, Y, X) -> labels on the (cropped) input grid in file axis order."""
    resized = resize_labels_nearest(labels, properties["shape_after_cropping_and_before_resampling"])
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
