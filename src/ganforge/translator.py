"""`Translator`: an exported image-to-image model (pix2pix, CycleGAN, super-resolution, SPADE, DTN) loaded
for use — what `ganforge translate`, `ganforge eval` and the studio share.

    tr = Translator.from_pretrained("runs/00007-photos-pix2pix/generator")   # CPU or GPU, no pickle
    colour = tr.translate_image(Image.open("grandma.jpg"))                     # PIL in, PIL out, any size
    back = Translator.from_pretrained(folder, direction="b_to_a")              # CycleGAN's other direction
    out = tr.translate_array(a)     # uint8 (H, W, C) or a label map (H, W) -> uint8 (H * scale, W * scale, C_B)

Output is deterministic: the network runs in eval mode (no dropout, batch norm on its running averages).

Images of any size: the input is padded by reflection to the model's `size_multiple` (cropped back
after), and when it has more than `tile` x `tile` pixels it is cut into tiles of that size that
overlap by `overlap` pixels on each side; each tile is translated alone and only its centre is kept,
so memory is bounded by one tile, whatever the image's size (`tile` counts output pixels: an x4
upscaler cuts its input into tiles of tile / 4). Tile corners sit on multiples of
`size_multiple`, so a network without global operations (the super-resolution models, batch norm in
eval mode) gives exactly the untiled result once `overlap` covers its receptive field. Instance norm
(pix2pix's and CycleGAN's default) takes its statistics per tile, so tiles should stay large: the
default 512 px tile is larger than what these models train on.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ganforge.device import choose_device
from ganforge.errors import GeneratorError

TILE = 512  # input pixels per tile side before an image is tiled
OVERLAP = 32  # input pixels each tile reaches past the part of it that is kept
MODES = {1: "L", 3: "RGB", 4: "RGBA"}


class TranslateError(GeneratorError):
    pass


@dataclass(frozen=True)
class Side:
    """One side of a direction: an image of `channels`, or a label map of `classes` (painted in `colours`)."""

    kind: str  # "image" | "labels"
    channels: int = 0
    classes: int = 0
    colours: np.ndarray | None = None  # uint8 (K, 3): the centre colours of a derived labels:K dataset
    centres: np.ndarray | None = None  # float32 (K, 3) CIE Lab centres: any colour image -> its nearest label

    @classmethod
    def from_config(cls, side: dict) -> "Side":
        if side["kind"] == "labels":
            colours = np.asarray(side["colours_rgb"], np.uint8) if side.get("colours_rgb") else None
            centres = np.asarray(side["centres_lab"], np.float32) if side.get("centres_lab") else None
            return cls("labels", 1, int(side["classes"]), colours, centres)
        return cls("image", int(side["channels"]))

    def describe(self) -> str:
        if self.kind == "labels":
            return f"a label map of {self.classes} classes"
        return {1: "a grey image", 3: "a colour image", 4: "a colour image with transparency"}[self.channels]


class Translator:
    """A loaded image-to-image model in one direction; `module` is that direction's network, in eval mode."""

    def __init__(self, module: torch.nn.Module, config: dict, path: Path | None = None, direction: str | None = None,
                 mark: bool | None = None):
        if config.get("task") != "image-to-image":
            raise TranslateError(f"{path or 'This model'} is a generator of new images, not an image-to-image model: "
                                 "use `ganforge sample` (or ganforge.Generator) with it.")
        translation = config["translation"]
        directions = translation["directions"]
        direction = direction or "a_to_b"
        if direction not in directions:
            raise TranslateError(f"This model has no direction {direction!r}; it has {', '.join(directions)}.")
        whole = module.eval().requires_grad_(False)
        self.network = whole  # every direction's weights (CycleGAN's two generators)
        self.module = getattr(whole, direction) if direction in getattr(whole, "components", ()) else whole
        self.config, self.path, self.direction = config, path, direction
        self.directions = tuple(directions)
        self.input = Side.from_config(directions[direction]["input"])
        self.output = Side.from_config(directions[direction]["output"])
        self.scale = int(translation.get("scale", 1))
        self.size_multiple = int(translation.get("size_multiple", 1))
        self.resolution = config["config"].get("resolution")
        # a network that reduces its input to one vector (DTN's encoder) works at its training size only
        self.fully_convolutional = bool(translation.get("fully_convolutional", True))
        # Pictures and files it makes carry the provenance mark; arrays (what metrics measure) do not.
        from ganforge.provenance.stamp import Stamp

        self.stamp = Stamp.of(config, Path(path).name if path else str(config.get("architecture")), mark)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device = "auto",
                        direction: str | None = None, mark: bool | None = None) -> "Translator":
        """Rebuild from `config.json` + `model.safetensors` alone (checked against their digests; never pickle)."""
        from ganforge.export import load_exported
        from ganforge.generator import generator_folder

        path = generator_folder(path)
        module, config = load_exported(path, device=choose_device(device))
        return cls(module, config, path, direction, mark)

    def turned(self) -> "Translator":
        """The same model in its other direction (a two-way model: CycleGAN), sharing the weights."""
        others = [d for d in self.directions if d != self.direction]
        if not others:
            raise TranslateError(f"{self.path or 'This model'} translates one way only ({self.direction}).")
        return Translator(self.network, self.config, self.path, others[0], self.stamp.marking)

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def __repr__(self) -> str:
        scale = f", x{self.scale}" if self.scale != 1 else ""
        return (f"Translator({self.config.get('architecture')} {self.direction}: {self.input.describe()} -> "
                f"{self.output.describe()}{scale}, from {self.path})")

    # --- tensors --------------------------------------------------------------------------------------

    @torch.inference_mode()
    def translate_tensor(self, a: torch.Tensor, *, tile: int | None = TILE, overlap: int = OVERLAP) -> torch.Tensor:
        """A (1, C_A, H, W) float in [-1, 1], or a long (1, H, W) label map -> float (1, C_B, sH, sW) on the CPU.

        `tile` None translates the image whole, however big."""
        return self._assemble(a, tile, overlap, lambda piece: piece, torch.empty, lambda out, h, w: out[..., :h, :w])

    @torch.inference_mode()
    def _translate_uint8(self, a: torch.Tensor, tile: int | None, overlap: int) -> np.ndarray:
        """As translate_tensor, but each tile goes to uint8 (H, W, C) as it is made: a 4x upscale of a large
        picture then holds one byte per output value, not four."""
        from ganforge.data.reader import to_uint8_images

        def empty(batch, channels, height, width):
            return np.empty((height, width, channels), np.uint8)

        return self._assemble(a, tile, overlap, lambda piece: to_uint8_images(piece)[0], empty,
                              lambda out, h, w: out[:h, :w], channels_last=True)

    def input_tile(self, tile: int | None) -> int | None:
        """`tile` counts output pixels, so an upscaler's tiles hold as much memory as a same-size model's."""
        return None if tile is None else max(16, tile // self.scale)

    def _assemble(self, a, tile, overlap, convert, empty, crop, channels_last: bool = False):
        check_tiling(tile, overlap)
        tile = self.input_tile(tile)
        height, width = a.shape[-2:]
        s = self.scale
        padded = self._pad(a)
        if tile is None or (padded.shape[-1] <= tile and padded.shape[-2] <= tile):
            return crop(convert(self._run(padded)), height * s, width * s)
        out = None
        for (top, bottom, left, right), (y0, x0), piece in self._tiles(padded, tile, overlap):
            piece = convert(piece)
            if out is None:
                shape = (1, piece.shape[-1 if channels_last else 1], padded.shape[-2] * s, padded.shape[-1] * s)
                out = empty(*shape)
            kept = (slice((top - y0) * s, (bottom - y0) * s), slice((left - x0) * s, (right - x0) * s))
            if channels_last:
                out[top * s : bottom * s, left * s : right * s] = piece[kept]
            else:
                out[..., top * s : bottom * s, left * s : right * s] = piece[(..., *kept)]
        return crop(out, height * s, width * s)

    def _run(self, a: torch.Tensor) -> torch.Tensor:
        return self.module(a.to(self.device)).float().cpu()

    def _pad(self, a: torch.Tensor) -> torch.Tensor:
        """Reflect-pad the bottom and right to multiples of `size_multiple` (replicate when the image is too
        small to reflect)."""
        m = self.size_multiple
        height, width = a.shape[-2:]
        pad_h, pad_w = -height % m, -width % m
        if not (pad_h or pad_w):
            return a
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        labels = a.dim() == 3
        x = a[:, None].float() if labels else a
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        return x[:, 0].long() if labels else x

    def _tiles(self, a: torch.Tensor, tile: int, overlap: int):
        """((top, bottom, left, right) of the kept part, (y0, x0) of the tile, the tile's output) for each tile.

        The kept parts cover the image once; each tile reaches `overlap` (rounded up to the grid) past its
        kept part, and every corner lies on a multiple of `size_multiple`."""
        m = self.size_multiple
        height, width = a.shape[-2:]
        core = max(m, (tile - 2 * overlap) // m * m)
        reach = math.ceil(overlap / m) * m
        for top in range(0, height, core):
            for left in range(0, width, core):
                y0, x0 = max(0, top - reach), max(0, left - reach)
                y1, x1 = min(height, top + core + reach), min(width, left + core + reach)
                bottom, right = min(height, top + core), min(width, left + core)
                yield (top, bottom, left, right), (y0, x0), self._run(a[..., y0:y1, x0:x1])

    # --- arrays and pictures -----------------------------------------------------------------------------

    def input_tensor(self, a: np.ndarray) -> torch.Tensor:
        """uint8 (H, W, C_A) (or (H, W) for a label map / grey image) -> the network's (1, ...) input."""
        a = np.asarray(a)
        if self.input.kind == "labels":
            labels = a[..., 0] if a.ndim == 3 else a
            if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
                raise TranslateError(f"A label map is an (H, W) array of integers, got {labels.dtype} of shape {a.shape}.")
            if labels.size and (labels.min() < 0 or labels.max() >= self.input.classes):
                raise TranslateError(f"This label map has values {labels.min()}..{labels.max()}, but the model knows "
                                     f"{self.input.classes} labels (0..{self.input.classes - 1}).")
            return torch.from_numpy(labels.astype(np.int64))[None]  # (1, H, W), a copy
        if a.ndim == 2:
            a = a[..., None]
        if a.ndim != 3 or a.shape[-1] != self.input.channels or a.dtype != np.uint8:
            raise TranslateError(f"This model takes {self.input.describe()}: uint8 (H, W, {self.input.channels}), got "
                                 f"{a.dtype} of shape {a.shape}. translate_image converts a picture for you.")
        return torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].float() / 127.5 - 1  # (1, C, H, W), a copy

    def translate_array(self, a: np.ndarray, *, tile: int | None = TILE, overlap: int = OVERLAP) -> np.ndarray:
        """uint8 (H, W, C_A) or an (H, W) label map -> uint8 (H * scale, W * scale, C_B)."""
        check_size(*np.asarray(a).shape[:2])
        if not self.fully_convolutional:
            return self._at_training_size(np.asarray(a))
        return self._translate_uint8(self.input_tensor(a), tile, overlap)

    def _at_training_size(self, a: np.ndarray) -> np.ndarray:
        """For a network that is not fully convolutional: the input resized to its training size (bicubic;
        nearest for a label map), translated, and the output resized to the input's size x scale."""
        from ganforge.data.reader import to_uint8_images

        height, width = a.shape[:2]
        side = self.resolution // self.scale
        if (height, width) != (side, side):
            resample = Image.Resampling.NEAREST if self.input.kind == "labels" else Image.Resampling.BICUBIC
            resized = np.asarray(Image.fromarray(a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a).resize((side, side), resample))
            a = resized[..., None] if resized.ndim == 2 and self.input.kind == "image" else resized
        with torch.inference_mode():
            out = to_uint8_images(self._run(self.input_tensor(a)))[0]
        if out.shape[:2] == (height * self.scale, width * self.scale):
            return out
        back = np.asarray(Image.fromarray(out[..., 0] if out.shape[-1] == 1 else out)
                          .resize((width * self.scale, height * self.scale), Image.Resampling.BICUBIC))
        return back[..., None] if back.ndim == 2 else back

    @torch.inference_mode()
    def translate_batch(self, rows: np.ndarray, *, batch_size: int = 16, tile: int | None = TILE,
                        overlap: int = OVERLAP) -> np.ndarray:
        """Many inputs of one size (uint8 (N, H, W, C_A), or (N, H, W) label maps) -> uint8 (N, sH, sW, C_B),
        `batch_size` at a time: several times faster than one by one for small images. The same result as
        `translate_array` on each (eval mode: no image depends on the others in its batch); images too big
        for one tile go one by one, tiled."""
        from ganforge.data.reader import to_uint8_images

        rows = np.asarray(rows)
        if not len(rows):
            raise TranslateError("No images given to translate.")
        height, width = rows.shape[1:3]
        check_size(height, width)
        check_tiling(tile, overlap)
        padded_side = max(height + -height % self.size_multiple, width + -width % self.size_multiple)
        if not self.fully_convolutional or (tile is not None and padded_side > self.input_tile(tile)):
            return np.stack([self.translate_array(row, tile=tile, overlap=overlap) for row in rows])
        out = []
        for start in range(0, len(rows), batch_size):
            a = torch.cat([self.input_tensor(row) for row in rows[start : start + batch_size]])
            out.append(to_uint8_images(self._run(self._pad(a)))[:, : height * self.scale, : width * self.scale])
        return np.concatenate(out)

    def from_image(self, image: Image.Image, *, derive: bool = False) -> np.ndarray:
        """A picture as this model's input array. An image model gets the picture in its channels (grey,
        colour, with transparency). A label-map model reads a one-channel picture with values below K as the
        labels themselves; any other picture is mapped pixel by pixel to the nearest of the training set's K
        label colours. `derive` first applies the training set's derivation (`prepare --derive`) to the
        picture: a photo becomes the sketch, edges or grey image the model learned from."""
        if derive:
            return self._derived(image)
        if self.input.kind == "labels":
            return self._labels_of(image)
        converted = _flatten(image, self.input.channels).convert(MODES[self.input.channels])
        array = np.asarray(converted)
        return array[..., None] if array.ndim == 2 else array

    def _labels_of(self, image: Image.Image) -> np.ndarray:
        if image.mode in ("L", "P", "I", "I;16"):
            indices = np.asarray(image)
            if indices.ndim == 2 and indices.size and indices.max() < self.input.classes:
                return indices.astype(np.uint8)
        if self.input.centres is None:
            raise TranslateError(f"This model takes label maps of {self.input.classes} classes, and this picture is "
                                 f"not one (a one-channel image with values 0..{self.input.classes - 1}); the model "
                                 "has no label colours to map a colour picture to (its dataset was not derived "
                                 "with labels:K).")
        from ganforge.data.derive import label_map

        return label_map(np.asarray(_flatten(image, 3).convert("RGB"))[None], self.input.centres)[0]

    def _derived(self, image: Image.Image) -> np.ndarray:
        from ganforge.data import derive as derive_mod

        info = self.config["translation"].get("derive")
        if not info or self.direction != "a_to_b":
            raise TranslateError("derive: this model was not trained on derived pairs (prepare --derive), so there "
                                 "is no derivation to apply: give inputs as the model takes them.")
        spec = derive_mod.parse_derive(info["text"])
        picture = np.asarray(_flatten(image, 3).convert("RGB"))[None]  # (1, H, W, 3)
        if spec.mode == "downscale":
            height, width = picture.shape[1:3]
            picture = picture[:, : height - height % spec.factor, : width - width % spec.factor]
        if spec.mode == "labels":
            if self.input.centres is None:
                raise TranslateError("derive: the model's config.json lacks the label centres. Export the run again.")
            return derive_mod.label_map(picture, self.input.centres)[0]
        derived = derive_mod.derive(spec, picture)[0]
        return derived if self.input.kind != "image" or derived.shape[-1] == self.input.channels else \
            self.from_image(Image.fromarray(derived[..., 0] if derived.shape[-1] == 1 else derived))

    def translate_image(self, image: Image.Image, *, derive: bool = False, tile: int | None = TILE,
                        overlap: int = OVERLAP) -> Image.Image:
        out = self.stamp.apply(self.translate_array(self.from_image(image, derive=derive), tile=tile, overlap=overlap)[None])[0]
        return Image.fromarray(out[..., 0] if out.shape[-1] == 1 else out)

    def draw_input(self, a: np.ndarray) -> np.ndarray:
        """An input array as a uint8 (H, W, 3) picture: a label map in its colours, grey as RGB."""
        a = np.asarray(a)
        if self.input.kind == "labels":
            labels = a[..., 0] if a.ndim == 3 else a
            colours = self.input.colours if self.input.colours is not None else _palette(self.input.classes)
            return colours[labels]
        a = a[..., None] if a.ndim == 2 else a
        return np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a[..., :3]


def _flatten(image: Image.Image, channels: int) -> Image.Image:
    """Transparency composited on white for a model without an alpha channel (so a clear pixel is not black)."""
    if channels == 4 or image.mode not in ("RGBA", "LA", "PA") and "transparency" not in image.info:
        return image
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _palette(k: int) -> np.ndarray:
    """K distinct colours for a label map without recorded colours: hues around the circle."""
    hue = np.arange(k) / max(k, 1)
    rgb = np.stack([np.clip(np.abs((hue * 6 + s) % 6 - 3) - 1, 0, 1) for s in (0, 4, 2)], axis=1)
    return (rgb * 255).astype(np.uint8)


def check_tiling(tile: int | None, overlap: int) -> None:
    if tile is not None and (not isinstance(tile, int) or isinstance(tile, bool) or tile < 16):
        raise TranslateError(f"tile={tile!r}: give a tile side of at least 16 pixels (512 is usual), or none.")
    if not isinstance(overlap, int) or isinstance(overlap, bool) or overlap < 0 or (tile and 2 * overlap >= tile):
        raise TranslateError(f"overlap={overlap!r}: give a whole number of pixels from 0 to less than half the tile "
                             f"({tile}); 32 is usual.")


def check_size(height: int, width: int) -> None:
    if height < 2 or width < 2:
        raise TranslateError(f"The input is {width}x{height} pixels: an image to translate needs at least 2x2 "
                             "(a real picture, not a single pixel).")


def input_files(inputs: Iterable[str | os.PathLike]) -> list[tuple[Path, Path]]:
    """(given root, image file) for the inputs: files, and the images in folders (sorted), each checked
    readable and at least 2x2 before anything is translated; one sentence naming every bad one otherwise."""
    from ganforge.files import IMAGE_SUFFIXES
    from ganforge.generator import read_image

    files: list[tuple[Path, Path]] = []
    for given in inputs:
        path = Path(given).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise TranslateError(f"{path} holds no image files (png, jpg, webp, ...): nothing to translate.")
            files += [(path, file) for file in found]
        elif path.exists():
            files.append((path, path))
        else:
            raise TranslateError(f"{path} does not exist: give image files, folders of images or a prepared dataset.")
    bad = []
    for _, file in files:
        try:
            image = read_image(file, "skip it or fix it", orient=False)
            check_size(image.height, image.width)
        except TranslateError as err:
            bad.append(f"{file}: {err}")
        except GeneratorError as err:
            bad.append(str(err))
    if bad:
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise TranslateError(f"{len(bad)} input(s) cannot be read, so nothing was translated: "
                             + " ".join(bad[:3]) + more)
    return files


# --- translating many inputs into a folder ---------------------------------------------------------------


@dataclass
class Translated:
    """What `write_translations` wrote."""

    folder: Path
    images: int

    def summary(self) -> str:
        return f"Wrote {self.images:,} translated image(s) to {self.folder}"


def dataset_inputs(translator: Translator, path: Path):
    """(name, input array) for every row of a prepared dataset: the side this direction reads (A for a_to_b,
    B for b_to_a) of a paired or unpaired set, or the images of a plain one."""
    from ganforge.data.format import PreparedDataset

    dataset = PreparedDataset(path)
    if dataset.kind in ("paired", "unpaired"):
        rows = dataset.a if translator.direction == "a_to_b" else dataset.b
    elif dataset.kind == "images":
        rows = dataset.images
    else:
        raise TranslateError(f"{path} is a {dataset.kind} dataset, not images: nothing to translate.")
    width = max(6, len(str(len(rows) - 1)))
    names = [f"{i:0{width}d}.png" for i in range(len(rows))]
    return names, ((name, np.asarray(rows[i])) for i, name in enumerate(names))


def _named_files(inputs: list[str | os.PathLike]) -> list[tuple[str, Path]]:
    """(output name, file) for the inputs: `stem.png`, keeping a folder's subfolders; a clash is an error."""
    named: dict[str, Path] = {}
    for root, file in input_files(inputs):
        relative = file.relative_to(root) if root.is_dir() else Path(file.name)
        name = relative.with_suffix(".png").as_posix()
        if name in named and named[name] != file:
            raise TranslateError(f"{named[name]} and {file} would both be written as {name}: translate them into "
                                 "different --out folders.")
        named[name] = file
    return list(named.items())


def write_translations(translator: Translator, inputs: list[str | os.PathLike], out: str | os.PathLike, *,
                       derive: bool = False, tile: int | None = TILE, overlap: int = OVERLAP, overwrite: bool = False,
                       progress: bool = True) -> Translated:
    """Translate image files, folders of images or one prepared dataset into PNG files in `out`.

    Every input is read and checked, and every name it would write is checked free, before the first image
    is written; each PNG is written whole (a temporary file renamed), so an interruption leaves no half file."""
    from tqdm import tqdm

    from ganforge.generator import output_folder, read_image, refuse_overwrite, save_png

    check_tiling(tile, overlap)
    datasets = [Path(p).expanduser() for p in inputs if (Path(p).expanduser() / "manifest.json").is_file()]
    if datasets and len(inputs) > 1:
        raise TranslateError("Translate one prepared dataset at a time, without other inputs beside it.")
    if not inputs:
        raise TranslateError("No input given: name image files, folders of images or a prepared dataset.")
    if datasets:
        names, items = dataset_inputs(translator, datasets[0])
    else:
        named = _named_files(list(inputs))
        names = [name for name, _ in named]
        items = ((name, translator.from_image(read_image(file, "fix or remove it"), derive=derive)) for name, file in named)
    folder = output_folder(out)
    refuse_overwrite(folder, names, overwrite)
    metadata = {"ganforge:model": str(translator.path), "ganforge:direction": translator.direction}
    written = 0
    with tqdm(total=len(names), desc="translate", unit="image", disable=not progress) as bar:
        for group in _same_size_groups(items):
            outputs = translator.stamp.apply(translator.translate_batch(np.stack([a for _, a in group]), tile=tile,
                                                                        overlap=overlap))
            for (name, _), out_array in zip(group, outputs):
                target = folder / name
                target.parent.mkdir(parents=True, exist_ok=True)
                picture = Image.fromarray(out_array[..., 0] if out_array.shape[-1] == 1 else out_array)
                save_png(picture, target, {**metadata, "ganforge:source": name,
                                           **translator.stamp.metadata(np.asarray(picture), None)})
                written += 1
                bar.update()
    return Translated(folder, written)


def _same_size_groups(items, size: int = 16):
    """Runs of up to `size` consecutive inputs of one shape (a prepared dataset's rows all share one)."""
    group: list = []
    for item in items:
        if group and (len(group) == size or item[1].shape != group[0][1].shape):
            yield group
            group = []
        group.append(item)
    if group:
        yield group
