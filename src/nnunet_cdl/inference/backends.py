"""Window backends: PyTorch fp32, PyTorch bf16 autocast, OpenVINO fp32 / bf16 / int8 (NNCF, `quantize`).

A backend maps one window (1, C, pz, py, px) float32 to logits (1, K, pz, py, px) float32. OpenVINO models are
converted once from the PyTorch network and cached beside the checkpoint, keyed by the checkpoint's size and
SHA-256, so a new checkpoint triggers a rebuild (and a copied model folder keeps its caches).

`--backend auto` is chosen by measurement (`choose_backend`): the first time a model meets a CPU, every usable
backend runs one window (after a warm-up) and the fastest wins; the timings and the choice are kept beside the
checkpoint (`<checkpoint>.backend.json`) with the CPU's identity (model name, speed extensions, instruction-set
cap, threads, library versions), so the next run on that CPU reuses the choice and another CPU measures again.
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from nnunet_cdl.io import atomic_directory, write_json
from nnunet_cdl.inference.runtime import (
    AUTO_ORDER,
    BACKENDS,
    OpenVinoWindow,
    auto_candidates,
    available_backends,
    backend_choice_file,
    cached_choice,
    cached_openvino_model,
    choice_key,
    compiled_cache_dir,
    openvino_cache_dir,
    openvino_installed,
    openvino_key,
    resolve_backend,
)

__all__ = ["AUTO_ORDER", "BACKENDS", "Backend", "OpenVinoBackend", "TorchBackend", "available_backends",
           "backend_choice_file", "build_backend", "choose_backend", "load_openvino_model", "openvino_cache_dir",
           "openvino_installed", "openvino_key", "resolve_backend", "time_backend"]

Backend = Callable[[torch.Tensor], torch.Tensor]


class TorchBackend:
    """A PyTorch network, optionally under bfloat16 autocast (CPU) / float16 autocast (CUDA)."""

    def __init__(self, network: nn.Module, device: torch.device, low_precision: bool):
        self.network = network.to(device).eval()
        self.device = device
        self.low_precision = low_precision

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        if self.low_precision:
            dtype = torch.bfloat16 if self.device.type == "cpu" else torch.float16
            with torch.autocast(self.device.type, dtype=dtype):
                out = self.network(x)
        else:
            out = self.network(x)
        return out.float().cpu()


def _trace(network: nn.Module, example: torch.Tensor) -> object:
    """torch -> OpenVINO model with the input shape fixed to `example`'s (every window has that shape; a dynamic
    shape breaks networks whose traced Python computes shapes, such as Swin's window partitioning, and static
    shapes let OpenVINO plan memory once). Tracing warnings about shape-dependent branches are expected."""
    import openvino as ov

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ov.convert_model(network.eval(), example_input=example, input=[tuple(example.shape)])


def _convert(network: nn.Module, example: torch.Tensor, folder: Path, key: dict) -> None:
    import openvino as ov

    model = _trace(network, example)
    ov.save_model(model, str(folder / "model.xml"), compress_to_fp16=False)
    write_json(folder / "meta.json", key)


def load_openvino_model(network: nn.Module, example: torch.Tensor, checkpoint: Path | None) -> object:
    """The OpenVINO model of `network` for inputs shaped like `example`, from the cache when it is current.

    Without a checkpoint, or when its folder is not writable, the model is converted in memory every time.
    """
    import openvino as ov

    if checkpoint is None:
        return _trace(network, example)
    key = openvino_key(example.shape, checkpoint)
    if cached_openvino_model(checkpoint, key) is None:
        if not os.access(checkpoint.parent, os.W_OK):
            return _trace(network, example)
        with atomic_directory(openvino_cache_dir(checkpoint), overwrite=True) as tmp:
            _convert(network, example, tmp, key)
    return ov.Core().read_model(str(openvino_cache_dir(checkpoint) / "model.xml"))


class OpenVinoBackend:
    """`runtime.OpenVinoWindow` with torch tensors in and out."""

    def __init__(self, model: object, bf16: bool, threads: int, cache_dir: Path | None = None):
        self.window = OpenVinoWindow(model, bf16, threads, cache_dir)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.window(x.numpy()))


def build_backend(
    name: str,
    network: nn.Module,
    device: torch.device,
    example: torch.Tensor,
    threads: int,
    checkpoint: Path | None = None,
    calibration_folder: Path | None = None,
) -> Backend:
    """One backend for `network` (weights already loaded) by its resolved name (see `resolve_backend`).
    `openvino-int8` quantises on first use with windows from `calibration_folder` (`inference.quantize`)."""
    if name.startswith("torch"):
        return TorchBackend(network, device, low_precision=name.endswith("bf16"))
    from nnunet_cdl.inference.quantize import cached_int8_model, load_int8_model

    model = load_openvino_model(network.cpu(), example, checkpoint)
    key = openvino_key(example.shape, checkpoint)
    if name == "openvino-int8":
        model = load_int8_model(model, checkpoint, key, calibration_folder)
    cached = None
    if checkpoint is not None:  # compiled from the cached file, as the lean path does: same blobs, same outputs
        cached = cached_int8_model(checkpoint, key) if name == "openvino-int8" else cached_openvino_model(checkpoint, key)
    return OpenVinoBackend(cached or model, bf16=name.endswith("bf16"), threads=threads,
                           cache_dir=compiled_cache_dir(cached) if cached is not None else None)


def time_backend(backend: Backend, example: torch.Tensor, runs: int = 1) -> float:
    """Median seconds of `runs` windows after one warm-up window (first-call allocation, OpenVINO's lazy init)."""
    backend(example)
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        backend(example)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def choose_backend(network: nn.Module, example: torch.Tensor, threads: int,
                   checkpoint: Path | None) -> tuple[str, dict, Backend | None]:
    """`--backend auto` on the CPU: (name, what was measured, the winner's backend when built now).

    The cached choice beside `checkpoint` is used when its key (checkpoint identity, machine identity, window,
    candidates) matches; otherwise every usable backend is timed on one window and the fastest is kept (and
    cached when the folder is writable). int8 is a candidate only once its accuracy gate passed for this
    checkpoint (scripts/bench_int8.py).
    """
    device = torch.device("cpu")
    candidates = auto_candidates(checkpoint, example.shape)
    key = choice_key(checkpoint, threads, example.shape, candidates)
    cached = cached_choice(checkpoint, key, candidates) if checkpoint is not None else None
    if cached is not None:
        return cached["choice"], {**cached, "cached": True}, None
    seconds, built = {}, {}
    for name in candidates:
        backend = build_backend(name, network, device, example, threads, checkpoint)
        seconds[name] = round(time_backend(backend, example), 4)
        built[name] = backend
    choice = min(seconds, key=seconds.get)
    result = {"key": key, "seconds_per_window": seconds, "choice": choice}
    if checkpoint is not None and os.access(checkpoint.parent, os.W_OK):
        write_json(backend_choice_file(checkpoint), result)
    return choice, {**result, "cached": False}, built[choice]
