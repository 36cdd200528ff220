import json
from pathlib import Path

import numpy as np
import pytest

from nnunet_cdl.cli import main as cli_main
from nnunet_cdl.consensus.partial import merge_partial, read_annotated, report_for
from nnunet_cdl.errors import CdlError
from nnunet_cdl.io import Geometry, read_volume, write_volume

ORGANS = tuple(range(1, 14))
GEOMETRY = Geometry((1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))


def _maps() -> tuple[np.ndarray, np.ndarray]:
    label = np.zeros((4, 6, 6), np.uint8)
    label[:, 0:3, 0:3] = 1  # liver annotated
    teacher = np.zeros_like(label)
    teacher[:, 0:2, 0:2] = 1  # teacher liver smaller: must not replace the annotation
    teacher[:, 2:4, 2:4] = 3  # spleen overlapping the liver at [2, 2]
    teacher[:, 5, 5] = 2
    return label, teacher


def test_annotated_organs_kept_others_filled_outside_them() -> None:
    label, teacher = _maps()
    merged, stats = merge_partial(label, teacher, [1], ORGANS)
    np.testing.assert_array_equal(merged == 1, label == 1)
    assert merged[0, 2, 2] == 1  # overlap: the annotation wins
    assert merged[0, 3, 3] == 3 and merged[0, 5, 5] == 2
    assert stats["teacher_overlap_voxels"] == 4  # the (2, 2) column of spleen on the liver
    report = report_for("c", merged, [1], "list", ORGANS, stats)
    assert report.from_label == [1] and report.from_teacher == [2, 3]
    assert label.max() == 1 and teacher[0, 2, 2] == 3  # inputs untouched


def test_annotated_organ_absent_stays_absent_and_unlisted_values_are_replaced() -> None:
    label, teacher = _maps()
    label[0, 5, 0] = 7  # a value the list does not annotate: not trusted
    merged, stats = merge_partial(label, teacher, [1, 2], ORGANS)
    assert not np.any(merged == 2)  # kidney annotated as absent: the teacher's kidney is not used
    assert merged[0, 5, 0] == 0 and stats["unannotated_label_voxels"] == 1
    report = report_for("c", merged, [1, 2], "list", ORGANS, stats)
    assert report.annotated_but_empty == [2] and report.from_teacher == [3]


def test_read_annotated_accepts_ids_and_names(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"c1": [1, "spleen", "13"], "c2": []}))
    assert read_annotated(path, ORGANS) == {"c1": [1, 3, 13], "c2": []}
    path.write_text(json.dumps({"c1": ["lung"]}))
    with pytest.raises(CdlError, match="lung"):
        read_annotated(path, ORGANS)


def test_merge_partial_command(tmp_path: Path) -> None:
    label, teacher = _maps()
    (tmp_path / "partial").mkdir()
    (tmp_path / "teacher").mkdir()
    for case in ("a", "b"):
        write_volume(tmp_path / "partial" / f"{case}.nii.gz", label, GEOMETRY)
        write_volume(tmp_path / "teacher" / f"{case}.nii.gz", teacher, GEOMETRY)
    (tmp_path / "ann.json").write_text(json.dumps({"b": ["liver", "right_kidney"]}))
    out = tmp_path / "merged"
    argv = ["merge-partial", "--labels", str(tmp_path / "partial"), "--teacher", str(tmp_path / "teacher"),
            "--out", str(out), "--annotated", str(tmp_path / "ann.json")]
    assert cli_main(argv) == 0
    reports = {r["case"]: r for r in json.loads((out / "merge_partial.json").read_text())}
    assert reports["a"]["annotated_from"] == "inferred" and reports["a"]["from_teacher"] == [2, 3]
    assert reports["b"]["annotated_from"] == "list" and reports["b"]["from_teacher"] == [3]
    merged = read_volume(out / "a.nii.gz")
    assert merged.geometry.matches(GEOMETRY) and merged.array[0, 5, 5] == 2
    assert "case,annotated_from" in (out / "merge_partial.csv").read_text()
    assert cli_main(argv) == 2  # exists, no --overwrite


def test_merge_partial_rejects_missing_teacher_and_mismatched_geometry(tmp_path: Path, capsys) -> None:
    label, teacher = _maps()
    for folder in ("partial", "teacher"):
        (tmp_path / folder).mkdir()
    write_volume(tmp_path / "partial" / "a.nii.gz", label, GEOMETRY)
    argv = ["merge-partial", "--labels", str(tmp_path / "partial"), "--teacher", str(tmp_path / "teacher"),
            "--out", str(tmp_path / "out")]
    assert cli_main(argv) == 2
    assert "no teacher prediction" in capsys.readouterr().err
    shifted = Geometry((1.0, 1.0, 2.0), (5.0, 0.0, 0.0), GEOMETRY.direction)
    write_volume(tmp_path / "teacher" / "a.nii.gz", teacher, shifted)
    assert cli_main(argv) == 2
    assert "geometry differs" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
