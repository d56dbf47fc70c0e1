"""What a model family supplies to the training loop: the `Recipe` interface and its small types.

The loop (`train/loop.py`) knows no model. A recipe says which networks it has (by role: "G", "D",
later "G_AB", "D_B"...), how they are optimised (`OptimizerGroup`), which phases a step has
(`Phase`: StyleGAN2-ADA's Gmain / Greg / Dmain / Dreg), what batch each phase gets and what its loss is,
what to do after each step (ADA's strength), what extra state goes into a checkpoint, and which
network is averaged, previewed and exported. Adding a family adds a recipe, never an `if` in the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class Phase:
    name: str  # "Dmain", "Dreg", "Gmain", "Greg", ...
    optimizer: str  # the optimiser group this phase steps (see `Recipe.optimizer_groups`)
    interval: int = 1  # run every N steps; a lazy regulariser scales its loss by N itself
    fp32: bool = False  # run outside autocast (gradient penalties need full precision)
    draws: bool = False  # draws a new real batch (counted as images shown); else reuses the step's last
    start_kimg: float = 0.0  # the phase runs only once this many thousand images have been shown
    repeats: int = 1  # run this many times per step (e.g. WGAN's 5 critic steps), each with a new batch
    graph: tuple[str, ...] = ()  # roles whose autograd graph this phase records for a later phase
    grad_norm: str = ""  # when set, log the updated networks' gradient norm under this name


@dataclass(frozen=True)
class OptimizerGroup:
    """One Adam over the parameters of `roles`. With lazy regularisation every `reg_interval` steps, the
    rate and betas are corrected so the main loss moves the weights as it would without the extra steps
    (Karras et al. 2020, appendix B): learning rate x c and each beta ^ c, with c = I / (I + 1)."""

    roles: tuple[str, ...]
    lr: float
    betas: tuple[float, float]
    reg_interval: int = 0  # 0: no lazy regulariser on these parameters

    @property
    def ratio(self) -> float:
        return self.reg_interval / (self.reg_interval + 1) if self.reg_interval else 1.0

    @property
    def effective_lr(self) -> float:
        return self.lr * self.ratio

    @property
    def effective_betas(self) -> tuple[float, float]:
        return self.betas[0] ** self.ratio, self.betas[1] ** self.ratio


@dataclass
class Batch:
    real: torch.Tensor | None  # (B, C, H, W) in [-1, 1], or (B, dims) points
    labels: torch.Tensor | None  # (B,) class indices, or None
    z: torch.Tensor | None  # (B, z_dim) latents for this phase's fakes
    extra: dict = field(default_factory=dict)  # what a family adds (paired images, a second latent, ...)


class Recipe:
    """The interface; `ClassicRecipe` and `StyleGAN2Recipe` are the examples to follow.

    A recipe is built with the run's config, the prepared dataset, the device and the trainer's own
    random stream (a `torch.Generator` on that device): every random draw during training goes
    through that stream, so a resumed run draws what an uninterrupted one would.
    """

    name = ""
    ema_role = "G"  # the network whose moving average is previewed, evaluated and exported

    def __init__(self, config, dataset, device: torch.device, rng: torch.Generator):
        self.config, self.dataset, self.device, self.rng = config, dataset, device, rng
        self.networks: dict[str, nn.Module] = {}
        self.model_name = ""
        self.model_config = None  # the exported network's dataclass config

    # --- what the loop asks -----------------------------------------------------------------------

    def optimizer_groups(self) -> dict[str, OptimizerGroup]:
        raise NotImplementedError

    def phases(self) -> list[Phase]:
        raise NotImplementedError

    def make_batch(self, phase: Phase, data: tuple, z: torch.Tensor) -> Batch:
        """The batch a phase gets from the reader's last draw (as the reader yields it: images and labels
        here; a paired reader's two images for image-to-image recipes) and the latents the loop drew."""
        real, labels = data
        return Batch(real, labels if self.num_classes > 0 else None, z)

    def loss(self, phase: Phase, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def after_step(self, step: int, images_seen: int, all_reduce) -> dict[str, torch.Tensor]:
        """Called once after each step (all phases done); returns statistics to log. `all_reduce` sums a
        tensor over processes (the identity on one)."""
        return {}

    def tick_values(self) -> dict[str, float]:
        """Values of the recipe's own state for each tick's log line (e.g. ADA's strength)."""
        return {}

    def state_dict(self) -> dict:
        """The recipe's own state for the checkpoint (augmentation strength, path-length mean, ...)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    @property
    def G(self):
        return self.networks["G"]

    @property
    def D(self):
        return self.networks["D"]

    @property
    def z_dim(self) -> int:
        return self.networks[self.ema_role].z_dim

    @property
    def num_classes(self) -> int:
        return getattr(self.model_config, "num_classes", 0)


def lazy_interval(gamma_or_weight: float, every: int) -> int:
    """The regulariser's interval for the optimiser correction: 0 when the regulariser is off."""
    return every if gamma_or_weight > 0 and every > 1 else 0
