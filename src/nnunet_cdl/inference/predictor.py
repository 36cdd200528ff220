"""`nnUNetCdlPredictor`: nnU-Net's predictor with center-first adaptive tiling, a body crop, CPU backends,
a fast export, post-processing and a per-case record. Same Python API as `nnUNetPredictor`."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path

import numpy as np
import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

from nnunet_cdl import fast_gzip
from nnunet_cdl.errors import CdlError
from nnunet_cdl.inference.backends import Backend, build_backend, choose_backend, resolve_backend
from nnunet_cdl.inference.config import InferenceSettings, load_settings
from nnunet_cdl.inference.model_loading import load_model_folder
from nnunet_cdl.inference.prediction import FolderPrediction
from nnunet_cdl.inference.runtime import auto_backend_line, write_runtime_info

fast_gzip.install()  # the case reader and writer are nibabel's: ISA-L decompresses 2x faster than zlib


class nnUNetCdlPredictor(FolderPrediction, nnUNetPredictor):
    """Drop-in `nnUNetPredictor` for CPUs. Differences (see docs/inference.md):

    - sliding window: per z-slab the in-plane center window first; the rest of the slab only when the center
      shows organs (`TilingRules`); fold ensembles and mirroring are averaged per window;
    - torch threads = `settings.threads` (all given cores, no cap at 8); bf16 / OpenVINO backends;
    - `predict_from_files`: per case body crop, fast or stock export, post-processing, atomic outputs, a JSON
      record and a progress line; a failing case is reported and the others go on.
    """

    def __init__(
        self,
        tile_step_size: float = 0.5,
        use_gaussian: bool = True,
        use_mirroring: bool = True,
        perform_everything_on_device: bool = False,
        device: torch.device = torch.device("cpu"),
        verbose: bool = False,
        verbose_preprocessing: bool = False,
        allow_tqdm: bool = True,
        settings: InferenceSettings | None = None,
    ):
        super().__init__(
            tile_step_size, use_gaussian, use_mirroring, perform_everything_on_device and device.type == "cuda",
            device, verbose, verbose_preprocessing, allow_tqdm,
        )
        self.settings = settings if settings is not None else load_settings()
        self.backend_name = resolve_backend(self.settings.backend, device)
        self.checkpoints: list[Path] | None = None
        self._backends: list[Backend] | None = None
        self.last_records: list = []
        """`CaseRecord`s of the last `predict_from_files` call."""

    # ---------------------------------------------------------------- model loading
    def initialize_from_trained_model_folder(
        self, model_training_output_dir: str, use_folds: tuple | list | str | None, checkpoint_name: str = "checkpoint_final.pth"
    ) -> None:
        """As nnU-Net's (torch.compile aside), with clear errors for a missing folder, plans or checkpoint, and
        without importing nnU-Net's whole trainer tree for nnunet-cdl's trainers."""
        folder = Path(model_training_output_dir)
        for name in ("dataset.json", "plans.json"):
            if not (folder / name).is_file():
                raise CdlError(f"{folder}: not a trained nnU-Net model folder ({name} missing)")
        if use_folds is None:
            use_folds = self.auto_detect_available_folds(str(folder), checkpoint_name)
            if not use_folds:
                raise CdlError(f"{folder}: no fold_X/{checkpoint_name} found; train the model or pass -chk")
        folds = [use_folds] if isinstance(use_folds, str) else list(use_folds)
        checkpoints = [folder / f"fold_{f}" / checkpoint_name for f in folds]
        missing = [str(c) for c in checkpoints if not c.is_file()]
        if missing:
            raise CdlError(f"checkpoint not found: {', '.join(missing)} (choose folds with -f, the file with -chk)")
        for name, value in load_model_folder(folder, checkpoints).items():
            setattr(self, name, value)
        self.checkpoints = checkpoints
        self.model_folder = folder
        self._backends = None
        for checkpoint in checkpoints:
            write_runtime_info(checkpoint, self.trainer_name, self.configuration_name, self.allowed_mirroring_axes)

    def manual_initialization(self, *args, **kwargs) -> None:  # noqa: D401 - same signature as nnU-Net's
        super().manual_initialization(*args, **kwargs)
        self.checkpoints = None
        self.model_folder = None
        self._backends = None

    def window_backends(self) -> list[Backend]:
        """One backend per fold (built once): the network with that fold's weights."""
        if self._backends is None:
            torch.set_num_threads(self.settings.threads)
            channels = self._input_channels()
            example = torch.zeros((1, channels, *self._patch()))
            parameters = self.list_of_parameters or [None]
            backends = []
            for index, params in enumerate(parameters):
                network = self.network if len(parameters) == 1 else copy.deepcopy(self.network)
                if params is not None:
                    network.load_state_dict(params)
                checkpoint = self.checkpoints[index] if self.checkpoints else None
                if self.backend_name == "auto":
                    self.backend_name, measured, built = choose_backend(network, example, self.settings.threads,
                                                                        checkpoint)
                    self.log(auto_backend_line(measured, checkpoint))
                    if built is not None:
                        backends.append(built)
                        continue
                backends.append(build_backend(self.backend_name, network, self.device, example, self.settings.threads,
                                              checkpoint, self.int8_calibration_folder()))
            self._backends = backends
        return self._backends

    def int8_calibration_folder(self) -> Path | None:
        """Preprocessed training data to calibrate int8 on: `settings.int8_calibration`, else the model's dataset
        in `nnUNet_preprocessed` when it is there."""
        from nnunet_cdl.inference.quantize import preprocessed_folder

        if self.settings.int8_calibration is not None:
            return self.settings.int8_calibration
        configuration = getattr(self, "configuration_name", None)
        return preprocessed_folder(self.plans_manager.plans, configuration) if configuration else None

    def _input_channels(self) -> int:
        from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

        return determine_num_input_channels(self.plans_manager, self.configuration_manager, self.dataset_json)

    def num_heads(self) -> int:
        return self.label_manager.num_segmentation_heads

    def window_fn(self):
        """(1, C, pz, py, px) -> (K, pz, py, px) logits (numpy float32) averaged over folds and allowed mirror
        axes."""
        backends = self.window_backends()
        axes = self.allowed_mirroring_axes if self.use_mirroring and self.allowed_mirroring_axes else ()
        flips = [()] + [tuple(a + 2 for a in c) for i in range(len(axes)) for c in itertools.combinations(axes, i + 1)]

        def predict(x: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(x)
            total = None
            for backend in backends:
                for flip in flips:
                    out = backend(torch.flip(x, flip) if flip else x)
                    out = torch.flip(out, flip) if flip else out
                    total = out if total is None else total + out
            return (total[0] / (len(backends) * len(flips))).numpy()

        return predict

    @torch.inference_mode()
    def predict_sliding_window_return_logits(self, input_image: torch.Tensor) -> torch.Tensor:
        """Logits (K, Z, Y, X) of a preprocessed image (C, Z, Y, X) by the adaptive sliding window (3-D
        configurations; 2-D ones use nnU-Net's)."""
        if len(self._patch()) != 3:
            return super().predict_sliding_window_return_logits(input_image)
        return torch.from_numpy(self.adaptive_sliding_window(np.asarray(input_image.float()), keep_logits=True).logits)

    @torch.inference_mode()
    def predict_logits_from_preprocessed_data(self, data: torch.Tensor) -> torch.Tensor:
        """As nnU-Net's, but on all `settings.threads` threads and with the fold ensemble averaged per window."""
        torch.set_num_threads(self.settings.threads)
        if len(self._patch()) != 3:
            return super().predict_logits_from_preprocessed_data(data)
        return self.predict_sliding_window_return_logits(data)
