"""Fast preprocessing: trilinear resampling as torch computes it, and the chunked normalise-and-resample that
gives the same float32 values from a CT's stored integers without a float32 copy of the whole image."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nnunet_cdl.inference import preprocess
from nnunet_cdl.inference.preprocess import fast_preprocess, normalise_and_resample, normalizer_class, resample_linear

CT_PROPERTIES = {"0": {"mean": 60.0, "std": 140.0, "percentile_00_5": -900.0, "percentile_99_5": 1200.0}}


def ct_image(shape=(1, 23, 31, 29), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1024, 2000, shape, dtype=np.int16)


@pytest.mark.parametrize("new_shape", [(9, 17, 40), (23, 12, 29), (40, 31, 10)])
def test_resample_linear_is_torchs_trilinear(new_shape):
    data = np.random.default_rng(1).normal(size=(2, 23, 31, 29)).astype(np.float32)
    expected = torch.nn.functional.interpolate(torch.from_numpy(data)[None], size=new_shape, mode="trilinear",
                                               align_corners=False)[0].numpy()
    assert np.allclose(resample_linear(data, new_shape), expected, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("new_shape", [(9, 17, 40), (23, 12, 29), (40, 31, 10), (23, 31, 29)])
def test_chunked_normalise_and_resample_equals_the_whole_image_path(monkeypatch, new_shape, threads):
    monkeypatch.setattr(preprocess, "CHUNK_VOXELS", 2000)  # many chunks
    image = ct_image()[0]
    before = image.copy()
    normalizer = normalizer_class("CTNormalization")(use_mask_for_norm=False, intensityproperties=CT_PROPERTIES["0"])
    expected = resample_linear(normalizer.run(image.astype(np.float32), None)[None], new_shape)[0]
    got = normalise_and_resample(image, lambda chunk: normalizer.run(chunk, None), new_shape, threads)
    assert got.dtype == np.float32 and np.array_equal(got, expected)
    assert np.array_equal(image, before)


def managers(scheme: str, transpose=(0, 1, 2)):
    plans = SimpleNamespace(transpose_forward=list(transpose), foreground_intensity_properties_per_channel=CT_PROPERTIES)
    configuration = SimpleNamespace(normalization_schemes=[scheme], use_mask_for_norm=[False], spacing=[4.0, 1.2, 1.2])
    return plans, configuration


@pytest.mark.parametrize("scheme", ["CTNormalization", "ZScoreNormalization"])
@pytest.mark.parametrize("transpose", [(0, 1, 2), (2, 0, 1)])
def test_fast_preprocess_gives_the_same_input_from_integers_and_floats(scheme, transpose):
    image = ct_image()
    as_float = image.astype(np.float32)
    properties = {"spacing": [2.5, 0.8, 0.9]}
    plans, configuration = managers(scheme, transpose)
    from_int, props = fast_preprocess(image, properties, plans, configuration)
    from_float, _ = fast_preprocess(as_float, properties, plans, configuration)
    assert from_int.dtype == np.float32 and np.array_equal(from_int, from_float)
    assert np.array_equal(as_float, image.astype(np.float32))  # the float input is not normalised in place
    shape = tuple(image.shape[1 + t] for t in transpose)
    assert props["shape_after_cropping_and_before_resampling"] == shape
    spacing = [properties["spacing"][t] for t in transpose]
    assert from_int.shape[1:] == tuple(int(round(s * k / n)) for s, k, n in zip(shape, spacing, [4.0, 1.2, 1.2]))


def test_fast_preprocess_normalises_each_channel_by_its_own_scheme():
    image = np.concatenate([ct_image(seed=3), ct_image(seed=4)])
    properties = {"spacing": [2.5, 0.8, 0.9]}
    plans, configuration = managers("CTNormalization")
    plans.foreground_intensity_properties_per_channel = {"0": CT_PROPERTIES["0"], "1": CT_PROPERTIES["0"]}
    configuration.normalization_schemes = ["CTNormalization", "ZScoreNormalization"]
    configuration.use_mask_for_norm = [False, False]
    both, _ = fast_preprocess(image, properties, plans, configuration)
    singles = [fast_preprocess(image[[c]], properties, *managers(scheme))[0][0]
               for c, scheme in enumerate(configuration.normalization_schemes)]
    assert both.shape == (2, *singles[0].shape)
    assert np.array_equal(both[0], singles[0]) and np.array_equal(both[1], singles[1])
