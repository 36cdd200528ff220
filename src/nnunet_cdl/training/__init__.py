"""nnU-Net trainers of nnunet-cdl.

Stock nnU-Net commands find them through `nnUNet_extTrainer` (see `nnunet_cdl.nnunet_env`), which lists the folder
`training/nnunet_ext/`: its single re-export file imports every trainer from its canonical module here, so the
classes nnU-Net returns are the real (picklable) ones. Add a trainer there with one import line.
"""
