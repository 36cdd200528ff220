"""Benchmark `synth_case` on FLARE-size phantoms (512x512 in-plane) and one pseudo-label source.

Usage: python scripts/bench_synth.py [--slices 24 300 1000] [--seed 0] [--source]
Prints wall and CPU seconds per case; CPU time is the robust number on a shared machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from nnunet_cdl.synth import synth_case
from nnunet_cdl.synth.labelers import simulate_source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, nargs="+", default=[24, 300, 1000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--source", action="store_true", help="also time one 'hard' pseudo-label source")
    args = parser.parse_args()
    print(f"{'slices':>7} {'shape (z,y,x)':>16} {'spacing x,y,z (mm)':>22} {'wall s':>7} {'cpu s':>7}"
          f" {'organs':>6}" + (f" {'source wall s':>13}" if args.source else ""))
    for n in args.slices:
        wall, cpu = time.perf_counter(), time.process_time()
        image, label, geometry = synth_case("flare", args.seed, num_slices=n)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        organs = int(np.count_nonzero(np.bincount(label.ravel(), minlength=14)[1:]))
        spacing = ",".join(f"{s:.2f}" for s in geometry.spacing)
        line = f"{n:>7} {'x'.join(map(str, image.shape)):>16} {spacing:>22} {wall:>7.2f} {cpu:>7.2f} {organs:>6}"
        if args.source:
            start = time.perf_counter()
            simulate_source(label, geometry.spacing_zyx, "hard", 0, args.seed)
            line += f" {time.perf_counter() - start:>13.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
