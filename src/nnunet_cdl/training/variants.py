"""Light U-Net trainer variants in nnU-Net's variant style: each changes one thing and is named for it.

`nnUNetTrainerLightUNet` stays the paper's protocol; these are for short CPU budgets (docs/light_unet.md says what
each one was measured to do).
"""

from __future__ import annotations

from nnunetv2.training.nnUNetTrainer.variants.loss.nnUNetTrainerTopkLoss import nnUNetTrainerDiceTopK10Loss

from nnunet_cdl.training.light_unet import nnUNetTrainerLightUNet


class nnUNetTrainerLightUNet_DiceTopK10Loss(nnUNetTrainerLightUNet):
    """The light U-Net protocol with nnU-Net's Dice + top-10 % cross-entropy loss (`nnUNetTrainerDiceTopK10Loss`):
    the cross-entropy is averaged over the 10 % hardest voxels only, so the many misclassified voxels of small
    organs are not outweighed by the easy background and liver voxels early in training."""

    def _build_loss(self):
        return nnUNetTrainerDiceTopK10Loss._build_loss(self)
