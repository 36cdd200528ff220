"""nnU-Net trainers for Swin-X Seg (plans `nnUNetPlansSwinXSeg` from `SwinXSegPlanner`).

Protocol of the paper (Table 2, section 3.2): AdamW with lr 2e-4, a linear warm-up followed by cosine annealing,
Dice + cross-entropy, random 3D flips as the only augmentation, half of the patches centred on foreground
(the paper samples 2 positive and 2 negative 96^3 patches per scan), no deep supervision, batch size from the
plans. Sliding-window inference without test-time mirroring, as in the paper (`inference_allowed_mirroring_axes`
None, saved in the checkpoint and honoured by the stock predictor; nothing stops `nnUNetv2_predict` users from
enabling it in a subclass). The network is rebuilt from the plans' `architecture` section by nnU-Net itself.

Length of training: `schedule` per class, overridable with the environment variables of the light U-Net trainers
(`nnUNet_cdl_num_epochs`, ...). Pretrained weights from `nnunet-cdl swinxseg-pretrain` load with the stock
`nnUNetv2_train ... -pretrained_weights FILE`.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTansform
from batchgeneratorsv2.transforms.utils.seg_to_regions import ConvertSegmentationToRegionsTransform
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch.optim.lr_scheduler import _LRScheduler

from nnunet_cdl.training.light_unet import SCHEDULE_VARIABLES, TrainingSchedule, cap_cpu_threads, schedule_from_env

FLIP_AXES = (0, 1, 2)
WARMUP_FRACTION = 0.05


def warmup_cosine_lr(step: int, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float = 0.0) -> float:
    """Learning rate at `step` (0-based): linear rise to `base_lr` over `warmup_steps`, then cosine to `min_lr`."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def warmup_epochs_for(num_epochs: int, fraction: float = WARMUP_FRACTION) -> int:
    """Warm-up length: `fraction` of the training, at least one epoch."""
    return max(1, round(fraction * num_epochs))


class WarmupCosineLRScheduler(_LRScheduler):
    """Per-epoch scheduler with nnU-Net's `step(current_epoch)` interface (see `warmup_cosine_lr`)."""

    def __init__(self, optimizer: torch.optim.Optimizer, initial_lr: float, max_steps: int, warmup_steps: int,
                 min_lr: float = 0.0) -> None:
        self.initial_lr, self.max_steps, self.warmup_steps, self.min_lr = initial_lr, max_steps, warmup_steps, min_lr
        self.ctr = 0
        super().__init__(optimizer, -1)

    def get_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def step(self, current_step: int | None = None) -> None:  # type: ignore[override]
        if current_step is None or current_step == -1:
            current_step = self.ctr
            self.ctr += 1
        lr = warmup_cosine_lr(current_step, self.max_steps, self.warmup_steps, self.initial_lr, self.min_lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._last_lr = [lr] * len(self.optimizer.param_groups)


def flip_only_transforms(mirror_axes: tuple[int, ...] | None, regions: list | None = None,
                         ignore_label: int | None = None) -> ComposeTransforms:
    """Random flips, then nnU-Net's label clean-up (-1 padding -> 0) and optional region conversion."""
    transforms: list[BasicTransform] = []
    if mirror_axes:
        transforms.append(MirrorTransform(allowed_axes=tuple(mirror_axes)))
    transforms.append(RemoveLabelTansform(-1, 0))
    if regions is not None:
        transforms.append(ConvertSegmentationToRegionsTransform(
            regions=list(regions) + [ignore_label] if ignore_label is not None else regions, channel_in_seg=0))
    return ComposeTransforms(transforms)


class nnUNetTrainerSwinXSeg(nnUNetTrainer):
    """Swin-X Seg protocol: AdamW 2e-4, warm-up + cosine, Dice + CE, flips only, 50 % foreground patches."""

    schedule = TrainingSchedule(num_epochs=1000, num_iterations_per_epoch=250, num_val_iterations_per_epoch=50)
    initial_lr_value = 2e-4
    weight_decay_value = 1e-5

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        schedule = schedule_from_env(self.schedule, os.environ)
        self.num_epochs = schedule.num_epochs
        self.num_iterations_per_epoch = schedule.num_iterations_per_epoch
        self.num_val_iterations_per_epoch = schedule.num_val_iterations_per_epoch
        self.initial_lr = self.initial_lr_value
        self.weight_decay = self.weight_decay_value
        self.oversample_foreground_percent = 0.5
        self.enable_deep_supervision = False
        self.warmup_epochs = warmup_epochs_for(self.num_epochs)
        if schedule != self.schedule:
            self.print_to_log_file(f"schedule overridden by environment ({', '.join(SCHEDULE_VARIABLES.values())})")
        self.print_to_log_file(
            f"{self.__class__.__name__}: {self.num_epochs} epochs x {self.num_iterations_per_epoch} iterations "
            f"(validation {self.num_val_iterations_per_epoch}), AdamW lr {self.initial_lr}, {self.warmup_epochs} "
            "warm-up epochs then cosine; flips only; 50 % foreground patches; no deep supervision")
        if self.device.type == "cpu":
            self.print_to_log_file(f"CPU training: {cap_cpu_threads(os.environ)} torch threads")

    def configure_optimizers(self) -> tuple[torch.optim.Optimizer, WarmupCosineLRScheduler]:
        optimizer = torch.optim.AdamW(self.network.parameters(), lr=self.initial_lr, weight_decay=self.weight_decay)
        return optimizer, WarmupCosineLRScheduler(optimizer, self.initial_lr, self.num_epochs, self.warmup_epochs)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(
            self) -> tuple[None, bool, tuple[int, ...], tuple[int, ...]]:
        """No rotation or scaling: the loader cuts patches of the final size; flips on all axes in training."""
        self.inference_allowed_mirroring_axes = None
        return None, False, tuple(self.configuration_manager.patch_size), FLIP_AXES

    @staticmethod
    def get_training_transforms(patch_size: np.ndarray | tuple[int, ...], rotation_for_DA: object,
                                deep_supervision_scales: list | tuple | None, mirror_axes: tuple[int, ...] | None,
                                do_dummy_2d_data_aug: bool, use_mask_for_norm: list[bool] | None = None,
                                is_cascaded: bool = False, foreground_labels: tuple[int, ...] | list[int] | None = None,
                                regions: list | None = None, ignore_label: int | None = None) -> BasicTransform:
        """Random flips only (the paper's augmentation); no deep-supervision targets."""
        return flip_only_transforms(mirror_axes, regions, ignore_label)

    def set_deep_supervision_enabled(self, enabled: bool) -> None:
        """Swin-X Seg has a single output; nothing to switch."""


class nnUNetTrainerSwinXSeg_1epoch(nnUNetTrainerSwinXSeg):
    """Smoke test on CPU: 1 epoch of 1 training and 1 validation iteration."""

    schedule = TrainingSchedule(num_epochs=1, num_iterations_per_epoch=1, num_val_iterations_per_epoch=1)


class nnUNetTrainerSwinXSeg_5epochs(nnUNetTrainerSwinXSeg):
    """Short CPU run: 5 epochs of 4 training and 2 validation iterations."""

    schedule = TrainingSchedule(num_epochs=5, num_iterations_per_epoch=4, num_val_iterations_per_epoch=2)


class nnUNetTrainerSwinXSeg_100epochs(nnUNetTrainerSwinXSeg):
    """The paper's 100 epochs (of nnU-Net's 250 iterations each)."""

    schedule = TrainingSchedule(num_epochs=100, num_iterations_per_epoch=250, num_val_iterations_per_epoch=50)
