"""Seconds per window of every backend, on this CPU as it is and capped to what a typical laptop has (AVX2 with
VNNI, no AVX-512: `ONEDNN_MAX_CPU_ISA=AVX2_VNNI` for PyTorch's oneDNN and OpenVINO's oneDNN kernels,
`OV_CPU_MAX_ISA=AVX2_VNNI` for OpenVINO's own kernels where the build honours it), in one run so that the ratios
compare like with like on a shared machine.

    python scripts/bench_backends.py                                   # the reference model, 2 threads
    python scripts/bench_backends.py --model MODEL_FOLDER --runs 7 --threads 4
    python scripts/bench_backends.py --calibration PREPROCESSED_FOLDER        # with openvino-int8 (not gated here)

Each mode runs in its own process (the caps are read when the libraries load). Printed: a markdown table (seconds
per window, median of --runs after a warm-up; ratio to torch-fp32 native) and, per mode, what the runtimes report
(OpenVINO's optimisation capabilities, our bf16 probe), which shows whether the cap took effect.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from nnunet_cdl.cpu import LAPTOP_ISA, cpu_extensions, cpu_model_name, isa_cap_env  # noqa: E402

MODES = {"native": {}, "laptop": isa_cap_env(LAPTOP_ISA)}


def worker(model: Path, threads: int, runs: int, calibration: Path | None) -> dict:
    """Time every usable backend on one window of `model`'s patch size (this process's ISA cap)."""
    import openvino as ov
    import torch

    from nnunet_cdl.cpu import cpu_supports_bf16
    from nnunet_cdl.inference.backends import available_backends, build_backend, time_backend
    from nnunet_cdl.inference.model_loading import load_model_folder
    from nnunet_cdl.inference.quantize import int8_cache_dir

    torch.set_num_threads(threads)
    checkpoint = model / "fold_0" / "checkpoint_final.pth"
    loaded = load_model_folder(model, [checkpoint])
    patch = loaded["configuration_manager"].patch_size
    example = torch.randn((1, 1, *patch))
    network = loaded["network"].eval()
    seconds = {}
    for name in available_backends(torch.device("cpu")):
        if name == "openvino-int8" and calibration is None and not int8_cache_dir(checkpoint).is_dir():
            continue  # nothing to calibrate on: pass --calibration
        backend = build_backend(name, network, torch.device("cpu"), example, threads, checkpoint, calibration)
        seconds[name] = time_backend(backend, example, runs)
    return {"seconds": seconds, "bf16_probe": cpu_supports_bf16(),
            "openvino_capabilities": ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"),
            "patch": list(patch)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "light-unet-phantoms")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calibration", type=Path, default=None,
                        help="preprocessed training data for openvino-int8 (skipped without it and without a cache)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.model, args.threads, args.runs, args.calibration)))
        return 0
    if not (args.model / "fold_0" / "checkpoint_final.pth").is_file():
        print(f"{args.model}: no fold_0/checkpoint_final.pth", file=sys.stderr)
        return 2
    results = {}
    for mode, caps in MODES.items():
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), **caps)
        for name in ("ONEDNN_MAX_CPU_ISA", "OV_CPU_MAX_ISA"):
            if not caps:
                env.pop(name, None)
        extra = ["--calibration", str(args.calibration)] if args.calibration else []
        done = subprocess.run([sys.executable, __file__, "--worker", "--model", str(args.model), "--threads",
                               str(args.threads), "--runs", str(args.runs), *extra], env=env, capture_output=True,
                              text=True)
        if done.returncode:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    base = results["native"]["seconds"]["torch-fp32"]
    print(f"CPU: {cpu_model_name()} ({', '.join(cpu_extensions())}); {args.threads} threads; window "
          f"{'x'.join(map(str, results['native']['patch']))}; median of {args.runs}")
    print("| mode | backend | s / window | vs torch-fp32 native |\n| --- | --- | --- | --- |")
    for mode, result in results.items():
        for name, seconds in result["seconds"].items():
            print(f"| {mode} | {name} | {seconds:.3f} | {base / seconds:.2f}x |")
    for mode, result in results.items():
        print(f"{mode}: OpenVINO capabilities {result['openvino_capabilities']}; bf16 probe {result['bf16_probe']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
