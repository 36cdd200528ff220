"""Fast preprocessing: nnU-Net's transpose and normalisation, then linear resampling (numpy, separable).

Replaces nnU-Net's third-order spline resampling of the image (the slowest step of stock preprocessing on CPU)
and its crop to the non-zero region (the body crop decides the region instead). Returns the same properties
nnU-Net's `DefaultPreprocessor.run_case_npy` records, so every stock export function accepts them. Torch-free;
works with nnU-Net's `PlansManager` / `ConfigurationManager` and with `plans_view`'s views.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def fast_supported(configuration_manager) -> bool:
    """The fast path needs a 3-D configuration and no mask-based normalisation (MR z-score with mask)."""
    return len(configuration_manager.patch_size) == 3 and not any(configuration_manager.use_mask_for_norm)


def new_shape_for(shape: Sequence[int], spacing: Sequence[float], new_spacing: Sequence[float]) -> tuple[int, ...]:
    """nnU-Net's `compute_new_shape`: round(shape * spacing / new_spacing) per axis (mm in, voxels out)."""
    return tuple(int(round(s / n * k)) for s, n, k in zip(spacing, new_spacing, shape))


def linear_taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear resizing of one axis (voxel centers, align_corners=False, edges clamped as skimage's mode="edge"):
    for every output index its lower and upper source index and the upper one's weight (float32)."""
    source = np.maximum((np.arange(size_out, dtype=np.float64) + 0.5) * (size_in / size_out) - 0.5, 0.0)
    low = np.minimum(np.floor(source).astype(np.int64), size_in - 1)
    high = np.minimum(low + 1, size_in - 1)
    return low, high, (source - low).astype(np.float32)


def _linear_along(data: np.ndarray, axis: int, size_out: int) -> np.ndarray:
    """Linear resize of one axis to `size_out` (`linear_taps`)."""
    size_in = data.shape[axis]
    if size_in == size_out:
        return data
    low, high, weight = linear_taps(size_in, size_out)
    shape = [1] * data.ndim
    shape[axis] = size_out
    weight = weight.reshape(shape)
    result = np.take(data, low, axis=axis)
    upper = np.take(data, high, axis=axis)
    upper -= result
    upper *= weight
    result += upper
    return result


def resample_linear(data: np.ndarray, new_shape: Sequence[int]) -> np.ndarray:
    """(C, z, y, x) float32 -> (C, *new_shape) float32 by trilinear interpolation (voxel centers,
    align_corners=False, as torch's `interpolate(mode="trilinear")`), one axis at a time, most shrunk first."""
    data = np.ascontiguousarray(data, dtype=np.float32)
    order = sorted(range(3), key=lambda a: new_shape[a] / data.shape[a + 1])
    for axis in order:
        data = _linear_along(data, axis + 1, int(new_shape[axis]))
    return np.ascontiguousarray(data)


def normalizer_class(scheme: str) -> type:
    """nnU-Net's normalisation class named `scheme` (its own module first, then nnU-Net's class search)."""
    from nnunetv2.preprocessing.normalization import default_normalization_schemes

    found = getattr(default_normalization_schemes, scheme, None)
    if found is None:
        import os

        import nnunetv2
        from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

        found = recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "preprocessing", "normalization"),
                                            scheme, "nnunetv2.preprocessing.normalization")
    if found is None:
        raise RuntimeError(f"Unable to locate class '{scheme}' for normalization")
    return found


POINTWISE_NORMALIZATIONS = frozenset({"CTNormalization", "NoNormalization", "RGBTo01Normalization"})
"""nnU-Net's normalisation schemes that map every voxel on its own (no statistics of the image itself), so they
can run on a chunk of planes at a time."""
CHUNK_VOXELS = 1 << 23
"""Input voxels normalised at a time by `normalise_and_resample` (32 MB of float32)."""


def normalise_and_resample(image: np.ndarray, normalise, new_shape: Sequence[int], threads: int = 1) -> np.ndarray:
    """`resample_linear(normalise(image as float32))` for one channel (z, y, x) of any real dtype and a pointwise,
    thread-safe `normalise` (float32 array -> float32 array, may work in place), without a float32 copy of the
    whole image: the first axis `resample_linear` resamples (the most shrunk) is resampled chunk by chunk straight
    from the normalised chunk, `threads` chunks at a time (numpy releases the GIL; each chunk writes its own output
    planes), the same float32 operations in the same order, so the result is identical. `image` is not
    modified."""
    order = sorted(range(3), key=lambda a: new_shape[a] / image.shape[a])
    first = order[0]
    moved = np.moveaxis(image, first, 0)
    size_in, size_out = moved.shape[0], int(new_shape[first])
    low, high, weight = linear_taps(size_in, size_out)
    out = np.empty((size_out, *moved.shape[1:]), dtype=np.float32)
    plane = max(1, int(np.prod(moved.shape[1:])))
    block = max(1, int(CHUNK_VOXELS / plane / max(1.0, size_in / size_out)))

    def chunk_planes(start: int) -> None:
        stop = min(start + block, size_out)
        if size_in == size_out:  # this axis keeps its size: normalise only
            out[start:stop] = normalise(np.array(moved[start:stop], dtype=np.float32))
            return
        first_in, last_in = int(low[start]), int(high[stop - 1])
        chunk = normalise(np.array(moved[first_in : last_in + 1], dtype=np.float32))
        result = np.take(chunk, low[start:stop] - first_in, axis=0)
        upper = np.take(chunk, high[start:stop] - first_in, axis=0)
        upper -= result
        upper *= weight[start:stop, None, None]
        result += upper
        out[start:stop] = result

    starts = range(0, size_out, block)
    if threads > 1 and len(starts) > 1:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cdl-preprocess") as pool:
            list(pool.map(chunk_planes, starts))
    else:
        for start in starts:
            chunk_planes(start)
    data = np.moveaxis(out, 0, first)[None]
    for axis in order[1:]:
        data = _linear_along(data, axis + 1, int(new_shape[axis]))
    return np.ascontiguousarray(data[0])


def fast_preprocess(data: np.ndarray, properties: dict, plans_manager, configuration_manager,
                    threads: int = 1) -> tuple[np.ndarray, dict]:
    """Image (C, z, y, x) in file axis order (any real dtype; a CT's stored int16 too; not modified) with nnU-Net
    reader properties -> network input (C, Z, Y, X) float32 and properties (adds shape_before_cropping,
    bbox_used_for_cropping, shape_after_cropping_and_before_resampling). Pointwise normalisations
    (`POINTWISE_NORMALIZATIONS`, CT's among them) run chunk by chunk with the first resampled axis
    (`normalise_and_resample`, on `threads` threads); the others on a float32 copy of the channel."""
    image = data.transpose([0, *[i + 1 for i in plans_manager.transpose_forward]])
    original_spacing = [properties["spacing"][i] for i in plans_manager.transpose_forward]
    shape = tuple(int(s) for s in image.shape[1:])
    properties = dict(properties)
    properties["shape_before_cropping"] = shape
    properties["bbox_used_for_cropping"] = [[0, s] for s in shape]
    properties["shape_after_cropping_and_before_resampling"] = shape
    new_shape = new_shape_for(shape, original_spacing, configuration_manager.spacing)
    intensities = plans_manager.foreground_intensity_properties_per_channel
    channels = []
    for channel in range(image.shape[0]):
        scheme = configuration_manager.normalization_schemes[channel]
        normalizer = normalizer_class(scheme)(use_mask_for_norm=configuration_manager.use_mask_for_norm[channel],
                                              intensityproperties=intensities[str(channel)])
        if scheme in POINTWISE_NORMALIZATIONS:
            channels.append(normalise_and_resample(image[channel], lambda chunk: normalizer.run(chunk, None), new_shape,
                                                   threads))
        else:
            normalised = normalizer.run(np.array(image[channel], dtype=np.float32), None)
            channels.append(resample_linear(normalised[None], new_shape)[0])
    return (channels[0][None] if len(channels) == 1 else np.stack(channels)), properties
