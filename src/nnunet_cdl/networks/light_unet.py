"""Size and cost of a segmentation network: parameter count and floating-point operations per patch.

`gflops_per_patch` counts with `torch.utils.flop_counter.FlopCounterMode` on a copy of the network on the `meta`
device, so it allocates no memory and runs in about a second for any patch size. FlopCounterMode counts 2 FLOPs
per multiply-accumulate (MAC) of convolutions, transposed convolutions and matrix products; normalisation and
activations are not counted. Divide by 2 for GMACs, the unit many papers call "FLOPs".
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class NetworkCost:
    """Parameters and forward cost of one network on one patch (batch 1)."""

    parameters: int
    gflops: float
    patch_size: tuple[int, ...]

    @property
    def gmacs(self) -> float:
        return self.gflops / 2

    def describe(self) -> str:
        patch = "x".join(str(p) for p in self.patch_size)
        return (
            f"{self.parameters / 1e6:.3f} M parameters, {self.gflops:.2f} GFLOPs ({self.gmacs:.2f} GMACs) per "
            f"{patch} patch (forward, batch 1, torch.utils.flop_counter)"
        )


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of `module` (all, or only those with requires_grad)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def gflops_per_patch(network: nn.Module, patch_size: Sequence[int], num_input_channels: int = 1) -> float:
    """Forward GFLOPs (2 per MAC) of `network` on one (1, C, *patch_size) input; `network` itself is untouched."""
    meta_network = copy.deepcopy(network).to("meta")
    meta_network.eval()
    sample = torch.empty((1, num_input_channels, *patch_size), device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta_network(sample)
    return counter.get_total_flops() / 1e9


def network_cost(network: nn.Module, patch_size: Sequence[int], num_input_channels: int = 1) -> NetworkCost:
    """Parameters and GFLOPs per patch of `network`."""
    return NetworkCost(
        parameters=count_parameters(network),
        gflops=gflops_per_patch(network, patch_size, num_input_channels),
        patch_size=tuple(int(p) for p in patch_size),
    )
