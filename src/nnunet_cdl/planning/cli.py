"""`nnunet-cdl plan`: `nnUNetv2_plan_and_preprocess` with nnunet-cdl's planners (LightUNetPlanner by default).

Same flags as the stock command, plus `--preset FILE` for planners that take a preset. Fingerprint extraction,
planning and preprocessing are nnU-Net's own API functions; only the planner class differs. The stock command
cannot do this itself: it looks planners up only inside nnU-Net's installed package.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nnunet_cdl.errors import CdlError
from nnunet_cdl.io import read_json
from nnunet_cdl.planning import DEFAULT_PLANNER, PLANNER_TRAINERS, PLANNERS
from nnunet_cdl.planning.dataset_check import check_raw_dataset, require_nnunet_paths

STOCK_NUM_PROCESSES = {"2d": 8, "3d_fullres": 4, "3d_lowres": 8}


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Fingerprint, plan and preprocess nnU-Net datasets with nnunet-cdl's planners "
        "(flags as nnUNetv2_plan_and_preprocess).",
    )
    parser.add_argument("-d", nargs="+", type=int, required=True, help="dataset IDs, e.g. 1 or 1 2")
    parser.add_argument("-fpe", default="DatasetFingerprintExtractor", help="fingerprint extractor class name")
    parser.add_argument("-npfp", type=int, default=min(8, os.cpu_count() or 1),
                        help="processes for fingerprint extraction (default: min(8, CPU cores))")
    parser.add_argument("--verify_dataset_integrity", action="store_true", help="run nnU-Net's dataset check")
    parser.add_argument("--no_pp", action="store_true", help="fingerprint and plan only, no preprocessing")
    parser.add_argument("--clean", action="store_true", help="recompute an existing fingerprint")
    parser.add_argument("-pl", default=DEFAULT_PLANNER,
                        help=f"planner class: one of {', '.join(PLANNERS)} or an nnU-Net planner "
                        f"(default: {DEFAULT_PLANNER})")
    parser.add_argument("-gpu_memory_target", type=float, default=None,
                        help="GPU memory target (GB) for nnU-Net's planners; fixed presets ignore it")
    parser.add_argument("-preprocessor_name", default="DefaultPreprocessor",
                        help="preprocessor class inside nnunetv2.preprocessing")
    parser.add_argument("-overwrite_target_spacing", nargs="+", default=None,
                        help="3d_fullres target spacing z y x in mm (replaces the preset's)")
    parser.add_argument("-overwrite_plans_name", default=None, help="plans name to write instead of the default")
    parser.add_argument("-c", nargs="+", default=["2d", "3d_fullres", "3d_lowres"],
                        help="configurations to preprocess; ones missing from the plans are skipped")
    parser.add_argument("-np", type=int, nargs="+", default=None,
                        help="preprocessing processes (one, or one per configuration); default: nnU-Net's "
                        "(8 2d, 4 3d_fullres, 8 3d_lowres) capped at the CPU cores")
    parser.add_argument("--preset", type=Path, default=None,
                        help="JSON preset overriding planner values (keys of configs/light_unet.json)")
    parser.add_argument("--verbose", action="store_true", help="print nnU-Net's details")
    parser.add_argument("--no_pbar", action="store_true", help="no progress bars")
    return parser


def target_spacing(values: list[str] | None) -> tuple[float, float, float] | None:
    """Parse -overwrite_target_spacing: three positive numbers (z, y, x) in mm."""
    if values is None:
        return None
    try:
        spacing = tuple(float(v) for v in values)
    except ValueError as exc:
        raise CdlError(f"-overwrite_target_spacing needs three numbers (z y x, mm), got {values}") from exc
    if len(spacing) != 3 or min(spacing) <= 0:
        raise CdlError(f"-overwrite_target_spacing needs three positive numbers (z y x, mm), got {values}")
    return spacing  # type: ignore[return-value]


def num_processes(configurations: list[str], requested: list[int] | None) -> list[int]:
    """Processes per configuration for preprocessing: as requested, else nnU-Net's defaults capped at the cores."""
    if requested is not None:
        if len(requested) not in (1, len(configurations)):
            raise CdlError(f"-np needs one number or one per configuration ({len(configurations)}), got {requested}")
        if min(requested) < 1:
            raise CdlError(f"-np values must be >= 1, got {requested}")
        return requested * len(configurations) if len(requested) == 1 else requested
    cores = os.cpu_count() or 1
    return [min(STOCK_NUM_PROCESSES.get(c, 4), cores) for c in configurations]


def check_nnunet_class(name: str, subpackage: str, flag: str) -> None:
    """A class name given by `flag` must exist inside nnunetv2.<subpackage>, where nnU-Net looks it up."""
    from os.path import join

    import nnunetv2
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    folder = join(nnunetv2.__path__[0], *subpackage.split("."))
    if recursive_find_python_class(folder, name, current_module=f"nnunetv2.{subpackage}") is None:
        raise CdlError(f"{flag} {name}: no such class in nnunetv2.{subpackage} (nnU-Net looks it up only there)")


def planner_factory(planner_name: str, preset: Path | None) -> Callable[..., Any]:
    """The planner class, bound to `preset` when given (a `CdlError` if the planner takes no preset)."""
    from nnunet_cdl.planning import resolve_planner

    planner = resolve_planner(planner_name)
    if preset is None:
        return planner
    if "preset" not in inspect.signature(planner.__init__).parameters:
        raise CdlError(f"--preset: planner {planner_name} takes no preset (use one of {', '.join(PLANNERS)})")
    read_json(preset)
    return functools.partial(planner, preset=preset)


def next_steps(dataset_ids: list[int], planner_name: str, plans_name: str) -> str:
    """What to run after planning, including the environment set-up when it is missing."""
    from nnunet_cdl.nnunet_env import FIX, is_configured

    trainer = PLANNER_TRAINERS.get(planner_name, "nnUNetTrainer")
    lines = ["Next:"]
    if not is_configured():
        lines.append(f"  {FIX}")
    for dataset_id in dataset_ids:
        lines.append(f"  nnUNetv2_train {dataset_id} 3d_fullres 0 -tr {trainer} -p {plans_name} [-device cpu]")
    return "\n".join(lines)


def main(argv: list[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    paths = require_nnunet_paths("nnUNet_raw", "nnUNet_preprocessed")
    spacing = target_spacing(args.overwrite_target_spacing)
    processes = num_processes(args.c, args.np)
    for dataset_id in args.d:
        check_raw_dataset(paths["nnUNet_raw"], dataset_id)
    planner = planner_factory(args.pl, args.preset)
    check_nnunet_class(args.fpe, "experiment_planning", "-fpe")
    check_nnunet_class(args.preprocessor_name, "preprocessing", "-preprocessor_name")
    if args.gpu_memory_target is not None and args.pl in PLANNERS:
        print(f"note: {args.pl} uses the preset's patch and batch size; -gpu_memory_target is ignored")

    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiment_dataset,
        preprocess,
    )

    print("Fingerprint extraction...")
    extract_fingerprints(args.d, args.fpe, args.npfp, args.verify_dataset_integrity, args.clean, args.verbose,
                         show_progress_bar=not args.no_pbar)
    print(f"Experiment planning with {args.pl}...")
    plans_name = ""
    for dataset_id in args.d:
        _, plans_name = plan_experiment_dataset(dataset_id, planner, args.gpu_memory_target, args.preprocessor_name,
                                                spacing, args.overwrite_plans_name)
    if not args.no_pp:
        print("Preprocessing...")
        preprocess(args.d, plans_name, args.c, processes, args.verbose, show_progress_bar=not args.no_pbar)
    print(next_steps(args.d, args.pl, plans_name))
    return 0
