"""Adaptive discriminator augmentation (Karras et al. 2020, "Training GANs with limited data").

`AugmentPipe` is the paper's 'bgc' pipeline: per-sample geometric transforms (blit + general geometry)
composed into one 3x3 matrix and resampled once, then colour transforms composed into one 4x4 matrix,
each applied with probability p. `AdaController` is the feedback rule that moves p so that D's
overfitting heuristic r_t = E[sign(D(real))] stays near a target.

Everything is differentiable w.r.t. the images (G learns through the augmentation of its samples) and
every random draw goes through the `torch.Generator` passed in, so a resumed run augments exactly as
an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ganforge.errors import GanforgeError

# The paper's distributions. Log-normal draws are s = 2 ** (std * N(0, 1)), i.e. a natural-log std of
# std * ln 2, which is how the paper states them; translations are fractions of the image size.
XINT_MAX = 0.125  # integer translation: uniform in +-0.125 of the size, rounded to whole pixels
SCALE_STD = 0.2
ROTATE_MAX = 1.0  # in half-turns: uniform in +-180 degrees
ANISO_STD = 0.2
XFRAC_STD = 0.125
BRIGHTNESS_STD = 0.2
CONTRAST_STD = 0.5
HUE_MAX = 1.0  # in half-turns
SATURATION_STD = 1.0

GEOMETRIC = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
COLOUR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
# the paper's letters: b = pixel blitting, g = general geometry, c = colour
SPEC_GROUPS = {"b": ("xflip", "rotate90", "xint"), "g": ("scale", "rotate", "aniso", "xfrac"), "c": COLOUR}

# cos and sin of k quarter turns, written out so a 90-degree rotation is an exact permutation of pixel
# centres rather than carrying cos(pi/2) ~ -4e-8 into the sampling grid
_QUARTER_COS = (1.0, 0.0, -1.0, 0.0)
_QUARTER_SIN = (0.0, 1.0, 0.0, -1.0)


class AugmentError(GanforgeError, ValueError):
    """An augmentation spec or an image layout ADA cannot use; a ValueError too."""


class _Draws:
    """Every random number of one pass, from one stream: the caller's generator (drawn on its own device)
    or, without one, torch's global generator on the images' device."""

    def __init__(self, batch: int, generator: torch.Generator | None, device: torch.device):
        self.batch = batch
        self.generator = generator
        self.device = generator.device if generator is not None else torch.device(device)

    def uniform(self, *shape: int) -> torch.Tensor:
        return torch.rand(self.batch, *shape, generator=self.generator, device=self.device)

    def normal(self, *shape: int) -> torch.Tensor:
        return torch.randn(self.batch, *shape, generator=self.generator, device=self.device)

    def chosen(self, probability: float) -> torch.Tensor:
        """(B,) bool: which samples get this transform."""
        return self.uniform() < probability


def _matrix3(a, b, c, d, e, f) -> torch.Tensor:
    """(B,) entries -> (B, 3, 3) homogeneous 2-D matrices [[a, b, c], [d, e, f], [0, 0, 1]]."""
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    return torch.stack([a, b, c, d, e, f, zero, zero, one], dim=-1).view(-1, 3, 3)


def _scale2d(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros_like(sx)
    return _matrix3(sx, zero, zero, zero, sy, zero)


def _translate2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    zero, one = torch.zeros_like(tx), torch.ones_like(tx)
    return _matrix3(one, zero, tx, zero, one, ty)


def _rotate2d(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros_like(cos)
    return _matrix3(cos, -sin, zero, sin, cos, zero)


def _embed3(matrix: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) on RGB -> (B, 4, 4) homogeneous colour matrix."""
    out = torch.eye(4, device=matrix.device).repeat(matrix.shape[0], 1, 1)
    out[:, :3, :3] = matrix
    return out


class AugmentPipe(torch.nn.Module):
    """The 'bgc' augmentation of ADA for (B, C, H, W) images in [-1, 1], C in {1, 3, 4}.

    Each keyword is a transform's probability multiplier (0 turns it off): a sample gets the transform
    with probability p * multiplier. p is a float32 buffer, so it travels in the state dict.
    """

    def __init__(self, *, xflip: float = 1.0, rotate90: float = 1.0, xint: float = 1.0, scale: float = 1.0,
                 rotate: float = 1.0, aniso: float = 1.0, xfrac: float = 1.0, brightness: float = 1.0,
                 contrast: float = 1.0, lumaflip: float = 1.0, hue: float = 1.0, saturation: float = 1.0,
                 p: float = 0.0):
        super().__init__()
        multipliers = dict(xflip=xflip, rotate90=rotate90, xint=xint, scale=scale, rotate=rotate, aniso=aniso,
                           xfrac=xfrac, brightness=brightness, contrast=contrast, lumaflip=lumaflip, hue=hue,
                           saturation=saturation)
        for name, value in multipliers.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"AugmentPipe: {name} must be a probability multiplier >= 0 (0 turns it off); "
                                 f"got {value!r}")
        if not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
            raise ValueError(f"AugmentPipe: p must be a probability in [0, 1]; got {p!r}")
        self.multipliers = {name: float(value) for name, value in multipliers.items()}
        self.register_buffer("p", torch.tensor(float(p), dtype=torch.float32))

    @classmethod
    def from_spec(cls, spec: str, p: float = 0.0) -> AugmentPipe:
        """The paper's presets by letter: "bgc" (all, the default), "bg", "b", "c", ..."""
        unknown = sorted(set(spec) - set(SPEC_GROUPS))
        if not spec or unknown:
            raise AugmentError(f"unknown ADA augmentation spec {spec!r}; use letters from 'bgc' "
                               "(b = flips, quarter turns and integer shifts, g = scale, rotation and fractional "
                               "shifts, c = colour), e.g. 'bgc' or 'bg'.")
        on = {name for letter in spec for name in SPEC_GROUPS[letter]}
        return cls(**{name: 1.0 if name in on else 0.0 for name in GEOMETRIC + COLOUR}, p=p)

    def extra_repr(self) -> str:
        on = ", ".join(f"{name}={m:g}" for name, m in self.multipliers.items() if m > 0)
        return f"p={float(self.p):.4f}, {on or 'nothing on'}"

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_images(images)
        p = float(self.p)
        if p <= 0.0:  # the common case early in training: no draws, no copies
            return images
        geometry, colour = self.sample_transforms(images.shape, generator, images.device, p)
        images = _resample(images, geometry)
        return _recolour(images, colour)

    def sample_transforms(self, shape, generator: torch.Generator | None = None, device=None,
                          p: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw one batch's transforms for images of `shape` (B, C, H, W).

        Returns (geometry, colour) on the generator's device (else `device`, default CPU), float32:
        geometry (B, 3, 3) maps each output pixel to the input pixel it reads (pixel units, origin at the
        image centre, y down); colour (B, 4, 4) is the affine map on (R, G, B, 1), or on (grey, ., ., 1)
        for one channel. Geometry is drawn first, so a pipe with colour off draws the same geometry.
        """
        batch, channels, height, width = shape
        p = float(self.p) if p is None else p
        draws = _Draws(batch, generator, device if device is not None else "cpu")
        return self._geometry(draws, p, height, width), self._colour(draws, p, rgb=channels != 1)

    def _geometry(self, draws: _Draws, p: float, height: int, width: int) -> torch.Tensor:
        # G maps output coordinates back to input ones, so each transform T enters as G = G @ T^-1 and the
        # forward order (flip, quarter turn, shift, scale, rotate, aniso, rotate, shift) is kept
        m = self.multipliers
        batch, dev = draws.batch, draws.device
        G = torch.eye(3, device=dev).repeat(batch, 1, 1)
        ones = torch.ones(batch, device=dev)
        if m["xflip"] > 0:
            flip = draws.chosen(m["xflip"] * p) & (draws.uniform() < 0.5)
            G = G @ _scale2d(1.0 - 2.0 * flip.float(), ones)
        if m["rotate90"] > 0:
            quarter = torch.floor(draws.uniform() * 4).long().clamp(max=3)
            quarter = torch.where(draws.chosen(m["rotate90"] * p), quarter, 0)
            cos = torch.tensor(_QUARTER_COS, device=dev)[quarter]
            sin = torch.tensor(_QUARTER_SIN, device=dev)[quarter]
            G = G @ _rotate2d(cos, -sin)
        if m["xint"] > 0:
            shift = (draws.uniform(2) * 2 - 1) * XINT_MAX
            shift = torch.where(draws.chosen(m["xint"] * p)[:, None], shift, 0.0)
            G = G @ _translate2d(-torch.round(shift[:, 0] * width), -torch.round(shift[:, 1] * height))
        if m["scale"] > 0:
            s = torch.where(draws.chosen(m["scale"] * p), torch.exp2(draws.normal() * SCALE_STD), 1.0)
            G = G @ _scale2d(1 / s, 1 / s)
        # two rotations, each with probability 1 - sqrt(1 - p), so that P(any rotation) = p
        p_rotate = 1 - math.sqrt(1 - min(m["rotate"] * p, 1.0))
        if m["rotate"] > 0:
            G = G @ self._rotation(draws, p_rotate)
        if m["aniso"] > 0:
            s = torch.where(draws.chosen(m["aniso"] * p), torch.exp2(draws.normal() * ANISO_STD), 1.0)
            G = G @ _scale2d(1 / s, s)
        if m["rotate"] > 0:
            G = G @ self._rotation(draws, p_rotate)
        if m["xfrac"] > 0:
            shift = torch.where(draws.chosen(m["xfrac"] * p)[:, None], draws.normal(2) * XFRAC_STD, 0.0)
            G = G @ _translate2d(-shift[:, 0] * width, -shift[:, 1] * height)
        return G

    @staticmethod
    def _rotation(draws: _Draws, probability: float) -> torch.Tensor:
        theta = (draws.uniform() * 2 - 1) * math.pi * ROTATE_MAX
        theta = torch.where(draws.chosen(probability), theta, 0.0)
        return _rotate2d(torch.cos(-theta), torch.sin(-theta))

    def _colour(self, draws: _Draws, p: float, rgb: bool) -> torch.Tensor:
        # each transform T is applied after the previous ones: C = T @ C
        m = self.multipliers
        batch, dev = draws.batch, draws.device
        C = torch.eye(4, device=dev).repeat(batch, 1, 1)
        if m["brightness"] > 0:
            b = torch.where(draws.chosen(m["brightness"] * p), draws.normal() * BRIGHTNESS_STD, 0.0)
            shift = torch.eye(4, device=dev).repeat(batch, 1, 1)
            shift[:, :3, 3] = b[:, None]
            C = shift @ C
        if m["contrast"] > 0:
            c = torch.where(draws.chosen(m["contrast"] * p), torch.exp2(draws.normal() * CONTRAST_STD), 1.0)
            C = _embed3(c[:, None, None] * torch.eye(3, device=dev)) @ C
        if not rgb:  # one channel is its own luma: flipping, rotating or saturating around it means nothing
            return C
        axis = torch.full((3,), 1 / math.sqrt(3), device=dev)  # the paper's luma axis, grey = (1, 1, 1)
        luma = torch.outer(axis, axis)  # projection onto the luma axis
        eye = torch.eye(3, device=dev)
        if m["lumaflip"] > 0:
            flip = draws.chosen(m["lumaflip"] * p) & (draws.uniform() < 0.5)
            C = _embed3(eye - 2 * luma * flip.float()[:, None, None]) @ C  # Householder reflection
        if m["hue"] > 0:
            theta = (draws.uniform() * 2 - 1) * math.pi * HUE_MAX
            theta = torch.where(draws.chosen(m["hue"] * p), theta, 0.0)
            C = _embed3(_rotate_about(axis, theta)) @ C
        if m["saturation"] > 0:
            s = torch.where(draws.chosen(m["saturation"] * p), torch.exp2(draws.normal() * SATURATION_STD), 1.0)
            C = _embed3(luma + (eye - luma) * s[:, None, None]) @ C
        return C


def _rotate_about(axis: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """(B,) angles about a unit 3-vector -> (B, 3, 3) rotations (Rodrigues)."""
    x, y, z = axis.tolist()
    cross = torch.tensor([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]], device=axis.device)
    cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    return cos * torch.eye(3, device=axis.device) + sin * cross + (1 - cos) * torch.outer(axis, axis)


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise ValueError(f"AugmentPipe expects a floating-point (B, C, H, W) batch; got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    if images.shape[1] not in (1, 3, 4):
        raise AugmentError(f"ADA augments images with 1 (grey), 3 (RGB) or 4 (RGBA) channels; these have "
                           f"{images.shape[1]}. Train without ADA, or prepare the dataset as grey, RGB or RGBA.")


def _resample(images: torch.Tensor, geometry: torch.Tensor) -> torch.Tensor:
    """Warp each image by its (3, 3) matrix with one bilinear resampling, reflecting at the borders;
    samples whose matrix is the identity are passed through untouched (and not resampled at all)."""
    batch, channels, height, width = images.shape
    moved = (geometry != torch.eye(3, device=geometry.device)).flatten(1).any(dim=1)  # (B,)
    index = moved.nonzero().squeeze(1)
    if index.numel() == 0:
        return images
    # grid_sample's coordinates run from -1 to 1 across the image edges (align_corners=False), so pixel
    # coordinates centred on the image are scaled by 2 / size on the way in and back on the way out
    to_unit = torch.diag(torch.tensor([2 / width, 2 / height, 1.0], device=geometry.device))
    from_unit = torch.diag(torch.tensor([width / 2, height / 2, 1.0], device=geometry.device))
    theta = (to_unit @ geometry[index] @ from_unit)[:, :2, :].to(images.device)
    index, moved = index.to(images.device), moved.to(images.device)
    everything = index.numel() == batch
    # gather by mask: with two threads on a busy CPU, index_select's backward (an index_add) took ~36 ms
    # on 32x3x64x64 against ~2 ms for the mask's
    source = images if everything else images[moved]
    grid = F.affine_grid(theta, [index.numel(), channels, height, width], align_corners=False)
    warped = F.grid_sample(source, grid.to(images.dtype), mode="bilinear", padding_mode="reflection",
                           align_corners=False)
    return warped if everything else images.index_copy(0, index, warped)


def _recolour(images: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """Apply each sample's (4, 4) colour matrix to RGB (alpha, if any, keeps its values) or to grey."""
    if bool((colour == torch.eye(4, device=colour.device)).all()):
        return images
    colour = colour.to(device=images.device, dtype=images.dtype)
    if images.shape[1] == 1:
        return images * colour[:, 0, 0, None, None, None] + colour[:, 0, 3, None, None, None]
    rgb = torch.einsum("bij,bjhw->bihw", colour[:, :3, :3], images[:, :3]) + colour[:, :3, 3, None, None]
    return rgb if images.shape[1] == 3 else torch.cat([rgb, images[:, 3:]], dim=1)


class AdaController:
    """Moves `pipe.p` so that r_t = E[sign(D(real))], D's overfitting heuristic, stays near `target`.

    Call `accumulate` with each batch's sum of sign(D(real)) and `step` after every training step; every
    `interval` steps p moves by sign(r_t - target) * batch_size * interval / (speed_kimg * 1000), so it
    can go from 0 to 1 in `speed_kimg` thousand images. `target=None` keeps p fixed (r_t is still
    reported).
    """

    def __init__(self, pipe: AugmentPipe, target: float | None = 0.6, interval: int = 4,
                 speed_kimg: float = 500.0):
        if target is not None and not 0.0 <= target < 1.0:
            raise ValueError(f"AdaController: target is the wanted E[sign(D(real))], in [0, 1); got {target!r}")
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f"AdaController: interval must be a whole number of steps >= 1; got {interval!r}")
        if not speed_kimg > 0:
            raise ValueError(f"AdaController: speed_kimg must be > 0; got {speed_kimg!r}")
        self.pipe = pipe
        self.target = target
        self.interval = interval
        self.speed_kimg = float(speed_kimg)
        self._sign_sum: torch.Tensor | None = None  # kept on D's device: no host sync per step
        self._count = 0
        self._steps = 0

    @property
    def p(self) -> float:
        return float(self.pipe.p)

    def accumulate(self, sign_sum: torch.Tensor, count: int) -> None:
        """Add one batch's sum of sign(D(real logits)) over `count` logits."""
        if not isinstance(sign_sum, torch.Tensor) or sign_sum.numel() != 1:
            raise ValueError("AdaController.accumulate takes the batch's sum of sign(D(real)) as a one-element "
                             "tensor, e.g. torch.sign(logits).sum()")
        if not isinstance(count, int) or count < 0:
            raise ValueError(f"AdaController.accumulate: count must be the number of logits summed; got {count!r}")
        value = sign_sum.detach().reshape(()).float()
        self._sign_sum = value if self._sign_sum is None else self._sign_sum + value
        self._count += count

    def step(self, batch_size: int, all_reduce: Callable[[torch.Tensor], torch.Tensor | None] | None = None,
             ) -> dict[str, float] | None:
        """After each training step; every `interval` steps adjust p and return {"ada_p", "r_t"}, else None.

        `batch_size` is the number of real images D saw in the step over all processes. `all_reduce` sums a
        tensor over processes, returning the sum or summing in place (torch.distributed.all_reduce); every
        process must call `step` so the collective matches, and all then move p alike.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"AdaController.step: batch_size must be a positive number of images; got {batch_size!r}")
        self._steps += 1
        if self._steps % self.interval:
            return None
        sign_sum, count = self._totals(all_reduce)
        self._sign_sum, self._count = None, 0
        if count == 0:
            if self.target is not None:
                raise ValueError("AdaController.step: no D(real) signs were accumulated in the last "
                                 f"{self.interval} steps; call accumulate() with each real batch's logits")
            return {"ada_p": self.p, "r_t": float("nan")}
        r_t = sign_sum / count
        if self.target is not None:
            adjust = math.copysign(1.0, r_t - self.target) if r_t != self.target else 0.0
            adjust *= batch_size * self.interval / (self.speed_kimg * 1000)
            with torch.no_grad():
                self.pipe.p.fill_(min(max(self.p + adjust, 0.0), 1.0))
        return {"ada_p": self.p, "r_t": r_t}

    def _totals(self, all_reduce) -> tuple[float, int]:
        if all_reduce is None and self._sign_sum is None:
            return 0.0, self._count
        device = self._sign_sum.device if self._sign_sum is not None else self.pipe.p.device
        sign_sum = self._sign_sum if self._sign_sum is not None else torch.zeros((), device=device)
        # one message for both, float32 counts are exact far beyond any interval's logits
        totals = torch.stack([sign_sum, torch.tensor(float(self._count), device=device)])
        if all_reduce is not None:
            reduced = all_reduce(totals)
            totals = reduced if isinstance(reduced, torch.Tensor) else totals
        sign_sum, count = totals.tolist()  # the one host sync, once per interval
        return sign_sum, round(count)

    def state_dict(self) -> dict:
        """p, the partial interval's accumulators and the step counter: plain numbers for the checkpoint."""
        return {"p": self.p, "sign_sum": float(self._sign_sum) if self._sign_sum is not None else 0.0,
                "count": self._count, "steps": self._steps}

    def load_state_dict(self, state: dict) -> None:
        expected = {"p", "sign_sum", "count", "steps"}
        if set(state) != expected:
            raise ValueError(f"AdaController state must have exactly the keys {sorted(expected)}; "
                             f"got {sorted(state)}")
        with torch.no_grad():
            self.pipe.p.fill_(float(state["p"]))
        self._count = int(state["count"])
        self._steps = int(state["steps"])
        self._sign_sum = (torch.tensor(float(state["sign_sum"]), device=self.pipe.p.device)
                          if self._count else None)
