"""The int8 accuracy gate and speed: organ Dice of `openvino-int8` against `openvino-fp32` on held-out flare
phantoms, and seconds per window of both (and bf16 where the CPU has it), in one run; where the CPU has native
bf16, the same Dice of `openvino-bf16` against fp32 as the gate's scale (bf16 needs no gate). Writes the gate
(`fold_0/checkpoint_final.pth.openvino-int8/gate.json`) that `--backend auto` needs before it may pick int8.

    python scripts/bench_int8.py --calibration bench_work/reference/nnUNet_preprocessed/Dataset960_ReferencePhantoms/nnUNetPlansLightUNet_3d_fullres
    python scripts/bench_int8.py --model MODEL_FOLDER --calibration PREPROCESSED_FOLDER --slices 60 200 450

The gate: the smallest per-organ Dice (each organ pooled over the cases, organs present in either map) must be
>= 0.99 (`nnunet_cdl.inference.quantize.INT8_GATE_DICE`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from nnunet_cdl.consensus.scores import confusion_matrix, organ_dice  # noqa: E402
from nnunet_cdl.cpu import cpu_extensions, cpu_model_name, cpu_supports_bf16  # noqa: E402
from nnunet_cdl.io import write_volume  # noqa: E402
from nnunet_cdl.labels import NUM_CLASSES, ORGANS  # noqa: E402
from nnunet_cdl.synth.phantom import synth_case  # noqa: E402

BIN = Path(sys.executable).parent


def predict(model: Path, images: Path, out: Path, backend: str, calibration: Path, threads: int) -> None:
    command = [str(BIN / "nnunet-cdl"), "predict", "-i", str(images), "-o", str(out), "-m", str(model), "-f", "0",
               "--threads", str(threads), "--backend", backend, "--int8-calibration", str(calibration),
               "--disable_progress_bar"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")


def organ_dice_against(reference: Path, other: Path, cases: list[str]) -> dict[str, float]:
    """Per organ, Dice of `other`'s predictions against `reference`'s, each organ pooled over `cases` (organs
    present in either)."""
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for case in cases:
        expected = sitk.GetArrayFromImage(sitk.ReadImage(str(reference / f"{case}.nii.gz")))
        found = sitk.GetArrayFromImage(sitk.ReadImage(str(other / f"{case}.nii.gz")))
        confusion += confusion_matrix(expected, found, NUM_CLASSES)
    dice = organ_dice(confusion)
    present = [organ for organ in ORGANS if confusion[organ].sum() + confusion[:, organ].sum() > 0]
    return {ORGANS[o]: round(float(dice[o - 1]), 4) for o in present}  # dice[i]: organ i + 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "light-unet-phantoms")
    parser.add_argument("--calibration", type=Path, required=True,
                        help="preprocessed training data of the model (nnUNet_preprocessed/DatasetX/<plans>_<config>)")
    parser.add_argument("--slices", nargs="+", type=int, default=[60, 200, 450])
    parser.add_argument("--seed", type=int, default=9100, help="first phantom seed (not the training seeds)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path("bench_work/int8"))
    args = parser.parse_args()
    import torch

    from nnunet_cdl.inference.backends import available_backends, build_backend, openvino_key, time_backend
    from nnunet_cdl.inference.model_loading import load_model_folder
    from nnunet_cdl.inference.quantize import INT8_GATE_DICE, int8_recipe, write_int8_gate

    shutil.rmtree(args.work, ignore_errors=True)
    images, truth = args.work / "images", {}
    for index, slices in enumerate(args.slices):
        image, labels, geometry = synth_case("flare", args.seed + index, num_slices=slices)
        write_volume(images / f"case_{index:02d}_0000.nii.gz", image, geometry)
        truth[f"case_{index:02d}"] = labels
    print(f"1/3 {len(args.slices)} held-out phantoms; CPU {cpu_model_name()} ({', '.join(cpu_extensions())})",
          flush=True)
    compared = ["openvino-int8"] + (["openvino-bf16"] if cpu_supports_bf16() else [])
    for backend in ["openvino-fp32", *compared]:
        predict(args.model, images, args.work / backend, backend, args.calibration, args.threads)
    print(f"2/3 predicted with openvino-fp32, {', '.join(compared)}", flush=True)
    per_organ = organ_dice_against(args.work / "openvino-fp32", args.work / "openvino-int8", list(truth))
    minimum = min(per_organ.values()) if per_organ else 1.0
    bf16 = {}
    if "openvino-bf16" in compared:  # the same measure for bf16, which auto uses without a gate: the gate's scale
        bf16 = organ_dice_against(args.work / "openvino-fp32", args.work / "openvino-bf16", list(truth))
    checkpoint = args.model / "fold_0" / "checkpoint_final.pth"
    loaded = load_model_folder(args.model, [checkpoint])
    example = torch.randn((1, 1, *loaded["configuration_manager"].patch_size))
    torch.set_num_threads(args.threads)
    seconds = {}
    for name in [n for n in available_backends(torch.device("cpu")) if n.startswith("openvino")]:
        backend = build_backend(name, loaded["network"].eval(), torch.device("cpu"), example, args.threads,
                                checkpoint, args.calibration)
        seconds[name] = round(time_backend(backend, example, args.runs), 4)
    passed = write_int8_gate(checkpoint, openvino_key(example.shape, checkpoint), minimum,
                             {"organ_dice_vs_fp32": per_organ, "recipe": int8_recipe(), "cases": list(truth),
                              "slices": args.slices, "cpu": cpu_model_name(), "seconds_per_window": seconds,
                              "bf16_organ_dice_vs_fp32": bf16,
                              "command": "python scripts/bench_int8.py " + " ".join(sys.argv[1:])})
    print("3/3 gate and speed")
    print(json.dumps({"recipe": int8_recipe(), "organ_dice_int8_vs_fp32": per_organ, "min": minimum,
                      "threshold": INT8_GATE_DICE, "passed": passed,
                      **({"organ_dice_bf16_vs_fp32": bf16, "bf16_min": min(bf16.values())} if bf16 else {}),
                      "seconds_per_window": seconds,
                      "int8_speedup_vs_fp32": round(seconds["openvino-fp32"] / seconds["openvino-int8"], 2)},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
