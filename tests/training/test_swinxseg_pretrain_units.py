"""Swin-X Seg training pieces: LR schedule, flip-only augmentation, SMIT objectives, pretrain -> fine-tune transfer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nnunet_cdl.errors import CdlError
from nnunet_cdl.networks.swinxseg import SwinXSeg, encoder_state_keys
from nnunet_cdl.networks.swinxseg_ssl import (SmitPretrainer, SmitSettings, block_mask, distillation_loss,
                                              downsample_mask, teacher_momentum)
from nnunet_cdl.training.swinxseg import (WarmupCosineLRScheduler, flip_only_transforms, warmup_cosine_lr,
                                          warmup_epochs_for)
from nnunet_cdl.training.swinxseg_pretrain import (PretrainOptions, crop_patch, make_views, overlapping_crops, pretrain,
                                                   save_pretrained)

torch.set_num_threads(2)
TINY = dict(embed_dim=12, num_heads=(1, 2, 2, 4), decoder_channels=[8, 8, 16, 32, 32, 32])
TINY_SMIT = SmitSettings(mask_block=8, head_hidden=32, head_bottleneck=16, head_prototypes=32)


def tiny_network(num_classes: int = 3, seed: int = 0) -> SwinXSeg:
    torch.manual_seed(seed)
    net = SwinXSeg(1, num_classes, **TINY)
    net.apply(net.initialize)
    return net


def test_warmup_then_cosine() -> None:
    lrs = [warmup_cosine_lr(step, 100, 10, 2e-4) for step in range(100)]
    assert lrs[0] == pytest.approx(2e-5) and lrs[9] == pytest.approx(2e-4)
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10]))
    assert all(a >= b for a, b in zip(lrs[10:-1], lrs[11:]))
    assert lrs[-1] < 1e-6
    assert warmup_epochs_for(1000) == 50 and warmup_epochs_for(1) == 1


def test_scheduler_sets_optimizer_lr() -> None:
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = WarmupCosineLRScheduler(optimizer, 2e-4, 10, 2)
    scheduler.step(0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    scheduler.step(2)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(2e-4)


def test_augmentation_is_flips_only_and_keeps_image_and_label_aligned() -> None:
    transforms = flip_only_transforms((0, 1, 2))
    assert [type(t).__name__ for t in transforms.transforms] == ["MirrorTransform", "RemoveLabelTransform"]
    image = torch.arange(4 * 5 * 6, dtype=torch.float32).view(1, 4, 5, 6)
    label = torch.zeros(1, 4, 5, 6, dtype=torch.int16)
    label[0, 0, 0, 0] = 1
    label[0, 3, 4, 5] = -1
    torch.manual_seed(3)
    seen = set()
    for _ in range(12):
        out = transforms(image=image.clone(), segmentation=label.clone())
        where = tuple(int(i[0]) for i in torch.nonzero(out["segmentation"][0] == 1, as_tuple=True))
        assert out["image"][0][where] == 0.0  # the voxel labelled 1 is still the image's first voxel
        assert out["segmentation"].min() >= 0  # padding label -1 -> 0
        seen.add(where)
    assert len(seen) > 1


def test_block_mask_ratio_and_shape() -> None:
    mask = block_mask(3, (32, 64, 64), 16, 0.6, torch.Generator().manual_seed(0))
    assert mask.shape == (3, 32, 64, 64) and mask.dtype == torch.bool
    np.testing.assert_allclose(mask.float().mean(dim=(1, 2, 3)).numpy(), 19 / 32)  # round(0.6 * 32) cubes
    cells = downsample_mask(mask, 16)
    assert set(cells.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(CdlError, match="divide"):
        block_mask(1, (32, 32, 40), 16, 0.5)
    with pytest.raises(CdlError, match="ratio"):
        block_mask(1, (32, 32, 32), 16, 1.0)


def test_distillation_prefers_matching_distributions() -> None:
    teacher = torch.tensor([[4.0, 0.0, 0.0]])
    center = torch.zeros(3)
    matching = distillation_loss(teacher.clone(), teacher, center, 0.1, 0.04)
    wrong = distillation_loss(torch.tensor([[0.0, 4.0, 0.0]]), teacher, center, 0.1, 0.04)
    assert matching < 0.01 < wrong
    weights = torch.tensor([[1.0, 0.0]])
    pair_student = torch.stack([teacher[0], torch.tensor([0.0, 4.0, 0.0])])[None]
    pair_teacher = torch.stack([teacher[0], teacher[0]])[None]
    assert distillation_loss(pair_student, pair_teacher, center, 0.1, 0.04, weights) < 0.01


def test_teacher_is_an_exponential_moving_average() -> None:
    model = SmitPretrainer(tiny_network(), TINY_SMIT)
    with torch.no_grad():
        for p in model.network.encoder.parameters():
            p.add_(1.0)
    before = [p.clone() for p in model.teacher_encoder.parameters()]
    model.update_teacher(1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.teacher_encoder.parameters()))
    model.update_teacher(0.0)
    assert all(torch.equal(s, t) for s, t in zip(model.network.encoder.parameters(),
                                                  model.teacher_encoder.parameters()))
    assert teacher_momentum(0, 100) == pytest.approx(0.996) and teacher_momentum(99, 100) == pytest.approx(1.0)
    trainable = {id(p) for p in model.student_parameters()}
    assert not any(id(p) in trainable for p in model.teacher_encoder.parameters())
    assert id(model.mask_token) in trainable


def test_views_and_crops() -> None:
    rng = np.random.default_rng(0)
    volume = np.arange(2 * 10 * 20 * 30, dtype=np.float32).reshape(2, 10, 20, 30)
    crop = crop_patch(volume, (16, 16, 16), [0, 2, 3])
    assert crop.shape == (2, 16, 16, 16)
    assert (crop[:, 10:] == 0).all()  # padded beyond the 10 slices
    assert np.array_equal(crop[:, :10], volume[:, :10, 2:18, 3:19])
    first, second = overlapping_crops(volume, (8, 8, 8), rng, shift=0.25)
    start = [np.argwhere(volume[0] == c[0, 0, 0, 0])[0] for c in (first, second)]
    assert not np.array_equal(first, second)
    assert all(abs(int(a) - int(b)) <= 2 for a, b in zip(*start))  # shifted by at most 0.25 x 8 voxels per axis
    v1, v2 = make_views((first, second), rng)
    assert v1.shape == v2.shape == (2, 8, 8, 8) and v1.flags.c_contiguous
    assert not np.array_equal(np.sort(v1.ravel()), np.sort(v2.ravel()))


def test_pretraining_lowers_reconstruction_loss() -> None:
    rng = np.random.default_rng(1)
    z, y = np.linspace(0, 1, 64, dtype=np.float32), np.linspace(0, 1, 32, dtype=np.float32)
    volume = np.clip(z[:, None, None] + 0.3 * y[None, :, None] * y[None, None, :], 0, 1)[None]
    sources = [volume + 0.02 * rng.standard_normal(volume.shape).astype(np.float32)]
    options = PretrainOptions(steps=6, batch_size=1, lr=2e-3, warmup_fraction=0.1, smit=TINY_SMIT)
    history = pretrain(tiny_network(), sources, (64, 32, 32), options, torch.device("cpu"), progress=False)
    assert len(history) == 6 and all(np.isfinite(h["loss"]) for h in history)
    assert np.mean([h["mip"] for h in history[-2:]]) < 0.8 * np.mean([h["mip"] for h in history[:2]])


def test_pretrained_file_loads_every_encoder_tensor_with_stock_nnunet(tmp_path: Path) -> None:
    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

    pretrained = tiny_network(num_classes=3, seed=0)
    volume = np.random.default_rng(0).random((1, 64, 32, 32), dtype=np.float32)
    pretrain(pretrained, [volume], (64, 32, 32), PretrainOptions(steps=1, batch_size=1, smit=TINY_SMIT),
             torch.device("cpu"), progress=False)
    path = tmp_path / "pretrained.pth"
    save_pretrained(path, pretrained, {"steps": 1})

    fine_tune = tiny_network(num_classes=5, seed=1)  # another label set: only the segmentation head differs
    saved = torch.load(path, weights_only=False)["network_weights"]
    keys = encoder_state_keys(fine_tune)
    assert keys and not all(torch.equal(fine_tune.state_dict()[k], saved[k]) for k in keys)
    load_pretrained_weights(fine_tune, str(path))
    state = fine_tune.state_dict()
    assert all(torch.equal(state[k], saved[k]) for k in keys), "an encoder tensor was not transferred"
    decoder = [k for k in state if k.startswith("decoder.") and ".seg_layers." not in f".{k}"]
    assert all(torch.equal(state[k], saved[k]) for k in decoder)
    assert state["decoder.seg_layers.weight"].shape[0] == 5


def test_pretrain_command_reports_missing_plans_in_one_line(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    (tmp_path / "pre" / "Dataset777_X").mkdir(parents=True)
    env = dict(os.environ, nnUNet_raw=str(tmp_path / "raw"), nnUNet_preprocessed=str(tmp_path / "pre"),
               nnUNet_results=str(tmp_path / "res"))
    done = subprocess.run([sys.executable, "-m", "nnunet_cdl.cli", "swinxseg-pretrain", "-d", "777", "-o",
                           str(tmp_path / "w.pth")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "nnUNetPlansSwinXSeg" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "w.pth").exists()
