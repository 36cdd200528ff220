"""Listing the cases of an input folder as nnU-Net does, without forking the predictor."""

from __future__ import annotations

import os
from pathlib import Path

from nnunetv2.utilities.utils import create_lists_from_splitted_dataset_folder

from nnunet_cdl.inference.cases import case_file_lists


def test_case_lists_match_nnunet_without_forking(tmp_path: Path) -> None:
    for name in ("b_0000.nii.gz", "a_0001.nii.gz", "a_0000.nii.gz", "c_0000.nii.gz", "notes.txt", "d_0000.nrrd"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "e_0000.nii.gz").mkdir()
    forks = []
    os.register_at_fork(before=lambda: forks.append(1))
    ours = case_file_lists(tmp_path, ".nii.gz")
    assert not forks
    assert ours == [[str(tmp_path / "a_0000.nii.gz"), str(tmp_path / "a_0001.nii.gz")],
                    [str(tmp_path / "b_0000.nii.gz")], [str(tmp_path / "c_0000.nii.gz")]]
    (tmp_path / "e_0000.nii.gz").rmdir()
    (tmp_path / "e_0000.nii.gz").write_bytes(b"")
    assert case_file_lists(tmp_path, ".nii.gz") == create_lists_from_splitted_dataset_folder(
        str(tmp_path), ".nii.gz", num_processes=1)
