"""Outputs of a consensus run: the refined nnU-Net raw dataset, consensus.csv, curriculum.json, DS histogram."""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from nnunet_cdl.consensus.case import CaseResult
from nnunet_cdl.consensus.curriculum_file import CURRICULUM_FILE, write_curriculum
from nnunet_cdl.consensus.settings import ConsensusSettings
from nnunet_cdl.consensus.tiers import TIERS, Thresholds, assign_tiers
from nnunet_cdl.io import atomic_directory, atomic_path, write_json

CSV_FILE = "consensus.csv"
HISTOGRAM_FILE = "ds_histogram.png"
ERROR_TIER = "error"


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link `src` to `dst` (same file system), else copy it."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def csv_rows(settings: ConsensusSettings, results: Sequence[CaseResult], tiers: Mapping[str, str]) -> list[dict]:
    """One row per case: case, rs_<source>..., selected, ds, tier, excluded, cleaned_<source>..., [voted,] error.

    `excluded`: the sources not trusted for some organ, with those organs (`source_3:1,5;source_1:7`).
    `voted` (only with a fusing refine mode): voxels where the written label differs from the selected candidate.
    """
    names = [s.name for s in settings.sources]
    rows = []
    for r in results:
        row: dict[str, object] = {"case": r.case}
        row.update({f"rs_{n}": "" if r.rs is None else f"{r.rs[i]:.6f}" for i, n in enumerate(names)})
        row["selected"] = "" if r.selected is None else names[r.selected]
        row["ds"] = "" if r.ds is None else f"{r.ds:.6f}"
        row["tier"] = tiers.get(r.case, ERROR_TIER)
        row["excluded"] = ";".join(f"{names[i]}:{','.join(map(str, organs))}"
                                   for i, organs in enumerate(r.excluded or []) if organs)
        row.update({f"cleaned_{n}": "" if r.cleaned is None else r.cleaned[i] for i, n in enumerate(names)})
        if settings.config.refine != "select":
            row["voted"] = "" if r.voted is None else r.voted
        row["error"] = r.error or ""
        rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_histogram(path: Path, ds: Sequence[float], thresholds: Thresholds, title: str) -> None:
    """PNG histogram of the Difficulty Scores with the easy / hard thresholds drawn as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    low = min([0.5, *ds]) if ds else 0.5
    ax.hist(ds, bins=50, range=(low, 1.0), color="#4c72b0")
    ax.axvline(thresholds.easy, color="#55a868", linestyle="--", label=f"easy >= {thresholds.easy:.3f}")
    ax.axvline(thresholds.hard, color="#c44e52", linestyle="--", label=f"erroneous < {thresholds.hard:.3f}")
    ax.set_xlabel("Difficulty Score (mean multi-organ Dice)")
    ax.set_ylabel("cases")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def channel_files(images: Path, case: str, ending: str) -> list[Path]:
    """Every channel file `CASE_XXXX{ending}` of a case in imagesTr, sorted."""
    return sorted(p for p in images.glob(f"{case}_*{ending}")
                  if p.name[len(case) + 1: -len(ending)].isdigit() and len(p.name) == len(case) + 5 + len(ending))


def write_dataset(settings: ConsensusSettings, results: Sequence[CaseResult], staged: Mapping[str, Path],
                  overwrite: bool) -> dict[str, str]:
    """Build `OUT/DatasetNNN_Name/` atomically from scored cases and their staged refined labels; case -> tier.

    Erroneous cases are left out of imagesTr/labelsTr (listed in the csv and curriculum.json) unless
    `settings.keep_erroneous`; failed cases are always left out.
    """
    scored = {r.case: float(r.ds) for r in results if r.error is None and r.ds is not None}
    tiers, thresholds = assign_tiers(scored, settings.config) if scored else ({}, settings.config.thresholds)
    keep = ("easy", "hard", "erroneous") if settings.keep_erroneous else ("easy", "hard")
    dataset_cases = sorted(c for c, t in tiers.items() if t in keep)
    ending = settings.file_ending
    with atomic_directory(settings.dataset_folder, overwrite=overwrite) as tmp:
        (tmp / "imagesTr").mkdir()
        (tmp / "labelsTr").mkdir()
        for case in dataset_cases:
            for image in channel_files(settings.images, case, ending):
                link_or_copy(image, tmp / "imagesTr" / image.name)
            link_or_copy(staged[case], tmp / "labelsTr" / f"{case}{ending}")
        write_json(tmp / "dataset.json", {
            **settings.dataset_json_extra, "labels": settings.labels, "numTraining": len(dataset_cases),
            "file_ending": ending, "name": settings.dataset_folder.name,
        })
        write_csv(tmp / CSV_FILE, csv_rows(settings, results, tiers))
        write_curriculum(
            tmp / CURRICULUM_FILE, {t: [c for c, ct in tiers.items() if ct == t] for t in TIERS}, dataset_cases,
            thresholds, {
                "ds_mode": settings.config.ds_mode, "tier_mode": settings.config.tier_mode,
                "refine": settings.config.refine, "trust_margin": settings.config.trust_margin,
                "quantiles": ({"easy": settings.config.quantiles.easy, "hard": settings.config.quantiles.hard}
                              if settings.config.tier_mode == "quantile" else None),
                "sources": [{"name": s.name, "kind": s.kind} for s in settings.sources],
                "erroneous_in_dataset": settings.keep_erroneous,
                "failed": {r.case: r.error for r in results if r.error is not None},
            })
        counts = {t: sum(v == t for v in tiers.values()) for t in TIERS}
        write_histogram(tmp / HISTOGRAM_FILE, list(scored.values()), thresholds,
                        f"{settings.dataset_folder.name}: " + ", ".join(f"{n} {t}" for t, n in counts.items()))
    return tiers
