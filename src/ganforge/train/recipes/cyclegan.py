"""The CycleGAN recipe (Zhu et al. 2017): two generators G_AB, G_BA and two PatchGANs D_A, D_B from unpaired sets.

Phases per step: Gmain (draws an A batch and a B batch, trains both generators) then Dmain (both
discriminators, on fakes from the image pools). With `crit` the squared error (loss=lsgan, the paper's
eq. 2 with least squares) or BCE-with-logits (loss=nonsaturating), λ = cycle_weight, μ = identity_weight:

    G: crit(D_B(G_AB(a)), 1) + crit(D_A(G_BA(b)), 1)                                    adversarial
       + λ (|G_BA(G_AB(a)) - a|_1 + |G_AB(G_BA(b)) - b|_1)                               cycle (eq. 2)
       + λ μ (|G_AB(b) - b|_1 + |G_BA(a) - a|_1)                                         identity (sec. 5.2)
    D_B: 0.5 (crit(D_B(b), 1) + crit(D_B(pool_B(G_AB(a))), 0)), and D_A the same on A  halved, as the paper

Every L1 and criterion is a mean over pixels or patches. λ 10 and μ 0.5 (the identity term weighs
λ μ = 5, as the reference code's lambda_identity) come from the config. The identity terms feed a B
image to G_AB, so they need A and B to have the same channel count; with gray A and colour B set
identity_weight=0 (refused otherwise, not silently dropped).

Image pools (Shrivastava et al. 2017, the reference code's ImagePool): each D sees fakes from a history
of `pool_size` generated images. Until the pool is full each fake enters it and is shown as is; then
with probability 1/2 a fake swaps places with a random stored one (the stored one is shown), else it is
shown itself. The draws come from the trainer's stream, and the pools are in `state_dict`, so a
resumed run shows D what an uninterrupted one would. The learning rates' linear decay is the loop's
`lr_ramp_down` (reckoned from images shown, so it survives resume too).

The tick's picture: for fixed images of each side, a row A | G_AB(A) | G_BA(G_AB(A)) | B | G_BA(B) |
G_AB(G_BA(B)), from the averaged generator (both directions are one module, see models/cyclegan.py).
"""

from __future__ import annotations

import numpy as np
import torch

from ganforge.data.reader import to_uint8_images
from ganforge.models import create_models
from ganforge.pictures import image_grid
from ganforge.train.recipes.base import Batch, OptimizerGroup, Phase, Recipe
from ganforge.train.recipes.fields import RecipeError, model_fields, refuse_unused
from ganforge.train.recipes.pix2pix import criterion
from ganforge.train.recipes.previews import translate

LOSSES = ("lsgan", "nonsaturating")
PREVIEW_ROWS = 8  # fixed images of each side in a tick's grid


class ImagePool:
    """A history of up to `size` generated images (each (C, H, W), detached) that a D learns from."""

    def __init__(self, size: int):
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, fakes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The batch D sees in place of `fakes` (B, C, H, W): see the module docstring."""
        if self.size == 0:
            return fakes.detach()
        shown = []
        for image in fakes.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                shown.append(image)
            elif torch.rand((), generator=generator, device=generator.device).item() > 0.5:
                k = int(torch.randint(self.size, (), generator=generator, device=generator.device))
                shown.append(self.images[k])
                self.images[k] = image.clone()
            else:
                shown.append(image)
        return torch.stack(shown)  # (B, C, H, W)

    def state_dict(self) -> dict:
        images = torch.stack(self.images).cpu() if self.images else torch.zeros(0)
        return {"size": self.size, "images": images}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        if int(state["size"]) != self.size:
            raise RecipeError(f"The checkpoint's image pools hold {state['size']} images and this run's pool_size is "
                              f"{self.size}: put pool_size back to {state['size']} to resume.")
        self.images = [image.to(device) for image in state["images"]]


def cyclegan_fields(config, dataset) -> dict:
    """The model's fields: the resolution, B's channels and A's channels, from an unpaired dataset."""
    if dataset.kind != "unpaired":
        hint = (" It holds pairs: train pix2pix on it (--preset pix2pix)." if dataset.kind == "paired" else "")
        raise RecipeError(f"CycleGAN learns from two unpaired sets of images, and {dataset.path} is a {dataset.kind} "
                          f"dataset.{hint} Prepare two folders with ganforge prepare A OUT --unpaired B.")
    if config.model.get("name") != "cyclegan":
        raise RecipeError(f"The cyclegan recipe trains model cyclegan, not {config.model.get('name')}: use "
                          "model.name=cyclegan.")
    if "in_channels" in config.model:
        raise RecipeError("model.in_channels comes from the dataset's side A: leave it out.")
    if dataset.resolution % 4:
        raise RecipeError(f"{dataset.path} holds {dataset.resolution} px images, and CycleGAN's generators halve their "
                          "input twice: prepare the dataset at a multiple of 4 px (e.g. --resolution 32).")
    fields = model_fields(config, dataset)
    fields["in_channels"] = int(dataset.a.shape[3])
    return fields


def _refuse_unused(config, family: str = "CycleGAN") -> None:
    if config.loss not in LOSSES:
        raise RecipeError(f"{family} trains with loss=lsgan (the paper's least squares) or loss=nonsaturating, "
                          f"not {config.loss}.")
    refuse_unused(family, config)


def pixels(array: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) from a dataset -> float (N, C, H, W) in [-1, 1], as the reader gives it."""
    return torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).float() / 127.5 - 1


def side_by_side(columns: list[np.ndarray]):
    """One grid row per index: the pictures of every column side by side, in one channel count."""
    channels = 4 if any(c.shape[-1] == 4 for c in columns) else 3
    fitted = []
    for pictures in columns:
        if pictures.shape[-1] == 1:
            pictures = np.repeat(pictures, 3, axis=-1)
        if pictures.shape[-1] == 3 and channels == 4:
            pictures = np.concatenate([pictures, np.full(pictures.shape[:-1] + (1,), 255, np.uint8)], axis=-1)
        fitted.append(pictures)
    rows = np.stack(fitted, axis=1).reshape(-1, *fitted[0].shape[1:])  # a0 b0 c0 a1 b1 c1 ...
    return image_grid(rows, columns=len(columns))


def l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x.float() - y.float()).abs().mean()


class CycleGANRecipe(Recipe):
    name = "cyclegan"

    def __init__(self, config, dataset, device, rng):
        super().__init__(config, dataset, device, rng)
        _refuse_unused(config)
        fields = cyclegan_fields(config, dataset)
        if config.identity_weight > 0 and fields["in_channels"] != fields["channels"]:
            raise RecipeError(f"Side A has {fields['in_channels']} channel(s) and side B {fields['channels']}: the "
                              "identity loss compares G_AB(B) with B, which needs the same channels on both sides. "
                              "Set identity_weight=0, or prepare both sides with the same --channels.")
        self.model_name = fields.pop("name")
        self.model_config, G, D = create_models(self.model_name, **fields)
        self.networks = {"G": G, "D": D}
        self.pools = {"A": ImagePool(config.pool_size), "B": ImagePool(config.pool_size)}
        self._fakes: tuple[torch.Tensor, torch.Tensor] | None = None
        count = min(PREVIEW_ROWS, config.grid_size, len(dataset.a), len(dataset.b))
        pick = np.random.default_rng(config.seed)
        self._preview_index = {side: np.sort(pick.choice(len(getattr(dataset, side)), count, replace=False))
                               for side in ("a", "b")}  # fixed for the whole run

    @property
    def z_dim(self) -> int:
        return 0

    def optimizer_groups(self) -> dict[str, OptimizerGroup]:
        c = self.config
        return {"G": OptimizerGroup(("G",), c.lr_g, (c.beta1, c.beta2)), "D": OptimizerGroup(("D",), c.lr_d, (c.beta1, c.beta2))}

    def phases(self) -> list[Phase]:
        return [Phase("Gmain", "G", draws=True, grad_norm="grad_G"), Phase("Dmain", "D")]

    def make_batch(self, phase: Phase, data: tuple, z: torch.Tensor) -> Batch:
        a, b = data  # (B, C_A, H, W), (B, C_B, H, W)
        return Batch(b, None, None, {"a": a})

    def loss(self, phase: Phase, batch: Batch):
        if phase.name == "Gmain":
            return self._g_main(batch.extra["a"], batch.real)
        if phase.name == "Dmain":
            return self._d_main(batch.extra["a"], batch.real)
        raise ValueError(f"the cyclegan recipe has no phase {phase.name!r}")

    def _g_main(self, a: torch.Tensor, b: torch.Tensor):
        G, D, c = self.G, self.D, self.config
        fake_b, fake_a = G.a_to_b(a), G.b_to_a(b)  # (B, C_B, H, W), (B, C_A, H, W)
        self._fakes = (fake_a.detach(), fake_b.detach())
        adversarial = criterion(c.loss, D.d_b(fake_b).float(), 1.0) + criterion(c.loss, D.d_a(fake_a).float(), 1.0)
        cycle_a, cycle_b = l1(G.b_to_a(fake_b), a), l1(G.a_to_b(fake_a), b)
        loss = adversarial + c.cycle_weight * (cycle_a + cycle_b)
        stats = {"G_adv": adversarial.detach(), "cycle_A": cycle_a.detach(), "cycle_B": cycle_b.detach()}
        if c.identity_weight > 0:
            identity = l1(G.a_to_b(b), b) + l1(G.b_to_a(a), a)
            loss = loss + c.cycle_weight * c.identity_weight * identity
            stats["identity"] = identity.detach()
        return loss, {"loss_G": loss.detach(), **stats}

    def _d_main(self, a: torch.Tensor, b: torch.Tensor):
        D, kind = self.D, self.config.loss
        if self._fakes is None:  # Dmain without Gmain before it (not in this recipe's phases)
            with torch.no_grad():
                self._fakes = (self.G.b_to_a(b), self.G.a_to_b(a))
        fake_a, fake_b = self._fakes
        self._fakes = None
        stats, total = {}, 0.0
        correct = []
        threshold = 0.5 if kind == "lsgan" else 0.0  # halfway between the targets
        for side, judge, real, fake in (("A", D.d_a, a, fake_a), ("B", D.d_b, b, fake_b)):
            real_logits = judge(real).float()
            fake_logits = judge(self.pools[side].query(fake, self.rng)).float()
            loss = 0.5 * (criterion(kind, real_logits, 1.0) + criterion(kind, fake_logits, 0.0))
            total = total + loss
            stats[f"loss_D_{side}"] = loss.detach()
            correct += [(real_logits > threshold).float().mean(), (fake_logits <= threshold).float().mean()]
        return total, {"loss_D": total.detach(), **stats, "D_accuracy": torch.stack(correct).mean().detach()}

    # --- state ----------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {"pools": {side: pool.state_dict() for side, pool in self.pools.items()}}

    def load_state_dict(self, state: dict) -> None:
        for side, pool in self.pools.items():
            pool.load_state_dict(state["pools"][side], self.device)

    # --- pictures, for the loop's hooks ---------------------------------------------------------

    def _fixed_images(self) -> tuple[torch.Tensor, torch.Tensor]:
        return (pixels(self.dataset.a[self._preview_index["a"]]), pixels(self.dataset.b[self._preview_index["b"]]))

    def preview(self, module):
        """The loop's grid: rows A | G_AB(A) | G_BA(G_AB(A)) | B | G_BA(B) | G_AB(G_BA(B)) on fixed images."""
        a, b = self._fixed_images()
        fake_b, fake_a = translate(module.a_to_b, a), translate(module.b_to_a, b)
        back_a, back_b = translate(module.b_to_a, fake_b), translate(module.a_to_b, fake_a)
        columns = [a, fake_b, back_a, b, fake_a, back_b]
        return side_by_side([to_uint8_images(x) for x in columns]), fake_b

    def preview_reals(self):
        a, b = self._fixed_images()
        return side_by_side([to_uint8_images(a), to_uint8_images(b)])
