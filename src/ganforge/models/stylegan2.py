"""StyleGAN2 (Karras et al. 2020, config F): a skip generator and a residual discriminator.

Generator: z -> mapping MLP (2nd-moment normalised z, `mapping_layers` equalised FC layers with a
learning-rate multiplier) -> w, broadcast to `num_ws` layer styles -> synthesis: a learned 4x4
constant, then per resolution two modulated 3x3 convs (the first upsamples from 8 px on), each with
noise and bias + leaky ReLU, and a toRGB 1x1 modulated conv (no demodulation) added into a skip image
that is upsampled with the [1,3,3,1] low-pass filter. Output is linear, roughly [-1, 1] (no tanh).
Discriminator: fromRGB 1x1 -> residual blocks (two 3x3 convs, the second downsampling through the
low-pass filter; a 1x1 skip; sum times sqrt(0.5)) down to 4x4 -> minibatch stddev -> 3x3 conv -> fc
-> output fc.

Class conditioning (num_classes > 0), as StyleGAN2-ADA: G embeds the label and concatenates it to z
in the mapping network (cStyleGAN2); D maps the label to `cmap` and outputs <out, cmap> / sqrt(dim).
Attribute conditioning (`attributes`; empty = off): G and D take raw values (B, A) as `attributes=`,
encoded from the config (standardised, one-hot); G embeds them linearly into the mapping network's input
beside z and the label (not normalised: the embedding's length carries a continuous value); D adds the
projection term <W a, fc features> / sqrt(dim).

Every weight uses the equalised learning rate: stored N(0, 1) / lr_mul, scaled at run time by
lr_mul / sqrt(fan_in), so Adam's step in the effective weight is lr * lr_mul. Everything is pure
PyTorch: the same code runs on CPU and CUDA, under bf16 autocast and on channels_last tensors.
Width: channels at resolution r = min(channel_base // r, channel_max), as the paper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.models.layers import (
    AttributeEncoder,
    AttributeSpec,
    ModelConfigError,
    check_attributes,
    check_channels,
    check_int,
    check_labels,
    check_resolution,
    refuse_attributes,
)

NAME = "stylegan2"
NOISE_MODES = ("const", "random", "none")
SQRT2 = math.sqrt(2.0)
RESOLUTIONS = tuple(2**i for i in range(4, 11))  # 16 .. 1024


@dataclass(frozen=True)
class StyleGAN2Config:
    resolution: int = 256  # output side in pixels: a power of two in 16..1024
    channels: int = 3  # 1 (grey), 3 (RGB) or 4 (RGBA)
    z_dim: int = 512  # latent size
    w_dim: int = 512  # intermediate latent (style) size
    num_classes: int = 0  # 0 = unconditional
    mapping_layers: int = 8  # fully connected layers in the mapping network
    mapping_lr: float = 0.01  # learning-rate multiplier of the mapping network
    channel_base: int = 32768  # channels at resolution r: min(channel_base // r, channel_max)
    channel_max: int = 512
    mbstd_group: int = 4  # minibatch stddev group size (capped by the batch)
    mbstd_channels: int = 1  # minibatch stddev feature maps (0 = no mbstd layer)
    conv_clamp: float | None = None  # clamp conv outputs to +-conv_clamp (None or 0 = off)
    attributes: tuple[AttributeSpec, ...] = ()  # attributes to condition on (from the dataset); () = none

    def __post_init__(self) -> None:
        object.__setattr__(self, "attributes", check_attributes(NAME, self.attributes))  # dicts from JSON too
        self.validate()

    def validate(self) -> None:
        check_resolution(NAME, self.resolution, RESOLUTIONS)
        check_channels(NAME, self.channels)
        for field in ("z_dim", "w_dim", "mapping_layers", "mbstd_group"):
            check_int(NAME, field, getattr(self, field), 1)
        check_int(NAME, "num_classes", self.num_classes, 0)
        check_int(NAME, "mbstd_channels", self.mbstd_channels, 0)
        check_positive(NAME, "mapping_lr", self.mapping_lr)
        if self.conv_clamp is not None and self.conv_clamp != 0:
            check_positive(NAME, "conv_clamp", self.conv_clamp)
        for field in ("channel_base", "channel_max"):
            check_int(NAME, field, getattr(self, field), 1)
        if self.channel_base < self.resolution:
            raise ModelConfigError(
                f"{NAME} config: channel_base={self.channel_base} leaves no channels at {self.resolution} px "
                f"(channels there are channel_base // {self.resolution}); use channel_base >= {self.resolution}."
            )
        if self.mbstd_channels and self.channels_at(4) % self.mbstd_channels:
            raise ModelConfigError(
                f"{NAME} config: mbstd_channels={self.mbstd_channels} must divide the {self.channels_at(4)} "
                f"channels of the 4x4 block; pick a divisor of {self.channels_at(4)}."
            )

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def num_ws(self) -> int:
        """Styles the synthesis network takes: two per resolution from 8 px, one conv and one toRGB at 4."""
        return 2 * int(math.log2(self.resolution)) - 2

    def channels_at(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)


def check_positive(model: str, field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ModelConfigError(f"{model} config: {field} must be a positive number, got {value!r}.")


# ---------------------------------------------------------------------------------------------
# Resampling with the [1, 3, 3, 1] low-pass filter, as depthwise convolutions.


def lowpass_filter(device: torch.device | str | None = None) -> torch.Tensor:
    """The separable [1,3,3,1] filter as a (4, 4) kernel summing to 1.

    Modules keep it as a non-persistent buffer, so it moves with `.to(device)` and a forward pass
    never copies it from the host; the functions below build one when not given it.
    """
    f = torch.tensor([1.0, 3.0, 3.0, 1.0], device=device)
    return torch.outer(f, f) / 64.0  # 64 = sum of the 2-D taps


def blur(x: torch.Tensor, f: torch.Tensor | None, pad: int, gain: float = 1.0, down: int = 1) -> torch.Tensor:
    """Low-pass filter `x` (B, C, H, W) with `pad` zeros each side, then keep every `down`-th pixel."""
    f = lowpass_filter(x.device) if f is None else f
    kernel = (f * gain).to(x.dtype).expand(x.shape[1], 1, *f.shape)  # depthwise (C, 1, 4, 4)
    return F.conv2d(F.pad(x, [pad] * 4), kernel, stride=down, groups=x.shape[1])


def upsample2d(x: torch.Tensor, f: torch.Tensor | None = None) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, 2H, 2W): zero insertion then the filter with gain 4, as one transposed conv."""
    f = lowpass_filter(x.device) if f is None else f
    kernel = (f * 4.0).to(x.dtype).expand(x.shape[1], 1, *f.shape)  # (C, 1, 4, 4)
    return F.conv_transpose2d(x, kernel, stride=2, padding=1, groups=x.shape[1])


def downsample2d(x: torch.Tensor, f: torch.Tensor | None = None) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H/2, W/2): filter then drop every other pixel."""
    return blur(x, f, pad=1, down=2)


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: bool = False,
                    down: bool = False, groups: int = 1) -> torch.Tensor:
    """`x` convolved with `w` (O, I/groups, k, k) at 'same' padding, optionally up- or down-sampling x2.

    Up: a stride-2 transposed conv (a quarter of the work of a conv on the upsampled map) then the
    filter; down: the filter then a stride-2 conv, both as StyleGAN2's conv2d_resample.
    """
    k = w.shape[-1]
    if up:
        # conv_transpose2d wants (I, O/groups, k, k); per group swap the in and out dims.
        out = w.shape[0] // groups
        wt = w.reshape(groups, out, -1, k, k).transpose(1, 2).reshape(-1, out, k, k)
        x = F.conv_transpose2d(x, wt, stride=2, groups=groups)  # (B, O, 2H + k - 2, 2W + k - 2)
        return blur(x, f, pad=(5 - k) // 2, gain=4.0)  # the 4-tap filter brings it to (B, O, 2H, 2W)
    if down:
        if k == 1:
            return F.conv2d(downsample2d(x, f), w, groups=groups)
        return F.conv2d(blur(x, f, pad=k // 2 + 1), w, stride=2, groups=groups)  # (B, O, H/2, W/2)
    return F.conv2d(x, w, padding=k // 2, groups=groups)


# ---------------------------------------------------------------------------------------------
# Equalised-learning-rate layers.


def bias_act(x: torch.Tensor, bias: torch.Tensor | None, lrelu: bool, gain: float = 1.0,
             clamp: float | None = None) -> torch.Tensor:
    """Add the per-channel bias, leaky ReLU 0.2 times sqrt(2) (keeps the variance), scale, clamp."""
    if bias is not None:
        x = x + bias.reshape(1, -1, *([1] * (x.dim() - 2))).to(x.dtype)
    if lrelu:
        x = F.leaky_relu(x, 0.2) * (SQRT2 * gain)
    elif gain != 1:
        x = x * gain
    if clamp:
        x = x.clamp(-clamp * gain, clamp * gain)
    return x


class EqualLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, lrelu: bool = False, bias_init: float = 0.0,
                 lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)  # (O, I)
        # bias_init / lr_mul, so the effective bias starts at bias_init whatever the multiplier.
        self.bias = nn.Parameter(torch.full((out_features,), bias_init / lr_mul))  # (O,)
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.lrelu = lrelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_mul)  # (B, O)
        return F.leaky_relu(x, 0.2) * SQRT2 if self.lrelu else x


class EqualConv2d(nn.Module):
    """A k x k conv, optionally resampling x2, with bias and leaky ReLU; `gain` scales the output."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, lrelu: bool = True, bias: bool = True,
                 down: bool = False, conv_clamp: float | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))  # (O, I, k, k)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel * kernel)
        self.lrelu, self.down, self.conv_clamp = lrelu, down, conv_clamp
        self.register_buffer("lowpass", lowpass_filter(), persistent=False)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        x = conv2d_resample(x, self.weight * self.weight_gain, self.lowpass, down=self.down)
        return bias_act(x, self.bias, self.lrelu, gain, self.conv_clamp)


def mapping_mlp(in_features: int, width: int, out_features: int, layers: int, lr_mul: float) -> nn.Sequential:
    sizes = [in_features] + [width] * (layers - 1) + [out_features]
    return nn.Sequential(*(EqualLinear(a, b, lrelu=True, lr_mul=lr_mul) for a, b in zip(sizes, sizes[1:])))


def normalize_2nd_moment(x: torch.Tensor) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()


def one_hot(labels: torch.Tensor, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    return F.one_hot(labels.long(), num_classes).to(like.dtype)  # (B, K)


# ---------------------------------------------------------------------------------------------
# Modulated convolution.


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     up: bool = False, fused: bool = False, f: torch.Tensor | None = None) -> torch.Tensor:
    """Conv `x` (B, I, H, W) with `weight` (O, I, k, k) modulated per sample by `styles` (B, I).

    Demodulation divides each output channel by the norm of its modulated weight,
    rsqrt(sum(w^2) + 1e-8). fused=True builds each sample's weight and runs one grouped conv
    (groups=B); fused=False scales the input by the styles, runs one ordinary conv with the shared
    weight and scales the output by the demodulation coefficients. The two are equal in exact
    arithmetic.
    """
    batch, in_channels = x.shape[:2]
    w = weight.unsqueeze(0) * styles.reshape(batch, 1, in_channels, 1, 1)  # (B, O, I, k, k)
    dcoefs = (w.square().sum(dim=(2, 3, 4)) + 1e-8).rsqrt() if demodulate else None  # (B, O)
    if not fused:
        x = x * styles.reshape(batch, in_channels, 1, 1).to(x.dtype)
        x = conv2d_resample(x, weight.to(x.dtype), f, up=up)  # (B, O, H', W')
        return x * dcoefs.reshape(batch, -1, 1, 1).to(x.dtype) if demodulate else x
    if demodulate:
        w = w * dcoefs.reshape(batch, -1, 1, 1, 1)
    x = x.reshape(1, batch * in_channels, *x.shape[2:])  # (1, B*I, H, W)
    x = conv2d_resample(x, w.reshape(-1, in_channels, *w.shape[3:]).to(x.dtype), f, up=up, groups=batch)
    return x.reshape(batch, -1, *x.shape[2:])  # (B, O, H', W')


# The modulated-conv path synthesis uses unless told: non-fused. Measured on 2 CPU cores at 64 px,
# batch 32 (channel_base = 32 * channel_max), grouped time / non-fused time over three runs:
# G forward + backward 0.83 at channel_max 32, 1.00 at 64, 1.02-1.07 at 128; no-grad forward
# 1.13-1.35 at 32, 1.07-1.20 at 64, 1.26 at 128. So non-fused ties or wins except thin models in
# training (grouped 17% faster at 32 channels); StyleGAN2-ADA also trains non-fused.
FUSED_MODCONV = False


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (upsampling x2 when `up`) + noise + bias + leaky ReLU at `res` px."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, res: int, up: bool,
                 conv_clamp: float | None):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)  # styles start at 1
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))  # (O, I, 3, 3)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        # Fixed noise for noise_mode="const"; a buffer, so exports carry it and a seed gives one image.
        self.register_buffer("noise_const", torch.randn(res, res))  # (R, R)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.res, self.up, self.conv_clamp = res, up, conv_clamp
        self.register_buffer("lowpass", lowpass_filter(), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str, generator: torch.Generator | None,
                fused: bool) -> torch.Tensor:
        styles = self.affine(w)  # (B, I)
        x = modulated_conv2d(x, self.weight, styles, up=self.up, fused=fused, f=self.lowpass)  # (B, O, R, R)
        if noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        elif noise_mode == "random":
            shape = (x.shape[0], 1, self.res, self.res)
            noise = torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)  # (B, 1, R, R)
            x = x + noise * self.noise_strength
        return bias_act(x, self.bias, lrelu=True, clamp=self.conv_clamp)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to image channels, without demodulation (its scale is the image's)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))  # (O, I, 1, 1)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused: bool) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain  # (B, I)
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused)  # (B, channels, R, R)
        return bias_act(x, self.bias, lrelu=False, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: (x, img) at res/2 -> (x, img) at res."""

    def __init__(self, in_channels: int, out_channels: int, config: StyleGAN2Config, res: int):
        super().__init__()
        clamp, w_dim = config.conv_clamp or None, config.w_dim
        if res == 4:
            self.const = nn.Parameter(torch.randn(out_channels, 4, 4))  # (C, 4, 4)
            self.conv0 = None
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, res, up=True, conv_clamp=clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, res, up=False, conv_clamp=clamp)
        self.torgb = ToRGB(out_channels, config.channels, w_dim, clamp)
        self.num_conv = 1 if res == 4 else 2
        self.register_buffer("lowpass", lowpass_filter(), persistent=False)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, noise_mode: str,
                generator: torch.Generator | None, fused: bool) -> tuple[torch.Tensor, torch.Tensor]:
        # ws: (B, num_conv + 1, w_dim); the last style is toRGB's, shared with the next block's first conv.
        if self.conv0 is None:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)  # (B, C, 4, 4)
            x = self.conv1(x, ws[:, 0], noise_mode, generator, fused)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode, generator, fused)  # (B, C, R, R)
            x = self.conv1(x, ws[:, 1], noise_mode, generator, fused)
        y = self.torgb(x, ws[:, self.num_conv], fused)  # (B, channels, R, R)
        img = y if img is None else upsample2d(img, self.lowpass) + y
        return x, img


class SynthesisNetwork(nn.Module):
    def __init__(self, config: StyleGAN2Config):
        super().__init__()
        self.config = config
        self.num_ws, self.w_dim = config.num_ws, config.w_dim
        resolutions = [2**i for i in range(2, int(math.log2(config.resolution)) + 1)]  # 4 .. R
        self.blocks = nn.ModuleList(
            SynthesisBlock(config.channels_at(res // 2) if res > 4 else 0, config.channels_at(res), config, res)
            for res in resolutions
        )

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", generator: torch.Generator | None = None,
                fused_modconv: bool = FUSED_MODCONV) -> torch.Tensor:
        if ws.dim() != 3 or tuple(ws.shape[1:]) != (self.num_ws, self.w_dim):
            raise ModelConfigError(
                f"{NAME} synthesis: ws must have shape (B, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}."
            )
        if noise_mode not in NOISE_MODES:
            raise ModelConfigError(
                f"{NAME} synthesis: noise_mode must be one of {', '.join(map(repr, NOISE_MODES))}, "
                f"got {noise_mode!r}."
            )
        x = img = None
        index = 0
        for block in self.blocks:
            x, img = block(x, img, ws[:, index:index + block.num_conv + 1], noise_mode, generator, fused_modconv)
            index += block.num_conv
        return img  # (B, channels, R, R)


class MappingNetwork(nn.Module):
    """z (and label) -> w, broadcast to (B, num_ws, w_dim); tracks the mean w for truncation."""

    def __init__(self, config: StyleGAN2Config):
        super().__init__()
        self.config = config
        self.z_dim, self.w_dim, self.num_ws = config.z_dim, config.w_dim, config.num_ws
        in_features = config.z_dim
        if config.conditional:
            self.embed = EqualLinear(config.num_classes, config.w_dim)  # one-hot label -> w_dim
            in_features += config.w_dim
        if config.attributes:
            self.encode_attributes = AttributeEncoder(config.attributes)
            self.embed_attributes = EqualLinear(self.encode_attributes.width, config.w_dim)  # encoded -> w_dim
            in_features += config.w_dim
        self.net = mapping_mlp(in_features, config.w_dim, config.w_dim, config.mapping_layers, config.mapping_lr)
        self.register_buffer("w_avg", torch.zeros(config.w_dim))  # (w_dim,)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, update_w_avg_beta: float | None = None,
                attributes: torch.Tensor | None = None) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ModelConfigError(f"{NAME} generator: z must have shape (B, {self.z_dim}), got {tuple(z.shape)}.")
        check_labels(f"{NAME} generator", labels, z.shape[0], self.config.num_classes)
        x = normalize_2nd_moment(z)  # (B, z_dim)
        if self.config.conditional:
            y = normalize_2nd_moment(self.embed(one_hot(labels, self.config.num_classes, z)))  # (B, w_dim)
            x = torch.cat([x, y.to(x.dtype)], dim=1)  # (B, z_dim + w_dim)
        if self.config.attributes:
            encoded = self.encode_attributes(attributes, z.shape[0], f"{NAME} generator")  # (B, width)
            x = torch.cat([x, self.embed_attributes(encoded.to(x.dtype))], dim=1)  # (B, ... + w_dim)
        else:
            refuse_attributes(f"{NAME} generator", attributes)
        w = self.net(x)  # (B, w_dim)
        if update_w_avg_beta is not None:
            self.w_avg.copy_(w.detach().mean(0).to(self.w_avg.dtype).lerp(self.w_avg, update_w_avg_beta))
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)  # (B, num_ws, w_dim)
        if truncation_psi != 1:
            truncated = self.w_avg.to(ws.dtype).lerp(ws, truncation_psi)
            ws = truncated if truncation_cutoff is None else mix_styles(truncated, ws, truncation_cutoff)
        return ws


def mix_styles(ws_a: torch.Tensor, ws_b: torch.Tensor, cutoff: int | torch.Tensor) -> torch.Tensor:
    """Styles (B, num_ws, w_dim) with layers < cutoff from `ws_a` and layers >= cutoff from `ws_b`.

    `cutoff` may be a 0-dim tensor (drawn on the device by a training step) and costs no sync.
    """
    if ws_a.shape != ws_b.shape:
        raise ModelConfigError(f"{NAME} mix_styles: ws_a {tuple(ws_a.shape)} and ws_b {tuple(ws_b.shape)} differ.")
    coarse = torch.arange(ws_a.shape[1], device=ws_a.device) < cutoff  # (num_ws,)
    return torch.where(coarse.reshape(1, -1, 1), ws_a, ws_b.to(ws_a.dtype))


class StyleGAN2Generator(nn.Module):
    components = ("mapping", "synthesis")  # the named parts an export lists (see export.components_of)

    def __init__(self, config: StyleGAN2Config):
        super().__init__()
        self.config = config
        self.z_dim, self.w_dim, self.num_ws = config.z_dim, config.w_dim, config.num_ws
        self.mapping = MappingNetwork(config)
        self.synthesis = SynthesisNetwork(config)

    @property
    def w_avg(self) -> torch.Tensor:
        """The tracked mean w (w_dim,): the mapping network's buffer `mapping.w_avg`."""
        return self.mapping.w_avg

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: str = "const",
                generator: torch.Generator | None = None, attributes: torch.Tensor | None = None) -> torch.Tensor:
        """`attributes`: raw values (B, A) in the config's order; None: each at the data's average."""
        ws = self.mapping(z, labels, truncation_psi, truncation_cutoff, attributes=attributes)  # (B, num_ws, w_dim)
        return self.synthesis(ws, noise_mode, generator)  # (B, channels, R, R)


# ---------------------------------------------------------------------------------------------
# Discriminator.


class DiscriminatorBlock(nn.Module):
    """Residual: (conv3x3, conv3x3 down) + 1x1 down skip, times sqrt(0.5) to keep the variance."""

    def __init__(self, in_channels: int, out_channels: int, conv_clamp: float | None):
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, conv_clamp=conv_clamp)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, down=True, conv_clamp=conv_clamp)
        self.skip = EqualConv2d(in_channels, out_channels, 1, lrelu=False, bias=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.skip(x, gain=math.sqrt(0.5))  # (B, O, H/2, W/2)
        return y + self.conv1(self.conv0(x), gain=math.sqrt(0.5))


def minibatch_stddev(x: torch.Tensor, group_size: int, num_channels: int) -> torch.Tensor:
    """Append `num_channels` maps holding the mean stddev of features over groups of the batch.

    The group is the largest divisor of B not above `group_size`, so any batch size works; sample i
    falls in group i % (B / group), as StyleGAN2.
    """
    batch, channels, height, width = x.shape
    group = max(g for g in range(1, min(group_size, batch) + 1) if batch % g == 0)
    y = x.float().reshape(group, -1, num_channels, channels // num_channels, height, width)  # (G, n, F, c, H, W)
    y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt()  # (n, F, c, H, W)
    y = y.mean(dim=(2, 3, 4)).reshape(-1, num_channels, 1, 1)  # (n, F, 1, 1)
    y = y.repeat(group, 1, height, width).to(x.dtype)  # (B, F, H, W)
    return torch.cat([x, y], dim=1)  # (B, C + F, H, W)


class StyleGAN2Discriminator(nn.Module):
    def __init__(self, config: StyleGAN2Config):
        super().__init__()
        self.config = config
        clamp, ch = config.conv_clamp or None, config.channels_at
        self.fromrgb = EqualConv2d(config.channels, ch(config.resolution), 1, conv_clamp=clamp)
        resolutions = [2**i for i in range(int(math.log2(config.resolution)), 2, -1)]  # R .. 8
        self.blocks = nn.Sequential(*(DiscriminatorBlock(ch(res), ch(res // 2), clamp) for res in resolutions))
        c4 = ch(4)
        self.conv = EqualConv2d(c4 + config.mbstd_channels, c4, 3, conv_clamp=clamp)
        self.fc = EqualLinear(c4 * 16, c4, lrelu=True)
        self.cmap_dim = c4 if config.conditional else 0
        self.out = EqualLinear(c4, self.cmap_dim or 1)
        if config.conditional:
            # The label's projection target, mapped like G's styles (StyleGAN2-ADA's D mapping).
            self.embed = EqualLinear(config.num_classes, c4)
            self.cmap = mapping_mlp(c4, c4, c4, config.mapping_layers, config.mapping_lr)
        if config.attributes:
            self.encode_attributes = AttributeEncoder(config.attributes)
            self.project_attributes = EqualLinear(self.encode_attributes.width, c4)  # encoded -> the fc features

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                attributes: torch.Tensor | None = None) -> tuple[torch.Tensor, None]:
        cfg = self.config
        expected = (cfg.channels, cfg.resolution, cfg.resolution)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ModelConfigError(
                f"{NAME} discriminator: images must have shape (B, {', '.join(map(str, expected))}), "
                f"got {tuple(x.shape)}."
            )
        check_labels(f"{NAME} discriminator", labels, x.shape[0], cfg.num_classes)
        encoded = None
        if cfg.attributes:
            encoded = self.encode_attributes(attributes, x.shape[0], f"{NAME} discriminator")  # (B, width)
        else:
            refuse_attributes(f"{NAME} discriminator", attributes)
        h = self.blocks(self.fromrgb(x))  # (B, C4, 4, 4)
        if cfg.mbstd_channels:
            h = minibatch_stddev(h, cfg.mbstd_group, cfg.mbstd_channels)  # (B, C4 + F, 4, 4)
        h = self.fc(self.conv(h).flatten(1))  # flatten, not view: h may be channels_last. (B, C4)
        out = self.out(h)  # (B, 1) or (B, cmap_dim)
        if not cfg.conditional:
            logits = out.flatten()  # (B,)
        else:
            cmap = self.cmap(normalize_2nd_moment(self.embed(one_hot(labels, cfg.num_classes, out))))  # (B, cmap_dim)
            logits = (out * cmap).sum(dim=1) / math.sqrt(self.cmap_dim)  # (B,)
        if encoded is not None:
            amap = self.project_attributes(encoded.to(h.dtype))  # (B, C4)
            logits = logits + (h * amap).sum(dim=1) / math.sqrt(h.shape[1])
        return logits, None
