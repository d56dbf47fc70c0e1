"""Super-resolution: the SRResNet generator (Ledig et al. 2017) or its RRDB variant (Wang et al. 2018,
ESRGAN), and SRGAN's VGG-style discriminator.

Generator, A (B / scale px) -> B, every convolution 'same'-padded:

    head     conv 9x9 (in_channels -> width), PReLU                          (Ledig et al., figure 4)
    body     `blocks` residual blocks, then conv 3x3 (+ norm), plus the head's output (the global skip)
               block="residual": conv 3x3 - norm - PReLU - conv 3x3 - norm, plus its input (SRResNet)
               block="rrdb": residual-in-residual dense block (ESRGAN, figure 4): three dense blocks of
                 five 3x3 convs (each sees the block input and every earlier output, `growth` channels
                 each, LeakyReLU 0.2), each scaled by `res_scale` (0.2) and added to its input; the
                 three together again scaled by 0.2 and added to the RRDB's input. Never batch norm.
    upsample log2(scale) sub-pixel stages: conv 3x3 (width -> 4 width), PixelShuffle(2), PReLU
    tail     conv 9x9 (width -> channels): linear, clamped to [-1, 1] in eval mode only (a clamp in training
             would leave a pixel that overshoots without a gradient; the pixel loss pulls it back instead)
    skip     input_skip="bicubic" adds A enlarged by bicubic interpolation to the tail's output, VDSR's global
             residual (Kim et al. 2016, section 3.1), so G learns only what bicubic misses: on a CPU budget it
             beats bicubic from the first thousand images instead of first learning to copy A (the tail
             starts at zero: G starts as bicubic). Not in SRResNet; "none" (the default) is the paper's network.

norm="none" (the default, as ESRGAN, which found batch norm makes artefacts) keeps the network local:
each output pixel depends only on a fixed window of input pixels, so a large image tiled with enough
overlap gives exactly the untiled result, and eval is deterministic. norm="batch" is SRGAN's own; in
eval mode it uses its running averages, so it stays deterministic and per-image too. The convolutions
inside the blocks start from Kaiming-normal weights scaled by 0.1 (ESRGAN's initialisation: a deep stack
of residual blocks without norm then starts near the identity). `scale` (2 or 4) and `size_multiple`
(1: any input size) are what `ganforge translate` reads.

Discriminator (SRGAN, figure 4): on B alone, not on (A, B): for a real pair A is a function of B, so A
tells D nothing about B being real, and the pixel loss already ties G(A) to A. Conv 3x3 blocks
(width, stride) = (w, 1), (w, 2), (2w, 1), (2w, 2), (4w, 1), (4w, 2), (8w, 1), (8w, 2), LeakyReLU 0.2,
batch norm after all but the first (D is never exported, so its batch statistics cost nothing at
inference), then dense `d_dense` (1024), LeakyReLU, dense 1: one logit per image, (B,). It judges the
whole crop, the global view the relativistic loss compares across the batch. `d_stages` of the four
stride-2 pairs (0: as many as the resolution allows, up to the paper's 4: 96 px -> 6x6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.models.layers import ModelConfigError, check_channels, check_int

NAME = "srresnet"
BLOCKS = ("residual", "rrdb")
NORMS = ("none", "batch")
SKIPS = ("none", "bicubic")
SCALES = (2, 4)


@dataclass(frozen=True)
class SRResNetConfig:
    resolution: int = 96  # B's side in pixels during training (A is resolution / scale); any size at inference
    channels: int = 3  # B's channels: 1, 3 or 4
    in_channels: int = 3  # A's channels: 1, 3 or 4
    scale: int = 4  # B's side / A's side: 2 or 4
    input_classes: int = 0  # label maps are not upscaled: must stay 0
    num_classes: int = 0  # image classes are not used: must stay 0
    block: str = "residual"  # residual (SRResNet) | rrdb (ESRGAN)
    input_skip: str = "none"  # none (the papers') | bicubic: the output adds A upscaled bicubically (VDSR's residual)
    blocks: int = 16  # residual blocks (the paper's 16) or RRDBs (ESRGAN's 23)
    width: int = 64  # feature channels of the body (both papers' 64)
    growth: int = 32  # rrdb: channels each dense-block conv adds (ESRGAN's 32)
    res_scale: float = 0.2  # rrdb: residual scaling (ESRGAN's 0.2)
    norm: str = "none"  # none | batch (SRGAN's): none keeps the model local, so tiling is exact
    d_width: int = 64  # D's first width (SRGAN's 64)
    d_stages: int = 0  # D's stride-2 pairs; 0 = from the resolution (at most the paper's 4)
    d_dense: int = 1024  # D's hidden dense layer (SRGAN's 1024)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_int(NAME, "scale", self.scale, 2, 4)
        if self.scale not in SCALES:
            raise ModelConfigError(f"{NAME} config: scale must be 2 or 4 (sub-pixel stages of x2), got {self.scale}.")
        check_int(NAME, "resolution", self.resolution, 4 * self.scale, 2048)
        if self.resolution % self.scale:
            raise ModelConfigError(f"{NAME} config: resolution {self.resolution} is not a multiple of the scale "
                                   f"{self.scale} (A is resolution / scale pixels).")
        check_channels(NAME, self.channels)
        check_int(NAME, "in_channels", self.in_channels, 1, 4)
        check_int(NAME, "input_classes", self.input_classes, 0, 0)
        check_int(NAME, "num_classes", self.num_classes, 0, 0)
        if self.block not in BLOCKS:
            raise ModelConfigError(f"{NAME} config: block must be one of {', '.join(BLOCKS)}, got {self.block!r}.")
        if self.norm not in NORMS:
            raise ModelConfigError(f"{NAME} config: norm must be one of {', '.join(NORMS)}, got {self.norm!r}.")
        if self.input_skip not in SKIPS:
            raise ModelConfigError(f"{NAME} config: input_skip must be one of {', '.join(SKIPS)}, got {self.input_skip!r}.")
        if self.input_skip == "bicubic" and self.in_channels != self.channels:
            raise ModelConfigError(f"{NAME} config: input_skip=bicubic adds A to the output, so A and B need the same "
                                   f"channels (A has {self.in_channels}, B {self.channels}): use input_skip=none.")
        if self.block == "rrdb" and self.norm != "none":
            raise ModelConfigError(f"{NAME} config: block=rrdb has no batch norm (ESRGAN removed it): use norm=none.")
        for field in ("blocks", "width", "growth", "d_width", "d_dense"):
            check_int(NAME, field, getattr(self, field), 1)
        check_int(NAME, "d_stages", self.d_stages, 0, self.max_stages)
        if isinstance(self.res_scale, bool) or not isinstance(self.res_scale, (int, float)) or not 0 < self.res_scale <= 1:
            raise ModelConfigError(f"{NAME} config: res_scale must be a number in (0, 1] (0.2 is ESRGAN's), "
                                   f"got {self.res_scale!r}.")

    @property
    def max_stages(self) -> int:
        """Stride-2 pairs that leave D's last map at least 2 px: 4 (the paper's) from 32 px up."""
        return max(1, min(4, int(math.log2(self.resolution)) - 1))

    @property
    def stages(self) -> int:
        return self.d_stages or self.max_stages


def _init_small(module: nn.Module, factor: float = 0.1) -> None:
    """ESRGAN's initialisation of the convolutions inside residual blocks: Kaiming normal x 0.1."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            m.weight.data.mul_(factor)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.Identity()


class ResidualBlock(nn.Module):
    """SRResNet's block: x + (conv - norm - PReLU - conv - norm)(x), (B, width, h, w) in and out."""

    def __init__(self, width: int, norm: str):
        super().__init__()
        bias = norm != "batch"
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, 1, 1, bias=bias), _norm(norm, width), nn.PReLU(width),
                                  nn.Conv2d(width, width, 3, 1, 1, bias=bias), _norm(norm, width))
        _init_small(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DenseBlock(nn.Module):
    """ESRGAN's dense block: five 3x3 convs, the k-th on cat(x, out_1 .. out_k-1); x + res_scale * out_5."""

    def __init__(self, width: int, growth: int, res_scale: float):
        super().__init__()
        self.res_scale = res_scale
        self.convs = nn.ModuleList(nn.Conv2d(width + k * growth, growth if k < 4 else width, 3, 1, 1) for k in range(5))
        self.act = nn.LeakyReLU(0.2)
        _init_small(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for k, conv in enumerate(self.convs):
            out = conv(torch.cat(features, dim=1))  # (B, width + k growth, h, w) in
            if k < 4:
                features.append(self.act(out))
        return x + self.res_scale * out


class RRDB(nn.Module):
    """Residual in residual: x + res_scale * (three dense blocks)(x)."""

    def __init__(self, width: int, growth: int, res_scale: float):
        super().__init__()
        self.res_scale = res_scale
        self.dense = nn.Sequential(*(DenseBlock(width, growth, res_scale) for _ in range(3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.dense(x)


class SRGenerator(nn.Module):
    """G(a) -> b: float (B, in_channels, h, w) in [-1, 1] -> (B, channels, scale h, scale w)."""

    z_dim = 0  # no latent: the training loop's latent draws are empty
    size_multiple = 1  # any input size: no downsampling inside

    def __init__(self, config: SRResNetConfig):
        super().__init__()
        self.config = config
        c, w = config, config.width
        self.head = nn.Sequential(nn.Conv2d(c.in_channels, w, 9, 1, 4), nn.PReLU(w))
        if c.block == "rrdb":
            blocks = [RRDB(w, c.growth, c.res_scale) for _ in range(c.blocks)]
        else:
            blocks = [ResidualBlock(w, c.norm) for _ in range(c.blocks)]
        self.body = nn.Sequential(*blocks, nn.Conv2d(w, w, 3, 1, 1, bias=c.norm != "batch"), _norm(c.norm, w))
        stages = []
        for _ in range(int(math.log2(c.scale))):
            stages += [nn.Conv2d(w, 4 * w, 3, 1, 1), nn.PixelShuffle(2), nn.PReLU(w)]  # (B, w, 2h, 2w) out
        self.upsample = nn.Sequential(*stages)
        self.tail = nn.Conv2d(w, c.channels, 9, 1, 4)
        if c.input_skip == "bicubic":  # G starts as bicubic upscaling and learns the difference
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    @property
    def scale(self) -> int:
        return self.config.scale

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        if a.dim() != 4 or a.shape[1] != self.config.in_channels or not a.dtype.is_floating_point:
            raise ModelConfigError(f"{NAME} takes A as float (B, {self.config.in_channels}, H, W) images, got "
                                   f"{a.dtype} of shape {tuple(a.shape)}.")
        x = self.head(a)  # (B, width, h, w)
        x = x + self.body(x)  # the global skip
        b = self.tail(self.upsample(x))  # (B, channels, scale h, scale w)
        if self.config.input_skip == "bicubic":
            b = b + F.interpolate(a, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return b if self.training else b.clamp(-1.0, 1.0)


class SRDiscriminator(nn.Module):
    """D(b) -> (B,) logits: SRGAN's strided VGG-style network on the high-resolution image alone."""

    def __init__(self, config: SRResNetConfig):
        super().__init__()
        self.config = config
        w = config.d_width
        layers: list[nn.Module] = []
        previous = config.channels
        for i in range(config.stages):
            width = w * 2**i
            for stride in (1, 2):
                first = not layers
                layers += [nn.Conv2d(previous, width, 3, stride, 1, bias=first)]
                layers += [] if first else [nn.BatchNorm2d(width)]
                layers += [nn.LeakyReLU(0.2)]
                previous = width
        self.features = nn.Sequential(*layers)
        side = config.resolution
        for _ in range(config.stages):
            side = (side + 1) // 2  # a stride-2 3x3 conv with padding 1
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(previous * side * side, config.d_dense), nn.LeakyReLU(0.2),
                                  nn.Linear(config.d_dense, 1))
        self.side = side

    def forward(self, b: torch.Tensor) -> torch.Tensor:
        size = self.config.resolution
        if b.dim() != 4 or b.shape[1:] != (self.config.channels, size, size):
            raise ModelConfigError(f"{NAME} discriminator judges (B, {self.config.channels}, {size}, {size}) images "
                                   f"(its dense layers fix the size), got shape {tuple(b.shape)}.")
        return self.head(self.features(b)).squeeze(1)  # (B,)
