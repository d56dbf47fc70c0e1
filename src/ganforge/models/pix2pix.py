"""pix2pix (Isola et al. 2017): a U-Net generator A -> B and a PatchGAN discriminator on (A, B) pairs.

Generator, the paper's `unet_256` shape at any power-of-two size: an encoder of `depth` stride-2 4x4
convs (C64-C128-C256-C512-C512..., widths `width * min(2**i, 8)`), each LeakyReLU(0.2) -> conv -> norm
except the first (no norm: it sees the input) and the innermost (no norm: a 1x1 map has no spatial
statistics), and a mirror decoder of stride-2 4x4 transposed convs, each ReLU -> convT -> norm on the
concatenation of the previous decoder output and the encoder output of the same size (the skips).
Dropout 0.5 follows the norm in the `dropout_layers` innermost decoder layers; the last layer has no
norm and ends in tanh. `depth` 0 means log2(resolution): the bottleneck is 1x1, as in the paper.

Discriminator: the PatchGAN on the channel concatenation (A, B): 4x4 convs C64-C128-C256-C512 (the
first without norm, widths `d_width * min(2**i, 8)`), `d_layers` of them with stride 2 then one with
stride 1, and a stride-1 4x4 conv to one logit per patch: (B, 1, h, w), not averaged. `d_layers` = 3
is the paper's 70x70 receptive field; 0 picks it from the resolution (3 from 64 px up, 2 at 32 px:
34x34, 1 at 16 px: 16x16), so a small image still gets a patch map (about 6x6) rather than one logit.

Colourisation (`keep_luma`, for a grey A and a colour B): G's colour output is moved, the same amount
on R, G and B, until its ITU-R 601 luma is A itself. That is, G chooses only the chroma (Cb and Cr) and
the brightness comes from the input, as the paper colourises (it predicts Lab's ab from L); structure
and light cannot be lost in translation. An alpha channel of B is G's own.

Inputs: A is (B, in_channels, H, W) in [-1, 1], or for a label map (`input_classes` K > 0) long
(B, H, W) with values 0..K-1, one-hot encoded to K channels. B is (B, channels, H, W).

Eval mode is deterministic: `G.eval()` turns dropout off and makes batch norm use its running
averages, so the same A always gives the same B and one image's output does not depend on the others in
its batch. The paper instead keeps dropout on at test time as its only noise (and the reference code's
"test" runs batch norm with the test batch's statistics: pytorch-CycleGAN-and-pix2pix #511); ganforge
chooses reproducible output. With instance norm (the default) train and eval differ only by dropout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.colours import BT601
from ganforge.models.layers import ModelConfigError, check_int

NAME = "pix2pix"
NORMS = ("instance", "batch")
LUMA = BT601  # as ganforge's --derive gray


@dataclass(frozen=True)
class Pix2PixConfig:
    resolution: int = 256  # B's side in pixels (A is the same size): a power of two, 8..1024
    channels: int = 3  # B's channels: 1, 3 or 4
    in_channels: int = 3  # A's channels (1, 3 or 4); ignored when input_classes > 0
    input_classes: int = 0  # K > 0: A is a label map of K classes, one-hot encoded
    num_classes: int = 0  # image classes are not used by pix2pix: must stay 0
    width: int = 64  # G's first encoder width (the paper's ngf)
    d_width: int = 64  # D's first width (the paper's ndf)
    depth: int = 0  # encoder layers; 0 = log2(resolution), a 1x1 bottleneck
    d_layers: int = 0  # D's stride-2 convs; 3 = the paper's 70x70 patches; 0 = from the resolution
    norm: str = "instance"  # instance | batch (the paper's, with batch size 1 the same as instance)
    dropout: float = 0.5  # in the innermost decoder layers during training; never in eval mode
    dropout_layers: int = 3  # how many decoder layers (from the innermost) have dropout
    keep_luma: bool = False  # colourisation: the output's luma is the grey input's; G chooses the colours

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_int(NAME, "resolution", self.resolution, 8, 1024)
        if self.resolution & (self.resolution - 1):
            raise ModelConfigError(f"{NAME} config: resolution must be a power of two (8 .. 1024), got {self.resolution}.")
        check_int(NAME, "channels", self.channels, 1, 4)
        check_int(NAME, "in_channels", self.in_channels, 1, 4)
        check_int(NAME, "input_classes", self.input_classes, 0, 256)
        if self.input_classes == 1:
            raise ModelConfigError(f"{NAME} config: input_classes must be 0 (an image) or at least 2 (a label map), got 1.")
        check_int(NAME, "num_classes", self.num_classes, 0, 0)
        check_int(NAME, "width", self.width, 1)
        check_int(NAME, "d_width", self.d_width, 1)
        levels = int(math.log2(self.resolution))
        check_int(NAME, "depth", self.depth, 0, levels)
        if 0 < self.depth < 2:
            raise ModelConfigError(f"{NAME} config: depth must be 0 (from the resolution) or 2 .. {levels}, got {self.depth}.")
        check_int(NAME, "d_layers", self.d_layers, 0, max(levels - 2, 1))
        if self.norm not in NORMS:
            raise ModelConfigError(f"{NAME} config: norm must be one of {', '.join(NORMS)}, got {self.norm!r}.")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ModelConfigError(f"{NAME} config: dropout must be a number in [0, 1) (0.5 is the paper's), got {self.dropout!r}.")
        check_int(NAME, "dropout_layers", self.dropout_layers, 0)
        if not isinstance(self.keep_luma, bool):
            raise ModelConfigError(f"{NAME} config: keep_luma is true or false, got {self.keep_luma!r}.")
        if self.keep_luma and (self.input_classes or self.in_channels != 1 or self.channels < 3):
            raise ModelConfigError(f"{NAME} config: keep_luma colours a grey image, so A needs 1 channel and B 3 or 4 "
                                   f"(got A {self.input_classes or self.in_channels}"
                                   f"{' classes' if self.input_classes else ' channel(s)'}, B {self.channels}).")

    @property
    def input_channels(self) -> int:
        """Channels of G's input tensor: K one-hot maps for a label map, else A's channels."""
        return self.input_classes or self.in_channels

    @property
    def encoder_depth(self) -> int:
        return self.depth or int(math.log2(self.resolution))

    @property
    def patch_layers(self) -> int:
        return self.d_layers or min(3, max(1, int(math.log2(self.resolution)) - 3))


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.InstanceNorm2d(channels)  # no affine, no running statistics: the same in train and eval


def encode_input(config: Pix2PixConfig, a: torch.Tensor) -> torch.Tensor:
    """A as G's and D's input: float (B, C_A, H, W) as given; a long (B, H, W) label map one-hot to K channels."""
    if config.input_classes:
        if a.dim() != 3 or a.dtype.is_floating_point:
            raise ModelConfigError(f"{NAME} takes a label map of {config.input_classes} classes: a long tensor "
                                   f"(B, H, W), got {a.dtype} of shape {tuple(a.shape)}.")
        return F.one_hot(a.long(), config.input_classes).permute(0, 3, 1, 2).float()  # (B, K, H, W)
    if a.dim() != 4 or a.shape[1] != config.in_channels:
        raise ModelConfigError(f"{NAME} takes A as (B, {config.in_channels}, H, W) images, got shape {tuple(a.shape)}.")
    return a


def with_luma(gray: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """`colour` (B, 3 or 4, H, W) shifted on R, G and B alike so its luma equals `gray` (B, 1, H, W); Cb, Cr
    and alpha are kept (YCbCr -> RGB adds Y to each channel with weight 1). Clamped to [-1, 1]."""
    rgb = colour[:, :3]
    y = sum(w * rgb[:, i : i + 1] for i, w in enumerate(LUMA))
    shifted = (rgb + (gray.to(rgb.dtype) - y)).clamp(-1, 1)
    return torch.cat([shifted, colour[:, 3:]], dim=1)


class UNetGenerator(nn.Module):
    """G(a) -> b: float (B, channels, H, W) in [-1, 1]. Fully convolutional: any H, W divisible by 2**depth."""

    z_dim = 0  # no latent: the training loop's latent draws are empty
    scale = 1  # the output is the input's size

    def __init__(self, config: Pix2PixConfig):
        super().__init__()
        self.config = config
        self.size_multiple = 2**config.encoder_depth  # H and W must divide by it (translate pads to it)
        n, w = config.encoder_depth, config.width
        widths = [w * min(2**i, 8) for i in range(n)]
        bias = config.norm != "batch"  # batch norm's shift makes a conv bias redundant
        self.down = nn.ModuleList()
        for i in range(n):
            layers = [] if i == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(config.input_channels if i == 0 else widths[i - 1], widths[i], 4, 2, 1, bias=bias))
            if 0 < i < n - 1:
                layers.append(_norm(config.norm, widths[i]))
            self.down.append(nn.Sequential(*layers))
        self.up = nn.ModuleList()  # innermost first: up[j] makes the size of down[n - 2 - j]'s output
        for j, i in enumerate(range(n - 1, -1, -1)):
            source = widths[i] if i == n - 1 else 2 * widths[i]  # the innermost has no skip to join
            if i == 0:
                self.up.append(nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(source, config.channels, 4, 2, 1), nn.Tanh()))
                continue
            self.up.append(nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(source, widths[i - 1], 4, 2, 1, bias=bias),
                                         _norm(config.norm, widths[i - 1])))
        # dropout after these decoder layers (not the output layer), in training mode only
        self.dropout_after = tuple(range(min(config.dropout_layers, n - 1))) if config.dropout > 0 else ()

    def _dropout(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        # by hand rather than nn.Dropout, so the masks can come from the trainer's stream (exact resume)
        keep = 1.0 - self.config.dropout
        mask = torch.empty_like(x).bernoulli_(keep, generator=generator)
        return x * mask / keep

    def forward(self, a: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """`generator` draws the dropout masks in training mode (None: torch's global stream)."""
        x = encode_input(self.config, a)  # (B, C_in, H, W)
        step = 2**self.config.encoder_depth
        if x.shape[-1] % step or x.shape[-2] % step:
            raise ModelConfigError(f"{NAME}: this U-Net halves its input {self.config.encoder_depth} times, so the "
                                   f"height and width must be multiples of {step}; got {tuple(x.shape[-2:])}.")
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        for j, layer in enumerate(self.up):  # up[0] starts from the bottleneck, which has no skip to join
            x = layer(skips.pop() if j == 0 else torch.cat([x, skips.pop()], dim=1))  # (B, 2C, h, w) with a skip
            if self.training and j in self.dropout_after:
                x = self._dropout(x, generator)
        return with_luma(a, x) if self.config.keep_luma else x


class PatchDiscriminator(nn.Module):
    """D(a, b) -> (B, 1, h, w) logits, one per overlapping patch of the pair."""

    def __init__(self, config: Pix2PixConfig):
        super().__init__()
        self.config = config
        n, w = config.patch_layers, config.d_width
        bias = config.norm != "batch"
        layers: list[nn.Module] = [nn.Conv2d(config.input_channels + config.channels, w, 4, 2, 1), nn.LeakyReLU(0.2)]
        previous = w
        for i in range(1, n + 1):  # n - 1 more stride-2 convs, then one of stride 1
            width = w * min(2**i, 8)
            layers += [nn.Conv2d(previous, width, 4, 2 if i < n else 1, 1, bias=bias), _norm(config.norm, width),
                       nn.LeakyReLU(0.2)]
            previous = width
        layers.append(nn.Conv2d(previous, 1, 4, 1, 1))
        self.features = nn.Sequential(*layers)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = torch.cat([encode_input(self.config, a).to(b.dtype), b], dim=1)  # (B, C_in + C_B, H, W)
        return self.features(x)
