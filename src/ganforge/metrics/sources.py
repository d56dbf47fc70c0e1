"""What a metric can read: an exported generator, a run folder, a prepared dataset, or a folder of images.

`open_source(path)` recognises the kind from the folder's contents and returns an `ImageSource` whose
`batches(count, ...)` yields uint8 (B, H, W, C) images. Generators are sampled with a seeded
`torch.Generator` (balanced classes when conditional), so a metric is repeatable.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ganforge.errors import GanforgeError
from ganforge.files import IMAGE_SUFFIXES



class SourceError(GanforgeError, ValueError):
    """A metric input that is missing or of a kind metrics cannot read."""


@dataclass
class ImageSource:
    kind: str  # "generator", "run", "dataset" or "folder"
    path: Path
    available: int | None  # how many images exist; None for a generator (as many as asked)
    _batches: Callable[[int, int, int], Iterator[np.ndarray]] = field(repr=False)
    digest: str | None = None  # identifies the images, for the real-statistics cache
    training_data: Path | None = None  # for generators and runs: the dataset they were trained on
    images_seen: int | None = None
    checkpoint: str | None = None

    def batches(self, count: int, batch_size: int = 64, seed: int = 0) -> Iterator[np.ndarray]:
        return self._batches(count, batch_size, seed)


def open_source(path: str | os.PathLike, *, which: str = "best", device: torch.device | str = "cpu") -> ImageSource:
    """Recognise what `path` is. For a run folder, `which` picks the 'best' checkpoint (falling back to the
    last when no evaluation chose one) or the 'last'."""
    path = Path(path).expanduser()
    if not path.exists():
        raise SourceError(f"{path} does not exist: give an exported generator, a run folder, a prepared dataset "
                          "or a folder of images.")
    if path.is_dir() and (path / "manifest.json").is_file():
        return _dataset_source(path)
    if path.is_dir() and (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        return _generator_source(path, device)
    if path.is_dir() and (path / "config.json").is_file() and not any(_image_files(path)):
        raise SourceError(f"{path} has a config.json but no model.safetensors: it is an incomplete export. Export "
                          "the run again (ganforge export RUN).")
    if path.is_dir() and (path / "checkpoints").is_dir():
        return _run_source(path, which, device)
    if path.is_dir():
        return _folder_source(path)
    raise SourceError(f"{path} is a file; metrics read a folder: an exported generator, a run, a prepared "
                      "dataset or a folder of images.")


# --- prepared datasets and folders -----------------------------------------------------------------


def _dataset_source(path: Path) -> ImageSource:
    from ganforge.data.format import PreparedDataset

    dataset = PreparedDataset(path)
    if dataset.images is None:
        raise SourceError(f"{path} is a point set; Inception metrics need images. For 2-D mixtures use "
                          "the mode-coverage figures (benchmarks/bench_modes.py).")

    def batches(count: int, batch_size: int, seed: int) -> Iterator[np.ndarray]:
        picks = _pick(len(dataset), count, seed)
        for start in range(0, len(picks), batch_size):
            # sorted within a batch so the memory-mapped reads go forward
            yield np.asarray(dataset.images[np.sort(picks[start:start + batch_size])])

    digest = hashlib.sha256((path / "manifest.json").read_bytes()).hexdigest()[:16]
    return ImageSource("dataset", path, len(dataset), batches, digest=digest)


def _pick(available: int, count: int, seed: int) -> np.ndarray:
    """`count` distinct indices in random order: any prefix is a random subset (FeatureStats keeps one)."""
    return np.random.default_rng(seed).permutation(available)[:count]


def _image_files(path: Path) -> Iterator[Path]:
    return (p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _read_rgb(file: Path) -> np.ndarray:
    """One image file as uint8 (H, W, 3); a sentence naming the file when it cannot be read."""
    from ganforge.generator import GeneratorError, read_image

    fix = "remove it, or run `ganforge prepare` on the folder, which skips and reports bad files"
    try:  # not turned by EXIF: the features, and the cached statistics, stay those of earlier versions
        return np.asarray(read_image(file, fix, orient=False).convert("RGB"))
    except GeneratorError as err:
        raise SourceError(str(err)) from None


def _folder_source(path: Path) -> ImageSource:
    files = sorted(_image_files(path))
    if not files:
        raise SourceError(f"{path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}), no prepared dataset "
                          "(manifest.json), no exported generator and no run.")

    def batches(count: int, batch_size: int, seed: int) -> Iterator[np.ndarray]:
        picks = _pick(len(files), count, seed)
        batch: list[np.ndarray] = []
        for index in picks:
            pixels = _read_rgb(files[index])
            if batch and pixels.shape != batch[0].shape:  # sizes differ: flush, each batch is one shape
                yield np.stack(batch)
                batch = []
            batch.append(pixels)
            if len(batch) == batch_size:
                yield np.stack(batch)
                batch = []
        if batch:
            yield np.stack(batch)

    listing = "\n".join(f"{p.relative_to(path)}\t{p.stat().st_size}\t{p.stat().st_mtime_ns}" for p in files)
    digest = hashlib.sha256(listing.encode()).hexdigest()[:16]
    return ImageSource("folder", path, len(files), batches, digest=digest)


# --- generators --------------------------------------------------------------------------------------


def _sampler(generator: torch.nn.Module, z_dim: int, classes: int, device) -> Callable:
    from ganforge.data.reader import to_uint8_images
    from ganforge.models.sampling import synthesize

    @torch.no_grad()
    def batches(count: int, batch_size: int, seed: int) -> Iterator[np.ndarray]:
        rng = torch.Generator().manual_seed(seed)
        for start in range(0, count, batch_size):
            n = min(batch_size, count - start)
            z = torch.randn(n, z_dim, generator=rng).to(device)
            labels = (torch.arange(start, start + n) % classes).to(device) if classes else None
            yield to_uint8_images(synthesize(generator, z, labels, batch_size=batch_size))

    return batches


def _generator_source(path: Path, device) -> ImageSource:
    from ganforge.export import load_exported

    generator, config = load_exported(path, device=device)  # explains a damaged folder
    model = config["config"]
    if not model.get("resolution"):
        raise SourceError(f"{path} generates points, not images; Inception metrics need images.")
    training = config.get("training", {})
    classes = model.get("num_classes", 0)
    return ImageSource("generator", path, None, _sampler(generator, model["z_dim"], classes, device),
                       training_data=Path(training["dataset"]) if training.get("dataset") else None,
                       images_seen=training.get("images_seen"), checkpoint=training.get("checkpoint"))


def run_checkpoint(run: Path, which: str = "best") -> tuple[Path, dict]:
    """The run's best checkpoint (or the last); see `train.checkpoint.run_checkpoint`."""
    from ganforge.train import checkpoint as ckpt

    try:
        return ckpt.run_checkpoint(run, which)
    except ckpt.CheckpointError as err:
        raise SourceError(str(err)) from None


def _run_source(path: Path, which: str, device) -> ImageSource:
    from ganforge.models import create_generator

    checkpoint, state = run_checkpoint(path, which)
    model = state["model_config"]
    if not model.get("resolution"):
        raise SourceError(f"{path} is a run on points; Inception metrics need images.")
    generator = create_generator(state["model_name"], model)
    generator.load_state_dict(state["G_ema"])
    generator = generator.to(device).eval()
    return ImageSource("run", path, None, _sampler(generator, model["z_dim"], model.get("num_classes", 0), device),
                       training_data=Path(state["config"]["data"]), images_seen=state["images_seen"],
                       checkpoint=checkpoint.name)
