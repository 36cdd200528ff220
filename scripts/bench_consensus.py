"""Speed and memory of `nnunet-cdl consensus` on FLARE-sized labels (512x512x`--slices`, three candidates).

Writes `--cases` cases built from `--phantoms` flare-preset phantoms (`synth_case("flare", seed, num_slices)`),
each with three candidates corrupted by `corrupt_label` with different seeds, then runs the consensus command in a
child process and reports cases per minute and the peak resident memory of the run (sampled every 50 ms, summed
over its processes). A
per-stage timing of one case (read, clean, Dice, trust, fusion of `--refine`, write) shows where the time goes.

    python scripts/bench_consensus.py --work bench_work/consensus --cases 6 --num-processes 1 [--refine select]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil

from nnunet_cdl.consensus.case import case_scores, fuse, load_candidate
from nnunet_cdl.consensus.tiers import REFINE_MODES, load_config
from nnunet_cdl.io import write_volume
from nnunet_cdl.synth import corrupt_label, synth_case

SEVERITIES = ({"boundary": 0.1, "stray": 0.2}, {"boundary": 0.15, "shift": 0.05}, {"boundary": 0.2, "blobs": 0.2})


def make_cases(root: Path, cases: int, phantoms: int, slices: int) -> Path:
    """imagesTr and pseudo/<source>/ for `cases` cases; returns the imagesTr folder. Skips existing files."""
    images = root / "Dataset990_Bench" / "imagesTr"
    images.mkdir(parents=True, exist_ok=True)
    for p in range(phantoms):
        group = list(range(p, cases, phantoms))
        if all((images / f"bench_{i:03d}_0000.nii.gz").is_file() for i in group):
            continue
        image, label, geometry = synth_case("flare", 1000 + p, num_slices=slices)
        first = images / f"bench_{group[0]:03d}_0000.nii.gz"
        write_volume(first, image, geometry)
        for i in group:
            if i != group[0]:
                (images / f"bench_{i:03d}_0000.nii.gz").unlink(missing_ok=True)
                os.link(first, images / f"bench_{i:03d}_0000.nii.gz")
            for s, severities in enumerate(SEVERITIES):
                noisy, _ = corrupt_label(label, np.random.default_rng([i, s]), severities, geometry.spacing_zyx)
                write_volume(root / "pseudo" / f"source_{s + 1}" / f"bench_{i:03d}.nii.gz", noisy, geometry)
        print(f"phantom {p + 1}/{phantoms} written", file=sys.stderr)
    return images


def stage_times(root: Path, refine: str) -> dict[str, float]:
    """Seconds per stage of one case as `consensus` runs it (first case), in this process."""
    files = [root / "pseudo" / f"source_{s + 1}" / "bench_000.nii.gz" for s in range(3)]
    t0 = time.perf_counter()
    loaded = [load_candidate(f, tuple(range(14))) for f in files]
    t1 = time.perf_counter()
    labels = [label for label, *_ in loaded]
    config = load_config()
    scores = case_scores(labels, 14, config.trust_margin, (True, True, True), config.ds_mode, (0, 1, 2))
    t2 = time.perf_counter()
    fuse(refine, labels, 14, scores, (True, True, True))
    t3 = time.perf_counter()
    write_volume(root / "stage_test.nii.gz", loaded[0][0], loaded[0][1])
    t4 = time.perf_counter()
    (root / "stage_test.nii.gz").unlink()
    return {"read_and_clean_3_labels_s": round(t1 - t0, 2), "voxels_cleaned": [n for _, _, n, _ in loaded],
            "pairwise_dice_3_pairs_and_trust_s": round(t2 - t1, 2), f"fusion_{refine}_s": round(t3 - t2, 2),
            "write_refined_label_s": round(t4 - t3, 2)}


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_measured(command: list[str]) -> tuple[int, float, float, float, str]:
    """Run `command`; (exit code, wall s, CPU s, peak summed RSS of it and its descendants in MiB, stderr).

    CPU seconds (user + system of the command and every process it waited for) do not grow when other jobs
    share the machine; wall seconds do.
    """
    cpu_before = children_cpu_s()
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            peak = max(peak, sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]))
        except psutil.Error:
            pass
        time.sleep(0.05)
    wall = time.perf_counter() - start
    stderr = process.stderr.read() if process.stderr else ""
    return process.returncode, wall, children_cpu_s() - cpu_before, peak / 2**20, stderr


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--cases", type=int, default=6)
    p.add_argument("--phantoms", type=int, default=2, help="distinct phantoms (generation is slow; cases reuse them)")
    p.add_argument("--slices", type=int, default=300)
    p.add_argument("--num-processes", type=int, default=1)
    p.add_argument("--refine", choices=REFINE_MODES, default=load_config().refine,
                   help="default: the packaged configs/consensus.json's")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    images = make_cases(args.work, args.cases, min(args.phantoms, args.cases), args.slices)
    out = args.work / "out"
    command = [sys.executable, "-m", "nnunet_cdl.cli", "consensus", "--images", str(images), "--labels",
               *(str(args.work / "pseudo" / f"source_{s + 1}") for s in range(3)), "--out", str(out),
               "--dataset-id", "991", "--num-processes", str(args.num_processes), "--refine", args.refine,
               "--overwrite"]
    load_before = os.getloadavg()[0]
    code, wall, cpu, peak_mib, stderr = run_measured(command)
    if code not in (0, 1):
        print(stderr, file=sys.stderr)
        return code
    report = {
        "cases": args.cases, "shape_zyx": [args.slices, 512, 512], "candidates": 3,
        "num_processes": args.num_processes, "refine": args.refine, "wall_s": round(wall, 1),
        "cases_per_minute": round(60.0 * args.cases / wall, 2), "cpu_s": round(cpu, 1),
        "cases_per_cpu_minute": round(60.0 * args.cases / cpu, 2),
        "load_average_1min_before_after": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "peak_rss_mib_all_processes": round(peak_mib, 1),
        "one_case_stages": stage_times(args.work, args.refine),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
