"""openvino-int8: calibration windows from preprocessed data, NNCF quantisation cached beside the checkpoint, and
the accuracy gate that decides whether --backend auto may pick it."""

from __future__ import annotations

from pathlib import Path

import blosc2
import numpy as np
import pytest
import torch
from torch import nn

from nnunet_cdl.errors import CdlError
from nnunet_cdl.inference import backends, quantize
from nnunet_cdl.inference.backends import build_backend, choose_backend, openvino_key
from nnunet_cdl.consensus.scores import confusion_matrix
from nnunet_cdl.inference.quantize import (
    INT8_RECIPE,
    INT8_RECIPE_VNNI,
    cached_int8_model,
    calibration_windows,
    int8_cache_dir,
    int8_gate_passed,
    min_organ_agreement,
    quantise,
    write_int8_gate,
)
from nnunet_cdl.labels import NUM_CLASSES

CPU = torch.device("cpu")
PATCH = (8, 16, 16)


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(1, 8, 3, padding=1), nn.InstanceNorm3d(8, affine=True), nn.LeakyReLU(),
                         nn.Conv3d(8, 4, 3, padding=1)).eval()


@pytest.fixture
def preprocessed(tmp_path: Path) -> Path:
    """Three nnU-Net-style preprocessed cases (blosc2 image and segmentation), one smaller than the patch."""
    folder = tmp_path / "Dataset001_X" / "nnUNetPlans_3d_fullres"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index, shape in enumerate([(12, 30, 30), (10, 20, 24), (4, 10, 10)]):
        seg = np.zeros((1, *shape), np.int16)
        seg[0, 1:3, 2:6, 2:6] = 1 + index % 3
        blosc2.asarray(rng.normal(size=(1, *shape)).astype(np.float32), urlpath=str(folder / f"c{index}.b2nd"))
        blosc2.asarray(seg, urlpath=str(folder / f"c{index}_seg.b2nd"))
    return folder


def test_calibration_windows_are_fixed_and_patch_shaped(preprocessed: Path) -> None:
    windows = calibration_windows(preprocessed, PATCH, count=6)
    assert len(windows) == 6 and all(w.shape == (1, 1, *PATCH) and w.dtype == np.float32 for w in windows)
    again = calibration_windows(preprocessed, PATCH, count=6)
    assert all(np.array_equal(a, b) for a, b in zip(windows, again)), "fixed seed: the same windows every time"
    with pytest.raises(CdlError, match="no preprocessed cases"):
        calibration_windows(preprocessed.parent, PATCH)


def test_int8_is_close_to_fp32_cached_and_gated(preprocessed: Path, tmp_path: Path) -> None:
    net, x = small_net(), torch.randn(1, 1, *PATCH)
    checkpoint = tmp_path / "fold_0" / "checkpoint_final.pth"
    checkpoint.parent.mkdir()
    torch.save({"network_weights": net.state_dict()}, checkpoint)
    with pytest.raises(CdlError, match="needs calibration data"):
        build_backend("openvino-int8", net, CPU, x, 1, checkpoint)
    int8 = build_backend("openvino-int8", net, CPU, x, 1, checkpoint, preprocessed)(x)
    fp32 = build_backend("torch-fp32", net, CPU, x, 1)(x)
    assert int8.shape == fp32.shape
    relative_error = ((int8 - fp32).abs().mean() / fp32.std()).item()
    assert relative_error < 0.1, f"int8 logits off by {relative_error:.2f} std (u8*s8 saturation without VNNI?)"
    assert (int8.argmax(1) == fp32.argmax(1)).float().mean() > 0.95
    model_file = int8_cache_dir(checkpoint) / "model.xml"
    first = model_file.stat().st_mtime_ns
    build_backend("openvino-int8", net, CPU, x, 1, checkpoint)  # cached: no calibration data needed any more
    assert model_file.stat().st_mtime_ns == first
    key = openvino_key(x.shape, checkpoint)
    assert not int8_gate_passed(checkpoint, key)
    assert "openvino-int8" not in choose_backend(net, x, 1, checkpoint)[1]["seconds_per_window"]
    assert not write_int8_gate(checkpoint, key, 0.95, {"cases": 2})
    assert not int8_gate_passed(checkpoint, key)
    assert write_int8_gate(checkpoint, key, 0.995, {"cases": 2}) and int8_gate_passed(checkpoint, key)
    assert "openvino-int8" in choose_backend(net, x, 1, checkpoint)[1]["seconds_per_window"]
    with torch.no_grad():
        net[0].bias += 1.0
    torch.save({"network_weights": net.state_dict()}, checkpoint)
    assert not int8_gate_passed(checkpoint, openvino_key(x.shape, checkpoint)), "a new checkpoint needs a new gate"
    assert backends.BACKENDS[-1] == "openvino-int8"


def test_the_recipe_follows_vnni_and_a_model_quantised_with_vnni_is_not_used_without(
        preprocessed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net, x = small_net(), torch.randn(1, 1, *PATCH)
    checkpoint = tmp_path / "fold_0" / "checkpoint_final.pth"
    checkpoint.parent.mkdir()
    torch.save({"network_weights": net.state_dict()}, checkpoint)
    key = openvino_key(x.shape, checkpoint)
    monkeypatch.setattr(quantize, "cpu_supports_vnni", lambda: True)
    assert quantize.int8_recipe() == INT8_RECIPE_VNNI and INT8_RECIPE_VNNI["overflow_fix"] == "disable"
    build_backend("openvino-int8", net, CPU, x, 1, checkpoint, preprocessed)
    assert write_int8_gate(checkpoint, key, 0.995, {"cases": 2})
    assert cached_int8_model(checkpoint, key) is not None and int8_gate_passed(checkpoint, key)
    monkeypatch.setattr(quantize, "cpu_supports_vnni", lambda: False)
    assert quantize.int8_recipe() == INT8_RECIPE and INT8_RECIPE["overflow_fix"] == "enable"
    assert cached_int8_model(checkpoint, key) is None and not int8_gate_passed(checkpoint, key)
    with pytest.raises(CdlError, match="needs calibration data"):  # 8-bit weights would saturate here: re-quantise
        build_backend("openvino-int8", net, CPU, x, 1, checkpoint)


def fake_quantised_inputs(model: object) -> dict[str, int]:
    """Per operation type, how many inputs of the OpenVINO model's operations come from a FakeQuantize."""
    counts: dict[str, int] = {}
    for op in model.get_ordered_ops():
        fed = sum(port.get_source_output().get_node().get_type_name() == "FakeQuantize" for port in op.inputs())
        if fed:
            counts[op.get_type_name()] = counts.get(op.get_type_name(), 0) + fed
    return counts


def test_recipe_options_keep_what_they_name_in_floating_point(preprocessed: Path) -> None:
    net, x = small_net(), torch.randn(1, 1, *PATCH)
    fp32 = backends.load_openvino_model(net, x, None)
    windows = calibration_windows(preprocessed, PATCH, count=4)
    plain = {"preset": "mixed", "overflow_fix": "enable"}
    assert fake_quantised_inputs(quantise(fp32, windows, plain)).get("MVN", 0) > 0
    kept = fake_quantised_inputs(quantise(fp32, windows, {**plain, "float_types": ["MVN"]}))
    assert kept.get("MVN", 0) == 0 and kept.get("Convolution", 0) > 0
    assert INT8_RECIPE["float_types"] == ["MVN"]


def test_accuracy_control_reaches_its_dice_bound(preprocessed: Path) -> None:
    import openvino as ov

    net, x = small_net(), torch.randn(1, 1, *PATCH)
    fp32 = backends.load_openvino_model(net, x, None)
    windows = calibration_windows(preprocessed, PATCH, count=4)
    model = quantise(fp32, windows, {"preset": "mixed", "overflow_fix": "enable", "max_dice_drop": 0.0})
    reference = ov.Core().compile_model(fp32, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    confusion = sum(confusion_matrix(reference(w)[0].argmax(1), compiled(w)[0].argmax(1), NUM_CLASSES)
                    for w in windows)
    assert min_organ_agreement(confusion) == 1.0


def test_min_organ_agreement_ignores_organs_neither_map_holds() -> None:
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    assert min_organ_agreement(confusion) == 1.0
    confusion[0, 0], confusion[1, 1], confusion[2, 2], confusion[2, 0] = 100, 10, 3, 1
    assert min_organ_agreement(confusion) == pytest.approx(6 / 7)


def test_calibration_windows_centre_on_small_organs_as_often_as_on_large_ones(tmp_path: Path) -> None:
    """The image holds the label values, so a window's centre voxel tells which organ it was centred on."""
    folder = tmp_path / "Dataset001_X" / "nnUNetPlans_3d_fullres"
    folder.mkdir(parents=True)
    seg = np.zeros((1, 20, 40, 40), np.int16)
    seg[0, 2:18, 5:35, 5:35] = 1
    seg[0, 9:11, 1:3, 1:3] = 2  # 8 voxels against organ 1's 14 400
    blosc2.asarray(seg.astype(np.float32), urlpath=str(folder / "c0.b2nd"))
    blosc2.asarray(seg, urlpath=str(folder / "c0_seg.b2nd"))
    windows = calibration_windows(folder, PATCH, count=40)
    centre = tuple(p // 2 for p in PATCH)
    on_organ = [int(w[0, 0][centre]) for w in windows[::2]]
    assert 0 not in on_organ, "every other window is centred on an organ voxel"
    assert on_organ.count(2) >= 5, f"the small organ was the centre of {on_organ.count(2)} of 20 windows"
