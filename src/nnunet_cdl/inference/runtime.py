"""The torch-free half of the window backends: names, which are usable, the caches beside a checkpoint (keys and
files) and the OpenVINO window runner. The OpenVINO command path (`inference.lean`) runs on this module alone;
`inference.backends` adds the PyTorch networks, conversion and measurement."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nnunet_cdl.cpu import cpu_extensions, cpu_model_name, cpu_supports_bf16, isa_cap
from nnunet_cdl.errors import CdlError
from nnunet_cdl.io import read_json, write_json

BACKENDS = ("torch-fp32", "torch-bf16", "openvino-fp32", "openvino-bf16", "openvino-int8")
AUTO_ORDER = ("openvino-int8", "openvino-bf16", "torch-bf16", "openvino-fp32", "torch-fp32")
"""Usable backends in this order are the candidates of `--backend auto`; off the CPU (no measurement) it takes
the first."""


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def _device_type(device) -> str:
    return device if isinstance(device, str) else device.type


def available_backends(device="cpu") -> list[str]:
    """Backends usable on `device` (a `torch.device` or its type name), in `AUTO_ORDER` order."""
    kind = _device_type(device)
    usable = []
    for name in AUTO_ORDER:
        if name.startswith("openvino") and (kind != "cpu" or not openvino_installed()):
            continue
        if name.endswith("bf16") and kind == "cpu" and not cpu_supports_bf16():
            continue
        usable.append(name)
    return usable


def resolve_backend(name: str, device="cpu") -> str:
    """A named backend checked to be usable here; `auto` stays `auto` on the CPU (measured once the network is
    known, `backends.choose_backend`) and becomes the first usable backend elsewhere."""
    kind = _device_type(device)
    usable = available_backends(kind)
    if name == "auto":
        return "auto" if kind == "cpu" else usable[0]
    if name not in BACKENDS:
        raise CdlError(f"--backend must be auto or one of {', '.join(BACKENDS)}, got {name!r}")
    if name not in usable:
        why = "openvino is not installed (it is a dependency of nnunet-cdl: reinstall it, pip install -e .)" if name.startswith(
            "openvino"
        ) and not openvino_installed() else f"not supported on this {kind} device"
        raise CdlError(f"--backend {name}: {why}; usable here: {', '.join(usable)}")
    return name


def checkpoint_key(checkpoint: Path) -> dict:
    """Identity of a checkpoint file: size and SHA-256 of its bytes (not its mtime, so that a model folder
    copied or cloned elsewhere keeps its caches). Hashed once per process and file version (every cache check
    of a run asks for it)."""
    stat = checkpoint.stat()
    return dict(_hashed(str(checkpoint.resolve()), stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=32)
def _hashed(path: str, size: int, mtime_ns: int) -> tuple[tuple[str, object], ...]:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return (("size", size), ("sha256", digest.hexdigest()))


def openvino_version() -> str:
    import openvino as ov

    return ov.__version__


def openvino_cache_dir(checkpoint: Path) -> Path:
    """Where the converted model of `checkpoint` lives: `<checkpoint>.openvino/` beside it."""
    return checkpoint.with_name(checkpoint.name + ".openvino")


def openvino_key(window_shape: Sequence[int], checkpoint: Path | None) -> dict:
    """What an OpenVINO conversion of a checkpoint depends on: window shape (1, C, pz, py, px), OpenVINO version,
    the checkpoint."""
    key = {"input_shape": [int(s) for s in window_shape], "static_input": True, "openvino": openvino_version()}
    return key | checkpoint_key(checkpoint) if checkpoint is not None else key


def cached_openvino_model(checkpoint: Path, key: dict) -> Path | None:
    """model.xml of `checkpoint`'s OpenVINO conversion when the cache holds one made for `key`, else None."""
    folder = openvino_cache_dir(checkpoint)
    meta = folder / "meta.json"
    try:
        current = meta.is_file() and read_json(meta) == key
    except CdlError:
        current = False
    return folder / "model.xml" if current and (folder / "model.xml").is_file() else None


def backend_choice_file(checkpoint: Path) -> Path:
    """Where `--backend auto` keeps its measurement for `checkpoint`: `<checkpoint>.backend.json` beside it."""
    return checkpoint.with_name(checkpoint.name + ".backend.json")


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_identity(threads: int) -> dict:
    """What makes a backend measurement valid only here: CPU model, speed extensions, ISA cap, threads, versions
    (from the installed distributions, so that asking does not import torch)."""
    identity = {"cpu": cpu_model_name(), "extensions": cpu_extensions(), "isa_cap": isa_cap(), "threads": threads,
                "torch": _version("torch")}
    if openvino_installed():
        identity["openvino"] = _version("openvino")
    return identity


def auto_candidates(checkpoint: Path | None, window_shape: Sequence[int]) -> list[str]:
    """The backends `--backend auto` times on this CPU: the usable ones, int8 only once its accuracy gate passed
    for this checkpoint (scripts/bench_int8.py)."""
    from nnunet_cdl.inference.quantize import int8_gate_passed

    return [name for name in available_backends("cpu") if name != "openvino-int8"
            or int8_gate_passed(checkpoint, openvino_key(window_shape, checkpoint))]


def choice_key(checkpoint: Path | None, threads: int, window_shape: Sequence[int], candidates: list[str]) -> dict:
    """The key a `--backend auto` measurement is kept under (checkpoint, machine, window, candidates)."""
    return {"checkpoint": checkpoint_key(checkpoint) if checkpoint is not None else None,
            "machine": machine_identity(threads), "window": [int(s) for s in window_shape], "candidates": candidates}


def cached_choice(checkpoint: Path, key: dict, candidates: Sequence[str]) -> dict | None:
    """The kept `--backend auto` measurement of `checkpoint` when it was made under `key`, else None."""
    cache = backend_choice_file(checkpoint)
    if not cache.is_file():
        return None
    try:
        cached = read_json(cache)
    except CdlError:
        return None
    if isinstance(cached, dict) and cached.get("key") == key and cached.get("choice") in candidates:
        return cached
    return None


def auto_backend_line(measured: dict, checkpoint: Path | None) -> str:
    """One log line on what `--backend auto` chose and why (seconds per window of every candidate)."""
    timings = ", ".join(f"{name} {seconds:.3f} s" for name, seconds in measured["seconds_per_window"].items())
    where = (f"cached in {backend_choice_file(checkpoint)}" if measured["cached"] else
             f"measured now{f', kept in {backend_choice_file(checkpoint)}' if checkpoint is not None else ''}")
    return f"backend auto: {measured['choice']} (per window on this CPU: {timings}; {where}; --backend forces one)"


def compiled_cache_dir(model_xml: Path) -> Path | None:
    """OpenVINO's compiled-model cache for a cached conversion: `compiled/` beside its model.xml (compiling from
    it takes about half the time), None when that folder cannot be written."""
    folder = model_xml.parent / "compiled"
    return folder if os.access(folder if folder.is_dir() else model_xml.parent, os.W_OK) else None


class OpenVinoWindow:
    """An OpenVINO CPU model compiled for one window shape, in f32 or bf16 inference precision: (1, C, pz, py, px)
    float32 -> (1, K, pz, py, px) float32, numpy in and out. `model` is an `ov.Model` or a model.xml path;
    `cache_dir` keeps OpenVINO's compiled blobs (one per model, precision and thread count).

    `output_buffers` 0: every call returns a fresh array; n > 0: OpenVINO writes straight into n arrays allocated
    once, used in turn, so that a result stays valid (and the caller's to change) for the next n - 1 calls only
    (no 44 MB allocation and copy per window)."""

    def __init__(self, model: object, bf16: bool, threads: int, cache_dir: Path | None = None,
                 output_buffers: int = 0):
        import openvino as ov

        config = {"INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32", "INFERENCE_NUM_THREADS": threads}
        if cache_dir is not None:
            config["CACHE_DIR"] = str(cache_dir)
        self.compiled = ov.Core().compile_model(model if not isinstance(model, Path) else str(model), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.output = self.compiled.output(0)
        shape = tuple(int(s) for s in self.output.get_shape())
        self.buffers = [np.empty(shape, dtype=np.float32) for _ in range(output_buffers)]
        self.tensors = [ov.Tensor(buffer, shared_memory=True) for buffer in self.buffers]
        self.calls = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if not self.buffers:
            result = self.request.infer({0: x})  # share_outputs=False: its outputs are fresh arrays, no second copy
            return np.asarray(result[self.output], dtype=np.float32)
        turn = self.calls % len(self.buffers)
        self.calls += 1
        self.request.set_output_tensor(0, self.tensors[turn])
        self.request.infer({0: x}, share_outputs=True)
        return self.buffers[turn]


def runtime_info_file(checkpoint: Path) -> Path:
    """`<checkpoint>.runtime.json`: what the torch-free command path needs from the checkpoint's pickle."""
    return checkpoint.with_name(checkpoint.name + ".runtime.json")


def write_runtime_info(checkpoint: Path, trainer_name: str, configuration: str,
                       mirroring_axes: Sequence[int] | None) -> None:
    """Keep the checkpoint's trainer, configuration and test-time mirroring axes beside it (keyed by its bytes),
    so that `inference.lean` need not unpickle it with torch. Written when missing or stale and the folder is
    writable; a read-only model folder just keeps the full predictor."""
    info = {"checkpoint": checkpoint_key(checkpoint), "trainer_name": trainer_name, "configuration": configuration,
            "inference_allowed_mirroring_axes": None if mirroring_axes is None else [int(a) for a in mirroring_axes]}
    path = runtime_info_file(checkpoint)
    try:
        if path.is_file() and read_json(path) == info:
            return
    except CdlError:
        pass
    if os.access(checkpoint.parent, os.W_OK):
        write_json(path, info)


def read_runtime_info(checkpoint: Path) -> dict | None:
    """The checkpoint's kept runtime information when it was written for these bytes, else None."""
    path = runtime_info_file(checkpoint)
    if not path.is_file():
        return None
    try:
        info = read_json(path)
    except CdlError:
        return None
    return info if isinstance(info, dict) and info.get("checkpoint") == checkpoint_key(checkpoint) else None
