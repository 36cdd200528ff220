"""Swin-X Seg network: size, shapes, input checks, one optimisation step on a tiny input."""

from __future__ import annotations

import pytest
import torch

from nnunet_cdl.errors import CdlError
from nnunet_cdl.networks.swinxseg import SwinXSeg, check_input_shape, count_parameters, encoder_state_keys

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def network() -> SwinXSeg:
    torch.manual_seed(0)
    net = SwinXSeg(input_channels=1, num_classes=14)
    net.apply(net.initialize)
    return net


def test_parameter_count_is_the_papers_31m(network: SwinXSeg) -> None:
    total = count_parameters(network)
    assert 28e6 <= total <= 34e6, total
    # The reduction is in the decoder: the encoder is the full 2-2-2-2 Swin with embedding 48.
    assert 7.5e6 <= count_parameters(network.encoder) <= 8.5e6


def test_encoder_configuration(network: SwinXSeg) -> None:
    assert network.encoder.embed_dim == 48
    assert tuple(network.encoder.window_size) == (4, 4, 4)
    assert tuple(network.encoder.patch_size) == (2, 2, 2)
    assert network.encoder_channels == [48, 96, 192, 384, 768]
    assert all(key in network.state_dict() for key in encoder_state_keys(network))


def test_output_shape_and_feature_strides(network: SwinXSeg) -> None:
    x = torch.randn(1, 1, 32, 64, 96)
    with torch.no_grad():
        features = network.encode(x)
        logits = network(x)
    assert logits.shape == (1, 14, 32, 64, 96)
    assert [tuple(f.shape[1:]) for f in features] == [
        (48, 16, 32, 48), (96, 8, 16, 24), (192, 4, 8, 12), (384, 2, 4, 6), (768, 1, 2, 3)]


def test_window_size_is_configurable() -> None:
    net = SwinXSeg(1, 3, window_size=(2, 4, 4), decoder_channels=[8, 8, 16, 16, 32, 32], embed_dim=12,
                   num_heads=(1, 1, 2, 2))
    assert tuple(net.encoder.window_size) == (2, 4, 4)
    with torch.no_grad():
        assert net(torch.randn(2, 1, 32, 32, 64)).shape == (2, 3, 32, 32, 64)


@pytest.mark.parametrize("shape", [(33, 64, 64), (96, 96, 80), (0, 32, 32)])
def test_sizes_not_multiple_of_32_are_rejected(network: SwinXSeg, shape: tuple[int, int, int]) -> None:
    with pytest.raises(CdlError, match="multiples of 32"):
        check_input_shape(shape)
    if 0 not in shape:
        with pytest.raises(CdlError, match="multiples of 32"):
            network(torch.zeros(1, 1, *shape))


def test_bad_configurations_are_rejected() -> None:
    with pytest.raises(CdlError, match="deep supervision"):
        SwinXSeg(1, 2, deep_supervision=True)
    with pytest.raises(CdlError, match="4 stages"):
        SwinXSeg(1, 2, depths=(2, 2, 2))
    with pytest.raises(CdlError, match="decoder_channels"):
        SwinXSeg(1, 2, decoder_channels=[48, 48, 96])


def test_training_steps_lower_the_loss() -> None:
    torch.manual_seed(0)
    net = SwinXSeg(1, 3, embed_dim=12, num_heads=(1, 2, 2, 4), decoder_channels=[8, 8, 16, 32, 32, 32])
    net.apply(net.initialize)
    x = torch.randn(1, 1, 64, 32, 32)
    target = (x > 0.5).long() + (x > 1.2).long()
    optimizer = torch.optim.AdamW(net.parameters(), lr=2e-3)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), target[:, 0])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
