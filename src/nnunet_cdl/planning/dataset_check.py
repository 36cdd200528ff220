"""Checks on an nnU-Net raw dataset before planning, so mistakes become one clear `CdlError` with the fix."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nnunet_cdl.errors import CdlError

REQUIRED_KEYS = ("channel_names", "labels", "numTraining", "file_ending")


def require_nnunet_paths(*names: str) -> dict[str, Path]:
    """The nnU-Net folders named by environment variables `names`; an unset one is a `CdlError`."""
    paths = {}
    for name in names:
        value = os.environ.get(name)
        if not value:
            raise CdlError(f"{name} is not set: export {name}=/path/to/{name} (see nnU-Net's setting_up_paths.md)")
        paths[name] = Path(value)
    return paths


def find_raw_dataset(raw_root: Path, dataset_id: int) -> Path:
    """`<raw_root>/DatasetNNN_Name` for `dataset_id`; none or several is a `CdlError`."""
    if not raw_root.is_dir():
        raise CdlError(f"{raw_root}: nnUNet_raw folder not found")
    matches = sorted(p for p in raw_root.glob(f"Dataset{dataset_id:03d}_*") if p.is_dir())
    if not matches:
        raise CdlError(
            f"{raw_root}: no dataset with id {dataset_id} (expected a folder Dataset{dataset_id:03d}_NAME); "
            "create one with `nnunet-cdl synth` or convert your data to nnU-Net's format"
        )
    if len(matches) > 1:
        raise CdlError(f"{raw_root}: several datasets have id {dataset_id}: {', '.join(p.name for p in matches)}")
    return matches[0]


def read_dataset_json(dataset_folder: Path) -> dict[str, Any]:
    """dataset.json of a raw dataset, with the keys planning needs checked."""
    path = dataset_folder / "dataset.json"
    if not path.is_file():
        raise CdlError(f"{path}: dataset.json not found; every nnU-Net raw dataset needs one")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CdlError(f"{path}: not valid JSON ({exc})") from exc
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise CdlError(f"{path}: missing key(s) {', '.join(missing)}")
    labels = data["labels"]
    if not isinstance(labels, dict) or labels.get("background") != 0 or len(labels) < 2:
        raise CdlError(f"{path}: 'labels' must map 'background' to 0 and name at least one foreground label")
    return data


def check_training_cases(dataset_folder: Path, dataset_json: dict[str, Any]) -> int:
    """Number of training cases; a dataset without images or without a label for every case is a `CdlError`."""
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    ending = dataset_json["file_ending"]
    if "dataset" not in dataset_json and not (dataset_folder / "imagesTr").is_dir():
        raise CdlError(f"{dataset_folder / 'imagesTr'}: training image folder not found")
    cases = get_filenames_of_train_images_and_targets(str(dataset_folder), dataset_json)
    if not cases:
        raise CdlError(f"{dataset_folder / 'imagesTr'}: no training images named CASE_0000{ending}")
    unlabeled = sorted(case for case, files in cases.items() if not Path(files["label"]).is_file())
    if len(unlabeled) == len(cases):
        raise CdlError(
            f"{dataset_folder}: the dataset has no labels (no {ending} files in labelsTr/ for its {len(cases)} "
            f"training cases); nnU-Net plans and trains from labelled cases: add labelsTr/CASE{ending} for each "
            "imagesTr/CASE_0000 (e.g. pseudo-labels), or keep unlabelled images out of imagesTr"
        )
    if unlabeled:
        shown = ", ".join(unlabeled[:5]) + (" ..." if len(unlabeled) > 5 else "")
        raise CdlError(
            f"{dataset_folder / 'labelsTr'}: {len(unlabeled)} of {len(cases)} training cases have no label file "
            f"({shown}); add labelsTr/CASE{ending} for each or move those images out of imagesTr"
        )
    problems = [problem for case, files in cases.items() if (problem := _case_problem(case, files))]
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more case(s)" if len(problems) > 3 else "")
        raise CdlError(f"{dataset_folder}: {len(problems)} training case(s) cannot be planned: {shown}")
    if dataset_json["numTraining"] != len(cases):
        raise CdlError(
            f"{dataset_folder / 'dataset.json'}: numTraining is {dataset_json['numTraining']} but imagesTr holds "
            f"{len(cases)} cases; set numTraining to {len(cases)}"
        )
    return len(cases)


def _case_problem(case: str, files: dict[str, Any]) -> str | None:
    """Why one training case cannot be planned (unreadable or truncated file, a channel or label of another shape
    than the image; geometry differences are left to nnU-Net's own checks), or None. Reads headers only (and a
    gzip trailer)."""
    from nnunet_cdl.image_checks import check_image_file
    from nnunet_cdl.io import read_geometry

    paths = [*files["images"], files["label"]]
    try:
        for path in paths:
            check_image_file(path)
        grids = [read_geometry(path) for path in paths]
    except CdlError as exc:
        return str(exc)
    image_shape = grids[0][0]
    for path, (shape, _) in zip(paths[1:], grids[1:]):
        if shape != image_shape:
            return (f"{path}: {'x'.join(map(str, shape))} voxels (z, y, x), but the image {Path(paths[0]).name} "
                    f"has {'x'.join(map(str, image_shape))}")
    return None


def check_raw_dataset(raw_root: Path, dataset_id: int) -> Path:
    """The raw dataset folder of `dataset_id`, checked for dataset.json, images and labels."""
    folder = find_raw_dataset(raw_root, dataset_id)
    check_training_cases(folder, read_dataset_json(folder))
    return folder
