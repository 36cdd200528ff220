"""Train, score and ship the reference light U-Net (`models/<name>/`) on flare phantoms, within a wall-clock budget.

The recipe is data in `configs/reference_model.json` (flags below override it): training phantoms (generator preset,
seeds, slice counts), held-out phantoms (other seeds), planner overrides, trainer, epoch length and the training
budget in minutes. Steps, each skipped when its output is already in --work (so a stopped run continues):

1. phantoms: training cases as an nnU-Net raw dataset, held-out cases as images + truth;
2. `nnunet-cdl plan` (LightUNetPlanner, the paper's nnUNetPlansLightUNet, with the recipe's overrides);
3. stock `nnUNetv2_train ... 0 -tr TRAINER -p nnUNetPlansLightUNet -device cpu` with `nnUNet_cdl_time_budget_min`
   (fold 0 = all training cases but the last `validation_cases`, whose patches give nnU-Net's pseudo Dice);
   bfloat16 autocast where the CPU has it; `--continue-from MODEL` starts from all of that model's weights, its
   segmentation heads included (`nnUNet_cdl_initial_weights`; nnU-Net's `-pretrained_weights` would leave the
   heads random);
4. export: plans.json, dataset.json, fold_0/checkpoint_final.pth (weights and what nnU-Net needs to load them, no
   optimizer state) into --out;
5. held-out: `nnunet-cdl predict -m OUT -f 0` and `nnunet-cdl evaluate` (FLARE DSC / NSD) on the held-out phantoms;
6. learning curve (pseudo Dice per organ against iterations, PNG), `reference.json` (every number) and
   MODEL_CARD.md, written from what was measured.

    python scripts/train_reference.py --work bench_work/reference --out models/light-unet-phantoms

`--data-only` stops after step 2: the phantoms and the preprocessed training data (what `scripts/bench_int8.py
--calibration` reads), without training.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nnunet_cdl.cpu import cpu_extensions, cpu_model_name, cpu_supports_bf16  # noqa: E402
from nnunet_cdl.inference.config import PRESET  # noqa: E402
from nnunet_cdl.inference.model_loading import read_checkpoint  # noqa: E402
from nnunet_cdl.io import atomic_path, read_json, write_json, write_volume  # noqa: E402
from nnunet_cdl.labels import ORGANS, nnunet_labels_dict  # noqa: E402
from nnunet_cdl.training.light_unet import INITIAL_WEIGHTS_VARIABLE  # noqa: E402
from nnunet_cdl.nnunet_env import ensure_nnunet_env  # noqa: E402
from nnunet_cdl.synth.phantom import synth_case_with_info  # noqa: E402

BIN = Path(sys.executable).parent
PLANS = "nnUNetPlansLightUNet"
CONFIGURATION = "3d_fullres"
CHECKPOINT_KEYS = ("network_weights", "init_args", "trainer_name", "inference_allowed_mirroring_axes",
                   "current_epoch", "logging")
"""What the shipped checkpoint keeps: nnU-Net's predictor needs the first four; no optimizer state."""
TARGET_MEAN_DSC = 0.85
TARGET_MIN_ORGAN_DSC = 0.50
"""The reference model's held-out target (FLARE mean DSC over the 13 organs, and the lowest organ's mean)."""


def load_recipe(path: Path, args: argparse.Namespace) -> dict:
    """The recipe file with the flags that were given laid over it."""
    recipe = read_json(path)
    for key in ("budget_min", "train_cases", "trainer", "max_epochs"):
        value = getattr(args, key)
        if value is not None:
            recipe[key] = value
    return recipe


def cpu_description() -> dict:
    """Model name and the instruction-set extensions that decide the speed of this CPU."""
    return {"model": cpu_model_name(), "extensions": cpu_extensions(), "cores": os.cpu_count()}


def run(command: list[str], env: dict[str, str], log: Path) -> float:
    """Run `command` with its output appended to `log`; seconds taken; a non-zero exit ends the script."""
    start = time.time()
    with open(log, "a") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        result = subprocess.run(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(command)}; see {log}")
    return time.time() - start


def make_phantoms(recipe: dict, raw: Path, heldout: Path) -> list[dict]:
    """Training phantoms (raw dataset) and held-out phantoms (images/, truth/); a description of each case."""
    dataset = raw / f"Dataset{recipe['dataset_id']:03d}_{recipe['dataset_name']}"
    rng = np.random.default_rng(recipe["train_seed"])
    jobs = []
    for index in range(recipe["train_cases"]):
        slices = int(rng.integers(recipe["train_slices"][0], recipe["train_slices"][1] + 1))
        jobs.append(("train", f"train_{index:03d}", recipe["train_seed"] + index, slices,
                     dataset / "imagesTr", dataset / "labelsTr"))
    for index, slices in enumerate(recipe["heldout_slices"]):
        jobs.append(("heldout", f"heldout_{index:02d}_{slices:04d}", recipe["heldout_seed"] + index, slices,
                     heldout / "images", heldout / "truth"))
    cases = []
    for split, case, seed, slices, image_dir, label_dir in jobs:
        info_file = label_dir / f"{case}.json"
        if not info_file.is_file():
            image, labels, geometry, info = synth_case_with_info(recipe["preset"], seed, num_slices=slices)
            write_volume(image_dir / f"{case}_0000.nii.gz", image, geometry)
            write_volume(label_dir / f"{case}.nii.gz", labels.astype(np.uint8), geometry)
            info = {"case": case, "split": split, "seed": seed, "shape_zyx": list(image.shape),
                    "spacing_zyx_mm": [round(s, 3) for s in geometry.spacing[::-1]], **info}
            write_json(info_file, info)
            print(f"  {split} {case}: {image.shape[0]} slices", flush=True)
        cases.append(read_json(info_file))
    write_json(dataset / "dataset.json", {
        "channel_names": {"0": "CT"}, "labels": nnunet_labels_dict(), "numTraining": recipe["train_cases"],
        "file_ending": ".nii.gz", "description": f"flare phantoms, seeds {recipe['train_seed']}+i",
    })
    return cases


def export_model(trained: Path, out: Path) -> Path:
    """Copy the trained model folder's plans, dataset and fold_0 weights (no optimizer state) into `out`."""
    checkpoint = read_checkpoint(trained / "fold_0" / "checkpoint_final.pth")
    (out / "fold_0").mkdir(parents=True, exist_ok=True)
    for name in ("plans.json", "dataset.json", "dataset_fingerprint.json"):
        shutil.copyfile(trained / name, out / name)
    target = out / "fold_0" / "checkpoint_final.pth"
    with atomic_path(target) as temporary:
        torch.save({key: checkpoint[key] for key in CHECKPOINT_KEYS}, temporary)
    return target


def learning_curve(logging: dict, iterations_per_epoch: int, heldout_dsc: dict[int, float], png: Path) -> list[dict]:
    """Plot nnU-Net's pseudo Dice per organ (validation patches, per epoch) against training iterations, with the
    held-out DSC per organ at the end; returns the curve as rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dice = np.array([[float(v) for v in row] for row in logging["dice_per_class_or_region"]], dtype=np.float64)
    iterations = (np.arange(len(dice)) + 1) * iterations_per_epoch
    fig, ax = plt.subplots(figsize=(11, 6))
    colors = plt.get_cmap("tab20")(np.linspace(0, 1, 13))
    for organ in range(1, 14):
        values = dice[:, organ - 1]
        smooth = np.convolve(np.nan_to_num(values), np.ones(5) / 5, mode="valid") if len(values) >= 5 else values
        ax.plot(iterations[len(iterations) - len(smooth):], smooth, color=colors[organ - 1], label=ORGANS[organ])
        if organ in heldout_dsc:
            ax.scatter([iterations[-1] * 1.02], [heldout_dsc[organ]], color=colors[organ - 1], marker="D")
    ax.set_xlabel("training iterations (batch 2)")
    ax.set_ylabel("Dice")
    ax.set_ylim(0, 1)
    ax.set_title("pseudo Dice on validation patches (running mean of 5 epochs); diamonds: held-out DSC")
    ax.legend(ncol=2, fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)
    return [{"iterations": int(i), **{ORGANS[o]: round(float(dice[e, o - 1]), 4) for o in range(1, 14)}}
            for e, i in enumerate(iterations)]


def earlier_training(model: Path | None) -> list[dict]:
    """The training runs that made `model` (from its reference.json, oldest first), for a continued run."""
    if model is None or not (model / "reference.json").is_file():
        return []
    earlier = read_json(model / "reference.json")
    return [*earlier.get("earlier_training", []),
            {**earlier["training"], "command": earlier["command"], "cpu": earlier["cpu"]["model"],
             "heldout_mean_dsc": earlier["heldout"]["overall"]["dsc"]["mean"],
             "heldout_predictor": earlier.get("heldout_predictor")}]


def predictor_summary(settings: dict | None) -> str:
    """The predictor settings that decide the held-out numbers, in words (`configs/inference.json` as the
    held-out prediction read it); earlier records that did not keep them say so."""
    if not settings:
        return "predictor settings not recorded"
    tiling = settings.get("tiling", {})
    located = (f"locate-first tiling (locate_min_fraction {tiling.get('locate_min_fraction')})"
               if tiling.get("locate_first") else "center-first tiling")
    return f"{located}, {settings.get('export', 'fast')} export, backend {settings.get('backend', 'auto')}"


def heldout_table(summary: dict) -> dict[int, float]:
    return {int(organ): stats["dsc"]["mean"] for organ, stats in summary["organs"].items()}


def model_card(recipe: dict, record: dict, summary: dict, command: str) -> str:
    """MODEL_CARD.md from the recipe and what was measured."""
    organs = summary["organs"]
    rows = "\n".join(f"| {organ} {ORGANS[int(organ)]} | {stats['dsc']['mean']:.4f} | {stats['nsd']['mean']:.4f} |"
                     for organ, stats in organs.items())
    overall = summary["overall"]
    below = [ORGANS[int(o)] for o, s in organs.items() if s["dsc"]["mean"] < TARGET_MIN_ORGAN_DSC]
    target = ("met" if overall["dsc"]["mean"] >= TARGET_MEAN_DSC and not below else
              f"not met (mean {overall['dsc']['mean']:.4f}; below {TARGET_MIN_ORGAN_DSC}: "
              f"{', '.join(below) or 'none'})")
    cpu = record["cpu"]
    training = record["training"]
    heldout = ", ".join(f"{c['case']} ({c['shape_zyx'][0]} slices)" for c in record["cases"] if c["split"] == "heldout")
    continued = (f"continued from the weights of `{record['continued_from']}`" if record.get("continued_from")
                 else "trained from random initialisation")
    earlier = record.get("earlier_training", [])
    if earlier:
        total = sum(run["iterations"] for run in earlier) + training["iterations"]
        minutes = (sum(run["seconds"] for run in earlier) + training["seconds"]) / 60
        runs = "; ".join(f"`{run['command']}`: {run['iterations']} iterations in {run['seconds'] / 60:.1f} min "
                         f"({run['precision']}, {run['cpu']}), held-out mean DSC {run['heldout_mean_dsc']:.4f} "
                         f"({predictor_summary(run.get('heldout_predictor'))})"
                         for run in earlier)
        continued += (f". Earlier runs, oldest first: {runs}. In all {total} iterations in {minutes:.1f} min of "
                      f"training")
    return f"""# {recipe['name']}: light 3D U-Net (CDL-UNet architecture) for the 13 FLARE organs on phantoms

Made by `{command}` (recipe: `configs/reference_model.json`). Everything below was measured by that run; rerun it
to reproduce (the data are generated from the seeds, training is nondeterministic in detail).

## Model
- nnU-Net v2 model folder: `plans.json` ({PLANS}, `{record['plans']['image_reader_writer']}`, spacing
  {record['plans']['spacing']} mm, patch {record['plans']['patch_size']}), `dataset.json`,
  `fold_0/checkpoint_final.pth` (weights, no optimizer state; {record['checkpoint_mb']:.1f} MB).
- Trainer `{training['trainer']}`; {continued}.
- Load with `nnunet-cdl predict -i IMAGES -o OUT -m models/{recipe['name']} -f 0` or
  `nnUNetv2_predict_from_modelfolder -i IMAGES -o OUT -m models/{recipe['name']} -f 0 -device cpu`
  (after `eval "$(nnunet-cdl env)"`).

## Data
- Training: {recipe['train_cases']} phantoms of `nnunet-cdl synth`'s `{recipe['preset']}` preset
  (`synth_case_with_info("{recipe['preset']}", seed)`), seeds {recipe['train_seed']} to
  {recipe['train_seed'] + recipe['train_cases'] - 1}, {recipe['train_slices'][0]}-{recipe['train_slices'][1]} slices,
  clean phantom labels; fold 0 trains on all but the last {recipe['validation_cases']} (nnU-Net's pseudo Dice).
- Held-out: {len(recipe['heldout_slices'])} phantoms, seeds {recipe['heldout_seed']} to
  {recipe['heldout_seed'] + len(recipe['heldout_slices']) - 1} (never trained on): {heldout}.

## Training
- Budget {recipe['budget_min']} min of epochs (`nnUNet_cdl_time_budget_min`); {training['epochs']} epochs x
  {recipe['iterations_per_epoch']} iterations = {training['iterations']} iterations (batch 2) in
  {training['seconds'] / 60:.1f} min of training (epoch timestamps of the training log). Stage times of the script
  (seconds; a stage found done in the work folder is not timed): {record['seconds']}.
- Device: {training['device']}; precision: {training['precision']}. Machine: {cpu['model']}, {cpu['cores']} cores
  (extensions: {', '.join(cpu['extensions']) or 'none of the listed'}), torch {record['torch']}.

## Held-out metrics (`nnunet-cdl predict` defaults, `nnunet-cdl evaluate`)
Predictor: {predictor_summary(record.get('heldout_predictor'))}.
FLARE mean DSC **{overall['dsc']['mean']:.4f}**, mean NSD **{overall['nsd']['mean']:.4f}** over {overall['dsc']['n']}
cases (per case the mean of its 13 organs). Target (mean DSC >= {TARGET_MEAN_DSC}, no organ below
{TARGET_MIN_ORGAN_DSC}): {target}.

| organ | DSC | NSD |
|---|---:|---:|
{rows}

Learning curve: `learning_curve.png` (pseudo Dice per organ against iterations; diamonds: held-out DSC);
numbers in `reference.json`.

## Limits
Phantoms are not patients: this model shows the method working on data of known truth; it is not for clinical
images.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, default=ROOT / "configs" / "reference_model.json")
    parser.add_argument("--work", type=Path, default=Path("bench_work/reference"))
    parser.add_argument("--out", type=Path, default=None, help="model folder (default models/<recipe name>)")
    parser.add_argument("--budget-min", dest="budget_min", type=float, default=None,
                        help="training budget in minutes of epochs (recipe: budget_min)")
    parser.add_argument("--train-cases", dest="train_cases", type=int, default=None)
    parser.add_argument("--trainer", default=None)
    parser.add_argument("--max-epochs", dest="max_epochs", type=int, default=None)
    parser.add_argument("--continue-from", type=Path, default=None,
                        help="model folder whose fold_0 weights (all of them) start the training")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="nnUNetv2_train -device (cuda: nnU-Net's own mixed precision; prediction stays on the CPU)")
    parser.add_argument("--data-only", action="store_true",
                        help="stop after the phantoms and the preprocessed data (steps 1-2), before training")
    args = parser.parse_args()
    started = time.time()
    recipe = load_recipe(args.recipe, args)
    work = args.work.resolve()
    out = (args.out or ROOT / "models" / recipe["name"]).resolve()
    raw, pre, results, heldout = work / "nnUNet_raw", work / "nnUNet_preprocessed", work / "nnUNet_results", work / "heldout"
    for folder in (raw, pre, results, heldout):
        folder.mkdir(parents=True, exist_ok=True)
    dataset = f"Dataset{recipe['dataset_id']:03d}_{recipe['dataset_name']}"
    bf16 = args.device == "cpu" and cpu_supports_bf16()
    env = dict(os.environ, nnUNet_raw=str(raw), nnUNet_preprocessed=str(pre), nnUNet_results=str(results),
               OMP_NUM_THREADS=str(args.threads), nnUNet_n_proc_DA="1", nnUNet_def_n_proc="1",
               nnUNet_cdl_time_budget_min=str(recipe["budget_min"]), nnUNet_cdl_num_epochs=str(recipe["max_epochs"]),
               nnUNet_cdl_num_iterations_per_epoch=str(recipe["iterations_per_epoch"]),
               nnUNet_cdl_num_val_iterations_per_epoch=str(recipe["validation_iterations_per_epoch"]),
               nnUNet_cdl_final_validation="0", nnUNet_cdl_cpu_bf16="1" if bf16 else "0")
    ensure_nnunet_env(env)
    log = work / "train_reference.log"
    seconds: dict[str, float] = {}

    print(f"1/6 phantoms ({recipe['train_cases']} training, {len(recipe['heldout_slices'])} held-out) in {work}",
          flush=True)
    tick = time.time()
    cases = make_phantoms(recipe, raw, heldout)
    seconds["phantoms"] = time.time() - tick

    print("2/6 plan and preprocess (LightUNetPlanner)", flush=True)
    preset = work / "planner_preset.json"
    if preset.is_file() and read_json(preset) != recipe["planner_preset"]:
        print(f"   the planner preset changed since {pre / dataset} was made: planning again", flush=True)
        shutil.rmtree(pre / dataset, ignore_errors=True)
    write_json(preset, recipe["planner_preset"])
    if not (pre / dataset / f"{PLANS}_{CONFIGURATION}").is_dir():
        seconds["plan"] = run([str(BIN / "nnunet-cdl"), "plan", "-d", str(recipe["dataset_id"]), "-c", CONFIGURATION,
                               "-np", str(args.threads), "-npfp", str(args.threads), "--preset", str(preset),
                               "--no_pbar"], env, log)
    train_keys = [c["case"] for c in cases if c["split"] == "train"]
    validation = train_keys[-recipe["validation_cases"]:]
    write_json(pre / dataset / "splits_final.json",
               [{"train": train_keys[: -recipe["validation_cases"]], "val": validation}])
    if args.data_only:
        print(f"data ready in {pre / dataset} (--data-only: no training)", flush=True)
        return 0

    trainer = recipe["trainer"]
    trained = results / dataset / f"{trainer}__{PLANS}__{CONFIGURATION}"
    print(f"3/6 nnUNetv2_train with {trainer}, budget {recipe['budget_min']} min "
          f"({'bf16' if bf16 else 'fp32'}; log {trained / 'fold_0'})", flush=True)
    command = [str(BIN / "nnUNetv2_train"), str(recipe["dataset_id"]), CONFIGURATION, "0", "-tr", trainer,
               "-p", PLANS, "-device", args.device]
    if not (trained / "fold_0" / "checkpoint_final.pth").is_file():
        if (trained / "fold_0" / "checkpoint_latest.pth").is_file():
            command.append("--c")
        elif args.continue_from is not None:
            env[INITIAL_WEIGHTS_VARIABLE] = str(args.continue_from.resolve() / "fold_0" / "checkpoint_final.pth")
        seconds["train"] = run(command, env, log)

    print(f"4/6 export to {out}", flush=True)
    checkpoint = export_model(trained, out)

    print(f"5/6 held-out prediction and evaluation ({len(recipe['heldout_slices'])} phantoms)", flush=True)
    predictions, evaluation = heldout / "predictions", heldout / "evaluation"
    predictor_settings = read_json(PRESET)
    shutil.rmtree(predictions, ignore_errors=True)
    seconds["predict"] = run([str(BIN / "nnunet-cdl"), "predict", "-i", str(heldout / "images"), "-o",
                              str(predictions), "-m", str(out), "-f", "0", "--threads", str(args.threads),
                              "--record", str(heldout / "records")], env, log)
    seconds["evaluate"] = run([str(BIN / "nnunet-cdl"), "evaluate", "--truth", str(heldout / "truth"), "--pred",
                               str(predictions), "--out", str(evaluation), "--num-processes", str(args.threads)],
                              env, log)
    summary = read_json(evaluation / "summary.json")
    shutil.copyfile(evaluation / "metrics.csv", out / "heldout_metrics.csv")

    print("6/6 learning curve, reference.json, MODEL_CARD.md", flush=True)
    state = read_checkpoint(checkpoint)
    logging = state["logging"]
    epoch_seconds = [e - s for s, e in zip(logging["epoch_start_timestamps"], logging["epoch_end_timestamps"])]
    curve = learning_curve(logging, recipe["iterations_per_epoch"], heldout_table(summary), out / "learning_curve.png")
    plans = read_json(out / "plans.json")
    windows = {}
    for record_file in sorted((heldout / "records").glob("*.json")):
        record_data = read_json(record_file)
        if "windows" in record_data:
            windows[record_file.stem] = record_data["windows"]
    record = {
        "recipe": recipe,
        "command": f"python scripts/train_reference.py {' '.join(sys.argv[1:])}".strip(),
        "cpu": cpu_description(),
        "torch": torch.__version__,
        "plans": {"image_reader_writer": plans["image_reader_writer"],
                  "spacing": plans["configurations"][CONFIGURATION]["spacing"],
                  "patch_size": plans["configurations"][CONFIGURATION]["patch_size"]},
        "continued_from": str(args.continue_from) if args.continue_from else None,
        "earlier_training": earlier_training(args.continue_from),
        "training": {"trainer": trainer, "epochs": len(epoch_seconds),
                     "iterations": len(epoch_seconds) * recipe["iterations_per_epoch"],
                     "seconds": round(sum(epoch_seconds), 1), "precision": "bfloat16 autocast" if bf16 else
                     ("nnU-Net's CUDA mixed precision" if args.device == "cuda" else "float32"),
                     "device": args.device},
        "checkpoint_mb": checkpoint.stat().st_size / 2**20,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "script_seconds": round(time.time() - started, 1),
        "cases": cases,
        "heldout": {"overall": summary["overall"], "organs": summary["organs"], "windows": windows},
        "heldout_predictor": predictor_settings,
        "learning_curve": curve,
    }
    write_json(out / "reference.json", record)
    (out / "MODEL_CARD.md").write_text(model_card(recipe, record, summary, record["command"]))
    overall = summary["overall"]
    print(f"held-out FLARE mean DSC {overall['dsc']['mean']:.4f}, NSD {overall['nsd']['mean']:.4f}; "
          f"model in {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
