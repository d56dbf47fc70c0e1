"""The DTN recipe (Taigman et al. 2017): unpaired translation A -> B that keeps a frozen classifier's meaning.

Before the first step (inside it, not counted as images shown) the recipe trains a small classifier of
side A on A's classes (`ganforge prepare A_FOLDERS OUT --unpaired B --labels folders`: one folder per
class), for `classifier_steps` Adam steps on 90 % of A, with its own seeded draws; the other 10 % give
the held-out accuracy logged as `classifier_accuracy`. With `classifier_jitter` each of its training
images is first turned, sheared, scaled and moved a little and its strokes thinned or thickened at random,
so that f's features say more about the class and less about the style L_CONST would otherwise keep. With
`classifier_target_rounds` R, R rounds of self-training follow (domain adaptation without B's labels): the
classifier reads side B (all of it, or 20,000 images drawn at random), keeps for each class the images it
reads as that class most surely (half a class's fair share), and trains another `classifier_steps` steps
on batches half of A with A's labels and half of those B images with its own readings, so that f's
features and h's readings, which L_CONST and L_CLASS keep, also hold for the target's style. Its
encoder becomes f, frozen inside G = g o f
(see models/dtn.py); the classifier's weights are in the recipe's checkpoint state, so a resumed run
never trains it again.

Phases per step: Dmain (draws an A batch x and a B batch t, runs G once on both together, so g's batch
norm sees both domains as in the paper, and keeps the graph) then Gmain (learns from those fakes).
The paper's ternary D, with CE the softmax cross-entropy over its 3 logits (0: G(x), 1: G(t), 2: real t):

    L_D      = CE(D(G(x)), 0) + CE(D(G(t)), 1) + CE(D(t), 2)                      the paper's eq. 3
    L_GANG   = CE(D(G(x)), 2) + CE(D(G(t)), 2)                                    eq. 4
    L_CONST  = mean (f(x) - f(G(x)))^2      over f's features, on source images  eq. 5
    L_TID    = mean (G(t) - t)^2            over pixels, on target images         eq. 6
    L_TV     = mean sqrt(dx^2 + dy^2)       over G(x)'s pixels (B = 1)            eq. 7
    L_CLASS  = CE(h(f(G(x))), argmax h(f(x)))  the classifier's reading kept   (ganforge's, not the paper's)
    L_G      = L_GANG + const_weight L_CONST + tid_weight L_TID + tv_weight L_TV   eq. 8
               + class_weight L_CLASS

The paper's digit weights are alpha = beta = 15, gamma = 0; h is the frozen classifier's linear head, so
L_CLASS asks that the classifier reads G(x) as the class it reads x as (L_CONST asks the same of all of f's
features, and weighs each alike, whether it tells classes apart or not). CE terms are batch means; the
paper writes sums, which changes only the scale the weights act on.

The tick's picture: for fixed images, a row x | G(x) | t | G(t) from the averaged generator.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ganforge.data.reader import to_uint8_images
from ganforge.models import create_models
from ganforge.models.dtn import DTNClassifier
from ganforge.train.recipes.base import Batch, OptimizerGroup, Phase, Recipe
from ganforge.train.recipes.cyclegan import pixels, side_by_side
from ganforge.train.recipes.previews import translate
from ganforge.train.recipes.fields import RecipeError, model_fields, refuse_unused

PREVIEW_ROWS = 8
CLASSIFIER_LR = 1e-3
CLASSIFIER_BATCH = 64
HELD_OUT = 0.1  # share of side A kept out of the classifier's training, for its accuracy
TARGET_POOL = 20_000  # side-B images a self-training round reads (drawn at random when B has more)
# classifier_jitter: each training image's random affine map and stroke change
JITTER = {"turn": 0.26, "shear": 0.3, "scale": 0.15, "move": 0.1}  # radians, x-shear, +-log-scale, share of the side


def jitter(images: torch.Tensor, draws: torch.Generator) -> torch.Tensor:
    """Each image of (B, C, H, W) in [-1, 1] turned, sheared, scaled and moved at random (zero padding
    is black, the background of ink-on-black digits); a third thinned and a third thickened by a 3x3
    min or max filter. Draws come from `draws` only (the classifier's stream)."""
    b = len(images)
    u = torch.rand(b, 5, generator=draws) * 2 - 1  # (B, 5) in [-1, 1]
    turn, shear = u[:, 0] * JITTER["turn"], u[:, 1] * JITTER["shear"]
    scale = torch.exp(u[:, 2] * JITTER["scale"])
    cos, sin = torch.cos(turn) / scale, torch.sin(turn) / scale
    theta = torch.stack([torch.stack([cos, -sin + shear * cos, u[:, 3] * 2 * JITTER["move"]], 1),
                         torch.stack([sin, cos + shear * sin, u[:, 4] * 2 * JITTER["move"]], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta.to(images.device, images.dtype), list(images.shape), align_corners=False)
    moved = F.grid_sample(images + 1, grid, padding_mode="zeros", align_corners=False) - 1  # 0 outside = black
    stroke = torch.randint(0, 3, (b,), generator=draws).to(images.device)  # 0 as is, 1 thinner, 2 thicker
    thinner = -F.max_pool2d(-moved, 3, 1, 1)
    thicker = F.max_pool2d(moved, 3, 1, 1)
    pick = stroke.view(b, 1, 1, 1)
    return torch.where(pick == 1, thinner, torch.where(pick == 2, thicker, moved))


def surest(probabilities: torch.Tensor, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, classes read) of (N, classes) probabilities: for each class, the rows read as it with the highest
    probability, at most half of a class's fair share (N / classes / 2), so that no class crowds out the
    others; rows in ascending order."""
    sure, read = probabilities.max(1)
    quota = max(1, len(probabilities) // (2 * classes))
    kept = []
    for k in range(classes):
        mine = torch.nonzero(read == k).flatten()
        kept.append(mine[torch.argsort(sure[mine], descending=True, stable=True)[:quota]])
    rows = torch.sort(torch.cat(kept)).values
    return rows.numpy(), read[rows].numpy()


def dtn_fields(config, dataset) -> dict:
    """The model's fields from an unpaired dataset whose side A has classes."""
    if dataset.kind != "unpaired":
        raise RecipeError(f"DTN learns from two unpaired sets of images, and {dataset.path} is a {dataset.kind} "
                          "dataset. Prepare them with ganforge prepare A_FOLDERS OUT --unpaired B --labels folders.")
    if dataset.labels is None or dataset.num_classes < 2:
        raise RecipeError(f"DTN keeps the meaning of a classifier of side A, and side A of {dataset.path} has no "
                          "classes. Put A's images in one folder per class (0/, 1/, ...) and prepare again with "
                          "ganforge prepare A_FOLDERS OUT --unpaired B --labels folders.")
    if config.model.get("name") != "dtn":
        raise RecipeError(f"The dtn recipe trains model dtn, not {config.model.get('name')}: use model.name=dtn.")
    if "in_channels" in config.model:
        raise RecipeError("model.in_channels comes from the dataset's side A: leave it out.")
    if config.crop:
        raise RecipeError("DTN reads whole images (its classifier sees one object per image): leave crop out.")
    fields = model_fields(config, dataset)
    fields["in_channels"] = int(dataset.a.shape[3])
    if fields["in_channels"] != fields["channels"]:
        raise RecipeError(f"Side A has {fields['in_channels']} channel(s) and side B {fields['channels']}: DTN's "
                          "encoder reads both sides, so prepare them with the same --channels (e.g. --channels 1).")
    return fields


def _refuse_unused(config) -> None:
    if config.loss != "nonsaturating":
        raise RecipeError(f"DTN trains with the paper's 3-class cross-entropy: leave loss at nonsaturating, not "
                          f"{config.loss}.")
    refuse_unused("DTN", config, classes=True)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """mean over pixels of sqrt(dx^2 + dy^2) (the paper's L_TV with B = 1), x (B, C, H, W)."""
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    return torch.sqrt(dx.float() ** 2 + dy.float() ** 2 + 1e-8).mean()


def _ce(logits: torch.Tensor, target: int) -> torch.Tensor:
    return F.cross_entropy(logits.float(), torch.full((len(logits),), target, dtype=torch.long, device=logits.device))


class DTNRecipe(Recipe):
    name = "dtn"

    def __init__(self, config, dataset, device, rng):
        super().__init__(config, dataset, device, rng)
        _refuse_unused(config)
        fields = dtn_fields(config, dataset)
        self.model_name = fields.pop("name")
        self.model_config, G, D = create_models(self.model_name, **fields)
        self.networks = {"G": G, "D": D}
        self.classifier = DTNClassifier(self.model_config, dataset.num_classes).to(device)
        self.classifier_trained = False
        self.classifier_accuracy = float("nan")
        self._fakes: tuple[torch.Tensor, torch.Tensor] | None = None
        count = min(PREVIEW_ROWS, config.grid_size, len(dataset.a), len(dataset.b))
        pick = np.random.default_rng(config.seed)
        self._preview_index = {side: np.sort(pick.choice(len(getattr(dataset, side)), count, replace=False))
                               for side in ("a", "b")}

    @property
    def z_dim(self) -> int:
        return 0

    def optimizer_groups(self) -> dict[str, OptimizerGroup]:
        c = self.config
        return {"G": OptimizerGroup(("G",), c.lr_g, (c.beta1, c.beta2)), "D": OptimizerGroup(("D",), c.lr_d, (c.beta1, c.beta2))}

    def phases(self) -> list[Phase]:
        return [Phase("Dmain", "D", draws=True, graph=("G",)), Phase("Gmain", "G", grad_norm="grad_G")]

    def make_batch(self, phase: Phase, data: tuple, z: torch.Tensor) -> Batch:
        a, b = data  # (B, C, H, W) each
        return Batch(b, None, None, {"a": a})

    def loss(self, phase: Phase, batch: Batch):
        if not self.classifier_trained:
            self.train_classifier()
        if phase.name == "Dmain":
            return self._d_main(batch.extra["a"], batch.real)
        if phase.name == "Gmain":
            return self._g_main(batch.extra["a"], batch.real)
        raise ValueError(f"the dtn recipe has no phase {phase.name!r}")

    # --- the frozen classifier ------------------------------------------------------------------

    def _labelled_split(self) -> tuple[np.ndarray, np.ndarray]:
        order = np.random.default_rng([self.config.seed, 31]).permutation(len(self.dataset.a))
        held = max(1, int(len(order) * HELD_OUT)) if len(order) > 1 else 0
        return np.sort(order[held:]), np.sort(order[:held])

    def _labelled(self, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        images = pixels(self.dataset.a[index]).to(self.device)  # (N, C, H, W)
        return images, torch.from_numpy(np.asarray(self.dataset.labels[index])).long().to(self.device)

    def train_classifier(self) -> None:
        """Train the classifier of side A on A's labels (then, for classifier_target_rounds, also on side B's
        images it reads surest, as it reads them), freeze it, and make its encoder G's f."""
        train, held = self._labelled_split()
        draws = torch.Generator().manual_seed(self.config.seed + 31)  # its own: the trainer's stream is untouched
        with torch.autocast(self.device.type, enabled=False), torch.enable_grad():
            self._fit(train, None, draws)
            for _ in range(self.config.classifier_target_rounds):
                pool = self._target_pool(draws)
                rows, read = surest(self._probabilities(pool), self.dataset.num_classes)
                self._fit(train, (pool[rows], read), draws)
        self.classifier.requires_grad_(False).eval()
        self.classifier_accuracy = self.accuracy(held) if len(held) else float("nan")
        self.G.encoder.load_state_dict(self.classifier.encoder.state_dict())  # parameters -> G's buffers
        self.classifier_trained = True

    def _fit(self, train: np.ndarray, target: tuple[np.ndarray, np.ndarray] | None, draws: torch.Generator) -> None:
        """classifier_steps Adam steps (a fresh Adam) on batches of A's rows `train`, or, with `target` (B's rows,
        their labels), on batches half of A and half of those."""
        optimizer = torch.optim.Adam(self.classifier.parameters(), CLASSIFIER_LR)
        self.classifier.train()
        size = CLASSIFIER_BATCH if target is None else CLASSIFIER_BATCH // 2
        rows, read = target if target is not None else (None, None)
        for _ in range(self.config.classifier_steps):
            pick = np.sort(train[torch.randint(len(train), (min(size, len(train)),), generator=draws).numpy()])
            images, labels = self._labelled(pick)
            if target is not None:
                chosen = np.sort(torch.randint(len(rows), (min(size, len(rows)),), generator=draws).numpy())
                images = torch.cat([images, pixels(self.dataset.b[rows[chosen]]).to(self.device)])
                labels = torch.cat([labels, torch.from_numpy(read[chosen]).long().to(self.device)])
            if self.config.classifier_jitter:
                images = jitter(images, draws)
            loss = F.cross_entropy(self.classifier(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    def _target_pool(self, draws: torch.Generator) -> np.ndarray:
        """Side B's rows a self-training round reads: all of them, or TARGET_POOL drawn at random."""
        count = len(self.dataset.b)
        if count <= TARGET_POOL:
            return np.arange(count)
        return np.sort(torch.randperm(count, generator=draws)[:TARGET_POOL].numpy())

    @torch.no_grad()
    def _logits(self, images, rows: np.ndarray) -> torch.Tensor:
        """(len(rows), classes) on the CPU: the classifier's logits for `rows` of one side's images, 256 at a time."""
        self.classifier.eval()
        return torch.cat([self.classifier(pixels(images[rows[start : start + 256]]).to(self.device)).float().cpu()
                          for start in range(0, len(rows), 256)])

    def _probabilities(self, rows: np.ndarray) -> torch.Tensor:
        """(len(rows), classes): the classifier's class probabilities for side B's `rows`."""
        return F.softmax(self._logits(self.dataset.b, rows), 1)

    def accuracy(self, index: np.ndarray) -> float:
        """The classifier's share of right answers on rows `index` of side A."""
        labels = torch.from_numpy(np.asarray(self.dataset.labels[index])).long()
        return int((self._logits(self.dataset.a, index).argmax(1) == labels).sum()) / len(index)

    # --- the losses ----------------------------------------------------------------------------

    def _d_main(self, x: torch.Tensor, t: torch.Tensor):
        out = self.G(torch.cat([x, t]))  # (2B, C, H, W): one batch-norm batch of both domains
        fake_x, fake_t = out[: len(x)], out[len(x) :]
        self._fakes = (fake_x, fake_t)  # the graph is kept for Gmain
        logits = [self.D(fake_x.detach()), self.D(fake_t.detach()), self.D(t)]  # (B, 3) each
        loss = sum(_ce(l, k) for k, l in enumerate(logits))
        right = torch.cat([(l.argmax(1) == k).float() for k, l in enumerate(logits)]).mean()
        return loss, {"loss_D": loss.detach(), "D_accuracy": right.detach()}

    def _g_main(self, x: torch.Tensor, t: torch.Tensor):
        c = self.config
        fakes, self._fakes = self._fakes, None
        if fakes is None:  # Gmain without Dmain before it (not in this recipe's phases)
            out = self.G(torch.cat([x, t]))
            fakes = (out[: len(x)], out[len(x) :])
        fake_x, fake_t = fakes
        gan = _ce(self.D(fake_x), 2) + _ce(self.D(fake_t), 2)
        with torch.no_grad():
            kept = self.G.encode(x)  # f(x): (B, features, 1, 1)
        encoded = self.G.encode(fake_x)  # f(G(x))
        const = ((encoded.float() - kept.float()) ** 2).mean()
        tid = ((fake_t.float() - t.float()) ** 2).mean()
        loss = gan + c.const_weight * const + c.tid_weight * tid
        stats = {"G_adv": gan.detach(), "L_CONST": const.detach(), "L_TID": tid.detach()}
        if c.class_weight > 0:
            read = self.classifier.head(kept).argmax(1)  # the classifier's answer for x
            keep = F.cross_entropy(self.classifier.head(encoded).float(), read)
            loss = loss + c.class_weight * keep
            stats["L_CLASS"] = keep.detach()
        if c.tv_weight > 0:
            tv = total_variation(fake_x)
            loss = loss + c.tv_weight * tv
            stats["L_TV"] = tv.detach()
        return loss, {"loss_G": loss.detach(), **stats}

    # --- state and pictures ---------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {"classifier": self.classifier.state_dict(), "classifier_trained": self.classifier_trained,
                "classifier_accuracy": self.classifier_accuracy}

    def load_state_dict(self, state: dict) -> None:
        self.classifier.load_state_dict(state["classifier"])
        self.classifier_trained = bool(state["classifier_trained"])
        self.classifier_accuracy = float(state["classifier_accuracy"])
        if self.classifier_trained:
            self.classifier.requires_grad_(False).eval()

    def tick_values(self) -> dict[str, float]:
        return {"classifier_accuracy": self.classifier_accuracy} if self.classifier_trained else {}

    def _fixed_images(self) -> tuple[torch.Tensor, torch.Tensor]:
        return pixels(self.dataset.a[self._preview_index["a"]]), pixels(self.dataset.b[self._preview_index["b"]])

    def preview(self, module):
        """The loop's grid: rows x | G(x) | t | G(t) for fixed images of each side."""
        x, t = self._fixed_images()
        fake_x, fake_t = translate(module, x), translate(module, t)
        return side_by_side([to_uint8_images(v) for v in (x, fake_x, t, fake_t)]), fake_x

    def preview_reals(self):
        x, t = self._fixed_images()
        return side_by_side([to_uint8_images(x), to_uint8_images(t)])

    def sample_inputs(self, count: int, generator: torch.Generator) -> tuple:
        """Random A and B images, half each (as training batches G's batch norm), for its recalibration."""
        half = count // 2
        a = np.sort(torch.randint(0, len(self.dataset.a), (half,), generator=generator).numpy())
        b = np.sort(torch.randint(0, len(self.dataset.b), (count - half,), generator=generator).numpy())
        return (torch.cat([pixels(self.dataset.a[a]), pixels(self.dataset.b[b])]).to(self.device),)
