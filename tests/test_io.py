import gzip
import os
import shutil
import stat
from pathlib import Path

import nibabel
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
from nnunet_cdl.image_checks import check_image_file, check_image_size, ct_value_problems
from tests.conftest import give_to_unprivileged, run_unprivileged, shared_tmp

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


def test_outputs_get_the_umask_modes_and_replacements_keep_theirs(tmp_path: Path) -> None:
    old_mask = os.umask(0o027)
    try:
        with atomic_directory(tmp_path / "new") as tmp:
            write_volume(tmp / "a.nii.gz", np.zeros((2, 2, 2), np.uint8), GEOMETRY)
        assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o750
        assert stat.S_IMODE((tmp_path / "new" / "a.nii.gz").stat().st_mode) == 0o640
        os.chmod(tmp_path / "new", 0o700)
        os.chmod(tmp_path / "new" / "a.nii.gz", 0o600)
        with atomic_directory(tmp_path / "new", overwrite=True) as tmp:
            (tmp / "b.txt").write_text("b")
        assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
        write_volume(tmp_path / "c.nii.gz", np.zeros((2, 2, 2), np.uint8), GEOMETRY)
        os.chmod(tmp_path / "c.nii.gz", 0o604)
        write_volume(tmp_path / "c.nii.gz", np.ones((2, 2, 2), np.uint8), GEOMETRY)
        assert stat.S_IMODE((tmp_path / "c.nii.gz").stat().st_mode) == 0o604
    finally:
        os.umask(old_mask)


def test_failed_swap_restores_the_original(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("original")
    real_replace = os.replace
    calls: list[tuple[str, str]] = []

    def replace_failing_on_the_new_folder(src, dst) -> None:
        calls.append((str(src), str(dst)))
        if Path(dst) == target and Path(src).name.startswith(".out.") and ".old." not in Path(src).name:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_failing_on_the_new_folder)
    with pytest.raises(OSError, match="disk full"):
        with atomic_directory(target, overwrite=True) as tmp:
            (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"] and (target / "keep.txt").read_text() == "original"
    assert len(calls) == 3, calls  # aside, new in place (failed), back


def _replace_folder_with_read_only_subfolder(parent: Path) -> int:
    with atomic_directory(parent / "labels", overwrite=True) as tmp:
        shutil.copytree(parent / "labels" / "locked", tmp / "locked")
        (tmp / "a.txt").write_text("new")
    return 0


def test_replacing_a_folder_with_a_read_only_subfolder_as_a_normal_user(tmp_path: Path) -> None:
    root = shared_tmp(tmp_path)
    labels = root / "labels"
    (labels / "locked").mkdir(parents=True)
    (labels / "locked" / "x.txt").write_text("x")
    (labels / "a.txt").write_text("old")
    os.chmod(labels / "locked", 0o555)
    give_to_unprivileged(labels)
    assert run_unprivileged(_replace_folder_with_read_only_subfolder, root) == 0
    assert sorted(p.name for p in root.iterdir()) == ["labels"], "no backup or temporary folder may stay behind"
    assert (labels / "a.txt").read_text() == "new" and (labels / "locked" / "x.txt").read_text() == "x"
    assert stat.S_IMODE((labels / "locked").stat().st_mode) == 0o555


def test_truncated_and_damaged_nifti_files_are_refused(tmp_path: Path) -> None:
    array = np.random.default_rng(0).integers(-1000, 1000, (20, 30, 40)).astype(np.int16)
    write_volume(tmp_path / "whole.nii.gz", array, GEOMETRY)
    check_image_file(tmp_path / "whole.nii.gz")
    data = (tmp_path / "whole.nii.gz").read_bytes()
    for name, cut in (("half", len(data) // 2), ("tail", len(data) - 8)):
        (tmp_path / f"{name}.nii.gz").write_bytes(data[:cut])
        with pytest.raises(CdlError, match=f"{name}.nii.gz: truncated"):
            read_volume(tmp_path / f"{name}.nii.gz")
    raw = gzip.decompress(data)
    (tmp_path / "plain.nii").write_bytes(raw)
    check_image_file(tmp_path / "plain.nii")
    (tmp_path / "short.nii").write_bytes(raw[:-100])
    with pytest.raises(CdlError, match="short.nii: truncated"):
        check_image_file(tmp_path / "short.nii")
    (tmp_path / "blocks.nii.gz").write_bytes(gzip.compress(raw[:5000]) + gzip.compress(raw[5000:]))
    check_image_file(tmp_path / "blocks.nii.gz")  # multi-member gzip (bgzip): the trailer disagrees, the data is whole
    zeroed = bytearray(raw)
    zeroed[84:88] = np.float32(0).tobytes()  # pixdim[2]: y voxel size
    (tmp_path / "zero.nii.gz").write_bytes(gzip.compress(bytes(zeroed)))
    with pytest.raises(CdlError, match=r"zero.nii.gz: voxel size \(0.8, 0.0, 2.5\)"):
        read_volume(tmp_path / "zero.nii.gz")


def test_non_finite_float_voxels_are_refused_although_itk_reads_them_as_zero(tmp_path: Path) -> None:
    values = np.zeros((8, 9, 10), np.float32)
    values[1, 2, 3], values[4, 5, 6] = np.nan, -np.inf
    nibabel.save(nibabel.Nifti1Image(values, np.eye(4)), tmp_path / "nan.nii.gz")
    with pytest.raises(CdlError, match="nan.nii.gz: 2 voxels are NaN or infinite"):
        read_volume(tmp_path / "nan.nii.gz")


def test_sizes_no_ct_has() -> None:
    check_image_size("ct", (300, 512, 512), (1.0, 0.7, 0.7))
    check_image_size("slab", (1, 512, 512), (5.0, 0.8, 0.8))
    for shape, spacing, message in (((3000, 1, 1), (0.5, 1.0, 1.0), "two axes"),
                                    ((5000, 512, 512), (0.5, 0.7, 0.7), "limit of 4096"),
                                    ((100, 512, 512), (0.0, 0.7, 0.7), "outside"),
                                    ((2000, 64, 64), (2.0, 1.0, 1.0), "extent")):
        with pytest.raises(CdlError, match=message) as error:
            check_image_size("img.nii.gz", shape, spacing)
        assert "img.nii.gz" in str(error.value) and "--allow-any-size" in str(error.value)


def test_ct_value_problems() -> None:
    ct = np.random.default_rng(1).normal(0, 300, (10, 20, 20)).astype(np.float32)
    assert ct_value_problems(ct) == (None, [])
    assert "same value" in ct_value_problems(np.full((4, 4, 4), -1000, np.int16))[0]
    with_nan = ct.copy()
    with_nan[0, 0, 0] = np.nan
    assert "NaN" in ct_value_problems(with_nan)[0]
    assert "label map" in ct_value_problems((np.arange(1000).reshape(10, 10, 10) % 14).astype(np.uint8))[1][0]
    assert "unscaled" in ct_value_problems(np.linspace(0, 3000, 1000).reshape(10, 10, 10).astype(np.uint16))[1][0]
