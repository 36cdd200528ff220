"""`nnunet-cdl predict`: nnUNetv2_predict's flags (and -m as nnUNetv2_predict_from_modelfolder) with the adaptive
CPU predictor; `--tiling full` runs nnU-Net's stock predictor for comparison.

When the caches beside the checkpoint serve the run (an OpenVINO backend, see `inference.lean`), the command
predicts without importing torch or nnU-Net's predictor; otherwise `nnUNetCdlPredictor` runs (and fills them)."""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

from nnunet_cdl.errors import CdlError
from nnunet_cdl.io import read_json
from nnunet_cdl.inference.config import EXPORTS, OUTPUT_TYPES, available_cores, load_settings
from nnunet_cdl.inference.cases import input_kind
from nnunet_cdl.inference.runtime import BACKENDS
from nnunet_cdl.inference.tiling import GRIDS


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Predict with a trained nnU-Net model: nnUNetv2_predict's flags plus a fast CPU predictor "
        "(center-first adaptive tiling, body crop, bf16/OpenVINO backends, fast export, post-processing).",
    )
    nn = parser.add_argument_group("nnUNetv2_predict flags (same meaning)")
    nn.add_argument("-i", required=True, help="input folder: CASE_0000.nii.gz ... (nnU-Net's layout), or DICOM CT "
                    "series (in it or its sub-folders; one case per series, listed in OUTPUT/cases.csv)")
    nn.add_argument("-o", required=True, help="output folder (created)")
    nn.add_argument("-d", default=None, help="dataset name or id (with -c; or give -m)")
    nn.add_argument("-m", default=None, help="trained model folder, as nnUNetv2_predict_from_modelfolder -m")
    nn.add_argument("-p", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    nn.add_argument("-tr", default="nnUNetTrainer", help="trainer class (default nnUNetTrainer)")
    nn.add_argument("-c", default=None, help="configuration, e.g. 3d_fullres (required with -d)")
    nn.add_argument("-f", nargs="+", default=["0", "1", "2", "3", "4"], help="folds (default 0 1 2 3 4)")
    nn.add_argument("-step_size", type=float, default=0.5, help="sliding window step (fraction of the patch)")
    nn.add_argument("--disable_tta", action="store_true", help="no mirroring test-time augmentation")
    nn.add_argument("--verbose", action="store_true")
    nn.add_argument("--save_probabilities", action="store_true", help="also write CASE.npz and CASE.pkl")
    nn.add_argument("--continue_prediction", "--c", action="store_true", help="skip cases already predicted")
    nn.add_argument("-chk", default="checkpoint_final.pth", help="checkpoint file name")
    nn.add_argument("-npp", type=int, default=3, help="preprocessing processes (--tiling full only)")
    nn.add_argument("-nps", type=int, default=3, help="export processes (--tiling full only)")
    nn.add_argument("-prev_stage_predictions", default=None, help="cascade input (--tiling full only)")
    nn.add_argument("-num_parts", type=int, default=1, help="number of parts the cases are split into")
    nn.add_argument("-part_id", type=int, default=0, help="which part this call predicts (0-based)")
    nn.add_argument("-device", default="cpu", help="cpu (default here; nnU-Net's is cuda), cuda or mps")
    nn.add_argument("--disable_progress_bar", action="store_true")
    nn.add_argument("--not_on_device", action="store_true", help="(--tiling full, cuda) keep results on the CPU")
    ours = parser.add_argument_group("nnunet-cdl flags")
    ours.add_argument("--tiling", choices=("adaptive", "full"), default="adaptive",
                      help="adaptive (default) or full = nnU-Net's stock predictor, for comparison")
    ours.add_argument("--grid", choices=GRIDS, default=None,
                      help="window grid (default from the preset: auto = fine while it stays at or under "
                      "fine_max_windows windows, else coarse); coarse: about 40%% fewer windows than fine on the "
                      "reference phantoms at 0.002 less mean Dice (docs/inference.md)")
    ours.add_argument("--backend", choices=("auto", *BACKENDS), default=None,
                      help="window backend (default from the preset: auto = the fastest on this CPU, timed on one "
                      "window the first time a model meets a CPU and kept beside the checkpoint)")
    ours.add_argument("--threads", type=int, default=None, help=f"CPU threads (default: all {available_cores()})")
    ours.add_argument("--export", choices=EXPORTS, default=None, help="fast (default) or stock resampling")
    ours.add_argument("--no-postprocess", action="store_true", help="keep every connected component")
    ours.add_argument("--no-body-crop", action="store_true", help="tile the whole image, air included")
    ours.add_argument("--record", type=Path, default=None, help="folder for one JSON record per case")
    ours.add_argument("--preset", type=Path, default=None, help="inference preset JSON (default: packaged)")
    ours.add_argument("--output-type", choices=OUTPUT_TYPES, default="nifti",
                      help="nifti (default): CASE.nii.gz as nnU-Net writes it; dicom-seg (DICOM input only): "
                      "CASE.dcm, a DICOM Segmentation referencing its series")
    ours.add_argument("--int8-calibration", type=Path, default=None,
                      help="openvino-int8: preprocessed training data to calibrate on (default: the model's dataset "
                      "in nnUNet_preprocessed); quantised once, cached beside the checkpoint")
    ours.add_argument("--full-predictor", action="store_true",
                      help="always predict with nnUNetCdlPredictor (PyTorch loaded), also where the cached OpenVINO "
                      "path (no torch import, same outputs) would serve the run")
    ours.add_argument("--allow-any-size", action="store_true",
                      help="predict images whose shape or voxel size no CT has (refused by default)")
    return parser


def model_folder(args: argparse.Namespace) -> str:
    """-m, or nnU-Net's results folder of -d/-tr/-p/-c."""
    if args.m is not None:
        if args.d is not None:
            raise CdlError("give either -m MODEL_FOLDER or -d DATASET -c CONFIGURATION, not both")
        if not Path(args.m).is_dir():
            raise CdlError(f"-m {args.m}: folder not found")
        return args.m
    if args.d is None or args.c is None:
        raise CdlError("give -m MODEL_FOLDER, or -d DATASET with -c CONFIGURATION")
    if not os.environ.get("nnUNet_results"):
        raise CdlError("-d needs nnUNet_results set (export nnUNet_results=...), or give -m MODEL_FOLDER")
    from nnunetv2.utilities.file_path_utilities import get_output_folder

    try:
        return get_output_folder(args.d, args.tr, args.p, args.c)
    except (RuntimeError, ValueError) as exc:
        raise CdlError(f"-d {args.d}: {exc}") from exc


def device_of(name: str):
    """-device as a `torch.device` (imports torch)."""
    import torch

    if name not in ("cpu", "cuda", "mps"):
        raise CdlError(f"-device must be cpu, cuda or mps, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise CdlError("-device cuda: no CUDA device here; use -device cpu")
    return torch.device(name)


def main(argv: list[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    folds = [f if f == "all" else int(f) for f in args.f]
    if not 0 < args.step_size <= 1:
        raise CdlError(f"-step_size must be in (0, 1], got {args.step_size}")
    if not 0 <= args.part_id < args.num_parts:
        raise CdlError(f"-part_id must be in 0..{args.num_parts - 1}, got {args.part_id}")
    if args.threads is not None and args.threads < 1:
        raise CdlError(f"--threads must be >= 1, got {args.threads}")
    if not Path(args.i).is_dir():
        raise CdlError(f"-i {args.i}: input folder not found")
    folder = model_folder(args)
    if args.device not in ("cpu", "cuda", "mps"):
        raise CdlError(f"-device must be cpu, cuda or mps, got {args.device!r}")
    settings = load_settings(args.preset)
    settings = settings.with_overrides(
        backend=args.backend, export=args.export, threads=args.threads, record_dir=args.record,
        allow_any_size=args.allow_any_size or None, output_type=args.output_type,
        int8_calibration=args.int8_calibration,
        postprocess=replace(settings.postprocess, enabled=False) if args.no_postprocess else None,
        body=replace(settings.body, enabled=False) if args.no_body_crop else None,
        tiling=replace(settings.tiling, grid=args.grid) if args.grid else None,
    )
    check_output_folder(Path(args.o))
    kind = input_kind(args.i, read_json(Path(folder) / "dataset.json").get("file_ending", ".nii.gz"))
    if kind == "dicom" and args.tiling == "full":
        raise CdlError(f"-i {args.i}: DICOM input needs the adaptive predictor; drop --tiling full")
    if kind != "dicom" and args.output_type == "dicom-seg":
        raise CdlError(f"--output-type dicom-seg needs DICOM input; -i {args.i} holds no DICOM files")
    if args.output_type == "dicom-seg" and args.save_probabilities:
        raise CdlError("--save_probabilities writes nnU-Net's .npz beside NIfTI output; drop it with dicom-seg")
    from nnunet_cdl.inference.lean import lean_predictor

    lean, why_not = (None, "--full-predictor") if args.full_predictor else lean_predictor(
        Path(folder), folds, args.chk, settings, args.step_size, not args.disable_tta, args.device, args.tiling,
        args.save_probabilities, args.prev_stage_predictions)
    if lean is not None:
        return predict_with(lean, kind, args)
    if args.verbose:
        print(f"predicting with nnUNetCdlPredictor (PyTorch): the cached OpenVINO path does not serve this run "
              f"({why_not})", flush=True)
    import torch

    device = device_of(args.device)
    torch.set_num_threads(settings.threads)
    common = dict(
        tile_step_size=args.step_size, use_gaussian=True, use_mirroring=not args.disable_tta,
        perform_everything_on_device=not args.not_on_device, device=device, verbose=args.verbose,
        verbose_preprocessing=args.verbose, allow_tqdm=not args.disable_progress_bar,
    )
    if args.tiling == "full":
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        from nnunet_cdl.nnunet_env import ensure_nnunet_env

        ensure_nnunet_env()
        Path(args.o).mkdir(parents=True, exist_ok=True)
        predictor = nnUNetPredictor(**common)
        _check_checkpoints(folder, folds, args.chk)
        predictor.initialize_from_trained_model_folder(folder, folds, args.chk)
        predictor.predict_from_files(
            args.i, args.o, save_probabilities=args.save_probabilities, overwrite=not args.continue_prediction,
            num_processes_preprocessing=args.npp, num_processes_segmentation_export=args.nps,
            folder_with_segs_from_prev_stage=args.prev_stage_predictions, num_parts=args.num_parts,
            part_id=args.part_id,
        )
        return 0
    from nnunet_cdl.inference.predictor import nnUNetCdlPredictor

    predictor = nnUNetCdlPredictor(**common, settings=settings)
    predictor.initialize_from_trained_model_folder(folder, folds, args.chk)
    return predict_with(predictor, kind, args)


def predict_with(predictor, kind: str, args: argparse.Namespace) -> int:
    """Run `predictor` (ours, lean or not) on the DICOM series or the nnU-Net input folder of `args`."""
    if kind == "dicom":
        predictor.predict_from_dicom(args.i, args.o, overwrite=not args.continue_prediction)
        return 0
    predictor.predict_from_files(
        args.i, args.o, save_probabilities=args.save_probabilities, overwrite=not args.continue_prediction,
        folder_with_segs_from_prev_stage=args.prev_stage_predictions, num_parts=args.num_parts,
        part_id=args.part_id,
    )
    return 0


def check_output_folder(folder: Path) -> None:
    """`-o` must be a folder (or not exist yet, below a writable folder) that this user can write."""
    if folder.exists() and not folder.is_dir():
        raise CdlError(f"-o {folder}: exists and is not a folder")
    existing = next(p for p in [folder, *folder.parents] if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise CdlError(f"-o {folder}: {existing} is not writable")


def _check_checkpoints(folder: str, folds: list, checkpoint: str) -> None:
    missing = [str(Path(folder, f"fold_{f}", checkpoint)) for f in folds if not Path(folder, f"fold_{f}", checkpoint).is_file()]
    if missing:
        raise CdlError(f"checkpoint not found: {', '.join(missing)} (choose folds with -f, the file with -chk)")
