"""`nnunet-cdl evaluate`: report files, missing predictions, geometry errors, the real CT pair."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np

from nnunet_cdl.cli import main
from nnunet_cdl.io import Geometry, write_volume

TOTALSEG = Path(__file__).resolve().parents[3] / "shared" / "data" / "totalseg"
GEOMETRY = Geometry((0.8, 0.8, 2.5), (10.0, -20.0, 5.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))


def phantom() -> np.ndarray:
    labels = np.zeros((10, 16, 16), np.uint8)
    labels[2:8, 3:10, 3:10] = 1  # liver
    labels[3:7, 10:13, 10:13] = 5  # aorta
    return labels


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_report_with_missing_mismatched_and_unmatched_predictions(tmp_path: Path, capsys) -> None:
    truth, pred, out = tmp_path / "truth", tmp_path / "pred", tmp_path / "report"
    for case in ("A", "B", "C"):
        write_volume(truth / f"{case}.nii.gz", phantom(), GEOMETRY)
    write_volume(pred / "A.nii.gz", phantom(), GEOMETRY)
    write_volume(pred / "B.nii.gz", phantom(), Geometry((0.8, 0.8, 3.0), GEOMETRY.origin, GEOMETRY.direction))
    write_volume(pred / "D.nii.gz", phantom(), GEOMETRY)  # no truth
    before = sorted(p.name for p in pred.iterdir())

    code = main(["evaluate", "--truth", str(truth), "--pred", str(pred), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2  # B could not be evaluated
    assert "missing prediction for C" in err and "B.nii.gz: geometry differs" in err and "prediction D" in err
    assert sorted(p.name for p in pred.iterdir()) == before  # input untouched

    rows = read_rows(out / "metrics.csv")
    assert list(rows[0]) == ["case", "organ", "dsc", "nsd", "organ_name"]
    assert [(r["case"], r["organ"]) for r in rows] == [(c, str(o)) for c in ("A", "C") for o in range(1, 14)]
    assert all(float(r["dsc"]) == 1.0 and float(r["nsd"]) == 1.0 for r in rows if r["case"] == "A")
    assert all(float(r["dsc"]) == 0.0 and float(r["nsd"]) == 0.0 for r in rows if r["case"] == "C")

    summary = json.loads((out / "summary.json").read_text())
    assert summary["missing_predictions"] == ["C"] and summary["unmatched_predictions"] == ["D"]
    assert list(summary["errors"]) == ["B"] and "spacing" in summary["errors"]["B"]
    assert summary["num_cases"] == 3 and summary["num_scored"] == 2
    liver = summary["organs"]["1"]
    assert liver["name"] == "liver"
    assert liver["dsc"] == {"mean": 0.5, "median": 0.5, "std": 0.5, "n": 2, "n_undefined": 0}
    assert summary["overall"]["dsc"]["mean"] == 0.5
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_shape_mismatch_and_unreadable_prediction_are_errors(tmp_path: Path, capsys) -> None:
    truth, pred, out = tmp_path / "truth", tmp_path / "pred", tmp_path / "report"
    for case in ("A", "B"):
        write_volume(truth / f"{case}.nii.gz", phantom(), GEOMETRY)
    write_volume(pred / "A.nii.gz", phantom()[:-1], GEOMETRY)
    pred.joinpath("B.nii.gz").write_bytes(b"not a nifti")
    assert main(["evaluate", "--truth", str(truth), "--pred", str(pred), "--out", str(out)]) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert "shape" in summary["errors"]["A"] and "cannot read" in summary["errors"]["B"]
    assert read_rows(out / "metrics.csv") == []
    assert summary["overall"]["dsc"]["mean"] is None
    assert "2 case(s) could not be evaluated" in capsys.readouterr().err


def test_bad_folders_are_user_errors(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", "--truth", str(tmp_path / "nope"), "--pred", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert main(["evaluate", "--truth", str(tmp_path / "empty"), "--pred", str(tmp_path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "folder not found" in err and "no *.nii.gz label files" in err
    assert not (tmp_path / "metrics.csv").exists()


def test_real_ct_pair_two_processes_and_efficiency_section(tmp_path: Path, capsys) -> None:
    truth, pred, out = tmp_path / "truth", tmp_path / "pred", tmp_path / "report"
    truth.mkdir()
    pred.mkdir()
    for case in ("ct1", "ct2"):
        shutil.copy(TOTALSEG / "label_ts_default.nii.gz", truth / f"{case}.nii.gz")
        shutil.copy(TOTALSEG / "label_ts_fast.nii.gz", pred / f"{case}.nii.gz")
    efficiency = tmp_path / "efficiency.csv"
    efficiency.write_text(
        "case,shape,wall_s,peak_rss_mb,exit_code\nct1,30x101x122,2.0,300.5,0\nct2,30x101x122,4.0,500.5,0\n"
    )
    args = ["evaluate", "--truth", str(truth), "--pred", str(pred), "--out", str(out), "--num-processes", "2"]
    assert main([*args, "--efficiency", str(efficiency)]) == 0
    assert "2 of 2 cases scored" in capsys.readouterr().out
    rows = {(r["case"], int(r["organ"])): (float(r["dsc"]), float(r["nsd"])) for r in read_rows(out / "metrics.csv")}
    for organ in (1, 2, 3, 11, 13):  # liver, kidneys, spleen, stomach: two TotalSegmentator models agree
        assert rows[("ct1", organ)][0] > 0.94 and rows[("ct1", organ)][1] > 0.97, organ
    assert rows[("ct1", 10)] == (1.0, 1.0)  # esophagus is in neither
    assert rows[("ct1", 4)] == rows[("ct2", 4)] and 0.7 < rows[("ct1", 4)][0] < 0.9  # pancreas: harder
    summary = json.loads((out / "summary.json").read_text())
    assert summary["efficiency"]["wall_s"]["mean"] == 3.0 and summary["efficiency"]["peak_rss_mb"]["max"] == 500.5
    assert 0.9 < summary["overall"]["dsc"]["mean"] < 1.0 and summary["overall"]["dsc"]["std"] == 0.0
    assert not any(math.isnan(v) for pair in rows.values() for v in pair)


def test_malformed_efficiency_csv_is_a_user_error(tmp_path: Path, capsys) -> None:
    truth = tmp_path / "truth"
    write_volume(truth / "A.nii.gz", phantom(), GEOMETRY)
    bad = tmp_path / "efficiency.csv"
    bad.write_text("case,seconds\nA,1\n")
    args = ["evaluate", "--truth", str(truth), "--pred", str(truth), "--out", str(tmp_path / "r")]
    assert main([*args, "--efficiency", str(bad)]) == 2
    assert "no column wall_s" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_one_slice_tube_is_nan_in_csv_and_left_out_of_statistics(tmp_path: Path) -> None:
    truth, out = tmp_path / "truth", tmp_path / "report"
    labels = phantom()
    labels[labels == 5] = 0
    labels[4, 10:13, 10:13] = 5  # the aorta on one slice: the official slice range is empty
    write_volume(truth / "A.nii.gz", labels, GEOMETRY)
    assert main(["evaluate", "--truth", str(truth), "--pred", str(truth), "--out", str(out)]) == 0
    aorta = [r for r in read_rows(out / "metrics.csv") if r["organ"] == "5"]
    assert [(r["dsc"], r["nsd"]) for r in aorta] == [("nan", "nan")]
    text = (out / "summary.json").read_text()
    assert "NaN" not in text  # strict JSON
    summary = json.loads(text)
    assert summary["organs"]["5"]["dsc"] == {"mean": None, "median": None, "std": None, "n": 0, "n_undefined": 1}
    assert summary["overall"]["nsd"]["mean"] == 1.0  # the mean over the 12 defined organs
