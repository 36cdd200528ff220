"""`nnunet-cdl clean-labels`: stray values removed, geometry and dtype kept, report, atomic output, errors."""

from __future__ import annotations

import csv
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_cdl.cli import main
import nnunet_cdl.consensus.clean_cli  # noqa: F401  (imported before a forked child drops privileges)
from nnunet_cdl.io import read_volume
from tests.conftest import give_to_unprivileged, run_unprivileged, shared_tmp


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["clean-labels", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cleans_pseudolabels_and_reports(small_dataset: Path, tmp_path: Path, capsys) -> None:
    manifest = json.loads((small_dataset / "manifest.json").read_text())
    source = small_dataset / "pseudolabels" / "source_1"
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    out = tmp_path / "clean"
    code, stdout, _ = run(capsys, "--labels", str(source), "--out", str(out))
    assert code == 0 and "voxels_changed" in stdout
    rows = list(csv.DictReader((out / "clean_labels.csv").open()))
    assert [r["file"] for r in rows] == sorted(before)
    for row in rows:
        case = row["file"].removesuffix(".nii.gz")
        assert int(row["voxels_changed"]) == manifest["cases"][case]["sources"]["source_1"]["stray_voxels"]
        original, cleaned = read_volume(source / row["file"]), read_volume(out / row["file"])
        assert cleaned.array.dtype == original.array.dtype and cleaned.geometry.matches(original.geometry)
        assert cleaned.array.max() <= 13
        keep = original.array <= 13
        assert np.array_equal(cleaned.array[keep], original.array[keep]) and np.all(cleaned.array[~keep] == 0)
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before, "input modified"


def test_in_place_and_explicit_values(small_dataset: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "labels"
    shutil.copytree(small_dataset / "pseudolabels" / "source_2", folder)
    (folder / "notes.txt").write_text("kept")
    code, _, _ = run(capsys, "--labels", str(folder), "--in-place", "--labels-allowed", "0-13", "--num-processes", "1")
    assert code == 0 and (folder / "notes.txt").read_text() == "kept"
    for path in folder.glob("*.nii.gz"):
        assert read_volume(path).array.max() <= 13
    assert (folder / "clean_labels.csv").is_file()


def test_unreadable_file_is_named_and_nothing_written(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "labels"
    folder.mkdir()
    good = np.zeros((3, 4, 5), np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(good), str(folder / "a.nii.gz"))
    (folder / "b.nii.gz").write_bytes(b"not an image")
    out = tmp_path / "out"
    code, _, err = run(capsys, "--labels", str(folder), "--out", str(out), "--labels-allowed", "0-13")
    assert code == 2 and "b.nii.gz" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["labels"]


def test_float_image_is_not_a_label_map(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "labels"
    folder.mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 2, 2), np.float32)), str(folder / "ct.nii.gz"))
    code, _, err = run(capsys, "--labels", str(folder), "--out", str(tmp_path / "o"), "--labels-allowed", "0-13")
    assert code == 2 and "ct.nii.gz" in err and "not a label map" in err
    assert not (tmp_path / "o").exists()


def test_argument_errors(small_dataset: Path, tmp_path: Path, capsys) -> None:
    labels = str(small_dataset / "labelsTr")
    assert run(capsys, "--labels", labels)[0] == 2
    assert run(capsys, "--labels", labels, "--out", str(tmp_path / "o"), "--in-place")[0] == 2
    code, _, err = run(capsys, "--labels", labels, "--out", str(tmp_path / "o"), "--labels-allowed", "0-x")
    assert code == 2 and "--labels-allowed" in err
    assert run(capsys, "--labels", str(tmp_path / "missing"), "--out", str(tmp_path / "o"))[0] == 2
    existing = tmp_path / "exists"
    existing.mkdir()
    code, _, err = run(capsys, "--labels", labels, "--out", str(existing))
    assert code == 2 and "--overwrite" in err
    assert not (tmp_path / "o").exists()
    assert run(capsys, "--labels", labels, "--out", str(existing), "--overwrite")[0] == 0


def _clean_in_place(folder: Path) -> int:
    return main(["clean-labels", "--labels", str(folder), "--in-place", "--labels-allowed", "0-13"])


def _label_folder_of_a_normal_user(tmp_path: Path, small_dataset: Path) -> Path:
    folder = shared_tmp(tmp_path) / "labels"
    shutil.copytree(small_dataset / "pseudolabels" / "source_1", folder)
    (folder / "notes").mkdir()
    (folder / "notes" / "read_me.txt").write_text("kept")
    return folder


def _snapshot(folder: Path) -> dict[str, tuple[bytes | None, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None, stat.S_IMODE(p.stat().st_mode))
            for p in sorted(folder.rglob("*"))}


def test_in_place_with_a_read_only_subfolder_loses_nothing(small_dataset: Path, tmp_path: Path, capfd) -> None:
    folder = _label_folder_of_a_normal_user(tmp_path, small_dataset)
    os.chmod(folder / "notes", 0o555)
    give_to_unprivileged(folder)
    labels_before = sorted(p.name for p in folder.glob("*.nii.gz"))
    assert run_unprivileged(_clean_in_place, folder) == 0, capfd.readouterr().err
    assert sorted(p.name for p in folder.parent.iterdir()) == ["labels"], "no hidden folder may stay behind"
    assert sorted(p.name for p in folder.glob("*.nii.gz")) == labels_before
    assert all(read_volume(p).array.max() <= 13 for p in folder.glob("*.nii.gz"))
    assert (folder / "notes" / "read_me.txt").read_text() == "kept"
    assert stat.S_IMODE((folder / "notes").stat().st_mode) == 0o555


def test_in_place_refuses_a_read_only_label_file(small_dataset: Path, tmp_path: Path, capfd) -> None:
    folder = _label_folder_of_a_normal_user(tmp_path, small_dataset)
    locked = sorted(folder.glob("*.nii.gz"))[1]
    os.chmod(locked, 0o444)
    give_to_unprivileged(folder)
    before, folder_mode = _snapshot(folder), stat.S_IMODE(folder.stat().st_mode)
    assert run_unprivileged(_clean_in_place, folder) == 2
    err = capfd.readouterr().err
    assert locked.name in err and "read-only" in err and "Traceback" not in err
    assert _snapshot(folder) == before and stat.S_IMODE(folder.stat().st_mode) == folder_mode
    assert sorted(p.name for p in folder.parent.iterdir()) == ["labels"]


def test_in_place_keeps_file_and_folder_modes(small_dataset: Path, tmp_path: Path, capfd) -> None:
    folder = _label_folder_of_a_normal_user(tmp_path, small_dataset)
    first = sorted(folder.glob("*.nii.gz"))[0]
    os.chmod(first, 0o640)
    os.chmod(folder, 0o750)
    give_to_unprivileged(folder)
    assert run_unprivileged(_clean_in_place, folder) == 0, capfd.readouterr().err
    assert stat.S_IMODE(first.stat().st_mode) == 0o640 and stat.S_IMODE(folder.stat().st_mode) == 0o750
