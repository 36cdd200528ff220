"""What one window costs in and around OpenVINO, alternatives timed alternately in one run (the machine is noisy):

- OpenVINO's own time per layer type (`PERF_COUNT`) for one window of the model's patch;
- fresh output arrays per call against two reused output buffers (`OpenVinoWindow(output_buffers=2)`);
- batch 1 against batch 2 per window, and OpenVINO settings (latency hint, CPU pinning, denormal flushing);
- outside OpenVINO: numpy's `argmax(0)` against `sliding.argmax_labels`, and one Gaussian-weighted window sum
  into the z-stream's accumulator (`_ZStream.add`).

    python scripts/bench_window_loop.py                         # the reference model, 2 threads, bf16 where native
    python scripts/bench_window_loop.py --model MODEL_FOLDER --runs 9 --precision f32

Prints the CPU (`lscpu`'s model name and speed extensions) and markdown tables, medians of --runs.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from nnunet_cdl.cpu import cpu_extensions, cpu_model_name, cpu_supports_bf16  # noqa: E402


def alternate(candidates: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """Median seconds of each candidate, called in turn `runs` times after one warm-up call each."""
    for call in candidates.values():
        call()
    seconds: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(runs):
        for name, call in candidates.items():
            start = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in seconds.items()}


def table(title: str, seconds: dict[str, float], per: dict[str, int] | None = None) -> str:
    rows = [f"| {title} | ms |", "| --- | ---: |"]
    rows += [f"| {name} | {1000 * s / (per or {}).get(name, 1):.1f} |" for name, s in seconds.items()]
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "light-unet-phantoms")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--precision", choices=("auto", "bf16", "f32"), default="auto",
                        help="OpenVINO inference precision (auto: bf16 where the CPU has it natively)")
    args = parser.parse_args()
    checkpoint = args.model / "fold_0" / "checkpoint_final.pth"
    if not checkpoint.is_file():
        print(f"{args.model}: no fold_0/checkpoint_final.pth", file=sys.stderr)
        return 2

    import openvino as ov
    import torch

    from nnunet_cdl.inference.backends import load_openvino_model
    from nnunet_cdl.inference.model_loading import load_model_folder
    from nnunet_cdl.inference.plans_view import num_input_channels
    from nnunet_cdl.inference.runtime import OpenVinoWindow
    from nnunet_cdl.inference.sliding import _ZStream, argmax_labels, gaussian_weights
    from nnunet_cdl.inference.tiling import Window

    torch.set_num_threads(args.threads)
    loaded = load_model_folder(args.model, [checkpoint])
    network = loaded["network"].eval()
    patch = tuple(int(p) for p in loaded["configuration_manager"].patch_size)
    channels = num_input_channels(loaded["dataset_json"])
    bf16 = cpu_supports_bf16() if args.precision == "auto" else args.precision == "bf16"
    precision = "bf16" if bf16 else "f32"
    example = torch.zeros((1, channels, *patch))
    model = load_openvino_model(network, example, checkpoint)
    x = np.random.default_rng(0).normal(size=(1, channels, *patch)).astype(np.float32)
    print(f"CPU: {cpu_model_name()} ({', '.join(cpu_extensions())}); {args.threads} threads; window "
          f"{'x'.join(map(str, patch))}; OpenVINO {ov.__version__} in {precision}; median of {args.runs}\n")

    core = ov.Core()
    base = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": args.threads}
    profiled = core.compile_model(model, "CPU", {**base, "PERF_COUNT": True}).create_infer_request()
    for _ in range(3):
        profiled.infer({0: x})
    by_type: collections.Counter = collections.Counter()
    for layer in profiled.profiling_info:
        by_type[f"{layer.node_type} ({layer.exec_type})"] += layer.real_time.total_seconds()
    print(table("OpenVINO per layer type, one window", dict(by_type.most_common(8)) | {"all": sum(by_type.values())}))

    fresh = OpenVinoWindow(model, bf16, args.threads)
    buffered = OpenVinoWindow(model, bf16, args.threads, output_buffers=2)
    print("\n" + table("OpenVINO window output", alternate(
        {"fresh array per call": lambda: fresh(x), "two reused buffers": lambda: buffered(x)}, args.runs)))

    batch2 = ov.convert_model(network, example_input=torch.zeros((2, channels, *patch)),
                              input=[(2, channels, *patch)])
    x2 = np.concatenate([x, x])
    settings = {"batch 1": ({}, model, x), "batch 2 (per window)": ({}, batch2, x2),
                "latency hint": ({"PERFORMANCE_HINT": "LATENCY"}, model, x),
                "CPU pinning": ({"ENABLE_CPU_PINNING": True}, model, x),
                "denormals flushed": ({"CPU_DENORMALS_OPTIMIZATION": True}, model, x)}
    calls = {}
    for name, (extra, candidate, data) in settings.items():
        request = core.compile_model(candidate, "CPU", {**base, **extra}).create_infer_request()
        calls[name] = (lambda r, d: (lambda: r.infer({0: d})))(request, data)
    print("\n" + table("OpenVINO settings, per window", alternate(calls, args.runs), {"batch 2 (per window)": 2}))

    logits = buffered(x)[0]
    classes = logits.shape[0]
    weights = gaussian_weights(patch)
    stream = _ZStream((patch[0], 2 * patch[1], 2 * patch[2]), patch, classes, False, False)
    window = Window((0, patch[1] // 2, patch[2] // 2), patch)
    scaled = logits.copy()
    print("\n" + table("outside OpenVINO, one window", alternate(
        {"numpy argmax(0)": lambda: logits.argmax(0).astype(np.uint8),
         "argmax_labels": lambda: argmax_labels(logits),
         "Gaussian-weighted sum (_ZStream.add)": lambda: stream.add(window, np.copyto(scaled, logits) or scaled,
                                                                   weights),
         "copy of the logits (part of the line above)": lambda: np.copyto(scaled, logits)}, args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
