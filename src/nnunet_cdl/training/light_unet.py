"""nnU-Net trainers for the CDL-UNet light 3D U-Net (plans `nnUNetPlansLightUNet` from `LightUNetPlanner`).

Protocol of the paper (nnU-Net's defaults plus two changes): SGD (lr 0.01, momentum 0.99, Nesterov), poly decay
with exponent 0.9, Dice + cross-entropy with nnU-Net's deep supervision, final checkpoint used; elastic deformation
ON, mirroring OFF in training and at test time (`inference_allowed_mirroring_axes = None`, saved in the checkpoint
and honoured by the stock predictor). The network is rebuilt from the plans' `architecture` section by nnU-Net's
own `build_network_architecture`.

Length of training: each class has a `schedule`; the environment variables in `SCHEDULE_VARIABLES` override it
(e.g. `nnUNet_cdl_num_epochs=200 nnUNetv2_train ... -tr nnUNetTrainerLightUNet`). The override is logged.

Wall-clock budget: `nnUNet_cdl_time_budget_min=M` ends training after about M minutes of epochs (counted from
the epochs in the training log, so a run resumed with `--c` keeps its earlier time; pauses between runs do not
count). After every epoch the total number of epochs is re-estimated from the recent epoch cost, capped by the
schedule, and the poly learning-rate decay is stretched or shrunk to end with it.

Final validation: nnU-Net predicts every validation case with its stock predictor after training (minutes per
case on a CPU). `final_validation = False` (the short variants) or `nnUNet_cdl_final_validation=0` skips it.

Continuing a model: `nnUNet_cdl_initial_weights=CHECKPOINT` starts training from every network weight of an
nnU-Net checkpoint of the same network, the segmentation heads included (nnU-Net's `-pretrained_weights` is made
for transfer to other labels and leaves the heads, `.seg_layers.`, at their random initialisation). The optimizer
starts fresh, as with `-pretrained_weights`; `--c` (resuming) wins over it.

CPU precision: nnU-Net autocasts only on CUDA. `nnUNet_cdl_cpu_bf16=1` runs the training and validation steps
under bfloat16 autocast on a CPU with native bf16 (weights, optimizer state and checkpoints stay float32): about
1.9x faster per iteration on AVX512-BF16 / AMX cores (`python scripts/bench_train.py`). It is refused with a clear
error on a CPU without bf16, where emulation would be slower than float32.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA

from nnunet_cdl.errors import CdlError
from nnunet_cdl.cpu import cpu_supports_bf16


@dataclass(frozen=True)
class TrainingSchedule:
    """How long a training runs: epochs and (validation) iterations per epoch."""

    num_epochs: int
    num_iterations_per_epoch: int
    num_val_iterations_per_epoch: int


SCHEDULE_VARIABLES: dict[str, str] = {
    "num_epochs": "nnUNet_cdl_num_epochs",
    "num_iterations_per_epoch": "nnUNet_cdl_num_iterations_per_epoch",
    "num_val_iterations_per_epoch": "nnUNet_cdl_num_val_iterations_per_epoch",
}
"""TrainingSchedule field -> environment variable that overrides it."""


def schedule_from_env(default: TrainingSchedule, environ: Mapping[str, str]) -> TrainingSchedule:
    """`default` with the values set in `environ` (positive integers) replaced; bad values are a `CdlError`."""
    overrides: dict[str, int] = {}
    for field_name, variable in SCHEDULE_VARIABLES.items():
        raw = environ.get(variable, "").strip()
        if not raw:
            continue
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise CdlError(f"environment variable {variable}={raw!r} must be a positive integer")
        overrides[field_name] = value
    return replace(default, **overrides)


TIME_BUDGET_VARIABLE = "nnUNet_cdl_time_budget_min"
FINAL_VALIDATION_VARIABLE = "nnUNet_cdl_final_validation"
INITIAL_WEIGHTS_VARIABLE = "nnUNet_cdl_initial_weights"
RESUME_GAP_S = 120.0
"""A pause this long between two epochs' timestamps means the run was stopped and resumed: not counted."""


def _positive_number(environ: Mapping[str, str], variable: str) -> float | None:
    raw = environ.get(variable, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise CdlError(f"environment variable {variable}={raw!r} must be a positive number")
    return value


def time_budget_from_env(environ: Mapping[str, str]) -> float | None:
    """Seconds of `nnUNet_cdl_time_budget_min` (minutes), or None when unset; bad values are a `CdlError`."""
    minutes = _positive_number(environ, TIME_BUDGET_VARIABLE)
    return None if minutes is None else minutes * 60.0


def flag_from_env(environ: Mapping[str, str], variable: str, default: bool) -> bool:
    """A 1/0 switch from the environment; unset -> `default`; anything else is a `CdlError`."""
    raw = environ.get(variable, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes"):
        return True
    if raw in ("0", "false", "no"):
        return False
    raise CdlError(f"environment variable {variable}={raw!r} must be 1 or 0")


def load_network_weights(network: torch.nn.Module, checkpoint: str | os.PathLike[str]) -> int:
    """Load every weight of an nnU-Net checkpoint's `network_weights` into `network` (unwrapped from DDP and
    torch.compile), strictly: a checkpoint of another architecture or label count is a `CdlError` naming the
    file. Returns the number of tensors loaded."""
    from nnunet_cdl.inference.model_loading import read_checkpoint

    weights = read_checkpoint(checkpoint)["network_weights"]
    target = network.module if isinstance(network, torch.nn.parallel.DistributedDataParallel) else network
    target = getattr(target, "_orig_mod", target)
    try:
        target.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CdlError(f"{checkpoint}: its weights do not fit this network ({INITIAL_WEIGHTS_VARIABLE}): "
                       f"{' '.join(first[:3])[:400]}") from exc
    return len(weights)


def epoch_costs(starts: Sequence[float], ends: Sequence[float], now: float) -> list[float]:
    """Seconds each finished epoch cost, overhead between epochs included (from nnU-Net's epoch start and end
    timestamps, seconds since the epoch; `now` closes the last one). A gap of `RESUME_GAP_S` or more after an
    epoch's end is a pause between runs: that epoch counts its own duration only."""
    costs = []
    for index, (start, end) in enumerate(zip(starts, ends)):
        following = starts[index + 1] if index + 1 < len(starts) else now
        costs.append(following - start if following - end < RESUME_GAP_S else end - start)
    return costs


def epochs_within_budget(costs: Sequence[float], budget_s: float, max_epochs: int) -> int:
    """Total epochs to train: the `len(costs)` done plus as many more as the rest of `budget_s` holds at the
    recent cost (median of the last five), never fewer than done (stop now) nor more than `max_epochs`."""
    done = len(costs)
    if done == 0:
        return max_epochs
    remaining = budget_s - sum(costs)
    more = int(remaining // statistics.median(costs[-5:])) if remaining > 0 else 0
    return max(done, min(max_epochs, done + more))


@dataclass(frozen=True)
class ElasticMagnitude:
    """Elastic displacement magnitude (voxels) for batchgeneratorsv2's SpatialTransform.

    The transform smooths unit noise with sigma = deformation_scale * patch edge (voxels) and scales it to this
    maximum displacement: a fraction in [low, high] of sigma. Fractions below 1 keep the field from folding.
    Picklable, so data augmentation workers can use it.
    """

    low: float
    high: float

    def __call__(self, *, patch_size: tuple[int, ...], dim: int, deformation_scale: float, **_: object) -> float:
        return float(np.random.uniform(self.low, self.high) * deformation_scale * patch_size[dim])


@dataclass(frozen=True)
class ElasticDeformation:
    """Elastic deformation settings: probability per sample, sigma as a fraction of the patch edge, magnitude."""

    probability: float = 0.2
    scale: tuple[float, float] = (0.05, 0.1)
    magnitude_per_sigma: tuple[float, float] = (0.0, 0.5)


def enable_elastic_deformation(transforms: BasicTransform, elastic: ElasticDeformation) -> SpatialTransform:
    """Switch on elastic deformation in the (single) SpatialTransform of nnU-Net's training pipeline, in place."""
    members = transforms.transforms if isinstance(transforms, ComposeTransforms) else [transforms]
    spatial = [t for t in members if isinstance(t, SpatialTransform)]
    if len(spatial) != 1:
        raise RuntimeError(f"expected one SpatialTransform in the training transforms, found {len(spatial)}")
    transform = spatial[0]
    transform.p_elastic_deform = elastic.probability
    transform.elastic_deform_scale = elastic.scale
    transform.elastic_deform_magnitude = ElasticMagnitude(*elastic.magnitude_per_sigma)
    return transform


CPU_BF16_VARIABLE = "nnUNet_cdl_cpu_bf16"


def cpu_bf16_requested(environ: Mapping[str, str], device: torch.device) -> bool:
    """Whether `nnUNet_cdl_cpu_bf16` asks for bf16 autocast on this CPU device; a `CdlError` when it cannot."""
    if not flag_from_env(environ, CPU_BF16_VARIABLE, False) or device.type != "cpu":
        return False
    if not cpu_supports_bf16():
        raise CdlError(f"{CPU_BF16_VARIABLE}=1, but this CPU has no native bfloat16 (avx512_bf16 / amx_bf16); "
                       f"unset it to train in float32")
    return True


def cap_cpu_threads(environ: Mapping[str, str]) -> int:
    """Limit torch's CPU threads to OMP_NUM_THREADS when set (nnUNetv2_train -device cpu takes every core)."""
    raw = environ.get("OMP_NUM_THREADS", "").strip()
    if raw.isdigit() and int(raw) > 0 and torch.get_num_threads() > int(raw):
        torch.set_num_threads(int(raw))
    return torch.get_num_threads()


class nnUNetTrainerLightUNet(nnUNetTrainer):
    """CDL-UNet protocol for the light 3D U-Net: elastic deformation on, no mirroring (train or test)."""

    schedule = TrainingSchedule(num_epochs=1000, num_iterations_per_epoch=250, num_val_iterations_per_epoch=50)
    elastic = ElasticDeformation()
    final_validation = True
    """Whether nnU-Net's final validation runs after training (`nnUNet_cdl_final_validation` overrides)."""

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        schedule = schedule_from_env(self.schedule, os.environ)
        self.num_epochs = schedule.num_epochs
        self.num_iterations_per_epoch = schedule.num_iterations_per_epoch
        self.num_val_iterations_per_epoch = schedule.num_val_iterations_per_epoch
        if schedule != self.schedule:
            self.print_to_log_file(f"schedule overridden by environment ({', '.join(SCHEDULE_VARIABLES.values())})")
        self.print_to_log_file(
            f"{self.__class__.__name__}: {schedule.num_epochs} epochs x {schedule.num_iterations_per_epoch} "
            f"iterations (validation {schedule.num_val_iterations_per_epoch}); elastic deformation "
            f"p={self.elastic.probability}; mirroring off"
        )
        if self.device.type == "cpu":
            threads = cap_cpu_threads(os.environ)
            self.print_to_log_file(
                f"CPU training: {threads} torch threads, {get_allowed_n_proc_DA()} data augmentation processes "
                "(nnUNet_n_proc_DA)"
            )
        self.cpu_bf16 = cpu_bf16_requested(os.environ, self.device)
        if self.cpu_bf16:
            self.print_to_log_file(f"bfloat16 autocast on CPU ({CPU_BF16_VARIABLE}=1)")
        self.max_num_epochs = self.num_epochs
        self.time_budget_s = time_budget_from_env(os.environ)
        if self.time_budget_s is not None:
            self.print_to_log_file(f"wall-clock budget {self.time_budget_s / 60:.1f} min ({TIME_BUDGET_VARIABLE}); "
                                   f"at most {self.max_num_epochs} epochs")
        self.final_validation = flag_from_env(os.environ, FINAL_VALIDATION_VARIABLE, type(self).final_validation)

    def initialize(self) -> None:
        """nnU-Net's, then the network weights of `nnUNet_cdl_initial_weights` when it is set."""
        super().initialize()
        path = os.environ.get(INITIAL_WEIGHTS_VARIABLE, "").strip()
        if path:
            count = load_network_weights(self.network, path)
            self.print_to_log_file(f"initial weights: all {count} network tensors, segmentation heads included, "
                                   f"from {path} ({INITIAL_WEIGHTS_VARIABLE})")

    def fit_epochs_to_budget(self) -> None:
        """Re-estimate `num_epochs` from the epochs logged so far and the wall-clock budget; the poly learning
        rate then decays to zero at the new end."""
        if self.time_budget_s is None:
            return
        costs = epoch_costs(self.logger.get_value("epoch_start_timestamps", step=None),
                            self.logger.get_value("epoch_end_timestamps", step=None), time.time())
        planned = epochs_within_budget(costs, self.time_budget_s, self.max_num_epochs)
        if planned != self.num_epochs:
            self.num_epochs = planned
            self.lr_scheduler.max_steps = planned
            self.print_to_log_file(f"budget: {sum(costs) / 60:.1f} of {self.time_budget_s / 60:.1f} min used, "
                                   f"training {planned} epochs in all")

    def run_training(self) -> None:
        """nnU-Net's training loop, with a `num_epochs` that `fit_epochs_to_budget` may change as it runs."""
        self.on_train_start()
        self.fit_epochs_to_budget()
        while self.current_epoch < self.num_epochs:
            self.on_epoch_start()
            self.on_train_epoch_start()
            train_outputs = [self.train_step(next(self.dataloader_train)) for _ in range(self.num_iterations_per_epoch)]
            self.on_train_epoch_end(train_outputs)
            with torch.no_grad():
                self.on_validation_epoch_start()
                val_outputs = [self.validation_step(next(self.dataloader_val))
                               for _ in range(self.num_val_iterations_per_epoch)]
                self.on_validation_epoch_end(val_outputs)
            self.on_epoch_end()
            self.fit_epochs_to_budget()
        self.on_train_end()

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        """nnU-Net's final validation, unless `final_validation` is off."""
        if not self.final_validation:
            self.print_to_log_file(f"final validation skipped ({type(self).__name__}.final_validation / "
                                   f"{FINAL_VALIDATION_VARIABLE})")
            return
        super().perform_actual_validation(save_probabilities)

    def _step_precision(self):
        """bfloat16 autocast when `cpu_bf16` is on, else nothing (nnU-Net's own CUDA autocast is untouched)."""
        return torch.autocast("cpu", dtype=torch.bfloat16) if self.cpu_bf16 else nullcontext()

    def train_step(self, batch: dict) -> dict:
        """nnU-Net's training step, under `_step_precision()`."""
        with self._step_precision():
            return super().train_step(batch)

    def validation_step(self, batch: dict) -> dict:
        """nnU-Net's validation step, under `_step_precision()`."""
        with self._step_precision():
            return super().validation_step(batch)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        """nnU-Net's rotation and dummy-2D settings without mirroring, for training and inference."""
        rotation_for_da, do_dummy_2d_data_aug, initial_patch_size, _ = (
            super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        )
        self.inference_allowed_mirroring_axes = None
        return rotation_for_da, do_dummy_2d_data_aug, initial_patch_size, None

    @classmethod
    def get_training_transforms(
        cls,
        patch_size: np.ndarray | tuple[int, ...],
        rotation_for_DA,
        deep_supervision_scales: list | tuple | None,
        mirror_axes: tuple[int, ...] | None,
        do_dummy_2d_data_aug: bool,
        use_mask_for_norm: list[bool] | None = None,
        is_cascaded: bool = False,
        foreground_labels: tuple[int, ...] | list[int] | None = None,
        regions: list | None = None,
        ignore_label: int | None = None,
    ) -> BasicTransform:
        """nnU-Net's training pipeline with elastic deformation switched on (`cls.elastic`)."""
        transforms = super().get_training_transforms(
            patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes, do_dummy_2d_data_aug,
            use_mask_for_norm=use_mask_for_norm, is_cascaded=is_cascaded, foreground_labels=foreground_labels,
            regions=regions, ignore_label=ignore_label,
        )
        enable_elastic_deformation(transforms, cls.elastic)
        return transforms


class nnUNetTrainerLightUNet_1epoch(nnUNetTrainerLightUNet):
    """Smoke test: 1 epoch of 4 training and 2 validation iterations, no final validation."""

    schedule = TrainingSchedule(num_epochs=1, num_iterations_per_epoch=4, num_val_iterations_per_epoch=2)
    final_validation = False


class nnUNetTrainerLightUNet_5epochs(nnUNetTrainerLightUNet):
    """Short CPU run: 5 epochs of 4 training and 2 validation iterations, no final validation."""

    schedule = TrainingSchedule(num_epochs=5, num_iterations_per_epoch=4, num_val_iterations_per_epoch=2)
    final_validation = False


class nnUNetTrainerLightUNet_50epochs(nnUNetTrainerLightUNet):
    """CPU experiment on phantoms: 50 epochs of 25 training and 5 validation iterations."""

    schedule = TrainingSchedule(num_epochs=50, num_iterations_per_epoch=25, num_val_iterations_per_epoch=5)
