"""Does one long `nnunet-cdl predict` call hold steady? Resident memory case by case over many phantoms, with one
truncated case in the middle that must fail alone (docs/inference.md, "Errors").

    python scripts/bench_predict_memory.py                      # 50 small-preset phantoms, the reference model
    python scripts/bench_predict_memory.py --cases 20 --model MODEL_FOLDER

Writes `<work>/memory.csv` (case, status, rss_mb after the case, peak_rss_mb so far) and prints the table and the
verdict: the resident memory after case `--settle` against the largest after it (growth in MiB).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from nnunet_cdl.cpu import cpu_model_name  # noqa: E402
from nnunet_cdl.io import read_json, write_volume  # noqa: E402
from nnunet_cdl.synth.phantom import synth_case  # noqa: E402

GROWTH_LIMIT_MB = 50.0
"""Resident memory may not grow by more than this after the first `--settle` cases."""


def make_cases(folder: Path, count: int, preset: str, seed: int, bad_index: int) -> list[str]:
    """`count` phantoms as nnU-Net inputs; case `bad_index` is cut in half (a truncated .nii.gz)."""
    folder.mkdir(parents=True)
    names = []
    for index in range(count):
        name = f"case_{index:03d}"
        image, _, geometry = synth_case(preset, seed + index)
        path = folder / f"{name}_0000.nii.gz"
        write_volume(path, image, geometry)
        if index == bad_index:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        names.append(name)
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "light-unet-phantoms")
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--preset", default="small", help="phantom preset (nnunet-cdl synth --preset)")
    parser.add_argument("--seed", type=int, default=7000)
    parser.add_argument("--settle", type=int, default=5, help="cases after which memory must stay flat")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("bench_work/memory"))
    args = parser.parse_args()
    if not (args.model / "fold_0" / "checkpoint_final.pth").is_file():
        print(f"{args.model}: no fold_0/checkpoint_final.pth; train one with scripts/train_reference.py or pass "
              "--model", file=sys.stderr)
        return 2
    shutil.rmtree(args.work, ignore_errors=True)
    bad_index = args.cases // 2
    print(f"1/2 {args.cases} {args.preset} phantoms (case {bad_index} truncated) in {args.work}", flush=True)
    names = make_cases(args.work / "images", args.cases, args.preset, args.seed, bad_index)
    print(f"2/2 one nnunet-cdl predict call ({cpu_model_name()}, {args.threads} threads)", flush=True)
    records = args.work / "records"
    command = [str(Path(sys.executable).with_name("nnunet-cdl")), "predict", "-i", str(args.work / "images"),
               "-o", str(args.work / "predictions"), "-m", str(args.model), "-f", "0", "--threads",
               str(args.threads), "--record", str(records), "--disable_progress_bar"]
    result = subprocess.run(command, capture_output=True, text=True)
    rows = []
    for name in names:
        record = read_json(records / f"{name}.json")
        rows.append({"case": name, "status": record["status"], "rss_mb": record["rss_mb"],
                     "peak_rss_mb": record["peak_rss_mb"]})
    with (args.work / "memory.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print("case      status  rss_mb  peak_rss_mb")
    for row in rows:
        print(f"{row['case']}  {row['status']:<6}  {row['rss_mb']:>6.0f}  {row['peak_rss_mb']:>11.0f}")
    ok_rows = [r for r in rows if r["status"] == "ok"]
    settled = [r["rss_mb"] for r in rows[args.settle:] if r["status"] == "ok"]
    growth = max(settled) - rows[args.settle - 1]["rss_mb"] if settled else float("nan")
    failed = [r["case"] for r in rows if r["status"] != "ok"]
    steady = growth <= GROWTH_LIMIT_MB
    isolated = failed == [names[bad_index]] and len(ok_rows) == args.cases - 1 and result.returncode == 2
    print(f"resident memory after case {args.settle}: {rows[args.settle - 1]['rss_mb']:.0f} MiB, largest after it "
          f"{max(settled):.0f} MiB: growth {growth:.0f} MiB ({'steady' if steady else 'GROWS'}, limit "
          f"{GROWTH_LIMIT_MB:.0f}); failed: {', '.join(failed) or 'none'} "
          f"({'only the truncated case' if isolated else 'NOT only the truncated case'}); exit {result.returncode}")
    return 0 if steady and isolated else 1


if __name__ == "__main__":
    sys.exit(main())
