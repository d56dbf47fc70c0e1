"""SPADE (Park et al. 2019, "Semantic image synthesis with spatially-adaptive normalization", GauGAN):
a label map -> image generator and pix2pixHD's multi-scale PatchGAN discriminator.

SPADE layer (the paper's eq. 1): a parameter-free norm of x, then a scale and shift that vary per pixel,
computed from the label map m resized (nearest) to x's size:

    SPADE(x, m) = norm(x) * (1 + gamma(m)) + beta(m),    gamma, beta = conv3x3(ReLU(conv3x3(one_hot(m))))

The hidden width of the shared conv is `hidden` (the paper's 128). `norm` is the parameter-free norm:
"batch" (the paper's synchronised batch norm, affine off; in eval mode its running averages) or
"instance" (affine off, no running statistics). Both make eval deterministic: one image's output never
depends on the rest of its batch.

SPADE residual block (the paper's fig. 4): x -> SPADE -> LeakyReLU(0.2) -> conv3x3 -> SPADE -> LeakyReLU
-> conv3x3, plus a shortcut (SPADE -> conv1x1 without bias when the width changes, else x itself); the
middle width is min(in, out). Spectral norm on the block's convs, as the paper's G.

Generator: the paper's variant without the image encoder (no z: the output is a function of the map
alone, so eval is deterministic). The map, resized to the start size (resolution / 2**upsamplings), goes
through a 3x3 conv to `width * min(2**n, 16)` channels; then a SPADE block at the start size and, per
upsampling (nearest, x2), one block, the width halving towards `width` at full size (the paper's
16nf, 16nf, 8nf ... 1nf; it has two more blocks at its second scale, left out here to keep CPU runs
cheap); LeakyReLU -> conv3x3 -> tanh. `upsamplings` 0 means log2(resolution) - 3: an 8x8 start map,
the paper's "normal" setting (8x8 at 256 px). Fully convolutional: any H, W divisible by 2**upsamplings.

Discriminator: pix2pixHD's multi-scale PatchGAN (Wang et al. 2018), as SPADE uses it: `d_scales`
PatchGANs, each on (one-hot map, image) at half the previous size (3x3 average pooling, stride 2). Each
is 4x4 convs with padding 2: C64 (stride 2, no norm), then `d_layers - 1` more (stride 2, the last stride
1) with spectral norm and instance norm, widths doubling to 512, and a 4x4 conv to one logit per patch.
`forward` returns every layer's output at every scale, the last of each the logits, for the
feature-matching loss (pix2pixHD's eq. 4).

Inputs: A is a long label map (B, H, W) with values 0 .. input_classes - 1 (a `--derive labels:K`
dataset); B is (B, channels, H, W) in [-1, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganforge.models.layers import ModelConfigError, check_int

NAME = "spade"
NORMS = ("batch", "instance")
MAX_G_FACTOR = 16  # G's widest layer is width x 16, the paper's 16nf
MAX_D_WIDTH = 512  # as pix2pixHD's PatchGAN


@dataclass(frozen=True)
class SPADEConfig:
    resolution: int = 256  # B's side in pixels (A is the same size): a power of two, 16..1024
    channels: int = 3  # B's channels: 1, 3 or 4
    input_classes: int = 8  # K: A is a label map of K classes (from --derive labels:K)
    num_classes: int = 0  # image classes are not used by SPADE: must stay 0
    width: int = 64  # G's width at full size (the paper's ngf); x 2 per scale down, at most x 16
    hidden: int = 128  # the SPADE layers' shared conv width (the paper's 128)
    upsamplings: int = 0  # G's x2 upsamplings from its start map; 0 = log2(resolution) - 3 (an 8x8 start)
    norm: str = "batch"  # the parameter-free norm inside SPADE: batch (the paper's) | instance
    d_width: int = 64  # D's first width (the paper's ndf)
    d_layers: int = 4  # convs before the logits in each PatchGAN (the paper's n_layers_D 4)
    d_scales: int = 2  # PatchGANs at 1, 1/2, ... of the size (the paper's num_D 2)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_int(NAME, "resolution", self.resolution, 16, 1024)
        if self.resolution & (self.resolution - 1):
            raise ModelConfigError(f"{NAME} config: resolution must be a power of two (16 .. 1024), got {self.resolution}.")
        check_int(NAME, "channels", self.channels, 1, 4)
        check_int(NAME, "input_classes", self.input_classes, 2, 256)
        check_int(NAME, "num_classes", self.num_classes, 0, 0)
        check_int(NAME, "width", self.width, 1)
        check_int(NAME, "hidden", self.hidden, 1)
        check_int(NAME, "upsamplings", self.upsamplings, 0, int(math.log2(self.resolution)) - 1)
        if self.norm not in NORMS:
            raise ModelConfigError(f"{NAME} config: norm must be one of {', '.join(NORMS)}, got {self.norm!r}.")
        check_int(NAME, "d_width", self.d_width, 1)
        check_int(NAME, "d_layers", self.d_layers, 1, 6)
        check_int(NAME, "d_scales", self.d_scales, 1, 4)

    @property
    def steps(self) -> int:
        """G's upsamplings: the start map is resolution / 2**steps."""
        return self.upsamplings or int(math.log2(self.resolution)) - 3

    def g_width(self, level: int) -> int:
        """G's width at `level` halvings below full size."""
        return self.width * min(2**level, MAX_G_FACTOR)


def one_hot_map(config: SPADEConfig, a: torch.Tensor) -> torch.Tensor:
    """A long label map (B, H, W) as float one-hot maps (B, K, H, W); anything else is refused with a sentence."""
    k = config.input_classes
    if a.dim() != 3 or a.dtype.is_floating_point:
        raise ModelConfigError(f"{NAME} paints a label map of {k} classes: it takes a long tensor (B, H, W), got "
                               f"{a.dtype} of shape {tuple(a.shape)}. Prepare the pairs with --derive labels:{k}.")
    if a.numel() and (int(a.min()) < 0 or int(a.max()) >= k):
        raise ModelConfigError(f"{NAME}: the label map's values must be 0 .. {k - 1}, got {int(a.min())} .. {int(a.max())}.")
    return F.one_hot(a.long(), k).permute(0, 3, 1, 2).float()  # (B, K, H, W)


def _free_norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=False)
    return nn.InstanceNorm2d(channels, affine=False)


class SPADE(nn.Module):
    """norm(x) * (1 + gamma(m)) + beta(m): the scale and shift are maps computed from the label map."""

    def __init__(self, channels: int, classes: int, hidden: int, norm: str):
        super().__init__()
        self.norm = _free_norm(norm, channels)
        self.shared = nn.Sequential(nn.Conv2d(classes, hidden, 3, padding=1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        """x (B, C, h, w); segmap one-hot (B, K, H, W), resized here to (h, w) by nearest neighbour."""
        m = F.interpolate(segmap, size=x.shape[-2:], mode="nearest")  # (B, K, h, w)
        features = self.shared(m)  # (B, hidden, h, w)
        return self.norm(x) * (1 + self.gamma(features)) + self.beta(features)


class SPADEResBlock(nn.Module):
    """Two SPADE -> LeakyReLU -> conv3x3 steps plus a shortcut (learned when the width changes)."""

    def __init__(self, fin: int, fout: int, config: SPADEConfig):
        super().__init__()
        middle, k, h, n = min(fin, fout), config.input_classes, config.hidden, config.norm
        self.norm_0, self.conv_0 = SPADE(fin, k, h, n), spectral_norm(nn.Conv2d(fin, middle, 3, padding=1))
        self.norm_1, self.conv_1 = SPADE(middle, k, h, n), spectral_norm(nn.Conv2d(middle, fout, 3, padding=1))
        self.learned_shortcut = fin != fout
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, k, h, n)
            self.conv_s = spectral_norm(nn.Conv2d(fin, fout, 1, bias=False))

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, segmap)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, segmap), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, segmap), 0.2))
        return shortcut + dx  # (B, fout, h, w)


class SPADEGenerator(nn.Module):
    """G(a) -> b: a long label map (B, H, W) to float (B, channels, H, W) in [-1, 1]."""

    z_dim = 0  # no latent: the training loop's latent draws are empty
    scale = 1  # the output is the input's size

    def __init__(self, config: SPADEConfig):
        super().__init__()
        self.config = config
        n = config.steps
        self.size_multiple = 2**n  # the start map is H / 2**n
        self.fc = nn.Conv2d(config.input_classes, config.g_width(n), 3, padding=1)
        self.head = SPADEResBlock(config.g_width(n), config.g_width(n), config)
        # ups[i] runs after the (i + 1)-th upsampling, at n - 1 - i halvings below full size
        self.ups = nn.ModuleList(SPADEResBlock(config.g_width(level + 1), config.g_width(level), config)
                                 for level in range(n - 1, -1, -1))
        self.to_image = nn.Conv2d(config.width, config.channels, 3, padding=1)

    def forward(self, a: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """`generator` is accepted for the pix2pix family's call and unused: SPADE draws nothing."""
        segmap = one_hot_map(self.config, a)  # (B, K, H, W)
        height, width = segmap.shape[-2:]
        step = self.size_multiple
        if height % step or width % step:
            raise ModelConfigError(f"{NAME}: this generator starts from a map {step} times smaller than its output, so "
                                   f"the height and width must be multiples of {step}; got {(height, width)}.")
        x = self.fc(F.interpolate(segmap, size=(height // step, width // step), mode="nearest"))  # (B, 16w, h0, w0)
        x = self.head(x, segmap)
        for block in self.ups:
            x = block(F.interpolate(x, scale_factor=2, mode="nearest"), segmap)  # (B, C_level, 2h, 2w)
        return torch.tanh(self.to_image(F.leaky_relu(x, 0.2)))  # (B, channels, H, W)


class PatchGAN(nn.Module):
    """One scale of the multi-scale D: every layer's output, the last the (B, 1, h, w) patch logits."""

    def __init__(self, in_channels: int, config: SPADEConfig):
        super().__init__()
        w = config.d_width
        layers = [nn.Sequential(nn.Conv2d(in_channels, w, 4, 2, 2), nn.LeakyReLU(0.2))]
        previous = w
        for i in range(1, config.d_layers):
            width = min(previous * 2, MAX_D_WIDTH)
            stride = 1 if i == config.d_layers - 1 else 2
            layers.append(nn.Sequential(spectral_norm(nn.Conv2d(previous, width, 4, stride, 2)),
                                        nn.InstanceNorm2d(width), nn.LeakyReLU(0.2)))
            previous = width
        layers.append(nn.Conv2d(previous, 1, 4, 1, 2))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for layer in self.layers:
            x = layer(x)
            outputs.append(x)
        return outputs


class MultiscaleDiscriminator(nn.Module):
    """D(a, b) -> per scale, the list of each layer's output; `[s][-1]` is scale s's (B, 1, h, w) logits."""

    def __init__(self, config: SPADEConfig):
        super().__init__()
        self.config = config
        self.scales = nn.ModuleList(PatchGAN(config.input_classes + config.channels, config)
                                    for _ in range(config.d_scales))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> list[list[torch.Tensor]]:
        x = torch.cat([one_hot_map(self.config, a).to(b.dtype), b], dim=1)  # (B, K + C, H, W)
        results = []
        for i, patchgan in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)  # (B, K + C, H / 2**i, ...)
            results.append(patchgan(x))
        return results
