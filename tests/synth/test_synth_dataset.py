"""Generated datasets: nnU-Net layout and integrity, manifest groups, determinism, CLI errors leave nothing."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from nnunet_cdl.cli import main
from nnunet_cdl.io import read_volume
from nnunet_cdl.labels import nnunet_labels_dict
from nnunet_cdl.synth import generate_dataset
from nnunet_cdl.synth.dataset import assign_groups


def test_layout_and_dataset_json(small_dataset: Path) -> None:
    assert small_dataset.name == "Dataset501_CDLPhantom"
    meta = json.loads((small_dataset / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT"} and meta["labels"] == nnunet_labels_dict()
    assert meta["numTraining"] == 6 and meta["file_ending"] == ".nii.gz"
    train = sorted(p.name for p in (small_dataset / "labelsTr").iterdir())
    assert len(train) == 6 and len(list((small_dataset / "imagesTs").iterdir())) == 2
    assert len(list((small_dataset / "labelsTs").iterdir())) == 2
    for source in ("source_1", "source_2", "source_3"):
        assert sorted(p.name for p in (small_dataset / "pseudolabels" / source).iterdir()) == train
    image = read_volume(small_dataset / "imagesTr" / train[0].replace(".nii.gz", "_0000.nii.gz"))
    noisy = read_volume(small_dataset / "pseudolabels" / "source_1" / train[0])
    assert image.array.dtype == np.int16 and noisy.array.dtype == np.uint8
    assert image.geometry.matches(noisy.geometry)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(small_dataset.stat().st_mode) == 0o777 & ~umask, "colleagues must be able to read it"
    assert stat.S_IMODE((small_dataset / "dataset.json").stat().st_mode) == 0o666 & ~umask


def test_manifest_groups_separated_by_true_dice(small_dataset: Path) -> None:
    manifest = json.loads((small_dataset / "manifest.json").read_text())
    assert manifest["sources"] == ["source_1", "source_2", "source_3"]
    assert all(manifest["groups"][g] for g in ("easy", "hard", "broken"))
    dice = {g: [] for g in ("easy", "hard", "broken")}
    for case_id, entry in manifest["cases"].items():
        assert entry["scan"]["phase"] in ("non_contrast", "arterial", "portal_venous", "delayed")
        direction = entry["direction"]
        assert [d < 0 for d in direction[::4]] == entry["scan"]["flipped_axes_xyz"]
        if entry["split"] != "train":
            assert entry["group"] is None and "sources" not in entry
            continue
        assert case_id in manifest["groups"][entry["group"]]
        for record in entry["sources"].values():
            assert {"corruptions", "dice", "in_band", "stray_voxels"} <= set(record)
            assert all("kind" in c and "severity" in c for c in record["corruptions"])
            dice[entry["group"]].append(record["dice"])
    assert min(dice["easy"]) > max(dice["hard"]) > 0 and min(dice["hard"]) > max(dice["broken"])


def test_stray_values_present_and_recorded(small_dataset: Path) -> None:
    manifest = json.loads((small_dataset / "manifest.json").read_text())
    found = 0
    for case_id, entry in manifest["cases"].items():
        for source, record in entry.get("sources", {}).items():
            array = read_volume(small_dataset / "pseudolabels" / source / f"{case_id}.nii.gz").array
            assert int(np.count_nonzero(array > 13)) == record["stray_voxels"]
            found += record["stray_voxels"] > 0
    assert found > 0


@pytest.mark.slow
def test_nnunet_integrity_check_accepts_it(small_dataset: Path) -> None:
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(small_dataset), num_processes=1)


def test_deterministic_and_independent_of_processes(tmp_path: Path) -> None:
    a = generate_dataset(tmp_path / "a", 7, 2, num_test=0, seed=3, num_sources=2)
    b = generate_dataset(tmp_path / "b", 7, 2, num_test=0, seed=3, num_sources=2, num_processes=2)
    assert (a / "manifest.json").read_text() == (b / "manifest.json").read_text()
    for path in sorted(a.rglob("*.nii.gz")):
        other = b / path.relative_to(a)
        assert np.array_equal(read_volume(path).array, read_volume(other).array), path


def test_groups_cover_all_three() -> None:
    for n in (3, 6, 10):
        groups = assign_groups(n, 0)
        assert len(groups) == n and set(groups) == {"easy", "hard", "broken"}
    assert assign_groups(10, 0) == assign_groups(10, 0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset-id", "0"], "1..999"),
        (["--dataset-id", "1000"], "1..999"),
        (["--cases", "0"], "--cases"),
        (["--preset", "huge"], "unknown preset"),
        (["--name", "bad name"], "--name"),
    ],
)
def test_cli_errors_write_nothing(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    base = {"--out": str(tmp_path / "raw"), "--dataset-id": "12", "--cases": "1"}
    extra = dict(zip(args[::2], args[1::2]))
    argv = ["synth"] + [x for kv in {**base, **extra}.items() for x in kv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").iterdir())


def test_cli_existing_output_needs_overwrite(tmp_path: Path, capsys) -> None:
    argv = ["synth", "--out", str(tmp_path), "--dataset-id", "12", "--cases", "1", "--test-cases", "0"]
    assert main(argv) == 0
    first = (tmp_path / "Dataset012_CDLPhantom" / "manifest.json").read_text()
    assert "Case_00001" in capsys.readouterr().out
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    assert main(argv + ["--overwrite", "--seed", "4"]) == 0
    assert (tmp_path / "Dataset012_CDLPhantom" / "manifest.json").read_text() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset012_CDLPhantom"]


def test_failure_leaves_no_partial_dataset(tmp_path: Path, monkeypatch) -> None:
    import nnunet_cdl.synth.dataset as dataset

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(dataset, "simulate_source", broken)
    with pytest.raises(RuntimeError):
        generate_dataset(tmp_path, 9, 2, num_test=0)
    assert list(tmp_path.iterdir()) == []
