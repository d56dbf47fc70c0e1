"""pix2pix: the U-Net and PatchGAN shapes, the recipe's losses by hand, deterministic eval, training and resume."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from ganforge.models import MODELS, TRANSLATORS, ModelConfigError, create_models, create_generator
from ganforge.models.pix2pix import Pix2PixConfig

TINY = {"width": 4, "d_width": 4}


@pytest.mark.parametrize("resolution", [16, 32])
@pytest.mark.parametrize("in_channels,channels", [(1, 1), (1, 3), (3, 3), (4, 4), (3, 1)])
def test_unet_and_patchgan_shapes(resolution, in_channels, channels):
    cfg, G, D = create_models("pix2pix", resolution=resolution, in_channels=in_channels, channels=channels, **TINY)
    a = torch.rand(2, in_channels, resolution, resolution) * 2 - 1
    b = G(a)
    assert b.shape == (2, channels, resolution, resolution)
    assert b.min() >= -1 and b.max() <= 1  # tanh
    logits = D(a, b)
    side = {16: 6, 32: 6}[resolution]  # 16 px: 1 stride-2 conv (8) then two 4x4 stride-1 convs (-1 each)
    assert logits.shape == (2, 1, side, side)
    # the encoder reaches a 1x1 bottleneck, as the paper's unet_256 does at 256 px
    assert len(G.down) == cfg.encoder_depth == {16: 4, 32: 5}[resolution]


def test_paper_sizes_at_256px():
    cfg, G, D = create_models("pix2pix", resolution=256, in_channels=3, channels=3, width=2, d_width=64)
    assert cfg.encoder_depth == 8 and cfg.patch_layers == 3
    d_convs = [m.out_channels for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert d_convs == [64, 128, 256, 512, 1]  # C64-C128-C256-C512, then the patch logits
    strides = [m.stride[0] for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert strides == [2, 2, 2, 1, 1]  # the 70x70 receptive field
    assert D(torch.zeros(1, 3, 256, 256), torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30)
    g_convs = [m.out_channels for m in G.down.modules() if isinstance(m, nn.Conv2d)]
    assert g_convs == [2, 4, 8, 16, 16, 16, 16, 16]  # width x 1, 2, 4, 8, 8, ...
    dropouts = [any(isinstance(m, nn.Dropout) for m in layer.modules()) for layer in G.up]
    assert dropouts == [True, True, True, False, False, False, False, False]  # the innermost three decoders


def test_label_map_input_is_one_hot():
    cfg, G, D = create_models("pix2pix", resolution=16, input_classes=5, channels=3, **TINY)
    labels = torch.randint(0, 5, (2, 16, 16))
    b = G(labels)
    assert b.shape == (2, 3, 16, 16)
    assert G.down[0][0].in_channels == 5 and D.features[0].in_channels == 5 + 3
    assert D(labels, b).shape == (2, 1, 6, 6)
    with pytest.raises(ModelConfigError, match="label map of 5 classes"):
        G(torch.rand(2, 1, 16, 16))


def test_bad_inputs_and_configs_are_refused():
    _, G, _ = create_models("pix2pix", resolution=16, in_channels=1, channels=3, **TINY)
    with pytest.raises(ModelConfigError, match=r"\(B, 1, H, W\)"):
        G(torch.rand(2, 3, 16, 16))
    with pytest.raises(ModelConfigError, match="multiples of 16"):
        G(torch.rand(2, 1, 24, 24))
    with pytest.raises(ModelConfigError, match="power of two"):
        Pix2PixConfig(resolution=48)
    with pytest.raises(ModelConfigError, match="norm must be one of"):
        Pix2PixConfig(norm="group")
    with pytest.raises(ModelConfigError, match="dropout"):
        Pix2PixConfig(dropout=1.0)


def test_any_size_divisible_by_the_depth_works():
    # fully convolutional: a wider image than trained on translates too
    _, G, _ = create_models("pix2pix", resolution=16, in_channels=1, channels=1, **TINY)
    assert G(torch.zeros(1, 1, 32, 48)).shape == (1, 1, 32, 48)


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_eval_mode_is_deterministic(norm):
    torch.manual_seed(0)
    _, G, _ = create_models("pix2pix", resolution=16, in_channels=1, channels=3, norm=norm, **TINY)
    a = torch.rand(4, 1, 16, 16) * 2 - 1
    G.train()
    G(a), G(a)  # batch norm gathers running statistics; dropout makes these differ
    assert not torch.equal(G(a), G(a))  # training mode: dropout is on
    G.eval()
    with torch.no_grad():
        first, second = G(a), G(a)
        alone = G(a[:1])
    assert torch.equal(first, second)
    # no batch statistics in eval: one image's output does not depend on the rest of its batch
    assert torch.allclose(alone, first[:1], atol=1e-6)


def test_registered_as_a_translator_only():
    # MODELS' consumers (sample, metrics, explore) all assume G(z, labels): pix2pix stays out of it
    assert "pix2pix" in TRANSLATORS and "pix2pix" not in MODELS
    cfg, G, _ = create_models("pix2pix", resolution=16, in_channels=1, channels=3, **TINY)
    rebuilt = create_generator("pix2pix", dataclasses.asdict(cfg))  # as export will read it back
    rebuilt.load_state_dict(G.state_dict())
