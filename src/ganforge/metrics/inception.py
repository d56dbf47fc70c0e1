"""The FID feature network's input protocol, and the network ready for metrics.

The network itself, finding and verifying its weights (explicit path or `GANFORGE_INCEPTION`, the user
cache, a download from the canonical URL checked by sha1) and its CPU-fast rewrite live in
`ganforge.models.inception`, where training (the super-resolution feature loss) can use it too; the
names are re-exported here unchanged.

The input protocol is fixed and named `PROTOCOL`: uint8 RGB images, resized to 299x299 with bilinear
interpolation (half-pixel centres, no antialiasing: `F.interpolate(..., align_corners=False)`, what the
TensorFlow graph of the original FID code does), then scaled as (x - 128) / 128. Greyscale images are
repeated to three channels; an alpha channel is dropped.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from ganforge.models import inception as _network
from ganforge.models.inception import (  # noqa: F401  (re-exported: the names metrics and its tests use)
    _BLOCK_KIND, _FULL_BLOCKS, _FULL_BRANCHES, BN_EPS, FULL_FILE, FULL_SHA256_PREFIX, FULL_URL, TORCHSCRIPT_FILE,
    TORCHSCRIPT_SHA1, TORCHSCRIPT_URL, FIDInceptionV3, InceptionFile, InceptionWeightsError, _cache_dir, _rename_full,
    identify, read_weights)

PROTOCOL = "inception-2015-12-05/bilinear299"


def locate_inception(path: str | os.PathLike | None = None, **options) -> InceptionFile:
    """`ganforge.models.inception.locate_inception`, downloading from this module's TORCHSCRIPT_URL (read at
    each call, so a test can point it at a local server)."""
    return _network.locate_inception(path, url=TORCHSCRIPT_URL, **options)


def load_inception(path: str | os.PathLike | None = None, *, device: str | torch.device = "cpu",
                   verify: bool = True, download: bool = True, progress: bool = True) -> FIDInceptionV3:
    """Locate, verify and build the FID network (see `locate_inception`)."""
    file = locate_inception(path, download=download, progress=progress, verify=verify)
    return FIDInceptionV3(read_weights(file)).to(device)


def to_inception_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, C) images, C in {1, 3, 4} -> float (B, 3, 299, 299), by `PROTOCOL`."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[-1] not in (1, 3, 4):
        raise TypeError(f"Inception input must be uint8 (B, H, W, C) images with 1, 3 or 4 channels, "
                        f"got {images.dtype} {tuple(images.shape)}")
    x = images.permute(0, 3, 1, 2)  # (B, C, H, W)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = x[:, :3].float()  # an alpha channel is dropped
    if x.shape[-2:] != (299, 299):
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    return (x - 128.0) / 128.0
