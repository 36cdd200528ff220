import csv
import json
from pathlib import Path

import numpy as np
import pytest

from nnunet_cdl.cli import main as cli_main
from nnunet_cdl.consensus.curriculum_file import case_fingerprint, read_curriculum
from nnunet_cdl.io import Geometry, read_volume, write_volume

GEOMETRY = Geometry((1.5, 1.5, 3.0), (-10.0, 5.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
SHAPE = (12, 20, 20)


def _truth() -> np.ndarray:
    label = np.zeros(SHAPE, np.uint8)
    label[2:10, 2:12, 2:12] = 1
    label[2:10, 13:18, 2:8] = 2
    label[4:8, 13:18, 12:18] = 3
    return label


def _erode_organ(label: np.ndarray, organ: int, slices: int) -> np.ndarray:
    """Remove the first `slices` z-slices of an organ (an error of controlled size)."""
    out = label.copy()
    z = np.flatnonzero((label == organ).any(axis=(1, 2)))
    out[(np.arange(SHAPE[0])[:, None, None] < z[0] + slices) & (label == organ)] = 0
    return out


def _make_dataset(root: Path) -> dict[str, list[np.ndarray]]:
    """4 cases x 3 sources; case errors grow from c0 (easy) to c3 (erroneous); A is always the best."""
    images = root / "Dataset010_Toy" / "imagesTr"
    images.mkdir(parents=True)
    (root / "Dataset010_Toy" / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "right_kidney": 2, "spleen": 3},
        "numTraining": 4, "file_ending": ".nii.gz"}))
    truth = _truth()
    cases: dict[str, list[np.ndarray]] = {}
    for i, severity in enumerate([0, 1, 2, 4]):
        case = f"toy_{i:03d}"
        a = truth.copy()
        b = _erode_organ(truth, 3, severity + (severity > 0)) if severity else _erode_organ(truth, 1, 1)
        c = _erode_organ(_erode_organ(truth, 2, severity + 1), 1, 2 * severity)
        cases[case] = [a, b, c]
        write_volume(images / f"{case}_0000.nii.gz", (truth * 40).astype(np.int16), GEOMETRY)
    for s, name in enumerate(["A", "B", "C"]):
        (root / "pseudo" / name).mkdir(parents=True)
        for case, labels in cases.items():
            write_volume(root / "pseudo" / name / f"{case}.nii.gz", labels[s], GEOMETRY)
    return cases


def _argv(root: Path, *extra: str) -> list[str]:
    return ["consensus", "--images", str(root / "Dataset010_Toy" / "imagesTr"), "--labels",
            *(str(root / "pseudo" / n) for n in ("A", "B", "C")), "--out", str(root / "out"), "--dataset-id", "11",
            *extra]


def _rows(folder: Path) -> dict[str, dict[str, str]]:
    with open(folder / "consensus.csv") as handle:
        return {row["case"]: row for row in csv.DictReader(handle)}


def test_consensus_builds_dataset_reports_and_curriculum(tmp_path: Path) -> None:
    cases = _make_dataset(tmp_path)
    dirty = cases["toy_001"][1].copy()
    dirty[0, 0, :5] = 20  # five voxels outside the dataset's labels
    write_volume(tmp_path / "pseudo" / "B" / "toy_001.nii.gz", dirty, GEOMETRY)
    before = {p: p.read_bytes() for p in (tmp_path / "pseudo").rglob("*.nii.gz")}
    assert cli_main(_argv(tmp_path, "--easy-threshold", "0.95", "--hard-threshold", "0.85", "--ds-mode", "others")) == 0
    folder = tmp_path / "out" / "Dataset011_ToyConsensus"
    rows = _rows(folder)
    assert list(next(iter(rows.values()))) == ["case", "rs_A", "rs_B", "rs_C", "selected", "ds", "tier", "excluded",
                                               "cleaned_A", "cleaned_B", "cleaned_C", "voted", "error"]
    assert all(row["selected"] == "A" for row in rows.values())
    assert rows["toy_001"]["cleaned_B"] == "5" and rows["toy_001"]["cleaned_A"] == "0"
    ds = [float(rows[c]["ds"]) for c in sorted(rows)]
    assert ds == sorted(ds, reverse=True)  # growing disagreement, falling DS
    tiers = {c: rows[c]["tier"] for c in rows}
    assert tiers["toy_000"] == "easy" and tiers["toy_003"] == "erroneous"
    curriculum = read_curriculum(folder / "curriculum.json")
    kept = sorted(c for c, t in tiers.items() if t != "erroneous")
    assert curriculum.dataset_cases == kept and curriculum.cases(["easy", "hard"]) == kept
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == [f"{c}.nii.gz" for c in kept]
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [f"{c}_0000.nii.gz" for c in kept]
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["numTraining"] == len(kept) and dataset["labels"]["spleen"] == 3
    refined = read_volume(folder / "labelsTr" / "toy_000.nii.gz")
    np.testing.assert_array_equal(refined.array, cases["toy_000"][0])
    assert refined.geometry.matches(GEOMETRY)
    assert (folder / "ds_histogram.png").read_bytes()[:4] == b"\x89PNG"
    assert {p: p.read_bytes() for p in (tmp_path / "pseudo").rglob("*.nii.gz")} == before
    assert not (tmp_path / "out" / "Dataset011_ToyConsensus.parts").exists()
    data = json.loads((folder / "curriculum.json").read_text())
    assert data["case_fingerprint"] == case_fingerprint(kept) and data["thresholds"] == {"easy": 0.95, "hard": 0.85}


def test_cleaned_selected_label_is_written_clean(tmp_path: Path) -> None:
    cases = _make_dataset(tmp_path)
    dirty = cases["toy_000"][0].copy()
    dirty[0, 0, 0] = 99
    write_volume(tmp_path / "pseudo" / "A" / "toy_000.nii.gz", dirty, GEOMETRY)
    assert cli_main(_argv(tmp_path, "--keep-erroneous")) == 0
    folder = tmp_path / "out" / "Dataset011_ToyConsensus"
    np.testing.assert_array_equal(read_volume(folder / "labelsTr" / "toy_000.nii.gz").array, cases["toy_000"][0])
    assert len(list((folder / "labelsTr").iterdir())) == 4  # erroneous kept with --keep-erroneous
    assert read_curriculum(folder / "curriculum.json").dataset_cases == sorted(cases)


def test_failed_cases_are_reported_and_left_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = _make_dataset(tmp_path)
    (tmp_path / "pseudo" / "B" / "toy_002.nii.gz").unlink()
    shifted = Geometry(GEOMETRY.spacing, (0.0, 0.0, 0.0), GEOMETRY.direction)
    write_volume(tmp_path / "pseudo" / "C" / "toy_001.nii.gz", cases["toy_001"][2], shifted)
    assert cli_main(_argv(tmp_path)) == 1
    err = capsys.readouterr().err
    assert "toy_002 skipped: missing in source(s) B" in err and "toy_001 skipped" in err
    rows = _rows(tmp_path / "out" / "Dataset011_ToyConsensus")
    assert rows["toy_001"]["tier"] == "error" and "geometry differs" in rows["toy_001"]["error"]
    assert rows["toy_002"]["tier"] == "error" and rows["toy_000"]["tier"] == "easy"
    curriculum = json.loads((tmp_path / "out" / "Dataset011_ToyConsensus" / "curriculum.json").read_text())
    assert set(curriculum["failed"]) == {"toy_001", "toy_002"}


def test_truncated_files_fail_their_case_and_inputs_stay_unchanged(tmp_path: Path, capsys) -> None:
    _make_dataset(tmp_path)
    label = tmp_path / "pseudo" / "A" / "toy_001.nii.gz"
    label.write_bytes(label.read_bytes()[: label.stat().st_size // 2])
    image = tmp_path / "Dataset010_Toy" / "imagesTr" / "toy_002_0000.nii.gz"
    image.write_bytes(image.read_bytes()[:-40])
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.nii.gz")}
    assert cli_main(_argv(tmp_path)) == 1
    err = capsys.readouterr().err
    assert "toy_001 skipped" in err and "toy_002 skipped" in err and "Traceback" not in err
    rows = _rows(tmp_path / "out" / "Dataset011_ToyConsensus")
    assert rows["toy_001"]["tier"] == "error" and "truncated" in rows["toy_001"]["error"]
    assert rows["toy_002"]["tier"] == "error" and "toy_002_0000.nii.gz" in rows["toy_002"]["error"]
    assert rows["toy_000"]["tier"] == "easy"
    assert {p: p.read_bytes() for p in before} == before


def test_parts_then_merge_equal_a_single_run(tmp_path: Path) -> None:
    _make_dataset(tmp_path)
    assert cli_main(_argv(tmp_path, "--dataset-name", "Single")) == 0
    for part in ("0", "1"):
        assert cli_main(_argv(tmp_path, "--dataset-name", "Parts", "--num-parts", "2", "--part-id", part)) == 0
    assert cli_main(["consensus-merge", "--out", str(tmp_path / "out"), "--dataset-id", "11"]) == 0
    single, parts = tmp_path / "out" / "Dataset011_Single", tmp_path / "out" / "Dataset011_Parts"
    assert _rows(single) == _rows(parts)
    assert read_curriculum(single / "curriculum.json").tiers == read_curriculum(parts / "curriculum.json").tiers
    assert not (tmp_path / "out" / "Dataset011_Parts.parts").exists()


def test_merge_reports_missing_parts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _make_dataset(tmp_path)
    assert cli_main(_argv(tmp_path, "--num-parts", "3", "--part-id", "1")) == 0
    assert cli_main(["consensus-merge", "--out", str(tmp_path / "out"), "--dataset-id", "11"]) == 2
    assert "parts [0, 2] of 3 are missing" in capsys.readouterr().err
    assert not (tmp_path / "out" / "Dataset011_ToyConsensus").exists()


def test_paper_mode_reference_and_quantile_tiers(tmp_path: Path) -> None:
    _make_dataset(tmp_path)
    argv = ["consensus", "--images", str(tmp_path / "Dataset010_Toy" / "imagesTr"), "--labels",
            str(tmp_path / "pseudo" / "B"), str(tmp_path / "pseudo" / "C"),
            "--reference", str(tmp_path / "pseudo" / "A"),
            "--out", str(tmp_path / "out"), "--dataset-id", "12", "--ds-mode", "paper", "--tier-mode", "quantile",
            "--easy-quantile", "0.5", "--hard-quantile", "0.25"]
    assert cli_main(argv) == 0
    rows = _rows(tmp_path / "out" / "Dataset012_ToyConsensus")
    assert all(row["selected"] == "A" for row in rows.values())  # the reference can be selected
    for row in rows.values():  # Eq. 2: mean Dice of the selected (reference) with the two challenge labels
        assert float(row["ds"]) == pytest.approx((float(row["rs_A"])), abs=1e-6)
    assert sorted(row["tier"] for row in rows.values()) == ["easy", "easy", "erroneous", "hard"]
    argv[argv.index("--out") + 1] = str(tmp_path / "out2")
    assert cli_main([*argv, "--reference-votes-only"]) == 0
    rows = _rows(tmp_path / "out2" / "Dataset012_ToyConsensus")
    assert all(row["selected"] in ("B", "C") for row in rows.values())


def test_bad_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _make_dataset(tmp_path)
    assert cli_main(_argv(tmp_path, "--easy-threshold", "0.7")) == 2
    assert "hard <= easy" in capsys.readouterr().err
    argv = _argv(tmp_path)
    argv[argv.index("--labels") + 1:argv.index("--out")] = [str(tmp_path / "pseudo" / "A")]
    assert cli_main(argv) == 2
    assert "at least two" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_float_label_files(tmp_path: Path) -> None:
    cases = _make_dataset(tmp_path)
    write_volume(tmp_path / "pseudo" / "B" / "toy_000.nii.gz", cases["toy_000"][1].astype(np.float32), GEOMETRY)
    fractional = cases["toy_001"][1].astype(np.float32)
    fractional[5, 5, 5] = 0.5
    write_volume(tmp_path / "pseudo" / "B" / "toy_001.nii.gz", fractional, GEOMETRY)
    assert cli_main(_argv(tmp_path)) == 1
    rows = _rows(tmp_path / "out" / "Dataset011_ToyConsensus")
    assert rows["toy_000"]["error"] == "" and rows["toy_000"]["selected"] == "A"
    assert "non-integer" in rows["toy_001"]["error"] and "toy_001.nii.gz" in rows["toy_001"]["error"]


def test_refine_vote_writes_the_majority_and_counts_what_it_changed(tmp_path: Path) -> None:
    cases = _make_dataset(tmp_path)
    truth = _truth()
    a = _erode_organ(truth, 3, 1)  # toy_000: A, B and C now each make a different mistake
    write_volume(tmp_path / "pseudo" / "A" / "toy_000.nii.gz", a, GEOMETRY)
    assert cli_main(_argv(tmp_path, "--dataset-name", "Select", "--refine", "select")) == 0
    assert cli_main(_argv(tmp_path, "--dataset-name", "Vote", "--refine", "vote")) == 0
    select, vote = tmp_path / "out" / "Dataset011_Select", tmp_path / "out" / "Dataset011_Vote"
    rows = _rows(vote)
    assert list(rows["toy_000"])[-2:] == ["voted", "error"]
    assert "voted" not in next(iter(_rows(select).values()))
    for case in cases:  # DS, tiers and the selected source do not depend on the refinement
        assert {k: v for k, v in rows[case].items() if k != "voted"} == _rows(select)[case]
    chosen = {"A": a, "B": cases["toy_000"][1], "C": cases["toy_000"][2]}[rows["toy_000"]["selected"]]
    np.testing.assert_array_equal(read_volume(vote / "labelsTr" / "toy_000.nii.gz").array, truth)
    assert int(rows["toy_000"]["voted"]) == int(np.count_nonzero(chosen != truth)) > 0
    assert json.loads((vote / "curriculum.json").read_text())["refine"] == "vote"
