"""Small MLPs for low-dimensional points: the 2-D Gaussian-mixture benchmarks of PacGAN / VEEGAN.

Generator: z -> `layers` x (Linear(hidden) + ReLU) -> Linear(dims); outputs are unbounded points.
Discriminator: x -> `layers` x (Linear(hidden) + LeakyReLU(0.2)) -> Linear(1).
Weights keep PyTorch's default init, as the PacGAN / VEEGAN MLPs did (the DCGAN N(0, 0.02) init
is tuned for convolutions).

PacGAN packing (Lin et al. 2018): with `pack = m`, D judges m samples at once. It takes x of shape
(B, dims) with B divisible by m, groups consecutive rows [0..m-1], [m..2m-1], ... into one input of
m * dims features, and returns (B // m,) logits. Real and fake batches must both be multiples of m.

Class conditioning (num_classes > 0) mirrors DCGAN's two modes:
- "cbn-projection": a per-class gain and bias after each hidden Linear of G (conditional batch
  norm's affine part; the MLP has no batch norm to condition) and a projection D.
- "acgan": z concatenated with a learned class embedding; D with an auxiliary classifier head.
Packing and conditioning do not combine (a packed group has no single label): the config refuses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ganforge.models.layers import (
    ClassAffine,
    ModelConfigError,
    ProjectionHead,
    add_spectral_norm,
    check_bool,
    check_conditioning,
    check_int,
    check_labels,
)

NAME = "mlp"


@dataclass(frozen=True)
class MLPConfig:
    dims: int = 2  # size of a data point (the image models' `channels`)
    z_dim: int = 8  # latent size
    hidden: int = 128  # units per hidden layer
    layers: int = 3  # hidden layers in G and in D
    pack: int = 1  # PacGAN: samples D judges together (1 = no packing)
    num_classes: int = 0  # 0 = unconditional
    conditioning: str = "cbn-projection"  # or "acgan"; only used when num_classes > 0
    spectral_norm: bool = False  # spectral norm on D's weights (off in PacGAN / VEEGAN)
    resolution: int = 0  # points have no resolution; kept at 0 so every config has the field

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_int(NAME, "dims", self.dims, 1)
        check_int(NAME, "z_dim", self.z_dim, 1)
        check_int(NAME, "hidden", self.hidden, 1)
        check_int(NAME, "layers", self.layers, 1)
        check_int(NAME, "pack", self.pack, 1)
        check_int(NAME, "num_classes", self.num_classes, 0)
        check_conditioning(NAME, self.conditioning)
        check_bool(NAME, "spectral_norm", self.spectral_norm)
        if self.resolution != 0:
            raise ModelConfigError(
                f"{NAME} config: the mlp model makes points, not images, so resolution must stay 0, "
                f"got {self.resolution!r}; set the point size with dims."
            )
        if self.pack > 1 and self.num_classes > 0:
            raise ModelConfigError(
                f"{NAME} config: PacGAN packing (pack={self.pack}) cannot be combined with class "
                f"conditioning (num_classes={self.num_classes}); set pack=1 or num_classes=0."
            )

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0


class MLPGenerator(nn.Module):
    def __init__(self, config: MLPConfig):
        super().__init__()
        self.config = config
        self.z_dim = config.z_dim
        self.film = config.conditional and config.conditioning == "cbn-projection"
        self.acgan = config.conditional and config.conditioning == "acgan"

        width = config.z_dim
        if self.acgan:
            self.class_embed = nn.Embedding(config.num_classes, config.z_dim)  # N(0, 1) like z
            width += config.z_dim
        self.blocks = nn.ModuleList()
        for _ in range(config.layers):
            self.blocks.append(nn.Linear(width, config.hidden))
            width = config.hidden
        if self.film:
            self.class_affine = nn.ModuleList(
                ClassAffine(config.num_classes, config.hidden) for _ in range(config.layers)
            )
        self.to_point = nn.Linear(width, config.dims)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ModelConfigError(
                f"{NAME} generator: z must have shape (B, {self.z_dim}), got {tuple(z.shape)}."
            )
        check_labels(f"{NAME} generator", labels, z.shape[0], self.config.num_classes)
        h = torch.cat([z, self.class_embed(labels)], dim=1) if self.acgan else z  # (B, Z')
        for i, linear in enumerate(self.blocks):
            h = linear(h)  # (B, hidden)
            if self.film:
                h = self.class_affine[i](h, labels)
            h = torch.relu(h)
        return self.to_point(h)  # (B, dims)


class MLPDiscriminator(nn.Module):
    def __init__(self, config: MLPConfig):
        super().__init__()
        self.config = config
        self.projection = config.conditional and config.conditioning == "cbn-projection"
        self.acgan = config.conditional and config.conditioning == "acgan"

        layers: list[nn.Module] = []
        width = config.dims * config.pack
        for _ in range(config.layers):
            layers += [nn.Linear(width, config.hidden), nn.LeakyReLU(0.2)]
            width = config.hidden
        self.features = nn.Sequential(*layers)  # (B // pack, pack * dims) -> (B // pack, hidden)
        self.to_logit = nn.Linear(width, 1)
        if self.projection:
            self.project = ProjectionHead(config.num_classes, width)
        if self.acgan:
            self.to_class_logits = nn.Linear(width, config.num_classes)
        if config.spectral_norm:
            add_spectral_norm(self)

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        cfg = self.config
        if x.dim() != 2 or x.shape[1] != cfg.dims:
            raise ModelConfigError(
                f"{NAME} discriminator: points must have shape (B, {cfg.dims}), got {tuple(x.shape)}."
            )
        if x.shape[0] % cfg.pack:
            raise ModelConfigError(
                f"{NAME} discriminator: with pack={cfg.pack} the batch must be a multiple of "
                f"{cfg.pack}, got {x.shape[0]} points."
            )
        check_labels(f"{NAME} discriminator", labels, x.shape[0], cfg.num_classes)
        # Consecutive rows form one packed sample; reshape (not view) copes with any layout.
        h = self.features(x.reshape(x.shape[0] // cfg.pack, cfg.pack * cfg.dims))  # (B', hidden)
        logits = self.to_logit(h).flatten()  # (B',)
        class_logits = None
        if self.projection:
            logits = logits + self.project(h, labels)
        if self.acgan:
            class_logits = self.to_class_logits(h)  # (B, num_classes)
        return logits, class_logits
