"""An exponential moving average of the generator's weights: smoother, usually better samples.

The half-life is given in images (StyleGAN2-ADA's ema_kimg) and ramps up with training, so short
runs on a CPU average over a sensible window too. Generators with batch norm get their running
statistics recomputed for the averaged weights before they are used (the copied statistics belong
to the raw generator, not to the average).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn


class GeneratorEMA:
    def __init__(self, generator: nn.Module, half_life_kimg: float, rampup: float):
        self.module = copy.deepcopy(generator).eval().requires_grad_(False)
        self.half_life_images = half_life_kimg * 1000
        self.rampup = rampup
        self._pairs: tuple | None = None

    @torch.no_grad()
    def update(self, generator: nn.Module, batch_size: int, images_seen: int) -> None:
        half_life = self.half_life_images
        if self.rampup > 0:
            half_life = min(half_life, images_seen * self.rampup)
        beta = 0.5 ** (batch_size / max(half_life, 1e-8)) if self.half_life_images > 0 else 0.0
        if self._pairs is None or self._pairs[0] is not generator:  # listed once: see Trainer._parameters
            params, buffers = list(generator.parameters()), list(generator.buffers())
            own_params, own_buffers = list(self.module.parameters()), list(self.module.buffers())
            if len(params) != len(own_params) or len(buffers) != len(own_buffers):
                raise ValueError("GeneratorEMA.update: the generator does not match the averaged copy")
            self._pairs = (generator, own_params, params, own_buffers, buffers)
        _, own_params, params, own_buffers, buffers = self._pairs
        torch._foreach_lerp_(own_params, params, 1 - beta)
        for averaged, current in zip(own_buffers, buffers, strict=True):
            averaged.copy_(current)

    @torch.no_grad()
    def recalibrate(self, sample_inputs: Callable[[], tuple], batches: int = 8) -> None:
        """Recompute batch-norm statistics for the averaged weights from a few generated batches."""
        norms = [m for m in self.module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        saved = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a plain average over the batches below
        self.module.train()
        for _ in range(batches):
            self.module(*sample_inputs())
        self.module.eval()
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = momentum

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
