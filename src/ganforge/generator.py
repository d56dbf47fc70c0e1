"""`Generator`: an exported generator folder, loaded for use — the one object sampling, exploring,
metrics and the server share.

    gen = Generator.from_pretrained("runs/00003-textiles-dcgan/generator")   # CPU or GPU, no pickle
    images = gen.sample(seeds=[1, 2, 3], truncation=0.8, label="cat")        # PIL images
    write_samples(gen, parse_seeds("0-99999"), "samples")                    # streamed to PNG files

Latents are drawn per seed (`torch.Generator().manual_seed(seed)` on the CPU, then moved to the
device), so a seed gives the same latent wherever it sits in a batch, and the same image on the same
device in every run. Generation runs in eval mode (batch norm uses its running statistics), so an
image never depends on the others in its batch. That is what lets `generate` and `write_samples`
work a batch at a time: memory stays flat however many images are asked for.

Truncation pulls samples toward the typical image: StyleGAN2 moves its w toward the tracked mean w
(for the first `cutoff` layers, all by default), other generators scale the Gaussian latent (psi * z).
Below 1 it trades variety for typical-looking images (see `models.sampling`).
"""

from __future__ import annotations

import itertools
import json
import numbers
import os
import re
import shlex
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganforge.device import choose_device  # noqa: F401  (re-exported: callers pick devices through here)
from ganforge.errors import GeneratorError
from ganforge.files import TMP_SUFFIX
from ganforge.seeds import MAX_SEED, Seeds, check_seed, first_seeds, parse_seeds  # noqa: F401  (re-exported)

GRID_MAX = 256  # a grid shows at most this many images (16 x 16): more would be too small to see
# Pillow's own decompression-bomb threshold (2 x 89.5 MP), which prepare also uses by default. Checked
# here from the header, because preparation lifts Pillow's global guard in any process that imports it.
MAX_PIXELS = 178_956_970
_SEED_FILE = re.compile(r"seed([0-9]+)\.png")


# --- the generator -----------------------------------------------------------------------------------


class Generator:
    """A loaded generator: its module, config, and the conveniences around it."""

    def __init__(self, module: torch.nn.Module, config: dict, path: Path | None = None, mark: bool | None = None):
        # Channels-last activations: about 30 % faster sampling on CPU for convolutional generators;
        # only 4-D weights change layout, so point (MLP) generators are untouched.
        self.module = module.eval().requires_grad_(False).to(memory_format=torch.channels_last)
        self.config = config
        self.path = path
        if config.get("task") == "image-to-image":
            raise GeneratorError(f"{path or 'This model'} is an image-to-image model: it turns images into images and "
                                 "draws none from seeds. Use `ganforge translate MODEL INPUT... --out DIR` (or "
                                 "ganforge.Translator).")
        model = config["config"]
        self.z_dim: int = model["z_dim"]
        self.resolution: int | None = model.get("resolution")
        self.channels: int | None = model.get("channels")
        self.num_classes: int = model.get("num_classes", 0)
        self.classes: list[str] | None = config.get("classes")
        # Every image leaves with the provenance mark (and a signature when the owner's key is here);
        # mark=False, for the owner of a private model only, switches it off.
        from ganforge.provenance.stamp import Stamp

        self.stamp = Stamp.of(config, Path(path).name if path else str(config.get("architecture")), mark)

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device = "auto",
                        mark: bool | None = None) -> "Generator":
        """Rebuild from `config.json` + `model.safetensors` alone (never pickle). `mark=False` switches the
        provenance mark off (a private model's owner only; a public release refuses)."""
        from ganforge.export import load_exported

        path = generator_folder(path)
        module, config = load_exported(path, device=choose_device(device))  # explains a damaged folder
        return cls(module, config, path, mark)

    # --- latents and labels ---------------------------------------------------------------------------

    def latents(self, seeds: Iterable[int]) -> torch.Tensor:
        """(len(seeds), z_dim) standard-normal latents, one per seed, on the CPU."""
        z = [torch.randn(self.z_dim, generator=torch.Generator().manual_seed(check_seed(s))) for s in seeds]
        if not z:
            raise GeneratorError("No seeds given: ask for at least one image.")
        return torch.stack(z)

    def label_index(self, label: int | str | None) -> int | None:
        """A class index from a name or an index; None for unconditional generators."""
        if self.num_classes == 0:
            if label is not None:
                raise GeneratorError("This generator is not class-conditional: leave out the class.")
            return None
        if label is None:
            return None
        if isinstance(label, str) and not label.strip().lstrip("-").isdigit():
            names = self.classes or []
            if label not in names:
                raise GeneratorError(f"Unknown class {label!r}; the classes are: "
                                     f"{', '.join(map(str, names)) or f'unnamed, 0-{self.num_classes - 1}'}.")
            return names.index(label)
        index = int(label)
        if not 0 <= index < self.num_classes:
            raise GeneratorError(f"Class {index} is out of range: this generator has {self.num_classes} classes (0-{self.num_classes - 1}).")
        return index

    def class_name(self, index: int) -> str | int:
        return self.classes[index] if self.classes else index

    def labels_for(self, count: int, label: int | str | None = None, seeds: Sequence[int] | None = None) -> torch.Tensor | None:
        """Labels for `count` images: the given class, else one chosen by each seed (reproducible)."""
        if self.num_classes == 0:
            self.label_index(label)
            return None
        index = self.label_index(label)
        if index is not None:
            return torch.full((count,), index, dtype=torch.long)
        seeds = list(seeds) if seeds is not None else list(range(count))
        return torch.tensor([s % self.num_classes for s in seeds], dtype=torch.long)

    # --- generation ----------------------------------------------------------------------------------

    @torch.inference_mode()
    def synthesize(self, z: torch.Tensor, labels: torch.Tensor | None = None, truncation: float = 1.0,
                   batch_size: int = 256, cutoff: int | None = None) -> torch.Tensor:
        """float (B, C, H, W) in [-1, 1] on the CPU, generated `batch_size` at a time (bounded memory)."""
        from ganforge.models.sampling import synthesize

        check_truncation(truncation)
        return synthesize(self.module, z, labels, truncation=truncation, cutoff=cutoff,
                          batch_size=check_batch_size(batch_size))

    def to_images(self, x: torch.Tensor, seeds: Sequence[int | None] | None = None) -> list[Image.Image]:
        """PIL images of (B, C, H, W) outputs, each carrying the provenance mark with its seed (None: an image
        of no single seed, such as a bred child)."""
        from ganforge.data.reader import to_uint8_images

        arrays = self.stamp.apply(np.ascontiguousarray(to_uint8_images(x)), seeds)
        return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arrays]

    def signed(self, image: Image.Image, seed: int | None = None) -> dict[str, str]:
        """The provenance text chunks for a PNG of `image` (a manifest, signed when the key is here)."""
        return self.stamp.metadata(np.asarray(image), seed)

    def generate(self, seeds: Iterable[int], *, truncation: float = 1.0, label: int | str | None = None,
                 batch_size: int = 64, cutoff: int | None = None) -> Iterator[tuple[int, int | None, Image.Image]]:
        """(seed, class or None, image) for each seed, made a batch at a time as they are taken, so memory
        stays flat whatever the number of seeds. The arguments are checked now, before the first image."""
        self.require_images("sample")
        check_truncation(truncation)
        check_batch_size(batch_size)
        index = self.label_index(label)
        self.check_cutoff(cutoff)
        return self._generate(iter(seeds), truncation, index, batch_size, cutoff)

    def check_cutoff(self, cutoff: int | None) -> None:
        """A layer cutoff for truncation: only style-based generators have layers to cut at."""
        if cutoff is None:
            return
        layers = getattr(self.module, "num_ws", None)
        if layers is None:
            raise GeneratorError(f"--truncation-cutoff needs a style-based generator (StyleGAN2); "
                                 f"{self.config.get('architecture')} truncates its whole latent.")
        if isinstance(cutoff, bool) or not isinstance(cutoff, int) or not 1 <= cutoff <= layers:
            raise GeneratorError(f"truncation cutoff {cutoff!r}: use a layer number from 1 to {layers} (the first layers "
                                 "hold the coarse styles: pose, shape; the last the fine ones: texture, colour).")

    def _generate(self, seeds: Iterator[int], truncation: float, index: int | None,
                  batch_size: int, cutoff: int | None = None) -> Iterator[tuple[int, int | None, Image.Image]]:
        while batch := [check_seed(s) for s in itertools.islice(seeds, batch_size)]:
            x, labels = self._seeded(batch, truncation, index, cutoff)
            yield from zip(batch, [None] * len(batch) if labels is None else labels.tolist(), self.to_images(x, batch))

    def _seeded(self, batch: list[int], truncation: float, index: int | None,
                cutoff: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        labels = None if self.num_classes == 0 else torch.tensor(
            [index if index is not None else s % self.num_classes for s in batch], dtype=torch.long)
        return self.synthesize(self.latents(batch), labels, truncation, len(batch), cutoff), labels

    def synthesize_seeds(self, seeds: Sequence[int], *, truncation: float = 1.0,
                         label: int | str | None = None) -> torch.Tensor:
        """float (B, C, H, W) in [-1, 1] of these seeds in one batch: what `generate` makes before `to_images`
        (so `to_images(x, seeds)` gives its images). For a server that marks and encodes beside the model."""
        self.require_images("sample")
        check_truncation(truncation)
        seeds = [check_seed(s) for s in seeds]
        return self._seeded(seeds, truncation, self.label_index(label), None)[0]

    def sample(self, seeds: Sequence[int] | None = None, *, count: int | None = None, truncation: float = 1.0,
               label: int | str | None = None, batch_size: int = 256) -> list[Image.Image]:
        """One PIL image per seed (or for seeds 0..count-1)."""
        if seeds is None:
            seeds = first_seeds(1 if count is None else count)
        images = [image for _, _, image in self.generate(seeds, truncation=truncation, label=label,
                                                         batch_size=batch_size)]
        if not images:
            raise GeneratorError("No seeds given: ask for at least one image.")
        return images

    def require_images(self, what: str) -> None:
        if not self.resolution or not self.channels:
            raise GeneratorError(f"{self.path or 'This generator'} makes 2-D points, not images: {what} needs an "
                                 "image generator.")

    def __repr__(self) -> str:
        classes = f", {self.num_classes} classes" if self.num_classes else ""
        makes = f"{self.resolution}px x {self.channels}" if self.resolution else "2-D points"
        return f"Generator({self.config.get('architecture')}, {makes}, z_dim={self.z_dim}{classes}, from {self.path})"


def stale_export(given: str | os.PathLike) -> str | None:
    """A warning when `given` is a run folder whose training went on after its generator was exported: its
    newest checkpoint has seen more images than the export and was written after it. None otherwise."""
    from ganforge.train.checkpoint import PATTERN, list_checkpoints

    run = Path(given).expanduser()
    config_file = run / "generator" / "config.json"
    if (run / "config.json").is_file() or not config_file.is_file():
        return None  # an exported folder itself, or no run folder
    checkpoints = list_checkpoints(run / "checkpoints")
    if not checkpoints:
        return None
    try:
        exported = json.loads(config_file.read_text(encoding="utf-8"))["training"]["images_seen"]
        newest = checkpoints[-1]
        seen = int(PATTERN.match(newest.name).group(1))
        later = newest.stat().st_mtime > config_file.stat().st_mtime
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(exported, numbers.Integral) or seen <= exported or not later:
        return None
    return (f"warning: {run / 'generator'} was exported after {exported:,} images, but training went on to "
            f"{seen:,} ({newest.name}): this uses the older export. Run `ganforge export {shlex.quote(str(run))}` again "
            "for the newer "
            "generator.")


def generator_folder(path: str | os.PathLike) -> Path:
    """The exported folder `path` names (a run folder names its export); a sentence when it is none."""
    path = Path(path).expanduser()
    if (path / "config.json").is_file():
        return path
    if (path / "generator" / "config.json").is_file():
        return path / "generator"  # a run folder that has been exported
    what = f"{path} is not an exported generator (it has no config.json)"
    if not path.exists():
        what = f"{path} does not exist"
    elif path.is_file():
        what = f"{path} is a file, not a folder"
    elif (path / "checkpoints").is_dir():
        raise GeneratorError(f"{path} is a run folder whose generator has not been exported yet: run "
                             f"`ganforge export {path}` first, then use {path} (or {path / 'generator'}).")
    elif (path / "manifest.json").is_file():
        what = f"{path} is a prepared dataset, not a generator: train on it, then export the run"
    raise GeneratorError(f"{what}. Give the folder `ganforge export RUN` wrote (RUN/generator, holding "
                         "config.json and model.safetensors).")


def check_truncation(truncation: float) -> float:
    if not isinstance(truncation, numbers.Real) or not 0 <= truncation <= 2:  # NaN fails the comparison too
        raise GeneratorError(f"truncation={truncation}: use a value in [0, 2]; 1 means none, 0.7 is typical, 0 gives "
                             "the one average image.")
    return truncation


def check_batch_size(batch_size: int) -> int:
    if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise GeneratorError(f"batch_size={batch_size}: use at least 1 (64 is usual; smaller needs less memory).")
    return batch_size


# --- writing images ----------------------------------------------------------------------------------


def check_output_folder(out: str | os.PathLike) -> Path:
    """`out` as a folder that is there or can be made; a sentence when a file stands in the way."""
    if not str(out).strip():
        raise GeneratorError("The output folder is an empty name: give a folder (--out), e.g. --out samples.")
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise GeneratorError(f"The output folder {out} is a file: give a folder (--out), which is made when missing.")
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise GeneratorError(f"The output folder {out} cannot be made: {blocking} is a file. Give another folder "
                             "(--out).")
    return out


def output_folder(out: str | os.PathLike) -> Path:
    """The folder to write into, made when missing; a sentence when the path cannot be a folder."""
    out = check_output_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def refuse_overwrite(folder: Path, names: Iterable[str], overwrite: bool = False) -> None:
    """A sentence naming the first of `names` already in `folder` (and how many more), unless `overwrite`."""
    if overwrite or not folder.is_dir():
        return
    existing = [name for name in names if (folder / name).exists()]
    if existing:
        overwrite_error(folder, existing[0], len(existing) - 1)


def overwrite_error(folder: Path, first: str, more: int = 0) -> None:
    others = f" (and {more:,} more of the files it would write)" if more else ""
    raise GeneratorError(f"{folder / first} already exists{others}: choose another --out, or add --overwrite to "
                         "replace them.")


def seed_file(seed: int) -> str:
    return f"seed{seed:06d}.png"


def _seeds_written_over(folder: Path, seeds: Sequence[int]) -> list[str]:
    """The seedNNNNNN.png files already in `folder` that seeds would write, from one directory listing
    (so a hundred million seeds cost no hundred million look-ups)."""
    taken = []
    with os.scandir(folder) as entries:
        for entry in entries:
            match = _SEED_FILE.fullmatch(entry.name)
            if match and seed_file(int(match.group(1))) == entry.name and int(match.group(1)) in seeds:
                taken.append(entry.name)
    return sorted(taken)


def read_image(path: str | os.PathLike, what_to_do: str, orient: bool = True) -> Image.Image:
    """An image file, decoded (and turned upright by its EXIF orientation, with `orient`); a sentence
    ending in `what_to_do` when it is not a file, too big to open safely, or damaged."""
    import warnings

    from PIL import ImageOps

    path = Path(path)
    if not path.is_file():
        raise GeneratorError(f"{path} is not a file: {what_to_do}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked below
            with Image.open(path) as opened:
                if opened.width * opened.height > MAX_PIXELS:
                    raise Image.DecompressionBombError(f"{opened.width}x{opened.height}")
                return ImageOps.exif_transpose(opened).copy() if orient else opened.copy()
    except Image.DecompressionBombError:
        raise GeneratorError(f"{path} has more than {MAX_PIXELS:,} pixels, too many to open safely (it could be a "
                             f"decompression bomb): {what_to_do}.") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:  # Pillow's ways of saying a file is damaged
        raise GeneratorError(f"{path} is not an image Pillow can read ({err}): {what_to_do}.") from None


def save_image(image: Image.Image, path: Path, format: str = "PNG", **options) -> None:
    """Write through `path + .tmp` and a rename, so an interrupted run never leaves half a PNG under the real
    name. No fsync: sample folders hold many small files, and a sync each would cost more than making them."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        image.save(tmp, format=format, **options)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_png(image: Image.Image, path: Path, metadata: dict[str, str]) -> None:
    """Write a PNG with text chunks (e.g. the seed), so an image file says where it came from."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in metadata.items():
        info.add_text(key, str(value))
    save_image(image, Path(path), pnginfo=info)


def grid(images: list[Image.Image], columns: int | None = None) -> Image.Image:
    from ganforge.pictures import image_grid

    arrays = np.stack([np.asarray(im.convert("RGB")) for im in images])
    return image_grid(arrays, columns=columns)


@dataclass
class Written:
    """What `write_samples` wrote."""

    folder: Path
    images: int  # seedNNNNNN.png files
    asked: int  # seeds asked for
    grid: Path | None = None
    grid_images: int = 0  # how many of the first images grid.png shows

    def summary(self) -> str:
        parts = [f"{self.images:,} image(s)"] if self.images else []
        if self.grid is not None:
            shown = f" (the first {self.grid_images:,} of {self.asked:,})" if self.grid_images < self.asked else ""
            parts.append(f"grid.png{shown}")
        return f"Wrote {' and '.join(parts)} to {self.folder}"


def write_samples(gen: Generator, seeds: Sequence[int], out: str | os.PathLike, *, truncation: float = 1.0,
                  label: int | str | None = None, files: bool = True, with_grid: bool = False,
                  grid_max: int = GRID_MAX, batch_size: int = 64, progress: bool = True,
                  overwrite: bool = False, cutoff: int | None = None) -> Written:
    """seedNNNNNN.png for each seed (with `files`), and grid.png of the first `grid_max` (with `with_grid`).

    Images are generated and written a batch at a time, so memory stays flat in the number of seeds;
    with only the grid asked for, only its images are made. The grid is written as soon as its images
    are there, so a long run stopped early still has it. A progress bar (rate, time left) appears when
    the run takes more than a second. Files already in `out` that it would write are refused before
    anything is written, unless `overwrite`."""
    from tqdm import tqdm

    if not files and not with_grid:
        raise GeneratorError("Nothing to write: ask for the image files, the grid, or both.")
    if grid_max < 1:
        raise GeneratorError(f"grid_max={grid_max}: a grid shows at least 1 image.")
    asked = len(seeds)
    wanted = seeds if files else itertools.islice(seeds, grid_max)
    images = gen.generate(wanted, truncation=truncation, label=label, batch_size=batch_size, cutoff=cutoff)  # checks them
    folder = check_output_folder(out)
    if not overwrite and folder.is_dir():
        taken = _seeds_written_over(folder, seeds) if files else []
        if with_grid and (folder / "grid.png").exists():
            taken.insert(0, "grid.png")
        if taken:
            overwrite_error(folder, taken[0], len(taken) - 1)
    folder = output_folder(out)
    result, shown = Written(folder, 0, asked), []
    meta = {"truncation": truncation, "generator": str(gen.path), "software": "ganforge",
            **({"truncation_cutoff": cutoff} if cutoff is not None else {})}
    total = asked if files else min(asked, grid_max)
    grid_size = min(asked, grid_max) if with_grid else 0
    with tqdm(total=total, unit="img", desc="Sampling", disable=not progress, delay=1, dynamic_ncols=True) as bar:
        for seed, index, image in images:
            if files:
                extra = {} if index is None else {"class": gen.class_name(index)}
                save_png(image, folder / seed_file(seed), {"seed": seed, **meta, **extra, **gen.signed(image, seed)})
                result.images += 1
            if len(shown) < grid_size:
                shown.append(image)
                if len(shown) == grid_size:
                    save_image(grid(shown), folder / "grid.png")
                    result.grid, result.grid_images = folder / "grid.png", len(shown)
            bar.update(1)
    return result
