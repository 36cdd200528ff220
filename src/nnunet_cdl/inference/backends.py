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

import hashlib
import importlib.util
import os
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from nnunet_cdl.cpu import cpu_extensions, cpu_model_name, cpu_supports_bf16, isa_cap
from nnunet_cdl.errors import CdlError
from nnunet_cdl.io import atomic_directory, read_json, write_json

BACKENDS = ("torch-fp32", "torch-bf16", "openvino-fp32", "openvino-bf16", "openvino-int8")
AUTO_ORDER = ("openvino-int8", "openvino-bf16", "torch-bf16", "openvino-fp32", "torch-fp32")
"""Usable backends in this order are the candidates of `--backend auto`; off the CPU (no measurement) it takes
the first."""

Backend = Callable[[torch.Tensor], torch.Tensor]


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def available_backends(device: torch.device) -> list[str]:
    """Backends usable here, in `AUTO_ORDER` order."""
    usable = []
    for name in AUTO_ORDER:
        if name.startswith("openvino") and (device.type != "cpu" or not openvino_installed()):
            continue
        if name.endswith("bf16") and device.type == "cpu" and not cpu_supports_bf16():
            continue
        usable.append(name)
    return usable


def resolve_backend(name: str, device: torch.device) -> str:
    """A named backend checked to be usable here; `auto` stays `auto` on the CPU (measured once the network is
    known, `choose_backend`) and becomes the first usable backend elsewhere."""
    usable = available_backends(device)
    if name == "auto":
        return "auto" if device.type == "cpu" else usable[0]
    if name not in BACKENDS:
        raise CdlError(f"--backend must be auto or one of {', '.join(BACKENDS)}, got {name!r}")
    if name not in usable:
        why = "openvino is not installed (it is a dependency of nnunet-cdl: reinstall it, pip install -e .)" if name.startswith(
            "openvino"
        ) and not openvino_installed() else f"not supported on this {device.type} device"
        raise CdlError(f"--backend {name}: {why}; usable here: {', '.join(usable)}")
    return name


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


def checkpoint_key(checkpoint: Path) -> dict:
    """Identity of a checkpoint file: size and SHA-256 of its bytes (not its mtime, so that a model folder
    copied or cloned elsewhere keeps its caches)."""
    digest = hashlib.sha256()
    with checkpoint.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"size": checkpoint.stat().st_size, "sha256": digest.hexdigest()}


def openvino_cache_dir(checkpoint: Path) -> Path:
    """Where the converted model of `checkpoint` lives: `<checkpoint>.openvino/` beside it."""
    return checkpoint.with_name(checkpoint.name + ".openvino")


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


def openvino_key(example: torch.Tensor, checkpoint: Path | None) -> dict:
    """What an OpenVINO conversion of a checkpoint depends on: window shape, OpenVINO version, the checkpoint."""
    import openvino as ov

    key = {"input_shape": list(example.shape), "static_input": True, "openvino": ov.__version__}
    return key | checkpoint_key(checkpoint) if checkpoint is not None else key


def load_openvino_model(network: nn.Module, example: torch.Tensor, checkpoint: Path | None) -> object:
    """The OpenVINO model of `network` for inputs shaped like `example`, from the cache when it is current.

    Without a checkpoint, or when its folder is not writable, the model is converted in memory every time.
    """
    import openvino as ov

    if checkpoint is None:
        return _trace(network, example)
    key = openvino_key(example, checkpoint)
    folder = openvino_cache_dir(checkpoint)
    meta = folder / "meta.json"
    if not (meta.is_file() and read_json(meta) == key):
        if not os.access(checkpoint.parent, os.W_OK):
            return _trace(network, example)
        with atomic_directory(folder, overwrite=True) as tmp:
            _convert(network, example, tmp, key)
    return ov.Core().read_model(str(folder / "model.xml"))


class OpenVinoBackend:
    """An OpenVINO CPU model compiled for one window shape, in f32 or bf16 inference precision."""

    def __init__(self, model: object, bf16: bool, threads: int):
        import openvino as ov

        config = {"INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32", "INFERENCE_NUM_THREADS": threads}
        self.compiled = ov.Core().compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        result = self.request.infer({0: x.numpy()})
        return torch.from_numpy(result[self.compiled.output(0)].copy()).float()


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
    model = load_openvino_model(network.cpu(), example, checkpoint)
    if name == "openvino-int8":
        from nnunet_cdl.inference.quantize import load_int8_model

        model = load_int8_model(model, checkpoint, openvino_key(example, checkpoint), calibration_folder)
    return OpenVinoBackend(model, bf16=name.endswith("bf16"), threads=threads)


def time_backend(backend: Backend, example: torch.Tensor, runs: int = 1) -> float:
    """Median seconds of `runs` windows after one warm-up window (first-call allocation, OpenVINO's lazy init)."""
    backend(example)
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        backend(example)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def backend_choice_file(checkpoint: Path) -> Path:
    """Where `--backend auto` keeps its measurement for `checkpoint`: `<checkpoint>.backend.json` beside it."""
    return checkpoint.with_name(checkpoint.name + ".backend.json")


def machine_identity(threads: int) -> dict:
    """What makes a backend measurement valid only here: CPU model, speed extensions, ISA cap, threads, versions."""
    identity = {"cpu": cpu_model_name(), "extensions": cpu_extensions(), "isa_cap": isa_cap(), "threads": threads,
                "torch": torch.__version__}
    if openvino_installed():
        import openvino as ov

        identity["openvino"] = ov.__version__
    return identity


def choose_backend(network: nn.Module, example: torch.Tensor, threads: int,
                   checkpoint: Path | None) -> tuple[str, dict, Backend | None]:
    """`--backend auto` on the CPU: (name, what was measured, the winner's backend when built now).

    The cached choice beside `checkpoint` is used when its key (checkpoint identity, machine identity, window,
    candidates) matches; otherwise every usable backend is timed on one window and the fastest is kept (and
    cached when the folder is writable). int8 is a candidate only once its accuracy gate passed for this
    checkpoint (scripts/bench_int8.py).
    """
    from nnunet_cdl.inference.quantize import int8_gate_passed

    device = torch.device("cpu")
    candidates = [name for name in available_backends(device) if name != "openvino-int8"
                  or int8_gate_passed(checkpoint, openvino_key(example, checkpoint))]
    key = {"checkpoint": checkpoint_key(checkpoint) if checkpoint is not None else None,
           "machine": machine_identity(threads), "window": list(example.shape), "candidates": candidates}
    cache = backend_choice_file(checkpoint) if checkpoint is not None else None
    if cache is not None and cache.is_file():
        try:
            cached = read_json(cache)
        except CdlError:
            cached = {}
        if isinstance(cached, dict) and cached.get("key") == key and cached.get("choice") in candidates:
            return cached["choice"], {**cached, "cached": True}, None
    seconds, built = {}, {}
    for name in candidates:
        backend = build_backend(name, network, device, example, threads, checkpoint)
        seconds[name] = round(time_backend(backend, example), 4)
        built[name] = backend
    choice = min(seconds, key=seconds.get)
    result = {"key": key, "seconds_per_window": seconds, "choice": choice}
    if cache is not None and os.access(cache.parent, os.W_OK):
        write_json(cache, result)
    return choice, {**result, "cached": False}, built[choice]
