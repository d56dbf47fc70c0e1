"""The StyleGAN2 recipe (Karras et al. 2020, config F), with adaptive augmentation from `augment=ada`.

Phases, as StyleGAN2-ADA's loop: Gmain (non-saturating loss, with style mixing), Greg (path-length
regularisation every `pl_every` steps), Dmain (non-saturating loss; ADA's r_t is read here) and Dreg
(lazy R1 every `r1_every` steps). Each lazy regulariser scales its loss by its interval, and its
optimiser group corrects the rate and betas for the extra steps (see `OptimizerGroup`).

- style mixing: with probability `style_mixing` the layers from a random cutoff on take their w from a
  second latent, so neighbouring layers do not learn to depend on each other;
- path length: for w and a random image-space direction y, ||J_w^T y|| should be the same everywhere:
  penalised as (||J_w^T y|| - a)^2, with a the running mean of the lengths (decay `pl_decay`), over
  half the batch;
- the mean of w is tracked in the generator (`w_avg`, decay 0.995) for truncation when sampling.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ganforge.models.stylegan2 import mix_styles
from ganforge.train.recipes.base import Batch, OptimizerGroup, Phase, lazy_interval
from ganforge.train.recipes.classic import ClassicRecipe, attribute_kwargs, d_stats
from ganforge.train.recipes.fields import RecipeError

W_AVG_BETA = 0.995


class StyleGAN2Recipe(ClassicRecipe):
    """The classic recipe's networks, Dmain/Dreg phases, R1 and augmentation state, with StyleGAN2's
    generator phases (style mixing, path length) on top."""

    name = "stylegan2"

    def __init__(self, config, dataset, device, rng):
        if dataset.kind != "images":
            raise RecipeError(f"{dataset.path} is a set of points; StyleGAN2 makes images (use --preset points).")
        if config.loss != "nonsaturating":
            raise RecipeError(f"The stylegan2 recipe trains with the non-saturating loss of the paper, not "
                              f"loss={config.loss}; leave loss out, or use model.name=dcgan for other losses.")
        if config.attribute_weight > 0:
            raise RecipeError("attribute_weight (D predicting the attributes) is built for DCGAN models so far: use "
                              "model.name=dcgan (preset dcgan-small), or leave attribute_weight at 0 for StyleGAN2's "
                              "projection conditioning alone.")
        super().__init__(config, dataset, device, rng)
        self.pl_mean = torch.zeros((), device=device)

    def optimizer_groups(self):
        c = self.config
        betas = (c.beta1, c.beta2)
        return {"G": OptimizerGroup(("G",), c.lr_g, betas, lazy_interval(c.pl_weight, c.pl_every)),
                "D": OptimizerGroup(("D",), c.lr_d, betas, lazy_interval(c.r1_gamma, c.r1_every))}

    def phases(self):
        phases = super().phases()  # Dmain, Dreg, Gmain
        if self.config.pl_weight > 0:
            phases.append(Phase("Greg", "G", self.config.pl_every, fp32=True))
        return phases

    # --- the generator, as training runs it -------------------------------------------------------

    def _styles(self, z: torch.Tensor, labels, attributes=None) -> torch.Tensor:
        """(B, num_ws, w_dim): w for z, with the layers after a random cutoff from a second latent when mixing.
        The draws stay on the device (no sync): an unmixed batch gets the cutoff num_ws. The second latent
        keeps the first one's class and attributes."""
        G = self.G
        conditions = attribute_kwargs(attributes)
        ws = G.mapping(z, labels, update_w_avg_beta=W_AVG_BETA, **conditions)
        if self.config.style_mixing > 0 and G.num_ws > 1:
            cutoff = torch.randint(1, G.num_ws, (), device=z.device, generator=self.rng)
            mixing = torch.rand((), device=z.device, generator=self.rng) < self.config.style_mixing
            cutoff = torch.where(mixing, cutoff, torch.full_like(cutoff, G.num_ws))
            z2 = torch.randn(z.shape, device=z.device, generator=self.rng)
            ws = mix_styles(ws, G.mapping(z2, labels, **conditions), cutoff)
        return ws

    def _generate(self, z: torch.Tensor, labels, attributes=None) -> tuple[torch.Tensor, torch.Tensor]:
        ws = self._styles(z, labels, attributes)
        return self.G.synthesis(ws, noise_mode="random", generator=self.rng), ws

    def _generate_fakes(self, batch: Batch) -> tuple[torch.Tensor, tuple]:
        labels, attributes = self.fake_conditions(batch)
        return self._generate(batch.z, labels, attributes)[0], (labels, attributes)

    def _discriminate(self, x, labels, attributes=None) -> torch.Tensor:
        return self.D(self.augment(x), labels, **attribute_kwargs(attributes))[0].float()

    # --- the phases -------------------------------------------------------------------------------

    def loss(self, phase: Phase, batch: Batch):
        if phase.name == "Greg":
            return self._path_length(batch, phase.interval)
        return super().loss(phase, batch)  # Dmain and Gmain below, Dreg (R1) as the classic recipe

    def _d_main(self, batch: Batch):
        if self.config.reuse_fakes:
            fake, conditions = self._generate_fakes(batch)
            self._fakes, self._fakes_conditions = fake, conditions  # its graph is kept for Gmain
            fake = fake.detach()
        else:
            with torch.no_grad():
                fake, conditions = self._generate_fakes(batch)
        real_logits = self._discriminate(batch.real, *self.real_conditions(batch))
        fake_logits = self._discriminate(fake, *conditions)
        self.augment.observe(real_logits)
        loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        return loss, d_stats(loss, real_logits, fake_logits)

    def _g_main(self, batch: Batch):
        fake, conditions = self._kept_or_new_fakes(batch, self._generate_fakes)
        loss = F.softplus(-self._discriminate(fake, *conditions)).mean()
        return loss, {"loss_G": loss.detach()}

    def _path_length(self, batch: Batch, interval: int):
        n = max(1, batch.z.shape[0] // 2)
        labels, attributes = (None if c is None else c[:n] for c in self.fake_conditions(batch))
        images, ws = self._generate(batch.z[:n], labels, attributes)
        side = images.shape[2] * images.shape[3]
        noise = torch.randn(images.shape, device=images.device, generator=self.rng) / math.sqrt(side)
        (grads,) = torch.autograd.grad((images.float() * noise).sum(), ws, create_graph=True)
        lengths = grads.float().square().sum(2).mean(1).sqrt()  # (n,)
        mean = self.pl_mean.lerp(lengths.mean().detach(), self.config.pl_decay)
        self.pl_mean.copy_(mean)
        penalty = (lengths - mean).square().mean()
        return penalty * self.config.pl_weight * interval, {"path_length": lengths.mean().detach(),
                                                            "pl_penalty": penalty.detach()}

    # --- state ------------------------------------------------------------------------------------

    def tick_values(self):
        return {**super().tick_values(), "pl_mean": float(self.pl_mean)}

    def state_dict(self):
        return {**super().state_dict(), "pl_mean": self.pl_mean.detach().cpu().clone()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        if "pl_mean" in state:
            self.pl_mean.copy_(state["pl_mean"].to(self.pl_mean.device))
