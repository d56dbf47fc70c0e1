"""The pix2pix recipe (Isola et al. 2017): a U-Net G translates A into B, a PatchGAN D judges (A, B) pairs.

Phases per step: Dmain (draws a batch of pairs, makes G(A) once and keeps its graph) then Gmain (learns
from those same fakes). With l the PatchGAN's logits, one per patch, and `crit` BCE-with-logits
(loss=nonsaturating) or the squared error (loss=lsgan, as CycleGAN's code):

    D: 0.5 * (crit(D(A, B), 1) + crit(D(A, G(A)), 0))     halved, as the paper, to slow D down
    G: crit(D(A, G(A)), 1) + l1_weight * |G(A) - B|_1     l1_weight 100, the paper's

Both means over every patch and pixel. Adam at lr 2e-4, betas (0.5, 0.999) come from the preset; the
loop's `lr_ramp_down` gives the reference code's linear decay over the last part of the budget.

Dropout masks come from the trainer's stream, so a resumed run draws what an uninterrupted one would.
The tick's picture (`preview`) is the averaged generator in eval mode (no dropout: see models/pix2pix.py)
on a fixed set of pairs: each row A | G(A) | B, several triples to a row.
"""

from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F

from ganforge.data.reader import to_uint8_images
from ganforge.models import create_models
from ganforge.train.recipes.base import Batch, OptimizerGroup, Phase, Recipe
from ganforge.train.recipes.fields import RecipeError, model_fields, refuse_unused
from ganforge.train.recipes.previews import pairs_grid, translate

LOSSES = ("nonsaturating", "lsgan")
PREVIEW_PAIRS = 16  # at most this many triples in a tick's grid


def criterion(kind: str, logits: torch.Tensor, target: float) -> torch.Tensor:
    """The mean over patches of BCE-with-logits (nonsaturating) or the squared error (lsgan) to `target`."""
    if kind == "lsgan":
        return ((logits - target) ** 2).mean()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def pix2pix_fields(config, dataset) -> dict:
    """The model's fields: B's resolution and channels, and A's channels (or its K label classes)."""
    if dataset.kind != "paired":
        raise RecipeError(f"pix2pix learns from pairs, and {dataset.path} is a {dataset.kind} dataset. Prepare one "
                          "with ganforge prepare SRC OUT --derive gray (or edges, sketch, labels:K) or --pair-with B.")
    if config.model.get("name") != "pix2pix":
        raise RecipeError(f"The pix2pix recipe trains model pix2pix, not {config.model.get('name')}: use model.name=pix2pix.")
    for key in ("in_channels", "input_classes"):
        if key in config.model:
            raise RecipeError(f"model.{key} comes from the dataset's side A: leave it out.")
    if dataset.a.shape[1] != dataset.resolution:
        raise RecipeError(f"{dataset.path}: side A is {dataset.a.shape[1]} px and B {dataset.resolution} px; pix2pix "
                          "translates images of one size (a downscale:F dataset is for super-resolution).")
    fields = model_fields(config, dataset)
    derive = dataset.manifest.get("derive") or {}
    if derive.get("mode") == "labels":
        fields["input_classes"] = int(derive["params"]["k"])
    else:
        fields["in_channels"] = int(dataset.a.shape[3])
    if derive.get("mode") == "gray" and "keep_luma" not in config.model and fields.get("channels", 3) >= 3:
        fields["keep_luma"] = True  # A is B's luma: G colours it and keeps it (model.keep_luma=false: G redraws it)
    return fields


def _refuse_unused(config) -> None:
    if config.loss not in LOSSES:
        raise RecipeError(f"pix2pix trains with loss=nonsaturating (the paper's BCE) or loss=lsgan, not {config.loss}.")
    refuse_unused("pix2pix", config)


def _pixels(array: np.ndarray, labels: bool) -> torch.Tensor:
    """uint8 (N, H, W, C) from the dataset as the reader gives it: [-1, 1] floats, or a long label map."""
    if labels:
        return torch.from_numpy(np.ascontiguousarray(array[..., 0])).long()  # (N, H, W)
    return torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).float() / 127.5 - 1  # (N, C, H, W)


def label_colours(dataset, k: int) -> np.ndarray:
    """uint8 (K, 3): the colours of a labels:K dataset's centres (how translate and its baseline draw a map
    too), or K distinct hues when the manifest has none."""
    colours = (dataset.manifest.get("derive") or {}).get("colours_rgb")
    return np.asarray(colours, np.uint8) if colours and len(colours) == k else _palette(k)


def _palette(k: int) -> np.ndarray:
    """K distinct colours for drawing a label map: hues around the circle, alternating lightness."""
    hue = np.arange(k) / k
    light = np.where(np.arange(k) % 2, 0.55, 0.8)
    rgb = np.stack([np.clip(np.abs((hue * 6 + s) % 6 - 3) - 1, 0, 1) for s in (0, 4, 2)], axis=1)
    return (rgb * light[:, None] * 255).astype(np.uint8)  # (K, 3)


class Pix2PixRecipe(Recipe):
    name = "pix2pix"

    def __init__(self, config, dataset, device, rng):
        super().__init__(config, dataset, device, rng)
        _refuse_unused(config)
        fields = pix2pix_fields(config, dataset)
        self.model_name = fields.pop("name")
        self.model_config, G, D = create_models(self.model_name, **fields)
        self.networks = {"G": G, "D": D}
        self.labels_input = self.model_config.input_classes > 0
        self._fakes: torch.Tensor | None = None
        pick = np.random.default_rng(config.seed).choice(len(dataset), min(PREVIEW_PAIRS, config.grid_size, len(dataset)),
                                                         replace=False)
        self._preview_index = np.sort(pick)  # fixed for the whole run: every tick shows the same pairs

    @property
    def z_dim(self) -> int:
        return 0

    def optimizer_groups(self) -> dict[str, OptimizerGroup]:
        c = self.config
        return {"G": OptimizerGroup(("G",), c.lr_g, (c.beta1, c.beta2)), "D": OptimizerGroup(("D",), c.lr_d, (c.beta1, c.beta2))}

    def phases(self) -> list[Phase]:
        return [Phase("Dmain", "D", draws=True, graph=("G",)), Phase("Gmain", "G", grad_norm="grad_G")]

    def make_batch(self, phase: Phase, data: tuple, z: torch.Tensor) -> Batch:
        a, b = data  # (B, C_A, H, W) or (B, H, W) labels; (B, C_B, H, W)
        return Batch(b, None, None, {"a": a})

    def loss(self, phase: Phase, batch: Batch):
        if phase.name == "Dmain":
            return self._d_main(batch)
        if phase.name == "Gmain":
            return self._g_main(batch)
        raise ValueError(f"the pix2pix recipe has no phase {phase.name!r}")

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return 0.5 * (criterion(self.config.loss, real_logits, 1.0) + criterion(self.config.loss, fake_logits, 0.0))

    def g_loss(self, fake_logits: torch.Tensor, fake: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, ...]:
        adversarial = criterion(self.config.loss, fake_logits, 1.0)
        l1 = (fake.float() - real.float()).abs().mean()
        return adversarial + self.config.l1_weight * l1, adversarial, l1

    def _d_main(self, batch: Batch):
        a = batch.extra["a"]
        fake = self.G(a, self.rng)  # the graph is kept for Gmain
        self._fakes = fake
        real_logits = self.D(a, batch.real).float()
        fake_logits = self.D(a, fake.detach()).float()
        loss = self.d_loss(real_logits, fake_logits)
        return loss, {
            "loss_D": loss.detach(), "D_real": real_logits.detach().mean(), "D_fake": fake_logits.detach().mean(),
            "D_accuracy": 0.5 * ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean()).detach()}

    def _g_main(self, batch: Batch):
        a = batch.extra["a"]
        fake, self._fakes = self._fakes, None
        if fake is None:  # Gmain without Dmain before it (not in this recipe's phases, but cheap to allow)
            fake = self.G(a, self.rng)
        loss, adversarial, l1 = self.g_loss(self.D(a, fake).float(), fake, batch.real)
        return loss, {"loss_G": loss.detach(), "G_adv": adversarial.detach(), "G_L1": l1.detach()}

    # --- pictures, for the loop's hooks ---------------------------------------------------------

    def _fixed_pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The preview's pairs: whole, or their centre crops when training on crops (the network's size)."""
        index = self._preview_index
        a, b = np.asarray(self.dataset.a[index]), np.asarray(self.dataset.b[index])
        if self.config.crop:
            start = (b.shape[1] - self.config.crop) // 2
            a = a[:, start : start + self.config.crop, start : start + self.config.crop]
            b = b[:, start : start + self.config.crop, start : start + self.config.crop]
        return _pixels(a, self.labels_input), _pixels(b, False)

    def _label_colours(self) -> np.ndarray:
        return label_colours(self.dataset, self.model_config.input_classes)

    def _shown(self, a: torch.Tensor) -> np.ndarray:
        """A as uint8 (N, H, W, C) pictures: a label map in its palette colours."""
        if self.labels_input:
            return self._label_colours()[a.numpy()]
        return to_uint8_images(a)

    def _grid(self, columns: list[np.ndarray]):
        return pairs_grid(columns)

    def translate(self, module, a: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        return translate(module, a, batch_size)

    def preview(self, module):
        """The loop's grid: the (averaged, eval-mode) generator on the fixed pairs, A | G(A) | B."""
        a, b = self._fixed_pairs()
        fake = self.translate(module, a)
        return self._grid([self._shown(a), to_uint8_images(fake), to_uint8_images(b)]), fake

    def preview_reals(self):
        a, b = self._fixed_pairs()
        return self._grid([self._shown(a), to_uint8_images(b)])

    def sample_inputs(self, count: int, generator: torch.Generator) -> tuple:
        """Random A inputs (for recalibrating the averaged generator's batch norm)."""
        index = np.sort(torch.randint(0, len(self.dataset), (count,), generator=generator).numpy())
        return (_pixels(self.dataset.a[index], self.labels_input).to(self.device),)
