"""nibabel reading and writing `.nii.gz` with zlib (Python's gzip) against ISA-L (`nnunet_cdl.fast_gzip`).

Alternates the two `--repeats` times in one process (the machine's load hits both alike) on one file, e.g. the
1000-slice held-out phantom of `scripts/train_reference.py`, and checks that the arrays read are identical.

    python scripts/bench_gzip.py bench_work/reference/heldout/images/heldout_07_1000_0000.nii.gz --repeats 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from nnunet_cdl import fast_gzip


def timed_read_write(path: Path, out: Path) -> tuple[float, float, np.ndarray]:
    """(read s, write s, array) of one nibabel load + full read and one save of the same image."""
    start = time.perf_counter()
    image = nib.load(path)
    array = np.asanyarray(image.dataobj)
    read = time.perf_counter() - start
    start = time.perf_counter()
    nib.save(nib.Nifti1Image(array, image.affine, image.header), out)
    return read, time.perf_counter() - start, array


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", type=Path)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, list] = {"zlib": [], "isal": []}
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "copy.nii.gz"
        reference = None
        for _ in range(args.repeats):
            for name in ("zlib", "isal"):
                if name == "isal":
                    assert fast_gzip.install(), "python-isal is not installed"
                else:
                    fast_gzip.uninstall()
                read, write, array = timed_read_write(args.image, out)
                reference = array if reference is None else reference
                assert np.array_equal(array, reference)
                results[name].append({"read_s": round(read, 2), "write_s": round(write, 2),
                                      "written_mb": round(out.stat().st_size / 2**20, 1)})
    best = {name: {key: min(r[key] for r in runs) for key in runs[0]} for name, runs in results.items()}
    report = {"image": str(args.image), "shape": list(reference.shape), "runs": results, "best": best,
              "read_speedup": round(best["zlib"]["read_s"] / best["isal"]["read_s"], 2),
              "write_speedup": round(best["zlib"]["write_s"] / best["isal"]["write_s"], 2)}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
