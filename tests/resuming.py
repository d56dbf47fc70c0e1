"""Shared scaffolding for the training and resume tests: photos to prepare, a callback that stops a run
part way, and the comparison of two final checkpoints (a resumed run's against an uninterrupted one's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def square_photos(folder: Path, count: int = 12, size: int = 16, noise: int = 8) -> Path:
    """Distinct colour images: a coloured square on another colour, with noise up to ±`noise` (0: none)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        rng = np.random.default_rng(i)
        image = np.empty((size, size, 3), np.uint8)
        image[:] = rng.integers(0, 256, 3)
        image[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = rng.integers(0, 256, 3)
        if noise:  # drawn only when wanted, so that noise=0 leaves the draws (and the files) of a plain square
            image = np.clip(image.astype(int) + rng.integers(-noise, noise + 1, image.shape), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{i}.png")
    return folder


class StopAt:
    """A callback that stops training at its first tick at or past `images` (as Ctrl-C would, the budget kept)."""

    name = "stop-at"

    def __init__(self, images: int):
        self.images = images

    def on_tick(self, trainer, log, final) -> bool:
        return trainer.images_seen >= self.images

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass


def assert_same_tensors(a: dict, b: dict, where: str) -> None:
    """Each tensor of `a` equal to the one under its key in `b`; a failure names `where.key`."""
    for key, value in a.items():
        assert torch.equal(b[key], value), f"{where}.{key}"


def assert_same_checkpoints(a: dict, b: dict) -> None:
    """Two checkpoints with the same weights of every network, the same optimiser state (Adam's moments and
    step counts, for the same parameters), the same random generator state and the same place in the data."""
    for role in a["networks"]:
        assert_same_tensors(a["networks"][role], b["networks"][role], role)
    for name, optimizer in a["optimizers"].items():
        assert optimizer["state"].keys() == b["optimizers"][name]["state"].keys(), name
        for index, moments in optimizer["state"].items():
            assert_same_tensors(moments, b["optimizers"][name]["state"][index], f"{name}.{index}")
    assert torch.equal(a["rng"], b["rng"])
    assert a["reader"] == b["reader"]
