"""`nnunet-cdl swinxseg-pretrain`: SMIT self-supervised pretraining of Swin-X Seg on unlabeled CT.

Images: the dataset's preprocessed training cases (`nnUNetv2_preprocess ... -plans_name nnUNetPlansSwinXSeg`,
labels ignored) plus, optionally, a folder of unlabeled images in nnU-Net naming (`CASE_0000.nii.gz`), which are
preprocessed once with the same plans (spacing, RAS orientation, CT window) into
`<nnUNet_preprocessed>/<dataset>/<data identifier>_unlabeled/`. Each step samples random patches of the plans'
patch size as pairs of overlapping crops of one image (the second crop shifted by up to `view_shift` of the patch
per axis), makes them two views (independent random flips, the second with a small intensity jitter), masks both and
optimises MIP + MPD + ITD (`nnunet_cdl.networks.swinxseg_ssl`) with AdamW, warm-up + cosine learning rate and a
cosine EMA-momentum schedule for the teacher.

Output: a checkpoint whose `network_weights` is the full Swin-X Seg state dict built from the same plans, so
`nnUNetv2_train DATASET 3d_fullres FOLD -p nnUNetPlansSwinXSeg -tr nnUNetTrainerSwinXSeg -pretrained_weights FILE`
loads every encoder (and decoder) tensor; nnU-Net skips only `decoder.seg_layers`.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from nnunet_cdl.errors import CdlError
from nnunet_cdl.io import atomic_path
from nnunet_cdl.networks.swinxseg import SwinXSeg
from nnunet_cdl.networks.swinxseg_ssl import SmitPretrainer, SmitSettings, block_mask, teacher_momentum
from nnunet_cdl.training.light_unet import cap_cpu_threads
from nnunet_cdl.training.swinxseg import warmup_cosine_lr

DEFAULT_PLANS = "nnUNetPlansSwinXSeg"
DEFAULT_CONFIGURATION = "3d_fullres"


@dataclass(frozen=True)
class PretrainOptions:
    """Optimisation settings of one pretraining run (steps are optimiser updates)."""

    steps: int = 20000
    batch_size: int = 4
    lr: float = 2e-4
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05
    teacher_momentum: float = 0.996
    view_shift: float = 0.25
    seed: int = 0
    smit: SmitSettings = field(default_factory=SmitSettings)


def crop_patch(volume: Any, patch_size: tuple[int, int, int], starts: list[int]) -> np.ndarray:
    """(C, pz, py, px) float32 crop of a (C, Z, Y, X) array-like at `starts` (voxels), zero-padded where the
    volume is smaller."""
    region = tuple(slice(a, a + p) for a, p in zip(starts, patch_size))
    crop = np.asarray(volume[(slice(None),) + region], dtype=np.float32)
    out = np.zeros((volume.shape[0], *patch_size), dtype=np.float32)
    out[(slice(None),) + tuple(slice(0, s) for s in crop.shape[1:])] = crop
    return out


def overlapping_crops(volume: Any, patch_size: tuple[int, int, int], rng: np.random.Generator,
                      shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Two (C, pz, py, px) crops of one (C, Z, Y, X) volume, the second shifted from the first by up to
    `shift` x patch size per axis (kept inside the volume), so that they overlap but differ in content."""
    shape = volume.shape[1:]
    first = [int(rng.integers(0, max(0, s - p) + 1)) for s, p in zip(shape, patch_size)]
    second = [
        int(np.clip(a + rng.integers(-int(shift * p), int(shift * p) + 1), 0, max(0, s - p)))
        for a, s, p in zip(first, shape, patch_size)
    ]
    return crop_patch(volume, patch_size, first), crop_patch(volume, patch_size, second)


def make_views(crops: tuple[np.ndarray, np.ndarray], rng: np.random.Generator,
               jitter: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Two augmented views of two (C, Z, Y, X) crops: independent random flips, intensity jitter on the second."""
    views = []
    for index, view in enumerate(crops):
        for axis in (1, 2, 3):
            if rng.random() < 0.5:
                view = np.flip(view, axis=axis)
        if index == 1:
            view = view * rng.uniform(1 - jitter, 1 + jitter) + rng.uniform(-jitter, jitter)
        views.append(np.ascontiguousarray(view, dtype=np.float32))
    return views[0], views[1]


def training_sources(preprocessed_folder: Path) -> list[Any]:
    """(C, Z, Y, X) arrays (lazily read) of every preprocessed case in an nnU-Net configuration folder."""
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    dataset = infer_dataset_class(str(preprocessed_folder))(str(preprocessed_folder))
    return [dataset.load_case(identifier)[0] for identifier in dataset.identifiers]


def unlabeled_sources(folder: Path, cache: Path, plans: dict, configuration: str, dataset_json: dict) -> list[Any]:
    """Preprocess (once) the images of `folder` with the plans into `cache/<case>.npy`; memory-mapped arrays."""
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from nnunetv2.utilities.utils import (create_lists_from_splitted_dataset_folder,
                                          get_identifiers_from_splitted_dataset_folder)

    ending = dataset_json["file_ending"]
    if not folder.is_dir():
        raise CdlError(f"{folder}: unlabeled image folder not found")
    identifiers = [str(i) for i in get_identifiers_from_splitted_dataset_folder(str(folder), ending)]
    if not identifiers:
        raise CdlError(f"{folder}: no images named CASE_XXXX{ending} (nnU-Net naming, XXXX the channel)")
    files = create_lists_from_splitted_dataset_folder(str(folder), ending, identifiers, num_processes=1)
    n_channels = len(dataset_json["channel_names"])
    plans_manager = PlansManager(plans)
    configuration_manager = plans_manager.get_configuration(configuration)
    preprocessor = DefaultPreprocessor(verbose=False)
    cache.mkdir(parents=True, exist_ok=True)
    arrays = []
    for identifier, images in tqdm(list(zip(identifiers, files)), desc="preprocessing unlabeled images"):
        if len(images) != n_channels:
            raise CdlError(f"{folder}: case {identifier} has {len(images)} channel file(s), dataset.json names "
                           f"{n_channels}")
        target = cache / f"{identifier}.npy"
        if not target.is_file():
            try:
                data, _, _ = preprocessor.run_case(images, None, plans_manager, configuration_manager, dataset_json)
            except Exception as exc:  # nnU-Net's readers raise assorted errors for unreadable files
                raise CdlError(f"{images[0]}: cannot be read and preprocessed ({exc})") from exc
            with atomic_path(target) as tmp:
                with open(tmp, "wb") as handle:
                    np.save(handle, data.astype(np.float32))
        arrays.append(np.load(target, mmap_mode="r"))
    return arrays


def pretrain(network: SwinXSeg, sources: list[Any], patch_size: tuple[int, int, int], options: PretrainOptions,
             device: torch.device, progress: bool = True) -> list[dict[str, float]]:
    """Run `options.steps` SMIT updates on random patches of `sources`; the network is updated in place."""
    if not sources:
        raise CdlError("no images to pretrain on")
    rng = np.random.default_rng(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    model = SmitPretrainer(network, options.smit).to(device).train()
    optimizer = torch.optim.AdamW(model.student_parameters(), lr=options.lr, weight_decay=options.weight_decay)
    warmup = max(1, round(options.warmup_fraction * options.steps))
    history = []
    bar = tqdm(range(options.steps), desc="SMIT pretraining", disable=not progress)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine_lr(step, options.steps, warmup, options.lr)
        views = [make_views(overlapping_crops(sources[rng.integers(len(sources))], patch_size, rng,
                                              options.view_shift), rng)
                 for _ in range(options.batch_size)]
        view1, view2 = (torch.from_numpy(np.stack(v)).to(device) for v in zip(*views))
        masks = [block_mask(options.batch_size, patch_size, options.smit.mask_block, options.smit.mask_ratio,
                            generator).to(device) for _ in range(2)]
        losses = model(view1, view2, *masks)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.student_parameters(), 3.0)
        optimizer.step()
        model.update_teacher(teacher_momentum(step, options.steps, options.teacher_momentum))
        history.append({k: float(v.detach()) for k, v in losses.items()})
        bar.set_postfix({k: f"{v:.3f}" for k, v in history[-1].items()})
    return history


def save_pretrained(path: Path, network: SwinXSeg, metadata: dict[str, Any]) -> None:
    """Atomically write {'network_weights': state dict, 'swinxseg_pretrain': metadata} for `-pretrained_weights`."""
    state = {key: value.detach().cpu() for key, value in network.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"network_weights": state, "swinxseg_pretrain": metadata}, tmp)


def build_network(plans: dict, configuration: str, dataset_json: dict) -> SwinXSeg:
    """The segmentation network exactly as nnU-Net's trainer builds it from these plans."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans_manager = PlansManager(plans)
    configuration_manager = plans_manager.get_configuration(configuration)
    arch = plans["configurations"][configuration].get("architecture", {})
    if not str(arch.get("network_class_name", "")).endswith("SwinXSeg"):
        raise CdlError(f"plans {plans['plans_name']} / {configuration} do not describe Swin-X Seg "
                       f"({arch.get('network_class_name')}); plan with `nnunet-cdl plan -d ... -pl SwinXSegPlanner`")
    label_manager = plans_manager.get_label_manager(dataset_json)
    return get_network_from_plans(
        configuration_manager.network_arch_class_name, configuration_manager.network_arch_init_kwargs,
        configuration_manager.network_arch_init_kwargs_req_import,
        determine_num_input_channels(plans_manager, configuration_manager, dataset_json),
        label_manager.num_segmentation_heads, allow_init=True, deep_supervision=False)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def main(argv: list[str], prog: str) -> int:
    """Command line: pretrain and write the checkpoint for `nnUNetv2_train ... -pretrained_weights`."""
    parser = argparse.ArgumentParser(prog=prog, description="SMIT self-supervised pretraining of Swin-X Seg "
                                     "(masked image prediction, masked patch and global token self-distillation).")
    parser.add_argument("-d", "--dataset", required=True, help="dataset id or name (preprocessed with the plans)")
    parser.add_argument("-p", "--plans", default=DEFAULT_PLANS, help=f"plans name (default {DEFAULT_PLANS})")
    parser.add_argument("-c", "--configuration", default=DEFAULT_CONFIGURATION)
    parser.add_argument("--unlabeled", type=Path, help="extra folder of unlabeled images (CASE_0000.nii.gz)")
    parser.add_argument("--no-train-images", action="store_true", help="use only the --unlabeled images")
    parser.add_argument("--steps", type=_positive_int, default=PretrainOptions.steps)
    parser.add_argument("--batch-size", type=_positive_int, help="patches per step (default: the plans')")
    parser.add_argument("--lr", type=float, default=PretrainOptions.lr)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("-o", "--output", type=Path,
                        help="checkpoint file (default <nnUNet_results>/<dataset>/swinxseg_pretrained__PLANS__C.pth)")
    args = parser.parse_args(argv)

    from batchgenerators.utilities.file_and_folder_operations import load_json

    from nnunet_cdl.nnunet_env import require_plans

    plans_file = require_plans(args.dataset, args.plans)
    plans, dataset_json = load_json(str(plans_file)), load_json(str(plans_file.parent / "dataset.json"))
    if args.configuration not in plans["configurations"]:
        raise CdlError(f"{plans_file}: no configuration {args.configuration!r} (has {list(plans['configurations'])})")
    configuration = plans["configurations"][args.configuration]
    network = build_network(plans, args.configuration, dataset_json)
    identifier_folder = plans_file.parent / configuration["data_identifier"]
    sources: list[Any] = []
    if not args.no_train_images:
        if not identifier_folder.is_dir():
            raise CdlError(f"{identifier_folder}: not preprocessed; run `nnUNetv2_preprocess -d {args.dataset} "
                           f"-plans_name {args.plans} -c {args.configuration}` first")
        sources += training_sources(identifier_folder)
    if args.unlabeled is not None:
        cache = identifier_folder.parent / f"{configuration['data_identifier']}_unlabeled"
        sources += unlabeled_sources(args.unlabeled, cache, plans, args.configuration, dataset_json)
    if not sources:
        raise CdlError("no images: drop --no-train-images or give --unlabeled FOLDER with images")
    output = args.output
    if output is None:
        results = os.environ.get("nnUNet_results")
        if not results:
            raise CdlError("nnUNet_results is not set: export it or pass -o FILE")
        output = Path(results) / plans["dataset_name"] / f"swinxseg_pretrained__{args.plans}__{args.configuration}.pth"
    options = PretrainOptions(steps=args.steps, batch_size=args.batch_size or configuration["batch_size"],
                              lr=args.lr, seed=args.seed)
    patch_size = tuple(int(v) for v in configuration["patch_size"])
    if any(p % options.smit.mask_block for p in patch_size):
        raise CdlError(f"{plans_file}: patch size {list(patch_size)} is not divisible by the mask block "
                       f"{options.smit.mask_block}")
    device = torch.device(args.device)
    if device.type == "cpu":
        cap_cpu_threads(os.environ)
    torch.manual_seed(args.seed)
    print(f"{prog}: {len(sources)} images, {options.steps} steps x {options.batch_size} patches of "
          f"{list(patch_size)} on {device}")
    history = pretrain(network, sources, patch_size, options, device)
    metadata = {"plans_name": args.plans, "configuration": args.configuration, "dataset": plans["dataset_name"],
                "images": len(sources), "options": asdict(options), "final_losses": history[-1]}
    save_pretrained(output, network, metadata)
    print(f"{prog}: wrote {output}; fine-tune with nnUNetv2_train {args.dataset} {args.configuration} FOLD "
          f"-p {args.plans} -tr nnUNetTrainerSwinXSeg -pretrained_weights {output}")
    return 0
