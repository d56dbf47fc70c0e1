"""The SPADE recipe (Park et al. 2019): a SPADE generator paints a label map, a multi-scale PatchGAN judges
(map, image) pairs. A pix2pix-family recipe: phases, batches, previews and the fixed preview pairs come
from `Pix2PixRecipe`; the losses and the data checks are SPADE's own.

Phases per step: Dmain (draws a batch of pairs, makes G(A) once and keeps its graph) then Gmain (learns
from those same fakes). With D_s^i the i-th layer's output of the PatchGAN at scale s (of S), the last
one (i = L) its patch logits, and every mean over patches, pixels and the batch (the paper's code,
pix2pixHD's losses):

    D: 1/S sum_s [ mean relu(1 - D_s^L(A, B)) + mean relu(1 + D_s^L(A, G(A))) ]          the hinge loss
    G: 1/S sum_s [ -mean D_s^L(A, G(A)) ]                                                  hinge, for G
       + fm_weight * 1/S sum_s sum_{i<L} mean |D_s^i(A, G(A)) - D_s^i(A, B)|               feature matching

fm_weight 10 is the paper's. The paper adds a VGG-19 perceptual loss (weight 10); ganforge has no
offline VGG weights, so there is none here. Adam at lr_g 1e-4, lr_d 4e-4, betas (0, 0.999) (the paper's
TTUR) come from the preset, with the paper's linear decay over the second half (`lr_ramp_down`).

The tick's picture is pix2pix's: the (averaged, eval-mode) generator on a fixed set of pairs, each row
label map (in palette colours) | G(A) | B. SPADE draws nothing at random, so resume is exact.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ganforge.models import create_models
from ganforge.train.recipes.base import Batch, Recipe
from ganforge.train.recipes.fields import RecipeError, model_fields, refuse_unused
from ganforge.train.recipes.pix2pix import PREVIEW_PAIRS, Pix2PixRecipe

PAPER = "the SPADE paper's"


def spade_fields(config, dataset) -> dict:
    """The model's fields: B's resolution and channels, and A's K label classes from the derive entry."""
    if dataset.kind != "paired":
        raise RecipeError(f"SPADE paints label maps and learns from pairs, and {dataset.path} is a {dataset.kind} "
                          "dataset. Prepare one with ganforge prepare SRC OUT --derive labels:8.")
    derive = dataset.manifest.get("derive") or {}
    if derive.get("mode") != "labels":
        made = f"derived with --derive {derive.get('mode')}" if derive else "not derived from label colours"
        raise RecipeError(f"SPADE paints label maps, and side A of {dataset.path} is {made}. Prepare pairs with "
                          "--derive labels:K (for example labels:8), or train this dataset with --preset pix2pix.")
    if config.model.get("name") != "spade":
        raise RecipeError(f"The spade recipe trains model spade, not {config.model.get('name')}: use model.name=spade.")
    if "input_classes" in config.model:
        raise RecipeError("model.input_classes comes from the dataset's label maps (--derive labels:K): leave it out.")
    fields = model_fields(config, dataset)
    fields["input_classes"] = int(derive["params"]["k"])
    return fields


def _refuse_unused(config) -> None:
    if config.loss != "hinge":
        raise RecipeError(f"SPADE trains with loss=hinge ({PAPER}), not {config.loss}.")
    refuse_unused("SPADE", config)


def hinge_d(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """The mean over scales of mean relu(1 - real) + mean relu(1 + fake)."""
    terms = [F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real_logits, fake_logits, strict=True)]
    return torch.stack(terms).mean()


def hinge_g(fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """The mean over scales of -mean fake."""
    return torch.stack([-f.mean() for f in fake_logits]).mean()


def feature_matching(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]]) -> torch.Tensor:
    """Per scale, the sum over D's layers before the logits of the mean |fake - real|; then the mean over scales."""
    per_scale = [sum((f.float() - r.float().detach()).abs().mean() for f, r in zip(fs[:-1], rs[:-1], strict=True))
                 for fs, rs in zip(fake, real, strict=True)]
    return torch.stack(per_scale).mean()


def _logits(outputs: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    return [scale[-1].float() for scale in outputs]


class SPADERecipe(Pix2PixRecipe):
    name = "spade"

    def __init__(self, config, dataset, device, rng):
        Recipe.__init__(self, config, dataset, device, rng)  # not pix2pix's: its data checks are for the U-Net
        _refuse_unused(config)
        fields = spade_fields(config, dataset)
        self.model_name = fields.pop("name")
        self.model_config, G, D = create_models(self.model_name, **fields)
        self.networks = {"G": G, "D": D}
        self.labels_input = True
        self._fakes: torch.Tensor | None = None
        pick = np.random.default_rng(config.seed).choice(len(dataset), min(PREVIEW_PAIRS, config.grid_size, len(dataset)),
                                                         replace=False)
        self._preview_index = np.sort(pick)  # fixed for the whole run: every tick shows the same pairs

    def d_loss(self, real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
        return hinge_d(real_logits, fake_logits)

    def g_loss(self, fake_outputs: list[list[torch.Tensor]], real_outputs: list[list[torch.Tensor]]):
        adversarial = hinge_g(_logits(fake_outputs))
        matching = feature_matching(fake_outputs, real_outputs)
        return adversarial + self.config.fm_weight * matching, adversarial, matching

    def _d_main(self, batch: Batch):
        a = batch.extra["a"]
        fake = self.G(a)  # (B, C, H, W); the graph is kept for Gmain
        self._fakes = fake
        real_logits = _logits(self.D(a, batch.real))
        fake_logits = _logits(self.D(a, fake.detach()))
        loss = self.d_loss(real_logits, fake_logits)
        real_mean = torch.stack([r.mean() for r in real_logits]).mean()
        fake_mean = torch.stack([f.mean() for f in fake_logits]).mean()
        accuracy = torch.stack([0.5 * ((r > 0).float().mean() + (f < 0).float().mean())
                                for r, f in zip(real_logits, fake_logits, strict=True)]).mean()
        return loss, {"loss_D": loss.detach(), "D_real": real_mean.detach(), "D_fake": fake_mean.detach(),
                      "D_accuracy": accuracy.detach()}

    def _g_main(self, batch: Batch):
        a = batch.extra["a"]
        fake, self._fakes = self._fakes, None
        if fake is None:  # Gmain without Dmain before it (not in this recipe's phases, but cheap to allow)
            fake = self.G(a)
        with torch.no_grad():  # the targets of feature matching: D's features of the real pair, held fixed
            real_outputs = self.D(a, batch.real)
        loss, adversarial, matching = self.g_loss(self.D(a, fake), real_outputs)
        l1 = (fake.detach().float() - batch.real.float()).abs().mean()  # logged only: how far from B, as pix2pix's
        return loss, {"loss_G": loss.detach(), "G_adv": adversarial.detach(), "G_FM": matching.detach(),
                      "G_L1": l1}
