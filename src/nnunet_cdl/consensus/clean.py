"""Label cleaning (CDL-UNet section 2.1): every value outside the dataset's labels becomes background."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from nnunet_cdl.errors import CdlError
from nnunet_cdl.io import read_json


def clean_labels(label: np.ndarray, allowed: Iterable[int]) -> tuple[np.ndarray, int]:
    """Copy of `label` with every value not in `allowed` set to 0, and how many voxels changed.

    label: integer array of any shape; the dtype is kept. `label` itself is never modified.
    """
    if not np.issubdtype(label.dtype, np.integer):
        raise CdlError(f"label maps must hold integers, got dtype {label.dtype}")
    allowed_values = np.unique(np.asarray(list(allowed), dtype=np.int64))
    out = label.copy()
    if label.dtype.kind == "u" and label.dtype.itemsize <= 2:
        # one table lookup per voxel instead of sorting the volume: True where a value must be cleared
        clear = np.ones(np.iinfo(label.dtype).max + 1, dtype=bool)
        clear[allowed_values[(allowed_values >= 0) & (allowed_values < clear.size)]] = False
        mask = clear[label]
    else:
        values = np.unique(label)
        bad = values[~np.isin(values, allowed_values)]
        if bad.size == 0:
            return out, 0
        mask = np.isin(label, bad)
    out[mask] = 0
    return out, int(np.count_nonzero(mask))


def parse_label_spec(spec: str) -> list[int]:
    """`"0-13"` or `"0,1,2,5-7"` -> sorted label ids; `CdlError` for anything else."""
    values: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise CdlError(f"--labels-allowed: cannot parse {part!r}; use e.g. 0-13 or 0,1,2,5-7")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) else lo
        if hi < lo:
            raise CdlError(f"--labels-allowed: range {part!r} runs backwards")
        values.update(range(lo, hi + 1))
    return sorted(values)


def allowed_from_dataset_json(path: str | Path) -> list[int]:
    """Label ids of an nnU-Net v2 dataset.json `labels` entry (region tuples contribute their ids)."""
    data = read_json(path)
    labels = data.get("labels") if isinstance(data, dict) else None
    if not isinstance(labels, dict) or not labels:
        raise CdlError(f"{path}: no 'labels' dictionary (an nnU-Net v2 dataset.json has one)")
    values: set[int] = set()
    for name, value in labels.items():
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise CdlError(f"{path}: label {name!r} has value {v!r}; expected a non-negative integer")
            values.add(v)
    values.add(0)
    return sorted(values)
