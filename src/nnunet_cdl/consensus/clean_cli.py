"""`nnunet-cdl clean-labels`: map every label value outside the dataset's labels to 0, file by file.

Writes a new folder atomically (or, with --in-place, replaces the input folder atomically), keeping each
file's geometry and dtype, and reports per file how many voxels changed (stdout table and clean_labels.csv).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_cdl.errors import CdlError
from nnunet_cdl.io import NIFTI_ENDING, atomic_directory, atomic_path, read_json, read_volume, write_volume
from nnunet_cdl.parallel import parallel_map
from nnunet_cdl.consensus.clean import allowed_from_dataset_json, clean_labels, parse_label_spec

REPORT_NAME = "clean_labels.csv"
REPORT_COLUMNS = ("file", "voxels_changed", "values_removed")


@dataclass(frozen=True)
class _Task:
    source: str
    target: str
    allowed: tuple[int, ...]
    keep_mode: bool
    """In place: the cleaned file gets the original's permission bits."""


def _clean_file(task: _Task) -> tuple[str, int, list[int]] | str:
    """Clean one label file into `task.target`: (file name, voxels changed, values removed), or the error."""
    try:
        volume = read_volume(task.source)
        if not np.issubdtype(volume.array.dtype, np.integer):
            raise CdlError(f"{task.source}: not a label map (pixel type {volume.array.dtype}, expected integers)")
        cleaned, changed = clean_labels(volume.array, task.allowed)
        removed = sorted(int(v) for v in np.unique(volume.array) if v not in set(task.allowed))
        write_volume(task.target, cleaned, volume.geometry)
        if task.keep_mode:
            os.chmod(task.target, stat.S_IMODE(os.stat(task.source).st_mode))
    except CdlError as exc:
        return str(exc)
    return Path(task.source).name, changed, removed


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Set every voxel whose value is not one of the dataset's labels (e.g. 14 or 255 in a "
        "pseudo-label) to background 0. Geometry and dtype are kept; a CSV reports the voxels changed per file.",
    )
    parser.add_argument("--labels", required=True, type=Path, help="folder of label files (*.nii.gz)")
    parser.add_argument("--out", type=Path, help="new output folder (required unless --in-place)")
    allowed = parser.add_mutually_exclusive_group()
    allowed.add_argument("--dataset-json", type=Path, help="nnU-Net dataset.json whose 'labels' are allowed "
                         "(default: a dataset.json in --labels or up to two folders above)")
    allowed.add_argument("--labels-allowed", help="allowed values, e.g. 0-13 or 0,1,2,5-7")
    parser.add_argument("--in-place", action="store_true", help="replace the files in --labels (atomically)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    parser.add_argument("--num-processes", type=int, default=1, help="worker processes (default 1)")
    return parser


def _allowed(args: argparse.Namespace) -> tuple[list[int], str]:
    """Allowed label values and the file ending to look for."""
    if args.labels_allowed is not None:
        return parse_label_spec(args.labels_allowed), NIFTI_ENDING
    path = args.dataset_json
    if path is None:
        candidates = [folder / "dataset.json" for folder in (args.labels, args.labels.parent, args.labels.parent.parent)]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise CdlError(
                f"{args.labels}: no dataset.json in it or up to two folders above; pass --dataset-json or --labels-allowed"
            )
    ending = read_json(path).get("file_ending", NIFTI_ENDING)
    return allowed_from_dataset_json(path), ending


def main(argv: list[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    if not args.labels.is_dir():
        raise CdlError(f"{args.labels}: folder not found")
    if args.in_place == (args.out is not None):
        raise CdlError("give exactly one of --out DIR (new folder) or --in-place")
    if args.out is not None and args.out.resolve() == args.labels.resolve():
        raise CdlError(f"{args.out}: is the input folder; use --in-place to clean it in place")
    allowed, ending = _allowed(args)
    files = sorted(args.labels.glob(f"*{ending}"))
    if not files:
        raise CdlError(f"{args.labels}: no label files ending in {ending}")
    if args.in_place:
        read_only = [f for f in files if not os.access(f, os.W_OK)]
        if read_only:
            raise CdlError(f"{read_only[0]}: is read-only; --in-place would replace it" +
                           (f" (and {len(read_only) - 1} more)" if len(read_only) > 1 else "") +
                           "; make the files writable or clean into a new folder with --out")
    target = args.labels if args.in_place else args.out
    with atomic_directory(target, overwrite=args.in_place or args.overwrite) as tmp:
        if args.in_place:
            for other in args.labels.iterdir():
                if other not in files:
                    copy = shutil.copytree if other.is_dir() else shutil.copy2
                    copy(other, tmp / other.name)
        tasks = [_Task(str(f), str(tmp / f.name), tuple(allowed), args.in_place) for f in files]
        outcomes = parallel_map(_clean_file, tasks, args.num_processes, desc="clean-labels", unit="file")
        errors = [o for o in outcomes if isinstance(o, str)]
        if errors:
            unchanged = "nothing was written" + ("; the input folder is unchanged" if args.in_place else "")
            if len(errors) == 1:
                raise CdlError(f"{errors[0]}; {unchanged}")
            for error in errors:
                print(f"error: {error}", file=sys.stderr)
            raise CdlError(f"{len(errors)} of {len(files)} label files could not be cleaned (listed above); {unchanged}")
        results = [o for o in outcomes if not isinstance(o, str)]
        with atomic_path(tmp / REPORT_NAME) as report:
            with report.open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(REPORT_COLUMNS)
                for name, changed, removed in results:
                    writer.writerow([name, changed, " ".join(str(v) for v in removed)])
    width = max(len(name) for name, _, _ in results)
    print(f"{'file':<{width}}  {'voxels_changed':>14}  values_removed")
    for name, changed, removed in results:
        print(f"{name:<{width}}  {changed:>14}  {' '.join(str(v) for v in removed) or '-'}")
    total = sum(changed for _, changed, _ in results)
    print(f"{len(results)} files, {total} voxels set to 0 -> {target} (report: {target / REPORT_NAME})")
    return 0
