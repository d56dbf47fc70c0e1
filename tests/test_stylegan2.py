"""StyleGAN2: shapes, the modulated conv against a per-sample reference, truncation, style mixing,
noise modes, w_avg tracking, minibatch stddev, the mapping learning-rate multiplier, config errors,
bf16 autocast and channels_last. Widths 4-16 at 16-32 px keep the file a few seconds on CPU."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from ganforge.errors import GanforgeError
from ganforge.models import create_generator, create_models, model_config
from ganforge.models.stylegan2 import (
    EqualLinear,
    StyleGAN2Config,
    SynthesisLayer,
    downsample2d,
    minibatch_stddev,
    mix_styles,
    modulated_conv2d,
    upsample2d,
)

TINY = {"channel_base": 128, "channel_max": 8, "z_dim": 8, "w_dim": 8, "mapping_layers": 2}


def build(resolution: int = 16, channels: int = 3, num_classes: int = 0, seed: int = 0, **extra):
    torch.manual_seed(seed)
    return create_models("stylegan2", resolution=resolution, channels=channels, num_classes=num_classes,
                         **{**TINY, **extra})


def latents(cfg, batch: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, cfg.z_dim, generator=torch.Generator().manual_seed(seed))


def set_noise_strength(G, value: float) -> None:
    """Noise strengths start at 0 (noise has no effect at init); tests of noise need them on."""
    with torch.no_grad():
        for module in G.modules():
            if isinstance(module, SynthesisLayer):
                module.noise_strength.fill_(value)


@pytest.mark.parametrize("num_classes", [0, 3])
@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("resolution", [16, 32])
def test_shapes(resolution, channels, num_classes):
    cfg, G, D = build(resolution, channels, num_classes)
    labels = torch.arange(4) % 3 if num_classes else None
    ws = G.mapping(latents(cfg), labels)
    assert G.num_ws == 2 * int(math.log2(resolution)) - 2 == cfg.num_ws
    assert ws.shape == (4, G.num_ws, cfg.w_dim) and G.w_avg.shape == (cfg.w_dim,)
    x = G(latents(cfg), labels)
    assert x.shape == (4, channels, resolution, resolution)
    logits, class_logits = D(x, labels)
    assert logits.shape == (4,) and class_logits is None


def test_config_f_widths_and_styles():
    cfg = StyleGAN2Config(resolution=1024)
    assert [cfg.channels_at(r) for r in (4, 64, 128, 256, 512, 1024)] == [512, 512, 256, 128, 64, 32]
    assert cfg.num_ws == 18 and (cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.mapping_lr) == (512, 512, 8, 0.01)


def reference_modulated_conv(x, weight, styles, demodulate, up):
    """Each sample's own modulated (and demodulated) weight, one F.conv2d per sample."""
    out = []
    for i in range(x.shape[0]):
        w = weight * styles[i].reshape(1, -1, 1, 1)  # (O, I, k, k)
        if demodulate:
            w = w / (w.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).sqrt()
        xi = x[i : i + 1]
        if not up:
            out.append(F.conv2d(xi, w, padding=w.shape[-1] // 2))
            continue
        # Upsample: zero insertion, a full convolution (flipped kernel), then [1,3,3,1] x 4.
        zeros = x.new_zeros(1, x.shape[1], 2 * x.shape[2] - 1, 2 * x.shape[3] - 1)
        zeros[..., ::2, ::2] = xi
        y = F.conv2d(zeros, w.flip(2, 3), padding=w.shape[-1] - 1)  # (1, O, 2H + 1, 2W + 1)
        f = torch.tensor([1.0, 3.0, 3.0, 1.0])
        kernel = (torch.outer(f, f) / 64 * 4).expand(w.shape[0], 1, 4, 4)
        out.append(F.conv2d(F.pad(y, [1] * 4), kernel, groups=w.shape[0]))
    return torch.cat(out)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("kernel,demodulate,up", [(3, True, False), (3, True, True), (1, False, False)])
def test_modulated_conv_matches_a_per_sample_reference(kernel, demodulate, up, fused):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 8, 8, generator=gen)
    weight = torch.randn(6, 5, kernel, kernel, generator=gen)
    styles = torch.randn(3, 5, generator=gen) + 1
    got = modulated_conv2d(x, weight, styles, demodulate=demodulate, up=up, fused=fused)
    expected = reference_modulated_conv(x, weight, styles, demodulate, up)
    assert got.shape == expected.shape == (3, 6, 16 if up else 8, 16 if up else 8)
    assert torch.allclose(got, expected, atol=1e-5)


def test_resampling_uses_the_1331_low_pass_filter():
    x = torch.randn(2, 3, 6, 6)
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    kernel = (torch.outer(f, f) / 64).expand(3, 1, 4, 4)
    zeros = x.new_zeros(2, 3, 12, 12)
    zeros[..., ::2, ::2] = x  # zero insertion, then the filter with gain 4, padding (2, 1) as StyleGAN2
    assert torch.allclose(upsample2d(x), F.conv2d(F.pad(zeros, [2, 1, 2, 1]), kernel * 4, groups=3), atol=1e-6)
    down = F.conv2d(F.pad(x, [1] * 4), kernel, groups=3)[..., ::2, ::2]
    assert torch.allclose(downsample2d(x), down, atol=1e-6)
    assert torch.allclose(upsample2d(torch.ones(1, 1, 4, 4))[..., 1:-1, 1:-1], torch.ones(6, 6))


def test_skip_generator_sums_upsampled_images_with_each_torgb():
    cfg, G, _ = build(32)
    outputs = []
    for block in G.synthesis.blocks:
        block.register_forward_hook(lambda module, args, out: outputs.append((out[1], module.torgb.last)))
        block.torgb.register_forward_hook(lambda module, args, out: setattr(module, "last", out))
    image = G(latents(cfg))
    assert torch.equal(image, outputs[-1][0]) and torch.equal(outputs[0][0], outputs[0][1])
    for (previous, _), (img, rgb) in zip(outputs, outputs[1:]):
        assert torch.allclose(img, upsample2d(previous) + rgb, atol=1e-6)


def test_both_modconv_paths_give_the_same_generator_output():
    cfg, G, _ = build(32)
    ws = G.mapping(latents(cfg))
    assert torch.allclose(G.synthesis(ws, fused_modconv=True), G.synthesis(ws, fused_modconv=False), atol=1e-5)


def test_truncation_psi_zero_gives_the_mean_w_image():
    cfg, G, _ = build()
    G.mapping(latents(cfg, 8, seed=5), update_w_avg_beta=0.0)  # w_avg := this batch's mean w, not zero
    assert G.w_avg.abs().sum() > 0
    x = G(latents(cfg), truncation_psi=0.0)
    mean_image = G.synthesis(G.w_avg.reshape(1, 1, -1).expand(1, G.num_ws, -1))  # (1, C, R, R)
    for sample in x:
        assert torch.allclose(sample, mean_image[0], atol=1e-5)


def test_truncation_cutoff_leaves_fine_layers_untouched():
    cfg, G, _ = build()
    G.mapping(latents(cfg, 8, seed=5), update_w_avg_beta=0.0)
    z = latents(cfg)
    ws = G.mapping(z)
    cut = G.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
    assert torch.equal(cut[:, 2:], ws[:, 2:])
    assert torch.allclose(cut[:, :2], G.w_avg.lerp(ws[:, :2], 0.5))
    assert not torch.allclose(cut[:, :2], ws[:, :2])


def test_style_mixing_takes_coarse_layers_from_one_latent_and_fine_from_another():
    cfg, G, _ = build(32)
    ws_a, ws_b = G.mapping(latents(cfg, seed=1)), G.mapping(latents(cfg, seed=2))
    mixed = mix_styles(ws_a, ws_b, 3)
    assert torch.equal(mixed[:, :3], ws_a[:, :3]) and torch.equal(mixed[:, 3:], ws_b[:, 3:])
    # A cutoff drawn as a tensor (as a training step does on the device) mixes the same way.
    assert torch.equal(mix_styles(ws_a, ws_b, torch.tensor(3)), mixed)
    image = G.synthesis(mixed)
    assert torch.equal(image, G.synthesis(torch.cat([ws_a[:, :3], ws_b[:, 3:]], dim=1)))
    for parent in (ws_a, ws_b):
        assert not torch.allclose(image, G.synthesis(parent), atol=1e-3)


def test_noise_modes():
    cfg, G, _ = build()
    set_noise_strength(G, 0.5)
    z = latents(cfg)
    const = G(z)
    assert torch.equal(const, G(z))
    rng_state = torch.get_rng_state()
    first = G(z, noise_mode="random", generator=torch.Generator().manual_seed(7))
    again = G(z, noise_mode="random", generator=torch.Generator().manual_seed(7))
    other = G(z, noise_mode="random", generator=torch.Generator().manual_seed(8))
    assert torch.equal(torch.get_rng_state(), rng_state), "a given generator must leave the global RNG alone"
    assert torch.equal(first, again)
    assert not torch.allclose(first, other) and not torch.allclose(first, const)
    assert not torch.allclose(G(z, noise_mode="none"), const)
    with pytest.raises(ValueError, match="noise_mode must be one of"):
        G(z, noise_mode="fixed")


def test_state_dict_round_trips_into_a_rebuilt_generator():
    cfg, G, _ = build(num_classes=3)
    set_noise_strength(G, 0.3)
    G.mapping(latents(cfg), torch.arange(4) % 3, update_w_avg_beta=0.5)
    state = G.state_dict()
    assert "mapping.w_avg" in state and "synthesis.blocks.0.conv1.noise_const" in state
    torch.manual_seed(123)  # a different init, so only the state_dict can make them agree
    G2 = create_generator("stylegan2", dataclasses.asdict(cfg))
    G2.load_state_dict(state)
    z, labels = latents(cfg), torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        assert torch.equal(G(z, labels, truncation_psi=0.7), G2(z, labels, truncation_psi=0.7))


def test_initialisation_is_deterministic_under_manual_seed():
    _, G1, D1 = build(seed=3)
    _, G2, D2 = build(seed=3)
    for a, b in ((G1, G2), (D1, D2)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_update_w_avg_beta_moves_w_avg_toward_the_batch_mean():
    cfg, G, _ = build()
    z = latents(cfg, 8)
    with torch.no_grad():
        G.w_avg.fill_(1.0)
        batch_mean = G.mapping(z)[:, 0].mean(0)
        before = G.w_avg.clone()
        G.mapping(z)
        assert torch.equal(G.w_avg, before), "without update_w_avg_beta, w_avg must not move"
        G.mapping(z, update_w_avg_beta=0.9)
    assert torch.allclose(G.w_avg, 0.1 * batch_mean + 0.9 * before, atol=1e-6)
    assert (G.w_avg - batch_mean).norm() < (before - batch_mean).norm()


def test_discriminator_blocks_are_residual_with_variance_keeping_gain():
    _, _, D = build(32)
    block = D.blocks[0]  # 32 px -> 16 px
    x = torch.randn(2, block.conv0.weight.shape[1], 32, 32)
    main = block.conv1(block.conv0(x))
    skip = F.conv2d(downsample2d(x), block.skip.weight * block.skip.weight_gain)  # 1x1, no bias
    assert block.skip.bias is None
    assert torch.allclose(block(x), (main + skip) * math.sqrt(0.5), atol=1e-5)


def test_minibatch_stddev_with_a_batch_not_divisible_by_the_group():
    x = torch.randn(6, 8, 4, 4)
    out = minibatch_stddev(x, group_size=4, num_channels=1)  # group 3: the largest divisor of 6 up to 4
    assert out.shape == (6, 9, 4, 4) and torch.equal(out[:, :8], x)
    for i in range(6):
        members = x[i % 2 :: 2]  # sample i is in group i % (6 / 3), as StyleGAN2 splits the batch
        expected = (members.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        assert torch.allclose(out[i, 8], expected.expand(4, 4), atol=1e-6)
    cfg, G, D = build(mbstd_group=4)
    assert D(G(latents(cfg, 6)))[0].shape == (6,)
    assert D(G(latents(cfg, 5)))[0].shape == (5,)  # a prime batch falls back to groups of one


def test_mapping_learning_rate_multiplier_scales_weights_and_gradients():
    _, slow, _ = build(mapping_lr=0.01)
    _, plain, _ = build(mapping_lr=1.0)  # same seed: the same N(0, 1) draws
    for layer, ref in zip(slow.mapping.net, plain.mapping.net):
        fan_in = layer.weight.shape[1]
        assert layer.weight_gain == pytest.approx(0.01 / math.sqrt(fan_in))
        # Stored N(0, 1) / lr_mul, so the effective weight at init is the same for any multiplier.
        assert torch.allclose(layer.weight * layer.weight_gain, ref.weight * ref.weight_gain)
    z = latents(slow.config)
    for G in (slow, plain):
        G(z).square().mean().backward()
    for layer, ref in zip(slow.mapping.net, plain.mapping.net):
        assert torch.allclose(layer.weight.grad, 0.01 * ref.weight.grad, rtol=1e-3, atol=1e-9)
        assert ref.weight.grad.abs().sum() > 0
    # Synthesis layers have multiplier 1 in both models, so their gradients agree.
    assert torch.allclose(slow.synthesis.blocks[1].conv0.weight.grad, plain.synthesis.blocks[1].conv0.weight.grad,
                          rtol=1e-3, atol=1e-7)
    assert EqualLinear(4, 2, lr_mul=0.5).weight_gain == pytest.approx(0.25)


def test_labels_condition_through_the_mapping_and_the_projection():
    cfg, G, D = build(num_classes=3)
    z = latents(cfg, 1).expand(3, -1)
    labels = torch.arange(3)
    ws = G.mapping(z, labels)
    assert not torch.allclose(ws[0], ws[1])
    assert torch.equal(G(z, labels), G.synthesis(ws))
    x = G(z, labels)[:1].expand(3, -1, -1, -1)
    logits = D(x, labels)[0]
    assert not torch.allclose(logits[0], logits[1])
    with pytest.raises(ValueError, match="needs labels"):
        G.mapping(z)


def test_bad_inputs_are_refused_with_a_sentence():
    cfg, G, D = build()
    with pytest.raises(ValueError, match=r"z must have shape \(B, 8\)"):
        G(torch.randn(2, 9))
    with pytest.raises(ValueError, match=r"ws must have shape \(B, 6, 8\)"):
        G.synthesis(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match=r"images must have shape \(B, 3, 16, 16\)"):
        D(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="differ"):
        mix_styles(torch.randn(2, 6, 8), torch.randn(2, 5, 8), 2)


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"resolution": 48}, "power of two between 16 and 1024"),
        ({"resolution": 8}, "power of two"),
        ({"resolution": 2048}, "power of two"),
        ({"channels": 2}, r"1 \(grey\), 3 \(RGB\) or 4"),
        ({"channel_base": 0}, "channel_base must be at least 1"),
        ({"channel_base": 8, "resolution": 16}, "channel_base >= 16"),
        ({"channel_max": 0}, "channel_max must be at least 1"),
        ({"mapping_lr": 0}, "mapping_lr must be a positive number"),
        ({"mapping_lr": "0.01"}, "mapping_lr must be a positive number"),
        ({"conv_clamp": -1}, "conv_clamp must be a positive number"),
        ({"mbstd_channels": 3, "resolution": 16, "channel_max": 8}, "must divide the 8 channels"),
        ({"mapping_layers": 0}, "mapping_layers must be at least 1"),
        ({"conditioning": "acgan"}, "Unknown field.*conditioning.*valid fields: resolution, channels"),
    ],
)
def test_bad_configs_are_refused_with_a_reason(fields, message):
    with pytest.raises(ValueError, match=message) as caught:
        model_config("stylegan2", **fields)
    assert isinstance(caught.value, GanforgeError)


def test_conv_clamp_bounds_activations():
    cfg, G, _ = build(conv_clamp=0.05)
    _, free, _ = build(conv_clamp=None)
    # Each of the 3 blocks' toRGB output is clamped; the skip image sums them (upsampling keeps the bound).
    assert G(latents(cfg)).abs().max() <= 3 * 0.05 + 1e-6 < free(latents(cfg)).abs().max()
    assert model_config("stylegan2", conv_clamp=0).conv_clamp == 0  # 0 is off, like None


@pytest.mark.parametrize("fused", [False, True])
def test_double_backward_for_r1_and_path_length(fused):
    """Lazy regularisers differentiate a gradient: R1 through D, the path-length penalty through G."""
    cfg, G, D = build(num_classes=3)
    labels = torch.arange(4) % 3
    real = torch.randn(4, 3, 16, 16, requires_grad=True)
    (grad,) = torch.autograd.grad(D(real, labels)[0].sum(), real, create_graph=True)
    grad.square().sum().backward()
    weights = [p for name, p in D.named_parameters() if name.endswith("weight")]  # biases leave grad(x) be
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in weights)
    ws = G.mapping(latents(cfg), labels)
    image = G.synthesis(ws, fused_modconv=fused)
    (grad,) = torch.autograd.grad((image * torch.randn_like(image)).sum(), ws, create_graph=True)
    grad.square().sum(2).mean(1).sqrt().mean().backward()
    assert G.synthesis.blocks[1].conv0.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("num_classes", [0, 3])
def test_bf16_autocast_forward_backward(num_classes, fused):
    cfg, G, D = build(num_classes=num_classes, channels=4)
    labels = torch.arange(4) % 3 if num_classes else None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ws = G.mapping(latents(cfg), labels, truncation_psi=0.8, update_w_avg_beta=0.99)
        x = G.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(0), fused_modconv=fused)
        loss = F.softplus(-D(x, labels)[0]).mean()
    loss.backward()
    assert G.w_avg.dtype == torch.float32 and torch.isfinite(G.w_avg).all()
    for model in (G, D):
        grads = [p.grad for p in model.parameters()]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_channels_last_gives_the_same_outputs():
    cfg, G, D = build(num_classes=3, channels=1)
    z, labels = latents(cfg), torch.arange(4) % 3
    with torch.no_grad():
        x = G(z, labels)
        expected = D(x, labels)[0]
        G.to(memory_format=torch.channels_last)
        D.to(memory_format=torch.channels_last)
        assert torch.allclose(G(z, labels), x, atol=1e-5)
        got = D(x.contiguous(memory_format=torch.channels_last), labels)[0]
    assert torch.allclose(got, expected, atol=1e-5)
