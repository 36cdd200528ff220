"""Input checks per case: each image file must be a readable 3-D single-channel image with positive spacing."""

from __future__ import annotations

import os
from pathlib import Path

import SimpleITK as sitk

from nnunet_cdl.errors import CdlError


def check_image_file(path: str | os.PathLike[str]) -> None:
    """Raise `CdlError` naming `path` when it is missing, unreadable, not 3-D, multi-component, or has a zero
    or negative spacing (header only; formats SimpleITK cannot read are left to nnU-Net's reader)."""
    path = Path(path)
    if not path.is_file():
        raise CdlError(f"{path}: file not found")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise CdlError(f"{path}: cannot read image header ({_last_line(exc)})") from exc
    dimension = reader.GetDimension()
    size = reader.GetSize()
    if dimension != 3:
        raise CdlError(f"{path}: expected a 3-D image, got {dimension}-D of size {size}")
    if reader.GetNumberOfComponents() != 1:
        raise CdlError(f"{path}: expected one channel per file, got {reader.GetNumberOfComponents()} components")
    spacing = reader.GetSpacing()
    if min(spacing[:3]) <= 0:
        raise CdlError(f"{path}: spacing {tuple(spacing)} has a zero or negative value")


def _last_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else "unreadable"
