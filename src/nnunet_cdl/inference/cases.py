"""The cases of an input folder, with the files that do not fit nnU-Net's naming named instead of crashing."""

from __future__ import annotations

import os
import re
from collections import defaultdict


def list_cases(folder: str | os.PathLike[str], file_ending: str,
               num_channels: int | None = None) -> tuple[list[list[str]], list[tuple[str, str, str]]]:
    """Per case (sorted identifiers), its channel files `CASE_XXXX<file_ending>` in `folder` as nnU-Net's
    `create_lists_from_splitted_dataset_folder` lists them (without its process pool, which forks the predictor
    with torch and the model loaded just to match names), and the problems: (case, file, reason) for every file
    with the ending that is not named `CASE_XXXX`, and for every case whose channels are not 0..`num_channels`-1.
    """
    folder = os.fspath(folder)
    channels: dict[str, dict[int, str]] = defaultdict(dict)
    problems: list[tuple[str, str, str]] = []
    pattern = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not name.endswith(file_ending) or not os.path.isfile(path):
            continue
        match = pattern.match(name[: -len(file_ending)])
        if match is None:
            problems.append((name[: -len(file_ending)], path, f"not named like an nnU-Net input: CASE_XXXX{file_ending} with XXXX the "
                                   f"4-digit channel, e.g. {name[: -len(file_ending)]}_0000{file_ending}"))
            continue
        channels[match["case"]][int(match["channel"])] = path
    lists = []
    for case in sorted(channels):
        found = sorted(channels[case])
        if num_channels is not None and found != list(range(num_channels)):
            problems.append((case, channels[case][found[0]], f"case {case} has channel file(s) {found}, the model "
                                                              f"expects {list(range(num_channels))}"))
            continue
        lists.append([channels[case][c] for c in found])
    return lists, problems


def input_kind(folder: str | os.PathLike[str], file_ending: str) -> str:
    """`nifti` when `folder` holds files with the model's ending (nnU-Net's layout), `dicom` when it (or a
    sub-folder) holds DICOM files; a folder with both is a `CdlError`, one with neither is `nifti` (reported as
    empty by the listing)."""
    from pathlib import Path

    from nnunet_cdl.dicom.series import dicom_files_below
    from nnunet_cdl.errors import CdlError

    folder = Path(folder)
    images = [p for p in folder.iterdir() if p.name.endswith(file_ending) and p.is_file()]
    dicom = next(dicom_files_below(folder), None)
    if images and dicom is not None:
        raise CdlError(f"{folder}: holds both {file_ending} images ({images[0].name}) and DICOM files "
                       f"({dicom.relative_to(folder)}); give one kind per input folder")
    return "dicom" if dicom is not None else "nifti"


def select_cases(lists: list[list[str]], output: str | list[str] | None, file_ending: str, overwrite: bool,
                 part_id: int, num_parts: int,
                 save_probabilities: bool = False) -> tuple[list[list[str]], list[str] | None]:
    """nnU-Net's `_manage_input_and_output_lists` (without its prints and the cascade input): this part's cases
    (`lists[part_id::num_parts]`), their truncated output paths (`output/CASE`, or this part of a given list, or
    None for in-memory prediction), and without `overwrite` only the cases whose output is not there yet."""
    lists = lists[part_id::num_parts]
    if isinstance(output, str):
        outputs = [os.path.join(output, os.path.basename(files[0])[: -(len(file_ending) + 5)]) for files in lists]
    elif isinstance(output, list):
        outputs = output[part_id::num_parts]
    else:
        outputs = None
    if not overwrite and outputs is not None:
        done = [os.path.isfile(o + file_ending) and (not save_probabilities or os.path.isfile(o + ".npz"))
                for o in outputs]
        lists = [files for files, d in zip(lists, done) if not d]
        outputs = [o for o, d in zip(outputs, done) if not d]
    return lists, outputs
