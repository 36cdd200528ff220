"""`LeanPredictor`: the `nnunet-cdl predict` path that never imports torch or nnU-Net's predictor.

Importing PyTorch, nnU-Net's predictor module (with torch._dynamo) and its trainer tree costs 3-6 s before the
first window; a case of a few hundred slices takes about as long again. Once a model has met this CPU through the
full predictor, everything the window loop needs is cached beside its checkpoint: the OpenVINO conversion
(`<checkpoint>.openvino/`, int8: `.openvino-int8/`), the `--backend auto` measurement (`.backend.json`) and what
the checkpoint's pickle says about trainer, configuration and mirroring (`.runtime.json`). `lean_predictor` then
builds a predictor from those files, plans.json and dataset.json with numpy, SimpleITK / nibabel and OpenVINO
only; any run it cannot serve identically (a torch backend, no or stale caches, mirroring, probabilities, stock
export, a cascade, region-based labels) goes to `nnUNetCdlPredictor`, which also writes the caches.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nnunet_cdl import fast_gzip
from nnunet_cdl.inference.config import InferenceSettings
from nnunet_cdl.inference.plans_view import PlansView, num_input_channels, num_segmentation_heads
from nnunet_cdl.inference.prediction import FolderPrediction
from nnunet_cdl.inference.preprocess import fast_supported
from nnunet_cdl.inference.runtime import (
    OpenVinoWindow,
    auto_backend_line,
    auto_candidates,
    cached_choice,
    cached_openvino_model,
    choice_key,
    compiled_cache_dir,
    openvino_key,
    read_runtime_info,
    resolve_backend,
)
from nnunet_cdl.io import read_json


class LeanPredictor(FolderPrediction):
    """Adaptive CPU prediction with cached OpenVINO models, torch-free (built by `lean_predictor`). Same outputs,
    records and errors as `nnUNetCdlPredictor` with the same settings."""

    def __init__(self, folder: Path, checkpoint: Path, models: Sequence[Path], backend: str, configuration: str,
                 settings: InferenceSettings, tile_step_size: float, use_gaussian: bool = True):
        self.model_folder = folder
        self.models_checkpoint = checkpoint
        self.dataset_json = read_json(folder / "dataset.json")
        self.plans_manager = PlansView(read_json(folder / "plans.json"))
        self.configuration_manager = self.plans_manager.get_configuration(configuration)
        self.configuration_name = configuration
        self.settings = settings
        self.tile_step_size = tile_step_size
        self.use_gaussian = use_gaussian
        self.backend_name = backend
        self.models = list(models)
        self._windows: list[OpenVinoWindow] | None = None
        self.last_records: list = []
        self.auto_measurement: dict | None = None
        """The kept `--backend auto` measurement this predictor's backend came from (logged at the first window)."""

    def _input_channels(self) -> int:
        return num_input_channels(self.dataset_json)

    def num_heads(self) -> int:
        return num_segmentation_heads(self.dataset_json)

    def window_fn(self):
        """(1, C, pz, py, px) -> (K, pz, py, px) logits (float32), averaged over folds; each fold's model writes
        into two buffers in turn (`sliding.WindowFn`'s contract)."""
        if self._windows is None:
            if self.auto_measurement is not None:
                self.log(auto_backend_line(self.auto_measurement, self.models_checkpoint))
            self._windows = [OpenVinoWindow(model, self.backend_name == "openvino-bf16", self.settings.threads,
                                            compiled_cache_dir(model), output_buffers=2) for model in self.models]
        windows = self._windows

        def predict(x: np.ndarray) -> np.ndarray:
            total = windows[0](x)
            for window in windows[1:]:
                total += window(x)
            return total[0] / len(windows) if len(windows) > 1 else total[0]

        return predict


def _model_file(backend: str, checkpoint: Path, window: Sequence[int]) -> Path | None:
    key = openvino_key(window, checkpoint)
    if backend == "openvino-int8":
        from nnunet_cdl.inference.quantize import cached_int8_model

        return cached_int8_model(checkpoint, key)
    return cached_openvino_model(checkpoint, key)


def lean_predictor(folder: Path, folds: Sequence, checkpoint_name: str, settings: InferenceSettings,
                   tile_step_size: float, use_mirroring: bool, device: str, tiling: str,
                   save_probabilities: bool, cascade_input: str | None) -> tuple[LeanPredictor | None, str]:
    """A `LeanPredictor` for this run when the caches beside the checkpoints serve it exactly, else None; and
    why not (for --verbose). Errors the full predictor would raise (a bad --backend) are raised here too."""
    if device != "cpu" or tiling != "adaptive":
        return None, f"-device {device} / --tiling {tiling}"
    if save_probabilities or cascade_input or settings.export != "fast":
        return None, "probabilities, a cascade input or the stock export"
    checkpoints = [folder / f"fold_{f}" / checkpoint_name for f in folds]
    if not all(c.is_file() for c in checkpoints):
        return None, "a checkpoint is missing"
    infos = [read_runtime_info(c) for c in checkpoints]
    if any(info is None for info in infos):
        return None, "no current runtime info beside a checkpoint (the full predictor writes it)"
    if use_mirroring and any(info["inference_allowed_mirroring_axes"] for info in infos):
        return None, "test-time mirroring"
    configuration = infos[0]["configuration"]
    try:
        plans = PlansView(read_json(folder / "plans.json"))
        manager = plans.get_configuration(configuration)
        dataset_json = read_json(folder / "dataset.json")
    except Exception as exc:  # any inconsistency: the full predictor reports it properly
        return None, f"plans or dataset.json not readable here ({exc})"
    if len(manager.patch_size) != 3 or not fast_supported(manager) or manager.previous_stage_name is not None:
        return None, "not a 3-D configuration the fast preprocessing serves"
    if num_segmentation_heads(dataset_json) is None:
        return None, "region-based labels"
    window = (1, num_input_channels(dataset_json), *(int(p) for p in manager.patch_size))
    backend = resolve_backend(settings.backend, "cpu")
    if backend == "auto":
        candidates = auto_candidates(checkpoints[0], window)
        cached = cached_choice(checkpoints[0], choice_key(checkpoints[0], settings.threads, window, candidates),
                               candidates)
        if cached is None:
            return None, "--backend auto has not measured this model on this CPU yet"
        backend = cached["choice"]
        measurement = {**cached, "cached": True}
    else:
        measurement = None
    if not backend.startswith("openvino"):
        return None, f"backend {backend}"
    models = [_model_file(backend, c, window) for c in checkpoints]
    if any(m is None for m in models):
        return None, f"no current {backend} model cached beside a checkpoint"
    fast_gzip.install()
    predictor = LeanPredictor(folder, checkpoints[0], models, backend, configuration, settings, tile_step_size)
    predictor.auto_measurement = measurement
    return predictor, ""
