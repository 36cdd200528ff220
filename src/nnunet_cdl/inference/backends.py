"""Window backends: PyTorch fp32, PyTorch bf16 autocast, OpenVINO fp32 / bf16 (optional extra).

A backend maps one window (1, C, pz, py, px) float32 to logits (1, K, pz, py, px) float32. OpenVINO models are
converted once from the PyTorch network and cached beside the checkpoint, keyed by the checkpoint's size,
modification time and SHA-256, so a new checkpoint triggers a rebuild.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from nnunet_cdl.cpu import cpu_supports_bf16
from nnunet_cdl.errors import CdlError
from nnunet_cdl.io import atomic_directory, read_json, write_json

BACKENDS = ("torch-fp32", "torch-bf16", "openvino-fp32", "openvino-bf16")
AUTO_ORDER = ("openvino-bf16", "torch-bf16", "openvino-fp32", "torch-fp32")
"""`--backend auto` takes the first of these that is installed and supported (order measured by
scripts/bench_predict.py --backends, see docs/inference.md)."""

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
    """`auto` -> the first available backend; a named one is checked to be usable here."""
    usable = available_backends(device)
    if name == "auto":
        return usable[0]
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
    """Identity of a checkpoint file: size, mtime (ns) and SHA-256 of its bytes."""
    stat = checkpoint.stat()
    digest = hashlib.sha256()
    with checkpoint.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.hexdigest()}


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


def load_openvino_model(network: nn.Module, example: torch.Tensor, checkpoint: Path | None) -> object:
    """The OpenVINO model of `network` for inputs shaped like `example`, from the cache when it is current.

    Without a checkpoint, or when its folder is not writable, the model is converted in memory every time.
    """
    import openvino as ov

    key = {"input_shape": list(example.shape), "static_input": True, "openvino": ov.__version__}
    if checkpoint is None:
        return _trace(network, example)
    key |= checkpoint_key(checkpoint)
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
) -> Backend:
    """One backend for `network` (weights already loaded) by its resolved name (see `resolve_backend`)."""
    if name.startswith("torch"):
        return TorchBackend(network, device, low_precision=name.endswith("bf16"))
    model = load_openvino_model(network.cpu(), example, checkpoint)
    return OpenVinoBackend(model, bf16=name.endswith("bf16"), threads=threads)
