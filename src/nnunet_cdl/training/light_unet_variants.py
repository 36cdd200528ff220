"""CPU-budget variants of `nnUNetTrainerLightUNet`, in nnU-Net's trainer-variant style: one override each, named
for what it changes. `nnUNetTrainerLightUNet` itself stays the paper's protocol (SGD 0.01, 2500 epochs on a GPU).

Why they exist: the paper trains for 2500 epochs of 250 iterations; a 2-hour run on 2 CPU cores gives about 1500
iterations, where SGD with momentum 0.99 first collapses to background and then learns the organs one after
another, the liver first (docs/light_unet.md, "Why the light U-Net learned only the liver"). Adam reaches the
smaller organs in far fewer iterations, which is what a wall-clock budget needs.
"""

from __future__ import annotations

import torch
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

from nnunet_cdl.training.light_unet import nnUNetTrainerLightUNet


class nnUNetTrainerLightUNet_Adam1en3(nnUNetTrainerLightUNet):
    """AdamW (lr 1e-3, nnU-Net's weight decay 3e-5) with nnU-Net's poly decay instead of SGD 0.01.

    Like nnU-Net's `nnUNetTrainerAdam1en3`, without AMSGrad (which slows the first thousand steps). The wall-clock
    budget re-targets the poly decay as for the default trainer.
    """

    adam_lr = 1e-3
    """Initial learning rate of AdamW (nnU-Net's `initial_lr`, which the poly decay starts from)."""

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = self.adam_lr

    def configure_optimizers(self) -> tuple[torch.optim.Optimizer, PolyLRScheduler]:
        optimizer = torch.optim.AdamW(self.network.parameters(), lr=self.initial_lr, weight_decay=self.weight_decay)
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)


class nnUNetTrainerLightUNet_Adam3en4(nnUNetTrainerLightUNet_Adam1en3):
    """`nnUNetTrainerLightUNet_Adam1en3` starting at lr 3e-4: for continuing a trained model (`--continue-from`).

    A continued run restarts the poly decay; at 1e-3 the first epochs undo part of what the earlier run had learnt
    (docs/light_unet.md, run 6), a third of that step size refines it instead.
    """

    adam_lr = 3e-4
