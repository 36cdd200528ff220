"""What DICOM costs the predictor: finding and checking a 300-slice 512x512 CT series, reading it (and handing it
to nnU-Net's reader through a temporary NIfTI), and writing a DICOM SEG of its organs. No network involved.

    python scripts/bench_dicom.py                 # one flare phantom of 300 slices, 3 repeats, median seconds
    python scripts/bench_dicom.py --slices 1000

The predictor's per-case record reports the same stages for real runs (`reading`, `writing` in `--record`).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from nnunet_cdl.cpu import cpu_model_name  # noqa: E402
from nnunet_cdl.dicom.seg import write_dicom_seg  # noqa: E402
from nnunet_cdl.dicom.series import find_series  # noqa: E402
from nnunet_cdl.inference.pipeline import series_as_nifti  # noqa: E402
from nnunet_cdl.synth.dicom import write_ct_series  # noqa: E402
from nnunet_cdl.synth.phantom import synth_case  # noqa: E402


def timed(function, repeats: int) -> tuple[float, object]:
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--work", type=Path, default=Path("bench_work/dicom"))
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    image, labels, geometry = synth_case("flare", args.seed, num_slices=args.slices)
    spacing = geometry.spacing_zyx
    print(f"phantom {image.shape} (z, y, x), spacing {tuple(round(s, 3) for s in spacing)} mm; {cpu_model_name()}",
          flush=True)
    write_ct_series(args.work / "series", image, spacing_zyx=spacing)
    rows = []
    find, series = timed(lambda: find_series(args.work), args.repeats)
    rows.append(("find and check the series (headers)", find))
    series = series[0]
    read, _ = timed(series.read, args.repeats)
    rows.append(("read the pixels (HU)", read))
    with tempfile.TemporaryDirectory() as folder:
        handoff, _ = timed(lambda: series_as_nifti(series, folder), args.repeats)
    rows.append(("read + temporary NIfTI for nnU-Net's reader", handoff))
    seg, _ = timed(lambda: write_dicom_seg(args.work / "seg.dcm", series, labels.astype(np.uint8), "bench"),
                   args.repeats)
    rows.append(("write the DICOM SEG (13 organs)", seg))
    width = max(len(name) for name, _ in rows)
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:6.2f} s")
    print(f"{'reading stage (find + read + hand-off)':<{width}}  {find + handoff:6.2f} s; writing stage {seg:.2f} s "
          f"(SEG {(args.work / 'seg.dcm').stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
