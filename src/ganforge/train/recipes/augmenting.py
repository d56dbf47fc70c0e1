"""What D sees: the augmentation a recipe puts in front of its discriminator, from `config.augment`.

- "" : none;
- a DiffAugment policy ("translation,cutout", any of color,translation,cutout; Zhao et al. 2020);
- "ada" : adaptive discriminator augmentation (Karras et al. 2020), the `bgc` pipeline whose strength p
  follows D's overfitting heuristic r_t = E[sign(D(real))] toward `ada_target`; with `ada_target=0` the
  strength stays fixed at `ada_p`.
"""

from __future__ import annotations

import torch

from ganforge.train.augment import make_augment


class DiscriminatorAugment:
    """Applies the configured augmentation; for ADA, also keeps p up to date and in the checkpoint."""

    def __init__(self, config, device: torch.device, rng: torch.Generator):
        self.rng = rng
        self.pipe = self.controller = None
        self._diff = None
        if config.augment == "ada":
            from ganforge.train.ada import AdaController, AugmentPipe

            self.pipe = AugmentPipe.from_spec(config.ada_spec).to(device)
            self.pipe.p.fill_(config.ada_p)
            self.controller = AdaController(self.pipe, target=config.ada_target or None,
                                            interval=config.ada_interval, speed_kimg=config.ada_kimg)
        elif config.augment:
            self._diff = make_augment(config.augment)

    @property
    def active(self) -> bool:
        return self.pipe is not None or self._diff is not None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:  # points are not images
            return x
        if self.pipe is not None:
            return self.pipe(x, self.rng)
        if self._diff is not None:
            return self._diff(x, self.rng)
        return x

    def observe(self, real_logits: torch.Tensor) -> None:
        """D's logits on real images, for ADA's heuristic (a tensor sum: no device sync per step)."""
        if self.controller is not None:
            self.controller.accumulate(torch.sign(real_logits.detach().float()).sum(), real_logits.numel())

    def after_step(self, batch_size: int, all_reduce) -> dict[str, torch.Tensor]:
        if self.controller is None:
            return {}
        self.controller.step(batch_size, all_reduce=all_reduce)
        return {}  # p goes into each tick's log line (`tick_values`); r_t is already there, from Dmain

    def tick_values(self) -> dict[str, float]:
        return {} if self.pipe is None else {"ada_p": float(self.pipe.p)}

    def state_dict(self) -> dict:
        return {} if self.controller is None else {"ada": self.controller.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.controller is not None and "ada" in state:
            self.controller.load_state_dict(state["ada"])
