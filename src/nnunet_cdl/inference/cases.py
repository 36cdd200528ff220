"""Input checks per case: each image file must be a readable 3-D single-channel image with positive spacing."""

from __future__ import annotations

import os

from nnunet_cdl.io import read_geometry


def check_image_file(path: str | os.PathLike[str]) -> None:
    """Raise `CdlError` naming `path` when it is missing, unreadable, not 3-D, multi-component, or has a zero
    or negative spacing (header only; formats SimpleITK cannot read are left to nnU-Net's reader)."""
    read_geometry(path)
