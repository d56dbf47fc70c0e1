"""Progressive GAN (Karras et al. 2018): a generator and a discriminator that grow from 4x4 to full size.

Generator: z (concatenated with the one-hot label when conditional) -> pixel norm -> equalised FC to a
4x4 map -> 3x3 conv; then per resolution 8 .. R: nearest upsample x2, two 3x3 convs. Every conv is
followed by leaky ReLU 0.2 and pixel norm (each pixel's feature vector scaled to unit mean square).
Each resolution has its own toRGB (a linear 1x1 conv); the output is linear, roughly [-1, 1] (no tanh).
Discriminator, the mirror image: a fromRGB (1x1 conv) per resolution, then per resolution R .. 8 two
3x3 convs and a 2x2 average pool, then at 4x4 minibatch standard deviation, a 3x3 conv, an FC layer and
the output FC (plus the projection term <embed(y), h> when conditional).

Growth is state of the networks, the buffer `growth` = (stage, alpha): the networks run at resolution
4 * 2**stage, and alpha in [0, 1] fades that stage's new block in. While it fades, G's image is
lerp(upsample(toRGB_prev(x_prev)), toRGB_new(x_new), alpha) and D's features after the new block are
lerp(fromRGB_prev(pool(img)), block(fromRGB_new(img)), alpha). Both networks always speak full size, as
the paper's reference code does: G upsamples its current image (nearest) to R x R, and D average-pools its
R x R input to the current resolution. So an exported generator in any stage makes full-size images and
every consumer (sample, metrics, explore) works unchanged; a new network is fully grown.

Every weight uses the equalised learning rate (the StyleGAN2 layers: stored N(0, 1), scaled at run time
by 1/sqrt(fan_in), leaky ReLU times sqrt(2)). Width: channels at resolution r = min(channel_base // r,
channel_max); the paper's networks are channel_base 16384, channel_max 512.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.models.layers import ModelConfigError, check_channels, check_int, check_labels, check_resolution
from ganforge.models.stylegan2 import (
    EqualConv2d,
    EqualLinear,
    minibatch_stddev,
    normalize_2nd_moment,
    one_hot,
)

NAME = "progan"
RESOLUTIONS = tuple(2**i for i in range(3, 11))  # 8 .. 1024


@dataclass(frozen=True)
class ProGANConfig:
    resolution: int = 256  # output side in pixels: a power of two in 8..1024
    channels: int = 3  # 1 (grey), 3 (RGB) or 4 (RGBA)
    z_dim: int = 512  # latent size
    num_classes: int = 0  # 0 = unconditional
    channel_base: int = 16384  # channels at resolution r: min(channel_base // r, channel_max)
    channel_max: int = 512
    mbstd_group: int = 4  # minibatch stddev group size (capped by the batch)
    mbstd_channels: int = 1  # minibatch stddev feature maps (0 = no mbstd layer)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_resolution(NAME, self.resolution, RESOLUTIONS)
        check_channels(NAME, self.channels)
        for field in ("z_dim", "mbstd_group", "channel_base", "channel_max"):
            check_int(NAME, field, getattr(self, field), 1)
        check_int(NAME, "num_classes", self.num_classes, 0)
        check_int(NAME, "mbstd_channels", self.mbstd_channels, 0)
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
    def resolutions(self) -> tuple[int, ...]:
        """The resolution of each stage: 4, 8, ..., R."""
        return tuple(2**i for i in range(2, int(math.log2(self.resolution)) + 1))

    def channels_at(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)


class Growing(nn.Module):
    """What G and D share: the `growth` buffer (stage, alpha), its setter and its checks.

    A buffer, so checkpoints and exports carry it and the moving-average copy of G follows it."""

    def _init_growth(self, config: ProGANConfig) -> None:
        self.num_stages = len(config.resolutions)
        self.register_buffer("growth", torch.tensor([self.num_stages - 1, 1.0]))  # fully grown

    def set_growth(self, stage: int, alpha: float = 1.0) -> None:
        """Run at resolution 4 * 2**stage with that stage's new block faded in by `alpha`."""
        if not (isinstance(stage, int) and 0 <= stage < self.num_stages):
            raise ModelConfigError(f"{NAME}: stage must be an integer in 0..{self.num_stages - 1} "
                                   f"(4 px .. {4 * 2 ** (self.num_stages - 1)} px), got {stage!r}.")
        if not 0.0 <= alpha <= 1.0:
            raise ModelConfigError(f"{NAME}: alpha (the fade-in of the new block) must be in [0, 1], got {alpha!r}.")
        alpha = 1.0 if stage == 0 else float(alpha)
        self.growth.copy_(torch.tensor([stage, alpha]))
        if self._used != (stage, alpha < 1):  # walking the modules each step would cost more than a small forward
            self._mark_used(stage, alpha)

    def current_growth(self) -> tuple[int, float]:
        stage, alpha = self.growth.tolist()  # one host read per forward pass
        return int(stage), alpha

    def _mark_used(self, stage: int, alpha: float) -> None:
        """Layers the current stage does not run get requires_grad False and the others True, so every
        trainable parameter has a gradient after a backward pass (the trainer sets its own flags before
        each phase; a loaded export keeps the flags of a new network)."""
        self._used = (stage, alpha < 1)
        for i, layer in enumerate(self.rgb):
            layer.requires_grad_(i == stage or (i == stage - 1 and alpha < 1))
        for i, block in enumerate(self.blocks, start=1):
            block.requires_grad_(i <= stage)


class GeneratorBlock(nn.Module):
    """Resolution r/2 -> r: nearest upsample, two 3x3 convs each with leaky ReLU and pixel norm."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, out_channels, 3)
        self.conv1 = EqualConv2d(out_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")  # (B, I, 2H, 2W)
        x = normalize_2nd_moment(self.conv0(x))  # pixel norm: over channels, at each pixel
        return normalize_2nd_moment(self.conv1(x))  # (B, O, 2H, 2W)


class ProGANGenerator(Growing):
    def __init__(self, config: ProGANConfig):
        super().__init__()
        self.config = config
        self.z_dim = config.z_dim
        ch = config.channels_at
        c4 = ch(4)
        self.stem = EqualLinear(config.z_dim + config.num_classes, c4 * 16, lrelu=True)  # -> (B, C4, 4, 4)
        self.stem_conv = EqualConv2d(c4, c4, 3)
        self.blocks = nn.ModuleList(GeneratorBlock(ch(res // 2), ch(res)) for res in config.resolutions[1:])
        self.rgb = nn.ModuleList(EqualConv2d(ch(res), config.channels, 1, lrelu=False) for res in config.resolutions)
        self._init_growth(config)
        self._mark_used(self.num_stages - 1, 1.0)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ModelConfigError(f"{NAME} generator: z must have shape (B, {self.z_dim}), got {tuple(z.shape)}.")
        check_labels(f"{NAME} generator", labels, z.shape[0], cfg.num_classes)
        stage, alpha = self.current_growth()
        if cfg.conditional:
            z = torch.cat([z, one_hot(labels, cfg.num_classes, z)], dim=1)  # (B, z_dim + K), as the paper
        x = self.stem(normalize_2nd_moment(z)).reshape(z.shape[0], -1, 4, 4)  # (B, C4, 4, 4)
        x = normalize_2nd_moment(self.stem_conv(normalize_2nd_moment(x)))
        previous = x
        for block in self.blocks[:stage]:
            previous, x = x, block(x)  # (B, C_r, r, r)
        img = self.rgb[stage](x)  # (B, channels, r, r)
        if stage > 0 and alpha < 1:
            faded = F.interpolate(self.rgb[stage - 1](previous), scale_factor=2, mode="nearest")
            img = torch.lerp(faded, img, alpha)
        scale = cfg.resolution // img.shape[-1]
        return F.interpolate(img, scale_factor=scale, mode="nearest") if scale > 1 else img  # (B, channels, R, R)


class DiscriminatorBlock(nn.Module):
    """Resolution r -> r/2: two 3x3 convs with leaky ReLU, then a 2x2 average pool."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv1(self.conv0(x)), 2)  # (B, O, H/2, W/2)


class ProGANDiscriminator(Growing):
    def __init__(self, config: ProGANConfig):
        super().__init__()
        self.config = config
        ch = config.channels_at
        c4 = ch(4)
        self.rgb = nn.ModuleList(EqualConv2d(config.channels, ch(res), 1) for res in config.resolutions)  # fromRGB
        # blocks[i] takes resolution 4 * 2**(i + 1) down to half of it
        self.blocks = nn.ModuleList(DiscriminatorBlock(ch(res), ch(res // 2)) for res in config.resolutions[1:])
        self.conv = EqualConv2d(c4 + config.mbstd_channels, c4, 3)
        self.fc = EqualLinear(c4 * 16, c4, lrelu=True)
        self.out = EqualLinear(c4, 1)
        if config.conditional:
            self.embed = EqualLinear(config.num_classes, c4)  # projection D (Miyato & Koyama 2018)
        self._init_growth(config)
        self._mark_used(self.num_stages - 1, 1.0)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, None]:
        cfg = self.config
        expected = (cfg.channels, cfg.resolution, cfg.resolution)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ModelConfigError(
                f"{NAME} discriminator: images must have shape (B, {', '.join(map(str, expected))}), "
                f"got {tuple(x.shape)}."
            )
        check_labels(f"{NAME} discriminator", labels, x.shape[0], cfg.num_classes)
        stage, alpha = self.current_growth()
        scale = cfg.resolution // cfg.resolutions[stage]
        img = F.avg_pool2d(x, scale) if scale > 1 else x  # (B, channels, r, r): area downsampling
        h = self.rgb[stage](img)
        if stage > 0:
            h = self.blocks[stage - 1](h)  # (B, C_{r/2}, r/2, r/2)
            if alpha < 1:
                h = torch.lerp(self.rgb[stage - 1](F.avg_pool2d(img, 2)), h, alpha)
            for block in reversed(self.blocks[: stage - 1]):
                h = block(h)  # down to (B, C4, 4, 4)
        if cfg.mbstd_channels:
            h = minibatch_stddev(h, cfg.mbstd_group, cfg.mbstd_channels)  # (B, C4 + F, 4, 4)
        h = self.fc(self.conv(h).flatten(1))  # flatten, not view: h may be channels_last. (B, C4)
        logits = self.out(h).flatten()  # (B,)
        if cfg.conditional:
            logits = logits + (self.embed(one_hot(labels, cfg.num_classes, h)) * h).sum(dim=1) / math.sqrt(h.shape[1])
        return logits, None
