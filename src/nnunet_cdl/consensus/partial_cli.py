"""`nnunet-cdl merge-partial`: complete partially annotated labels with a teacher model's predictions."""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_cdl.consensus.case import check_geometry, label_dtype
from nnunet_cdl.consensus.partial import PartialReport, merge_partial, present_organs, read_annotated, report_for
from nnunet_cdl.consensus.settings import parse_allowed_labels
from nnunet_cdl.errors import CdlError
from nnunet_cdl.io import (
    NIFTI_ENDING,
    atomic_directory,
    atomic_path,
    list_label_files,
    read_volume,
    write_json,
    write_volume,
)
from nnunet_cdl.parallel import parallel_map

REPORT_CSV = "merge_partial.csv"
REPORT_JSON = "merge_partial.json"


@dataclass(frozen=True)
class PartialJob:
    case: str
    label: Path
    teacher: Path
    annotated: tuple[int, ...] | None
    """None: infer the annotated organs as the non-empty ones."""
    organs: tuple[int, ...]
    out: Path


def integer_labels(array: np.ndarray, path: Path, organs: tuple[int, ...]) -> np.ndarray:
    """A label map as the smallest unsigned dtype; values outside 0..max organ become 0 (never an organ)."""
    if not np.issubdtype(array.dtype, np.integer):
        if not np.array_equal(array, np.round(array)):
            raise CdlError(f"{path}: label map holds non-integer values")
    valid = (array >= 0) & (array <= max(organs))
    return np.where(valid, array, 0).astype(label_dtype((0, *organs)))


def merge_case(job: PartialJob) -> PartialReport:
    """Merge one case and write it to `job.out`."""
    label_volume = read_volume(job.label)
    teacher_volume = read_volume(job.teacher)
    check_geometry(job.teacher, teacher_volume.array.shape, teacher_volume.geometry, label_volume.array.shape,
                   label_volume.geometry, f"partial label {job.label.name}")
    label = integer_labels(label_volume.array, job.label, job.organs)
    teacher = integer_labels(teacher_volume.array, job.teacher, job.organs)
    annotated = list(job.annotated) if job.annotated is not None else present_organs(label, job.organs)
    merged, stats = merge_partial(label, teacher, annotated, job.organs)
    write_volume(job.out, merged, label_volume.geometry)
    return report_for(job.case, merged, annotated, "list" if job.annotated is not None else "inferred",
                      job.organs, stats)


def write_reports(folder: Path, reports: list[PartialReport]) -> None:
    """merge_partial.csv (organ ids space-separated) and merge_partial.json (the same, as lists)."""
    write_json(folder / REPORT_JSON, [r.to_json() for r in reports])
    columns = list(reports[0].to_json())
    with atomic_path(folder / REPORT_CSV) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for r in reports:
            writer.writerow({k: " ".join(map(str, v)) if isinstance(v, list) else v for k, v in r.to_json().items()})


def main(argv: list[str], prog: str) -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__ + " Annotated organs are kept as drawn; the other "
                                "organs come from the teacher wherever they do not overlap an annotated organ.")
    p.add_argument("--labels", type=Path, required=True, help="partial labels (CASE.nii.gz)")
    p.add_argument("--teacher", type=Path, required=True, help="teacher predictions for the same cases")
    p.add_argument("--out", type=Path, required=True, help="new folder for the merged labels and the reports")
    p.add_argument("--annotated", type=Path, default=None,
                   help='JSON {"CASE": [organ ids or names], ...}; cases not listed (or no file): the organs '
                        "present in the partial label count as annotated")
    p.add_argument("--allowed-labels", default="0-13", help="label values that are organs (plus 0)")
    p.add_argument("--num-processes", "-np", type=int, default=1)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    args = p.parse_args(argv)
    organs = tuple(v for v in parse_allowed_labels(args.allowed_labels) if v != 0)
    if not organs:
        raise CdlError("--allowed-labels must include at least one organ")
    labels = list_label_files(args.labels)
    teacher = list_label_files(args.teacher)
    if not labels:
        raise CdlError(f"{args.labels}: no label files (*{NIFTI_ENDING})")
    missing = sorted(set(labels) - set(teacher))
    if missing:
        raise CdlError(f"{args.teacher}: no teacher prediction for {len(missing)} case(s): {missing[:5]}")
    annotated = read_annotated(args.annotated, organs) if args.annotated else {}
    unknown = sorted(set(annotated) - set(labels))
    if unknown:
        raise CdlError(f"{args.annotated}: cases without a partial label in {args.labels}: {unknown[:5]}")
    with atomic_directory(args.out, overwrite=args.overwrite) as tmp:
        jobs = [PartialJob(case, path, teacher[case], tuple(annotated[case]) if case in annotated else None, organs,
                           tmp / path.name) for case, path in labels.items()]
        reports = parallel_map(merge_case, jobs, args.num_processes, desc="merge-partial")
        write_reports(tmp, reports)
    from_teacher = sum(len(r.from_teacher) for r in reports)
    print(f"{args.out}: {len(reports)} cases merged, {from_teacher} organ labels filled from the teacher; "
          f"see {REPORT_CSV}")
    return 0
