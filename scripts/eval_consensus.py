"""Consensus in every labeler regime: written labels' true Dice, tiers and DS ranking, per refine / DS mode.

For each regime of `nnunet-cdl synth --regime` (shared-bias, independent, failing-labeler, weak-reference) and
each seed, generates a phantom dataset (the manifest holds every candidate's true Dice), runs `nnunet-cdl
consensus` once per mode (refine x DS mode, `--keep-erroneous` so every case has a written label; in the
weak-reference regime the weaker source is passed as `--reference`, as the paper passes its own model) and
compares the written labels with the clean phantom labels:

- `written`: mean true multi-organ Dice of the written labels over all cases, `written_trained` over the cases
  tiered easy or hard, against `best_candidate`: an oracle that picks each case's truly best candidate;
- the erroneous tier against the truth: precision and recall of "erroneous" for "written label true Dice < 0.80",
  and `good_kept`: % of the cases with written true Dice >= 0.95 that are not tiered erroneous;
- Spearman(DS, written label true Dice) and Spearman(DS, mean candidate true Dice);
- `cases_per_min` of the consensus run (small phantoms; `scripts/bench_consensus.py` measures 512x512x300).

`--real-label LABEL --real-image CT` replaces the phantoms by real anatomy: every case is that CT with that label
map as the truth (for example TotalSegmentator's labels of `../shared/data/totalseg/ct.nii.gz`), and the
simulated labelers of the regime corrupt it afresh per case (groups, bands and failures as for phantoms).

    python scripts/eval_consensus.py --work bench_work/eval_consensus --cases 30 --seeds 1 2 --num-processes 2 \\
        --json bench_work/eval_consensus/results.json --markdown bench_work/eval_consensus/table.md
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from nnunet_cdl.cli import main as cli_main
from nnunet_cdl.consensus import TRAINABLE_TIERS
from nnunet_cdl.io import NIFTI_ENDING, read_volume, write_json, write_volume
from nnunet_cdl.labels import nnunet_labels_dict
from nnunet_cdl.synth import generate_dataset
from nnunet_cdl.synth.dataset import assign_groups, source_names, write_pseudolabels
from nnunet_cdl.synth.labelers import regime_names, source_role

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_selection import refined_true_dice  # noqa: E402  (the written labels' true Dice, case by case)

MODES: tuple[tuple[str, str], ...] = (
    ("select", "others"), ("vote", "trusted"), ("staple", "trusted"), ("trusted-vote", "others"),
    ("trusted-vote", "trusted"),
)
"""(--refine, --ds-mode) pairs: the paper's selection with the former default DS, the fusions, the new default."""
BAD_DICE = 0.80
GOOD_DICE = 0.95


def real_anatomy_dataset(image: Path, label: Path, folder: Path, cases: int, seed: int, regime: str,
                         num_sources: int = 3) -> Path:
    """A raw dataset of `cases` copies of one real CT and label map, each with fresh simulated pseudo-labels."""
    ct, truth = read_volume(image), read_volume(label)
    if ct.array.shape != truth.array.shape or not ct.geometry.matches(truth.geometry):
        raise SystemExit(f"{label}: shape or geometry differs from {image}'s")
    truth_map = truth.array.astype(np.uint8)
    shutil.rmtree(folder, ignore_errors=True)
    groups = assign_groups(cases, seed)
    sources = tuple(source_names(num_sources))
    entries = {}
    for index, group in enumerate(groups):
        case = f"Real_{index + 1:05d}"
        write_volume(folder / "imagesTr" / f"{case}_0000{NIFTI_ENDING}", ct.array, ct.geometry)
        write_volume(folder / "labelsTr" / f"{case}{NIFTI_ENDING}", truth_map, truth.geometry)
        records, failing = write_pseudolabels(truth_map, truth.geometry, group, sources, seed, index, regime,
                                              folder, case)
        entries[case] = {"split": "train", "group": group, "sources": records, "failing_source": failing}
    write_json(folder / "dataset.json", {"channel_names": {"0": "CT"}, "labels": nnunet_labels_dict(),
                                         "numTraining": cases, "file_ending": NIFTI_ENDING})
    write_json(folder / "manifest.json", {
        "regime": regime, "seed": seed, "truth": str(label), "sources": sources, "cases": entries,
        "reference_sources": [s for k, s in enumerate(sources) if source_role(regime, k, num_sources) == "reference"],
    })
    return folder


def mode_metrics(manifest: dict, rows: dict[str, dict], written: dict[str, float]) -> dict:
    """Every number of one (regime, seed, mode) row of the table."""
    cases = [c for c, row in rows.items() if not row["error"]]
    truth = {c: [float(s["dice"]) for s in manifest["cases"][c]["sources"].values()] for c in cases}
    ds = np.array([float(rows[c]["ds"]) for c in cases])
    dice = np.array([written[c] for c in cases])
    erroneous = np.array([rows[c]["tier"] == "erroneous" for c in cases])
    bad = dice < BAD_DICE
    good = dice >= GOOD_DICE
    trained = np.array([rows[c]["tier"] in TRAINABLE_TIERS for c in cases])
    return {
        "cases": len(cases),
        "failed": len(rows) - len(cases),
        "written": round(float(dice.mean()), 4),
        "written_trained": round(float(dice[trained].mean()), 4) if trained.any() else None,
        "best_candidate": round(float(np.mean([max(v) for v in truth.values()])), 4),
        "best_candidate_trained": round(float(np.mean([max(truth[c]) for c, t in zip(cases, trained) if t])), 4)
        if trained.any() else None,
        "erroneous": int(erroneous.sum()),
        "truly_bad": int(bad.sum()),
        "erroneous_precision": round(float((erroneous & bad).sum() / erroneous.sum()), 3) if erroneous.any() else None,
        "erroneous_recall": round(float((erroneous & bad).sum() / bad.sum()), 3) if bad.any() else None,
        "good_kept_percent": round(100.0 * float((good & ~erroneous).sum() / good.sum()), 1) if good.any() else None,
        "spearman_ds_written": round(float(spearmanr(ds, dice).statistic), 4),
        "spearman_ds_candidates": round(float(spearmanr(ds, [np.mean(truth[c]) for c in cases]).statistic), 4),
        "excluded_cases": sum(1 for c in cases if rows[c]["excluded"]),
    }


def run_modes(dataset: Path, out: Path, first_id: int, num_processes: int) -> dict[str, dict]:
    """Consensus once per mode on `dataset`; mode name -> metrics (with the run's cases per minute)."""
    manifest = json.loads((dataset / "manifest.json").read_text())
    references = set(manifest.get("reference_sources", []))
    labels = [str(dataset / "pseudolabels" / s) for s in manifest["sources"] if s not in references]
    refs = [str(dataset / "pseudolabels" / s) for s in manifest["sources"] if s in references]
    results = {}
    for offset, (refine, ds_mode) in enumerate(MODES):
        dataset_id = first_id + offset
        argv = ["consensus", "--images", str(dataset / "imagesTr"), "--labels", *labels,
                *(["--reference", *refs] if refs else []), "--out", str(out), "--dataset-id", str(dataset_id),
                "--dataset-name", f"{refine.replace('-', '')}{ds_mode}", "--refine", refine, "--ds-mode", ds_mode,
                "--keep-erroneous", "--num-processes", str(num_processes), "--overwrite"]
        start = time.perf_counter()
        code = cli_main(argv)
        seconds = time.perf_counter() - start
        if code not in (0, 1):
            raise SystemExit(f"consensus failed ({code}): {' '.join(argv)}")
        folder = next(out.glob(f"Dataset{dataset_id:03d}_*"))
        with open(folder / "consensus.csv") as handle:
            rows = {row["case"]: row for row in csv.DictReader(handle)}
        metrics = mode_metrics(manifest, rows, refined_true_dice(dataset, folder))
        results[f"{refine}/{ds_mode}"] = {**metrics, "cases_per_min": round(60.0 * len(rows) / seconds, 1)}
        print(f"  {refine}/{ds_mode}: written {metrics['written']:.4f} (best candidate "
              f"{metrics['best_candidate']:.4f}), Spearman {metrics['spearman_ds_written']:.3f}", flush=True)
    return results


def targets(results: dict[str, dict], default: str) -> dict[str, bool]:
    """The issue's targets for the default mode of one (regime, seed)."""
    row = results[default]
    return {
        "written >= best candidate": row["written"] >= row["best_candidate"],
        "written >= select and vote": row["written"] >= max(results["select/others"]["written"],
                                                            results["vote/trusted"]["written"]),
        "good kept >= 95 %": row["good_kept_percent"] is None or row["good_kept_percent"] >= 95.0,
        "Spearman(DS, written) >= 0.85": row["spearman_ds_written"] >= 0.85,
    }


def markdown(table: dict[str, dict[str, dict]]) -> str:
    """One line per regime, seed and mode."""
    lines = ["| regime | seed | refine / DS | written true Dice (all / trained) | best candidate (all / trained) | "
             "erroneous: precision / recall | good kept | Spearman DS vs written / vs candidates | cases/min |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, modes in table.items():
        regime, seed = key.rsplit("/seed", 1)
        for mode, r in modes.items():
            lines.append(
                f"| {regime} | {seed} | `{mode}` | {r['written']:.4f} / {r['written_trained'] or float('nan'):.4f} | "
                f"{r['best_candidate']:.4f} / {r['best_candidate_trained'] or float('nan'):.4f} | "
                f"{r['erroneous_precision']} / {r['erroneous_recall']} ({r['erroneous']} tiered, {r['truly_bad']} "
                f"bad) | {r['good_kept_percent']} % | {r['spearman_ds_written']:.3f} / "
                f"{r['spearman_ds_candidates']:.3f} | {r['cases_per_min']} |")
    return "\n".join(lines) + "\n"


def summary_markdown(table: dict[str, dict[str, dict]]) -> str:
    """Per regime and mode, the mean over the seeds: written vs best-candidate Dice, tiers, Spearman."""
    lines = ["| regime | refine / DS | written, trained cases (best candidate) | written, all cases (best candidate) | "
             "erroneous precision / recall | good kept | Spearman DS vs written |", "|---|---|---|---|---|---|---|"]
    regimes = sorted({key.rsplit("/seed", 1)[0] for key in table}, key=list(regime_names()).index)
    for regime in regimes:
        runs = [modes for key, modes in table.items() if key.rsplit("/seed", 1)[0] == regime]
        for mode in runs[0]:
            rows = [run[mode] for run in runs]

            def mean(name: str) -> float:
                values = [r[name] for r in rows if r[name] is not None]
                return float(np.mean(values)) if values else float("nan")

            lines.append(f"| {regime} | `{mode}` | {mean('written_trained'):.4f} ({mean('best_candidate_trained'):.4f})"
                         f" | {mean('written'):.4f} ({mean('best_candidate'):.4f}) | "
                         f"{mean('erroneous_precision'):.2f} / {mean('erroneous_recall'):.2f} | "
                         f"{mean('good_kept_percent'):.1f} % | {mean('spearman_ds_written'):.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--cases", type=int, default=30, help="training cases per dataset")
    p.add_argument("--preset", default="small")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    p.add_argument("--regimes", nargs="+", default=list(regime_names()), choices=regime_names())
    p.add_argument("--num-processes", type=int, default=1)
    p.add_argument("--real-label", type=Path, default=None, help="real label map to use as the truth of every case")
    p.add_argument("--real-image", type=Path, default=None, help="the CT of --real-label")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--markdown", type=Path, default=None)
    args = p.parse_args(argv)
    if (args.real_label is None) != (args.real_image is None):
        p.error("--real-label and --real-image go together")
    default = "trusted-vote/trusted"
    table: dict[str, dict[str, dict]] = {}
    checks: dict[str, dict[str, bool]] = {}
    for r_index, regime in enumerate(args.regimes):
        for s_index, seed in enumerate(args.seeds):
            key = f"{regime}/seed{seed}"
            base = 100 + 10 * (r_index * len(args.seeds) + s_index)  # raw dataset id; its modes use base + 1 ...
            name = f"Eval{regime.replace('-', '')}{seed}"
            if args.real_label is not None:
                print(f"{key}: {args.cases} cases of the real anatomy of {args.real_label}", flush=True)
                dataset = real_anatomy_dataset(args.real_image, args.real_label,
                                               args.work / "raw" / f"Dataset{base:03d}_{name}", args.cases, seed,
                                               regime)
            else:
                print(f"{key}: generating {args.cases} {args.preset} phantoms", flush=True)
                dataset = generate_dataset(args.work / "raw", base, args.cases, num_test=0, preset=args.preset,
                                           seed=seed, num_processes=args.num_processes, overwrite=True,
                                           regime=regime, name=name)
            table[key] = run_modes(dataset, args.work / "consensus", base + 1, args.num_processes)
            checks[key] = targets(table[key], default)
    results = {"preset": args.preset, "real_label": str(args.real_label) if args.real_label else None,
               "cases": args.cases, "modes": [f"{r}/{d}" for r, d in MODES],
               "default": default, "table": table, "targets_of_the_default": checks}
    print(json.dumps(checks, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(f"Mean over seeds {args.seeds}:\n\n{summary_markdown(table)}\nPer seed:\n\n"
                                 f"{markdown(table)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
