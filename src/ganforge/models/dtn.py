"""DTN, the Domain Transfer Network (Taigman, Polyak and Wolf 2017, "Unsupervised cross-domain image generation").

G = g o f: f is a frozen encoder taken from a classifier of the source domain (its layer before the
logits, as the paper's digits model takes an SVHN classifier's), g a decoder to the target domain.
At `resolution` R = 2**n (DCGAN-shaped, as the paper's digit networks):

    f: (B, C, R, R) -> n - 2 stride-2 4x4 convs (widths f_width x 1, 2, 4, ...; LeakyReLU 0.2, no norm)
       down to 4x4, then a 4x4 conv to (B, features, 1, 1)          the paper's 128 features
    g: a 4x4 transposed conv to 4x4, n - 2 stride-2 4x4 transposed convs up to R (widths width x ..., 4, 2, 1;
       batch norm, ReLU), the last to C channels, tanh
    D: f's shape with its own widths (d_width) and 3 logits: G(source), G(target), real target (the paper's
       ternary D); (B, 3)

`DTNClassifier` is f with a linear head to K classes: the recipe trains it on side A's labels, then
copies its f into the generator, where the weights are buffers, not parameters: no optimiser and no
weight average ever changes them, and they are exported with G. A and B have the same channels (f
reads both domains: L_TID feeds target images through G).

Eval mode is deterministic: f has no norm, and g's batch norm uses its running averages (the loop
recalibrates them for the averaged G from the recipe's `sample_inputs`, mixed A and B as in training).
Inputs are squares of R px or larger multiples of 2**(n - 2); a larger input gives a larger output, but
f was made to read one object per R x R image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ganforge.models.layers import ModelConfigError, check_int

NAME = "dtn"


@dataclass(frozen=True)
class DTNConfig:
    resolution: int = 32  # side in pixels (both sides): a power of two, 16..256
    channels: int = 1  # B's channels: 1, 3 or 4
    in_channels: int = 1  # A's channels: must equal channels (f reads both domains)
    num_classes: int = 0  # image classes are not a condition of G: must stay 0
    features: int = 128  # f's output size (the paper's 128)
    f_width: int = 64  # f's first conv width
    width: int = 64  # g's last hidden width (its first is width x 2**(n - 3))
    d_width: int = 64  # D's first conv width
    f_bound: str = "none"  # "tanh": f's features squashed into (-1, 1), in the classifier and in G alike

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_int(NAME, "resolution", self.resolution, 16, 256)
        if self.resolution & (self.resolution - 1):
            raise ModelConfigError(f"{NAME} config: resolution must be a power of two (16 .. 256), got {self.resolution}.")
        check_int(NAME, "channels", self.channels, 1, 4)
        check_int(NAME, "in_channels", self.in_channels, 1, 4)
        if self.in_channels != self.channels:
            raise ModelConfigError(f"{NAME} config: A has {self.in_channels} channel(s) and B {self.channels}; DTN's "
                                   "encoder f reads images of both sides, so they need the same channels. Prepare both "
                                   "sides with the same --channels.")
        check_int(NAME, "num_classes", self.num_classes, 0, 0)
        for name in ("features", "f_width", "width", "d_width"):
            check_int(NAME, name, getattr(self, name), 1)
        if self.f_bound not in ("none", "tanh"):
            raise ModelConfigError(f"{NAME} config: f_bound is 'none' or 'tanh', not {self.f_bound!r}.")

    @property
    def downsamplings(self) -> int:
        return int(math.log2(self.resolution)) - 2


def _encoder(channels: int, width: int, outputs: int, steps: int, bound: str = "none") -> nn.Sequential:
    """(B, channels, R, R) -> (B, outputs, 1, 1): `steps` stride-2 4x4 convs to 4x4, then a 4x4 valid conv
    (then tanh when `bound` is "tanh")."""
    layers: list[nn.Module] = []
    previous = channels
    for i in range(steps):
        layers += [nn.Conv2d(previous, width * min(2**i, 8), 4, 2, 1), nn.LeakyReLU(0.2)]
        previous = width * min(2**i, 8)
    layers.append(nn.Conv2d(previous, outputs, 4, 1, 0))
    if bound == "tanh":
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def _check_input(x: torch.Tensor, channels: int, config: DTNConfig) -> None:
    step = 2**config.downsamplings
    if x.dim() != 4 or x.shape[1] != channels:
        raise ModelConfigError(f"{NAME} takes (B, {channels}, H, W) images, got shape {tuple(x.shape)}.")
    if min(x.shape[-2:]) < config.resolution or x.shape[-1] % step or x.shape[-2] % step:
        raise ModelConfigError(f"{NAME} reads whole images of {config.resolution} px (or larger multiples of {step}); "
                               f"got {tuple(x.shape[-2:])}.")


def freeze_as_buffers(module: nn.Module) -> nn.Module:
    """Turn every parameter of `module` into a buffer of the same name: saved and moved, never optimised."""
    for child in list(module.modules()):
        for name, parameter in list(child.named_parameters(recurse=False)):
            delattr(child, name)
            child.register_buffer(name, parameter.detach().clone())
    return module


class DTNGenerator(nn.Module):
    """G(a) = g(f(a)): float (B, C, H, W) in [-1, 1] -> (B, C, H, W) in [-1, 1]; f frozen (buffers)."""

    z_dim = 0  # no latent: the training loop's latent draws are empty
    scale = 1
    fully_convolutional = False  # f reads one R x R image into one vector: translate resizes inputs to R

    def __init__(self, config: DTNConfig):
        super().__init__()
        self.config = config
        n = config.downsamplings
        self.size_multiple = 2**n
        f = _encoder(config.in_channels, config.f_width, config.features, n, config.f_bound)
        self.encoder = freeze_as_buffers(f)
        widths = [config.width * 2 ** (n - 1 - i) for i in range(n)]  # e.g. n = 3: 4w, 2w, w
        layers: list[nn.Module] = [nn.ConvTranspose2d(config.features, widths[0], 4, 1, 0, bias=False),
                                   nn.BatchNorm2d(widths[0]), nn.ReLU()]
        for i in range(1, n):
            layers += [nn.ConvTranspose2d(widths[i - 1], widths[i], 4, 2, 1, bias=False), nn.BatchNorm2d(widths[i]),
                       nn.ReLU()]
        layers += [nn.ConvTranspose2d(widths[-1], config.channels, 4, 2, 1), nn.Tanh()]
        self.decoder = nn.Sequential(*layers)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """f(x): (B, C, R, R) -> (B, features, 1, 1) (larger inputs: a map of them)."""
        _check_input(x, self.config.in_channels, self.config)
        return self.encoder(x)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(a))  # (B, C, H, W)


class DTNClassifier(nn.Module):
    """f with a linear head: (B, C, R, R) -> (B, classes) logits. Trained on A's labels, then frozen."""

    def __init__(self, config: DTNConfig, classes: int):
        super().__init__()
        self.config = config
        self.encoder = _encoder(config.in_channels, config.f_width, config.features, config.downsamplings,
                                config.f_bound)
        self.head = nn.Sequential(nn.Flatten(), nn.LeakyReLU(0.2), nn.Linear(config.features, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.config.in_channels, self.config)
        return self.head(self.encoder(x))


class DTNDiscriminator(nn.Module):
    """D(x) -> (B, 3) logits: x is G(source) (class 0), G(target) (class 1) or a real target image (class 2)."""

    def __init__(self, config: DTNConfig):
        super().__init__()
        self.config = config
        self.features = _encoder(config.channels, config.d_width, 3, config.downsamplings)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.config.channels, self.config)
        return self.features(x).flatten(1)
