"""Fast preprocessing: nnU-Net's transpose and normalisation, then trilinear resampling with torch.

Replaces nnU-Net's third-order spline resampling of the image (the slowest step of stock preprocessing on CPU)
and its crop to the non-zero region (the body crop decides the region instead). Returns the same properties
nnU-Net's `DefaultPreprocessor.run_case_npy` records, so every stock export function accepts them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager


def fast_supported(configuration_manager: ConfigurationManager) -> bool:
    """The fast path needs a 3-D configuration and no mask-based normalisation (MR z-score with mask)."""
    return len(configuration_manager.patch_size) == 3 and not any(configuration_manager.use_mask_for_norm)


def resample_trilinear(data: np.ndarray, new_shape: tuple[int, ...]) -> torch.Tensor:
    """(C, z, y, x) float32 -> (C, *new_shape) float32 by trilinear interpolation (align_corners=False)."""
    tensor = torch.from_numpy(np.ascontiguousarray(data))
    if tuple(tensor.shape[1:]) == tuple(new_shape):
        return tensor
    return F.interpolate(tensor[None], size=tuple(int(s) for s in new_shape), mode="trilinear", align_corners=False)[0]


def fast_preprocess(
    data: np.ndarray,
    properties: dict,
    plans_manager: PlansManager,
    configuration_manager: ConfigurationManager,
) -> tuple[torch.Tensor, dict]:
    """Image (C, z, y, x) in file axis order with nnU-Net reader properties -> network input (C, Z, Y, X) and
    properties (adds shape_before_cropping, bbox_used_for_cropping, shape_after_cropping_and_before_resampling)."""
    data = data.astype(np.float32).transpose([0, *[i + 1 for i in plans_manager.transpose_forward]])
    data = np.ascontiguousarray(data)
    original_spacing = [properties["spacing"][i] for i in plans_manager.transpose_forward]
    shape = tuple(int(s) for s in data.shape[1:])
    properties = dict(properties)
    properties["shape_before_cropping"] = shape
    properties["bbox_used_for_cropping"] = [[0, s] for s in shape]
    properties["shape_after_cropping_and_before_resampling"] = shape
    seg = np.zeros((1, *shape), dtype=np.int8)
    data = DefaultPreprocessor(verbose=False)._normalize(
        data, seg, configuration_manager, plans_manager.foreground_intensity_properties_per_channel
    )
    del seg
    new_shape = compute_new_shape(shape, original_spacing, configuration_manager.spacing)
    return resample_trilinear(data, tuple(new_shape)), properties
