"""Reading paired and unpaired prepared datasets (kinds "paired" and "unpaired", see data/paired.py for
how they are made): `inspect`'s summary lines and contact sheet, and the batch readers.

`PairedReader` yields (A, B) batches with one random flip, crop and quarter turn for both; `UnpairedReader` yields A
and B batches from two independent orders. `make_reader` picks the reader for a kind.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ganforge.data.format import PAIR_KINDS, DatasetError, PreparedDataset
from ganforge.data.reader import BatchReader, BatchSizeError


# --- inspecting ----------------------------------------------------------------------------------


def describe_sides(dataset: PreparedDataset) -> list[str]:
    """The summary lines of `ganforge inspect` for a paired or unpaired dataset."""
    sides, manifest = dataset.manifest["sides"], dataset.manifest
    how = {"name": "matched by file name", "side-by-side": "split from side-by-side AB images",
           "derive": f"A derived from B ({(manifest.get('derive') or {}).get('text')})",
           "unpaired": "two independent sets"}.get(manifest.get("pairing"), manifest.get("pairing"))
    head = f"  paired: {len(dataset):,} pairs, {how}" if dataset.kind == "paired" else f"  unpaired: {how}"
    lines = [head]
    for side in ("a", "b"):
        info = sides[side]
        lines.append(f"  {side.upper()}: {info['count']:,} images, {info['resolution']}x{info['resolution']}, "
                     f"{info['channels']} channel(s), from {info['source']}")
    return lines


def _drawable(array: np.ndarray, resolution: int, colours: np.ndarray | None) -> np.ndarray:
    """uint8 (N, h, w, C) -> (N, R, R, 3 or 4): label maps in their colours, small A enlarged (nearest)."""
    if colours is not None:
        array = colours[array[..., 0]]
    scale = resolution // array.shape[1]
    array = array.repeat(scale, axis=1).repeat(scale, axis=2)
    return np.repeat(array, 3, axis=3) if array.shape[-1] == 1 else array


def pairs_sheet(dataset: PreparedDataset, count: int, rng: np.random.Generator):
    """A contact sheet: each pair as A | B (paired), or a grid of A beside a grid of B (unpaired)."""
    from ganforge.pictures import image_grid

    derive_info = dataset.manifest.get("derive") or {}
    colours = np.asarray(derive_info["colours_rgb"], np.uint8) if "colours_rgb" in derive_info else None
    resolution = dataset.resolution

    def picks(array):
        return np.sort(rng.choice(len(array), size=min(count, len(array)), replace=False))

    if dataset.kind == "paired":
        index = picks(dataset.a)
        a, b = _drawable(np.asarray(dataset.a[index]), resolution, colours), _drawable(np.asarray(dataset.b[index]), resolution, None)
        channels = max(a.shape[-1], b.shape[-1])
        a, b = (x if x.shape[-1] == channels else np.concatenate([x, np.full(x.shape[:-1] + (1,), 255, np.uint8)], -1)
                for x in (a, b))
        gap = np.full(a.shape[:2] + (1, channels), 255, np.uint8)
        return image_grid(np.concatenate([a, gap, b], axis=2))
    grids = [image_grid(_drawable(np.asarray(side[picks(side)]), resolution, None).astype(np.uint8)[..., :3])
             for side in (dataset.a, dataset.b)]
    height = max(g.height for g in grids)
    sheet = Image.new("RGB", (grids[0].width + grids[1].width + 16, height), "white")
    sheet.paste(grids[0], (0, 0))
    sheet.paste(grids[1], (grids[0].width + 16, 0))
    return sheet


# --- reading -------------------------------------------------------------------------------------


class _Order:
    """A seeded permutation per epoch and the position in it: the whole resume state of one side."""

    def __init__(self, count: int, seed: int, stream: tuple[int, ...] = ()):
        self.count, self.seed, self.stream = count, seed, stream
        self.epoch, self.position = 0, 0
        self.order = self._permutation()

    def _permutation(self) -> np.ndarray:
        return np.random.default_rng([self.seed, *self.stream, self.epoch]).permutation(self.count)

    def take(self, batch_size: int, world_size: int, rank: int) -> tuple[np.ndarray, np.random.Generator]:
        """The sorted indices of this rank's share of the next global batch, and its augmentation draws."""
        if self.position + batch_size * world_size > self.count:  # drop the ragged end of an epoch
            self.epoch, self.position = self.epoch + 1, 0
            self.order = self._permutation()
        start = self.position + rank * batch_size
        index = np.sort(self.order[start : start + batch_size])
        rng = np.random.default_rng([self.seed, *self.stream, self.epoch, self.position, rank, 1])
        self.position += batch_size * world_size
        return index, rng

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch, self.position = int(state["seed"]), int(state["epoch"]), int(state["position"])
        self.order = self._permutation()


def _augment(sides: list[np.ndarray], scales: list[int], rng: np.random.Generator, flip: bool,
             crop: int | None, rotate: bool = False) -> list[np.ndarray]:
    """One horizontal flip, one crop and (with `rotate`) one quarter turn (0, 90, 180 or 270 degrees) per
    item, the same for every array in `sides`.

    `scales[i]` is how many B pixels one pixel of sides[i] covers (a downscaled A: the factor), so a
    crop of `crop` B pixels at (y, x) is a crop of crop / scale at (y / scale, x / scale) there."""
    n = len(sides[0])
    mirrored = rng.random(n) < 0.5 if flip else np.zeros(n, bool)
    if crop is not None:
        step = max(scales)
        full = sides[scales.index(1)].shape[1] if 1 in scales else sides[0].shape[1] * scales[0]
        offsets = rng.integers(0, (full - crop) // step + 1, size=(n, 2)) * step  # (y, x) in B pixels
    turns = rng.integers(0, 4, n) if rotate else np.zeros(n, int)  # drawn last: without rotate, the same draws
    out = []
    for array, scale in zip(sides, scales):
        array = array.copy()
        array[mirrored] = array[mirrored, :, ::-1]
        if crop is not None:
            size = crop // scale
            array = np.stack([array[k, y // scale : y // scale + size, x // scale : x // scale + size]
                              for k, (y, x) in enumerate(offsets)])
        for k in (1, 2, 3):
            array[turns == k] = np.rot90(array[turns == k], k, axes=(1, 2))  # square images: the shape stays
        out.append(array)
    return out


def _to_tensor(batch: np.ndarray, device: torch.device, labels: bool = False) -> torch.Tensor:
    if labels:  # a label map: class indices, not intensities
        return torch.from_numpy(np.ascontiguousarray(batch[..., 0])).to(device).long()  # (B, H, W)
    images = torch.from_numpy(np.ascontiguousarray(batch)).to(device, non_blocking=True)
    return images.permute(0, 3, 1, 2).float().mul_(2.0 / 255.0).sub_(1.0).contiguous()  # (B, C, H, W)


def _open(dataset, kind: str) -> PreparedDataset:
    dataset = dataset if isinstance(dataset, PreparedDataset) else PreparedDataset(dataset)
    if dataset.kind != kind:
        reader = {"paired": "PairedReader", "unpaired": "UnpairedReader"}.get(dataset.kind, "BatchReader")
        raise DatasetError(f"{dataset.path} is a {dataset.kind} dataset, not {kind}: read it with {reader} "
                           "(make_reader picks the reader for any kind).")
    return dataset


def _check_crop(crop, resolution: int, factor: int) -> int | None:
    if crop is None:
        return None
    if isinstance(crop, bool) or not isinstance(crop, (int, np.integer)) or not 1 <= crop <= resolution or crop % factor:
        need = f" and a multiple of {factor} (A is {factor} times smaller)" if factor > 1 else ""
        raise BatchSizeError(f"crop must be a whole number of pixels from 1 to {resolution}{need}, not {crop!r}.")
    return int(crop)


def _check_batch(batch_size: int, world_size: int, count: int, what: str) -> None:
    if not 1 <= batch_size * world_size <= count:
        raise BatchSizeError(f"batch size {batch_size} x {world_size} process(es) does not fit {what} of {count} "
                             f"images: use a batch size (batch_size=) of at most {count // world_size}.")


class PairedReader:
    """Endless random (A, B) batches of a paired dataset, aligned: the same items, flips and crops on both.

    A is float (B, C_A, H_A, W_A) in [-1, 1] (for a `labels:K` dataset: long (B, H_A, W_A), values
    0..K-1), B float (B, C_B, H, W) in [-1, 1]; H_A = H / factor for `downscale:factor`, else H.
    `crop` is a random square crop of that many B pixels (A's crop covers the same area).
    """

    def __init__(self, dataset, batch_size: int, *, flip: bool = False, crop: int | None = None, seed: int = 0,
                 device="cpu", rank: int = 0, world_size: int = 1, rotate: bool = False):
        self.dataset = _open(dataset, "paired")
        self.rotate = rotate
        _check_batch(batch_size, world_size, len(self.dataset), "a dataset")
        self.factor = self.dataset.resolution // self.dataset.a.shape[1]
        self.crop = _check_crop(crop, self.dataset.resolution, self.factor)
        self.batch_size, self.flip, self.rank, self.world_size = batch_size, flip, rank, world_size
        self.device = torch.device(device)
        self.labels_a = (self.dataset.manifest.get("derive") or {}).get("mode") == "labels"
        self._order = _Order(len(self.dataset), seed)

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        index, rng = self._order.take(self.batch_size, self.world_size, self.rank)
        a, b = _augment([self.dataset.a[index], self.dataset.b[index]], [self.factor, 1], rng, self.flip, self.crop,
                        self.rotate)
        return _to_tensor(a, self.device, self.labels_a), _to_tensor(b, self.device)

    def state_dict(self) -> dict:
        return self._order.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self._order.load_state_dict(state)


class UnpairedReader:
    """Endless (A, B) batches of an unpaired dataset: two independent orders, flips and crops.

    A float (B, C_A, H, W) and B float (B, C_B, H, W), both in [-1, 1]. Each side has its own epoch and
    position; `state_dict()` holds both, so a resumed run sees exactly the batches it would have seen.
    """

    def __init__(self, dataset, batch_size: int, *, flip: bool = False, crop: int | None = None, seed: int = 0,
                 device="cpu", rank: int = 0, world_size: int = 1, rotate: bool = False):
        self.dataset = _open(dataset, "unpaired")
        self.rotate = rotate
        for side in ("a", "b"):
            _check_batch(batch_size, world_size, len(getattr(self.dataset, side)), f"side {side.upper()}")
        self.crop = _check_crop(crop, self.dataset.resolution, 1)
        self.batch_size, self.flip, self.rank, self.world_size = batch_size, flip, rank, world_size
        self.device = torch.device(device)
        self._orders = {side: _Order(len(getattr(self.dataset, side)), seed, (k,)) for k, side in enumerate("ab")}

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        out = []
        for side in ("a", "b"):
            index, rng = self._orders[side].take(self.batch_size, self.world_size, self.rank)
            (pixels,) = _augment([getattr(self.dataset, side)[index]], [1], rng, self.flip, self.crop, self.rotate)
            out.append(_to_tensor(pixels, self.device))
        return out[0], out[1]

    def state_dict(self) -> dict:
        return {side: order.state_dict() for side, order in self._orders.items()}

    def load_state_dict(self, state: dict) -> None:
        for side, order in self._orders.items():
            order.load_state_dict(state[side])


def make_reader(dataset, batch_size: int, **options):
    """The reader for a dataset's kind: BatchReader (images, points), PairedReader or UnpairedReader."""
    dataset = dataset if isinstance(dataset, PreparedDataset) else PreparedDataset(dataset)
    if dataset.kind in PAIR_KINDS:
        return (PairedReader if dataset.kind == "paired" else UnpairedReader)(dataset, batch_size, **options)
    if options.pop("crop", None) is not None:
        raise BatchSizeError(f"crop is for paired and unpaired datasets; {dataset.path} is a {dataset.kind} dataset.")
    if options.pop("rotate", False):
        raise BatchSizeError(f"rotate is for paired and unpaired datasets; {dataset.path} is a {dataset.kind} dataset.")
    return BatchReader(dataset, batch_size, **options)
