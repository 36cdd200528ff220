from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_cdl.errors import CdlError
from nnunet_cdl.io import (
    Geometry,
    atomic_directory,
    case_id_from_image_file,
    list_image_files,
    read_volume,
    write_volume,
)

GEOMETRY = Geometry((0.8, 0.7, 2.5), (-10.0, 20.0, 30.0), (-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0))


def test_write_read_roundtrip_keeps_geometry(tmp_path: Path) -> None:
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    write_volume(tmp_path / "a.nii.gz", array, GEOMETRY)
    volume = read_volume(tmp_path / "a.nii.gz")
    np.testing.assert_array_equal(volume.array, array)
    assert volume.geometry.matches(GEOMETRY)
    assert volume.geometry.spacing_zyx == pytest.approx((2.5, 0.7, 0.8))
    assert not list(tmp_path.glob(".*")), "no temporary file may stay behind"


def test_read_rejects_2d_and_missing(tmp_path: Path) -> None:
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 5), np.int16)), str(tmp_path / "flat.nii.gz"))
    with pytest.raises(CdlError, match="flat.nii.gz.*3-D"):
        read_volume(tmp_path / "flat.nii.gz")
    with pytest.raises(CdlError, match="not found"):
        read_volume(tmp_path / "missing.nii.gz")
    (tmp_path / "junk.nii.gz").write_bytes(b"not an image")
    with pytest.raises(CdlError, match="junk.nii.gz"):
        read_volume(tmp_path / "junk.nii.gz")


def test_atomic_directory_leaves_nothing_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "partial.txt").write_text("x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_directory(target) as tmp:
        (tmp / "done.txt").write_text("x")
    assert (target / "done.txt").is_file()
    with pytest.raises(CdlError, match="already exists"):
        with atomic_directory(target):
            pass


def test_case_ids(tmp_path: Path) -> None:
    assert case_id_from_image_file(Path("Case_0001_0000.nii.gz")) == "Case_0001"
    with pytest.raises(CdlError, match="nnU-Net image"):
        case_id_from_image_file(Path("Case.nii.gz"))
    (tmp_path / "B_0000.nii.gz").touch()
    (tmp_path / "A_0000.nii.gz").touch()
    assert list(list_image_files(tmp_path)) == ["A", "B"]
