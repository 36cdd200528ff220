"""Checks that an image file is whole and plausible before anyone reads it (used by `nnunet_cdl.io` and the
predictor): truncated NIfTI, zero voxel sizes, NaN voxels, shapes and voxel sizes no CT has, non-CT values."""

from __future__ import annotations

import gzip
import logging
import os
import zlib
from pathlib import Path

import numpy as np

from nnunet_cdl.errors import CdlError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
MAX_AXIS_VOXELS = 4096
MAX_VOXELS = 2**31
MIN_PLANE_VOXELS = 16
SPACING_RANGE_MM = (0.05, 50.0)
MAX_EXTENT_MM = 2500.0
SIZE_LIMITS_HINT = "pass --allow-any-size to process it anyway"


def _gzip_payload_size(path: Path) -> int:
    """Uncompressed size of a gzip file, streamed; `CdlError` when the stream is cut short or corrupt."""
    total = 0
    try:
        with gzip.open(path, "rb") as handle:
            while block := handle.read(1 << 24):
                total += len(block)
    except (EOFError, OSError, zlib.error) as exc:
        raise CdlError(f"{path}: truncated or corrupt gzip data ({exc}); the file is incomplete") from exc
    return total


def check_image_file(path: str | os.PathLike[str]) -> None:
    """Refuse a NIfTI file that cannot be a whole image: voxel data shorter than its header says (a cut
    download or copy, which SimpleITK would silently fill with zeros), a zero, negative or non-finite voxel size
    in the header (which ITK silently reads as 1 mm), or NaN / infinite voxels in floating-point data (ITK reads NaN
    as 0). Other formats pass (ITK reads their size strictly).

    Cost: the header, plus the gzip trailer (4 bytes); the whole stream is decompressed only when the trailer
    disagrees (a multi-member gzip such as bgzip's, or a damaged file) and for floating-point data.
    """
    path = Path(path)
    if not path.is_file():
        raise CdlError(f"{path}: file not found")
    if not path.name.endswith(NIFTI_SUFFIXES):
        return
    import nibabel

    opener = gzip.open if path.name.endswith(".gz") else open
    quiet = logging.getLogger("nibabel.global")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # nibabel logs header fixes (a zero pixdim) that we report as errors ourselves
    try:
        image = nibabel.load(path)
        shape, dtype, offset = image.dataobj.shape, image.dataobj.dtype, int(image.dataobj.offset)
        with opener(path, "rb") as handle:  # the header as stored: nibabel.load replaces a zero pixdim by 1
            stored = type(image.header).from_fileobj(handle, check=False)
        zooms = [float(z) for z in stored["pixdim"][1 : 1 + len(shape)]]
    except Exception as exc:  # nibabel raises assorted errors on damaged headers
        raise CdlError(f"{path}: cannot read NIfTI header ({type(exc).__name__}: {exc})") from exc
    finally:
        quiet.setLevel(level)
    if not all(np.isfinite(z) and z > 0 for z in zooms[:3]):
        raise CdlError(f"{path}: voxel size {tuple(round(z, 6) for z in zooms[:3])} mm in the header has a zero, "
                       "negative or non-finite value (ITK would silently read it as 1 mm); fix the header's pixdim")
    expected = offset + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if path.name.endswith(".gz"):
        with path.open("rb") as handle:
            handle.seek(-4, os.SEEK_END)
            trailer = int.from_bytes(handle.read(4), "little")
        actual = expected if trailer == expected % 2**32 else _gzip_payload_size(path)
    else:
        actual = path.stat().st_size
    if actual < expected:
        raise CdlError(f"{path}: truncated: holds {actual} bytes of header and voxel data, its header needs "
                       f"{expected} ({'x'.join(map(str, shape))} voxels of {np.dtype(dtype).name})")
    if np.issubdtype(dtype, np.floating):
        bad = _count_non_finite(path, opener, offset, np.dtype(dtype), int(np.prod(shape, dtype=np.int64)))
        if bad:
            raise CdlError(f"{path}: {bad} voxels are NaN or infinite (ITK would silently read NaN as 0)")


def _count_non_finite(path: Path, opener, offset: int, dtype: np.dtype, count: int) -> int:
    """NaN and infinite values among the `count` voxels of `dtype` stored from byte `offset`, streamed in blocks."""
    bad, left = 0, count
    block = max(1, (1 << 24) // dtype.itemsize)
    with opener(path, "rb") as handle:
        handle.seek(offset)
        while left > 0:
            values = np.frombuffer(handle.read(min(block, left) * dtype.itemsize), dtype=dtype)
            if values.size == 0:
                break
            bad += int(values.size - np.count_nonzero(np.isfinite(values)))
            left -= values.size
    return bad


def check_image_size(path: str | os.PathLike[str], shape_zyx: tuple[int, ...], spacing_zyx: tuple[float, ...]) -> None:
    """Refuse a shape or voxel size that cannot be a CT scan (limits in this module; `SIZE_LIMITS_HINT`)."""
    low, high = SPACING_RANGE_MM
    if any(not low <= s <= high for s in spacing_zyx):
        raise CdlError(f"{path}: voxel size {tuple(round(s, 4) for s in spacing_zyx)} mm (z, y, x) is outside "
                       f"{low}-{high} mm; {SIZE_LIMITS_HINT}")
    if max(shape_zyx) > MAX_AXIS_VOXELS or int(np.prod(shape_zyx, dtype=np.int64)) > MAX_VOXELS:
        raise CdlError(f"{path}: {'x'.join(map(str, shape_zyx))} voxels exceeds the limit of {MAX_AXIS_VOXELS} per "
                       f"axis and {MAX_VOXELS} in all; {SIZE_LIMITS_HINT}")
    if sorted(shape_zyx)[-2] < MIN_PLANE_VOXELS:
        raise CdlError(f"{path}: {'x'.join(map(str, shape_zyx))} voxels: a CT needs at least two axes of "
                       f"{MIN_PLANE_VOXELS} voxels or more; {SIZE_LIMITS_HINT}")
    extent = [n * s for n, s in zip(shape_zyx, spacing_zyx)]
    if max(extent) > MAX_EXTENT_MM:
        raise CdlError(f"{path}: extent {tuple(round(e) for e in extent)} mm exceeds {MAX_EXTENT_MM:.0f} mm; "
                       f"{SIZE_LIMITS_HINT}")


def ct_value_problems(array: np.ndarray) -> tuple[str | None, list[str]]:
    """(error, warnings) about the values of an image given as a CT, HU.

    Errors: non-finite values, a constant image. Warnings: integer values that look like a label map (few
    distinct values, all in 0..255), or unscaled stored values (nothing below 0 HU while air is about -1000).
    """
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        return f"{bad} of {array.size} voxels are NaN or infinite", []
    low, high = float(array.min()), float(array.max())
    if low == high:
        return f"every voxel has the same value ({low:g}): not a CT", []
    warnings_found = []
    sample = array[:: max(1, array.shape[0] // 8)]  # a few slices: readers hand over integers as floats
    if low >= 0 and high <= 255 and np.array_equal(sample, np.round(sample)):
        if np.unique(sample).size <= 64:
            warnings_found.append(f"values {low:g}..{high:g} with few distinct levels look like a label map, not HU")
    elif low >= 0 and high > 2000:
        warnings_found.append(f"values {low:g}..{high:g} with nothing below 0 look like unscaled scanner values, "
                              "not HU (rescale slope/intercept not applied?)")
    return None, warnings_found
