"""Seconds per training iteration and per inference patch of the light 3D U-Net on this CPU, fp32 and bf16.

Training iteration: forward + deep-supervised Dice+CE loss + backward + gradient clipping + SGD step, exactly the
objects nnUNetTrainerLightUNet builds (network from the plans' architecture, nnU-Net's loss and optimizer), on
random data of batch 2 x patch 32x128x192 and 14 classes. Inference patch: one forward pass of batch 1 without deep
supervision under torch.inference_mode. bf16 uses torch.autocast("cpu", torch.bfloat16) (nnU-Net autocasts only
on CUDA). Median of --repeats timings after --warmup untimed runs.

    python scripts/bench_train.py --json bench_work/bench_train.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from nnunet_cdl.cpu import cpu_model_name
from nnunet_cdl.io import write_json
from nnunet_cdl.networks.light_unet import network_cost
from nnunet_cdl.planning.preset import PlannerPreset, load_preset


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=Path("bench_work/bench_train.json"), help="result file")
    parser.add_argument("--preset", type=Path, default=None, help="planner preset (default configs/light_unet.json)")
    parser.add_argument("--batch-size", type=int, default=None, help="training batch (default: the preset's, 2)")
    parser.add_argument("--classes", type=int, default=14, help="output channels incl. background")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    return parser.parse_args(argv)


def time_step(step: Callable[[], None], repeats: int, warmup: int) -> dict[str, float | list[float]]:
    """Median wall time and median process CPU time (s) of `step` over `repeats` runs after `warmup` runs.

    CPU time (all threads of this process) is much less affected by other processes on a shared machine than
    wall time; wall / CPU close to 1 / threads means the threads were not starved.
    """
    for _ in range(warmup):
        step()
    wall, cpu = [], []
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
    return {"median_s": round(statistics.median(wall), 4), "median_cpu_s": round(statistics.median(cpu), 4),
            "timings_s": [round(t, 4) for t in wall]}


def make_trainer(preset: PlannerPreset, num_classes: int, work: Path):
    """An nnUNetTrainerLightUNet on plans made from `preset` (no dataset needed), network, loss and optimizer built."""
    os.environ["nnUNet_results"] = str(work / "results")
    os.environ["nnUNet_preprocessed"] = str(work / "preprocessed")
    from nnunet_cdl.training.light_unet import nnUNetTrainerLightUNet

    configuration = {
        "data_identifier": f"{preset.plans_name}_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
        "batch_size": preset.batch_size, "patch_size": list(preset.patch_size),
        "median_image_size_in_voxels": list(preset.patch_size), "spacing": list(preset.target_spacing),
        "normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {}, "resampling_fn_seg_kwargs": {},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape", "resampling_fn_probabilities_kwargs": {},
        "architecture": preset.architecture(), "batch_dice": preset.batch_dice,
    }
    plans = {
        "dataset_name": "Dataset000_Bench", "plans_name": preset.plans_name, "continue_training": False,
        "original_median_spacing_after_transp": list(preset.target_spacing),
        "original_median_shape_after_transp": list(preset.patch_size), "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "configurations": {"3d_fullres": configuration}, "experiment_planner_used": "LightUNetPlanner",
        "label_manager": "LabelManager", "foreground_intensity_properties_per_channel": {},
    }
    labels = {"background": 0, **{f"class{i}": i for i in range(1, num_classes)}}
    dataset_json = {"labels": labels, "channel_names": {"0": "CT"}, "file_ending": ".nii.gz"}
    trainer = nnUNetTrainerLightUNet(plans, "3d_fullres", 0, dataset_json, device=torch.device("cpu"))
    trainer.network = trainer.build_network_architecture(
        trainer.plans_manager, trainer.configuration_manager, 1, trainer.label_manager.num_segmentation_heads, True)
    trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
    trainer.loss = trainer._build_loss()
    return trainer


def training_step(trainer, batch_size: int, num_classes: int, bf16: bool) -> Callable[[], None]:
    """One nnU-Net training iteration (as nnUNetTrainer.train_step) on fixed random data."""
    patch = trainer.configuration_manager.patch_size
    generator = torch.Generator().manual_seed(0)
    data = torch.randn((batch_size, 1, *patch), generator=generator)
    target = torch.randint(0, num_classes, (batch_size, 1, *patch), generator=generator).float()
    targets = [
        torch.nn.functional.interpolate(target, scale_factor=[float(s) for s in scale], mode="nearest")
        for scale in trainer._get_deep_supervision_scales()
    ]
    network, optimizer, loss = trainer.network, trainer.optimizer, trainer.loss

    def step() -> None:
        network.train()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            output = network(data)
            value = loss(output, targets)
        value.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 12)
        optimizer.step()

    return step


def inference_step(trainer, bf16: bool) -> Callable[[], None]:
    """One forward pass of batch 1 without deep supervision, as the sliding-window predictor runs it."""
    network = trainer.build_network_architecture(
        trainer.plans_manager, trainer.configuration_manager, 1, trainer.label_manager.num_segmentation_heads, False)
    network.eval()
    sample = torch.randn((1, 1, *trainer.configuration_manager.patch_size))

    def step() -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            network(sample)

    return step


def markdown(result: dict) -> str:
    patch = "x".join(str(p) for p in result["patch_size"])
    rows = [
        f"| seconds ({result['threads']} threads, {result['cpu']}) | fp32 wall | fp32 CPU | bf16 wall | bf16 CPU |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for key, label in (("train_iteration", f"training iteration, batch {result['batch_size']}, {patch}"),
                       ("inference_patch", f"inference patch, batch 1, {patch}")):
        cells = [f"{result[key][p][m]:.3f}" for p in ("fp32", "bf16") for m in ("median_s", "median_cpu_s")]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + f"\n\nMedian of {result['repeats']} runs after {result['warmup']} warm-up; " \
        f"`{result['command']}` (1-min load average {result['load_average_1min_before']} before, " \
        f"{result['load_average_1min_after']} after)"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    preset = load_preset(args.preset)
    batch_size = args.batch_size or preset.batch_size
    with tempfile.TemporaryDirectory() as work:
        trainer = make_trainer(preset, args.classes, Path(work))
        result: dict = {
            "command": "python scripts/bench_train.py " + " ".join(argv),
            "cpu": cpu_model_name(), "threads": args.threads, "torch": torch.__version__,
            "patch_size": list(preset.patch_size), "batch_size": batch_size, "classes": args.classes,
            "repeats": args.repeats, "warmup": args.warmup, "load_average_1min_before": round(os.getloadavg()[0], 2),
            "network": network_cost(trainer.network, preset.patch_size).describe(),
        }
        for key, make in (("train_iteration", lambda bf16: training_step(trainer, batch_size, args.classes, bf16)),
                          ("inference_patch", lambda bf16: inference_step(trainer, bf16))):
            result[key] = {}
            for precision, bf16 in (("fp32", False), ("bf16", True)):
                result[key][precision] = time_step(make(bf16), args.repeats, args.warmup)
                print(f"{key} {precision}: {result[key][precision]['median_s']:.3f} s", file=sys.stderr)
        result["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.json, result)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
