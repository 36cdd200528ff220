"""How well does consensus pick the best pseudo-label and rank case difficulty? Measured on phantoms.

Generates a phantom dataset with `nnunet_cdl.synth.generate_dataset` (or takes one with --dataset), runs
`nnunet-cdl consensus` on its pseudo-labels, and compares with the generator's manifest (each source's true Dice):
- selection accuracy: % of cases whose selected label is a truly best candidate (target >= 95 %), also with
  "best" meaning within 0.01 Dice of the best, overall, for the trainable tiers and per generator group;
- Spearman(DS, true mean Dice of the candidates) over the cases (target >= 0.85);
- the true Dice of the selected label vs the best, the mean and the worst candidate, and tiers vs generator groups;
- the misses: how many have the selected label sharing its boundary habit (erode / dilate, from the manifest)
  with another candidate while the truly best label has the other habit, i.e. the best was outvoted by two
  labelers biased the same way, which agreement alone cannot detect;
- the written labels' true Dice against the clean phantom labels for every `--refine` mode (select, the paper's;
  vote; trusted-vote, the default; staple), all runs with `--keep-erroneous` so every case has a written label.
  `scripts/eval_consensus.py` measures the modes in every labeler regime.

    python scripts/eval_selection.py --work eval_work --cases 40 --preset small --seed 0 --num-processes 2
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from nnunet_cdl.cli import main as cli_main
from nnunet_cdl.consensus import TRAINABLE_TIERS, confusion_matrix, multi_organ_dice
from nnunet_cdl.consensus.tiers import REFINE_MODES
from nnunet_cdl.io import read_volume
from nnunet_cdl.labels import NUM_CLASSES
from nnunet_cdl.synth import generate_dataset

TIE = 1e-4
"""Manifest Dice values are rounded to 4 decimals: candidates this close to the best count as best."""


def _accuracy(records: list[dict], tolerance: float) -> float:
    """% of records whose selected label's true Dice is within `tolerance` of the best candidate's."""
    if not records:
        return float("nan")
    return round(100.0 * float(np.mean([r["selected"] >= r["best"] - tolerance for r in records])), 2)


def _summary(records: list[dict]) -> dict:
    return {
        "cases": len(records),
        "selection_accuracy_percent": _accuracy(records, TIE),
        "selection_within_0.01_percent": _accuracy(records, 0.01),
        "true_dice_selected": round(float(np.mean([r["selected"] for r in records])), 4) if records else None,
        "true_dice_best": round(float(np.mean([r["best"] for r in records])), 4) if records else None,
        "true_dice_mean_candidate": round(float(np.mean([r["mean"] for r in records])), 4) if records else None,
    }


def boundary_habit(source_record: dict) -> str | None:
    """The boundary corruption mode ("erode" / "dilate") of one manifest source record, None without one."""
    modes = [c.get("mode") for c in source_record.get("corruptions", []) if c.get("kind") == "boundary"]
    return modes[0] if modes else None


def miss_analysis(records: list[dict]) -> dict:
    """Misses (selected label not within TIE of the best) and how many were a best label outvoted by a shared habit."""
    misses = [r for r in records if r["selected"] < r["best"] - TIE]
    outvoted = [r for r in misses if r["habits"][r["selected_source"]] != r["habits"][r["best_source"]]
                and sum(h == r["habits"][r["selected_source"]] for h in r["habits"].values()) >= 2]
    return {"misses": len(misses), "best_outvoted_by_shared_habit": len(outvoted),
            "mean_true_dice_lost_per_miss": round(float(np.mean([r["best"] - r["selected"] for r in misses])), 4)
            if misses else 0.0}


def refined_true_dice(dataset: Path, consensus_folder: Path) -> dict[str, float]:
    """Case -> multi-organ Dice of the refined label in `consensus_folder`/labelsTr against the clean labelsTr."""
    return {
        label.name.removesuffix(".nii.gz"): multi_organ_dice(confusion_matrix(
            read_volume(label).array.astype(np.uint8),
            read_volume(dataset / "labelsTr" / label.name).array.astype(np.uint8), NUM_CLASSES))
        for label in sorted((consensus_folder / "labelsTr").glob("*.nii.gz"))
    }


def refinement_summary(records: list[dict], refined: dict[str, dict[str, float]]) -> dict:
    """Mean true Dice of the refined labels per refine mode, over all cases, the trained tiers and each group."""
    subsets = {"all": records, "trainable_tiers": [r for r in records if r["tier"] in TRAINABLE_TIERS],
               **{f"group_{g}": [r for r in records if r["group"] == g] for g in sorted({r["group"] for r in records})}}
    return {name: {"cases": len(subset), "best_candidate": round(float(np.mean([r["best"] for r in subset])), 4),
                   **{mode: round(float(np.mean([dice[r["case"]] for r in subset])), 4)
                      for mode, dice in refined.items()}}
            for name, subset in subsets.items() if subset}


def case_records(manifest: dict, rows: dict[str, dict]) -> list[dict]:
    """Per scored case of a consensus.csv (`rows`): tier, DS and the true Dice of the selected, best and mean
    candidate, the selected and best source, and each source's boundary habit, from the generator `manifest`."""
    records = []
    for case, row in rows.items():
        if row["error"]:
            continue
        sources = manifest["cases"][case]["sources"]
        truth = {name: float(record["dice"]) for name, record in sources.items()}
        records.append({"case": case, "group": manifest["cases"][case]["group"], "tier": row["tier"],
                        "ds": float(row["ds"]), "selected": truth[row["selected"]], "best": max(truth.values()),
                        "mean": float(np.mean(list(truth.values()))), "selected_source": row["selected"],
                        "best_source": max(truth, key=truth.get),
                        "habits": {name: boundary_habit(record) for name, record in sources.items()}})
    return records


def evaluate(records: list[dict]) -> dict:
    """Selection and ranking quality over the `case_records` of a finished consensus run."""
    ds, mean = [r["ds"] for r in records], [r["mean"] for r in records]
    rho = float(spearmanr(ds, mean).statistic) if len(ds) > 2 else float("nan")
    confusion: dict[str, dict[str, int]] = {}
    for r in records:
        confusion.setdefault(r["group"], {}).setdefault(r["tier"], 0)
        confusion[r["group"]][r["tier"]] += 1
    trained = [r for r in records if r["tier"] in TRAINABLE_TIERS]
    return {
        **_summary(records),
        "spearman_ds_vs_true_mean_dice": round(rho, 4),
        "trainable_tiers": _summary(trained),
        "by_generator_group": {g: _summary([r for r in records if r["group"] == g]) for g in sorted(confusion)},
        "generator_group_vs_tier": confusion,
        "miss_analysis": miss_analysis(records),
        "miss_analysis_trainable_tiers": miss_analysis(trained),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="folder for the generated dataset and consensus output")
    p.add_argument("--dataset", type=Path, default=None, help="an existing phantom DatasetNNN folder (skip generation)")
    p.add_argument("--cases", type=int, default=40, help="training cases to generate")
    p.add_argument("--preset", default="small")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sources", type=int, default=3)
    p.add_argument("--dataset-id", type=int, default=801)
    p.add_argument("--ds-mode", default="others", choices=("others", "paper"))
    p.add_argument("--num-processes", type=int, default=1)
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    dataset = args.dataset or generate_dataset(args.work / "raw", args.dataset_id, args.cases, num_test=0,
                                               preset=args.preset, seed=args.seed, num_sources=args.sources,
                                               num_processes=args.num_processes, overwrite=True)
    sources = sorted((dataset / "pseudolabels").iterdir())
    out = args.work / "consensus"
    folders = {}
    for offset, mode in enumerate(REFINE_MODES, start=1):
        code = cli_main(["consensus", "--images", str(dataset / "imagesTr"), "--labels", *map(str, sources),
                         "--out", str(out), "--dataset-id", str(args.dataset_id + offset), "--ds-mode", args.ds_mode,
                         "--refine", mode, "--keep-erroneous", "--num-processes", str(args.num_processes),
                         "--overwrite"])
        if code not in (0, 1):
            return code
        folders[mode] = next(out.glob(f"Dataset{args.dataset_id + offset:03d}_*"))
    manifest = json.loads((dataset / "manifest.json").read_text())
    with open(folders["select"] / "consensus.csv") as handle:
        rows = {row["case"]: row for row in csv.DictReader(handle)}
    records = case_records(manifest, rows)
    refined = {mode: refined_true_dice(dataset, folder) for mode, folder in folders.items()}
    results = {"dataset": str(dataset), "preset": manifest["preset"], "seed": manifest["seed"],
               "ds_mode": args.ds_mode, "failed": sum(1 for row in rows.values() if row["error"]),
               **evaluate(records), "refined_label_true_dice": refinement_summary(records, refined)}
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
