"""Benchmark `nnunet-cdl predict` (adaptive, center-first) against nnU-Net's stock predictor on FLARE-like phantoms.

For each model (a label and a trained nnU-Net model folder) and each phantom (flare preset, ~24 / 300 / 1000
slices by default), runs in separate processes:
  stock: `nnunet-cdl predict --tiling full` = nnUNetPredictor, step 0.5, mirroring as the trainer allows;
  ours:  `nnunet-cdl predict` with the preset's settings (`--repeats` times, median reported);
and records per case: wall time of the command, peak RSS of its process tree (sampled sum, which counts pages
shared after a fork twice: nnU-Net's stock predictor forks worker pools) and, for ours, the predictor process's
own peak (from its JSON record, with the per-stage seconds and windows), and organ Dice between the two outputs
(and against the phantom's truth).

Without `--model`, the light U-Net line is the shipped reference model (models/light-unet-phantoms, trained by
scripts/train_reference.py) when there is one. Without it, or with `--train-light-unet`, a light U-Net is trained
on flare phantoms first (LightUNetPlanner + nnUNetTrainerLightUNet, CPU budget set by --train-epochs /
--train-iterations, bfloat16 autocast where the CPU has it; cached in --work; `--train-only` stops after training). Add another model with
`--model LABEL=/path/to/model_folder`.

`--swin` adds a Swin-X Seg line (SwinXSegPlanner: 1 mm, 96^3 windows): a model trained for one epoch of
--swin-iterations steps on --swin-train-cases of the training phantoms (a CPU cannot train it further in a
benchmark; its windows-run count is that of a barely trained network, so its time is an upper bound), predicted
by ours on the --swin-slices cases only, without the stock run (1 mm, step 0.5 and 8-fold mirroring take hours
on 2 cores; `scripts/bench_swinxseg.py --case` estimates it).

    python scripts/bench_predict.py --work bench_work/predict --threads 2
Writes <work>/bench_predict.json and <work>/bench_predict.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_cdl.evaluation.efficiency import run_measured
from nnunet_cdl.cpu import ISA_CAP_VARIABLES, cpu_supports_bf16
from nnunet_cdl.inference.config import PRESET, load_settings
from nnunet_cdl.inference.export import resize_labels_nearest
from nnunet_cdl.inference.postprocess import remove_small_components
from nnunet_cdl.inference.plans_view import PlansView
from nnunet_cdl.inference.preprocess import new_shape_for
from nnunet_cdl.inference.readers import read_images
from nnunet_cdl.inference.sliding import pad_to_patch, run_plan
from nnunet_cdl.inference.tiling import plan_tiling
from nnunet_cdl.io import Geometry, read_geometry, read_json, write_json, write_volume
from nnunet_cdl.labels import ORGAN_IDS, ORGANS, nnunet_labels_dict
from nnunet_cdl.nnunet_env import ensure_nnunet_env
from nnunet_cdl.synth.phantom import synth_case

DATASET_ID = 951
DATASET = f"Dataset{DATASET_ID:03d}_PredictBench"
SWIN_DATASET_ID = 952
SWIN_DATASET = f"Dataset{SWIN_DATASET_ID:03d}_PredictBenchSwin"
BIN = Path(sys.executable).parent
REFERENCE_MODEL = Path(__file__).resolve().parents[1] / "models" / "light-unet-phantoms"


def organ_dice(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Dice per organ present in a or b (label maps of equal shape)."""
    out = {}
    for organ in ORGAN_IDS:
        x, y = a == organ, b == organ
        total = int(x.sum()) + int(y.sum())
        if total:
            out[ORGANS[organ]] = round(2.0 * int(np.logical_and(x, y).sum()) / total, 5)
    return out


def read_labels(path: Path) -> tuple[np.ndarray, Geometry]:
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), Geometry.of(image)


def make_cases(folder: Path, slices: list[int], seed: int) -> dict[str, Path]:
    """One flare phantom per slice count (seeded by seed + count): folder/<case>/<case>_0000.nii.gz and
    folder/truth/<case>.nii.gz."""
    cases = {}
    for count in slices:
        case = f"bench_{count:04d}"
        image_dir = folder / case
        image_file = image_dir / f"{case}_0000.nii.gz"
        if not image_file.is_file():
            image, labels, geometry = synth_case("flare", seed + count, num_slices=count)
            write_volume(folder / "truth" / f"{case}.nii.gz", labels.astype(np.uint8), geometry)
            write_volume(image_file, image, geometry)
        cases[case] = image_dir
    return cases


def add_real_cases(folder: Path, specs: list[str]) -> dict[str, Path]:
    """Real CTs given as NAME=IMAGE[,TRUTH] (IMAGE a NIfTI / MHA file or a DICOM series folder; TRUTH an optional
    label map on the image's grid): folder/NAME/NAME_0000.nii.gz (a DICOM series converted by SimpleITK, as
    `nnunet-cdl predict` converts one) and folder/truth/NAME.nii.gz."""
    cases = {}
    for spec in specs:
        name, _, files = spec.partition("=")
        image_path, _, truth_path = files.partition(",")
        if not name or not image_path or not Path(image_path).exists():
            raise SystemExit(f"--real {spec}: expected NAME=IMAGE[,TRUTH] with an existing IMAGE")
        image_file = folder / name / f"{name}_0000.nii.gz"
        if not image_file.is_file():
            image_file.parent.mkdir(parents=True, exist_ok=True)
            if Path(image_path).is_dir():
                reader = sitk.ImageSeriesReader()
                reader.SetFileNames(reader.GetGDCMSeriesFileNames(image_path))
                sitk.WriteImage(reader.Execute(), str(image_file))
            else:
                sitk.WriteImage(sitk.ReadImage(image_path), str(image_file))
        if truth_path:
            (folder / "truth").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(truth_path, folder / "truth" / f"{name}.nii.gz")
        cases[name] = image_file.parent
    return cases


def stock_windows(image_file: Path, model: Path, fold: str) -> dict:
    """The windows nnU-Net's stock predictor runs on `image_file` (step 0.5 over the whole image resampled to the
    plans' spacing) and its network evaluations (windows x mirror images of the checkpoint's mirroring axes)."""
    import torch
    from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

    plans = read_json(model / "plans.json")
    configuration = plans["configurations"]["3d_fullres"]
    image, properties = read_images(PlansView(plans).image_reader_writer_class(), [str(image_file)])
    order = plans.get("transpose_forward", [0, 1, 2])
    shape = new_shape_for([image.shape[1:][i] for i in order], [properties["spacing"][i] for i in order],
                          configuration["spacing"])
    patch = configuration["patch_size"]
    padded = [max(s, p) for s, p in zip(shape, patch)]
    windows = int(np.prod([len(steps) for steps in compute_steps_for_sliding_window(padded, patch, 0.5)]))
    checkpoint = torch.load(model / f"fold_{fold}" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    axes = checkpoint.get("inference_allowed_mirroring_axes") or ()
    return {"network_shape": list(shape), "windows": windows, "network_evaluations": windows * 2 ** len(axes)}


def truth_on_network_grid(truth_file: Path, record: dict, plans: dict) -> np.ndarray:
    """The truth label map as the network saw the case: read by the plans' image reader (so a reorienting reader
    such as NibabelIOWithReorient turns it as it turned the image), cropped to the record's body box, transposed
    by `transpose_forward` and resized (nearest) to the record's network shape (z, y, x of the network grid)."""
    labels, _ = read_images(PlansView(plans).image_reader_writer_class(), [str(truth_file)])
    box = tuple(slice(a, b) for a, b in record["body_box"])
    cropped = labels[0][box].transpose(plans.get("transpose_forward", [0, 1, 2]))
    return resize_labels_nearest(np.ascontiguousarray(cropped), record["network_shape"])


def padded_truth(truth_file: Path, record: dict, model: Path) -> tuple[np.ndarray, tuple[int, ...]] | None:
    """The truth (`truth_on_network_grid`) as float32 (1, Z, Y, X), padded as the predictor pads it, and the
    model's patch size; None for a record without a body box (a failed case)."""
    if not record.get("body_box"):
        return None
    plans = read_json(model / "plans.json")
    patch = tuple(plans["configurations"]["3d_fullres"]["patch_size"])
    labels = truth_on_network_grid(truth_file, record, plans)
    return pad_to_patch(labels.astype(np.float32)[None], patch)[0], patch


def perfect_model_windows(padded: np.ndarray, patch: tuple[int, ...], record: dict) -> dict:
    """Windows our tiling would run if every window predicted the truth (a perfect model), on the network grid
    of `record` (body box, network shape): the fair window count of a case whatever our model learned, and what
    the skipping costs such a model (mean organ Dice of the covered truth against the whole truth), with the
    preset's rules and with the tube rule off.

    The padded truth (`padded_truth`) is sent through `plan_tiling` (at the record's step size) / `run_plan` with
    a window function that returns its one-hot labels.
    """
    classes = len(ORGAN_IDS) + 1

    def oracle(window: np.ndarray) -> np.ndarray:
        return np.moveaxis(np.eye(classes, dtype=np.float32)[window[0, 0].astype(np.int64)], -1, 0)

    rules = load_settings().tiling
    result = {}
    for suffix, variant in (("", rules), ("_without_tube_rule", replace(rules, tube_rule=False))):
        plan = plan_tiling(padded.shape[1:], patch, record["windows"].get("step_size", 0.5), variant)
        run_result = run_plan(padded, plan, variant, oracle, classes, use_gaussian=False)
        dice = organ_dice(run_result.labels, padded[0].astype(np.uint8))
        result |= {f"run{suffix}": run_result.windows_run, f"skipped{suffix}": run_result.windows_skipped,
                   f"mean_dice_vs_truth{suffix}": mean_organ_dice(dice)}
    return {**result, "grid": run_result.grid}


def slab_centers(padded: np.ndarray, record: dict) -> list[dict]:
    """Per slab of `record` (its `windows.per_slab`): the decision, the center window's z range, and the organ
    voxels the model predicted in the center window against the padded truth's there (`padded_truth`; per organ
    label, and in all), and with `locate_first` the organ voxels located in the slab's part of the center column
    (what decided; None without). Empty for a record without per-slab outcomes."""
    rows = []
    for slab in record.get("windows", {}).get("per_slab", []):
        box = tuple(slice(a, b) for a, b in slab["center"])
        counts = np.bincount(padded[0][box].astype(np.int64).ravel(), minlength=len(ORGAN_IDS) + 1)
        truth = {str(label): int(n) for label, n in enumerate(counts) if label and n}
        located = slab.get("located_voxels")
        rows.append({"reason": slab["reason"], "z": slab["center"][0], "predicted": slab["center_voxels"],
                     "predicted_total": sum(slab["center_voxels"].values()), "truth": truth,
                     "truth_total": sum(truth.values()), "located": located,
                     "located_total": None if located is None else sum(located.values())})
    return rows


def add_truth_through_tiling(row: dict, truth_file: Path, model: Path) -> bool:
    """Set row["perfect_model_windows"] (`perfect_model_windows`, with the network seconds those windows would
    take at our measured time per window) and row["slab_centers"] (`slab_centers`) from one read of the truth;
    False when the record has no body box."""
    truth = padded_truth(truth_file, row["ours"], model)
    if truth is None:
        return False
    padded, patch = truth
    perfect = perfect_model_windows(padded, patch, row["ours"])
    per_window = row["ours"]["seconds"]["network"] / max(1, row["ours"]["windows"]["run"])
    row["perfect_model_windows"] = {**perfect, "network_s_estimate": round(perfect["run"] * per_window, 2)}
    row["slab_centers"] = slab_centers(padded, row["ours"])
    return True


def add_postprocessed_stock(row: dict, ours_labels: np.ndarray, stock_labels: np.ndarray) -> None:
    """Dice of ours against stock's output after our post-processing (the preset's, on stock's full-resolution
    labels): stock nnU-Net keeps every component the network predicts, ours removes the small ones (CDL-UNet's
    step), so this separates what the tiling changes from what post-processing removes."""
    rules = load_settings(PRESET).postprocess
    cleaned = remove_small_components(stock_labels, rules.keep_largest_labels, rules.min_component_voxels,
                                      rules.connectivity) if rules.enabled else stock_labels
    row["dice_vs_stock_postprocessed"] = organ_dice(ours_labels, cleaned)
    row["mean_dice_vs_stock_postprocessed"] = mean_organ_dice(row["dice_vs_stock_postprocessed"])


def rescore(work: Path) -> None:
    """Recompute the perfect-model columns, the per-slab truth and the Dice against post-processed stock of an
    earlier bench_predict.json in `work` from its records, outputs and truth."""
    data = read_json(work / "bench_predict.json")
    for row in data["rows"]:
        stock_file = work / "out" / row["model"] / f"{row['case']}_stock" / f"{row['case']}.nii.gz"
        ours_file = work / "out" / row["model"] / f"{row['case']}_ours" / f"{row['case']}.nii.gz"
        if "stock" in row and stock_file.is_file() and ours_file.is_file():
            add_postprocessed_stock(row, read_labels(ours_file)[0], read_labels(stock_file)[0])
        if "windows" not in row["ours"]:
            continue
        truth_file = work / "cases" / "truth" / f"{row['case']}.nii.gz"
        if not truth_file.is_file():
            continue
        if add_truth_through_tiling(row, truth_file, Path(data["models"][row["model"]]).resolve()):
            print(json.dumps({"case": row["case"], "model": row["model"], **row["perfect_model_windows"]}), flush=True)
    data["commands"] = [*data.get("commands", []), this_command()]
    write_json(work / "bench_predict.json", data)
    (work / "bench_predict.md").write_text(markdown(data["rows"], data["commands"]))


def run(command: list[str], env: dict[str, str], log: Path, stop_after_training: bool = False) -> None:
    """Run `command` with its output in `log`. With `stop_after_training`, end an nnUNetv2_train once it has logged
    "Training done." (its final checkpoint is written): the benchmark does not need nnU-Net's final validation,
    which predicts every validation case with the stock predictor and takes hours on a CPU."""
    with open(log, "w") as handle:
        process = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        while process.poll() is None:
            if stop_after_training and "Training done." in log.read_text(errors="replace"):
                os.killpg(process.pid, signal.SIGTERM)  # with nnU-Net's data loader and export workers
                process.wait()
                return
            time.sleep(5)
    if process.returncode:
        raise SystemExit(f"failed ({process.returncode}): {' '.join(command)}; see {log}")


def make_training_phantoms(dataset: Path, args: argparse.Namespace, count: int) -> None:
    """The first `count` of the training flare phantoms (--train-slices; the same whatever `count`) as an nnU-Net
    raw dataset; cases already there are kept."""
    rng = np.random.default_rng(args.seed)
    for index in range(count):
        case = f"train_{index:03d}"
        slices = int(rng.integers(args.train_slices[0], args.train_slices[1] + 1))
        if (dataset / "labelsTr" / f"{case}.nii.gz").is_file():
            continue
        image, labels, geometry = synth_case("flare", 5000 + index, num_slices=slices)
        write_volume(dataset / "imagesTr" / f"{case}_0000.nii.gz", image, geometry)
        write_volume(dataset / "labelsTr" / f"{case}.nii.gz", labels.astype(np.uint8), geometry)
    write_json(dataset / "dataset.json", {
        "channel_names": {"0": "CT"}, "labels": nnunet_labels_dict(), "numTraining": count,
        "file_ending": ".nii.gz",
    })


def training_env(work: Path, args: argparse.Namespace, **variables: str) -> dict[str, str]:
    """This process's environment with nnU-Net's folders in `work`, our trainers findable, the thread count, and
    `variables`."""
    env = dict(os.environ, nnUNet_raw=str(work / "nnUNet_raw"), nnUNet_preprocessed=str(work / "nnUNet_preprocessed"),
               nnUNet_results=str(work / "nnUNet_results"), OMP_NUM_THREADS=str(args.threads), **variables)
    ensure_nnunet_env(env)
    return env


def train_light_unet(work: Path, args: argparse.Namespace) -> Path:
    """Train a light U-Net on flare phantoms (fold 0) unless one is cached; returns its model folder."""
    raw, pre, results = work / "nnUNet_raw", work / "nnUNet_preprocessed", work / "nnUNet_results"
    model = results / DATASET / "nnUNetTrainerLightUNet__nnUNetPlansLightUNet__3d_fullres"
    if (model / "fold_0" / "checkpoint_final.pth").is_file():
        return model
    make_training_phantoms(raw / DATASET, args, args.train_cases)
    env = training_env(work, args, nnUNet_n_proc_DA=str(args.train_da_processes), nnUNet_cdl_num_epochs=str(args.train_epochs),
               nnUNet_cdl_num_iterations_per_epoch=str(args.train_iterations),
               nnUNet_cdl_num_val_iterations_per_epoch="2", nnUNet_cdl_cpu_bf16="1" if args.train_bf16 else "0")
    print(f"training a light U-Net on {args.train_cases} flare phantoms: {args.train_epochs} epochs x "
          f"{args.train_iterations} iterations, {'bf16' if args.train_bf16 else 'fp32'} (log in {work})", flush=True)
    if not (pre / DATASET / "nnUNetPlansLightUNet_3d_fullres").is_dir():
        run([str(BIN / "nnunet-cdl"), "plan", "-d", str(DATASET_ID), "-pl", "LightUNetPlanner", "-c", "3d_fullres",
             "-np", "1"], env, work / "plan.log")
    run([str(BIN / "nnUNetv2_train"), str(DATASET_ID), "3d_fullres", "0", "-tr", "nnUNetTrainerLightUNet",
         "-p", "nnUNetPlansLightUNet", "-device", "cpu"], env, work / "train.log", stop_after_training=True)
    return model


def train_swinxseg(work: Path, args: argparse.Namespace) -> Path:
    """A Swin-X Seg model (fold "all") on the first --swin-train-cases training phantoms (cached); returns its
    model folder."""
    raw, pre, results = work / "nnUNet_raw", work / "nnUNet_preprocessed", work / "nnUNet_results"
    model = results / SWIN_DATASET / "nnUNetTrainerSwinXSeg_1epoch__nnUNetPlansSwinXSeg__3d_fullres"
    if (model / "fold_all" / "checkpoint_final.pth").is_file():
        return model
    source, dataset = raw / DATASET, raw / SWIN_DATASET
    existing = len(list((source / "labelsTr").glob("*.nii.gz")))  # the light U-Net's, when it was trained here
    make_training_phantoms(source, args, max(args.swin_train_cases, existing))
    cases = sorted(p.name[: -len(".nii.gz")] for p in (source / "labelsTr").glob("*.nii.gz"))[: args.swin_train_cases]
    for folder, suffix in (("imagesTr", "_0000.nii.gz"), ("labelsTr", ".nii.gz")):
        (dataset / folder).mkdir(parents=True, exist_ok=True)
        for case in cases:
            target = dataset / folder / f"{case}{suffix}"
            if not target.exists():
                os.link(source / folder / f"{case}{suffix}", target)
    write_json(dataset / "dataset.json", {
        "channel_names": {"0": "CT"}, "labels": nnunet_labels_dict(), "numTraining": len(cases),
        "file_ending": ".nii.gz",
    })
    env = training_env(work, args, nnUNet_n_proc_DA="0", nnUNet_cdl_num_iterations_per_epoch=str(args.swin_iterations),
                       nnUNet_cdl_num_val_iterations_per_epoch="1")
    print(f"training Swin-X Seg on {len(cases)} flare phantoms: 1 epoch x {args.swin_iterations} iterations "
          f"(log in {work})", flush=True)
    if not (pre / SWIN_DATASET / "nnUNetPlansSwinXSeg_3d_fullres").is_dir():
        run([str(BIN / "nnunet-cdl"), "plan", "-d", str(SWIN_DATASET_ID), "-pl", "SwinXSegPlanner", "-c",
             "3d_fullres", "-np", "1"], env, work / "plan_swin.log")
    run([str(BIN / "nnUNetv2_train"), str(SWIN_DATASET_ID), "3d_fullres", "all", "-tr", "nnUNetTrainerSwinXSeg_1epoch",
         "-p", "nnUNetPlansSwinXSeg", "-device", "cpu"], env, work / "train_swin.log", stop_after_training=True)
    return model


def predict(label: str, model: Path, case_dir: Path, out: Path, tiling: str, args, extra: list[str]) -> dict:
    """Run one prediction command on one case folder; wall time, peak RSS, and our record when adaptive."""
    if out.exists():
        shutil.rmtree(out)
    record_dir = out.with_name(out.name + "_record")
    command = [str(BIN / "nnunet-cdl"), "predict", "-i", str(case_dir), "-o", str(out), "-m", str(model),
               "-f", *args.folds, "-chk", args.checkpoint, "-device", "cpu", "--threads", str(args.threads), "--tiling", tiling,
               "--disable_progress_bar", "-npp", "1", "-nps", "1", "--record", str(record_dir), *extra]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    log = out.with_name(out.name + ".log")
    out.parent.mkdir(parents=True, exist_ok=True)
    measured = run_measured(shlex.join(command), env=env, log=log, timeout=args.timeout)
    if measured.exit_code:
        raise SystemExit(f"{label} {tiling} failed on {case_dir}: see {log}")
    row = {"wall_s": round(measured.wall_s, 2), "peak_rss_mb": round(measured.peak_rss_mb, 1),
           "max_process_rss_mb": round(measured.max_process_rss_mb, 1)}
    records = sorted(record_dir.glob("*.json")) if tiling == "adaptive" else []
    if records:
        record = json.loads(records[0].read_text())
        row |= {"case_s": record["seconds"]["total"], "seconds": record["seconds"], "windows": record["windows"],
                "backend": record["backend"], "network_shape": record["network_shape"],
                "body_box": record["body_box"], "record_peak_rss_mb": record["peak_rss_mb"]}
    return row


def variant_preset(work: Path, name: str, spec: str) -> Path:
    """A preset file for one variant: `spec` is a preset JSON path, or `[section.]key=JSON[;...]` overrides of the
    packaged configs/inference.json (e.g. `tiling.tube_rule=false`, `export="stock"`), written to work/presets."""
    if Path(spec).is_file():
        return Path(spec).resolve()
    preset = read_json(PRESET)
    for assignment in spec.split(";"):
        key, _, value = assignment.partition("=")
        section, _, field = key.strip().partition(".")
        parent = preset[section] if field and isinstance(preset.get(section), dict) else preset
        field = field or section
        if not value or field not in parent or isinstance(parent[field], dict):
            raise SystemExit(f"--variant {name}={spec}: {assignment!r} is not [SECTION.]KEY=JSON of {PRESET}")
        parent[field] = json.loads(value)
    path = work / "presets" / f"{name}.json"
    write_json(path, preset)
    return path


def variants(args, work: Path) -> dict[str, list[str]]:
    """Extra runs of ours on the --variant-case-slices cases: each backend, and each preset variant (NAME=SPEC, see
    variant_preset)."""
    runs = {f"backend-{b}": ["--backend", b] for b in args.backends}
    for item in args.variant:
        name, spec = item.split("=", 1)
        runs[name] = ["--preset", str(variant_preset(work, name, spec))]
    return runs


def bench_model(label: str, model: Path, cases: dict[str, Path], work: Path, args, rows: list[dict], save,
                stock_max_slices: int, repeats: int, real_cases: tuple[str, ...] = ()) -> None:
    """Append one row per case to `rows` (calling `save()` after each result), then the variants. One untimed
    warm-up prediction first: it converts and caches the OpenVINO model of a new checkpoint, a one-time cost.
    `real_cases` (names in `cases`) always get the stock run; a case without a truth file gets no truth Dice."""
    if cases:
        predict(label, model, next(iter(cases.values())), work / "out" / label / "warmup", "adaptive", args, [])
    for case, case_dir in cases.items():
        image_file = case_dir / f"{case}_0000.nii.gz"
        truth_file = work / "cases" / "truth" / f"{case}.nii.gz"
        truth = read_labels(truth_file)[0] if truth_file.is_file() else None
        image_shape, image_geometry = read_geometry(image_file)
        row: dict = {"model": label, "case": case, "shape": list(image_shape), "real": case in real_cases,
                     "stock_windows": stock_windows(image_file, model, args.folds[0])}
        ours = [predict(label, model, case_dir, work / "out" / label / f"{case}_ours", "adaptive", args, [])
                for _ in range(repeats)]
        row["ours"] = min(ours, key=lambda r: abs(r["wall_s"] - statistics.median(o["wall_s"] for o in ours)))
        row["ours"]["wall_s_runs"] = [o["wall_s"] for o in ours]
        ours_labels, ours_geometry = read_labels(work / "out" / label / f"{case}_ours" / f"{case}.nii.gz")
        row["geometry_ok"] = ours_labels.shape == tuple(image_shape) and ours_geometry.matches(image_geometry)
        if truth is not None:
            row["ours_dice_vs_truth"] = organ_dice(ours_labels, truth)
            if "windows" in row["ours"]:
                add_truth_through_tiling(row, truth_file, model)
        if image_shape[0] <= stock_max_slices or case in real_cases:
            row["stock"] = predict(label, model, case_dir, work / "out" / label / f"{case}_stock", "full", args, [])
            stock_labels, _ = read_labels(work / "out" / label / f"{case}_stock" / f"{case}.nii.gz")
            row["dice_vs_stock"] = organ_dice(ours_labels, stock_labels)
            row["mean_dice_vs_stock"] = mean_organ_dice(row["dice_vs_stock"])
            add_postprocessed_stock(row, ours_labels, stock_labels)
            if truth is not None:
                row["stock_dice_vs_truth"] = organ_dice(stock_labels, truth)
            row["speedup"] = round(row["stock"]["wall_s"] / row["ours"]["wall_s"], 1)
        print(json.dumps(row), flush=True)
        rows.append(row)
        save()
    for row in [r for r in rows if r["model"] == label]:  # after every case, so that a long variant list never delays the main table
        case = row["case"]
        if row["shape"][0] not in args.variant_case_slices:
            continue
        truth_file = work / "cases" / "truth" / f"{case}.nii.gz"
        truth = read_labels(truth_file)[0] if truth_file.is_file() else None
        for name, extra in variants(args, work).items():
            out = work / "out" / label / f"{case}_{name}"
            result = predict(label, model, cases[case], out, "adaptive", args, extra)
            variant_labels, _ = read_labels(out / f"{case}.nii.gz")
            if "stock" in row:
                stock_labels, _ = read_labels(work / "out" / label / f"{case}_stock" / f"{case}.nii.gz")
                dice = organ_dice(variant_labels, stock_labels)
                result["mean_dice_vs_stock"] = mean_organ_dice(dice)
            if truth is not None:
                result["dice_vs_truth"] = organ_dice(variant_labels, truth)
            row.setdefault("variants", {})[name] = result
            print(json.dumps({"case": case, "variant": name, **result}), flush=True)
            save()


def mean_organ_dice(dice: dict[str, float]) -> float:
    """Mean of per-organ Dice values, rounded to 4 places (1.0 when no organ is in either map)."""
    return round(float(np.mean(list(dice.values()) or [1.0])), 4)


def mean(values) -> str:
    values = list(values)
    return f"{np.mean(values):.3f}" if values else "n/a"


def largest(voxels: dict[str, int], count: int = 3) -> str:
    """The `count` organs with most voxels, as `label: voxels` (label numbers as in dataset.json)."""
    return ", ".join(f"{label}: {n}" for label, n in sorted(voxels.items(), key=lambda item: -item[1])[:count])


def this_command() -> str:
    """The command line of this run, with the instruction-set caps of its environment (the laptop mode of
    `scripts/bench_backends.py`) in front when they are set."""
    caps = " ".join(f"{name}={os.environ[name]}" for name in ISA_CAP_VARIABLES if os.environ.get(name))
    return f"{caps + ' ' if caps else ''}python scripts/bench_predict.py {shlex.join(sys.argv[1:])}"


def markdown(rows: list[dict], commands: list[str]) -> str:
    lines = [
        "Commands: " + "; then ".join(f"`{c}`" for c in commands), "",
        "| model | case (z, y, x) | stock s | stock peak MB | ours s (median) | ours case s | ours peak MB (own / tree) | "
        "stock windows (network runs) | windows run/skipped | perfect-model windows (est. network s) | speedup | "
        "mean Dice vs stock (vs stock post-processed) | mean Dice vs truth (stock / ours) | geometry |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        stock = r.get("stock", {})
        w = r["ours"].get("windows", {})
        perfect = r.get("perfect_model_windows") or {}
        stock_grid = r.get("stock_windows") or {}
        lines.append(
            f"| {r['model']} | {r['case']} {tuple(r['shape'])} | {stock.get('wall_s', 'n/a')} | "
            f"{stock.get('peak_rss_mb', 'n/a')} | {r['ours']['wall_s']} | {r['ours'].get('case_s', 'n/a')} | "
            f"{r['ours'].get('record_peak_rss_mb', 'n/a')} / {r['ours']['peak_rss_mb']} | "
            f"{stock_grid.get('windows', 'n/a')} ({stock_grid.get('network_evaluations', 'n/a')}) | "
            f"{w.get('run', '?')}/{w.get('skipped', '?')} ({w.get('grid', '?')}) | "
            f"{perfect.get('run', 'n/a')} ({perfect.get('network_s_estimate', 'n/a')}) | "
            f"{r.get('speedup', 'n/a')} | {r.get('mean_dice_vs_stock', 'n/a')} "
            f"({r.get('mean_dice_vs_stock_postprocessed', 'n/a')}) | "
            f"{mean(r.get('stock_dice_vs_truth', {}).values())} / {mean(r.get('ours_dice_vs_truth', {}).values())} | "
            f"{'ok' if r['geometry_ok'] else 'MISMATCH'} |"
        )
    perfect_rows = [r for r in rows if r.get("perfect_model_windows", {}).get("run_without_tube_rule") is not None]
    if perfect_rows:
        lines += ["", "Perfect model (the truth through our tiling): windows run and the mean organ Dice of what they "
                  "cover against the whole truth, tube rule on / off:", "",
                  "| model | case | windows run (on / off) | skipped (on / off) | Dice of covered truth (on / off) |",
                  "|---|---|---|---|---|"]
        for r in perfect_rows:
            q = r["perfect_model_windows"]
            lines.append(f"| {r['model']} | {r['case']} | {q['run']} / {q['run_without_tube_rule']} | {q['skipped']} / "
                         f"{q['skipped_without_tube_rule']} | {q['mean_dice_vs_truth']} / "
                         f"{q['mean_dice_vs_truth_without_tube_rule']} |")
    slab_rows = [r for r in rows if r.get("slab_centers")]
    if slab_rows:
        lines += ["", "Center windows per slab (z on the network grid): the decision, the organ voxels the model "
                  "predicted in the center window, those located in the slab's part of the center column (with "
                  "`locate_first`, what decided) and the truth's in the center window (largest three organs by "
                  "label):", "",
                  "| model | case | slab z | decision | predicted organ voxels | located organ voxels | truth organ voxels |",
                  "|---|---|---|---|---|---|---|"]
        for r in slab_rows:
            for slab in r["slab_centers"]:
                lines.append(f"| {r['model']} | {r['case']} | {slab['z'][0]}-{slab['z'][1]} | {slab['reason']} | "
                             f"{slab['predicted_total']} ({largest(slab['predicted'])}) | " + (
                                 "n/a" if slab.get("located") is None else
                                 f"{slab['located_total']} ({largest(slab['located'])})") +
                             f" | {slab['truth_total']} ({largest(slab['truth'])}) |")
    stages = [r for r in rows if "seconds" in r["ours"]]
    if stages:
        lines += ["", "Where our time goes (seconds, median run):", "",
                  "| model | case | reading | preprocessing | network | exporting | writing | process overhead |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in stages:
            s = r["ours"]["seconds"]
            overhead = round(r["ours"]["wall_s"] - s["total"], 2)
            lines.append(f"| {r['model']} | {r['case']} | {s['reading']} | {s['preprocessing']} | {s['network']} | "
                         f"{s['exporting']} | {s['writing']} | {overhead} |")
    variant_rows = [r for r in rows if "variants" in r]
    if variant_rows:
        lines += ["", "Variants of ours (one run each):", "",
                  "| model | case | variant | wall s | network s | windows run/skipped | mean Dice vs stock | "
                  "mean Dice vs truth |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in variant_rows:
            for name, v in r["variants"].items():
                w = v.get("windows", {})
                lines.append(f"| {r['model']} | {r['case']} | {name} | {v['wall_s']} | "
                             f"{v.get('seconds', {}).get('network', 'n/a')} | {w.get('run', '?')}/"
                             f"{w.get('skipped', '?')} | {v.get('mean_dice_vs_stock', 'n/a')} | "
                             f"{mean(v.get('dice_vs_truth', {}).values())} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("bench_work/predict"))
    parser.add_argument("--model", action="append", default=[], help="LABEL=MODEL_FOLDER (repeatable)")
    parser.add_argument("--folds", nargs="+", default=["0"])
    parser.add_argument("--checkpoint", default="checkpoint_final.pth", help="-chk of every prediction")
    parser.add_argument("--slices", nargs="+", type=int, default=[24, 300, 1000])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stock-max-slices", type=int, default=300, help="skip the stock run above this")
    parser.add_argument("--backends", nargs="*", default=[],
                        help="also time these backends on the --variant-case-slices cases")
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME=PRESET_JSON or NAME=[SECTION.]KEY=JSON[;...] (overrides of configs/inference.json, "
                             "e.g. no_tube_rule=tiling.tube_rule=false): also run ours so on the --variant-case-slices cases "
                             "(repeatable)")
    parser.add_argument("--variant-case-slices", nargs="+", type=int, default=[300],
                        help="the cases (by slice count) of --backends/--variant")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--real", action="append", default=[], metavar="NAME=IMAGE[,TRUTH]",
                        help="also predict this real CT (file or DICOM series folder; optional truth labels) with "
                             "the light U-Net line, stock included (repeatable)")
    parser.add_argument("--train-cases", type=int, default=24)
    parser.add_argument("--train-slices", nargs=2, type=int, default=[40, 300], metavar=("MIN", "MAX"),
                        help="slice count range of the training phantoms")
    parser.add_argument("--train-epochs", type=int, default=36)
    parser.add_argument("--train-iterations", type=int, default=25)
    parser.add_argument("--train-da-processes", type=int, default=1)
    parser.add_argument("--train-fp32", dest="train_bf16", action="store_false",
                        help="train in float32 (default: bfloat16 autocast when the CPU has native bf16)")
    parser.add_argument("--train-light-unet", action="store_true",
                        help="train the light U-Net line's model here instead of using models/light-unet-phantoms")
    parser.add_argument("--train-only", action="store_true", help="train (or find) the models and stop")
    parser.add_argument("--swin", action="store_true", help="add a barely trained Swin-X Seg line (see above)")
    parser.add_argument("--no-light", action="store_true", help="no light U-Net line (with --swin or --model)")
    parser.add_argument("--rescore", action="store_true",
                        help="only recompute the perfect-model columns and the Dice against post-processed stock "
                             "of the bench_predict.json in --work")
    parser.add_argument("--append", action="store_true",
                        help="keep the rows of models not run now from an earlier bench_predict.json in --work")
    parser.add_argument("--swin-train-cases", type=int, default=2)
    parser.add_argument("--swin-iterations", type=int, default=2)
    parser.add_argument("--swin-slices", nargs="+", type=int, default=[24], help="cases of the Swin-X Seg line")
    args = parser.parse_args()
    args.train_bf16 = args.train_bf16 and cpu_supports_bf16()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.rescore:
        rescore(work)
        return 0
    models = dict(item.split("=", 1) for item in args.model)
    if not models and not args.no_light:
        shipped = (REFERENCE_MODEL / "fold_0" / "checkpoint_final.pth").is_file()
        trained = args.train_light_unet or args.train_only or not shipped
        models = {"light-unet": str(train_light_unet(work, args) if trained else REFERENCE_MODEL)}
    if args.swin:
        models["swin-x-seg"] = str(train_swinxseg(work, args))
    if args.train_only:
        print(f"trained: {models}")
        return 0
    cases = make_cases(work / "cases", sorted(set(args.slices) | set(args.swin_slices if args.swin else [])),
                       args.seed)
    real_cases = add_real_cases(work / "cases", args.real)
    rows: list[dict] = []
    previous = read_json(work / "bench_predict.json") if args.append and (work / "bench_predict.json").is_file() else {}
    kept = [r for r in previous.get("rows", []) if r["model"] not in models]
    commands = [*previous.get("commands", []), this_command()]

    def save() -> None:
        write_json(work / "bench_predict.json", {"threads": args.threads, "models": {**previous.get("models", {}),
                   **models}, "commands": commands, "rows": kept + rows})
        (work / "bench_predict.md").write_text(markdown(kept + rows, commands))

    for label, folder in models.items():
        if label == "swin-x-seg" and args.swin:
            swin_cases = {c: d for c, d in cases.items() if int(c.split("_")[1]) in args.swin_slices}
            swin_args = argparse.Namespace(**{**vars(args), "folds": ["all"], "checkpoint": "checkpoint_final.pth"})
            bench_model(label, Path(folder).resolve(), swin_cases, work, swin_args, rows, save, stock_max_slices=0,
                        repeats=1)
        else:
            light_cases = {c: d for c, d in cases.items() if int(c.split("_")[1]) in args.slices} | real_cases
            bench_model(label, Path(folder).resolve(), light_cases, work, args, rows, save,
                        stock_max_slices=args.stock_max_slices, repeats=args.repeats, real_cases=tuple(real_cases))
    print((work / "bench_predict.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
