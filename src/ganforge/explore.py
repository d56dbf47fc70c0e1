"""Exploring an exported generator: walks between latents, breeding latents, projecting real images.

    walk = interpolate(gen, [1, 7, 42], out="walk")       # interpolation.gif (+ .mp4 with imageio-ffmpeg)
    brood = breed(gen, [3, 17], children=8, out="brood")   # child-00.npy + .png, ..., children.png
    again = breed(gen, ["brood/child-02.npy", 5], out="brood2")
    found = project(gen, "photo.png", out="proj")          # projected.npy, reconstruction.png, projection.gif

A latent is named by a seed (the generator's own per-seed latent) or by a latent file. Latent files
hold one numpy record with fields `z` (float32, z_dim values) and `label` (the class, -1 for none),
so `np.load(path, allow_pickle=False)` reads them; a plain array of z_dim floats is accepted too.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from ganforge.data.reader import to_uint8_images
from ganforge.generator import (
    Generator,
    GeneratorError,
    check_output_folder,
    check_seed,
    check_truncation,
    output_folder,
    parse_seeds,
    read_image,
    refuse_overwrite,
    save_image,
    save_png,
)
from ganforge.pictures import image_grid, labelled_rows

LatentRef = int | str | os.PathLike  # a seed, or a latent file written by this module


def seed_of(ref) -> int | None:
    """The seed a latent reference is, for the provenance mark; None for a latent file."""
    return int(ref) if isinstance(ref, numbers.Integral) else None
ANIMATION_MIN_SIZE = 256  # animations of small images are enlarged (nearest neighbour) to be watchable
MAX_LATENTS = 1000  # seeds or files one walk or brood takes: each is held in memory with its image
MAX_FRAMES = 1000  # frames of one walk (40 s at 24 fps), all held in memory to write the animation
MAX_CHILDREN = 256  # children of one brood, each saved and drawn on children.png
MAX_MUTATION = 100.0  # far beyond the point where nothing of the parents is left (about 3)
FPS_RANGE = (0.1, 240.0)
MAX_PROJECT_STEPS = 100_000  # hours on a CPU; the search has long settled (200 is usual, 1,000 is thorough)
PROJECTION_FILES = ("projected.npy", "reconstruction.png", "target.png", "projection.gif")


# --- latents: seeds and files --------------------------------------------------------------------------


def save_latent(path: str | os.PathLike, z: torch.Tensor, label: int | None) -> Path:
    """One record (`z` float32, `label` int, -1 for none): plain numpy, loadable without pickle."""
    z = z.detach().float().cpu().reshape(-1).numpy()
    record = np.zeros((), dtype=[("z", "<f4", (len(z),)), ("label", "<i8")])
    record["z"], record["label"] = z, -1 if label is None else int(label)
    np.save(path, record, allow_pickle=False)
    return Path(path)


def load_latent(gen: Generator, path: str | os.PathLike) -> tuple[torch.Tensor, int | None]:
    """A latent file -> ((z_dim,) float32 latent, class or None), checked against `gen`."""
    path = Path(path)
    if not path.is_file():
        raise GeneratorError(f"{path} is not a file: give a seed or a latent .npy written by breed or project.")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):  # pickled objects are refused, never loaded
        raise GeneratorError(f"{path} is not a numpy latent file (or holds pickled objects, which ganforge never "
                             "loads): give a .npy written by breed or project.") from None
    if not isinstance(data, np.ndarray):  # an .npz archive under a .npy name
        raise GeneratorError(f"{path} is an .npz archive, not a latent: give a .npy written by breed or project.")
    label = None
    if data.dtype.names and {"z", "label"} <= set(data.dtype.names):
        if data.shape != ():
            raise GeneratorError(f"{path} holds {data.size} latent records; a latent file holds one (as breed and "
                                 "project write them).")
        data, label = data["z"], int(data["label"])
        label = None if label < 0 else label
    if data.dtype.kind != "f" or data.size != gen.z_dim:
        raise GeneratorError(f"{path} holds {data.dtype} data of shape {data.shape}, not a latent of {gen.z_dim} "
                             "floats for this generator: was it made with another one?")
    if not np.isfinite(data).all():
        raise GeneratorError(f"{path} holds NaN or infinite values, which give no image: it is damaged; make "
                             "the latent again (breed or project).")
    if label is not None and gen.num_classes == 0:
        raise GeneratorError(f"{path} was saved with class {label}, but this generator is not class-conditional: "
                             "was it made with another one?")
    if label is not None and label >= gen.num_classes:
        raise GeneratorError(f"{path} was saved with class {label}, which this generator does not have (it has "
                             f"{gen.num_classes}, 0-{gen.num_classes - 1}): was it made with another one?")
    return torch.from_numpy(np.array(data, dtype=np.float32).reshape(-1)), label


def parse_latents(text: str) -> list[LatentRef]:
    """'3,17' or '0-3,brood/child-02.npy' -> seeds and latent files, in order (for the command line)."""
    refs: list[LatentRef] = []
    parts = [p.strip() for p in str(text).split(",")]
    if not any(parts):
        raise GeneratorError("No latents given: use seeds such as 3,17 or latent files such as child-02.npy.")
    for part in parts:
        if not part:
            raise GeneratorError(f"Latents {text!r}: an empty item between commas; write them as 3,17,child-02.npy.")
        if part.lower().endswith(".npy"):
            refs.append(part)
            continue
        if not part.replace("-", "").replace(" ", "").isdigit():
            raise GeneratorError(f"Latents {text!r}: {part!r} is neither a seed (a whole number, or a range such "
                                 "as 0-9) nor a latent file (a .npy written by breed or project).")
        seeds = parse_seeds(part)
        if len(refs) + len(seeds) > MAX_LATENTS:
            raise GeneratorError(f"Latents {text!r} are more than {MAX_LATENTS:,}: give fewer seeds (a walk or brood "
                                 "holds each latent and its image in memory).")
        refs.extend(seeds)
    return refs


def _latent(gen: Generator, ref: LatentRef) -> tuple[torch.Tensor, int | None, str]:
    """(z, class or None, name) of a seed or a latent file; a seed's class is the one `gen.sample` gives it."""
    if isinstance(ref, (int, np.integer)) or (isinstance(ref, str) and ref.strip().lstrip("-").isdigit()):
        seed = check_seed(int(ref))
        labels = gen.labels_for(1, None, [seed])
        return gen.latents([seed])[0], None if labels is None else int(labels[0]), f"seed {seed}"
    z, label = load_latent(gen, ref)
    return z, label, Path(ref).name


def _class_of(gen: Generator, given: int | str | None, own: int | None, name: str) -> int | None:
    """The class to draw with: the given one, else the latent's own; conditional generators need one."""
    index = gen.label_index(given)
    if index is None and gen.num_classes and own is None:
        raise GeneratorError(f"{name} has no class and this generator is class-conditional: give a class with "
                             "--class (label=... in Python).")
    return own if index is None else index


def _labels(labels: Sequence[int | None]) -> torch.Tensor | None:
    return None if not labels or labels[0] is None else torch.tensor(list(labels), dtype=torch.long)


def _require_images(gen: Generator) -> None:
    gen.require_images("interpolate, breed and project each")


def _metadata(gen: Generator, label: int | None, **extra) -> dict[str, str]:
    meta = {k: str(v) for k, v in extra.items() if v is not None}
    meta.update(generator=str(gen.path), software="ganforge")
    if label is not None:
        meta["class"] = gen.classes[label] if gen.classes else str(label)
    return meta


def _output(out: str | os.PathLike | None, names: Sequence[str], overwrite: bool) -> Path | None:
    """The folder to write into (made when missing), once none of `names` in it would be written over."""
    if out is None:
        return None
    refuse_overwrite(check_output_folder(out), names, overwrite)
    return output_folder(out)


# --- animations ----------------------------------------------------------------------------------------


def _enlarged(image: Image.Image, min_size: int = ANIMATION_MIN_SIZE) -> Image.Image:
    scale = math.ceil(min_size / min(image.size))
    if scale <= 1:
        return image
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def save_gif(frames: list[Image.Image], path: Path, fps: float, hold_last_ms: int | None = None) -> Path:
    """A looping GIF (loop=0: forever); small frames are enlarged by a whole factor."""
    frames = [_enlarged(f) for f in frames]
    duration: int | list[int] = max(20, round(1000 / fps))  # browsers slow down anything faster than 20 ms
    if hold_last_ms is not None:
        duration = [duration] * (len(frames) - 1) + [hold_last_ms]
    save_image(frames[0], path, "GIF", save_all=True, append_images=frames[1:], duration=duration, loop=0)
    return path


def can_save_mp4() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("imageio", "imageio_ffmpeg"))


def save_mp4(frames: list[Image.Image], path: Path, fps: float) -> str | None:
    """Write an H.264 video when imageio and imageio-ffmpeg are installed; else say why not (None: written)."""
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (the ffmpeg binary imageio's writer uses)
    except ImportError:
        return "needs the optional packages imageio and imageio-ffmpeg (pip install imageio imageio-ffmpeg)"
    # sides a multiple of 16 (H.264 macro blocks) and yuv420p, so that every player can show it
    with imageio.get_writer(path, fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=16,
                            quality=8) as writer:
        for frame in frames:
            writer.append_data(np.asarray(_enlarged(frame).convert("RGB")))
    return None


# --- interpolate ---------------------------------------------------------------------------------------


@dataclass
class Walk:
    frames: list[Image.Image]  # one image per step, starting at the first latent
    latents: torch.Tensor  # (frames, z_dim)
    label: int | None  # the one class of every frame (conditional generators)
    files: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # file name -> why it was not written


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between latents a and b (z_dim,) at fractions t (T,) -> (T, z_dim).

    Gaussian latents live near a sphere; a straight line between two of them passes through
    atypically short latents, so a linear walk dims towards the middle. t=0 gives `a` exactly.
    """
    a64, b64, t64 = a.double(), b.double(), t.double()[:, None]
    cos = torch.dot(a64, b64) / (a64.norm() * b64.norm()).clamp_min(1e-12)
    theta = torch.arccos(cos.clamp(-1, 1))
    if theta.abs() < 1e-6:  # (nearly) the same direction: a straight line is the same path
        mixed = (1 - t64) * a64 + t64 * b64
    else:
        mixed = (torch.sin((1 - t64) * theta) * a64 + torch.sin(t64 * theta) * b64) / torch.sin(theta)
    return mixed.to(a.dtype)


def interpolate(gen: Generator, seeds: Sequence[LatentRef], *, steps: int = 24, truncation: float = 1.0,
                label: int | str | None = None, out: str | os.PathLike | None = None, fps: float = 24,
                overwrite: bool = False) -> Walk:
    """A looping walk through the latents of `seeds` (or latent files) and back to the first.

    `steps` frames per leg, so len(seeds) * steps frames in all; frame k * steps is exactly seeds[k]'s
    image. One class for the whole walk (labels are discrete, a walk cannot blend them): `label`, else
    the first latent's own class. Writes interpolation.gif, and interpolation.mp4 when imageio-ffmpeg
    is installed (`skipped` says so when it is not). Files of those names already in `out` are refused
    before anything is written, unless `overwrite`.
    """
    _require_images(gen)
    if len(seeds) < 2:
        raise GeneratorError("Give at least two seeds to walk between, e.g. --seeds 1,7,42.")
    if not isinstance(steps, numbers.Integral) or steps < 1:
        raise GeneratorError(f"steps={steps}: use at least 1 frame per leg of the walk (24 is usual).")
    if not FPS_RANGE[0] <= fps <= FPS_RANGE[1]:  # NaN fails this too
        raise GeneratorError(f"fps={fps}: use a frame rate from {FPS_RANGE[0]:g} to {FPS_RANGE[1]:g} (24 is usual).")
    if len(seeds) * steps > MAX_FRAMES:
        raise GeneratorError(f"{len(seeds)} latents x {steps} steps = {len(seeds) * steps:,} frames; a walk holds at "
                             f"most {MAX_FRAMES:,} (all in memory to write the animation): use fewer steps or seeds.")
    check_truncation(truncation)
    latents = [_latent(gen, ref) for ref in seeds]
    index = _class_of(gen, label, latents[0][1], latents[0][2])
    folder = _output(out, ["interpolation.gif"] + (["interpolation.mp4"] if can_save_mp4() else []), overwrite)
    t = torch.arange(steps, dtype=torch.float64) / steps  # [0, 1): each leg's end is the next leg's start
    path = torch.cat([slerp(latents[k][0], latents[(k + 1) % len(latents)][0], t) for k in range(len(latents))])
    x = gen.synthesize(path, _labels([index] * len(path)), truncation)  # (frames, C, H, W)
    keys = [seed_of(ref) for ref in seeds]  # frame k * steps is seed k's image
    walk = Walk(gen.to_images(x, [keys[i // steps] if i % steps == 0 else None for i in range(len(path))]), path, index)
    if folder is not None:
        walk.files.append(save_gif(walk.frames, folder / "interpolation.gif", fps))
        why = save_mp4(walk.frames, folder / "interpolation.mp4", fps)
        if why is None:
            walk.files.append(folder / "interpolation.mp4")
        else:
            walk.skipped["interpolation.mp4"] = why
    return walk


# --- breed ---------------------------------------------------------------------------------------------


@dataclass
class Brood:
    latents: torch.Tensor  # (children, z_dim)
    labels: list[int | None]
    images: list[Image.Image]
    parents: list[str]  # each parent's name: "seed 3" or its file name
    files: list[Path] = field(default_factory=list)


def _child(parents: torch.Tensor, mode: str, mutation: float,
           rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One child of parents (P, z_dim) -> (its latent, each parent's share of it (P,))."""
    count, z_dim = parents.shape
    if mode == "blend":
        share = -torch.rand(count, generator=rng).log()  # exponential draws: convex weights uniform on the simplex
        share = share / share.sum()
        mixed = share @ parents
        # mixing shortens the vector (independent latents partly cancel): back to the parents' length
        z = mixed * (share @ parents.norm(dim=1)) / mixed.norm().clamp_min(1e-12)
    else:  # crossover: each dimension from one parent
        pick = torch.randint(count, (z_dim,), generator=rng)
        z = parents[pick, torch.arange(z_dim)]
        share = torch.bincount(pick, minlength=count).float() / z_dim
    noise = torch.randn(z_dim, generator=rng)
    return (z + mutation * noise) / math.sqrt(1 + mutation ** 2), share  # the same expected length after noise


def breed(gen: Generator, parents: Sequence[LatentRef], *, children: int = 8, mutation: float = 0.1,
          mode: str = "blend", seed: int = 0, label: int | str | None = None,
          out: str | os.PathLike | None = None, overwrite: bool = False) -> Brood:
    """Children of `parents` (seeds or latent files): their latents mixed, plus Gaussian mutation.

    blend: random convex weights, then rescaled to the parents' length; crossover: each dimension from
    a randomly chosen parent. `mutation` is the noise's standard deviation per dimension (the result is
    rescaled by 1/sqrt(1 + mutation^2) so its length stays Gaussian-typical). A child of a conditional
    generator takes one parent's class (drawn by that parent's share), or `label` when given. The same
    `seed` gives the same children. Writes child-XX.npy (breed them again), child-XX.png, children.png;
    files of those names already in `out` (an earlier brood, a parent) are refused unless `overwrite`.
    """
    _require_images(gen)
    if mode not in ("blend", "crossover"):
        raise GeneratorError(f"mode={mode!r}: use 'blend' (weighted mix) or 'crossover' (per-dimension pick).")
    if len(parents) < 2 or len(parents) > MAX_LATENTS:
        raise GeneratorError(f"{len(parents)} parent(s): give 2 to {MAX_LATENTS:,} (seeds or latent files), e.g. "
                             "--parents 3,17; to vary one latent alone, breed it with itself (3,3).")
    if not isinstance(children, numbers.Integral) or not 1 <= children <= MAX_CHILDREN:
        raise GeneratorError(f"children={children}: breed 1 to {MAX_CHILDREN} children at a time (8 is usual).")
    if not 0 <= mutation <= MAX_MUTATION:  # NaN fails this too
        raise GeneratorError(f"mutation={mutation}: use 0 (none) to {MAX_MUTATION:g}; 0.1 is mild, 1 is strong.")
    seed = check_seed(seed, "breeding seed")
    found = [_latent(gen, ref) for ref in parents]
    parent_labels = [_class_of(gen, label, own, name) for _, own, name in found]
    names = [f"child-{k:02d}{ext}" for k in range(children) for ext in (".npy", ".png")] + ["children.png"]
    folder = _output(out, names, overwrite)
    stacked = torch.stack([z for z, _, _ in found])  # (P, z_dim)
    rng = torch.Generator().manual_seed(int(seed))
    latents, labels = [], []
    for _ in range(children):
        z, share = _child(stacked, mode, float(mutation), rng)
        heir = int(torch.multinomial(share, 1, generator=rng))  # drawn even when unused: same seed, same children
        latents.append(z)
        labels.append(parent_labels[heir])  # the given class when there is one (see _class_of)
    brood = Brood(torch.stack(latents), labels, [], [name for _, _, name in found])
    x = gen.synthesize(brood.latents, _labels(labels))
    brood.images = gen.to_images(x)
    if folder is not None:
        _save_brood(gen, brood, x, gen.synthesize(stacked, _labels(parent_labels)), folder, mode, mutation, seed)
    return brood


def _save_brood(gen: Generator, brood: Brood, children: torch.Tensor, parents: torch.Tensor, folder: Path,
                mode: str, mutation: float, seed: int) -> None:
    for k, (z, label, image) in enumerate(zip(brood.latents, brood.labels, brood.images)):
        brood.files.append(save_latent(folder / f"child-{k:02d}.npy", z, label))
        meta = _metadata(gen, label, parents=", ".join(brood.parents), mode=mode, mutation=mutation, seed=seed,
                         child=k)
        save_png(image, folder / f"child-{k:02d}.png", {**meta, **gen.signed(image)})
        brood.files.append(folder / f"child-{k:02d}.png")
    columns = max(len(brood.parents), min(len(brood.images), 8))
    kids = to_uint8_images(children)
    rows = [to_uint8_images(parents)] + [kids[i:i + columns] for i in range(0, len(kids), columns)]
    names = ["parents", "children"] + [""] * (len(rows) - 2)
    save_image(labelled_rows(rows, names, columns), folder / "children.png")
    brood.files.append(folder / "children.png")


# --- project -------------------------------------------------------------------------------------------


@dataclass
class Projection:
    latent: torch.Tensor  # (z_dim,)
    label: int | None
    reconstruction: Image.Image
    target: Image.Image  # the real image at the generator's resolution and channels
    pixel_mse: float  # mean squared difference in [-1, 1] pixel units
    feature_distance: float | None  # mean squared difference of Inception pool3 features; None when off
    feature_gradients: bool | None  # whether the feature term steered the descent (False: it only chose the start)
    files: list[Path] = field(default_factory=list)


def target_image(gen: Generator, image: Image.Image | str | os.PathLike) -> Image.Image:
    """A real image centre-cropped to a square and resized to the generator's resolution and channels."""
    _require_images(gen)
    if not isinstance(image, Image.Image):
        image = read_image(image, "give the image to project as a PNG, JPEG, ... that opens in an image viewer "
                                  "(a smaller copy of a huge one)")
    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(gen.channels)
    if mode is None:
        raise GeneratorError(f"{gen} makes {gen.channels}-channel images; project handles 1, 3 or 4 channels.")
    return ImageOps.fit(image.convert(mode), (gen.resolution, gen.resolution), Image.Resampling.LANCZOS)


def _as_tensor(image: Image.Image) -> torch.Tensor:
    """PIL -> float (1, C, H, W) in [-1, 1], the generator's output scale."""
    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    return torch.from_numpy(pixels).permute(2, 0, 1)[None] / 127.5 - 1


class _FeatureTerm:
    """Distance in Inception pool3 features to the target, from float images so it can carry gradients.

    The input is scaled as `to_inception_input` does, but without rounding to uint8 (rounding has no
    gradient). Whether gradients reach the image depends on the network's kernels on its device
    (oneDNN's fused CPU convolution has no backward): `gradients` is found out once.
    """

    def __init__(self, extractor, target: torch.Tensor):
        self.network, self.device = extractor.network, extractor.device
        with torch.no_grad():
            self.target = self.features(target)  # (1, 2048), once
        self.gradients = self._has_gradients()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        pixels = (x.clamp(-1, 1) + 1) * 127.5  # (B, C, H, W)
        pixels = pixels.expand(-1, 3, -1, -1) if pixels.shape[1] == 1 else pixels[:, :3]
        pixels = F.interpolate(pixels, size=(299, 299), mode="bilinear", align_corners=False)
        return self.network(((pixels - 128) / 128).to(self.device)).float()  # (B, 2048)

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) mean squared feature difference, on x's device."""
        return (self.features(x) - self.target).pow(2).mean(dim=1).to(x.device)

    def _has_gradients(self) -> bool:
        # a small input (Inception's smallest) keeps the probe cheap: the kernels are the same
        x = torch.full((1, 3, 75, 75), 0.1, device=self.device, requires_grad=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "autograd kernel was not registered": the case we test
            try:
                grad = torch.autograd.grad(self.network(x).sum(), x, allow_unused=True)[0]
            except RuntimeError:
                return False
        return grad is not None and bool(grad.abs().sum() > 0)


def _descend(gen: Generator, z: torch.Tensor, labels: torch.Tensor | None, target: torch.Tensor, steps: int,
             lr: float, norm_weight: float, feature: tuple[_FeatureTerm, float, int] | None,
             frames: list[torch.Tensor], every: int, bar=None) -> torch.Tensor:
    """Adam on the latents (R, z_dim), each towards the target; returns them, moved, on the CPU."""
    z = z.clone().to(gen.device).requires_grad_(True)
    labels = None if labels is None else labels.to(gen.device)
    target = target.to(gen.device)
    optimiser = torch.optim.Adam([z], lr=lr)
    for step in range(steps):
        x = gen.module(z, labels).float()  # (R, C, H, W)
        loss = (x - target).pow(2).mean(dim=(1, 2, 3))  # (R,): the candidates are independent (eval mode)
        if norm_weight:  # keep |z|^2 / z_dim near 1, where the generator was trained
            loss = loss + norm_weight * (z.pow(2).mean(dim=1) - 1).pow(2)
        if feature is not None and step % feature[2] == 0:  # Inception is slow: only every few steps
            loss = loss + feature[1] * feature[0].distance(x)
        if step % every == 0:
            frames.append(x[loss.argmin()].detach().cpu())
        optimiser.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimiser.step()
        if bar is not None:
            bar.update(1)
    return z.detach().cpu()


def project(gen: Generator, image: Image.Image | str | os.PathLike, *, steps: int = 200, lr: float = 0.05,
            restarts: int | None = None, feature_weight: float = 0.0, feature_every: int = 10,
            norm_weight: float = 1e-3, label: int | str | None = None, seed: int = 0,
            out: str | os.PathLike | None = None, extractor=None, inception: str | os.PathLike | None = None,
            overwrite: bool = False, progress: bool = True) -> Projection:
    """The latent whose image comes closest to a real image.

    `restarts` random latents (default 8, or one per class up to 32 when a conditional generator's
    class is to be found: without `label` the restarts take the classes in turn) descend together with
    Adam for a fifth of the steps; the best goes on alone. Loss: pixel MSE + `norm_weight` *
    (|z|^2/z_dim - 1)^2 + `feature_weight` * Inception feature distance (every `feature_every` steps; 0
    turns it off and needs no Inception weights). Where the network cannot pass gradients (oneDNN's
    fused convolutions on the CPU), the feature term only helps choose the best restart.
    Writes projected.npy, reconstruction.png, target.png and projection.gif (the search, target left);
    files of those names already in `out` are refused unless `overwrite`. `inception` is the Inception
    weights file (else GANFORGE_INCEPTION or the cache). With `progress`, a bar appears after a second.
    """
    from tqdm import tqdm

    finite = all(math.isfinite(v) for v in (lr, feature_weight, norm_weight))
    if not finite or steps < 1 or lr <= 0 or feature_weight < 0 or norm_weight < 0 or feature_every < 1:
        raise GeneratorError(f"steps={steps}, lr={lr}, feature_weight={feature_weight}, norm_weight={norm_weight}, "
                             f"feature_every={feature_every}: use at least 1 step, lr > 0, weights >= 0.")
    if steps > MAX_PROJECT_STEPS:
        raise GeneratorError(f"steps={steps:,}: a projection takes at most {MAX_PROJECT_STEPS:,} steps (200 is usual, "
                             "1,000 thorough; the search has long settled by then).")
    seed = check_seed(seed, "projection seed")
    target_picture = target_image(gen, image)
    folder = _output(out, PROJECTION_FILES, overwrite)
    target = _as_tensor(target_picture)
    index = gen.label_index(label)
    if restarts is None:
        restarts = max(8, min(gen.num_classes, 32)) if gen.num_classes and index is None else 8
    if restarts < 1:
        raise GeneratorError(f"restarts={restarts}: use at least 1 random start.")
    z = torch.randn(restarts, gen.z_dim, generator=torch.Generator().manual_seed(int(seed)))
    labels = None if gen.num_classes == 0 else (
        torch.full((restarts,), index) if index is not None else torch.arange(restarts) % gen.num_classes)
    term = None
    if feature_weight > 0:
        from ganforge.metrics.evaluate import FeatureExtractor

        term = _FeatureTerm(extractor or FeatureExtractor(device=gen.device, inception=inception, progress=False),
                            target)
    feature = (term, feature_weight, feature_every) if term is not None and term.gradients else None
    frames: list[torch.Tensor] = []
    every = max(1, steps // 50)  # ~50 frames in the GIF whatever the steps
    warmup = max(1, steps // 5)
    with tqdm(total=steps, unit="step", desc="Projecting", disable=not progress, delay=1, dynamic_ncols=True) as bar:
        z = _descend(gen, z, labels, target, warmup, lr, norm_weight, feature, frames, every, bar)
        best = _best_start(gen, z, labels, target, term, feature_weight)
        labels = None if labels is None else labels[best:best + 1]
        z = _descend(gen, z[best:best + 1], labels, target, steps - warmup, lr, norm_weight, feature, frames, every,
                     bar)
    return _finish(gen, z[0], labels, target_picture, target, term, frames, folder)


def _best_start(gen: Generator, z: torch.Tensor, labels: torch.Tensor | None, target: torch.Tensor,
                term: _FeatureTerm | None, feature_weight: float) -> int:
    """The restart to go on with; with the feature term on, judged on it too (one batch, no gradients)."""
    x = gen.synthesize(z, labels)  # (R, C, H, W)
    score = (x - target).pow(2).mean(dim=(1, 2, 3))
    if term is not None:
        with torch.no_grad():
            score = score + feature_weight * term.distance(x).cpu()
    return int(score.argmin())


def _finish(gen: Generator, z: torch.Tensor, labels: torch.Tensor | None, target_picture: Image.Image,
            target: torch.Tensor, term: _FeatureTerm | None, frames: list[torch.Tensor],
            folder: Path | None) -> Projection:
    x = gen.synthesize(z[None], labels)  # (1, C, H, W)
    distance = None
    if term is not None:
        with torch.no_grad():
            distance = float(term.distance(x))
    label = None if labels is None else int(labels[0])
    result = Projection(z, label, gen.to_images(x)[0], target_picture, float((x - target).pow(2).mean()),
                        distance, None if term is None else term.gradients)
    if folder is not None:
        meta = _metadata(gen, label, pixel_mse=f"{result.pixel_mse:.6f}", feature_distance=distance)
        result.files.append(save_latent(folder / "projected.npy", z, label))
        save_png(result.reconstruction, folder / "reconstruction.png", {**meta, **gen.signed(result.reconstruction)})
        save_image(target_picture, folder / "target.png")
        pairs = [image_grid(to_uint8_images(torch.cat([target, f[None]])), columns=2) for f in frames + [x[0]]]
        save_gif(pairs, folder / "projection.gif", fps=12, hold_last_ms=1500)
        result.files += [folder / "reconstruction.png", folder / "target.png", folder / "projection.gif"]
    return result
