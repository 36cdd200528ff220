"""Listing the cases of an input folder as nnU-Net does, without forking the predictor."""

from __future__ import annotations

import os
from pathlib import Path

from nnunetv2.utilities.utils import create_lists_from_splitted_dataset_folder

from nnunet_cdl.inference.cases import list_cases


def test_case_lists_match_nnunet_without_forking(tmp_path: Path) -> None:
    for name in ("b_0000.nii.gz", "a_0001.nii.gz", "a_0000.nii.gz", "c_0000.nii.gz", "notes.txt", "d_0000.nrrd"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "e_0000.nii.gz").mkdir()
    forks = []
    os.register_at_fork(before=lambda: forks.append(1))
    ours, problems = list_cases(tmp_path, ".nii.gz")
    assert not forks and not problems
    assert ours == [[str(tmp_path / "a_0000.nii.gz"), str(tmp_path / "a_0001.nii.gz")],
                    [str(tmp_path / "b_0000.nii.gz")], [str(tmp_path / "c_0000.nii.gz")]]
    (tmp_path / "e_0000.nii.gz").rmdir()
    (tmp_path / "e_0000.nii.gz").write_bytes(b"")
    assert list_cases(tmp_path, ".nii.gz")[0] == create_lists_from_splitted_dataset_folder(
        str(tmp_path), ".nii.gz", num_processes=1)


def test_misnamed_files_and_missing_channels_are_named(tmp_path: Path) -> None:
    for name in ("good_0000.nii.gz", "plain.nii.gz", "two_0000.nii.gz", "two_0001.nii.gz", "gap_0001.nii.gz"):
        (tmp_path / name).write_bytes(b"")
    lists, problems = list_cases(tmp_path, ".nii.gz", num_channels=1)
    assert lists == [[str(tmp_path / "good_0000.nii.gz")]]
    reasons = {path: reason for _, path, reason in problems}
    assert sorted(case for case, _, _ in problems) == ["gap", "plain", "two"]
    assert "plain_0000.nii.gz" in reasons[str(tmp_path / "plain.nii.gz")]
    assert "[0, 1]" in reasons[str(tmp_path / "two_0000.nii.gz")]
    assert "[1]" in reasons[str(tmp_path / "gap_0001.nii.gz")]
