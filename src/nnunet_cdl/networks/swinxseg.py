"""Swin-X Seg: a light 3D Swin-transformer U-Net (Rangnekar et al., FLARE 2023).

The encoder is MONAI's `SwinTransformer` (patch 2, embedding 48, depths 2-2-2-2, heads 3-6-12-24, window 4^3 as
in SMIT's small configuration). It yields feature maps at strides 2, 4, 8, 16 and 32 with 48, 96, 192, 384 and
768 channels. Unlike Swin UNETR, every skip path is first reduced with a 1x1x1 convolution (768 -> 384 at the
bottleneck, the other levels keep their width) and the bottleneck is a single 3x3x3 convolution, which brings
the network from Swin UNETR's 62 M parameters to about 31 M. The decoder is UNETR's: transposed-convolution up-sampling, concatenation with the reduced skip,
residual 3x3x3 block; a full-resolution residual block on the image itself feeds the last level.

Inputs are (B, C, Z, Y, X) tensors whose spatial sizes are multiples of 32; outputs are (B, K, Z, Y, X) logits.
The segmentation head is `decoder.seg_layers`, so nnU-Net's `load_pretrained_weights` skips it when it loads a
pretrained network with another number of classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import UnetrBasicBlock, UnetrUpBlock
from monai.networks.nets.swin_unetr import SwinTransformer
from torch import nn

from nnunet_cdl.errors import CdlError

NUM_STAGES = 4
"""Swin stages; with the patch embedding the encoder down-samples 2^(1 + NUM_STAGES) = 32 times."""
INPUT_MULTIPLE = 2 ** (1 + NUM_STAGES)


def check_input_shape(spatial_shape: Sequence[int], multiple: int = INPUT_MULTIPLE) -> None:
    """Raise `CdlError` unless every spatial size (voxels) is a positive multiple of `multiple`."""
    bad = [int(s) for s in spatial_shape if int(s) <= 0 or int(s) % multiple]
    if bad:
        raise CdlError(
            f"Swin-X Seg needs spatial sizes that are multiples of {multiple} voxels, got {tuple(spatial_shape)}; "
            f"pad or crop the input (patch sizes such as 96x96x96 or 128x128x128 work)"
        )


def encode_tokens(encoder: SwinTransformer, x: torch.Tensor, token_mask: torch.Tensor | None = None,
                  mask_token: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Run MONAI's Swin encoder: (B, C, Z, Y, X) -> 5 layer-normalised maps at strides 2, 4, 8, 16, 32.

    `token_mask` (B, Z/2, Y/2, X/2) bool replaces the masked patch embeddings by `mask_token` (C,), as masked
    image modelling does; without it this equals `encoder(x, normalize=True)`.
    """
    check_input_shape(x.shape[2:])
    tokens = encoder.pos_drop(encoder.patch_embed(x))
    if token_mask is not None:
        if mask_token is None:
            raise CdlError("a token mask needs a mask token")
        tokens = torch.where(token_mask[:, None], mask_token.view(1, -1, 1, 1, 1).to(tokens.dtype), tokens)
    features = [encoder.proj_out(tokens, True)]
    for layers in (encoder.layers1, encoder.layers2, encoder.layers3, encoder.layers4):
        tokens = layers[0](tokens.contiguous())
        features.append(encoder.proj_out(tokens, True))
    return features


class ConvNormAct(nn.Sequential):
    """k^3 convolution + instance norm + leaky ReLU: (B, C_in, ...) -> (B, C_out, ...), same spatial size."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1) -> None:
        super().__init__(
            nn.Conv3d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.InstanceNorm3d(out_channels, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
        )


class SwinXSegDecoder(nn.Module):
    """UNETR decoder over reduced skips; `seg_layers` maps the full-resolution features to class logits."""

    def __init__(self, input_channels: int, num_classes: int, encoder_channels: Sequence[int],
                 decoder_channels: Sequence[int], norm_name: str) -> None:
        super().__init__()
        if len(decoder_channels) != len(encoder_channels) + 1:
            raise CdlError(
                f"decoder_channels needs {len(encoder_channels) + 1} widths (image level + {len(encoder_channels)} "
                f"encoder levels), got {list(decoder_channels)}"
            )
        self.deep_supervision = False
        self.image_block = UnetrBasicBlock(3, input_channels, decoder_channels[0], 3, 1, norm_name, res_block=True)
        self.skips = nn.ModuleList(ConvNormAct(c_in, c_out)
                                   for c_in, c_out in zip(encoder_channels, decoder_channels[1:]))
        self.bottleneck = ConvNormAct(decoder_channels[-1], decoder_channels[-1], kernel_size=3)
        self.up_blocks = nn.ModuleList(
            UnetrUpBlock(3, decoder_channels[level + 1], decoder_channels[level], 3, 2, norm_name, res_block=True)
            for level in reversed(range(len(decoder_channels) - 1))
        )
        self.seg_layers = nn.Conv3d(decoder_channels[0], num_classes, kernel_size=1)

    def features(self, image: torch.Tensor, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """(B, C, Z, Y, X) image and encoder features at strides 2..32 -> (B, D0, Z, Y, X) decoder features."""
        skips = [self.image_block(image)] + [reduce(f) for reduce, f in zip(self.skips, features)]
        x = self.bottleneck(skips[-1])
        for up, skip in zip(self.up_blocks, reversed(skips[:-1])):
            x = up(x, skip)
        return x

    def forward(self, image: torch.Tensor, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """(B, C, Z, Y, X) image and encoder features at strides 2..32 -> (B, K, Z, Y, X) logits."""
        return self.seg_layers(self.features(image, features))


class SwinXSeg(nn.Module):
    """Swin-X Seg segmentation network, buildable by nnU-Net from the plans' `architecture` section.

    Args mirror the plans' `arch_kwargs`; `deep_supervision` exists for nnU-Net's builder and must be False.
    """

    def __init__(self, input_channels: int, num_classes: int, patch_size: int = 2, embed_dim: int = 48,
                 depths: Sequence[int] = (2, 2, 2, 2), num_heads: Sequence[int] = (3, 6, 12, 24),
                 window_size: Sequence[int] | int = 4, decoder_channels: Sequence[int] | None = None,
                 mlp_ratio: float = 4.0, drop_path_rate: float = 0.0, norm_name: str = "instance",
                 deep_supervision: bool = False) -> None:
        super().__init__()
        if deep_supervision:
            raise CdlError("Swin-X Seg has no deep supervision outputs; train it with nnUNetTrainerSwinXSeg")
        if len(depths) != NUM_STAGES or len(num_heads) != NUM_STAGES:
            raise CdlError(f"Swin-X Seg has {NUM_STAGES} stages: depths {list(depths)} and num_heads "
                           f"{list(num_heads)} must each have {NUM_STAGES} entries")
        if patch_size != 2:
            raise CdlError(f"Swin-X Seg uses patch size 2 (stride-2 first skip), got {patch_size}")
        windows = (window_size,) * 3 if isinstance(window_size, int) else tuple(window_size)
        self.encoder = SwinTransformer(
            in_chans=input_channels, embed_dim=embed_dim, window_size=windows, patch_size=(patch_size,) * 3,
            depths=tuple(depths), num_heads=tuple(num_heads), mlp_ratio=mlp_ratio, drop_path_rate=drop_path_rate,
            spatial_dims=3,
        )
        self.encoder_channels = [embed_dim * 2 ** i for i in range(NUM_STAGES + 1)]
        if decoder_channels is None:
            decoder_channels = default_decoder_channels(embed_dim)
        self.decoder = SwinXSegDecoder(input_channels, num_classes, self.encoder_channels, decoder_channels,
                                       norm_name)

    def encode(self, x: torch.Tensor, token_mask: torch.Tensor | None = None,
               mask_token: torch.Tensor | None = None) -> list[torch.Tensor]:
        """(B, C, Z, Y, X) -> 5 feature maps (B, 48 * 2^i, Z / 2^(i+1), ...) for i = 0..4 (see `encode_tokens`)."""
        return encode_tokens(self.encoder, x, token_mask, mask_token)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, Z, Y, X) image, sizes multiples of 32 -> (B, K, Z, Y, X) logits."""
        return self.decoder(x, self.encode(x))

    @staticmethod
    def initialize(module: nn.Module) -> None:
        """nnU-Net's `network.apply(network.initialize)` hook: truncated-normal linears, He convolutions."""
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
            nn.init.kaiming_normal_(module.weight, a=0.01)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def default_decoder_channels(embed_dim: int = 48) -> list[int]:
    """Decoder widths per level (image, strides 2..32): the encoder's widths with the 16x bottleneck halved."""
    return [embed_dim, embed_dim, 2 * embed_dim, 4 * embed_dim, 8 * embed_dim, 8 * embed_dim]


def count_parameters(network: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in network.parameters() if p.requires_grad)


def encoder_state_keys(network: SwinXSeg) -> list[str]:
    """State-dict keys of the Swin encoder, as they appear in the full network's state dict."""
    return [f"encoder.{key}" for key in network.encoder.state_dict()]
