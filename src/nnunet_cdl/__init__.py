"""nnunet-cdl: nnU-Net v2 extension for abdominal CT organ segmentation (CDL-UNet, Swin-X Seg)."""

__version__ = "0.1.0"
