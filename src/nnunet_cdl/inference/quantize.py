"""int8 post-training quantisation of a window network with NNCF, calibrated on the model's own preprocessed
training data, cached beside the checkpoint (`<checkpoint>.openvino-int8/`) and rebuilt when the checkpoint changes.

Calibration: `CALIBRATION_WINDOWS` windows of the patch size from the preprocessed cases of the model's dataset
(`$nnUNet_preprocessed/<dataset>/<data identifier>/`, nnU-Net's blosc2 files, or a folder given explicitly),
chosen with a fixed seed: half centred on a voxel of a random organ of a random case (each organ the case holds
equally likely), half at random places, as nnU-Net samples its training patches. The recipe depends on whether
int8 runs on VNNI here (`int8_recipe`: 8-bit weights with VNNI, 7-bit without). The accuracy gate (`gate.json`,
written by scripts/bench_int8.py: organ Dice of int8 against fp32 on held-out phantoms) decides whether
`--backend auto` may pick int8.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from nnunet_cdl.consensus.scores import confusion_matrix, organ_dice
from nnunet_cdl.cpu import cpu_supports_vnni
from nnunet_cdl.errors import CdlError
from nnunet_cdl.io import atomic_directory, read_json, write_json

CALIBRATION_WINDOWS = 32
CALIBRATION_SEED = 0
CALIBRATION_SAMPLING = "half on a random organ's voxel, half anywhere"
"""How `calibration_windows` places its windows; part of the int8 key, so a change rebuilds cached models."""
INT8_GATE_DICE = 0.99
"""Smallest organ Dice of int8 against fp32 (held-out phantoms) for `--backend auto` to consider int8."""
INT8_RECIPE = {"preset": "mixed", "overflow_fix": "enable", "float_types": ["MVN"]}
"""NNCF's quantisation recipe for CPUs without VNNI, part of the cache and gate key. `mixed`: asymmetric
activations (the inputs of most convolutions are LeakyReLU outputs, nearly all >= 0, which a symmetric range would
spend half its levels on); `enable`: the overflow fix on every layer (7-bit weights), because x86 CPUs without
VNNI (older AVX2 laptops) multiply u8 by s8 with a saturating 16-bit sum; `MVN` in floating point: NNCF would also
quantise each convolution's output before its instance normalisation, an extra rounding that costs accuracy and,
measured, no speed. docs/inference.md has the measurements."""
INT8_RECIPE_VNNI = {**INT8_RECIPE, "overflow_fix": "disable"}
"""The recipe where int8 runs on VNNI (`cpu.cpu_supports_vnni`): full 8-bit weights, which VNNI sums without
saturating; closer to fp32. Because the recipe is part of the key, a model quantised so and copied to a CPU without
VNNI is not used there but quantised again with `INT8_RECIPE`."""


def int8_recipe() -> dict:
    """The quantisation recipe for this CPU under the instruction-set cap in force."""
    return INT8_RECIPE_VNNI if cpu_supports_vnni() else INT8_RECIPE


def int8_key(key: dict) -> dict:
    """The key of an int8 model: its fp32 conversion key, the quantisation recipe and the calibration sample."""
    return {**key, "int8_recipe": int8_recipe(),
            "int8_calibration": {"windows": CALIBRATION_WINDOWS, "seed": CALIBRATION_SEED,
                                 "sampling": CALIBRATION_SAMPLING}}


def int8_cache_dir(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name + ".openvino-int8")


def cached_int8_model(checkpoint: Path, key: dict) -> Path | None:
    """model.xml of `checkpoint`'s int8 model when the cache holds one quantised for `key` (an fp32 conversion
    key, `runtime.openvino_key`), else None."""
    folder = int8_cache_dir(checkpoint)
    meta = folder / "meta.json"
    if not (meta.is_file() and (folder / "model.xml").is_file()):
        return None
    try:
        current = read_json(meta).get("key") == int8_key(key)
    except (CdlError, AttributeError):
        current = False
    return folder / "model.xml" if current else None


def preprocessed_folder(plans: dict, configuration: str) -> Path | None:
    """Where nnU-Net keeps this model's preprocessed training data, when `nnUNet_preprocessed` says so."""
    root = os.environ.get("nnUNet_preprocessed")
    if not root:
        return None
    identifier = plans["configurations"][configuration].get("data_identifier", f"{plans['plans_name']}_{configuration}")
    folder = Path(root) / plans["dataset_name"] / identifier
    return folder if folder.is_dir() else None


def _crop(volume: np.ndarray, centre: list[int], patch: tuple[int, ...], fill: float) -> np.ndarray:
    """A (C, *patch) window of `volume` (C, z, y, x) centred on `centre`, padded with `fill` where it leaves it."""
    start = [c - p // 2 for c, p in zip(centre, patch)]
    out = np.full((volume.shape[0], *patch), fill, dtype=np.float32)
    src = tuple(slice(max(s, 0), min(s + p, n)) for s, p, n in zip(start, patch, volume.shape[1:]))
    dst = tuple(slice(r.start - s, r.stop - s) for r, s in zip(src, start))
    out[(slice(None), *dst)] = volume[(slice(None), *src)]
    return out


def calibration_windows(folder: Path, patch: tuple[int, ...], count: int = CALIBRATION_WINDOWS,
                        seed: int = CALIBRATION_SEED) -> list[np.ndarray]:
    """`count` windows (1, C, *patch) float32 from the preprocessed cases in `folder` (see the module docstring)."""
    import blosc2

    images = sorted(p for p in folder.glob("*.b2nd") if not p.name.endswith("_seg.b2nd"))
    if not images:
        raise CdlError(f"{folder}: no preprocessed cases (*.b2nd) to calibrate int8 on")
    rng = np.random.default_rng(seed)
    windows = []
    for index in range(count):
        image_file = images[int(rng.integers(len(images)))]
        image = blosc2.open(str(image_file), mode="r")[:]
        centre = [int(rng.integers(n)) for n in image.shape[1:]]
        seg_file = image_file.with_name(image_file.name[: -len(".b2nd")] + "_seg.b2nd")
        if index % 2 == 0 and seg_file.is_file():
            seg = blosc2.open(str(seg_file), mode="r")[:][0]
            classes = [int(c) for c in np.unique(seg) if c > 0]
            if classes:
                voxels = np.argwhere(seg == classes[int(rng.integers(len(classes)))])
                centre = [int(v) for v in voxels[int(rng.integers(len(voxels)))]]
        windows.append(_crop(image.astype(np.float32), centre, patch, float(image.min()))[None])
    return windows


def min_organ_agreement(confusion: np.ndarray) -> float:
    """Smallest per-organ Dice in a confusion matrix (classes x classes) over the organs either map holds; 1.0
    when neither holds any."""
    dice = organ_dice(confusion)
    present = ~np.isnan(dice)
    return float(dice[present].min()) if present.any() else 1.0


def quantise(fp32_model: object, windows: list[np.ndarray], recipe: dict | None = None) -> object:
    """An NNCF int8 model of an OpenVINO fp32 model, calibrated on all of `windows` (1, C, *patch), with `recipe`
    (default: `int8_recipe()`, this CPU's).

    `recipe` keys: `preset` and `overflow_fix` (values as NNCF spells them); optional `fast_bias_correction`;
    `float_layers` (regular expressions of node names) and `float_types` (OpenVINO operation types, such as
    `MVN` for instance normalisation) left in floating point (NNCF's ignored scope); `activation_ranges` (a member
    of NNCF's `RangeEstimatorParametersSet`, how activation ranges are estimated from the calibration windows); and
    `max_dice_drop`: quantise with NNCF's accuracy control, which keeps the layers that cost most in floating
    point until the smallest organ Dice of the int8 argmax against the fp32 argmax, over the same windows, is
    at most that far below 1.
    """
    import nncf

    recipe = int8_recipe() if recipe is None else recipe
    options = {
        "subset_size": len(windows),
        "preset": nncf.QuantizationPreset(recipe["preset"]),
        "fast_bias_correction": recipe.get("fast_bias_correction", True),
        "ignored_scope": nncf.IgnoredScope(patterns=list(recipe.get("float_layers", [])),
                                           types=list(recipe.get("float_types", [])), validate=False),
    }
    advanced = nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix(recipe["overflow_fix"]))
    if "activation_ranges" in recipe:
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet

        advanced.activations_range_estimator_params = getattr(RangeEstimatorParametersSet, recipe["activation_ranges"])
    if "max_dice_drop" not in recipe:
        return nncf.quantize(fp32_model, nncf.Dataset(windows), advanced_parameters=advanced, **options)
    import openvino as ov

    reference = ov.Core().compile_model(fp32_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    logits = [reference(window)[0] for window in windows]
    classes = int(logits[0].shape[1])
    labelled = [(window, window_logits.argmax(1)) for window, window_logits in zip(windows, logits)]

    def agreement(compiled: object, items: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[float, None]:
        confusion = np.zeros((classes, classes), np.int64)
        for window, labels in items:
            confusion += confusion_matrix(labels, compiled(window)[0].argmax(1), classes)
        return min_organ_agreement(confusion), None

    return nncf.quantize_with_accuracy_control(
        fp32_model, nncf.Dataset(windows), nncf.Dataset(labelled, lambda item: item[0]), agreement,
        max_drop=float(recipe["max_dice_drop"]), drop_type=nncf.DropType.ABSOLUTE,
        advanced_quantization_parameters=advanced, **options)


def load_int8_model(fp32_model: object, checkpoint: Path | None, key: dict, calibration_folder: Path | None) -> object:
    """The int8 OpenVINO model of `fp32_model`, from the cache when its key matches, else quantised now."""
    import nncf
    import openvino as ov

    folder = int8_cache_dir(checkpoint) if checkpoint is not None else None
    cached = cached_int8_model(checkpoint, key) if checkpoint is not None else None
    if cached is not None:
        return ov.Core().read_model(str(cached))
    if calibration_folder is None:
        raise CdlError("--backend openvino-int8 needs calibration data: set nnUNet_preprocessed to where the model's "
                       "dataset was preprocessed, or pass --int8-calibration DATA_FOLDER (a preprocessed "
                       "nnUNet_preprocessed/DatasetX/<plans>_<configuration> folder)")
    patch = tuple(int(d) for d in fp32_model.inputs[0].get_partial_shape().to_shape()[2:])
    windows = calibration_windows(calibration_folder, patch)
    quantised = quantise(fp32_model, windows)
    if folder is None or not os.access(folder.parent, os.W_OK):
        return quantised
    meta = {"key": int8_key(key), "calibration_folder": str(calibration_folder), "nncf": nncf.__version__}
    with atomic_directory(folder, overwrite=True) as tmp:
        ov.save_model(quantised, str(tmp / "model.xml"), compress_to_fp16=False)
        write_json(tmp / "meta.json", meta)
    return ov.Core().read_model(str(folder / "model.xml"))


def int8_gate_passed(checkpoint: Path | None, key: dict) -> bool:
    """True when scripts/bench_int8.py measured this checkpoint's int8 model within `INT8_GATE_DICE` of fp32."""
    if checkpoint is None:
        return False
    gate = int8_cache_dir(checkpoint) / "gate.json"
    if not gate.is_file():
        return False
    data = read_json(gate)
    return data.get("key") == int8_key(key) and bool(data.get("passed")) and data.get("threshold", 0) >= INT8_GATE_DICE


def write_int8_gate(checkpoint: Path, key: dict, min_organ_dice: float, details: dict) -> bool:
    """Record the accuracy gate of this checkpoint's int8 model; returns whether it passed."""
    passed = min_organ_dice >= INT8_GATE_DICE
    write_json(int8_cache_dir(checkpoint) / "gate.json", {"key": int8_key(key), "threshold": INT8_GATE_DICE,
                                                          "min_organ_dice_vs_fp32": min_organ_dice,
                                                          "passed": passed, **details})
    return passed
