"""Backends agree: torch fp32 vs bf16 autocast vs OpenVINO (cache beside the checkpoint, rebuilt on change)."""

from __future__ import annotations

import json
import os
import time

import pytest
import torch
from torch import nn

from nnunet_cdl.errors import CdlError
from nnunet_cdl.inference import backends
from nnunet_cdl.inference.backends import (
    AUTO_ORDER,
    available_backends,
    backend_choice_file,
    choose_backend,
    build_backend,
    openvino_cache_dir,
    resolve_backend,
)

CPU = torch.device("cpu")


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv3d(1, 8, 3, padding=1), nn.InstanceNorm3d(8, affine=True), nn.LeakyReLU(),
        nn.Conv3d(8, 4, 3, padding=1),
    ).eval()


def test_auto_is_measured_on_the_cpu_and_bad_names_are_user_errors():
    usable = available_backends(CPU)
    assert usable and usable == [b for b in AUTO_ORDER if b in usable]
    assert resolve_backend("auto", CPU) == "auto"
    assert resolve_backend("torch-fp32", CPU) == "torch-fp32"
    with pytest.raises(CdlError):
        resolve_backend("tensorrt", CPU)


def test_torch_bf16_is_close_to_fp32():
    x = torch.randn(1, 1, 8, 16, 16)
    net = small_net()
    fp32 = build_backend("torch-fp32", net, CPU, x, 1)(x)
    bf16 = build_backend("torch-bf16", net, CPU, x, 1)(x)
    assert fp32.dtype == bf16.dtype == torch.float32 and fp32.shape == (1, 4, 8, 16, 16)
    assert torch.allclose(fp32, bf16, atol=0.05 * float(fp32.abs().max()))
    assert torch.equal(fp32.argmax(1)[fp32.softmax(1).amax(1) > 0.6], bf16.argmax(1)[fp32.softmax(1).amax(1) > 0.6])


def test_openvino_matches_torch_and_caches_beside_the_checkpoint(tmp_path):
    x = torch.randn(1, 1, 8, 16, 16)
    net = small_net()
    checkpoint = tmp_path / "fold_0" / "checkpoint_final.pth"
    checkpoint.parent.mkdir()
    torch.save({"network_weights": net.state_dict()}, checkpoint)
    reference = build_backend("torch-fp32", net, CPU, x, 1)(x)
    ov = build_backend("openvino-fp32", net, CPU, x, 1, checkpoint)(x)
    assert torch.allclose(reference, ov, atol=1e-3)
    cache = openvino_cache_dir(checkpoint)
    meta = (cache / "meta.json").read_text()
    first_mtime = (cache / "model.xml").stat().st_mtime_ns
    build_backend("openvino-bf16", net, CPU, x, 1, checkpoint)
    assert (cache / "model.xml").stat().st_mtime_ns == first_mtime, "a current cache is reused"
    with torch.no_grad():
        net[0].bias += 1.0
    time.sleep(0.01)
    torch.save({"network_weights": net.state_dict()}, checkpoint)
    os.utime(checkpoint)
    changed = build_backend("openvino-fp32", net, CPU, x, 1, checkpoint)(x)
    assert (cache / "meta.json").read_text() != meta, "a new checkpoint rebuilds the cache"
    assert torch.allclose(changed, build_backend("torch-fp32", net, CPU, x, 1)(x), atol=1e-3)


def test_openvino_runs_swin_x_seg_whose_traced_code_computes_shapes():
    from nnunet_cdl.networks.swinxseg import SwinXSeg

    torch.manual_seed(0)
    net = SwinXSeg(1, 3, window_size=(2, 4, 4), decoder_channels=[8, 8, 16, 16, 32, 32], embed_dim=12,
                   num_heads=(1, 1, 2, 2)).eval()
    x = torch.randn(1, 1, 32, 32, 64)
    reference = build_backend("torch-fp32", net, CPU, x, 1)(x)
    ov = build_backend("openvino-fp32", net, CPU, x, 1)(x)
    assert ov.shape == reference.shape == (1, 3, 32, 32, 64)
    assert torch.allclose(reference, ov, atol=1e-3 * max(1.0, float(reference.abs().max())))


def test_openvino_is_part_of_every_install():
    from importlib.metadata import requires

    assert any(r.startswith("openvino") and "extra" not in r for r in requires("nnunet-cdl"))
    assert "openvino-fp32" in available_backends(CPU)


def test_auto_times_every_usable_backend_once_per_model_and_cpu(tmp_path, monkeypatch):
    x = torch.randn(1, 1, 8, 16, 16)
    net = small_net()
    checkpoint = tmp_path / "fold_0" / "checkpoint_final.pth"
    checkpoint.parent.mkdir()
    torch.save({"network_weights": net.state_dict()}, checkpoint)
    choice, measured, built = choose_backend(net, x, 1, checkpoint)
    seconds = measured["seconds_per_window"]
    assert set(seconds) == set(available_backends(CPU)) - {"openvino-int8"}, "int8 waits for its accuracy gate"
    assert choice == min(seconds, key=seconds.get)
    assert built is not None and torch.allclose(built(x), build_backend("torch-fp32", net, CPU, x, 1)(x), atol=0.1)
    cached = json.loads(backend_choice_file(checkpoint).read_text())
    assert cached["choice"] == choice and cached["key"]["machine"]["threads"] == 1

    def no_measuring(*_args, **_kwargs):
        raise AssertionError("a cached choice must not be measured again")

    monkeypatch.setattr(backends, "time_backend", no_measuring)
    again, measured_again, built_again = choose_backend(net, x, 1, checkpoint)
    assert (again, measured_again["cached"], built_again) == (choice, True, None)
    monkeypatch.setattr(backends, "time_backend", lambda backend, example, runs=1: 0.1)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2_VNNI")  # another instruction set: measured again
    _, measured_capped, _ = choose_backend(net, x, 1, checkpoint)
    assert not measured_capped["cached"] and not any(n.endswith("bf16") for n in measured_capped["seconds_per_window"])


def test_openvino_window_output_buffers_are_reused_in_turn(tmp_path):
    import numpy as np

    from nnunet_cdl.inference.backends import load_openvino_model
    from nnunet_cdl.inference.runtime import OpenVinoWindow

    example = torch.randn(1, 1, 8, 16, 16)
    model = load_openvino_model(small_net(), example, None)
    fresh, buffered = OpenVinoWindow(model, False, 1), OpenVinoWindow(model, False, 1, output_buffers=2)
    inputs = [np.random.default_rng(i).normal(size=(1, 1, 8, 16, 16)).astype(np.float32) for i in range(3)]
    first, second = buffered(inputs[0]), buffered(inputs[1])
    assert first is not second and np.array_equal(first, fresh(inputs[0])) and np.array_equal(second, fresh(inputs[1]))
    third = buffered(inputs[2])
    assert third is first and np.array_equal(third, fresh(inputs[2])), "the call after next reuses the first array"
    assert fresh(inputs[0]) is not fresh(inputs[0]), "without buffers every call returns a new array"
