"""Benchmark Swin-X Seg on the CPU: parameters, GFLOPs and time of one patch forward (fp32, bf16 autocast).

With `--case IMAGE` it also estimates the sliding-window time of that scan as nnU-Net's predictor runs it
(1 mm spacing, 96^3 windows, step 0.5, no mirroring): windows x measured time per window. Resampling and export
are not included. Weights are random: the time does not depend on them.

    .venv/bin/python scripts/bench_swinxseg.py --threads 2 [--case imagesTs/Case_00007_0000.nii.gz]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import SimpleITK as sitk
import torch
from torch.utils.flop_counter import FlopCounterMode

from nnunet_cdl.networks.swinxseg import SwinXSeg, count_parameters


def time_forward(network: torch.nn.Module, patch: tuple[int, int, int], dtype: str, repeats: int) -> float:
    """Median seconds of one forward of a (1, 1, *patch) input, after one warm-up run."""
    x = torch.randn(1, 1, *patch)
    times = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
        for index in range(repeats + 1):
            start = time.perf_counter()
            network(x)
            if index:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def sliding_windows(image: str, spacing_mm: float, patch: tuple[int, int, int], step: float = 0.5) -> tuple[list, int]:
    """Shape (z, y, x) of `image` resampled to `spacing_mm` and the number of windows nnU-Net places on it."""
    from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

    reader = sitk.ImageFileReader()
    reader.SetFileName(image)
    reader.ReadImageInformation()
    size_zyx = np.array(reader.GetSize()[::-1], dtype=float)
    spacing_zyx = np.array(reader.GetSpacing()[::-1], dtype=float)
    shape = [max(int(round(s)), p) for s, p in zip(size_zyx * spacing_zyx / spacing_mm, patch)]
    steps = compute_steps_for_sliding_window(shape, patch, step)
    return shape, int(np.prod([len(s) for s in steps]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--patch", type=int, nargs=3, default=[96, 96, 96])
    parser.add_argument("--classes", type=int, default=14)
    parser.add_argument("--case", help="image whose sliding-window time to estimate (1 mm, step 0.5)")
    args = parser.parse_args()
    if args.case and not os.path.isfile(args.case):
        parser.error(f"--case {args.case}: file not found")
    torch.set_num_threads(args.threads)
    patch = tuple(args.patch)
    network = SwinXSeg(1, args.classes).eval()
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        network(torch.zeros(1, 1, *patch))
    result = {
        "parameters": count_parameters(network),
        "gflops_per_patch": round(counter.get_total_flops() / 1e9, 1),
        "patch": list(patch),
        "threads": args.threads,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "seconds_per_patch_fp32": round(time_forward(network, patch, "fp32", args.repeats), 3),
        "seconds_per_patch_bf16": round(time_forward(network, patch, "bf16", args.repeats), 3),
    }
    if args.case:
        shape, windows = sliding_windows(args.case, 1.0, patch)
        result.update(case=args.case, shape_at_1mm=shape, windows=windows,
                      estimated_sliding_window_s_fp32=round(windows * result["seconds_per_patch_fp32"], 1),
                      estimated_sliding_window_s_bf16=round(windows * result["seconds_per_patch_bf16"], 1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
