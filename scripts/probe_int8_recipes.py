"""Which NNCF recipe keeps int8 closest to fp32: every recipe quantised in one run from the same calibration
windows, compared on the same evaluation windows (organ Dice of the int8 argmax against the fp32 argmax, pooled
over the windows, per organ), with seconds per window. A cheap window-level ranking before the case-level gate
(scripts/bench_int8.py), which predicts whole phantoms with the recipe in use (`quantize.int8_recipe()`).

    python scripts/probe_int8_recipes.py --calibration bench_work/reference/nnUNet_preprocessed/Dataset960_ReferencePhantoms/nnUNetPlansLightUNet_3d_fullres

Evaluation windows come from the same preprocessed folder with another seed (half centred on foreground, as the
calibration windows are); `--eval-windows` sets how many, `--only` picks recipes by label. Nothing is cached or
written beside the model. Each recipe takes about a minute on 2 cores, except NNCF's accuracy control, which
took over 40 minutes with the reference model (docs/inference.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from nnunet_cdl.consensus.scores import confusion_matrix, organ_dice  # noqa: E402
from nnunet_cdl.cpu import cpu_extensions, cpu_model_name  # noqa: E402
from nnunet_cdl.inference.quantize import CALIBRATION_WINDOWS, calibration_windows, int8_recipe, quantise  # noqa: E402
from nnunet_cdl.labels import NUM_CLASSES  # noqa: E402

RECIPES = {
    "nncf default": {"preset": "performance", "overflow_fix": "first_layer_only"},
    "overflow fix": {"preset": "performance", "overflow_fix": "enable"},
    "mixed + overflow fix": {"preset": "mixed", "overflow_fix": "enable"},
    "mixed + overflow fix + full bias correction": {"preset": "mixed", "overflow_fix": "enable",
                                                    "fast_bias_correction": False},
    "mixed + overflow fix, fp32 head": {"preset": "mixed", "overflow_fix": "enable",
                                        "float_layers": [".*seg_layers.*"]},
    "mixed + overflow fix, fp32 full-resolution stages": {
        "preset": "mixed", "overflow_fix": "enable",
        "float_layers": [".*encoder.stages.0.*", ".*decoder.stages.2.*", ".*transpconvs.2.*", ".*seg_layers.*"]},
    "mixed + overflow fix, float instance norms": {"preset": "mixed", "overflow_fix": "enable",
                                                   "float_types": ["MVN"]},
    "mixed + overflow fix, float instance norms and first convolution": {
        "preset": "mixed", "overflow_fix": "enable", "float_types": ["MVN"],
        "float_layers": [".*encoder.stages.0.0.convs.0.*"]},
    "mixed + overflow fix, float instance norms and transposed convolutions": {
        "preset": "mixed", "overflow_fix": "enable", "float_types": ["MVN", "ConvolutionBackpropData"]},
    "mixed + overflow fix, float instance norms, min-max activation ranges": {
        "preset": "mixed", "overflow_fix": "enable", "float_types": ["MVN"], "activation_ranges": "MINMAX"},
    "mixed + overflow fix, float instance norms, mean min-max without outliers": {
        "preset": "mixed", "overflow_fix": "enable", "float_types": ["MVN"],
        "activation_ranges": "MEAN_NO_OUTLIERS_MINMAX"},
    "mixed, no overflow fix (8-bit weights: VNNI CPUs only), float instance norms": {
        "preset": "mixed", "overflow_fix": "disable", "float_types": ["MVN"]},
    "mixed, no overflow fix, float instance norms, mean min-max without outliers": {
        "preset": "mixed", "overflow_fix": "disable", "float_types": ["MVN"],
        "activation_ranges": "MEAN_NO_OUTLIERS_MINMAX"},
    "mixed, no overflow fix, float instance norms, full bias correction": {
        "preset": "mixed", "overflow_fix": "disable", "float_types": ["MVN"], "fast_bias_correction": False},
    "overflow fix, float instance norms": {"preset": "performance", "overflow_fix": "enable",
                                           "float_types": ["MVN"]},
    "mixed + overflow fix, accuracy control (drop <= 0.01)": {"preset": "mixed", "overflow_fix": "enable",
                                                              "max_dice_drop": 0.01},
}
EVAL_SEED = 12345


def compile_f32(model: object, threads: int) -> object:
    import openvino as ov

    return ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "light-unet-phantoms")
    parser.add_argument("--calibration", type=Path, required=True,
                        help="preprocessed training data of the model (nnUNet_preprocessed/DatasetX/<plans>_<config>)")
    parser.add_argument("--eval-windows", dest="eval_windows", type=int, default=24)
    parser.add_argument("--calibration-windows", dest="calibration_windows", type=int, default=CALIBRATION_WINDOWS,
                        help="calibrate every recipe on this many windows (the predictor uses CALIBRATION_WINDOWS)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="+", default=[], metavar="TEXT",
                        help="probe only the recipes whose label contains one of these texts")
    args = parser.parse_args()
    import torch

    from nnunet_cdl.inference.backends import load_openvino_model
    from nnunet_cdl.inference.model_loading import load_model_folder

    torch.set_num_threads(args.threads)
    checkpoint = args.model / "fold_0" / "checkpoint_final.pth"
    loaded = load_model_folder(args.model, [checkpoint])
    patch = tuple(int(d) for d in loaded["configuration_manager"].patch_size)
    fp32 = load_openvino_model(loaded["network"].eval(), torch.randn(1, 1, *patch), checkpoint)
    calibration = calibration_windows(args.calibration, patch, count=args.calibration_windows)
    evaluation = calibration_windows(args.calibration, patch, count=args.eval_windows, seed=EVAL_SEED)
    reference = compile_f32(fp32, args.threads)
    reference_labels = [reference(w)[0].argmax(1) for w in evaluation]
    print(f"CPU {cpu_model_name()} ({', '.join(cpu_extensions())}); {len(calibration)} calibration windows "
          f"(CALIBRATION_WINDOWS={CALIBRATION_WINDOWS}), {len(evaluation)} evaluation windows; "
          f"in use on this CPU: {int8_recipe()}",
          flush=True)
    print("| recipe | min organ Dice | mean organ Dice | s / window | quantise s |\n| --- | ---: | ---: | ---: | ---: |")
    chosen = {label: r for label, r in RECIPES.items() if not args.only or any(t in label for t in args.only)}
    if not chosen:
        parser.error(f"--only {' '.join(args.only)}: no recipe matches (recipes: {'; '.join(RECIPES)})")
    for label, recipe in chosen.items():
        start = time.perf_counter()
        compiled = compile_f32(quantise(fp32, calibration, recipe), args.threads)
        quantise_seconds = time.perf_counter() - start
        confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
        for window, labels in zip(evaluation, reference_labels):
            confusion += confusion_matrix(labels, compiled(window)[0].argmax(1), NUM_CLASSES)
        dice = organ_dice(confusion)
        present = [o for o in range(1, NUM_CLASSES) if confusion[o].sum() + confusion[:, o].sum() > 0]
        per_organ = {o: round(float(dice[o - 1]), 3) for o in present}  # dice[i]: organ i + 1
        compiled(evaluation[0])
        start = time.perf_counter()
        for window in evaluation[:3]:
            compiled(window)
        seconds = (time.perf_counter() - start) / min(3, len(evaluation))
        print(f"| {label} | {min(per_organ.values()):.3f} | {np.mean(list(per_organ.values())):.3f} | {seconds:.3f} | "
              f"{quantise_seconds:.0f} |", flush=True)
        print(f"  {json.dumps({'recipe': recipe, 'organ_dice': per_organ})}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
