"""Steering an exported generator: style mixing, per-layer genes and projection in w / w+.

    mix = style_mix(gen, rows=[1, 2, 3], cols=[10, 11, 12], layers="coarse", out="mix")   # style-mix.png
    brood = breed_genes(gen, [3, 17], children=8, out="brood")   # coarse from one parent, fine from another
    found = project_styles(gen, "photo.png", space="w", out="proj")     # a photo's styles, to edit and breed

Directions, edits and rebuilding a child or an edit from its recipe are in `ganforge.directions`.

The code of an image is what these tools move: for a style-based generator (StyleGAN2) its styles ws,
one w per layer (num_ws, w_dim), so layers can come from different images; for the others its latent z
(z_dim,). A *style file* is one numpy record with fields `ws` (float32, (num_ws, w_dim)), `label` (the
class, -1 for none) and `noise` (the synthesis noise maps, flattened, after a projection; empty
otherwise), readable with `np.load(path, allow_pickle=False)`. Seeds and z latent files (explore's)
are accepted everywhere and mapped to styles on the way in.

Layer groups follow StyleGAN's figure (two styles per resolution): coarse = 4-8 px (pose, shape),
middle = 16-32 px (features), fine = 64 px and up (colour, texture); below 64 px, fine is the last
resolution's layers.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganforge.data.reader import to_uint8_images
from ganforge.explore import (
    MAX_CHILDREN,
    MAX_LATENTS,
    MAX_MUTATION,
    MAX_PROJECT_STEPS,
    Brood,
    LatentRef,
    _as_tensor,
    _class_of,
    _latent,
    _metadata,
    _output,
    load_latent,
    save_gif,
    seed_of,
    target_image,
)
from ganforge.files import atomic_write, file_sha256, write_json_atomic
from ganforge.generator import (
    Generator,
    GeneratorError,
    check_seed,
    check_truncation,
    save_image,
    save_png,
)
from ganforge.models.sampling import truncates_in_w
from ganforge.pictures import labelled_rows

GROUPS = ("coarse", "middle", "fine")


# --- layers ------------------------------------------------------------------------------------------


def style_based(gen: Generator) -> bool:
    return truncates_in_w(gen.module)


def require_styles(gen: Generator, what: str) -> None:
    if not style_based(gen):
        raise GeneratorError(f"{what} needs a style-based generator (StyleGAN2, with one style per layer); "
                             f"{gen.config.get('architecture')} has one latent for all its layers. Breed it with "
                             "--mode blend or crossover instead, or train with --preset stylegan2.")


def layer_groups(gen: Generator) -> dict[str, list[int]]:
    """Style indices of each group: coarse 4-8 px, middle 16-32 px, fine the rest (two per resolution)."""
    require_styles(gen, "Layer groups")
    count, top = gen.module.num_ws, int(math.log2(gen.resolution))
    level = [min(2 + i // 2, top) for i in range(count)]  # log2 of the resolution each style acts at
    fine_from = 6 if top >= 6 else top
    return {"coarse": [i for i in range(count) if level[i] <= 3],
            "middle": [i for i in range(count) if 3 < level[i] < fine_from],
            "fine": [i for i in range(count) if level[i] >= fine_from]}


def describe_groups(gen: Generator) -> str:
    groups = layer_groups(gen)
    return ", ".join(f"{name} {_span(groups[name])}" for name in GROUPS if groups[name])


def _span(layers: list[int]) -> str:
    return f"{layers[0]}-{layers[-1]}" if len(layers) > 1 else str(layers[0])


def parse_layers(gen: Generator, text: str | Sequence[int] | None) -> list[int]:
    """'coarse', 'middle', 'fine', 'all', '0-3', '0,2,5-6' or 'coarse,fine' -> sorted style indices."""
    require_styles(gen, "Choosing layers")
    count = gen.module.num_ws
    if text is None or (isinstance(text, str) and text.strip().lower() == "all"):
        return list(range(count))
    groups = layer_groups(gen)
    hint = f"use coarse, middle, fine, all or layer numbers 0-{count - 1} (this generator: {describe_groups(gen)})"
    parts = [str(p).strip().lower() for p in (text.split(",") if isinstance(text, str) else text)]
    layers: set[int] = set()
    for part in parts:
        if part in groups:
            if not groups[part]:
                raise GeneratorError(f"Layers {text!r}: a {gen.resolution} px generator has no {part} layers; {hint}.")
            layers.update(groups[part])
            continue
        ends = part.split("-")
        if not (1 <= len(ends) <= 2 and all(e.isdigit() for e in ends)):
            raise GeneratorError(f"Layers {text!r}: {part!r} is not a layer group or number; {hint}.")
        low, high = int(ends[0]), int(ends[-1])
        if low > high or high >= count:
            raise GeneratorError(f"Layers {text!r}: {part!r} is out of range; {hint}.")
        layers.update(range(low, high + 1))
    if not layers:
        raise GeneratorError(f"Layers {text!r}: none given; {hint}.")
    return sorted(layers)


# --- codes: styles or latents --------------------------------------------------------------------------


@dataclass
class Code:
    """What an image is made from: styles (num_ws, w_dim) for StyleGAN2, else a latent z (z_dim,)."""

    value: torch.Tensor
    label: int | None
    name: str
    noise: list[torch.Tensor] | None = None  # a projection's own noise maps (StyleGAN2 only)


def codes_of(gen: Generator, refs: Sequence[LatentRef | Code], *, label: int | str | None = None,
             truncation: float = 1.0) -> list[Code]:
    """Seeds, z latent files, style files (or codes) -> codes; styles for a style-based generator."""
    check_truncation(truncation)
    if not refs:
        raise GeneratorError("No latents given: use seeds such as 3,17 or latent files such as child-02.npy.")
    codes = []
    for ref in refs:
        if isinstance(ref, Code):
            codes.append(ref)
        elif isinstance(ref, (str, os.PathLike)) and not str(ref).strip().lstrip("-").isdigit() and _is_style_file(ref):
            codes.append(load_styles(gen, ref))
        else:
            z, own, name = _latent(gen, ref)
            index = _class_of(gen, label, own, name)
            if style_based(gen):
                codes.append(Code(_map(gen, z[None], index, truncation)[0], index, name))
            else:
                codes.append(Code(z * truncation if truncation != 1 else z, index, name))
    return codes


@torch.inference_mode()
def _map(gen: Generator, z: torch.Tensor, label: int | None, truncation: float = 1.0) -> torch.Tensor:
    """z (B, z_dim) -> styles (B, num_ws, w_dim) on the CPU."""
    labels = None if label is None else torch.full((len(z),), label, dtype=torch.long, device=gen.device)
    return gen.module.mapping(z.to(gen.device), labels, truncation_psi=truncation).float().cpu()


def _noise_layers(gen: Generator) -> list[torch.nn.Module]:
    return [m for m in gen.module.synthesis.modules() if isinstance(getattr(m, "noise_const", None), torch.Tensor)]


@contextmanager
def _noise(gen: Generator, maps: list[torch.Tensor] | None):
    """Synthesis with these noise maps in place of the generator's fixed ones (restored after)."""
    if maps is None:
        yield
        return
    layers = _noise_layers(gen)
    kept = [layer.noise_const for layer in layers]
    try:
        for layer, m in zip(layers, maps):
            layer.noise_const = m.to(kept[0].device, kept[0].dtype)
        yield
    finally:
        for layer, k in zip(layers, kept):
            layer.noise_const = k


@torch.inference_mode()
def render(gen: Generator, values: torch.Tensor, labels: Sequence[int | None] | None = None,
           noise: list[torch.Tensor] | None = None, batch_size: int = 64) -> torch.Tensor:
    """Codes (B, num_ws, w_dim) or (B, z_dim) -> float (B, C, H, W) images in [-1, 1] on the CPU."""
    gen.require_images("steering")
    out = []
    for start in range(0, len(values), batch_size):
        v = values[start:start + batch_size].to(gen.device)
        with _noise(gen, noise):
            if style_based(gen):
                x = gen.module.synthesis(v)
            else:
                chunk = None if labels is None or gen.num_classes == 0 else labels[start:start + batch_size]
                ls = None if chunk is None else torch.tensor(chunk, dtype=torch.long, device=gen.device)
                x = gen.module(v, ls)
        out.append(x.float().cpu())
    return torch.cat(out)


def _draw_z(gen: Generator, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(count, gen.z_dim, generator=rng)
    labels = torch.randint(gen.num_classes, (count,), generator=rng) if gen.num_classes else None
    return z, labels


def render_codes(gen: Generator, codes: Sequence[Code]) -> torch.Tensor:
    """Images of codes; those with their own noise maps are drawn one at a time."""
    if not any(c.noise is not None for c in codes):
        return render(gen, torch.stack([c.value for c in codes]), [c.label for c in codes])
    return torch.cat([render(gen, c.value[None], [c.label], c.noise) for c in codes])


def save_styles(path: str | os.PathLike, code: Code) -> Path:
    """One record: `ws` float32 (num_ws, w_dim), `label` (-1 for none), `noise` (flattened maps, or empty)."""
    ws = code.value.detach().float().cpu().numpy()
    noise = (np.concatenate([m.detach().float().cpu().reshape(-1).numpy() for m in code.noise])
             if code.noise else np.zeros(0, np.float32))
    record = np.zeros((), dtype=[("ws", "<f4", ws.shape), ("label", "<i8"), ("noise", "<f4", noise.shape)])
    record["ws"], record["label"], record["noise"] = ws, -1 if code.label is None else int(code.label), noise
    with atomic_write(path) as f:
        np.save(f, record, allow_pickle=False)
    return Path(path)


def _is_style_file(path: LatentRef) -> bool:
    try:
        data = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError, EOFError):
        return False  # load_latent explains what is wrong with it
    return bool(isinstance(data, np.ndarray) and data.dtype.names and "ws" in data.dtype.names)


def load_styles(gen: Generator, path: LatentRef) -> Code:
    """A style file -> its code, checked against `gen`; z latent files are mapped to styles."""
    path = Path(path)
    if not _is_style_file(path):
        z, label = load_latent(gen, path)  # explains a missing or damaged file
        return Code(_map(gen, z[None], label)[0] if style_based(gen) else z, label, path.name)
    require_styles(gen, f"{path.name} holds per-layer styles, so it")
    data = np.load(path, allow_pickle=False)
    if data.shape != ():
        raise GeneratorError(f"{path} holds {data.size} records; a style file holds one (as breed and edit write them).")
    ws, label = np.asarray(data["ws"], dtype=np.float32), int(data["label"])
    shape = (gen.module.num_ws, gen.module.w_dim)
    if ws.shape != shape:
        raise GeneratorError(f"{path} holds styles of shape {ws.shape}, not {shape} for this generator: was it made "
                             "with another one?")
    if not np.isfinite(ws).all():
        raise GeneratorError(f"{path} holds NaN or infinite values, which give no image: it is damaged; make it again.")
    if label >= max(gen.num_classes, 0) or (label >= 0 and gen.num_classes == 0):
        raise GeneratorError(f"{path} was saved with class {label}, which this generator does not have: was it made "
                             "with another one?")
    noise = None
    flat = np.asarray(data["noise"], dtype=np.float32) if "noise" in data.dtype.names else np.zeros(0)
    if flat.size:
        sizes = [layer.noise_const.shape for layer in _noise_layers(gen)]
        if flat.size != sum(math.prod(s) for s in sizes):
            raise GeneratorError(f"{path} holds noise maps for another generator: was it made with another one?")
        noise, start = [], 0
        for s in sizes:
            noise.append(torch.from_numpy(flat[start:start + math.prod(s)].copy()).reshape(s))
            start += math.prod(s)
    return Code(torch.from_numpy(ws.copy()), None if label < 0 else label, path.name, noise)


def _pictures(x: torch.Tensor) -> np.ndarray:
    return to_uint8_images(x)  # (B, H, W, C) uint8


# --- style mixing --------------------------------------------------------------------------------------


@dataclass
class StyleMix:
    cells: list[list[Image.Image]]  # cells[r][c]: row r's styles on `layers`, column c's elsewhere
    rows: list[Image.Image]  # the row latents' own images
    cols: list[Image.Image]
    layers: list[int]
    sheet: Image.Image  # the classic grid: columns along the top, rows down the left
    files: list[Path] = field(default_factory=list)


def mix(row: torch.Tensor, col: torch.Tensor, layers: Sequence[int]) -> torch.Tensor:
    """Styles (num_ws, w_dim) equal to `col` except on `layers`, which come from `row`."""
    out = col.clone()
    out[list(layers)] = row[list(layers)]
    return out


def style_mix(gen: Generator, rows: Sequence[LatentRef], cols: Sequence[LatentRef], *, layers: str = "coarse",
              truncation: float = 1.0, label: int | str | None = None, out: str | os.PathLike | None = None,
              overwrite: bool = False) -> StyleMix:
    """The style-mixing grid: cell (r, c) takes row r's styles on `layers` and column c's on the others."""
    require_styles(gen, "style-mix")
    gen.require_images("style-mix")
    for what, refs in (("rows", rows), ("cols", cols)):
        if not 1 <= len(refs) <= 32:
            raise GeneratorError(f"{len(refs)} {what}: give 1 to 32 seeds or style files, e.g. --{what} 1,2,3.")
    picked = parse_layers(gen, layers)
    folder = _output(out, ["style-mix.png"], overwrite)
    row_codes = codes_of(gen, rows, label=label, truncation=truncation)
    col_codes = codes_of(gen, cols, label=label, truncation=truncation)
    mixed = [Code(mix(r.value, c.value, picked), c.label, f"{r.name} x {c.name}", c.noise)
             for r in row_codes for c in col_codes]
    x_rows, x_cols, x_cells = render_codes(gen, row_codes), render_codes(gen, col_codes), render_codes(gen, mixed)
    n = len(col_codes)
    cells = [gen.to_images(x_cells[i * n:(i + 1) * n]) for i in range(len(row_codes))]
    blank = torch.full_like(x_cols[:1], -1.0)  # the corner: nothing
    top = _pictures(torch.cat([blank, x_cols]))
    lines = [top] + [_pictures(torch.cat([x_rows[i:i + 1], x_cells[i * n:(i + 1) * n]])) for i in range(len(row_codes))]
    names = [f"layers {_span(picked) if picked == list(range(picked[0], picked[-1] + 1)) else picked}"] + \
            [r.name for r in row_codes]
    sheet = labelled_rows(lines, names, n + 1)
    result = StyleMix(cells, gen.to_images(x_rows, [seed_of(r) for r in rows]), gen.to_images(x_cols, [seed_of(c) for c in cols]),
                      picked, sheet)
    if folder is not None:
        save_image(sheet, folder / "style-mix.png")
        result.files.append(folder / "style-mix.png")
    return result


# --- breeding with genes -------------------------------------------------------------------------------


def parse_genes(gen: Generator, text: str | dict | None, parents: int) -> dict[str, int | str] | None:
    """'coarse=0,middle=blend,fine=1' -> {group: parent index or 'blend'}; None: each child draws them."""
    if text is None or text == "":
        return None
    items = text.items() if isinstance(text, dict) else (
        tuple(part.split("=", 1)) if "=" in part else (part, "") for part in str(text).split(","))
    genes: dict[str, int | str] = {}
    groups = layer_groups(gen)
    for group, source in items:
        group, source = str(group).strip().lower(), str(source).strip().lower()
        if group not in groups or not groups[group]:
            raise GeneratorError(f"genes {text!r}: {group!r} is not a layer group of this generator "
                                 f"({describe_groups(gen)}); write e.g. coarse=0,middle=blend,fine=1.")
        if source == "blend":
            genes[group] = "blend"
        elif source.isdigit() and int(source) < parents:
            genes[group] = int(source)
        else:
            raise GeneratorError(f"genes {text!r}: {group}={source!r}: give a parent's place (0-{parents - 1}, in the "
                                 "order of --parents) or blend.")
    return genes


def _w_spread(gen: Generator) -> torch.Tensor:
    """Per-dimension standard deviation of w (w_dim,), from a fixed sample: the scale of a mutation."""
    cached = getattr(gen, "_w_spread", None)
    if cached is None:
        z, labels = _draw_z(gen, 4096, 0)
        with torch.inference_mode():
            w = gen.module.mapping(z.to(gen.device), None if labels is None else labels.to(gen.device))[:, 0]
        cached = w.float().cpu().std(0)
        gen._w_spread = cached
    return cached


def breed_genes(gen: Generator, parents: Sequence[LatentRef], *, children: int = 8, mutation: float = 0.1,
                genes: str | dict | None = None, seed: int = 0, label: int | str | None = None,
                truncation: float = 1.0, out: str | os.PathLike | None = None, overwrite: bool = False) -> Brood:
    """Children whose layer groups come from different parents (Artbreeder's genes), StyleGAN2 only.

    For each child and each group (coarse, middle, fine) the styles come from one parent (drawn, or as
    `genes` says: 'coarse=0,fine=1,middle=blend') or from a random blend of all of them; then
    `mutation` x (w's spread per dimension) x Gaussian noise is added. The same seed gives the same
    children. Writes child-XX.npy (styles: breed, edit or style-mix them again), child-XX.png,
    child-XX.json (the recipe that `remake` rebuilds the child from) and children.png.
    """
    require_styles(gen, "Breeding with genes")
    gen.require_images("breed")
    if len(parents) < 2 or len(parents) > MAX_LATENTS:
        raise GeneratorError(f"{len(parents)} parent(s): give 2 to {MAX_LATENTS:,} (seeds or latent files).")
    if isinstance(children, bool) or not isinstance(children, numbers.Integral) or not 1 <= children <= MAX_CHILDREN:
        raise GeneratorError(f"children={children}: breed 1 to {MAX_CHILDREN} children at a time (8 is usual).")
    if not 0 <= mutation <= MAX_MUTATION:
        raise GeneratorError(f"mutation={mutation}: use 0 (none) to {MAX_MUTATION:g}; 0.1 is mild, 1 is strong.")
    seed = check_seed(seed, "breeding seed")
    fixed = parse_genes(gen, genes, len(parents))
    names = [f"child-{k:02d}{ext}" for k in range(children) for ext in (".npy", ".png", ".json")] + ["children.png"]
    folder = _output(out, names, overwrite)
    found = codes_of(gen, parents, label=label, truncation=truncation)
    stacked = torch.stack([c.value for c in found])  # (P, num_ws, w_dim)
    groups = {g: layers for g, layers in layer_groups(gen).items() if layers}
    spread = _w_spread(gen)
    rng = torch.Generator().manual_seed(int(seed))
    kids, heritage = [], []
    for _ in range(children):
        child = torch.empty_like(stacked[0])
        taken = {}
        for group, layers in groups.items():
            choice = fixed.get(group) if fixed else None
            drawn = int(torch.randint(len(found), (), generator=rng))  # drawn always: same seed, same children
            weights = -torch.rand(len(found), generator=rng).log()
            weights = weights / weights.sum()
            source = drawn if choice is None else choice
            if source == "blend":
                child[layers] = torch.einsum("p,pld->ld", weights, stacked[:, layers])
                taken[group] = {"blend": [round(float(v), 6) for v in weights]}
            else:
                child[layers] = stacked[source, layers]
                taken[group] = int(source)
        child = child + float(mutation) * spread * torch.randn(spread.shape, generator=rng)  # one noise for all layers
        coarse = taken.get("coarse")
        heir = coarse if isinstance(coarse, int) else 0
        kids.append(Code(child, found[heir].label, ""))
        heritage.append(taken)
    brood = Brood(torch.stack([k.value for k in kids]), [k.label for k in kids], [], [c.name for c in found])
    x = render_codes(gen, kids)
    brood.images = gen.to_images(x)
    if folder is None:
        return brood
    recipe = {"kind": "brood", "mode": "genes", "parents": [_ref_recipe(p, folder) for p in parents],
              "children": children, "mutation": float(mutation), "genes": fixed, "seed": seed,
              "label": label, "truncation": truncation}
    for k, (kid, image) in enumerate(zip(kids, brood.images)):
        brood.files.append(save_styles(folder / f"child-{k:02d}.npy", kid))
        meta = _metadata(gen, kid.label, parents=", ".join(brood.parents), mode="genes", mutation=mutation, seed=seed,
                         child=k, genes=json.dumps(heritage[k]))
        save_png(image, folder / f"child-{k:02d}.png", {**meta, **gen.signed(image)})
        write_json_atomic(folder / f"child-{k:02d}.json", {**recipe, "child": k, "genes_taken": heritage[k]})
        brood.files += [folder / f"child-{k:02d}.png", folder / f"child-{k:02d}.json"]
    columns = max(len(found), min(children, 8))
    pictures = _pictures(x)
    rows = [_pictures(render_codes(gen, found))] + [pictures[i:i + columns] for i in range(0, children, columns)]
    save_image(labelled_rows(rows, ["parents", "children"] + [""] * (len(rows) - 2), columns), folder / "children.png")
    brood.files.append(folder / "children.png")
    return brood


# --- recipes: rebuild a child or an edit exactly -------------------------------------------------------


def _ref_recipe(ref: LatentRef, folder: Path) -> dict:
    """How a recipe names a parent: its seed, or its file (relative to the recipe when it can) and digest."""
    if isinstance(ref, (int, np.integer)) or (isinstance(ref, str) and ref.strip().lstrip("-").isdigit()):
        return {"seed": int(ref)}
    path = Path(ref).resolve()
    try:
        named = os.path.relpath(path, folder.resolve())
    except ValueError:  # another drive (Windows)
        named = str(path)
    recipe = {"file": named, "sha256": file_sha256(path)}
    sibling = path.with_suffix(".json")
    if sibling.is_file():  # the parent's own recipe, so the lineage can be followed
        try:
            recipe["recipe"] = json.loads(sibling.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
    return recipe


def _resolve(entry: dict, folder: Path) -> LatentRef:
    if "seed" in entry:
        return int(entry["seed"])
    path = (folder / entry["file"]).resolve()
    if not path.is_file():
        raise GeneratorError(f"The recipe's parent {entry['file']} is not at {path}: put it back to remake this image.")
    if file_sha256(path) != entry.get("sha256"):
        raise GeneratorError(f"The recipe's parent {path} has changed since: this image cannot be remade exactly.")
    return str(path)


# --- projection in w / w+ ------------------------------------------------------------------------------


@dataclass
class StyleProjection:
    code: Code  # styles (num_ws, w_dim) and the noise maps found with them
    reconstruction: Image.Image
    target: Image.Image
    pixel_mse: float
    files: list[Path] = field(default_factory=list)


def _noise_penalty(maps: list[torch.Tensor]) -> torch.Tensor:
    """StyleGAN2's projector: squared autocorrelation at one pixel's shift, at every scale down to 8x8."""
    total = maps[0].new_zeros(())
    for m in maps:
        n = m[None, None]  # (1, 1, H, W)
        while True:
            total = total + (n * torch.roll(n, 1, dims=3)).mean() ** 2 + (n * torch.roll(n, 1, dims=2)).mean() ** 2
            if n.shape[2] <= 8:
                break
            n = torch.nn.functional.avg_pool2d(n, 2)
    return total


def project_styles(gen: Generator, image: Image.Image | str | os.PathLike, *, space: str = "w", steps: int = 300,
                   lr: float = 0.1, noise_weight: float = 1e5, label: int | str | None = None, seed: int = 0,
                   out: str | os.PathLike | None = None, overwrite: bool = False, progress: bool = True,
                   samples: int = 10_000) -> StyleProjection:
    """The styles (one w for all layers, or w+: one per layer) and noise maps closest to a real image.

    As StyleGAN2's projector (Karras et al. 2020): start at the mean w; Adam with a learning rate that
    ramps up over the first 5 % of steps and down (cosine) over the last 25 %; noise added to w, fading
    over the first 75 %; the noise maps optimised too, regularised toward white noise (their
    autocorrelation at every scale, weight `noise_weight`) and renormalised after each step. The
    distance is pixel MSE (the paper's is LPIPS, which needs VGG weights ganforge does not ship).
    Writes projected.npy (a style file with the noise maps), reconstruction.png, target.png and
    projection.gif (the search, target left).
    """
    from tqdm import tqdm

    from ganforge.pictures import image_grid

    require_styles(gen, f"Projecting in {space}")
    if space not in ("w", "w+"):
        raise GeneratorError(f"space={space!r}: project a StyleGAN2 in w (one style for all layers) or w+ (one per layer).")
    if not (isinstance(steps, numbers.Integral) and 1 <= steps <= MAX_PROJECT_STEPS) or not lr > 0 \
            or not (0 <= noise_weight < math.inf):
        raise GeneratorError(f"steps={steps}, lr={lr}, noise_weight={noise_weight}: use 1 to {MAX_PROJECT_STEPS:,} "
                             "steps, lr > 0 and a weight >= 0.")
    seed = check_seed(seed, "projection seed")
    target_picture = target_image(gen, image)
    folder = _output(out, ["projected.npy", "reconstruction.png", "target.png", "projection.gif"], overwrite)
    index = gen.label_index(label)
    if gen.num_classes and index is None:
        raise GeneratorError("This generator is class-conditional: give the class to project into with --class.")
    device, synthesis = gen.device, gen.module.synthesis
    z, _ = _draw_z(gen, samples, seed)
    w_samples = _map(gen, z, index)[:, 0]  # (N, w_dim)
    w_avg = w_samples.mean(0)
    w_std = float((w_samples - w_avg).pow(2).sum(1).mean().sqrt())
    num_ws = gen.module.num_ws
    start = w_avg[None, None].repeat(1, num_ws if space == "w+" else 1, 1)  # (1, 1 or num_ws, w_dim)
    w = start.clone().to(device).requires_grad_(True)
    rng = torch.Generator().manual_seed(seed)
    layers = _noise_layers(gen)
    maps = [torch.randn(layer.noise_const.shape, generator=rng).to(device).requires_grad_(True) for layer in layers]
    target = _as_tensor(target_picture).to(device)
    optimiser = torch.optim.Adam([w, *maps], lr=lr, betas=(0.9, 0.999))
    frames, every = [], max(1, steps // 50)
    kept = [layer.noise_const for layer in layers]
    try:
        with torch.enable_grad(), tqdm(total=steps, unit="step", desc="Projecting", disable=not progress, delay=1,
                                       dynamic_ncols=True) as bar:
            for step in range(steps):
                t = step / steps
                noise_scale = w_std * 0.05 * max(0.0, 1.0 - t / 0.75) ** 2
                ramp = min(1.0, (1.0 - t) / 0.25)
                ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
                ramp = ramp * min(1.0, t / 0.05)
                for group in optimiser.param_groups:
                    group["lr"] = lr * ramp
                w_noise = torch.randn(w.shape, generator=rng).to(device) * noise_scale
                ws = (w + w_noise).expand(1, num_ws, -1) if space == "w" else w + w_noise
                for layer, m in zip(layers, maps):
                    layer.noise_const = m
                x = synthesis(ws).float()
                loss = (x - target).pow(2).mean() + noise_weight * _noise_penalty(maps)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                with torch.no_grad():
                    for m in maps:
                        m.sub_(m.mean()).div_(m.square().mean().sqrt().clamp_min(1e-8))
                if step % every == 0:
                    frames.append(x[0].detach().cpu())
                bar.update(1)
    finally:
        for layer, k in zip(layers, kept):
            layer.noise_const = k
    ws = w.detach().cpu().expand(1, num_ws, -1)[0].clone()
    code = Code(ws, index, "projected.npy", [m.detach().cpu() for m in maps])
    x = render_codes(gen, [code])
    result = StyleProjection(code, gen.to_images(x)[0], target_picture, float((x - target.cpu()).pow(2).mean()))
    if folder is not None:
        save_styles(folder / "projected.npy", code)
        save_png(result.reconstruction, folder / "reconstruction.png",
                 {**_metadata(gen, index, space=space, pixel_mse=f"{result.pixel_mse:.6f}"),
                  **gen.signed(result.reconstruction)})
        save_image(target_picture, folder / "target.png")
        pairs = [image_grid(to_uint8_images(torch.cat([target.cpu(), f[None]])), columns=2) for f in frames + [x[0]]]
        save_gif(pairs, folder / "projection.gif", fps=12, hold_last_ms=1500)
        result.files += [folder / n for n in ("projected.npy", "reconstruction.png", "target.png", "projection.gif")]
    return result
