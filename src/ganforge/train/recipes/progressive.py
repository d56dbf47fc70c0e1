"""The progressive-growing recipe (Karras et al. 2018) for the `progan` networks.

Training starts at 4x4 for `grow_stable_kimg` thousand images; then each next resolution fades in over
`grow_fade_kimg` (alpha rising linearly from 0 to 1) and trains stably for `grow_stable_kimg`, up to full
size, where it stays. Stage and alpha are a function of the images shown at the start of each step
(`GrowthSchedule`), so a run stopped anywhere — mid-fade too — and resumed follows the same schedule.

- Real images are area-downsampled to the current resolution and, while a block fades in, blended with
  their own 2x2 average (upsampled back) by alpha, as the reference code does, so real and fake images
  change the same way; then upsampled (nearest) to full size, which D pools back.
- Batch size by resolution (`grow_batch`, e.g. "4:128,8:128,16:64"; unlisted resolutions use batch_size):
  the trainer draws what `step_plan` says for each step.
- The loss is the classic recipe's (`loss=`); the paper's is WGAN-GP (λ = gp_weight = 10) with the drift
  term ε E[D(x)²] on real logits (ε = drift_weight = 0.001), which keeps the critic's output near 0.
- When a fade-in starts and when it ends, both Adams start afresh (moments and step counts), as the
  reference code does (`reset_opt_for_new_lod`); the last stage seen is part of the checkpoint, so a
  resumed run resets at the same steps, never again on resume.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ganforge.train.config import parse_batch_schedule
from ganforge.train.recipes.base import Batch
from ganforge.train.recipes.classic import ClassicRecipe, d_loss, d_stats
from ganforge.train.recipes.fields import RecipeError


@dataclass(frozen=True)
class GrowthSchedule:
    """Stage and alpha after `images` images: stage 0 stable, then per stage a fade and a stable period."""

    stages: int  # resolutions 4 .. R
    stable_images: int
    fade_images: int
    grow: bool = True  # False: fully grown from the first image

    def at(self, images: int) -> tuple[int, float]:
        last = self.stages - 1
        since = images - self.stable_images  # images after the first (4x4) stable period
        if not self.grow or last == 0:
            return last, 1.0
        if since < 0:
            return 0, 1.0
        period = self.fade_images + self.stable_images
        stage = 1 + since // period if period else self.stages
        if stage > last:
            return last, 1.0
        into = since - (stage - 1) * period
        return stage, min(1.0, into / self.fade_images) if self.fade_images else 1.0

    def fully_grown_at(self) -> int:
        """Images shown when the last resolution has fully faded in."""
        if not self.grow or self.stages == 1:
            return 0
        return self.stable_images + (self.stages - 2) * (self.fade_images + self.stable_images) + self.fade_images


def fade_reals(real: torch.Tensor, resolution: int, alpha: float) -> torch.Tensor:
    """(B, C, R, R) real images as the networks see them at `resolution` with the newest block faded in by
    `alpha`: area-downsampled, blended with their 2x2 average while fading, upsampled (nearest) to R."""
    full = real.shape[-1]
    x = F.avg_pool2d(real, full // resolution) if resolution < full else real  # (B, C, r, r)
    if alpha < 1:
        coarse = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
        x = torch.lerp(coarse, x, alpha)
    return F.interpolate(x, scale_factor=full // resolution, mode="nearest") if resolution < full else x


class ProgressiveRecipe(ClassicRecipe):
    """The classic game on growing networks: per-stage batches, faded reals, WGAN-GP with drift."""

    name = "progressive"

    def __init__(self, config, dataset, device, rng):
        if dataset.kind != "images":
            raise RecipeError(f"{dataset.path} is a set of points; a progressive GAN makes images (use --preset points).")
        super().__init__(config, dataset, device, rng)
        if not hasattr(self.G, "set_growth"):
            raise RecipeError(f"The progressive recipe grows the progan networks, not model.name={self.model_name}; "
                              "use model.name=progan (or --preset progan), or recipe=auto.")
        self.resolutions = self.model_config.resolutions
        self.schedule = GrowthSchedule(len(self.resolutions), round(config.grow_stable_kimg * 1000),
                                       round(config.grow_fade_kimg * 1000), config.grow)
        self.batch_sizes = self._batch_sizes(config, len(dataset))
        self.stage, self.alpha = self._set_growth(0)
        self.period: tuple[int, bool] | None = None  # (stage, fading) of the last step: a change restarts Adam

    def _batch_sizes(self, config, items: int) -> dict[int, int]:
        given = parse_batch_schedule(config.grow_batch)
        unknown = sorted(set(given) - set(self.resolutions))
        if unknown:
            raise RecipeError(f"grow_batch names {', '.join(f'{r} px' for r in unknown)}, but this network grows "
                              f"through {', '.join(map(str, self.resolutions))} px; drop those entries.")
        sizes = {res: given.get(res, config.batch_size) for res in self.resolutions}
        too_big = {res: b for res, b in sizes.items() if b > items}
        if too_big:
            res, batch = max(too_big.items(), key=lambda kv: kv[1])
            raise RecipeError(f"The batch size at {res} px ({batch}, from grow_batch or batch_size) is larger than the "
                              f"dataset ({items} images): give at most {items}.")
        return sizes

    def _set_growth(self, images: int) -> tuple[int, float]:
        stage, alpha = self.schedule.at(images)
        for network in (self.G, self.D):
            network.set_growth(stage, alpha)
        return self.G.current_growth()  # alpha as the networks hold it (float32), so reals fade alike

    # --- what the loop asks -----------------------------------------------------------------------

    def step_plan(self, step: int, images_seen: int) -> tuple[int, tuple[str, ...]]:
        """(global batch size, optimiser groups to restart) for the step about to run."""
        self.stage, self.alpha = self._set_growth(images_seen)
        period = (self.stage, self.alpha < 1)
        restart = tuple(self.optimizer_groups()) if self.period is not None and period != self.period else ()
        self.period = period
        return self.batch_size, restart

    @property
    def batch_size(self) -> int:
        return self.batch_sizes[self.resolutions[self.stage]]

    def make_batch(self, phase, data, z):
        batch = super().make_batch(phase, data, z)
        batch.real = fade_reals(batch.real, self.resolutions[self.stage], self.alpha)
        return batch

    def _d_main(self, batch: Batch):
        fake, _, (real_logits, *_), (fake_logits, *_) = self._d_logits(batch)
        loss = d_loss(self.config.loss, real_logits, fake_logits)
        stats = {}
        if self.config.loss == "wgan-gp":
            penalty = self._gradient_penalty(batch.real, fake, *self.real_conditions(batch))
            drift = real_logits.square().mean()
            loss = loss + self.config.gp_weight * penalty + self.config.drift_weight * drift
            stats = {"gradient_penalty": penalty.detach(), "drift": drift.detach()}
        return loss, {**d_stats(loss, real_logits, fake_logits), **stats}

    def after_step(self, step, images_seen, all_reduce):
        return self.augment.after_step(self.batch_size, all_reduce) if self.augment is not None else {}

    def tick_values(self):
        return {**super().tick_values(), "resolution": self.resolutions[self.stage], "alpha": self.alpha}

    def state_dict(self):
        period = None if self.period is None else list(self.period)
        return {**super().state_dict(), "growth": {"stage": self.stage, "alpha": self.alpha, "period": period}}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        growth = state.get("growth")
        if growth:
            self.stage, self.alpha = growth["stage"], growth["alpha"]
            self.period = None if growth["period"] is None else (int(growth["period"][0]), bool(growth["period"][1]))
            for network in (self.G, self.D):
                network.set_growth(self.stage, self.alpha)
