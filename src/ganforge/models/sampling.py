"""The one sampling path: training previews, periodic health, metrics, `sample` and the explore
commands all turn latents into images through `synthesize`, so they can never disagree.

Truncation pulls samples toward the generator's typical output: a style-based generator (one with a
`mapping` network) interpolates its w toward the tracked mean w, for the first `cutoff` layers (all
when None); other generators scale their Gaussian latent toward 0 (psi * z).
"""

from __future__ import annotations

import torch
from torch import nn


def truncates_in_w(module: nn.Module) -> bool:
    return hasattr(module, "mapping") and hasattr(module, "w_avg")


@torch.no_grad()
def synthesize(module: nn.Module, z: torch.Tensor, labels: torch.Tensor | None = None, *, truncation: float = 1.0,
               cutoff: int | None = None, batch_size: int = 256, attributes: torch.Tensor | None = None) -> torch.Tensor:
    """float32 (B, C, H, W) samples (or (B, dims) points) on the CPU, made `batch_size` at a time.

    `attributes`: raw values (B, A) for a generator conditioned on attributes (see `ganforge.attributes`);
    left out, such a generator draws every attribute at the data's average. Truncation never moves them."""
    device = next(module.parameters()).device
    style = truncates_in_w(module)
    out = []
    for start in range(0, len(z), batch_size):
        zs = z[start : start + batch_size].to(device)
        ls = None if labels is None else labels[start : start + batch_size].to(device)
        extra = {} if attributes is None else {"attributes": attributes[start : start + batch_size].to(device)}
        if style:
            x = module(zs, ls, truncation_psi=truncation, truncation_cutoff=cutoff, **extra)
        else:
            x = module(zs * truncation if truncation != 1 else zs, ls, **extra)
        out.append(x.float().cpu())
    return torch.cat(out) if out else torch.zeros(0)
