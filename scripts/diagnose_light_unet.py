"""Why does the light U-Net learn one organ at a time? Measurements on a preprocessed nnU-Net dataset (docs/light_unet.md).

    intensities: per case and organ, voxels and mean intensity after nnU-Net's normalisation, the plans' CT window,
                 and each organ's contrast to the voxels around it (`shell_contrast`)
    gradients:   loss and gradient of one batch in float32 against bfloat16 autocast (cosine, norm ratio)
    sampling:    nnU-Net's own training data loader (foreground oversampling 0.33, batch 2, the plans' patch, no
                 augmentation): the share of patches that hold each organ, and its share of the patch voxels
    probe:       a training probe in this process, without nnU-Net's data augmentation: batches of two patches
                 (one at a random place, one centred on a voxel of a random organ; `--forced-only`: both centred),
                 the paper's network from the plans, a chosen loss / optimiser / CT window; prints the batch Dice of
                 each organ (mean of the last `--every` steps) and the gradient norm. `--cases 1` is the one-case
                 overfit.

    python scripts/diagnose_light_unet.py intensities --preprocessed $nnUNet_preprocessed/Dataset701_CDLPhantom
    python scripts/diagnose_light_unet.py probe --preprocessed ... --steps 300 --patch 32 64 96 --loss dice_ce
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss, DC_and_topk_loss
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

PLANS = "nnUNetPlansLightUNet"
DICE_KWARGS = {"batch_dice": False, "smooth": 1e-5, "do_bg": False, "ddp": False}


def load_cases(preprocessed: Path, limit: int | None) -> tuple[dict, list[tuple[str, np.ndarray, np.ndarray]]]:
    """The plans and the preprocessed cases (name, image (1, z, y, x) float32, label (1, z, y, x) with -1 -> 0)."""
    plans = json.loads((preprocessed / f"{PLANS}.json").read_text())
    folder = preprocessed / f"{PLANS}_3d_fullres"
    dataset = infer_dataset_class(str(folder))(str(folder))
    cases = []
    for name in sorted(dataset.identifiers)[:limit]:
        data, seg, _, _ = dataset.load_case(name)
        label = np.asarray(seg).copy()
        label[label < 0] = 0
        cases.append((name, np.asarray(data, dtype=np.float32), label))
    return plans, cases


def intensities(args: argparse.Namespace) -> None:
    plans, cases = load_cases(args.preprocessed, args.cases)
    window = plans["foreground_intensity_properties_per_channel"]["0"]
    print(f"CT window of the plans: [{window['percentile_00_5']}, {window['percentile_99_5']}] HU, mean "
          f"{window['mean']:.1f}, std {window['std']:.1f}")
    for name, image, label in cases:
        cells = [f"{o}:{(label[0] == o).sum() // 1000}k/{image[0][label[0] == o].mean():.2f}"
                 if (label[0] == o).any() else f"{o}:--" for o in range(1, 14)]
        print(name, image.shape[1:], " ".join(cells))
        print("  against its surroundings:", " ".join(shell_contrast(image[0], label[0], o) for o in range(1, 14)))


def shell_contrast(image: np.ndarray, label: np.ndarray, organ: int) -> str:
    """`organ:contrast@neighbour`: |mean(organ) - mean(shell)| / std(shell), the shell being the voxels within two
    voxels of the organ (z, y, x; normalised intensities), and the label that fills most of the shell (0 =
    background). A contrast under 1 on a shell of one organ is an organ hidden in that organ."""
    mask = label == organ
    if not mask.any():
        return f"{organ}:--"
    shell = ndimage.binary_dilation(mask, iterations=2) & ~mask
    around = image[shell]
    contrast = abs(float(image[mask].mean()) - float(around.mean())) / max(float(around.std()), 1e-6)
    neighbour = int(np.bincount(label[shell].ravel(), minlength=14).argmax())
    return f"{organ}:{contrast:.1f}@{neighbour}"


def network(plans: dict) -> torch.nn.Module:
    arch = plans["configurations"]["3d_fullres"]["architecture"]
    return get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"], 1, 14,
                                  deep_supervision=False)


def rewindow(cases: list, plans: dict, window: list[float] | None) -> list:
    """Map the normalised images back to HU and into [lower, upper] -> [-1, 1] (None: leave them)."""
    if window is None:
        return cases
    props = plans["foreground_intensity_properties_per_channel"]["0"]
    lower, upper = window
    out = []
    for name, image, label in cases:
        hu = image * props["std"] + props["mean"]
        out.append((name, ((np.clip(hu, lower, upper) - (lower + upper) / 2) / ((upper - lower) / 2)).astype(np.float32),
                    label))
    return out


class PatchSampler:
    """Patches of `size` (z, y, x) from the cases: at a random place, or centred on a voxel of a random organ."""

    def __init__(self, cases: list, size: tuple[int, int, int], seed: int) -> None:
        self.cases, self.size, self.rng = cases, size, np.random.default_rng(seed)
        self.organs = [[int(v) for v in np.unique(label) if v > 0] for _, _, label in cases]

    def __call__(self, forced: bool) -> tuple[np.ndarray, np.ndarray]:
        index = int(self.rng.integers(len(self.cases)))
        _, image, label = self.cases[index]
        shape = image.shape[1:]
        if forced:
            organ = self.organs[index][self.rng.integers(len(self.organs[index]))]
            voxels = np.nonzero(label[0] == organ)
            pick = self.rng.integers(len(voxels[0]))
            centre = [int(v[pick]) for v in voxels]
        else:
            centre = [int(self.rng.integers(n)) for n in shape]
        start = [int(np.clip(c - p // 2, 0, max(n - p, 0))) for c, p, n in zip(centre, self.size, shape)]
        box = (slice(None), *(slice(s, s + p) for s, p in zip(start, self.size)))
        image, label = image[box], label[box]
        pad = [(0, 0)] + [(0, p - n) for p, n in zip(self.size, image.shape[1:])]
        return (np.pad(image, pad, constant_values=float(image.min())), np.pad(label, pad, constant_values=0))


def make_loss(name: str) -> torch.nn.Module:
    if name == "dice_topk10":
        return DC_and_topk_loss(DICE_KWARGS, {"k": 10, "label_smoothing": 0.0}, weight_ce=1, weight_dice=1,
                                ignore_label=None)
    return DC_and_CE_loss(DICE_KWARGS, {}, weight_ce=1, weight_dice=1, ignore_label=None,
                          dice_class=MemoryEfficientSoftDiceLoss)


def batch_dice(logits: torch.Tensor, target: torch.Tensor) -> list[float]:
    """Dice of each organ 1..13 over the batch (NaN where the organ is absent from the target)."""
    prediction, truth = logits.argmax(1), target[:, 0]
    scores = []
    for organ in range(1, 14):
        t, p = truth == organ, prediction == organ
        scores.append(float(2 * (p & t).sum() / (p.sum() + t.sum())) if t.any() else float("nan"))
    return scores


def probe(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    plans, cases = load_cases(args.preprocessed, args.cases)
    cases = rewindow(cases, plans, args.window)
    net = network(plans)
    sample = PatchSampler(cases, tuple(args.patch), args.seed)
    loss_fn = make_loss(args.loss)
    if args.optimizer == "adamw":
        optimizer = torch.optim.AdamW(net.parameters(), args.lr, weight_decay=3e-5)
    else:
        optimizer = torch.optim.SGD(net.parameters(), args.lr, momentum=0.99, nesterov=True, weight_decay=3e-5)
    print(f"probe: {len(cases)} case(s), patch {args.patch}, loss {args.loss}, {args.optimizer} lr {args.lr}, "
          f"window {args.window or 'plans'}; columns: step, seconds, gradient norm, Dice of organs 1..13, mean")
    start, history, norms = time.time(), [], []
    for step in range(1, args.steps + 1):
        pairs = [sample(args.forced_only), sample(True)]
        x = torch.from_numpy(np.stack([p[0] for p in pairs]))
        y = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.float32))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits = net(x)
            loss = loss_fn(logits, y)
        optimizer.zero_grad()
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(net.parameters(), 12)))
        optimizer.step()
        history.append(batch_dice(logits.detach().float(), y))
        if step % args.every == 0:
            recent = np.nanmean(np.array(history[-args.every:]), axis=0)
            print(f"{step} {time.time() - start:.0f}s |g| {np.mean(norms[-args.every:]):.2f} "
                  + " ".join(f"{v:.2f}" for v in np.nan_to_num(recent)) + f" mean {np.nanmean(recent):.3f}",
                  flush=True)


def gradients(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    plans, cases = load_cases(args.preprocessed, args.cases)
    net = network(plans)
    image, label = PatchSampler(cases, tuple(args.patch), args.seed)(True)
    x, y = torch.from_numpy(image[None]), torch.from_numpy(label[None].astype(np.float32))
    loss_fn = make_loss(args.loss)
    results = []
    for bf16 in (False, True):
        net.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(net(x), y)
        loss.backward()
        results.append((float(loss), torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])))
    (l32, g32), (l16, g16) = results
    cosine = float(torch.nn.functional.cosine_similarity(g32, g16, dim=0))
    print(f"loss fp32 {l32:.4f} bf16 {l16:.4f}; gradient cosine {cosine:.4f}, norm ratio "
          f"{float(g16.norm() / g32.norm()):.3f}")


def sampling(args: argparse.Namespace) -> None:
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = json.loads((args.preprocessed / f"{PLANS}.json").read_text())
    dataset_json = json.loads((args.preprocessed / "dataset.json").read_text())
    label_manager = PlansManager(plans).get_label_manager(dataset_json)
    folder = str(args.preprocessed / f"{PLANS}_3d_fullres")
    dataset = infer_dataset_class(folder)(folder)
    patch = plans["configurations"]["3d_fullres"]["patch_size"]
    np.random.seed(args.seed)
    loader = nnUNetDataLoader(dataset, 2, patch, patch, label_manager, oversample_foreground_percent=0.33)
    present, voxels, patches, empty = np.zeros(14), np.zeros(14), 0, 0
    for _ in range(args.steps):
        seg = np.asarray(next(loader)["target"])[:, 0]
        for sample in seg:
            counts = np.bincount(np.clip(sample.astype(np.int64), 0, 13).ravel(), minlength=14)
            present += counts > 0
            voxels += counts / sample.size
            patches += 1
            empty += int(counts[1:].sum() == 0)
    print(f"{patches} patches of {patch} from {len(dataset.identifiers)} cases; organ: share of patches holding it, "
          "mean share of the patch voxels")
    for organ in range(1, 14):
        print(f"  {organ:2d}: {present[organ] / patches:.2f}  {voxels[organ] / patches:.4f}")
    print(f"  patches without any organ: {empty / patches:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("intensities", "gradients", "probe", "sampling"))
    parser.add_argument("--preprocessed", type=Path, required=True, help="$nnUNet_preprocessed/DatasetNNN_X")
    parser.add_argument("--cases", type=int, default=None, help="first N cases only (1 = one-case overfit)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--patch", type=int, nargs=3, default=[32, 128, 192])
    parser.add_argument("--loss", choices=("dice_ce", "dice_topk10"), default="dice_ce")
    parser.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--window", type=float, nargs=2, default=None, metavar=("LOWER", "UPPER"),
                        help="re-window the images to [LOWER, UPPER] HU -> [-1, 1]")
    parser.add_argument("--forced-only", action="store_true", help="both patches centred on an organ")
    parser.add_argument("--fp32", dest="bf16", action="store_false", help="no bfloat16 autocast")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.preprocessed.is_dir():
        sys.exit(f"{args.preprocessed}: not a folder")
    {"intensities": intensities, "gradients": gradients, "probe": probe, "sampling": sampling}[args.what](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
