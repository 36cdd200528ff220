"""Curriculum ablation on phantoms: four training arms with equal compute, test Dice against clean labels.

(a) one random noisy source per case (cleaned), all cases;  (b) consensus labels, easy + hard mixed from the start;
(c) consensus labels, easy only;  (d) consensus labels, easy then easy + hard (nnUNetTrainerCDL's default).
Every arm trains the light U-Net with the reference model's recipe (AdamW 1e-3, plans read in RAS order;
`--optimizer paper` for the paper's SGD 0.01) for the same epochs x iterations x batch (fold "all"), then predicts the
generator's test images; Dice is the multi-organ Dice against the clean test labels (organs in either map), and
`nnunet-cdl evaluate` adds FLARE's DSC / NSD (all 13 organs per case) and the DSC per organ.

Tiers use configs/consensus.json's thresholds and DS unless --easy-threshold/--hard-threshold/--ds-mode are given;
`--refine` picks the labels of arms (b)-(d) (default the package's, trusted-vote; `select` the paper's; the tiers
do not depend on it). The runs in docs/consensus.md used `--refine select --ds-mode others`, the defaults then. For CPU the
planner preset is shrunk (--patch, --spacing, --features); the run is small and says so.

    nice -n 10 python scripts/ablation_curriculum.py --work ablation_work --cases 16 --test-cases 4 --epochs 15
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("nnUNet_n_proc_DA", "0")
os.environ.setdefault("OMP_NUM_THREADS", "2")

from nnunet_cdl.cli import main as cli_main  # noqa: E402
from nnunet_cdl.consensus.schedule import Phase  # noqa: E402
from nnunet_cdl.consensus.scores import confusion_matrix, multi_organ_dice  # noqa: E402
from nnunet_cdl.consensus.scores import DS_MODES  # noqa: E402
from nnunet_cdl.consensus.tiers import REFINE_MODES, load_config  # noqa: E402
from nnunet_cdl.io import read_json, read_volume, write_json, write_volume  # noqa: E402
from nnunet_cdl.consensus import clean_labels  # noqa: E402
from nnunet_cdl.synth import generate_dataset  # noqa: E402
from nnunet_cdl.training.curriculum import nnUNetTrainerCDL  # noqa: E402
from nnunet_cdl.training.light_unet import nnUNetTrainerLightUNet  # noqa: E402
from nnunet_cdl.training.light_unet_variants import nnUNetTrainerLightUNet_Adam1en3  # noqa: E402

PLANS = "nnUNetPlansLightUNet"


def with_optimizer(cls: type, optimizer: str) -> type:
    """`cls` as is (`paper`: SGD 0.01), or with the reference model's AdamW 1e-3 (`reference`, the default)."""
    if optimizer == "paper":
        return cls

    class Arm(cls):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.initial_lr = 1e-3

        configure_optimizers = nnUNetTrainerLightUNet_Adam1en3.configure_optimizers

    Arm.__name__ = Arm.__qualname__ = f"{cls.__name__}_Adam1en3"
    return Arm


class AblationRandomSource(nnUNetTrainerLightUNet):
    """Arm (a): plain light U-Net on one random noisy source per case."""


class AblationMixed(nnUNetTrainerCDL):
    """Arm (b): easy and hard cases mixed from epoch 0."""

    def curriculum_phases(self) -> list[Phase]:
        return [Phase(0, ("easy", "hard"))]


class AblationEasyOnly(nnUNetTrainerCDL):
    """Arm (c): easy cases only."""

    def curriculum_phases(self) -> list[Phase]:
        return [Phase(0, ("easy",))]


class AblationEasyThenHard(nnUNetTrainerCDL):
    """Arm (d): the default schedule, easy then easy + hard (1000 : 1500 scaled)."""


def random_source_dataset(raw: Path, source: Path, dataset_id: int, seed: int) -> Path:
    """Arm (a)'s raw dataset: each case's label from one random pseudo-label source, cleaned (imagesTr linked)."""
    target = raw / f"Dataset{dataset_id:03d}_AblationRandom"
    shutil.rmtree(target, ignore_errors=True)
    (target / "labelsTr").mkdir(parents=True)
    shutil.copytree(source / "imagesTr", target / "imagesTr", copy_function=os.link)
    sources = sorted((source / "pseudolabels").iterdir())
    rng = np.random.default_rng(seed)
    chosen = {}
    for image in sorted((source / "imagesTr").glob("*_0000.nii.gz")):
        case = image.name[: -len("_0000.nii.gz")]
        pick = sources[int(rng.integers(len(sources)))]
        volume = read_volume(pick / f"{case}.nii.gz")
        write_volume(target / "labelsTr" / f"{case}.nii.gz", clean_labels(volume.array, range(14))[0], volume.geometry)
        chosen[case] = pick.name
    dataset = read_json(source / "dataset.json")
    write_json(target / "dataset.json", {**dataset, "name": target.name})
    write_json(target / "chosen_sources.json", chosen)
    return target


def plan_and_preprocess(dataset_id: int, preset_file: Path) -> None:
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiment_dataset,
        preprocess,
    )

    from nnunet_cdl.planning.light_unet import LightUNetPlanner
    from nnunet_cdl.planning.preset import load_preset

    preset = load_preset(preset_file)
    extract_fingerprints([dataset_id], num_processes=1, check_dataset_integrity=False, show_progress_bar=False)
    plan_experiment_dataset(dataset_id, lambda *a, **k: LightUNetPlanner(*a, preset=preset, **k))
    preprocess([dataset_id], PLANS, ["3d_fullres"], [1], show_progress_bar=False)


def train(dataset_name: str, cls: type, epochs: int, iterations: int, device: str):
    import torch

    folder = Path(os.environ["nnUNet_preprocessed"]) / dataset_name
    plans = {**read_json(folder / f"{PLANS}.json"), "continue_training": False}
    trainer = cls(plans, "3d_fullres", "all", read_json(folder / "dataset.json"), device=torch.device(device))
    trainer.num_epochs = epochs
    trainer.num_iterations_per_epoch = iterations
    trainer.num_val_iterations_per_epoch = 1
    trainer.run_training()
    return trainer


def predict_and_score(trainer, images: Path, labels: Path, out: Path, device: str) -> list[float]:
    """Predict every test image with the trained network; multi-organ Dice per case vs the clean labels."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=0.5, use_mirroring=False, device=torch.device(device), verbose=False,
                                verbose_preprocessing=False, allow_tqdm=False)
    trainer.set_deep_supervision_enabled(False)
    predictor.manual_initialization(trainer.network, trainer.plans_manager, trainer.configuration_manager,
                                    [trainer.network.state_dict()], trainer.dataset_json, trainer.__class__.__name__,
                                    None)
    out.mkdir(parents=True, exist_ok=True)
    cases = sorted(p.name[: -len("_0000.nii.gz")] for p in images.glob("*_0000.nii.gz"))
    predictor.predict_from_files_sequential([[str(images / f"{c}_0000.nii.gz")] for c in cases],
                                            [str(out / c) for c in cases], save_probabilities=False)
    scores = []
    for case in cases:
        pred = read_volume(out / f"{case}.nii.gz").array.astype(np.uint8)
        truth = read_volume(labels / f"{case}.nii.gz").array.astype(np.uint8)
        scores.append(multi_organ_dice(confusion_matrix(pred, truth, 14)))
    return scores


def official_scores(truth: Path, predictions: Path, out: Path) -> dict:
    """FLARE DSC / NSD of one arm's predictions with `nnunet-cdl evaluate`: overall means and the DSC per organ."""
    code = cli_main(["evaluate", "--truth", str(truth), "--pred", str(predictions), "--out", str(out)])
    if code != 0:
        raise SystemExit(f"nnunet-cdl evaluate failed ({code}) on {predictions}")
    summary = read_json(out / "summary.json")
    return {"flare_dsc_mean": summary["overall"]["dsc"]["mean"], "flare_nsd_mean": summary["overall"]["nsd"]["mean"],
            "flare_dsc_per_organ": {o["name"]: o["dsc"]["mean"] for o in summary["organs"].values()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--cases", type=int, default=16)
    p.add_argument("--test-cases", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--iterations", type=int, default=6, help="training iterations per epoch")
    p.add_argument("--easy-threshold", type=float, default=None, help="[default: configs/consensus.json]")
    p.add_argument("--hard-threshold", type=float, default=None, help="[default: configs/consensus.json]")
    p.add_argument("--patch", type=int, nargs=3, default=[16, 48, 48])
    p.add_argument("--spacing", type=float, nargs=3, default=[4.0, 3.2, 3.2], help="target spacing z y x (mm)")
    p.add_argument("--features", type=int, nargs=4, default=[8, 16, 32, 64])
    p.add_argument("--refine", choices=REFINE_MODES, default=load_config().refine,
                   help="written labels of the consensus arms [default: configs/consensus.json's]; select: the "
                   "paper's selected candidate")
    p.add_argument("--ds-mode", choices=DS_MODES, default=load_config().ds_mode,
                   help="difficulty score of the tiers [default: configs/consensus.json's]; others: the one the "
                   "documented runs used")
    p.add_argument("--arms", default="abcd", help="which arms to run")
    p.add_argument("--optimizer", choices=("reference", "paper"), default="reference",
                   help="reference (default): AdamW 1e-3 as the reference model (nnUNetTrainerLightUNet_Adam1en3); "
                   "paper: SGD 0.01 (nnUNetTrainerLightUNet)")
    p.add_argument("--device", default="cpu", help="torch device for training and prediction (cpu, cuda)")
    p.add_argument("--reuse-preprocessed", action="store_true",
                   help="keep the preprocessed datasets of an earlier run in --work (same preset flags)")
    args = p.parse_args(argv)
    work = args.work.resolve()
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (work / name).mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(work / name)
    raw = work / "nnUNet_raw"
    source = raw / "Dataset870_CDLPhantom"
    if not (source / "manifest.json").is_file():
        generate_dataset(raw, 870, args.cases, num_test=args.test_cases, preset="small", seed=args.seed)
    preset = json.loads((Path(__file__).resolve().parents[1] / "configs" / "light_unet.json").read_text())
    preset.update(patch_size=args.patch, target_spacing=args.spacing, features_per_stage=args.features,
                  reorient_to_ras=True)  # as the reference plans: flipped phantoms reach the network in RAS order
    (work / "preset.json").write_text(json.dumps(preset))
    random_source_dataset(raw, source, 871, args.seed)
    code = cli_main(["consensus", "--images", str(source / "imagesTr"), "--labels",
                     *map(str, sorted((source / "pseudolabels").iterdir())), "--out", str(raw), "--dataset-id", "872",
                     "--dataset-name", "AblationConsensus", "--refine", args.refine, "--ds-mode", args.ds_mode,
                     "--overwrite",
                     *(["--easy-threshold", str(args.easy_threshold)] if args.easy_threshold is not None else []),
                     *(["--hard-threshold", str(args.hard_threshold)] if args.hard_threshold is not None else [])])
    if code not in (0, 1):
        return code
    tiers = read_json(raw / "Dataset872_AblationConsensus" / "curriculum.json")["tiers"]
    for dataset_id, name in ((871, "Dataset871_AblationRandom"), (872, "Dataset872_AblationConsensus")):
        if not (args.reuse_preprocessed and (work / "nnUNet_preprocessed" / name / f"{PLANS}.json").is_file()):
            plan_and_preprocess(dataset_id, work / "preset.json")
    arms = {"a": ("Dataset871_AblationRandom", AblationRandomSource),
            "b": ("Dataset872_AblationConsensus", AblationMixed),
            "c": ("Dataset872_AblationConsensus", AblationEasyOnly),
            "d": ("Dataset872_AblationConsensus", AblationEasyThenHard)}
    results = {"setup": {**vars(args), "work": str(work), "tiers": {t: len(c) for t, c in tiers.items()}}, "arms": {}}
    for arm in args.arms:
        dataset_name, cls = arms[arm]
        start = time.perf_counter()
        trainer = train(dataset_name, with_optimizer(cls, args.optimizer), args.epochs, args.iterations, args.device)
        scores = predict_and_score(trainer, source / "imagesTs", source / "labelsTs", work / "predictions" / arm,
                                   args.device)
        results["arms"][arm] = {"trainer": cls.__name__, "test_dice_mean": round(float(np.mean(scores)), 4),
                                "test_dice_sd": round(float(np.std(scores)), 4),
                                "test_dice_per_case": [round(s, 4) for s in scores],
                                **official_scores(source / "labelsTs", work / "predictions" / arm,
                                                  work / "evaluation" / arm),
                                "minutes": round((time.perf_counter() - start) / 60, 1)}
        print(json.dumps({arm: results["arms"][arm]}), flush=True)
        write_json(work / "ablation_results.json", results)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
