"""A whole synthetic nnU-Net v2 raw dataset with pseudo-labels from several simulated labelers and a manifest.

Layout of `out_dir/DatasetNNN_<name>/`: imagesTr, labelsTr, imagesTs, labelsTs, dataset.json (nnU-Net v2),
pseudolabels/<source>/<case>.nii.gz for every training case and source, manifest.json (see docs/synth.md).
Per-case random streams come from `numpy.random.SeedSequence([seed, index, ...])`, so the output does not
depend on `num_processes`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnunet_cdl.errors import CdlError
from nnunet_cdl.io import NIFTI_ENDING, Geometry, atomic_directory, write_json, write_volume
from nnunet_cdl.labels import ORGAN_IDS, nnunet_labels_dict
from nnunet_cdl.parallel import parallel_map
from nnunet_cdl.synth.labelers import case_failure, default_regime, regime_config, simulate_source, source_role
from nnunet_cdl.synth.phantom import synth_case_with_info
from nnunet_cdl.synth.presets import preset_config, synth_config

GROUPS: tuple[str, ...] = ("easy", "hard", "broken")
MANIFEST_VERSION = 1
FAILURE_STREAM = 1000
"""Random sub-stream of a case that decides whether and how one of its sources fails (failing-labeler regime)."""


def source_names(num_sources: int) -> list[str]:
    return [f"source_{i + 1}" for i in range(num_sources)]


def case_seed(seed: int, index: int, stream: int = 0) -> int:
    """Seed for case `index` (0-based over train then test) and sub-stream (0 phantom, 1+k source k)."""
    return int(np.random.SeedSequence([seed, index, stream]).generate_state(1)[0])


def assign_groups(num_train: int, seed: int) -> list[str]:
    """Difficulty group of each training case: about 50 % easy, 30 % hard, 20 % broken, each present from 3 cases."""
    shares = synth_config()["groups"]
    counts = {g: int(round(shares[g] * num_train)) for g in GROUPS}
    if num_train >= 3:
        for g in GROUPS:
            counts[g] = max(counts[g], 1)
    while sum(counts.values()) > num_train:
        largest = max(GROUPS, key=lambda g: counts[g])
        counts[largest] -= 1
    counts["easy"] += num_train - sum(counts.values())
    groups = [g for g in GROUPS for _ in range(counts[g])]
    order = np.random.default_rng(np.random.SeedSequence([seed, 10**6])).permutation(num_train)
    return [groups[i] for i in order]


@dataclass(frozen=True)
class _Job:
    case_id: str
    index: int
    split: str
    group: str | None
    preset: str
    seed: int
    sources: tuple[str, ...]
    root: str
    regime: str


def _make_case(job: _Job) -> dict[str, Any]:
    """Generate, corrupt and write one case; returns its manifest entry."""
    root = Path(job.root)
    phantom_seed = case_seed(job.seed, job.index)
    image, label, geometry, scan = synth_case_with_info(job.preset, phantom_seed)
    images, labels = ("imagesTr", "labelsTr") if job.split == "train" else ("imagesTs", "labelsTs")
    write_volume(root / images / f"{job.case_id}_0000{NIFTI_ENDING}", image, geometry)
    write_volume(root / labels / f"{job.case_id}{NIFTI_ENDING}", label, geometry)
    entry: dict[str, Any] = {
        "split": job.split,
        "group": job.group,
        "phantom_seed": phantom_seed,
        "shape_zyx": list(image.shape),
        "spacing": list(geometry.spacing),
        "origin": list(geometry.origin),
        "direction": list(geometry.direction),
        "organs": [int(i) for i in ORGAN_IDS if np.any(label == i)],
        "scan": scan,
    }
    if job.split == "train":
        sources, entry["failing_source"] = write_pseudolabels(
            label, geometry, job.group or "easy", job.sources, job.seed, job.index, job.regime, root, job.case_id)
        entry["sources"] = sources
        entry["mean_source_dice"] = round(float(np.mean([s["dice"] for s in sources.values()])), 4)
    return entry


def write_pseudolabels(
    label: np.ndarray, geometry: Geometry, group: str, sources: tuple[str, ...], seed: int, index: int, regime: str,
    root: Path, case_id: str,
) -> tuple[dict[str, Any], str | None]:
    """Every simulated labeler's pseudo-label of case `index` (`label` uint8 (z, y, x)), written to
    `root/pseudolabels/<source>/<case_id>.nii.gz`; (manifest record per source, the failing source or None)."""
    failing, failure = case_failure(regime, group, len(sources), case_seed(seed, index, FAILURE_STREAM))
    records: dict[str, Any] = {}
    for k, name in enumerate(sources):
        noisy, records[name] = simulate_source(
            label, geometry.spacing_zyx, group, k, case_seed(seed, index, 1 + k), regime=regime,
            num_sources=len(sources), failure=failure if k == failing else None,
        )
        write_volume(root / "pseudolabels" / name / f"{case_id}{NIFTI_ENDING}", noisy, geometry)
    return records, sources[failing] if failing is not None else None


def _check_arguments(
    out_dir: Path, dataset_id: int, num_train: int, num_test: int, preset: str, num_sources: int,
    num_processes: int, name: str, regime: str,
) -> None:
    regime_config(regime)
    if not 1 <= dataset_id <= 999:
        raise CdlError(f"--dataset-id must be in 1..999 (nnU-Net's DatasetNNN), got {dataset_id}")
    if num_train < 1:
        raise CdlError(f"--cases must be >= 1, got {num_train}")
    if num_test < 0:
        raise CdlError(f"--test-cases must be >= 0, got {num_test}")
    if num_sources < 1:
        raise CdlError(f"--sources must be >= 1, got {num_sources}")
    if num_processes < 1:
        raise CdlError(f"--num-processes must be >= 1, got {num_processes}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise CdlError(f"--name {name!r}: use letters, digits, '_' and '-' only (it becomes DatasetNNN_<name>)")
    preset_config(preset)
    if out_dir.exists() and not out_dir.is_dir():
        raise CdlError(f"{out_dir}: exists and is not a folder")
    folder = f"Dataset{dataset_id:03d}_{name}"
    if out_dir.is_dir():
        clash = [p.name for p in out_dir.glob(f"Dataset{dataset_id:03d}_*") if p.name != folder and p.is_dir()]
        if clash:
            raise CdlError(f"{out_dir}: dataset id {dataset_id} is already used by {clash[0]} (nnU-Net needs unique ids)")


def dataset_json(num_train: int, name: str, preset: str) -> dict[str, Any]:
    """The nnU-Net v2 dataset.json of a phantom dataset."""
    return {
        "name": name,
        "description": f"synthetic abdominal CT phantoms (nnunet-cdl synth, preset {preset})",
        "channel_names": {"0": "CT"},
        "labels": nnunet_labels_dict(),
        "numTraining": num_train,
        "file_ending": NIFTI_ENDING,
        "licence": "CC0 (synthetic)",
    }


def generate_dataset(
    out_dir: str | Path, dataset_id: int, num_train: int, num_test: int = 2, preset: str = "small", seed: int = 0,
    num_sources: int = 3, num_processes: int = 1, name: str = "CDLPhantom", overwrite: bool = False,
    regime: str | None = None,
) -> Path:
    """Write `out_dir/DatasetNNN_<name>/` atomically (a failure leaves nothing) and return its path.

    `regime`: how the simulated labelers' errors relate (configs/synth_presets.json `regimes`; default
    `default_regime`).
    """
    out_dir = Path(out_dir)
    regime = regime or default_regime()
    _check_arguments(out_dir, dataset_id, num_train, num_test, preset, num_sources, num_processes, name, regime)
    target = out_dir / f"Dataset{dataset_id:03d}_{name}"
    groups = assign_groups(num_train, seed)
    sources = tuple(source_names(num_sources))
    with atomic_directory(target, overwrite=overwrite) as tmp:
        jobs = [
            _Job(f"Case_{i + 1:05d}", i, "train" if i < num_train else "test", groups[i] if i < num_train else None,
                 preset, seed, sources, str(tmp), regime)
            for i in range(num_train + num_test)
        ]
        entries = parallel_map(_make_case, jobs, num_processes, desc="synth")
        write_json(tmp / "dataset.json", dataset_json(num_train, name, preset))
        cases = {job.case_id: entry for job, entry in zip(jobs, entries)}
        write_json(tmp / "manifest.json", {
            "format_version": MANIFEST_VERSION,
            "dataset": target.name,
            "preset": preset,
            "seed": seed,
            "regime": regime,
            "orientation": "ITK/LPS patient frame: +x patient left, +y posterior, +z superior",
            "sources": list(sources),
            "reference_sources": [s for k, s in enumerate(sources) if source_role(regime, k, len(sources)) == "reference"],
            "groups": {g: [c for c, e in cases.items() if e["group"] == g] for g in GROUPS},
            "cases": cases,
        })
    return target
