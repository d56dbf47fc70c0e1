"""The classic recipe: one generator, one discriminator, the losses of the GAN literature.

Phases: Dmain (draws a batch of real images), Dreg (lazy R1 every `r1_every` steps, when r1_gamma > 0)
and Gmain. With `reuse_fakes` the fakes D was just trained on are the ones G learns from, so a step
runs G forward once (the textbook loop); otherwise G's phase draws fresh fakes (StyleGAN).

The losses, written with D's raw logits l (sigmoid(l) = D's probability that the input is real):
- minimax (Goodfellow et al. 2014, as written): D maximises log D(x) + log(1 - D(G(z))); G *minimises*
  log(1 - D(G(z))) = -softplus(l_fake). Its gradient vanishes when D wins early: kept for teaching.
- nonsaturating: G maximises log D(G(z)) instead: softplus(-l_fake). The same paper's practical fix.
- hinge (Lim & Ye 2017; Miyato et al. 2018): D relu(1 - l_real) + relu(1 + l_fake); G -l_fake.
- wgan-gp (Gulrajani et al. 2017): D l_fake - l_real + λ (||∇D(x̂)|| - 1)²; G -l_fake.
- lsgan (Mao et al. 2017): D ½(l_real - 1)² + ½ l_fake²; G ½(l_fake - 1)².
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganforge.models import create_models
from ganforge.train.recipes.augmenting import DiscriminatorAugment
from ganforge.train.recipes.base import Batch, OptimizerGroup, Phase, Recipe, lazy_interval
from ganforge.train.recipes.fields import model_fields


def d_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D's loss for `kind` (without wgan-gp's penalty, which needs the images)."""
    if kind in ("nonsaturating", "minimax"):
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    if kind == "lsgan":
        return 0.5 * ((real_logits - 1) ** 2).mean() + 0.5 * (fake_logits**2).mean()
    return fake_logits.mean() - real_logits.mean()  # wgan-gp


def g_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    if kind == "minimax":
        return -F.softplus(fake_logits).mean()  # = mean log(1 - D(G(z))), minimised
    if kind == "nonsaturating":
        return F.softplus(-fake_logits).mean()
    if kind == "lsgan":
        return 0.5 * ((fake_logits - 1) ** 2).mean()
    return -fake_logits.mean()  # hinge, wgan-gp


def d_stats(loss: torch.Tensor, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> dict[str, torch.Tensor]:
    return {
        "loss_D": loss.detach(),
        "D_real": real_logits.detach().mean(),
        "D_fake": fake_logits.detach().mean(),
        # the share of images D calls correctly: near 1.0 for long means D is overpowering G
        "D_accuracy": 0.5 * ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean()).detach(),
        # ADA's overfitting heuristic (Karras et al. 2020): E[sign(D(real))], 0.6 is their threshold
        "r_t": torch.sign(real_logits.detach()).mean(),
    }


def r1_penalty(D, augment, real: torch.Tensor, labels) -> torch.Tensor:
    """E||∇_x D(x)||² on real images (Mescheder et al. 2018), computed in fp32 by the caller."""
    real = real.detach().requires_grad_(True)
    logits = D(augment(real), labels)[0]
    (grad,) = torch.autograd.grad(logits.float().sum(), real, create_graph=True)
    return grad.float().square().flatten(1).sum(1).mean()


class ClassicRecipe(Recipe):
    """The two-player game of DCGAN and the MLP, with optional R1, gradient penalty, AC-GAN and augmentation."""

    name = "classic"

    def __init__(self, config, dataset, device, rng):
        super().__init__(config, dataset, device, rng)
        fields = model_fields(config, dataset)
        self.model_name = fields.pop("name")
        self.model_config, G, D = create_models(self.model_name, **fields)
        self.networks = {"G": G, "D": D}
        self.augment = DiscriminatorAugment(config, device, rng) if dataset.kind == "images" else None
        self.acgan = getattr(D.config, "conditioning", "") == "acgan" and getattr(D.config, "num_classes", 0) > 0
        self._fakes: torch.Tensor | None = None

    @property
    def G(self):
        return self.networks["G"]

    @property
    def D(self):
        return self.networks["D"]

    def optimizer_groups(self) -> dict[str, OptimizerGroup]:
        c = self.config
        betas = (c.beta1, c.beta2)
        return {"G": OptimizerGroup(("G",), c.lr_g, betas),
                "D": OptimizerGroup(("D",), c.lr_d, betas, lazy_interval(c.r1_gamma, c.r1_every))}

    def phases(self) -> list[Phase]:
        c = self.config
        phases = [Phase("Dmain", "D", draws=True, repeats=c.d_steps, graph=("G",) if c.reuse_fakes else ())]
        if c.r1_gamma > 0:
            phases.append(Phase("Dreg", "D", c.r1_every, fp32=True))
        phases.append(Phase("Gmain", "G", grad_norm="grad_G"))
        return phases

    def loss(self, phase: Phase, batch: Batch):
        if phase.name == "Dmain":
            return self._d_main(batch)
        if phase.name == "Dreg":
            penalty = r1_penalty(self.D, self._augment, batch.real, batch.labels)
            return penalty * (self.config.r1_gamma / 2) * phase.interval, {"R1": penalty.detach()}
        if phase.name == "Gmain":
            return self._g_main(batch)
        raise ValueError(f"the classic recipe has no phase {phase.name!r}")

    def _augment(self, x):
        return self.augment(x) if self.augment is not None else x

    def _discriminate(self, x, labels):
        logits, class_logits = self.D(self._augment(x), labels)
        return logits.float(), None if class_logits is None else class_logits.float()

    def _d_main(self, batch: Batch):
        if self.config.reuse_fakes:
            fake = self.G(batch.z, batch.labels)  # the graph is kept for the G phase
            self._fakes = fake
            fake = fake.detach()
        else:
            with torch.no_grad():
                fake = self.G(batch.z, batch.labels)
        real_logits, real_classes = self._discriminate(batch.real, batch.labels)
        fake_logits, fake_classes = self._discriminate(fake, batch.labels)
        if self.augment is not None:
            self.augment.observe(real_logits)
        loss = d_loss(self.config.loss, real_logits, fake_logits)
        if self.config.loss == "wgan-gp":
            loss = loss + self.config.gp_weight * self._gradient_penalty(batch.real, fake, batch.labels)
        if self.acgan:
            loss = loss + self.config.acgan_weight * (
                F.cross_entropy(real_classes, batch.labels) + F.cross_entropy(fake_classes, batch.labels))
        return loss, d_stats(loss, real_logits, fake_logits)

    def _g_main(self, batch: Batch):
        fake, self._fakes = (self._fakes, None) if self._fakes is not None else (self.G(batch.z, batch.labels), None)
        logits, classes = self._discriminate(fake, batch.labels)
        loss = g_loss(self.config.loss, logits)
        if self.acgan:
            loss = loss + self.config.acgan_weight * F.cross_entropy(classes, batch.labels)
        return loss, {"loss_G": loss.detach()}

    def _gradient_penalty(self, real, fake, labels):
        shape = [real.shape[0]] + [1] * (real.dim() - 1)
        alpha = torch.rand(shape, device=real.device, generator=self.rng)
        mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
        logits, _ = self.D(self._augment(mixed), labels)
        (grad,) = torch.autograd.grad(logits.float().sum(), mixed, create_graph=True)
        return ((grad.float().flatten(1).norm(dim=1) - 1) ** 2).mean()

    def after_step(self, step, images_seen, all_reduce):
        return self.augment.after_step(self.config.batch_size, all_reduce) if self.augment is not None else {}

    def tick_values(self):
        return self.augment.tick_values() if self.augment is not None else {}

    def state_dict(self):
        return self.augment.state_dict() if self.augment is not None else {}

    def load_state_dict(self, state):
        if self.augment is not None:
            self.augment.load_state_dict(state)
