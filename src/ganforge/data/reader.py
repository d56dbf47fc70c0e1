"""Random batches from a prepared dataset, as tensors, fast enough never to be the bottleneck.

Each epoch is a seeded permutation; the position within it is the whole state, so a resumed run
sees exactly the batches an uninterrupted run would have seen. Indices within a batch are
sorted before the gather (the memory-mapped file is then read in order) — the batch is the same
set of images either way. Under data parallelism each rank takes its own slice of a global batch.
"""

from __future__ import annotations

import numpy as np
import torch

from ganforge.data.format import PreparedDataset
from ganforge.errors import GanforgeError


class BatchSizeError(GanforgeError, ValueError):
    """A batch that does not fit the dataset: the user's setting, so a sentence and not a traceback."""


class BatchReader:
    """Endless random batches: `images` float (B, C, H, W) in [-1, 1] and `labels` long (B,) or None.

    For point datasets `images` is float (B, 2) instead. A dataset prepared with attributes adds a third
    item, `attributes` float (B, A): each image's raw values (categorical ones as value indices), in the
    order of `dataset.attribute_specs`.
    """

    def __init__(
        self,
        dataset: PreparedDataset | str,
        batch_size: int,
        *,
        flip: bool = False,
        seed: int = 0,
        device: str | torch.device = "cpu",
        rank: int = 0,
        world_size: int = 1,
    ):
        self.dataset = dataset if isinstance(dataset, PreparedDataset) else PreparedDataset(dataset)
        if self.dataset.kind in ("paired", "unpaired"):  # two arrays, not one: see data/pair_reader.py
            raise BatchSizeError(f"{self.dataset.path} is a {self.dataset.kind} dataset: read it with "
                                 "ganforge.data.pair_reader.make_reader, which yields (A, B) batches.")
        global_batch = batch_size * world_size
        if not 1 <= global_batch <= len(self.dataset):
            raise BatchSizeError(
                f"batch size {batch_size} x {world_size} process(es) does not fit a dataset of "
                f"{len(self.dataset)} items: use a batch size (batch_size=) of at most {len(self.dataset) // world_size}."
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        self.batch_size = batch_size
        self.flip = flip and self.dataset.kind == "images"
        # (1, 1, H, W) luminance pattern added to every image: the run's fingerprint (provenance.fingerprint);
        # set by the trainer once the run has its identity
        self.fingerprint: torch.Tensor | None = None
        self.seed = seed
        self.device = torch.device(device)
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.position = 0  # items of the current epoch's permutation already handed out (all ranks)
        self._order = self._permutation(0)
        self._data = self.dataset.points if self.dataset.kind == "points" else self.dataset.images
        self._attributes = None if self.dataset.attributes is None else torch.from_numpy(self.dataset.attributes)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))

    def __iter__(self):
        return self

    def __next__(self) -> tuple:
        global_batch = self.batch_size * self.world_size
        if self.position + global_batch > len(self._order):  # drop the ragged end of an epoch
            self.epoch += 1
            self.position = 0
            self._order = self._permutation(self.epoch)
        start = self.position + self.rank * self.batch_size
        index = np.sort(self._order[start : start + self.batch_size])
        flip_rng = np.random.default_rng([self.seed, self.epoch, self.position, self.rank, 1]) if self.flip else None
        self.position += global_batch
        return self._gather(index, flip_rng)

    def _gather(self, index: np.ndarray, flip_rng: np.random.Generator | None):
        batch = self._data[index]  # (B, H, W, C) uint8, or (B, 2) float32 points
        labels = None
        if self.dataset.labels is not None:
            labels = torch.from_numpy(self.dataset.labels[index]).to(self.device)
        if self.dataset.kind == "points":
            return torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.device), labels
        if self.flip:
            mirrored = flip_rng.random(len(index)) < 0.5
            batch[mirrored] = batch[mirrored, :, ::-1]
        images = torch.from_numpy(batch).to(self.device, non_blocking=True)
        # (B, H, W, C) -> (B, C, H, W); scaling on the device is cheaper than on the host for a GPU
        images = images.permute(0, 3, 1, 2).float().mul_(2.0 / 255.0).sub_(1.0)
        if self.fingerprint is not None:
            from ganforge.provenance.fingerprint import fingerprint_batch

            images = fingerprint_batch(images, self.fingerprint)
        if self._attributes is not None:
            return images.contiguous(), labels, self._attributes[torch.from_numpy(index)].to(self.device)  # (B, A)
        return images.contiguous(), labels

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch, self.position = int(state["seed"]), int(state["epoch"]), int(state["position"])
        self._order = self._permutation(self.epoch)

    @property
    def epoch_progress(self) -> float:
        """Fraction of the current epoch already seen."""
        return self.position / len(self._order)


def to_uint8_images(images: torch.Tensor) -> np.ndarray:
    """The inverse of the reader's scaling: float (B, C, H, W) in [-1, 1] to uint8 (B, H, W, C)."""
    pixels = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()
