"""The cases of an input folder."""

from __future__ import annotations

import os

from nnunetv2.utilities.utils import create_paths_fn, get_identifiers_from_splitted_dataset_folder


def case_file_lists(folder: str | os.PathLike[str], file_ending: str) -> list[list[str]]:
    """Per case (sorted identifiers), its channel files `CASE_XXXX<file_ending>` in `folder`, as nnU-Net's
    `create_lists_from_splitted_dataset_folder` lists them, but without its process pool: that pool forks the
    predictor (with torch and the model loaded) 8 or more times just to match file names."""
    folder = os.fspath(folder)
    files = sorted(name for name in os.listdir(folder) if name.endswith(file_ending)
                   and os.path.isfile(os.path.join(folder, name)))
    return [create_paths_fn(folder, files, file_ending, case)
            for case in get_identifiers_from_splitted_dataset_folder(folder, file_ending)]
