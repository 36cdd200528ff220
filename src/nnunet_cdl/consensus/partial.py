"""Partial labels completed by a teacher (Swin-X Seg pipeline (b)): annotated organs kept, the others filled in."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnunet_cdl.errors import CdlError
from nnunet_cdl.io import read_json
from nnunet_cdl.labels import LABEL_IDS


@dataclass
class PartialReport:
    """Where a merged case's organs came from; organ ids are label values, voxel counts are in voxels."""

    case: str
    annotated_from: str
    """"list" (given per case) or "inferred" (the organs present in the partial label)."""
    annotated: list[int]
    from_label: list[int]
    """Annotated organs present in the partial label (kept as is)."""
    from_teacher: list[int]
    """Organs filled in from the teacher."""
    annotated_but_empty: list[int] = field(default_factory=list)
    teacher_overlap_voxels: int = 0
    """Teacher voxels of non-annotated organs dropped because they lie on an annotated organ."""
    unannotated_label_voxels: int = 0
    """Partial-label voxels of organs outside the annotated list (replaced by the teacher's answer)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def present_organs(label: np.ndarray, organs: Sequence[int]) -> list[int]:
    """The organ ids among `organs` that have at least one voxel in `label`."""
    counts = np.bincount(label.reshape(-1).astype(np.int64, copy=False), minlength=max(organs) + 1)
    return [int(o) for o in organs if o < counts.size and counts[o] > 0]


def merge_partial(
    label: np.ndarray, teacher: np.ndarray, annotated: Sequence[int], organs: Sequence[int]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Merge a partial label with a teacher's full prediction; both (z, y, x) integer maps of equal shape.

    Every annotated organ is kept exactly as the partial label draws it; every other organ of `organs` is taken
    from the teacher where the voxel is not an annotated organ. Voxels of the partial label holding a value
    outside `annotated` are not trusted and get the teacher's (non-annotated) answer or background.
    Returns the merged map (label's dtype) and counts for the report.
    """
    if label.shape != teacher.shape:
        raise ValueError(f"partial label {label.shape} and teacher {teacher.shape} differ in shape")
    annotated_set = sorted(set(int(a) for a in annotated))
    fill_organs = [int(o) for o in organs if int(o) not in annotated_set]
    is_annotated = np.isin(label, annotated_set)
    merged = np.where(is_annotated, label, 0).astype(label.dtype, copy=False)
    teacher_fill = np.isin(teacher, fill_organs)
    take = teacher_fill & ~is_annotated
    merged[take] = teacher[take]
    stats = {
        "teacher_overlap_voxels": int(np.count_nonzero(teacher_fill & is_annotated)),
        "unannotated_label_voxels": int(np.count_nonzero((label != 0) & ~is_annotated)),
    }
    return merged, stats


def report_for(case: str, merged: np.ndarray, annotated: Sequence[int], annotated_from: str,
               organs: Sequence[int], stats: Mapping[str, int]) -> PartialReport:
    """The report of one merged case (organs actually present in `merged`, by origin)."""
    present = set(present_organs(merged, organs))
    annotated = sorted(set(int(a) for a in annotated))
    return PartialReport(
        case=case, annotated_from=annotated_from, annotated=annotated,
        from_label=[o for o in annotated if o in present],
        from_teacher=sorted(o for o in present if o not in annotated),
        annotated_but_empty=[o for o in annotated if o not in present],
        teacher_overlap_voxels=int(stats["teacher_overlap_voxels"]),
        unannotated_label_voxels=int(stats["unannotated_label_voxels"]),
    )


def parse_organ(value: Any, path: Path, case: str, organs: Sequence[int]) -> int:
    """An organ given as a label id (13, "13") or a FLARE organ name ("left_kidney")."""
    if isinstance(value, str) and value in LABEL_IDS:
        organ = LABEL_IDS[value]
    else:
        try:
            organ = int(value)
        except (TypeError, ValueError):
            raise CdlError(f"{path}: case {case}: {value!r} is neither a label id nor an organ name") from None
    if organ not in organs:
        raise CdlError(f"{path}: case {case}: organ {organ} is not one of the labels {list(organs)}")
    return organ


def read_annotated(path: str | os.PathLike[str], organs: Sequence[int]) -> dict[str, list[int]]:
    """`{"CASE": [1, 2, "spleen"], ...}` -> case -> annotated organ ids (names or ids accepted)."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise CdlError(f"{path}: expected a JSON object mapping each case to a list of annotated organs")
    return {str(case): sorted({parse_organ(v, path, case, organs) for v in values}) for case, values in data.items()}
