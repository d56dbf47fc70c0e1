"""DiffAugment (Zhao et al. 2020): differentiable augmentation of everything D sees, real and fake.

Small datasets let D memorise the real images; augmenting both real and generated images (with
operations G's gradient can flow through) keeps D honest without leaking augmentations into G's
output. Every draw goes through the `torch.Generator` passed in (the trainer's own stream), so a
resumed run augments exactly as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def make_augment(policy: str) -> Callable[..., torch.Tensor] | None:
    """"color,translation,cutout" -> a function on (B, C, H, W) batches; "" -> None."""
    names = [p for p in policy.split(",") if p]
    for name in names:
        if name not in POLICIES:
            raise ValueError(f"unknown augmentation {name!r}; use any of {', '.join(POLICIES)}")
    if not names:
        return None
    steps = [{"color": color, "translation": translation, "cutout": cutout}[n] for n in names]

    def augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.dim() != 4:  # points are not images
            return x
        for step in steps:
            x = step(x, generator)
        return x

    return augment


def _per_sample(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(x.shape[0], 1, 1, 1, device=x.device, generator=generator).to(x.dtype)


def color(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    x = x + (_per_sample(x, generator) - 0.5)  # brightness
    if x.shape[1] >= 3:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (_per_sample(x, generator) * 2) + mean  # saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_per_sample(x, generator) + 0.5) + mean  # contrast


def translation(x: torch.Tensor, generator: torch.Generator | None = None, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to `ratio` of its size, filling with zeros (mid-grey in [-1, 1])."""
    batch, _, height, width = x.shape
    max_dy, max_dx = int(height * ratio + 0.5), int(width * ratio + 0.5)
    dy = torch.randint(-max_dy, max_dy + 1, (batch, 1, 1), device=x.device, generator=generator)
    dx = torch.randint(-max_dx, max_dx + 1, (batch, 1, 1), device=x.device, generator=generator)
    rows = torch.arange(height, device=x.device).view(1, height, 1) + dy  # (B, H, 1) source rows
    cols = torch.arange(width, device=x.device).view(1, 1, width) + dx  # (B, 1, W) source columns
    # index into a copy padded by one pixel of zeros: out-of-range positions land on the padding
    padded = F.pad(x, (1, 1, 1, 1))
    rows = rows.clamp(-1, height) + 1
    cols = cols.clamp(-1, width) + 1
    flat = padded.flatten(2)  # (B, C, (H+2)(W+2))
    index = (rows * (width + 2) + cols).flatten(1)  # (B, H*W)
    out = flat.gather(2, index.unsqueeze(1).expand(-1, x.shape[1], -1))
    return out.view(batch, x.shape[1], height, width)


def cutout(x: torch.Tensor, generator: torch.Generator | None = None, ratio: float = 0.5) -> torch.Tensor:
    """Zero a random square of `ratio` x the image size in each image."""
    batch, _, height, width = x.shape
    cut_h, cut_w = int(height * ratio + 0.5), int(width * ratio + 0.5)
    top = torch.randint(0, height + (1 - cut_h % 2), (batch, 1, 1), device=x.device, generator=generator) - cut_h // 2
    left = torch.randint(0, width + (1 - cut_w % 2), (batch, 1, 1), device=x.device, generator=generator) - cut_w // 2
    rows = torch.arange(height, device=x.device).view(1, height, 1)
    cols = torch.arange(width, device=x.device).view(1, 1, width)
    inside = (rows >= top) & (rows < top + cut_h) & (cols >= left) & (cols < left + cut_w)  # (B, H, W)
    return x * (~inside).unsqueeze(1).to(x.dtype)
