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

Attributes: on a dataset prepared with `--attributes`, a model that takes them (its config has an
`attributes` field) is conditioned on them unless conditional=no. Reals come with their own; each fake
gets the attributes (and the class, when there are classes) of a real image drawn at random through the
trainer's stream, so fakes follow the data's joint distribution and a resumed run draws the same ones.
With `attribute_weight` w > 0, D also predicts the attributes (StarGAN's auxiliary classifier, Choi et
al. 2018, with regression for numbers): D adds w * L_attr(D(x_real), a_real), G adds
w * L_attr(D(G(z, a)), a), L_attr the squared error of standardised numbers and the cross-entropy of
categories. It makes G follow the values asked for, not only their typical mix.

AC-GAN (model.conditioning=acgan or model.class_head=true, Odena et al. 2017): D's head also gives class logits c(x); D adds
acgan_weight * CE(c(x_real), y_real), G adds acgan_weight * CE(c(G(z, y)), y). The paper also trains D's
head on the fakes' asked classes, CE(c(G(z, y)), y): with `acgan_d_fakes` it does here too. It is off by
default, as in StarGAN: trained on fakes, the head can learn whatever G draws for a class, so the two agree
on a code of their own (on MNIST, asked for a 0, G drew an 8 that D read as a 0, for every class).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from ganforge.models import MODELS, create_models
from ganforge.models.layers import attribute_loss
from ganforge.train.recipes.augmenting import DiscriminatorAugment
from ganforge.train.recipes.base import Batch, OptimizerGroup, Phase, Recipe, lazy_interval
from ganforge.train.recipes.fields import RecipeError, model_fields


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


def r1_penalty(D, augment, real: torch.Tensor, labels, attributes=None) -> torch.Tensor:
    """E||∇_x D(x)||² on real images (Mescheder et al. 2018), computed in fp32 by the caller."""
    real = real.detach().requires_grad_(True)
    logits = D(augment(real), labels, **attribute_kwargs(attributes))[0]
    (grad,) = torch.autograd.grad(logits.float().sum(), real, create_graph=True)
    return grad.float().square().flatten(1).sum(1).mean()


def attribute_kwargs(attributes) -> dict:
    """`attributes=` for networks conditioned on attributes; nothing for the others (they take no such argument)."""
    return {} if attributes is None else {"attributes": attributes}


def attribute_fields(model_name: str, config, dataset) -> dict:
    """The model's `attributes` field from the dataset's, or nothing when the dataset has none or
    conditional=no."""
    specs = getattr(dataset, "attribute_specs", None)
    if "attributes" in config.model:
        raise RecipeError("model.attributes comes from the dataset (prepare --attributes): leave it out.")
    if not specs or config.conditional == "no":
        return {}
    if "attributes" not in {f.name for f in dataclasses.fields(MODELS[model_name].config_class)}:
        takes = sorted(name for name, spec in MODELS.items()
                       if "attributes" in {f.name for f in dataclasses.fields(spec.config_class)})
        raise RecipeError(f"{dataset.path} has attributes, but model {model_name} cannot be conditioned on them: use "
                          f"model.name={' or '.join(takes)}, or conditional=no to train without attributes or classes.")
    return {"attributes": [
        {"name": s["name"], "kind": s["kind"], "mean": s.get("mean", 0.0), "std": s.get("std", 1.0),
         "values": s.get("values", []), "low": s.get("min"), "high": s.get("max")} for s in specs]}


class ClassicRecipe(Recipe):
    """The two-player game of DCGAN and the MLP, with optional R1, gradient penalty, AC-GAN and augmentation."""

    name = "classic"

    def __init__(self, config, dataset, device, rng):
        super().__init__(config, dataset, device, rng)
        fields = model_fields(config, dataset)
        self.model_name = fields.pop("name")
        fields.update(attribute_fields(self.model_name, config, dataset))
        self.attribute_head = bool(fields.get("attributes")) and config.attribute_weight > 0
        if self.attribute_head:
            if "attribute_head" not in {f.name for f in dataclasses.fields(MODELS[self.model_name].config_class)}:
                raise RecipeError(f"attribute_weight: model {self.model_name} has no attribute head; use model.name=dcgan.")
            fields["attribute_head"] = True  # D predicts the attributes: StarGAN's auxiliary loss
        elif config.attribute_weight > 0 and not fields.get("attributes"):
            raise RecipeError(f"attribute_weight={config.attribute_weight} needs a dataset with attributes "
                              "(prepare --attributes FILE) and a model that takes them; leave it at 0.")
        self.model_config, G, D = create_models(self.model_name, **fields)
        self.networks = {"G": G, "D": D}
        self.augment = DiscriminatorAugment(config, device, rng) if dataset.kind == "images" else None
        self.acgan = bool(getattr(D, "acgan", False))  # D has a class head (conditioning=acgan or class_head)
        self._fakes: torch.Tensor | None = None
        self._fakes_conditions: tuple | None = None  # (labels, attributes) the kept fakes were made with
        self.attributes_on = bool(getattr(self.model_config, "attributes", ()))
        if self.attributes_on:  # the pool fakes draw their conditions from: every real image's
            self._pool_attributes = torch.from_numpy(dataset.attributes).to(device)  # (N, A)
            self._pool_labels = torch.from_numpy(dataset.labels).to(device) if self.num_classes else None  # (N,)

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

    def make_batch(self, phase: Phase, data: tuple, z: torch.Tensor) -> Batch:
        real, labels, *rest = data
        batch = Batch(real, labels if self.num_classes > 0 else None, z)
        if self.attributes_on:
            batch.extra["attributes"] = rest[0]  # (B, A): the reals' own
            pick = torch.randint(0, len(self._pool_attributes), (len(z),), device=self.device, generator=self.rng)
            batch.extra["fake_attributes"] = self._pool_attributes[pick]  # (B, A)
            if batch.labels is not None:  # the same image's class: attributes and class stay a real pair
                batch.extra["fake_labels"] = self._pool_labels[pick]
        return batch

    @staticmethod
    def real_conditions(batch: Batch) -> tuple:
        """(labels, attributes) of the batch's real images; attributes None without attribute conditioning."""
        return batch.labels, batch.extra.get("attributes")

    @staticmethod
    def fake_conditions(batch: Batch) -> tuple:
        """(labels, attributes) to make this batch's fakes with: drawn from the data when attributes are on,
        else the real batch's labels (as before attributes)."""
        return batch.extra.get("fake_labels", batch.labels), batch.extra.get("fake_attributes")

    def _generate_fakes(self, batch: Batch) -> tuple[torch.Tensor, tuple]:
        labels, attributes = self.fake_conditions(batch)
        return self.G(batch.z, labels, **attribute_kwargs(attributes)), (labels, attributes)

    def loss(self, phase: Phase, batch: Batch):
        if phase.name == "Dmain":
            return self._d_main(batch)
        if phase.name == "Dreg":
            penalty = r1_penalty(self.D, self._augment, batch.real, *self.real_conditions(batch))
            return penalty * (self.config.r1_gamma / 2) * phase.interval, {"R1": penalty.detach()}
        if phase.name == "Gmain":
            return self._g_main(batch)
        raise ValueError(f"the classic recipe has no phase {phase.name!r}")

    def _augment(self, x):
        return self.augment(x) if self.augment is not None else x

    def _discriminate(self, x, labels, attributes=None):
        """(logits, class logits or None, the attribute head's prediction or None), in float32."""
        if self.attribute_head:
            logits, class_logits, predicted = self.D(self._augment(x), labels, attributes=attributes,
                                                     predict_attributes=True)
            predicted = predicted.float()
        else:
            (logits, class_logits), predicted = self.D(self._augment(x), labels, **attribute_kwargs(attributes)), None
        return logits.float(), None if class_logits is None else class_logits.float(), predicted

    def _attribute_loss(self, predicted, attributes) -> torch.Tensor:
        return self.config.attribute_weight * attribute_loss(self.D.encode_attributes, predicted, attributes)

    def _d_logits(self, batch: Batch):
        """Dmain's fakes (kept for Gmain with reuse_fakes) and D's (logits, class logits) on reals and fakes;
        ADA observes the real logits."""
        if self.config.reuse_fakes:
            fake, conditions = self._generate_fakes(batch)  # the graph is kept for the G phase
            self._fakes, self._fakes_conditions = fake, conditions
            fake = fake.detach()
        else:
            with torch.no_grad():
                fake, conditions = self._generate_fakes(batch)
        real = self._discriminate(batch.real, *self.real_conditions(batch))
        if self.augment is not None:
            self.augment.observe(real[0])
        return fake, conditions, real, self._discriminate(fake, *conditions)

    def _d_main(self, batch: Batch):
        fake, conditions, (real_logits, real_classes, real_predicted), (fake_logits, fake_classes, _) = self._d_logits(batch)
        loss = d_loss(self.config.loss, real_logits, fake_logits)
        stats = {}
        if self.attribute_head:  # D learns to read the attributes of real images (never of fakes)
            attribute_term = self._attribute_loss(real_predicted, self.real_conditions(batch)[1])
            loss, stats = loss + attribute_term, {"D_attributes": attribute_term.detach()}
        if self.config.loss == "wgan-gp":
            loss = loss + self.config.gp_weight * self._gradient_penalty(batch.real, fake, *self.real_conditions(batch))
        if self.acgan:  # D's class head learns the reals' classes (and, with acgan_d_fakes, the fakes' asked ones)
            class_term = F.cross_entropy(real_classes, batch.labels)
            if self.config.acgan_d_fakes:
                class_term = class_term + F.cross_entropy(fake_classes, conditions[0])
            loss = loss + self.config.acgan_weight * class_term
        return loss, {**d_stats(loss, real_logits, fake_logits), **stats}

    def _kept_or_new_fakes(self, batch: Batch, generate) -> tuple[torch.Tensor, tuple]:
        """The fakes Dmain kept (with the conditions they were made with), or new ones from `generate`."""
        fake, conditions = self._fakes, self._fakes_conditions or self.fake_conditions(batch)
        self._fakes = self._fakes_conditions = None
        return (fake, conditions) if fake is not None else generate(batch)

    def _g_main(self, batch: Batch):
        fake, (labels, attributes) = self._kept_or_new_fakes(batch, self._generate_fakes)
        logits, classes, predicted = self._discriminate(fake, labels, attributes)
        loss = g_loss(self.config.loss, logits)
        stats = {}
        if self.acgan:
            loss = loss + self.config.acgan_weight * F.cross_entropy(classes, labels)
        if self.attribute_head:  # G makes images whose attributes D reads as the ones asked for
            attribute_term = self._attribute_loss(predicted, attributes)
            loss, stats = loss + attribute_term, {"G_attributes": attribute_term.detach()}
        return loss, {"loss_G": loss.detach(), **stats}

    def _gradient_penalty(self, real, fake, labels, attributes=None):
        shape = [real.shape[0]] + [1] * (real.dim() - 1)
        alpha = torch.rand(shape, device=real.device, generator=self.rng)
        mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
        logits, _ = self.D(self._augment(mixed), labels, **attribute_kwargs(attributes))
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
