"""Reading and writing CT volumes and label maps with their geometry, atomically.

Arrays are numpy in SimpleITK's (z, y, x) order; geometry is kept in ITK's (x, y, z) convention.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from nnunet_cdl.errors import CdlError
from nnunet_cdl.image_checks import check_image_file

NIFTI_ENDING = ".nii.gz"


@dataclass(frozen=True)
class Geometry:
    """Physical placement of a 3-D volume in ITK convention.

    spacing: (x, y, z) voxel size in mm; origin: (x, y, z) in mm; direction: 9 floats, row-major 3x3.
    """

    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        """Spacing in the numpy array's axis order (z, y, x), mm."""
        return (self.spacing[2], self.spacing[1], self.spacing[0])

    @classmethod
    def of(cls, image: sitk.Image) -> Geometry:
        return cls(tuple(image.GetSpacing()), tuple(image.GetOrigin()), tuple(image.GetDirection()))

    def apply(self, image: sitk.Image) -> sitk.Image:
        """Set this geometry on `image` (in place) and return it."""
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def matches(self, other: Geometry, tolerance: float = 1e-4) -> bool:
        """True when spacing, origin and direction agree within `tolerance` (relative for spacing, mm/abs else)."""
        spacing_ok = np.allclose(self.spacing, other.spacing, rtol=tolerance, atol=tolerance)
        origin_ok = np.allclose(self.origin, other.origin, rtol=0, atol=max(tolerance, 1e-3))
        direction_ok = np.allclose(self.direction, other.direction, rtol=0, atol=tolerance)
        return bool(spacing_ok and origin_ok and direction_ok)


@dataclass
class Volume:
    """A 3-D array (z, y, x) with its geometry."""

    array: np.ndarray
    geometry: Geometry


def read_volume(path: str | os.PathLike[str]) -> Volume:
    """Read a 3-D image; a clear `CdlError` names the file when it is missing, unreadable or not 3-D."""
    path = Path(path)
    check_image_file(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise CdlError(f"{path}: cannot read image ({first_line})") from exc
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise CdlError(
            f"{path}: expected a 3-D single-channel image, got {image.GetDimension()}-D with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s)"
        )
    if min(image.GetSpacing()) <= 0:
        raise CdlError(f"{path}: spacing {image.GetSpacing()} has a zero or negative value")
    return Volume(sitk.GetArrayFromImage(image), Geometry.of(image))


def read_geometry(path: str | os.PathLike[str]) -> tuple[tuple[int, int, int], Geometry]:
    """Array shape (z, y, x) and geometry of an image, read from its header only.

    A clear `CdlError` names the file when it is missing, unreadable, not 3-D, multi-component, or has a zero or
    negative spacing.
    """
    path = Path(path)
    if not path.is_file():
        raise CdlError(f"{path}: file not found")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        raise CdlError(f"{path}: cannot read image header ({lines[-1] if lines else 'unreadable'})") from exc
    size = reader.GetSize()
    if reader.GetDimension() != 3:
        raise CdlError(f"{path}: expected a 3-D image, got {reader.GetDimension()}-D of size {size}")
    if reader.GetNumberOfComponents() != 1:
        raise CdlError(f"{path}: expected one channel per file, got {reader.GetNumberOfComponents()} components")
    if min(reader.GetSpacing()) <= 0:
        raise CdlError(f"{path}: spacing {tuple(reader.GetSpacing())} has a zero or negative value")
    geometry = Geometry(tuple(reader.GetSpacing()), tuple(reader.GetOrigin()), tuple(reader.GetDirection()))
    return (size[2], size[1], size[0]), geometry


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """Permission bits of a new output file: 0666 less the umask (what `open` would give)."""
    return 0o666 & ~_current_umask()


def new_directory_mode() -> int:
    """Permission bits of a new output folder: 0777 less the umask (what `mkdir` would give)."""
    return 0o777 & ~_current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto `path`, on error remove it.

    The result gets the umask's permission bits, or the replaced file's own bits when `path` existed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else new_file_mode()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _force_rmtree(path: Path) -> None:
    """Remove a folder tree of our own making, read-only subfolders included (their write bit is set first)."""

    def make_writable_and_retry(function, failed_path, _exc_info) -> None:
        parent = Path(failed_path).parent
        os.chmod(parent, stat.S_IMODE(parent.stat().st_mode) | stat.S_IWUSR | stat.S_IXUSR)
        if Path(failed_path).is_dir() and not Path(failed_path).is_symlink():
            os.chmod(failed_path, stat.S_IMODE(os.stat(failed_path).st_mode) | stat.S_IWUSR | stat.S_IXUSR)
        function(failed_path)

    shutil.rmtree(path, onerror=make_writable_and_retry)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; on success it replaces `path`, on error it is removed.

    Raises `CdlError` when `path` exists and `overwrite` is False, so a failed run leaves no partial output.
    An existing `path` is renamed aside first and deleted only once the new folder is in place; if the swap
    fails it is renamed back, so the original is never lost. The new folder gets the umask's permission bits, or
    the replaced folder's own bits.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise CdlError(f"{path}: already exists; remove it or pass --overwrite")
    if path.exists() and not path.is_dir():
        raise CdlError(f"{path}: exists and is not a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise CdlError(f"{path.parent}: folder is not writable, cannot write {path.name} there")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        replacing = path.is_dir()
        os.chmod(tmp, stat.S_IMODE(path.stat().st_mode) if replacing else new_directory_mode())
        if not replacing:
            os.replace(tmp, path)
            return
        backup = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
        os.rmdir(backup)
        os.replace(path, backup)
        try:
            os.replace(tmp, path)
        except BaseException:
            os.replace(backup, path)
            raise
    except BaseException:
        _force_rmtree(tmp)
        raise
    try:
        _force_rmtree(backup)
    except OSError as exc:
        warnings.warn(f"{path} was replaced, but its previous content could not be removed from {backup}: {exc}",
                      stacklevel=3)


def write_volume(
    path: str | os.PathLike[str], array: np.ndarray, geometry: Geometry, compress: bool = True
) -> None:
    """Write a (z, y, x) array with `geometry` atomically (temporary file, then rename)."""
    image = geometry.apply(sitk.GetImageFromArray(array))
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=compress)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON atomically, indented, keys in insertion order."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file; a clear `CdlError` names the file when it is missing or invalid."""
    path = Path(path)
    if not path.is_file():
        raise CdlError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CdlError(f"{path}: not valid JSON ({exc})") from exc


def read_json_object(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """`read_json` of a file that must hold a JSON object (`what` names it in the error)."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise CdlError(f"{path}: {what} must be a JSON object")
    return data


def case_id_from_label_file(path: Path, file_ending: str = NIFTI_ENDING) -> str:
    """`Case_0001.nii.gz` -> `Case_0001`."""
    return path.name[: -len(file_ending)]


def case_id_from_image_file(path: Path, file_ending: str = NIFTI_ENDING) -> str:
    """nnU-Net image naming: `Case_0001_0000.nii.gz` -> `Case_0001`."""
    stem = path.name[: -len(file_ending)]
    if len(stem) < 6 or stem[-5] != "_" or not stem[-4:].isdigit():
        raise CdlError(f"{path}: not named like an nnU-Net image (CASE_XXXX{file_ending}, XXXX the channel)")
    return stem[:-5]


def list_label_files(folder: str | os.PathLike[str], file_ending: str = NIFTI_ENDING) -> dict[str, Path]:
    """Case id -> label file for every `*{file_ending}` in `folder` (nnU-Net labelsTr naming), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CdlError(f"{folder}: folder not found")
    return {case_id_from_label_file(p, file_ending): p for p in sorted(folder.glob(f"*{file_ending}"))}


def list_image_files(folder: str | os.PathLike[str], file_ending: str = NIFTI_ENDING) -> dict[str, Path]:
    """Case id -> channel-0 image (`CASE_0000{file_ending}`) for every case in `folder`, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CdlError(f"{folder}: folder not found")
    return {case_id_from_image_file(p, file_ending): p for p in sorted(folder.glob(f"*_0000{file_ending}"))}
