"""Semantic directions (GANSpace) in an exported generator, and edits along them.

    found = find_directions(gen)                  # PCA in w (StyleGAN2) or z (DCGAN family), saved with gen
    steer = Steer(gen)                            # a slider's engine: one image in a few milliseconds
    image = steer.image(7, {2: -1.5})             # seed 7, direction 2 at -1.5 standard deviations
    strip = edit(gen, 7, direction=2, strengths=[-2, -1, 0, 1, 2], out="edit")           # strip.png + edit.gif
    same = remake(gen, "brood/child-02.json")     # a child (or an edit) rebuilt exactly from its recipe

Directions (Härkönen et al. 2020, GANSpace): principal components of w over many samples, each with the
standard deviation of w along it, so strength 1 is one typical step. A DCGAN-family generator has no
w: PCA runs on an early feature map (8x8), and each component is carried back to z by linear
regression, as GANSpace does for BigGAN; the z directions are then made orthonormal in order. Codes,
layers and style files are `ganforge.steer`'s.
"""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganforge.explore import LatentRef, _metadata, _output, save_gif, save_latent, seed_of
from ganforge.files import file_sha256, write_bytes_atomic, write_json_atomic
from ganforge.generator import Generator, GeneratorError, check_seed, refuse_overwrite, save_image, save_png
from ganforge.pictures import labelled_rows
from ganforge.steer import (
    Code,
    _draw_z,
    _pictures,
    _ref_recipe,
    _resolve,
    breed_genes,
    codes_of,
    layer_groups,
    parse_layers,
    render,
    render_codes,
    save_styles,
    style_based,
)

DIRECTIONS_JSON, DIRECTIONS_WEIGHTS, STRIPS = "directions.json", "directions.safetensors", "directions"
MAX_DIRECTIONS = 64
MAX_STRENGTH = 20.0  # in standard deviations; far past anything the generator has seen (about 3)
MAX_STEPS = 240  # frames of one edit strip
STRIP_STRENGTHS = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
W_SAMPLES, FEATURE_SAMPLES = 20_000, 3_000  # PCA samples: w is small; feature maps are large


# --- directions ----------------------------------------------------------------------------------------


@dataclass
class Directions:
    space: str  # "w" (StyleGAN2) or "z"
    vectors: torch.Tensor  # (K, dim), orthonormal rows
    sigma: torch.Tensor  # (K,) standard deviation of the samples along each direction
    variance: torch.Tensor  # (K,) share of the total variance each explains (of w, or of the feature map)
    layers: list[list[int]]  # per direction, the styles it moves (StyleGAN2); [] for z
    info: dict = field(default_factory=dict)  # samples, seed, the weights' digest, per-group effect
    files: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.vectors)


def _weights_digest(gen: Generator) -> str | None:
    return ((gen.config.get("files") or {}).get("model.safetensors")
            or (file_sha256(gen.path / "model.safetensors") if gen.path and (gen.path / "model.safetensors").exists()
                else None))


def _flip(vectors: torch.Tensor) -> torch.Tensor:
    """Each row's sign fixed so its largest entry is positive (PCA's sign is otherwise arbitrary)."""
    index = vectors.abs().argmax(dim=1)
    signs = vectors.gather(1, index[:, None]).sign()
    return vectors * torch.where(signs == 0, torch.ones_like(signs), signs)


def _pca(x: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows x (N, D) -> (components (K, D), their variances (K,), total variance), exact and deterministic."""
    x = x.double() - x.double().mean(dim=0)
    n, d = x.shape
    if d <= n:
        values, vectors = torch.linalg.eigh(x.T @ x / (n - 1))  # ascending
        values, vectors = values.flip(0)[:count], vectors.flip(1)[:, :count].T
    else:  # the Gram matrix is smaller: its eigenvectors map to the components through x
        values, u = torch.linalg.eigh(x @ x.T / (n - 1))
        values, u = values.flip(0)[:count], u.flip(1)[:, :count]
        vectors = (x.T @ u).T
        vectors = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)
    total = x.pow(2).sum() / (n - 1)
    return _flip(vectors).float(), values.clamp_min(0).float(), total.float()


@torch.inference_mode()
def _early_features(gen: Generator, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """The first feature map of at least 8x8 a DCGAN-family generator computes, flattened (N, C*H*W)."""
    found: list[torch.Tensor] = []

    def keep(module, inputs, output):
        if not found and isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[-1] >= 8 \
                and output.shape[1] != gen.channels:
            found.append(output.float().flatten(1).cpu())

    rows = []
    for start in range(0, len(z), 256):
        found.clear()
        hooks = [m.register_forward_hook(keep) for m in gen.module.modules() if m is not gen.module]
        try:
            ls = None if labels is None else labels[start:start + 256].to(gen.device)
            gen.module(z[start:start + 256].to(gen.device), ls)
        finally:
            for h in hooks:
                h.remove()
        if not found:
            raise GeneratorError(f"{gen.config.get('architecture')} shows no feature map of 8x8 or more to find "
                                 "directions in.")
        rows.append(found[0])
    return torch.cat(rows)


def find_directions(gen: Generator, *, count: int = 10, samples: int | None = None, seed: int = 0,
                    layers: str | None = None, strip_seeds: Sequence[int] = (0, 1, 2), save: bool = True,
                    overwrite: bool = False, progress: bool = False) -> Directions:
    """Unsupervised directions by PCA (GANSpace), saved in the generator's folder with picture strips.

    StyleGAN2: PCA of w over `samples` mapped latents (20,000), applied to `layers` (all by default).
    DCGAN family: PCA of the first 8x8 feature map over `samples` (3,000), each component carried back to
    z by least squares and made orthonormal. Writes directions.json, directions.safetensors,
    directions.png (every direction on the first strip seed) and directions/direction-KK.png (each on
    all strip seeds, -3 to +3 standard deviations); existing directions are replaced only with `overwrite`.
    """
    gen.require_images("directions")
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or not 1 <= count <= MAX_DIRECTIONS:
        raise GeneratorError(f"count={count}: find 1 to {MAX_DIRECTIONS} directions (10 is usual; the first are the "
                             "strongest).")
    seed = check_seed(seed, "directions seed")
    style = style_based(gen)
    dim = gen.module.w_dim if style else gen.z_dim
    samples = samples or (W_SAMPLES if style else FEATURE_SAMPLES)
    if not count < samples <= 1_000_000:
        raise GeneratorError(f"samples={samples}: use more samples than directions, at most 1,000,000.")
    if not style and count > dim:
        raise GeneratorError(f"count={count}: this generator's latent has {dim} dimensions, so at most {dim} directions.")
    picked = parse_layers(gen, layers) if style else []
    names = [DIRECTIONS_JSON, DIRECTIONS_WEIGHTS, "directions.png"] + \
            [f"{STRIPS}/direction-{k:02d}.png" for k in range(count)]
    if save:
        if gen.path is None:
            raise GeneratorError("This generator was not loaded from a folder: give save=False, or load it with "
                                 "Generator.from_pretrained.")
        refuse_overwrite(gen.path, names, overwrite)
    z, labels = _draw_z(gen, samples, seed)
    if style:
        with torch.inference_mode():
            w = torch.cat([gen.module.mapping(z[i:i + 4096].to(gen.device),
                                              None if labels is None else labels[i:i + 4096].to(gen.device))[:, 0]
                           .float().cpu() for i in range(0, samples, 4096)])  # (N, w_dim)
        vectors, values, total = _pca(w, count)
        sigma, mean = values.sqrt(), w.mean(0)
    else:
        features = _early_features(gen, z, labels)  # (N, D)
        components, values, total = _pca(features, count)
        coords = (features - features.mean(0)) @ components.T  # (N, K)
        u = torch.linalg.lstsq(coords.double(), z.double()).solution.T  # (z_dim, K): coordinates -> z
        q, r = torch.linalg.qr(u)
        vectors = (q * torch.where(r.diagonal() < 0, -1.0, 1.0)).T.float()  # (K, z_dim), orthonormal, in order
        sigma, mean = torch.ones(count), torch.zeros(dim)  # z is standard normal along any unit direction
    found = Directions("w" if style else "z", vectors, sigma, values / total, [picked] * count,
                       {"samples": samples, "seed": seed, "weights_sha256": _weights_digest(gen),
                        "mean": mean.tolist()})
    if style:
        found.info["effect"] = _group_effects(gen, found, strip_seeds)
    if save:
        _save_directions(gen, found, strip_seeds)
    return found


def _group_effects(gen: Generator, found: Directions, seeds: Sequence[int]) -> list[dict[str, float]]:
    """Per direction, the share of its pixel change that each layer group makes (moved +2 sigma alone)."""
    base = codes_of(gen, list(seeds))
    ws = torch.stack([c.value for c in base])  # (S, num_ws, w_dim)
    plain = render(gen, ws)
    effects = []
    for k in range(len(found)):
        change = {}
        for group, layers in layer_groups(gen).items():
            if not layers:
                continue
            moved = ws.clone()
            moved[:, layers] += 2 * found.sigma[k] * found.vectors[k]
            change[group] = float((render(gen, moved) - plain).abs().mean())
        total = sum(change.values()) or 1.0
        effects.append({g: round(v / total, 3) for g, v in change.items()})
    return effects


def _save_directions(gen: Generator, found: Directions, strip_seeds: Sequence[int]) -> None:
    from safetensors.torch import save

    folder = gen.path
    write_bytes_atomic(folder / DIRECTIONS_WEIGHTS, save({"vectors": found.vectors.contiguous(),
                                                          "sigma": found.sigma.contiguous(),
                                                          "variance": found.variance.contiguous()}))
    meta = {"format": "ganforge-directions", "version": 1, "space": found.space, "count": len(found),
            **{k: v for k, v in found.info.items() if k not in ("mean", "effect")},
            "directions": [{"index": k, "sigma": round(float(found.sigma[k]), 6),
                            "variance": round(float(found.variance[k]), 6), "layers": found.layers[k],
                            **({"effect": found.info["effect"][k]} if "effect" in found.info else {}),
                            "strip": f"{STRIPS}/direction-{k:02d}.png"} for k in range(len(found))],
            "files": {DIRECTIONS_WEIGHTS: file_sha256(folder / DIRECTIONS_WEIGHTS)}}
    steer = Steer(gen, found)
    (folder / STRIPS).mkdir(exist_ok=True)
    overview, names = [], []
    for k in range(len(found)):
        rows = [_pictures(steer.render_edits(seed, [{k: s} for s in STRIP_STRENGTHS])) for seed in strip_seeds]
        path = folder / STRIPS / f"direction-{k:02d}.png"
        save_image(labelled_rows(rows, [f"seed {s}" for s in strip_seeds], len(STRIP_STRENGTHS)), path)
        found.files.append(path)
        overview.append(rows[0])
        names.append(f"{k}: {100 * float(found.variance[k]):.0f}%")
    save_image(labelled_rows(overview, names, len(STRIP_STRENGTHS)), folder / "directions.png")
    write_json_atomic(folder / DIRECTIONS_JSON, meta)
    found.files[:0] = [folder / DIRECTIONS_JSON, folder / DIRECTIONS_WEIGHTS, folder / "directions.png"]


def load_directions(gen: Generator) -> Directions:
    """The directions saved in the generator's folder, checked against its weights."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = gen.path
    hint = f"find them first: ganforge directions {folder or 'GEN'}"
    if folder is None or not (folder / DIRECTIONS_JSON).is_file():
        raise GeneratorError(f"This generator has no directions yet; {hint}.")
    try:
        meta = json.loads((folder / DIRECTIONS_JSON).read_text(encoding="utf-8"))
        recorded = meta["files"][DIRECTIONS_WEIGHTS]
        if file_sha256(folder / DIRECTIONS_WEIGHTS) != recorded:
            raise ValueError("digest")
        tensors = load_file(folder / DIRECTIONS_WEIGHTS)
        vectors, sigma, variance = tensors["vectors"], tensors["sigma"], tensors["variance"]
        layers = [list(d["layers"]) for d in meta["directions"]]
    except (OSError, ValueError, KeyError, TypeError, SafetensorError):
        raise GeneratorError(f"The directions in {folder} are damaged or incomplete; "
                             f"{hint} --overwrite.") from None
    if meta.get("weights_sha256") and meta["weights_sha256"] != _weights_digest(gen):
        raise GeneratorError(f"The directions in {folder} were found for other weights (the generator was exported "
                             f"again since); {hint} --overwrite.")
    space = "w" if style_based(gen) else "z"
    dim = gen.module.w_dim if space == "w" else gen.z_dim
    if meta.get("space") != space or vectors.shape[1:] != (dim,) or len(layers) != len(vectors):
        raise GeneratorError(f"The directions in {folder} do not fit this generator; {hint} --overwrite.")
    return Directions(space, vectors, sigma, variance, layers, {k: v for k, v in meta.items() if k != "directions"})


# --- edits ---------------------------------------------------------------------------------------------


class Steer:
    """A generator with its directions, for sliders: codes are cached, one image costs one synthesis."""

    def __init__(self, gen: Generator, directions: Directions | None = None):
        self.gen = gen
        self.directions = directions if directions is not None else load_directions(gen)
        self._codes: dict = {}

    def code(self, ref: LatentRef | Code, *, label: int | str | None = None, truncation: float = 1.0) -> Code:
        if isinstance(ref, Code):
            return ref
        key = (str(ref), label, truncation)
        if key not in self._codes:
            if len(self._codes) > 1024:
                self._codes.clear()
            self._codes[key] = codes_of(self.gen, [ref], label=label, truncation=truncation)[0]
        return self._codes[key]

    def edited(self, code: Code, edits: dict[int, float], layers: str | Sequence[int] | None = None) -> Code:
        """The code moved by `edits` ({direction: strength in standard deviations})."""
        value = code.value.clone()
        for k, strength in edits.items():
            check_direction(self.directions, k)
            check_strength(strength)
            step = float(strength) * self.directions.sigma[k] * self.directions.vectors[k]
            if self.directions.space == "w":
                chosen = self.directions.layers[k] if layers is None else parse_layers(self.gen, layers)
                value[chosen] += step
            else:
                value += step
        return Code(value, code.label, code.name, code.noise)

    def render_edits(self, ref: LatentRef | Code, edits_list, *, label=None, truncation: float = 1.0,
                     layers=None) -> torch.Tensor:
        base = self.code(ref, label=label, truncation=truncation)
        return render_codes(self.gen, [self.edited(base, e, layers) for e in edits_list])

    def image(self, ref: LatentRef | Code, edits: dict[int, float] | None = None, *, label: int | str | None = None,
              truncation: float = 1.0, layers: str | Sequence[int] | None = None) -> Image.Image:
        """One image of a seed (or latent file) with edits: the slider call."""
        return self.gen.to_images(self.render_edits(ref, [edits or {}], label=label, truncation=truncation,
                                                    layers=layers), [seed_of(ref)])[0]


def check_direction(found: Directions, k) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 0 <= k < len(found):
        raise GeneratorError(f"direction {k!r}: this generator has directions 0-{len(found) - 1} (see directions.png "
                             "in its folder).")
    return int(k)


def check_strength(strength) -> float:
    if isinstance(strength, bool) or not isinstance(strength, numbers.Real) or not abs(strength) <= MAX_STRENGTH:
        raise GeneratorError(f"strength {strength!r}: use a number from -{MAX_STRENGTH:g} to {MAX_STRENGTH:g} standard "
                             "deviations (-3..3 is the range the generator knows).")
    return float(strength)


def parse_strengths(text: str, steps: int = 9) -> list[float]:
    """'-2..2' with `steps` values, or one value '1.5' -> the strengths of an edit."""
    text = str(text).strip()
    if not isinstance(steps, numbers.Integral) or not 2 <= steps <= MAX_STEPS:
        raise GeneratorError(f"steps={steps}: an edit strip has 2 to {MAX_STEPS} images (9 is usual).")
    try:
        if ".." in text:
            low, high = (float(v) for v in text.split(".."))
            values = np.linspace(low, high, steps).tolist()
        else:
            values = [float(text)]
    except ValueError:
        raise GeneratorError(f"strength {text!r}: write one number (1.5) or a range (-2..2).") from None
    return [check_strength(v) for v in values]


@dataclass
class Edit:
    images: list[Image.Image]
    strengths: list[float]
    code: Code  # the unedited code
    files: list[Path] = field(default_factory=list)


def edit(gen: Generator, ref: LatentRef, *, direction: int, strengths: Sequence[float], layers: str | None = None,
         truncation: float = 1.0, label: int | str | None = None, out: str | os.PathLike | None = None,
         fps: float = 8.0, overwrite: bool = False, directions: Directions | None = None) -> Edit:
    """`ref` moved along `direction` by each strength: strip.png and a back-and-forth edit.gif.

    With one strength, writes the edited image and its code (edited.npy) with a recipe (edited.json)
    that `remake` turns back into the same code.
    """
    steer = Steer(gen, directions)
    check_direction(steer.directions, direction)
    strengths = [check_strength(s) for s in strengths]
    if not strengths:
        raise GeneratorError("No strengths given: use --strength -2..2 or one value.")
    single = len(strengths) == 1
    names = ["edited.png", "edited.npy", "edited.json"] if single else ["strip.png", "edit.gif"]
    folder = _output(out, names, overwrite)
    base = steer.code(ref, label=label, truncation=truncation)
    x = steer.render_edits(base, [{direction: s} for s in strengths], layers=layers)
    result = Edit(gen.to_images(x, [seed_of(ref)] * len(strengths)), strengths, base)  # edits carry their seed
    if folder is None:
        return result
    if single:
        edited = steer.edited(base, {direction: strengths[0]}, layers)
        meta = _metadata(gen, base.label, direction=direction, strength=strengths[0], latent=base.name)
        save_png(result.images[0], folder / "edited.png", meta)
        if style_based(gen):
            save_styles(folder / "edited.npy", edited)
        else:
            save_latent(folder / "edited.npy", edited.value, edited.label)
        recipe = {"kind": "edit", "base": _ref_recipe(ref, folder), "label": label,
                  "truncation": truncation, "edits": {str(direction): strengths[0]}, "layers": layers,
                  "directions_sha256": steer.directions.info.get("files", {}).get(DIRECTIONS_WEIGHTS)}
        write_json_atomic(folder / "edited.json", recipe)
        result.files += [folder / "edited.png", folder / "edited.npy", folder / "edited.json"]
        return result
    rows = [_pictures(x)]
    save_image(labelled_rows(rows, [f"d{direction}"], len(strengths)), folder / "strip.png")
    frames = result.images + result.images[-2:0:-1]  # there and back: loops smoothly
    save_gif(frames, folder / "edit.gif", fps)
    result.files += [folder / "strip.png", folder / "edit.gif"]
    return result


# --- recipes ---------------------------------------------------------------------------------------------


def remake(gen: Generator, recipe: str | os.PathLike) -> Code:
    """The code a recipe file (child-XX.json, edited.json) describes, rebuilt from its parents."""
    path = Path(recipe)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
        kind = spec["kind"]
    except (OSError, ValueError, KeyError, TypeError):
        raise GeneratorError(f"{path} is not a ganforge recipe (a child-XX.json or edited.json).") from None
    folder = path.resolve().parent
    if kind == "brood":
        brood = breed_genes(gen, [_resolve(p, folder) for p in spec["parents"]], children=spec["children"],
                            mutation=spec["mutation"], genes=spec["genes"], seed=spec["seed"], label=spec["label"],
                            truncation=spec["truncation"])
        return Code(brood.latents[spec["child"]], brood.labels[spec["child"]], path.name)
    if kind == "edit":
        steer = Steer(gen)
        if spec.get("directions_sha256") not in (None, steer.directions.info.get("files", {}).get(DIRECTIONS_WEIGHTS)):
            raise GeneratorError(f"{path} was made with other directions (found again since): it cannot be remade "
                                 "exactly.")
        base = steer.code(_resolve(spec["base"], folder), label=spec["label"], truncation=spec["truncation"])
        return steer.edited(base, {int(k): v for k, v in spec["edits"].items()}, spec["layers"])
    raise GeneratorError(f"{path}: unknown recipe kind {kind!r}.")
