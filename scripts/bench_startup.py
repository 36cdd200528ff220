"""Where the seconds before the first window go: `nnunet-cdl predict` on the cached OpenVINO path (no torch) against
the same command with `--full-predictor` (nnUNetCdlPredictor, PyTorch loaded), alternated in one run.

One flare phantom (`--slices`, fixed seed) is predicted once to fill the caches beside the checkpoint (OpenVINO
conversion, `--backend auto` measurement, runtime info), then `--repeats` times per path. Per run: wall time of
the command (exec to exit), seconds from process start to the first window (the record's
`first_window_after_start_s`), the case's read and preprocessing seconds, and the start-up overhead = first
window - read - preprocessing (interpreter, imports, model loading, compilation). Also `python -X importtime` of
each path's imports (the largest top-level packages) and a bare interpreter start.

    python scripts/bench_startup.py --model models/light-unet-phantoms --slices 300 --repeats 3
Writes <work>/bench_startup.json and <work>/bench_startup.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from nnunet_cdl.cpu import cpu_extensions, cpu_model_name
from nnunet_cdl.io import write_json, write_volume
from nnunet_cdl.synth.phantom import synth_case

CLI = str(Path(sys.executable).with_name("nnunet-cdl"))
PATHS = {"lean (cached OpenVINO, no torch)": [], "--full-predictor (PyTorch loaded)": ["--full-predictor"]}
IMPORTS = {"lean (cached OpenVINO, no torch)": "import nnunet_cdl.cli, nnunet_cdl.inference.lean, openvino",
           "--full-predictor (PyTorch loaded)": "import nnunet_cdl.cli, nnunet_cdl.inference.predictor, openvino"}


def predict(model: Path, images: Path, out: Path, records: Path, threads: int, extra: list[str]) -> dict:
    """One `nnunet-cdl predict` process: wall seconds and the case's record."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(records, ignore_errors=True)
    command = [CLI, "predict", "-i", str(images), "-o", str(out), "-m", str(model), "-f", "0", "--threads",
               str(threads), "--record", str(records), "--disable_progress_bar", *extra]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    (record_file,) = records.glob("*.json")
    return {"wall_s": round(wall, 3), "record": json.loads(record_file.read_text()), "stderr": result.stderr}


def import_profile(statement: str, top: int = 8) -> dict:
    """Total seconds of `statement` under `python -X importtime` and its largest top-level packages."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", statement], capture_output=True, text=True)
    packages: dict[str, float] = {}
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = [p.strip() for p in line[len("import time:"):].split("|")]
        if not parts[1].isdigit():
            continue
        name = parts[2]
        if not name.startswith(" ") and "." not in name.strip():
            packages[name.strip()] = packages.get(name.strip(), 0.0) + int(parts[1]) / 1e6
    ranked = sorted(packages.items(), key=lambda item: -item[1])
    return {"total_s": round(sum(packages.values()), 3),
            "largest": [{"package": name, "seconds": round(seconds, 3)} for name, seconds in ranked[:top]]}


def bare_interpreter_s(repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 3)


def summary_row(name: str, runs: list[dict]) -> dict:
    def median(values: list[float]) -> float:
        return round(statistics.median(values), 3)

    records = [r["record"] for r in runs]
    first = [r["first_window_after_start_s"] for r in records]
    read = [r["seconds"]["reading"] for r in records]
    prep = [r["seconds"]["preprocessing"] for r in records]
    return {"path": name, "predictor": records[0]["predictor"], "backend": records[0]["backend"],
            "runs": len(runs), "wall_s": median([r["wall_s"] for r in runs]), "first_window_s": median(first),
            "reading_s": median(read), "preprocessing_s": median(prep),
            "network_s": median([r["seconds"]["network"] for r in records]),
            "startup_overhead_s": median([f - a - b for f, a, b in zip(first, read, prep)]),
            "windows_run": records[0]["windows"]["run"]}


def markdown(result: dict) -> str:
    lines = [f"CPU: {result['cpu']} ({', '.join(result['extensions'])}), {result['threads']} threads; case "
             f"{result['case']}; bare interpreter start {result['bare_interpreter_s']:.2f} s.", "",
             "| path | predictor | backend | wall s | first window after start s | read s | preprocess s | "
             "start-up overhead s | network s | windows |", "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in result["rows"]:
        lines.append(f"| {row['path']} | {row['predictor']} | {row['backend']} | {row['wall_s']:.2f} | "
                     f"{row['first_window_s']:.2f} | {row['reading_s']:.2f} | {row['preprocessing_s']:.2f} | "
                     f"{row['startup_overhead_s']:.2f} | {row['network_s']:.2f} | {row['windows_run']} |")
    lines += ["", "Imports (`python -X importtime`, largest top-level packages):", ""]
    for name, profile in result["imports"].items():
        largest = ", ".join(f"{p['package']} {p['seconds']:.2f}" for p in profile["largest"])
        lines.append(f"- {name}: {profile['total_s']:.2f} s ({largest})")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/light-unet-phantoms"))
    parser.add_argument("--work", type=Path, default=Path("bench_work/startup"))
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--seed", type=int, default=9100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()
    work = args.work.resolve()
    images = work / "images"
    case = f"startup_{args.slices:04d}"
    if not (images / f"{case}_0000.nii.gz").is_file():
        image, _, geometry = synth_case("flare", args.seed, num_slices=args.slices)
        write_volume(images / f"{case}_0000.nii.gz", image, geometry)
    warm = predict(args.model, images, work / "out", work / "records", args.threads, ["--backend", args.backend])
    print(f"caches filled: {warm['wall_s']:.1f} s ({warm['record']['predictor']}, {warm['record']['backend']})",
          flush=True)
    runs: dict[str, list[dict]] = {name: [] for name in PATHS}
    for repeat in range(args.repeats):
        for name, flags in PATHS.items():
            run = predict(args.model, images, work / "out", work / "records", args.threads,
                          ["--backend", args.backend, *flags])
            runs[name].append(run)
            print(f"[{repeat + 1}/{args.repeats}] {name}: {run['wall_s']:.2f} s, first window after "
                  f"{run['record']['first_window_after_start_s']:.2f} s", flush=True)
    result = {"cpu": cpu_model_name(), "extensions": cpu_extensions(), "threads": args.threads,
              "case": f"{case} (flare phantom, seed {args.seed})", "model": str(args.model),
              "bare_interpreter_s": bare_interpreter_s(),
              "imports": {name: import_profile(statement) for name, statement in IMPORTS.items()},
              "rows": [summary_row(name, found) for name, found in runs.items()],
              "runs": {name: [{"wall_s": r["wall_s"], "record": r["record"]} for r in found]
                       for name, found in runs.items()}}
    write_json(work / "bench_startup.json", result)
    (work / "bench_startup.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
