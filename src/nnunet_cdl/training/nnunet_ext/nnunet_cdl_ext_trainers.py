"""Re-exports nnunet-cdl's trainers for nnU-Net's `nnUNet_extTrainer` lookup (see nnunet_cdl.nnunet_env).

nnU-Net imports every .py file of this folder as a top-level module: keep this the only file, use absolute imports
only, and add one import line per trainer module.
"""

from nnunet_cdl.training.light_unet import (  # noqa: F401
    nnUNetTrainerLightUNet,
    nnUNetTrainerLightUNet_1epoch,
    nnUNetTrainerLightUNet_5epochs,
    nnUNetTrainerLightUNet_50epochs,
)
from nnunet_cdl.training.light_unet_variants import nnUNetTrainerLightUNet_Adam1en3, nnUNetTrainerLightUNet_Adam3en4  # noqa: F401,E501
from nnunet_cdl.training.curriculum import nnUNetTrainerCDL, nnUNetTrainerCDL_5epochs, nnUNetTrainerCDL_50epochs  # noqa: F401
from nnunet_cdl.training.swinxseg import nnUNetTrainerSwinXSeg, nnUNetTrainerSwinXSeg_1epoch, nnUNetTrainerSwinXSeg_5epochs, nnUNetTrainerSwinXSeg_100epochs  # noqa: F401,E501
