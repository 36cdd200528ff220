"""Planner preset: the shipped values, partial overrides, validation; network size and FLOP counting."""

from __future__ import annotations

import json
import pydoc
import re
from pathlib import Path

import pytest
import torch

from nnunet_cdl.errors import CdlError
from nnunet_cdl.networks.light_unet import count_parameters, gflops_per_patch, network_cost
from nnunet_cdl.planning.preset import load_preset


def build(preset, num_classes: int = 14, deep_supervision: bool = True) -> torch.nn.Module:
    arch = preset.architecture()
    kwargs = dict(arch["arch_kwargs"])
    for key in arch["_kw_requires_import"]:
        if kwargs[key] is not None:
            kwargs[key] = pydoc.locate(kwargs[key])
    network_class = pydoc.locate(arch["network_class_name"])
    return network_class(input_channels=1, num_classes=num_classes, deep_supervision=deep_supervision, **kwargs)


def write(tmp_path: Path, values: dict) -> Path:
    path = tmp_path / "preset.json"
    path.write_text(json.dumps(values))
    return path


def test_default_preset_is_the_papers_network() -> None:
    preset = load_preset()
    assert preset.plans_name == "nnUNetPlansLightUNet"
    assert preset.target_spacing == (4.0, 1.2, 1.2)
    assert preset.patch_size == (32, 128, 192)
    assert preset.batch_size == 2
    assert preset.features_per_stage == (16, 32, 64, 128)
    assert preset.kernel_sizes == ((1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3))
    assert preset.strides == ((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2))
    assert preset.n_conv_per_stage == (2, 2, 2, 2) and preset.n_conv_per_stage_decoder == (2, 2, 2)
    arch = preset.architecture()
    assert arch["network_class_name"].endswith("PlainConvUNet")
    assert arch["arch_kwargs"]["norm_op"].endswith("InstanceNorm3d")
    assert arch["arch_kwargs"]["nonlin"].endswith("LeakyReLU")


def test_network_has_1_3_to_1_5_million_parameters_with_14_classes() -> None:
    network = build(load_preset())
    parameters = count_parameters(network)
    assert 1.3e6 <= parameters <= 1.5e6, parameters
    with torch.no_grad():
        output = network(torch.zeros(1, 1, 8, 32, 48))  # smallest input the strides allow: (4, 8, 8) divides it
    assert output[0].shape == (1, 14, 8, 32, 48) and len(output) == 3  # deep supervision: 3 resolutions


def test_partial_preset_overrides_only_its_keys(tmp_path: Path) -> None:
    preset = load_preset(write(tmp_path, {"patch_size": [16, 64, 96], "plans_name": "nnUNetPlansTiny"}))
    assert preset.patch_size == (16, 64, 96) and preset.plans_name == "nnUNetPlansTiny"
    assert preset.target_spacing == (4.0, 1.2, 1.2)
    assert preset.with_overrides(batch_size=4).batch_size == 4


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"pach_size": [32, 128, 192]}, "unknown preset key"),
        ({"patch_size": [30, 128, 192]}, "divisible"),
        ({"kernel_sizes": [[3, 3, 3]]}, "one [z, y, x] kernel per stage"),
        ({"target_spacing": [4.0, 0, 1.2]}, "3 positive numbers"),
        ({"norm": "no_such_norm"}, "norm"),
        ({"batch_size": 0}, "batch_size"),
        ({"n_conv_per_stage_decoder": [2, 2, 2, 2]}, "n_conv_per_stage_decoder"),
        ({"reorient_to_ras": "yes"}, "reorient_to_ras must be true or false"),
        ({"ct_window_hu": [250, -250]}, "ct_window_hu must be null or [lower, upper]"),
        ({"ct_window_hu": [-250]}, "ct_window_hu must be null or [lower, upper]"),
    ],
)
def test_bad_presets_name_the_file_and_key(tmp_path: Path, values: dict, message: str) -> None:
    path = write(tmp_path, values)
    with pytest.raises(CdlError, match=re.escape(message)) as info:
        load_preset(path)
    assert str(path) in str(info.value)


def test_missing_or_invalid_preset_file(tmp_path: Path) -> None:
    with pytest.raises(CdlError, match="not found"):
        load_preset(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CdlError, match="not valid JSON"):
        load_preset(tmp_path / "bad.json")


def test_flop_count_of_one_convolution_is_two_per_mac() -> None:
    conv = torch.nn.Conv3d(2, 4, kernel_size=3, padding=1, bias=False)
    macs = 8 * 8 * 8 * 4 * 2 * 27
    assert gflops_per_patch(conv, (8, 8, 8), num_input_channels=2) == pytest.approx(2 * macs / 1e9)
    assert conv.weight.device.type == "cpu"  # counted on a meta copy


def test_light_unet_cost_scales_with_patch_volume() -> None:
    network = build(load_preset(), deep_supervision=False)
    full = network_cost(network, (32, 128, 192))
    half = network_cost(network, (16, 128, 192))
    assert full.gflops == pytest.approx(2 * half.gflops, rel=1e-6)
    assert 40 < full.gmacs < 60
    assert "M parameters" in full.describe()
