"""The super-resolution recipe (Ledig et al. 2017, SRGAN; Wang et al. 2018, ESRGAN): G enlarges A into B.

Data: a paired dataset whose A is B made 2 or 4 times smaller (`ganforge prepare SRC OUT --resolution 64
--derive downscale:4`: bicubic with antialiasing, data/derive.py; or --pair-with two folders of sizes
R / F and R). Model: `srresnet` (models/srresnet.py).

Two periods, switched by images shown, as the loop counts them (so a resumed run switches exactly where an
uninterrupted one does):

1. warm-up, the first `warmup_kimg` thousand images: G alone learns the pixel loss, L1 (ESRGAN's choice
   for its PSNR-oriented model; sharper than MSE and as good in PSNR), the "SRResNet" of both papers:
       G: |G(A) - B|_1
2. the GAN period: D joins (phase Dmain, `start_kimg` = warmup_kimg) and G learns three terms (ESRGAN
   eq. 3, its weights 1e-2 and 5e-3 as pixel_weight and adversarial_weight):
       G: pixel_weight |G(A) - B|_1 + feature_weight |phi(G(A)) - phi(B)|_1 + adversarial_weight L_G^Ra
   with the relativistic average loss (ESRGAN eq. 1-2, halved as its code), c the logits of D, E the batch
   mean and BCE with logits:
       D: 0.5 * (BCE(c(B) - E c(G(A)), 1) + BCE(c(G(A)) - E c(B), 0))
       G: 0.5 * (BCE(c(B) - E c(G(A)), 0) + BCE(c(G(A)) - E c(B), 1))      c(B) from the current D, fixed
   G's Adam starts afresh at the first GAN step (ESRGAN trains its GAN from the PSNR model with a new
   optimiser): moments of the L1 loss alone are no guide to the new loss.

The feature loss's protocol, `FEATURE_PROTOCOL`: phi is the FID network (Inception-v3, TensorFlow
2015-12-05 weights, the file ganforge already uses for FID: models/inception.py finds it in
GANFORGE_INCEPTION, the cache, or downloads it, sha1 checked) cut at Conv2d_4a_3x3 before its ReLU
(`InceptionFeatures`: 192 channels at about a fifth of the input's side; before the activation, as ESRGAN
takes VGG's), on RGB at the image's own size (no resize), scaled as FID's input: (x_uint8 - 128) / 128. Grey
images are repeated to three channels and an alpha channel is left to the pixel loss. It needs B of at
least 19 px (32 px or more is better). `load_feature_network` is the seam tests replace with a stub.

The tick's picture is the averaged generator in eval mode on fixed pairs: each row A (enlarged, nearest
pixels) | G(A) | B.
"""

from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganforge.data.reader import to_uint8_images
from ganforge.models import create_models
from ganforge.train.recipes.base import Batch, OptimizerGroup, Phase, Recipe
from ganforge.train.recipes.fields import RecipeError, model_fields, refuse_unused
from ganforge.train.recipes.previews import pairs_grid, translate

FEATURE_PROTOCOL = "inception-2015-12-05/Conv2d_4a_3x3-preact/native-size"
MODEL = "srresnet"
PREVIEW_PAIRS = 16  # at most this many triples in a tick's grid
PREPARE_HINT = "ganforge prepare SRC OUT --resolution 64 --derive downscale:4"


def load_feature_network(device: torch.device, resolution: int) -> nn.Module:
    """phi for the feature loss (see `FEATURE_PROTOCOL`) on B of `resolution` px: the FID Inception weights,
    found as metrics find them, cut at Conv2d_4a_3x3. A clear error when they are not on this machine and
    cannot be downloaded, or when B is too small for Inception's stem."""
    from ganforge.models.inception import InceptionFeatures, InceptionWeightsError, locate_inception, read_weights

    if InceptionFeatures.feature_side(resolution) < 1:
        raise RecipeError(f"The feature loss needs B of at least 19 px (Inception's stem shrinks it about 5 times), "
                          f"and the pairs are {resolution} px: prepare larger ones, or feature_weight=0.")
    try:
        network = InceptionFeatures(read_weights(locate_inception()))
    except InceptionWeightsError as err:
        raise RecipeError(f"The sr recipe's feature loss uses the FID Inception weights, and they are not "
                          f"available: {err} Or train without the feature loss: feature_weight=0.") from None
    return network.to(device)


def to_feature_input(images: torch.Tensor) -> torch.Tensor:
    """float (B, C, H, W) in [-1, 1], C in {1, 3, 4} -> (B, 3, H, W) as FID's input, (x_uint8 - 128) / 128."""
    x = images[:, :3] if images.shape[1] >= 3 else images[:, :1].expand(-1, 3, -1, -1)
    return (x.float() + 1.0) * (127.5 / 128.0) - 1.0


def relativistic_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """ESRGAN's D loss (halved): real judged above the mean fake, fake below the mean real. Logits (B,)."""
    real = F.binary_cross_entropy_with_logits(real_logits - fake_logits.mean(), torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits - real_logits.mean(), torch.zeros_like(fake_logits))
    return 0.5 * (real + fake)


def relativistic_g_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """ESRGAN's G loss (halved): the same comparisons with the targets swapped; both sides carry gradient."""
    real = F.binary_cross_entropy_with_logits(real_logits - fake_logits.mean(), torch.zeros_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits - real_logits.mean(), torch.ones_like(fake_logits))
    return 0.5 * (real + fake)


def sr_fields(config, dataset) -> dict:
    """The model's fields: B's resolution and channels, A's channels and the scale, from the dataset."""
    if dataset.kind != "paired":
        raise RecipeError(f"sr learns from pairs of a small A and a large B, and {dataset.path} is a {dataset.kind} "
                          f"dataset. Prepare one with {PREPARE_HINT}.")
    if config.model.get("name") != MODEL:
        raise RecipeError(f"The sr recipe trains model {MODEL}, not {config.model.get('name')}: use model.name={MODEL}.")
    for key in ("in_channels", "scale", "input_classes"):
        if key in config.model:
            raise RecipeError(f"model.{key} comes from the dataset's two sides: leave it out.")
    derive = dataset.manifest.get("derive") or {}
    if derive.get("mode") == "labels":
        raise RecipeError(f"{dataset.path}: side A is a label map; sr enlarges images. Prepare with {PREPARE_HINT}.")
    side_a, side_b = int(dataset.a.shape[1]), dataset.resolution
    if side_a * 2 != side_b and side_a * 4 != side_b:
        raise RecipeError(f"{dataset.path}: side A is {side_a} px and B {side_b} px; sr enlarges 2 or 4 times. "
                          f"Prepare with --derive downscale:2 or downscale:4 ({PREPARE_HINT}).")
    fields = model_fields(config, dataset)
    fields["in_channels"], fields["scale"] = int(dataset.a.shape[3]), side_b // side_a
    return fields


def _refuse_unused(config) -> None:
    if config.loss != "nonsaturating":
        raise RecipeError(f"sr trains with the relativistic average GAN loss of ESRGAN (BCE on logit differences), "
                          f"not loss={config.loss}: leave loss at nonsaturating.")
    refuse_unused("sr", config, classes=True)


def _pixels(array: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float (N, C, H, W) in [-1, 1], as the reader gives them."""
    return torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).float() / 127.5 - 1


class SRRecipe(Recipe):
    name = "sr"

    def __init__(self, config, dataset, device, rng):
        super().__init__(config, dataset, device, rng)
        _refuse_unused(config)
        fields = sr_fields(config, dataset)
        self.model_name = fields.pop("name")
        self.model_config, G, D = create_models(self.model_name, **fields)
        self.networks = {"G": G, "D": D}
        self.warmup_images = config.warmup_kimg * 1000  # the loop's own comparison: images_seen < start_kimg * 1000
        self.features = None  # phi: frozen, outside `networks` (never optimised, averaged or saved)
        if config.feature_weight > 0:
            self.features = load_feature_network(device, self.model_config.resolution)
        self.gan_period = False  # set before each step by `step_plan`
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
        return [Phase("Dmain", "D", draws=True, start_kimg=self.config.warmup_kimg, graph=("G",)),
                Phase("Gmain", "G", grad_norm="grad_G")]  # in the warm-up, Gmain draws the step's batch itself

    def step_plan(self, step: int, images_seen: int) -> tuple[int, tuple[str, ...]]:
        """The period of the step about to run, from the images shown before it (nothing to save: a resumed
        run computes the same); G's optimiser restarts at the first GAN step."""
        batch = self.config.batch_size
        self.gan_period = images_seen >= self.warmup_images
        first = self.gan_period and images_seen - batch < self.warmup_images and images_seen > 0
        return batch, ("G",) if first else ()

    def make_batch(self, phase: Phase, data: tuple, z: torch.Tensor) -> Batch:
        a, b = data  # (B, C_A, h, w), (B, C_B, scale h, scale w)
        return Batch(b, None, None, {"a": a})

    def loss(self, phase: Phase, batch: Batch):
        if phase.name == "Dmain":
            return self._d_main(batch)
        if phase.name == "Gmain":
            return self._g_main(batch)
        raise ValueError(f"the sr recipe has no phase {phase.name!r}")

    def feature_loss(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """|phi(G(A)) - phi(B)|_1, the mean over features; phi(B) is a fixed target."""
        with torch.no_grad():
            target = self.features(to_feature_input(real))  # (B, 192, h', w')
        return (self.features(to_feature_input(fake)) - target).abs().mean()

    def _d_main(self, batch: Batch):
        fake = self.G(batch.extra["a"])  # (B, C, H, W); the graph is kept for Gmain
        self._fakes = fake
        real_logits = self.D(batch.real).float()  # (B,)
        fake_logits = self.D(fake.detach()).float()
        loss = relativistic_d_loss(real_logits, fake_logits)
        return loss, {"loss_D": loss.detach(), "D_real": real_logits.detach().mean(), "D_fake": fake_logits.detach().mean(),
                      "D_accuracy": 0.5 * ((real_logits > fake_logits.mean()).float().mean()
                                           + (fake_logits < real_logits.mean()).float().mean()).detach()}

    def _g_main(self, batch: Batch):
        fake, self._fakes = self._fakes, None
        if fake is None:  # the warm-up: no Dmain before it
            fake = self.G(batch.extra["a"])
        pixel = (fake.float() - batch.real.float()).abs().mean()
        if not self.gan_period:
            return pixel, {"loss_G": pixel.detach(), "G_pixel": pixel.detach()}
        c = self.config
        stats = {"G_pixel": pixel.detach()}
        loss = c.pixel_weight * pixel
        if self.features is not None:
            feature = self.feature_loss(fake, batch.real)
            loss = loss + c.feature_weight * feature
            stats["G_feature"] = feature.detach()
        with torch.no_grad():
            real_logits = self.D(batch.real).float()
        adversarial = relativistic_g_loss(real_logits, self.D(fake).float())
        loss = loss + c.adversarial_weight * adversarial
        return loss, {"loss_G": loss.detach(), "G_adv": adversarial.detach(), **stats}

    def tick_values(self) -> dict[str, float]:
        return {"gan_period": float(self.gan_period)}

    # --- pictures, for the loop's hooks ---------------------------------------------------------

    def _fixed_pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The preview's pairs: whole, or their centre crops when training on crops (`crop`: the network's size)."""
        index, scale, crop = self._preview_index, self.model_config.scale, self.config.crop
        a, b = np.asarray(self.dataset.a[index]), np.asarray(self.dataset.b[index])
        if crop:
            start = (b.shape[1] - crop) // 2 // scale  # in A's pixels, so both crops cover one area
            a = a[:, start : start + crop // scale, start : start + crop // scale]
            b = b[:, start * scale : start * scale + crop, start * scale : start * scale + crop]
        return _pixels(a), _pixels(b)

    def _grid(self, columns: list[np.ndarray]):
        return pairs_grid(columns)

    def _enlarged(self, a: torch.Tensor) -> np.ndarray:
        """A at B's size, each pixel repeated scale x scale times: what G was given."""
        scale = self.model_config.scale
        return to_uint8_images(a).repeat(scale, axis=1).repeat(scale, axis=2)

    def translate(self, module, a: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        return translate(module, a, batch_size)

    def preview(self, module):
        """The loop's grid: the (averaged, eval-mode) generator on the fixed pairs, A | G(A) | B."""
        a, b = self._fixed_pairs()
        fake = self.translate(module, a)
        return self._grid([self._enlarged(a), to_uint8_images(fake), to_uint8_images(b)]), fake

    def preview_reals(self):
        a, b = self._fixed_pairs()
        return self._grid([self._enlarged(a), to_uint8_images(b)])

    def sample_inputs(self, count: int, generator: torch.Generator) -> tuple:
        """Random A inputs (for recalibrating the averaged generator's batch norm, with norm=batch)."""
        index = np.sort(torch.randint(0, len(self.dataset), (count,), generator=generator).numpy())
        return (_pixels(self.dataset.a[index]).to(self.device),)
