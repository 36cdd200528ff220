"""Running consensus over a dataset: case discovery, per-part scoring (cluster array jobs) and merging the parts."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from nnunet_cdl.consensus.case import CaseJob, CaseResult, score_case
from nnunet_cdl.consensus.curriculum_file import case_fingerprint
from nnunet_cdl.consensus.outputs import write_dataset
from nnunet_cdl.consensus.settings import ConsensusSettings
from nnunet_cdl.errors import CdlError
from nnunet_cdl.io import atomic_directory, list_image_files, list_label_files, read_json, write_json
from nnunet_cdl.parallel import parallel_map, select_part

PART_FORMAT = "nnunet-cdl consensus part v1"
PART_FILE = "part.json"


@dataclass
class ConsensusSummary:
    """What a finished run produced: case -> tier, and case -> error for the cases that could not be scored."""

    dataset_folder: Path
    tiers: dict[str, str]
    failed: dict[str, str]


def discover_cases(settings: ConsensusSettings) -> tuple[list[str], dict[str, Path], list[dict[str, Path]]]:
    """(all cases sorted, case -> channel-0 image, per source case -> label file); a case is in any of them."""
    images = list_image_files(settings.images, settings.file_ending)
    per_source = [list_label_files(s.folder, settings.file_ending) for s in settings.sources]
    cases = sorted(set(images).union(*per_source))
    if not cases:
        raise CdlError(f"{settings.images}: no cases found (images CASE_0000{settings.file_ending}, labels CASE"
                       f"{settings.file_ending} in {', '.join(str(s.folder) for s in settings.sources)})")
    return cases, images, per_source


def part_folder(settings: ConsensusSettings, num_parts: int, part_id: int) -> Path:
    return settings.parts_folder / f"part_{part_id}_of_{num_parts}"


def run_part(settings: ConsensusSettings, num_parts: int, part_id: int, num_processes: int) -> Path:
    """Score the cases of one part; write their refined labels and `part.json` to the part's folder (atomically)."""
    cases, images, per_source = discover_cases(settings)
    mine = select_part(cases, num_parts, part_id)
    target = part_folder(settings, num_parts, part_id)
    with atomic_directory(target, overwrite=True) as tmp:
        (tmp / "labels").mkdir()
        jobs = [
            CaseJob(
                case=case, image=images.get(case), candidates=tuple(src.get(case) for src in per_source),
                source_names=tuple(s.name for s in settings.sources), challenge=settings.challenge,
                selectable=settings.selectable, allowed=settings.allowed, ds_mode=settings.config.ds_mode,
                out_label=tmp / "labels" / f"{case}{settings.file_ending}", refine=settings.config.refine,
                trust_margin=settings.config.trust_margin,
            )
            for case in mine
        ]
        results = parallel_map(score_case, jobs, num_processes, desc=f"consensus part {part_id}/{num_parts}")
        write_json(tmp / PART_FILE, {
            "format": PART_FORMAT, "settings": settings.to_json(), "num_parts": num_parts, "part_id": part_id,
            "all_cases": len(cases), "all_cases_fingerprint": case_fingerprint(cases),
            "results": [r.to_json() for r in results],
        })
    return target


def find_parts_folder(out: Path, dataset_id: int) -> Path:
    """The single `OUT/DatasetNNN_*.parts` folder of a dataset id."""
    found = sorted(out.glob(f"Dataset{dataset_id:03d}_*.parts"))
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise CdlError(f"{out}: {what} part folders Dataset{dataset_id:03d}_*.parts; run `nnunet-cdl consensus "
                       f"--num-parts N --part-id I` for every part first" if not found else
                       f"{out}: several part folders for dataset {dataset_id}: {[p.name for p in found]}")
    return found[0]


def load_parts(parts_folder: Path) -> tuple[ConsensusSettings, list[CaseResult], dict[str, Path]]:
    """Read and cross-check every part: same settings, same case list, all parts 0..N-1 present."""
    files = sorted(parts_folder.glob(f"part_*_of_*/{PART_FILE}"))
    if not files:
        raise CdlError(f"{parts_folder}: no finished parts ({PART_FILE} files)")
    datas = [read_json(f) for f in files]
    first = datas[0]
    for path, data in zip(files, datas):
        if data.get("format") != PART_FORMAT:
            raise CdlError(f"{path}: not a consensus part file")
        for key in ("settings", "num_parts", "all_cases_fingerprint"):
            if data[key] != first[key]:
                raise CdlError(f"{path}: {key} differs from {files[0]}'s; rerun all parts with the same inputs")
    num_parts = int(first["num_parts"])
    missing = sorted(set(range(num_parts)) - {int(d["part_id"]) for d in datas})
    if missing:
        raise CdlError(f"{parts_folder}: parts {missing} of {num_parts} are missing; run "
                       f"`nnunet-cdl consensus ... --num-parts {num_parts} --part-id ID` for them")
    results = [CaseResult.from_json(r) for d in datas for r in d["results"]]
    results.sort(key=lambda r: r.case)
    if len(results) != int(first["all_cases"]):
        raise CdlError(f"{parts_folder}: parts hold {len(results)} cases, expected {first['all_cases']}")
    settings = ConsensusSettings.from_json(first["settings"])
    staged = {r.case: f.parent / "labels" / f"{r.case}{settings.file_ending}"
              for f, d in zip(files, datas) for r in map(CaseResult.from_json, d["results"]) if r.error is None}
    return settings, results, staged


def merge_parts(parts_folder: Path, overwrite: bool = False, keep_parts: bool = False) -> ConsensusSummary:
    """Combine all parts into the final dataset and reports; the parts folder is removed unless `keep_parts`."""
    settings, results, staged = load_parts(parts_folder)
    if not staged:
        errors = "; ".join(f"{r.case}: {r.error}" for r in results[:3])
        raise CdlError(f"no case could be scored ({len(results)} failed), e.g. {errors}")
    tiers = write_dataset(settings, results, staged, overwrite)
    if not keep_parts:
        shutil.rmtree(parts_folder)
    return ConsensusSummary(settings.dataset_folder, tiers, {r.case: r.error for r in results if r.error})


def run_consensus(settings: ConsensusSettings, num_processes: int = 1, overwrite: bool = False) -> ConsensusSummary:
    """The whole run in one process tree: one part, then merge."""
    if settings.dataset_folder.exists() and not overwrite:
        raise CdlError(f"{settings.dataset_folder}: already exists; remove it or pass --overwrite")
    if settings.parts_folder.exists():
        raise CdlError(f"{settings.parts_folder}: parts of an earlier --num-parts run exist; merge them with "
                       f"`nnunet-cdl consensus-merge` or remove the folder")
    folder = run_part(settings, 1, 0, num_processes)
    try:
        return merge_parts(folder.parent, overwrite)
    except BaseException:
        shutil.rmtree(folder.parent, ignore_errors=True)
        raise
