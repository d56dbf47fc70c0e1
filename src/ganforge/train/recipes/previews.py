"""Pictures the image-to-image recipes share for the loop's preview hooks: a network run on fixed inputs in
batches, and pictures of pairs laid side by side (A | G(A) | B), several pairs to a row."""

from __future__ import annotations

import math

import numpy as np
import torch

from ganforge.pictures import image_grid


@torch.no_grad()
def translate(module, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """`module` on `x`, `batch_size` at a time on the module's device; float results on the CPU."""
    device = next(module.parameters()).device
    return torch.cat([module(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)])


def pairs_grid(columns: list[np.ndarray]):
    """uint8 (N, H, W, C) pictures side by side per item (a0 g0 b0 a1 g1 b1 ...), in one channel count,
    ceil(sqrt(N)) items to a row."""
    channels = 4 if any(c.shape[-1] == 4 for c in columns) else 3
    fitted = []
    for pictures in columns:
        if pictures.shape[-1] == 1:
            pictures = np.repeat(pictures, 3, axis=-1)
        if pictures.shape[-1] == 3 and channels == 4:
            pictures = np.concatenate([pictures, np.full(pictures.shape[:-1] + (1,), 255, np.uint8)], axis=-1)
        fitted.append(pictures)
    interleaved = np.stack(fitted, axis=1).reshape(-1, *fitted[0].shape[1:])
    per_row = math.ceil(math.sqrt(len(fitted[0])))
    return image_grid(interleaved, columns=per_row * len(columns))
