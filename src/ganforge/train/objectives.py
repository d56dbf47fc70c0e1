"""Objectives: which phases a training step has, and what each phase's loss is.

A phase names the network it updates and how often it runs (StyleGAN2-ADA's Gmain / Dmain / Dreg).
Lazy regularisation is a phase with an interval N whose loss is scaled by N. Later model families
(StyleGAN2's path-length phase, pix2pix's L1 term, CycleGAN's two G/D pairs) are new objectives with
their own phases; the loop in `loop.py` does not change.

The losses, written with D's raw logits l (sigmoid(l) = D's probability that the input is real):
- minimax (Goodfellow et al. 2014, as written): D maximises log D(x) + log(1 - D(G(z))); G *minimises*
  log(1 - D(G(z))) = -softplus(l_fake). Its gradient vanishes when D wins early: kept for teaching.
- nonsaturating: G maximises log D(G(z)) instead: softplus(-l_fake). The same paper's practical fix.
- hinge (Lim & Ye 2017; Miyato et al. 2018): D relu(1 - l_real) + relu(1 + l_fake); G -l_fake.
- wgan-gp (Gulrajani et al. 2017): D l_fake - l_real + λ (||∇D(x̂)|| - 1)²; G -l_fake.
- lsgan (Mao et al. 2017): D ½(l_real - 1)² + ½ l_fake²; G ½(l_fake - 1)².
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ganforge.train.config import TrainConfig


@dataclass(frozen=True)
class Phase:
    name: str  # "Dmain", "Dreg", "Gmain", ...
    module: str  # whose parameters this phase's optimiser updates: "G" or "D"
    interval: int = 1  # run every N steps; the loss is multiplied by N (lazy regularisation)
    graph: tuple[str, ...] = ()  # modules whose autograd graph this phase records for a later phase


@dataclass
class Batch:
    real: torch.Tensor  # (B, C, H, W) in [-1, 1], or (B, dims) points
    labels: torch.Tensor | None  # (B,) class indices, or None
    z: torch.Tensor  # (B, z_dim) latents for this phase's fakes


class GANObjective:
    """The classic two-player game, with optional R1, gradient penalty, AC-GAN and DiffAugment."""

    def __init__(self, config: TrainConfig, G, D, augment: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.config = config
        self.G, self.D = G, D
        self.augment = augment or (lambda x: x)
        self.acgan = getattr(D.config, "conditioning", "") == "acgan" and getattr(D.config, "num_classes", 0) > 0
        # The textbook step: the fakes D was just trained on are the ones G learns from, so each
        # step runs G forward once instead of twice. Off, G's phase draws fresh fakes (StyleGAN).
        self.reuse_fakes = config.reuse_fakes
        self._fakes: torch.Tensor | None = None

    def phases(self) -> list[Phase]:
        phases = [Phase("Dmain", "D", graph=("G",) if self.reuse_fakes else ())]
        if self.config.r1_gamma > 0:
            phases.append(Phase("Dreg", "D", self.config.r1_every))
        phases.append(Phase("Gmain", "G"))
        return phases

    def loss(self, phase: Phase, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if phase.name == "Dmain":
            return self._d_main(batch)
        if phase.name == "Dreg":
            return self._r1(batch, phase.interval)
        if phase.name == "Gmain":
            return self._g_main(batch)
        raise ValueError(f"GANObjective has no phase {phase.name!r}")

    def _discriminate(self, x, labels):
        logits, class_logits = self.D(self.augment(x), labels)
        return logits.float(), None if class_logits is None else class_logits.float()

    def _d_main(self, batch: Batch):
        if self.reuse_fakes:
            fake = self.G(batch.z, batch.labels)  # the graph is kept for the G phase
            self._fakes = fake
            fake = fake.detach()
        else:
            with torch.no_grad():
                fake = self.G(batch.z, batch.labels)
        real_logits, real_classes = self._discriminate(batch.real, batch.labels)
        fake_logits, fake_classes = self._discriminate(fake, batch.labels)
        kind = self.config.loss
        if kind in ("nonsaturating", "minimax"):
            loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        elif kind == "hinge":
            loss = F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
        elif kind == "lsgan":
            loss = 0.5 * ((real_logits - 1) ** 2).mean() + 0.5 * (fake_logits**2).mean()
        else:  # wgan-gp
            loss = fake_logits.mean() - real_logits.mean()
            loss = loss + self.config.gp_weight * self._gradient_penalty(batch.real, fake, batch.labels)
        if self.acgan:
            loss = loss + self.config.acgan_weight * (
                F.cross_entropy(real_classes, batch.labels) + F.cross_entropy(fake_classes, batch.labels))
        stats = {
            "loss_D": loss.detach(),
            "D_real": real_logits.detach().mean(),
            "D_fake": fake_logits.detach().mean(),
            # the share of real images D calls real: near 1.0 for long means D is overpowering G
            "D_accuracy": 0.5 * ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean()).detach(),
            # ADA's overfitting heuristic (Karras et al. 2020): E[sign(D(real))], 0.6 is their threshold
            "r_t": torch.sign(real_logits.detach()).mean(),
        }
        return loss, stats

    def _g_main(self, batch: Batch):
        fake, self._fakes = (self._fakes, None) if self._fakes is not None else (self.G(batch.z, batch.labels), None)
        logits, classes = self._discriminate(fake, batch.labels)
        kind = self.config.loss
        if kind == "minimax":
            loss = -F.softplus(logits).mean()  # = mean log(1 - D(G(z))), minimised
        elif kind == "nonsaturating":
            loss = F.softplus(-logits).mean()
        elif kind == "lsgan":
            loss = 0.5 * ((logits - 1) ** 2).mean()
        else:  # hinge, wgan-gp
            loss = -logits.mean()
        if self.acgan:
            loss = loss + self.config.acgan_weight * F.cross_entropy(classes, batch.labels)
        return loss, {"loss_G": loss.detach()}

    def _r1(self, batch: Batch, interval: int):
        """R1 (Mescheder et al. 2018): γ/2 E||∇_x D(x)||² on real images, in fp32, scaled for laziness."""
        real = batch.real.detach().requires_grad_(True)
        logits, _ = self.D(self.augment(real), batch.labels)
        (grad,) = torch.autograd.grad(logits.float().sum(), real, create_graph=True)
        penalty = grad.float().square().flatten(1).sum(1).mean()
        return penalty * (self.config.r1_gamma / 2) * interval, {"R1": penalty.detach()}

    def _gradient_penalty(self, real, fake, labels):
        alpha = torch.rand([real.shape[0]] + [1] * (real.dim() - 1), device=real.device)
        mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
        logits, _ = self.D(self.augment(mixed), labels)
        (grad,) = torch.autograd.grad(logits.float().sum(), mixed, create_graph=True)
        return ((grad.float().flatten(1).norm(dim=1) - 1) ** 2).mean()
