"""CycleGAN (Zhu et al. 2017): two ResNet generators A -> B and B -> A, and two PatchGANs on single images.

Generator, the paper's appendix 7.2 (after Johnson et al. 2016): c7s1-64, d128, d256, `blocks` residual
blocks R256, u128, u64, c7s1-C. c7s1-k is reflection padding 3, a 7x7 conv of k filters, instance norm,
ReLU; dk a 3x3 stride-2 conv, instance norm, ReLU; Rk two 3x3 convs (reflection padded, instance
norm, ReLU after the first only) added to their input; uk a 3x3 stride-1/2 transposed conv, instance
norm, ReLU. The last layer has no norm and ends in tanh. `width` is the first 64 (the paper's ngf);
`blocks` 0 picks the paper's 9 from 256 px up and 6 below. Two stride-2 downsamplings: H and W must be
multiples of 4 (`size_multiple`), any size otherwise (fully convolutional).

The trained and exported network (the "G" role) is one `CycleGenerator` holding both directions,
`a_to_b` and `b_to_a` (named in `components`); `forward(a)` is `a_to_b(a)`, so EMA, checkpoints and
export carry both at once. A and B may have different channel counts (gray A, colour B).

Discriminator: the 70x70 PatchGAN of pix2pix on one image (not a pair): 4x4 convs C64-C128-C256-C512
(the first without norm, LeakyReLU 0.2), `d_layers` of them stride 2 then one stride 1, and a 4x4 conv
to one logit per patch, (B, 1, h, w). `d_layers` 0 picks 3 (70x70) from 64 px up, 2 at 32 px, 1 at 16.
`CycleDiscriminators` holds `d_a` (judges A images) and `d_b` (judges B images), trained as one group.

Instance norm without affine parameters or running statistics everywhere: eval equals train, and one
image's output never depends on the others in its batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ganforge.models.layers import ModelConfigError, check_int

NAME = "cyclegan"


@dataclass(frozen=True)
class CycleGANConfig:
    resolution: int = 256  # training side in pixels (both sides): a multiple of 4, 8..1024
    channels: int = 3  # B's channels: 1, 3 or 4
    in_channels: int = 3  # A's channels: 1, 3 or 4
    num_classes: int = 0  # image classes are not used by CycleGAN: must stay 0
    width: int = 64  # G's first width (the paper's ngf); the residual blocks run at 4 x width
    d_width: int = 64  # D's first width (the paper's ndf)
    blocks: int = 0  # residual blocks; 0 = the paper's 9 from 256 px up, 6 below
    d_layers: int = 0  # D's stride-2 convs; 3 = the paper's 70x70 patches; 0 = from the resolution

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_int(NAME, "resolution", self.resolution, 8, 1024)
        if self.resolution % 4:
            raise ModelConfigError(f"{NAME} config: resolution must be a multiple of 4 (G halves it twice), "
                                   f"got {self.resolution}.")
        check_int(NAME, "channels", self.channels, 1, 4)
        check_int(NAME, "in_channels", self.in_channels, 1, 4)
        check_int(NAME, "num_classes", self.num_classes, 0, 0)
        check_int(NAME, "width", self.width, 1)
        check_int(NAME, "d_width", self.d_width, 1)
        check_int(NAME, "blocks", self.blocks, 0, 64)
        check_int(NAME, "d_layers", self.d_layers, 0, max(int(math.log2(self.resolution)) - 2, 1))

    @property
    def residual_blocks(self) -> int:
        return self.blocks or (9 if self.resolution >= 256 else 6)

    @property
    def patch_layers(self) -> int:
        return self.d_layers or min(3, max(1, int(math.log2(self.resolution)) - 3))


def _conv_norm_relu(conv: nn.Module, channels: int, pad: int = 0) -> list[nn.Module]:
    padding = [nn.ReflectionPad2d(pad)] if pad else []
    return [*padding, conv, nn.InstanceNorm2d(channels), nn.ReLU()]


class ResidualBlock(nn.Module):
    """x + conv-norm-relu-conv-norm(x), 3x3 convs with reflection padding: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(*_conv_norm_relu(nn.Conv2d(channels, channels, 3), channels, pad=1),
                                  nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNetGenerator(nn.Module):
    """One direction: float (B, in_channels, H, W) in [-1, 1] -> (B, out_channels, H, W) in [-1, 1]."""

    z_dim = 0
    scale = 1  # output side / input side
    size_multiple = 4  # two stride-2 convs

    def __init__(self, in_channels: int, out_channels: int, width: int, blocks: int):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        w = width
        layers = _conv_norm_relu(nn.Conv2d(in_channels, w, 7), w, pad=3)  # c7s1-64
        layers += _conv_norm_relu(nn.Conv2d(w, 2 * w, 3, 2, 1), 2 * w)  # d128
        layers += _conv_norm_relu(nn.Conv2d(2 * w, 4 * w, 3, 2, 1), 4 * w)  # d256
        layers += [ResidualBlock(4 * w) for _ in range(blocks)]  # R256 x blocks
        layers += _conv_norm_relu(nn.ConvTranspose2d(4 * w, 2 * w, 3, 2, 1, output_padding=1), 2 * w)  # u128
        layers += _conv_norm_relu(nn.ConvTranspose2d(2 * w, w, 3, 2, 1, output_padding=1), w)  # u64
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(w, out_channels, 7), nn.Tanh()]  # c7s1-C
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ModelConfigError(f"{NAME}: this direction takes (B, {self.in_channels}, H, W) images, got shape "
                                   f"{tuple(x.shape)}.")
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ModelConfigError(f"{NAME}: the generator halves its input twice, so the height and width must be "
                                   f"multiples of 4; got {tuple(x.shape[-2:])}.")
        return self.net(x)


class CycleGenerator(nn.Module):
    """Both directions in one module: `a_to_b` (A -> B) and `b_to_a` (B -> A); forward(a) = a_to_b(a)."""

    z_dim = 0  # no latent: the training loop's latent draws are empty
    scale = 1
    size_multiple = 4
    components = ("a_to_b", "b_to_a")

    def __init__(self, config: CycleGANConfig):
        super().__init__()
        self.config = config
        blocks = config.residual_blocks
        self.a_to_b = ResNetGenerator(config.in_channels, config.channels, config.width, blocks)
        self.b_to_a = ResNetGenerator(config.channels, config.in_channels, config.width, blocks)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.a_to_b(a)  # (B, channels, H, W)


class PatchGAN(nn.Module):
    """D(x) -> (B, 1, h, w) logits, one per overlapping patch of one image (B, channels, H, W)."""

    def __init__(self, channels: int, width: int, layers: int):
        super().__init__()
        modules: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        previous = width
        for i in range(1, layers + 1):  # layers - 1 more stride-2 convs, then one of stride 1
            wide = width * min(2**i, 8)
            modules += [nn.Conv2d(previous, wide, 4, 2 if i < layers else 1, 1), nn.InstanceNorm2d(wide),
                        nn.LeakyReLU(0.2)]
            previous = wide
        modules.append(nn.Conv2d(previous, 1, 4, 1, 1))
        self.features = nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class CycleDiscriminators(nn.Module):
    """`d_a` judges A images, `d_b` judges B images; forward(b) = d_b(b) (the A -> B direction's judge)."""

    def __init__(self, config: CycleGANConfig):
        super().__init__()
        self.config = config
        self.d_a = PatchGAN(config.in_channels, config.d_width, config.patch_layers)
        self.d_b = PatchGAN(config.channels, config.d_width, config.patch_layers)

    def forward(self, b: torch.Tensor) -> torch.Tensor:
        return self.d_b(b)
