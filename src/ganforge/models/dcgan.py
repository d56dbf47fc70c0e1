"""DCGAN (Radford et al. 2016) for square images of 16..256 px, optionally class-conditional.

Generator: z -> 4x4 transposed conv -> [ConvTranspose(4, 2, 1) + BN + ReLU] doubling up to R/2 ->
ConvTranspose(4, 2, 1) to `channels` + tanh.
Discriminator: [Conv(4, 2, 1) (+ BN, not on the first layer) + LeakyReLU(0.2)] halving down to
4x4 -> 4x4 conv to one logit. With `spectral_norm` every D weight is spectrally normalised and
D has no batch norm.

Class conditioning (num_classes > 0):
- "cbn-projection": conditional batch norm in G; projection discriminator, whose class term
  <embed(y), sum-pooled 4x4 features> is added to the logit (Miyato & Koyama 2018).
- "acgan": G sees z concatenated with a learned z_dim-sized class embedding; D has a second 4x4
  head giving class logits (Odena et al. 2017). D still takes labels, only to keep one calling
  convention for every conditional model; it checks but does not use them.
- `class_head` with "cbn-projection": the projection model, and D also gives AC-GAN's class logits. With
  "acgan" alone D's adversarial logit ignores the class, and on MNIST G learned to ignore z (each class
  one image, within the first 8,000 images, with or without the class loss); projection keeps z's
  variety, and the head makes each image read as its class.

Attribute conditioning (`attributes`, a list of the dataset's attributes; empty = off): G and D take raw
values (B, A) as `attributes=` and encode them from the config (standardised, one-hot). G's batch norms
are followed by a per-channel gain and bias linear in the attributes; D adds the projection term
<W a, sum-pooled 4x4 features>. It combines with either class conditioning.

Width: `g_width` / `d_width` is the channel count of the 32x32 feature map, i.e. the widest layer
of a 64-px model, and doubles each time the map halves, capped at `max_width`. With the defaults a
64-px model is exactly the paper's 64-128-256-512 network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from ganforge.models.layers import (
    AttributeAffine,
    AttributeEncoder,
    AttributeProjection,
    AttributeRegressor,
    AttributeSpec,
    ConditionalBatchNorm2d,
    ModelConfigError,
    ProjectionHead,
    add_spectral_norm,
    check_attributes,
    check_bool,
    check_conditioning,
    check_channels,
    check_int,
    check_labels,
    init_dcgan_weights,
    refuse_attributes,
)

NAME = "dcgan"


@dataclass(frozen=True)
class DCGANConfig:
    resolution: int = 64  # output side in pixels: a power of two in 16..256
    channels: int = 3  # 1 (grey), 3 (RGB) or 4 (RGBA)
    z_dim: int = 128  # latent size
    num_classes: int = 0  # 0 = unconditional
    conditioning: str = "cbn-projection"  # or "acgan"; only used when num_classes > 0
    spectral_norm: bool = False  # spectral norm on D's weights (D then drops batch norm)
    g_width: int = 64  # G channels at the 32x32 map, doubling as the map halves
    d_width: int = 64  # D channels at the 32x32 map, doubling as the map halves
    max_width: int = 512  # cap on any layer's channel count
    attributes: tuple[AttributeSpec, ...] = ()  # attributes to condition on (from the dataset); () = none
    attribute_head: bool = False  # D also predicts the attributes (for the recipe's attribute_weight loss)
    class_head: bool = False  # D also gives class logits (AC-GAN's classifier) beside its projection term

    def __post_init__(self) -> None:
        object.__setattr__(self, "attributes", check_attributes(NAME, self.attributes))  # dicts from JSON too
        self.validate()

    def validate(self) -> None:
        check_int(NAME, "resolution", self.resolution, 1)
        if self.resolution not in (16, 32, 64, 128, 256):
            raise ModelConfigError(
                f"{NAME} config: resolution must be a power of two between 16 and 256 (16, 32, 64, "
                f"128 or 256), got {self.resolution}; resize the dataset to one of these sizes."
            )
        check_channels(NAME, self.channels)
        check_int(NAME, "z_dim", self.z_dim, 1)
        check_int(NAME, "num_classes", self.num_classes, 0)
        check_conditioning(NAME, self.conditioning)
        check_bool(NAME, "spectral_norm", self.spectral_norm)
        check_bool(NAME, "attribute_head", self.attribute_head)
        if self.attribute_head and not self.attributes:
            raise ModelConfigError(f"{NAME} config: attribute_head needs attributes to predict (the dataset has none).")
        check_bool(NAME, "class_head", self.class_head)
        if self.class_head and not self.conditional:
            raise ModelConfigError(f"{NAME} config: class_head needs classes to predict (the dataset has none).")
        check_int(NAME, "max_width", self.max_width, 1)
        # The widest map (R/2) gets width * 32 / (R/2) channels; it must be at least one.
        need = max(1, self.resolution // 64)
        for field in ("g_width", "d_width"):
            check_int(NAME, field, getattr(self, field), 1)
            if getattr(self, field) < need:
                raise ModelConfigError(
                    f"{NAME} config: {field}={getattr(self, field)} leaves no channels at "
                    f"{self.resolution} px; use {field} >= {need}."
                )

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0


def feature_channels(width: int, max_width: int, side: int) -> int:
    """Channels of a side x side feature map: `width` at 32x32, doubling as the side halves."""
    return min(width * 32 // side, max_width)


class DCGANGenerator(nn.Module):
    def __init__(self, config: DCGANConfig):
        super().__init__()
        self.config = config
        self.z_dim = config.z_dim
        self.cbn = config.conditional and config.conditioning == "cbn-projection"
        self.acgan = config.conditional and config.conditioning == "acgan"
        width = partial(feature_channels, config.g_width, config.max_width)  # side -> channels

        z_in = config.z_dim
        if self.acgan:
            # N(0, 1) like z itself, so z and the class code start at the same scale.
            self.class_embed = nn.Embedding(config.num_classes, config.z_dim)
            z_in += config.z_dim

        # No conv bias where batch norm follows: BN's shift makes it redundant.
        self.stem = nn.ConvTranspose2d(z_in, width(4), 4, 1, 0, bias=False)
        self.ups = nn.ModuleList()
        sides = [4 * 2**i for i in range(int(math.log2(config.resolution)) - 2)]  # 4 .. R/2
        for side in sides[:-1]:
            self.ups.append(nn.ConvTranspose2d(width(side), width(side * 2), 4, 2, 1, bias=False))
        self.norms = nn.ModuleList(self._norm(width(side)) for side in sides)
        self.to_image = nn.ConvTranspose2d(width(sides[-1]), config.channels, 4, 2, 1)
        if config.attributes:
            self.encode_attributes = AttributeEncoder(config.attributes)
            self.attribute_affines = nn.ModuleList(AttributeAffine(self.encode_attributes.width, width(side))
                                                   for side in sides)
        init_dcgan_weights(self)

    def _norm(self, channels: int) -> nn.Module:
        if self.cbn:
            return ConditionalBatchNorm2d(self.config.num_classes, channels)
        return nn.BatchNorm2d(channels)

    def _normalise(self, norm: nn.Module, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return norm(x, labels) if self.cbn else norm(x)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None,
                attributes: torch.Tensor | None = None) -> torch.Tensor:
        """`attributes`: raw values (B, A) in the config's order; None: each at the data's average."""
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ModelConfigError(
                f"{NAME} generator: z must have shape (B, {self.z_dim}), got {tuple(z.shape)}."
            )
        check_labels(f"{NAME} generator", labels, z.shape[0], self.config.num_classes)
        encoded = None
        if self.config.attributes:
            encoded = self.encode_attributes(attributes, z.shape[0], f"{NAME} generator")  # (B, width)
        else:
            refuse_attributes(f"{NAME} generator", attributes)
        if self.acgan:
            z = torch.cat([z, self.class_embed(labels)], dim=1)  # (B, 2 * z_dim)
        x = self.stem(z.reshape(z.shape[0], z.shape[1], 1, 1))  # (B, C4, 4, 4)
        layers = [None, *self.ups]
        for i, (up, norm) in enumerate(zip(layers, self.norms)):
            x = self._normalise(norm, x if up is None else up(x), labels)  # (B, C, H, W), doubling after the stem
            if encoded is not None:
                x = self.attribute_affines[i](x, encoded)
            # in place: batch norm's backward needs its input, never its output
            x = torch.relu_(x)
        return torch.tanh(self.to_image(x))  # (B, channels, R, R) in [-1, 1]


class DCGANDiscriminator(nn.Module):
    def __init__(self, config: DCGANConfig):
        super().__init__()
        self.config = config
        self.projection = config.conditional and config.conditioning == "cbn-projection"
        self.acgan = config.conditional and (config.conditioning == "acgan" or config.class_head)  # a class head
        width = partial(feature_channels, config.d_width, config.max_width)  # side -> channels
        # Spectral norm replaces batch norm as D's stabiliser; using both fights over the scale.
        use_bn = not config.spectral_norm

        layers: list[nn.Module] = []
        side, channels = config.resolution, config.channels
        while side > 4:
            out = width(side // 2)
            batch_norm = use_bn and side != config.resolution  # never on the first layer
            layers.append(nn.Conv2d(channels, out, 4, 2, 1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))  # conv and BN backward need only their inputs
            side, channels = side // 2, out
        self.features = nn.Sequential(*layers)  # (B, C, R, R) -> (B, C4, 4, 4)
        self.to_logit = nn.Conv2d(channels, 1, 4, 1, 0)  # (B, C4, 4, 4) -> (B, 1, 1, 1)
        if self.projection:
            self.project = ProjectionHead(config.num_classes, channels)
        if self.acgan:
            self.to_class_logits = nn.Conv2d(channels, config.num_classes, 4, 1, 0)
        if config.attributes:
            self.encode_attributes = AttributeEncoder(config.attributes)
            self.project_attributes = AttributeProjection(self.encode_attributes.width, channels)
        if config.attribute_head:
            self.regress_attributes = AttributeRegressor(self.encode_attributes.width, channels)
        init_dcgan_weights(self)
        if config.spectral_norm:
            add_spectral_norm(self)

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None, attributes: torch.Tensor | None = None,
        predict_attributes: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits (B,), class logits (B, K) or None); with `predict_attributes` (attribute_head) a third item,
        the attribute head's prediction (B, width) from the mean-pooled 4x4 features."""
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
        h = self.features(x)  # (B, C4, 4, 4)
        # flatten, not view: h may be channels_last.
        logits = self.to_logit(h).flatten()  # (B,)
        class_logits = None
        if self.projection:
            logits = logits + self.project(h.sum(dim=(2, 3)), labels)  # (B,)
        if encoded is not None:
            logits = logits + self.project_attributes(h.sum(dim=(2, 3)), encoded)  # (B,)
        if self.acgan:
            class_logits = self.to_class_logits(h).flatten(1)  # (B, num_classes)
        if predict_attributes:
            if not cfg.attribute_head:
                raise ModelConfigError(f"{NAME} discriminator: predict_attributes needs attribute_head=true.")
            return logits, class_logits, self.regress_attributes(h.mean(dim=(2, 3)))  # (B, width)
        return logits, class_logits
