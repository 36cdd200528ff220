"""SMIT self-supervised objectives for Swin-X Seg (Jiang et al., MICCAI 2022), as used by the Swin-X Seg paper.

Two augmented views x1, x2 of a patch are masked with independent block masks. The student is the Swin-X Seg
network itself; the teacher is an exponential moving average (EMA) of the student's encoder and projection head.

- MIP, masked image prediction: the student sees x1 with masked voxels zeroed and masked patch embeddings
  replaced by a learned mask token; its decoder (followed by a 1x1x1 head) regresses the intensities, L1 over
  the masked voxels only. Zeroing the voxels keeps the decoder's full-resolution image skip from copying them.
- MPD, masked patch token self-distillation: at masked stride-32 tokens, the student's token distribution
  (projection head, softmax at temperature 0.1) matches the teacher's on the unmasked view (centred, 0.04).
- ITD, global image token self-distillation: the average-pooled stride-32 token of each masked student view
  matches the teacher's token of the other unmasked view (DINO cross-view loss).

Pretraining trains the whole segmentation network (encoder by all three losses, decoder by MIP); its state dict
is what `nnUNetv2_train -pretrained_weights` loads. Tensors are (B, C, Z, Y, X).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nnunet_cdl.errors import CdlError
from nnunet_cdl.networks.swinxseg import SwinXSeg, encode_tokens


@dataclass(frozen=True)
class SmitSettings:
    """SMIT hyper-parameters: mask ratio and block edge (voxels), head sizes, temperatures, loss weights."""

    mask_ratio: float = 0.6
    mask_block: int = 16
    head_hidden: int = 1024
    head_bottleneck: int = 256
    head_prototypes: int = 2048
    student_temperature: float = 0.1
    teacher_temperature: float = 0.04
    center_momentum: float = 0.9
    weight_mip: float = 1.0
    weight_mpd: float = 1.0
    weight_itd: float = 1.0


def block_mask(batch: int, shape: tuple[int, int, int], block: int, ratio: float,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Random (B, Z, Y, X) bool mask of `block`^3-voxel cubes, about `ratio` of the cubes masked.

    `shape` (voxels) must be divisible by `block`; at least one cube is masked and one kept per sample.
    """
    if any(s % block for s in shape):
        raise CdlError(f"mask block {block} must divide the patch size {shape}")
    if not 0.0 < ratio < 1.0:
        raise CdlError(f"mask ratio must lie in (0, 1), got {ratio}")
    grid = tuple(s // block for s in shape)
    n_cubes = math.prod(grid)
    n_masked = min(n_cubes - 1, max(1, round(ratio * n_cubes)))
    scores = torch.rand(batch, n_cubes, generator=generator)
    masked = torch.zeros(batch, n_cubes, dtype=torch.bool)
    masked.scatter_(1, scores.argsort(dim=1)[:, :n_masked], True)
    cubes = masked.view(batch, *grid)
    for axis in range(3):
        cubes = cubes.repeat_interleave(block, dim=axis + 1)
    return cubes


def downsample_mask(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, Z, Y, X) bool voxel mask -> (B, Z/f, Y/f, X/f) float fraction of masked voxels per cell."""
    return F.avg_pool3d(mask[:, None].float(), kernel_size=factor, stride=factor)[:, 0]


class ProjectionHead(nn.Module):
    """DINO head: MLP (GELU) to an L2-normalised bottleneck, weight-normalised linear to prototype logits."""

    def __init__(self, in_dim: int, hidden: int, bottleneck: int, prototypes: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, bottleneck))
        self.prototypes = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck, prototypes, bias=False))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(..., in_dim) -> (..., prototypes) logits."""
        return self.prototypes(F.normalize(self.mlp(tokens), dim=-1))


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, center: torch.Tensor,
                      student_temperature: float, teacher_temperature: float,
                      weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy H(softmax((t - c) / tau_t), softmax(s / tau_s)) over (..., K) logits, weighted mean."""
    targets = F.softmax((teacher_logits - center) / teacher_temperature, dim=-1).detach()
    per_token = -(targets * F.log_softmax(student_logits / student_temperature, dim=-1)).sum(dim=-1)
    if weights is None:
        return per_token.mean()
    return (per_token * weights).sum() / weights.sum().clamp_min(1e-6)


class SmitPretrainer(nn.Module):
    """Student (the segmentation network, a mask token, reconstruction and projection heads) and EMA teacher."""

    def __init__(self, network: SwinXSeg, settings: SmitSettings = SmitSettings()) -> None:
        super().__init__()
        self.settings = settings
        self.network = network
        embed_dim = network.encoder_channels[0]
        deep_dim = network.encoder_channels[-1]
        in_channels = network.encoder.patch_embed.proj.in_channels
        self.mask_token = nn.Parameter(torch.zeros(embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.reconstruction = nn.Conv3d(network.decoder.seg_layers.in_channels, in_channels, kernel_size=1)
        self.head = ProjectionHead(deep_dim, settings.head_hidden, settings.head_bottleneck, settings.head_prototypes)
        self.teacher_encoder = copy.deepcopy(network.encoder).requires_grad_(False)
        self.teacher_head = copy.deepcopy(self.head).requires_grad_(False)
        self.register_buffer("center_patch", torch.zeros(settings.head_prototypes))
        self.register_buffer("center_global", torch.zeros(settings.head_prototypes))

    def student_parameters(self) -> list[nn.Parameter]:
        """Everything the optimiser updates (the teacher follows by EMA)."""
        teacher = {id(p) for p in [*self.teacher_encoder.parameters(), *self.teacher_head.parameters()]}
        return [p for p in self.parameters() if id(p) not in teacher]

    def forward(self, view1: torch.Tensor, view2: torch.Tensor, mask1: torch.Tensor,
                mask2: torch.Tensor) -> dict[str, torch.Tensor]:
        """Losses for views (B, C, Z, Y, X) and voxel masks (B, Z, Y, X) bool: `loss`, `mip`, `mpd`, `itd`."""
        s = self.settings
        patch = self.network.encoder.patch_size[0]
        deep = patch * 2 ** (len(self.network.encoder_channels) - 1)  # stride of the last encoder map
        student = []
        for view, mask in ((view1, mask1), (view2, mask2)):
            masked_view = view * (~mask[:, None]).to(view.dtype)
            token_mask = downsample_mask(mask, patch) > 0.5
            student.append((masked_view, encode_tokens(self.network.encoder, masked_view, token_mask,
                                                       self.mask_token)))
        decoded = self.network.decoder.features(student[0][0], student[0][1])
        reconstruction = self.reconstruction(decoded)
        voxel_weight = mask1[:, None].to(view1.dtype).expand_as(view1)
        mip = (torch.abs(reconstruction - view1) * voxel_weight).sum() / voxel_weight.sum().clamp_min(1.0)

        with torch.no_grad():
            teacher = [self._teacher_tokens(view) for view in (view1, view2)]
        mpd_terms, itd_terms = [], []
        for index, mask in enumerate((mask1, mask2)):
            tokens = _flatten(student[index][1][-1])
            weights = downsample_mask(mask, deep).flatten(1)
            mpd_terms.append(distillation_loss(self.head(tokens), teacher[index][0], self.center_patch,
                                               s.student_temperature, s.teacher_temperature, weights))
            itd_terms.append(distillation_loss(self.head(tokens.mean(dim=1)), teacher[1 - index][1],
                                               self.center_global, s.student_temperature, s.teacher_temperature))
        mpd = sum(mpd_terms) / 2
        itd = sum(itd_terms) / 2
        if self.training:
            self._update_centers(teacher)
        loss = s.weight_mip * mip + s.weight_mpd * mpd + s.weight_itd * itd
        return {"loss": loss, "mip": mip.detach(), "mpd": mpd.detach(), "itd": itd.detach()}

    def _teacher_tokens(self, view: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher logits of the unmasked view: patch tokens (B, N, K) and global token (B, K)."""
        tokens = _flatten(encode_tokens(self.teacher_encoder, view)[-1])
        return self.teacher_head(tokens), self.teacher_head(tokens.mean(dim=1))

    @torch.no_grad()
    def _update_centers(self, teacher: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        m = self.settings.center_momentum
        patch_mean = torch.cat([t[0].flatten(0, 1) for t in teacher]).mean(dim=0)
        global_mean = torch.cat([t[1] for t in teacher]).mean(dim=0)
        self.center_patch.mul_(m).add_(patch_mean, alpha=1 - m)
        self.center_global.mul_(m).add_(global_mean, alpha=1 - m)

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """teacher = momentum * teacher + (1 - momentum) * student, for the encoder and the projection head."""
        for student, teacher in ((self.network.encoder, self.teacher_encoder), (self.head, self.teacher_head)):
            for p_s, p_t in zip(student.parameters(), teacher.parameters()):
                p_t.mul_(momentum).add_(p_s.detach(), alpha=1 - momentum)


def teacher_momentum(step: int, total_steps: int, start: float = 0.996) -> float:
    """EMA momentum: cosine schedule from `start` at step 0 to 1.0 at the last step."""
    progress = step / max(1, total_steps - 1)
    return 1.0 - (1.0 - start) * (math.cos(math.pi * progress) + 1) / 2


def _flatten(feature_map: torch.Tensor) -> torch.Tensor:
    """(B, C, Z, Y, X) -> (B, Z * Y * X, C)."""
    return feature_map.flatten(2).transpose(1, 2)
