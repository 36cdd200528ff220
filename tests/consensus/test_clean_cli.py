"""`nnunet-cdl clean-labels`: stray values removed, geometry and dtype kept, report, atomic output, errors."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_cdl.cli import main
from nnunet_cdl.io import read_volume


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
