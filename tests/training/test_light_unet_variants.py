"""CPU-budget variants of the light U-Net trainer: each changes one thing and keeps the rest of the protocol."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

from nnunet_cdl.training.light_unet import nnUNetTrainerLightUNet
from nnunet_cdl.training.light_unet_variants import nnUNetTrainerLightUNet_Adam1en3
from tests.training.test_light_unet_trainer import LABELS, plans_from_preset


@pytest.fixture
def adam_trainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> nnUNetTrainerLightUNet_Adam1en3:
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "preprocessed"))
    plans = {**plans_from_preset(), "continue_training": False}
    dataset_json = {"labels": LABELS, "channel_names": {"0": "CT"}, "file_ending": ".nii.gz"}
    return nnUNetTrainerLightUNet_Adam1en3(plans, "3d_fullres", 0, dataset_json, device=torch.device("cpu"))


def test_adam_variant_changes_only_the_optimizer(adam_trainer: nnUNetTrainerLightUNet_Adam1en3) -> None:
    t = adam_trainer
    assert isinstance(t, nnUNetTrainerLightUNet)
    assert (t.num_epochs, t.num_iterations_per_epoch) == (1000, 250)
    _, _, _, mirror_axes = t.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert mirror_axes is None
    t.network = t.build_network_architecture(t.plans_manager, t.configuration_manager, 1,
                                             t.label_manager.num_segmentation_heads, True)
    optimizer, scheduler = t.configure_optimizers()
    group = optimizer.param_groups[0]
    assert type(optimizer) is torch.optim.AdamW
    assert (group["lr"], group["weight_decay"], group["amsgrad"]) == (1e-3, 3e-5, False)
    assert isinstance(scheduler, PolyLRScheduler) and scheduler.max_steps == t.num_epochs
    scheduler.max_steps = 10
    scheduler.step(5)
    assert group["lr"] == pytest.approx(1e-3 * 0.5 ** 0.9)


def test_nnunet_trainer_folder_exposes_the_variant() -> None:
    from nnunet_cdl.nnunet_env import our_trainer_names

    assert "nnUNetTrainerLightUNet_Adam1en3" in our_trainer_names()


def test_fine_tuning_variant_changes_only_the_starting_lr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nnunet_cdl.nnunet_env import our_trainer_names
    from nnunet_cdl.training.light_unet_variants import nnUNetTrainerLightUNet_Adam3en4

    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "preprocessed"))
    plans = {**plans_from_preset(), "continue_training": False}
    dataset_json = {"labels": LABELS, "channel_names": {"0": "CT"}, "file_ending": ".nii.gz"}
    t = nnUNetTrainerLightUNet_Adam3en4(plans, "3d_fullres", 0, dataset_json, device=torch.device("cpu"))
    t.network = t.build_network_architecture(t.plans_manager, t.configuration_manager, 1,
                                             t.label_manager.num_segmentation_heads, True)
    optimizer, scheduler = t.configure_optimizers()
    assert type(optimizer) is torch.optim.AdamW
    assert (optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["weight_decay"]) == (3e-4, 3e-5)
    assert isinstance(scheduler, PolyLRScheduler) and scheduler.initial_lr == 3e-4
    assert "nnUNetTrainerLightUNet_Adam3en4" in our_trainer_names()
