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
from nnunet_cdl.inference import backends
from nnunet_cdl.inference.backends import build_backend, choose_backend, openvino_key
from nnunet_cdl.inference.quantize import calibration_windows, int8_cache_dir, int8_gate_passed, write_int8_gate

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
