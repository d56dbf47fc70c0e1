"""Artificial fingerprints (Yu et al. 2021): a mark rooted in the weights, not added after generation.

With `train ... fingerprint=on`, every real image the discriminator sees carries a faint keyed pattern:
a fine random texture (high-passed +-1 noise, 3 levels RMS, equally in R, G and B) at the image's own
size. The generator, learning to make
images D cannot tell from real ones, learns to make the pattern too, so its images carry it even when
someone runs the weights without ganforge. The run's identity (its model id) is made when training
starts, so the fingerprint and the later export share one id.

Detection is a correlation: the image's own fine texture (itself minus its blur, where a picture's
content is weak) projected on the pattern, divided by its spread, is a z-score, standard normal for an image without that fingerprint; `THRESHOLD` 5 gives one false
detection in about 3.5 million images per model tested. Unlike the mark, a fingerprint carries no seed:
it only says "made by this model".
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from ganforge.provenance.mark import _luma

STRENGTH = 3.0  # RMS of the pattern in 8-bit luminance levels
THRESHOLD = 5.0  # z-score above which an image carries a model's fingerprint
_BLUR = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16  # binomial 5-tap: what "smooth" means below


def _high_pass(x: torch.Tensor) -> torch.Tensor:
    """x minus its binomial blur (reflect padding): the fine texture, where a picture's own content is weak."""
    k = _BLUR.to(x.dtype)
    blurred = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="reflect"), k.view(1, 1, 1, 5))
    blurred = F.conv2d(F.pad(blurred, (0, 0, 2, 2), mode="reflect"), k.view(1, 1, 5, 1))
    return x - blurred


@functools.lru_cache(maxsize=64)
def _pattern(model_id: str, height: int, width: int) -> torch.Tensor:
    """(1, 1, H, W) keyed fine texture of RMS 1: high-passed +-1 noise."""
    rng = np.random.default_rng([int(model_id, 16), 0x66696E67, height, width])  # "fing"
    noise = torch.from_numpy(rng.choice([-1.0, 1.0], size=(1, 1, height, width))).float()
    texture = _high_pass(noise)
    return texture / texture.pow(2).mean().sqrt()


def pattern_image(model_id: str, height: int, width: int) -> torch.Tensor:
    """(1, 1, H, W) luminance change, in 8-bit levels, that the fingerprint adds to an image."""
    return _pattern(model_id, height, width) * STRENGTH


def fingerprint_batch(images: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """Real images in [-1, 1] (B, C, H, W) with the fingerprint added to each colour channel (not alpha)."""
    change = (pattern * (2 / 255)).to(images.device, images.dtype)
    colour = min(images.shape[1], 3)
    out = images.clone()
    out[:, :colour] = (images[:, :colour] + change).clamp(-1, 1)
    return out


def scores(images: np.ndarray, model_id: str) -> np.ndarray:
    """z-scores (B,) of `model_id`'s fingerprint in uint8 images (B, H, W, C): the fine texture's projection on
    the pattern over its own spread, about standard normal for an image without that fingerprint."""
    h, w = images.shape[1:3]
    x = _luma(torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2).float())
    residual = _high_pass(x).flatten(1)  # (B, H*W)
    unit = _high_pass(_pattern(model_id, h, w)).flatten()
    unit = unit / unit.norm()
    spread = residual.pow(2).mean(1).sqrt().clamp_min(1e-6)
    return ((residual * unit).sum(1) / spread).numpy()
