"""The evaluation report: `metrics.csv` (long form), `summary.json` (statistics) and `metrics.png` (box plots)."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nnunet_cdl.evaluation.cases import DECIMALS, CaseResult
from nnunet_cdl.evaluation.metrics import NSD_MIN_DSC
from nnunet_cdl.io import atomic_path
from nnunet_cdl.labels import NSD_TOLERANCE_MM, ORGAN_IDS, ORGANS, TUBE_ORGANS

METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
FIGURE_FILE = "metrics.png"
METRICS_COLUMNS = ("case", "organ", "dsc", "nsd", "organ_name")
"""`metrics.csv` columns: case id, organ label id, DSC, NSD, organ name; one row per case and organ."""


def scored(results: Sequence[CaseResult]) -> list[CaseResult]:
    """The results that have scores (evaluated cases and missing predictions, not errors), in order."""
    return [r for r in results if r.status != "error"]


def write_metrics_csv(path: str | os.PathLike[str], results: Sequence[CaseResult]) -> None:
    """Write `metrics.csv` atomically; an undefined score (one-slice tube) is written as `nan`."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(METRICS_COLUMNS)
        for result in scored(results):
            for organ, (dsc, nsd) in result.scores.items():
                writer.writerow([result.case, organ, format_score(dsc), format_score(nsd), ORGANS[organ]])


def format_score(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.{DECIMALS}f}"


def statistics(values: Sequence[float]) -> dict[str, float | int | None]:
    """Mean, median and population standard deviation of the defined (non-NaN) values, with counts."""
    array = np.asarray(values, dtype=float)
    defined = array[~np.isnan(array)]
    if defined.size == 0:
        return {"mean": None, "median": None, "std": None, "n": 0, "n_undefined": int(array.size)}
    return {
        "mean": round(float(defined.mean()), DECIMALS),
        "median": round(float(np.median(defined)), DECIMALS),
        "std": round(float(defined.std()), DECIMALS),
        "n": int(defined.size),
        "n_undefined": int(array.size - defined.size),
    }


def organ_values(results: Sequence[CaseResult], organ: int, metric: int) -> list[float]:
    """One metric (0: DSC, 1: NSD) of one organ over the scored cases."""
    return [r.scores[organ][metric] for r in scored(results)]


def case_means(results: Sequence[CaseResult], metric: int) -> list[float]:
    """Per scored case, the mean of one metric (0: DSC, 1: NSD) over its defined organ scores."""
    means = []
    for result in scored(results):
        values = [scores[metric] for scores in result.scores.values() if not math.isnan(scores[metric])]
        means.append(float(np.mean(values)) if values else math.nan)
    return means


def build_summary(
    results: Sequence[CaseResult], unmatched_predictions: Sequence[str], efficiency: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The `summary.json` content: per-organ and overall statistics, missing / unmatched / failed cases.

    "overall" is over cases: each case's mean over its 13 organs, then mean, median and std of those.
    """
    summary: dict[str, Any] = {
        "num_cases": len(results),
        "num_scored": len(scored(results)),
        "missing_predictions": [r.case for r in results if r.status == "missing"],
        "unmatched_predictions": list(unmatched_predictions),
        "errors": {r.case: r.error for r in results if r.status == "error"},
        "rules": {
            "nsd_tolerance_mm": {str(organ): NSD_TOLERANCE_MM[organ] for organ in ORGAN_IDS},
            "tube_organs": list(TUBE_ORGANS),
            "nsd_min_dsc": NSD_MIN_DSC,
            "decimals": DECIMALS,
            "std": "population (ddof=0)",
        },
        "organs": {
            str(organ): {
                "name": ORGANS[organ],
                "dsc": statistics(organ_values(results, organ, 0)),
                "nsd": statistics(organ_values(results, organ, 1)),
            }
            for organ in ORGAN_IDS
        },
        "overall": {"dsc": statistics(case_means(results, 0)), "nsd": statistics(case_means(results, 1))},
    }
    if efficiency is not None:
        summary["efficiency"] = dict(efficiency)
    return summary


def plot_report(
    path: str | os.PathLike[str],
    results: Sequence[CaseResult],
    efficiency_rows: Sequence[Mapping[str, Any]] | None = None,
) -> None:
    """Write a PNG with per-organ DSC and NSD box plots (and wall time / peak memory per case when given)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    panels = 3 if efficiency_rows else 2
    fig, axes = plt.subplots(panels, 1, figsize=(11, 3.6 * panels), constrained_layout=True)
    names = [f"{organ} {ORGANS[organ]}" for organ in ORGAN_IDS]
    for ax, metric, title in ((axes[0], 0, "DSC"), (axes[1], 1, "NSD")):
        data = [[v for v in organ_values(results, organ, metric) if not math.isnan(v)] for organ in ORGAN_IDS]
        ax.boxplot([d if d else [math.nan] for d in data], showmeans=True)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(title)
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(f"{title} per organ ({len(scored(results))} cases)")
    if efficiency_rows:
        plot_efficiency(axes[2], efficiency_rows)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def plot_efficiency(ax: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """Wall time (bars, left axis) and peak memory of the process tree (dots, right axis) per case."""
    cases = [str(row["case"]) for row in rows]
    positions = np.arange(len(cases))
    ax.bar(positions, [float(row["wall_s"]) for row in rows], color="tab:blue", alpha=0.7)
    ax.set_ylabel("wall time (s)", color="tab:blue")
    ax.set_xticks(positions, cases, rotation=30, ha="right", fontsize=8)
    memory_ax = ax.twinx()
    memory_ax.plot(positions, [float(row["peak_rss_mb"]) for row in rows], "o", color="tab:red")
    memory_ax.set_ylabel("peak RSS of the process tree (MB)", color="tab:red")
    memory_ax.set_ylim(bottom=0)
    ax.set_title("efficiency per case")
