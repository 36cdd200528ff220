"""`curriculum.json`: a consensus dataset's tiers, written by `nnunet-cdl consensus`, read by `nnUNetTrainerCDL`."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnunet_cdl.consensus.tiers import TIERS, Thresholds
from nnunet_cdl.errors import CdlError
from nnunet_cdl.io import read_json, write_json

CURRICULUM_FILE = "curriculum.json"
FORMAT = "nnunet-cdl curriculum v1"


def case_fingerprint(cases: Iterable[str]) -> str:
    """sha256 of the sorted case ids, one per line: identifies the case list of a dataset."""
    return hashlib.sha256("\n".join(sorted(cases)).encode()).hexdigest()


@dataclass(frozen=True)
class Curriculum:
    """Tier -> cases, and `dataset_cases` the cases in the dataset's labelsTr (tiers may also list excluded ones)."""

    tiers: dict[str, list[str]]
    dataset_cases: list[str]
    thresholds: Thresholds
    path: Path | None = None

    def tier_of(self) -> dict[str, str]:
        return {case: tier for tier, cases in self.tiers.items() for case in cases}

    def cases(self, tiers: Sequence[str]) -> list[str]:
        """The cases of the given tiers, sorted."""
        unknown = sorted(set(tiers) - set(self.tiers))
        if unknown:
            raise CdlError(f"{self.path or CURRICULUM_FILE}: unknown tier(s) {unknown}; it has {sorted(self.tiers)}")
        return sorted(case for tier in tiers for case in self.tiers[tier])

    def check_matches(self, dataset_cases: Iterable[str], where: str) -> None:
        """Raise `CdlError` when `dataset_cases` (e.g. a preprocessed dataset's) is not this file's case list."""
        actual = set(dataset_cases)
        expected = set(self.dataset_cases)
        if actual == expected:
            return
        missing, extra = sorted(expected - actual), sorted(actual - expected)
        raise CdlError(
            f"{self.path or CURRICULUM_FILE} is stale for {where}: "
            f"{len(missing)} of its cases are not there {missing[:5]}, {len(extra)} cases there are not in it "
            f"{extra[:5]}; rerun `nnunet-cdl consensus` and preprocessing for this dataset"
        )


def write_curriculum(path: str | os.PathLike[str], tiers: Mapping[str, list[str]], dataset_cases: Sequence[str],
                     thresholds: Thresholds, extra: Mapping[str, Any]) -> None:
    """Write curriculum.json: tiers, thresholds, dataset case list and its fingerprint, plus `extra` (provenance)."""
    write_json(path, {
        "format": FORMAT,
        "tiers": {tier: sorted(tiers.get(tier, [])) for tier in TIERS},
        "thresholds": {"easy": thresholds.easy, "hard": thresholds.hard},
        "dataset_cases": sorted(dataset_cases),
        "case_fingerprint": case_fingerprint(dataset_cases),
        **extra,
    })


def read_curriculum(path: str | os.PathLike[str]) -> Curriculum:
    """Read and validate curriculum.json (format, tiers disjoint, fingerprint consistent with the case list)."""
    path = Path(path)
    data = read_json(path)
    try:
        if data["format"] != FORMAT:
            raise CdlError(f"{path}: format {data['format']!r}, expected {FORMAT!r}")
        tiers = {str(t): [str(c) for c in cases] for t, cases in data["tiers"].items()}
        dataset_cases = [str(c) for c in data["dataset_cases"]]
        thresholds = Thresholds(float(data["thresholds"]["easy"]), float(data["thresholds"]["hard"]))
        fingerprint = str(data["case_fingerprint"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise CdlError(f"{path}: not a curriculum file written by `nnunet-cdl consensus` ({exc!r})") from exc
    if fingerprint != case_fingerprint(dataset_cases):
        raise CdlError(f"{path}: case_fingerprint does not match dataset_cases (edited by hand?)")
    seen: dict[str, str] = {}
    for tier, cases in tiers.items():
        for case in cases:
            if case in seen:
                raise CdlError(f"{path}: case {case} is in tiers {seen[case]!r} and {tier!r}")
            seen[case] = tier
    return Curriculum(tiers, dataset_cases, thresholds, path)
