"""`ganforge verify IMAGE...`: which model marked an image, with which seed, and whether its signature
holds. Reads both layers (see `mark` and `sign`): the invisible mark from the pixels, the signed manifest
from the PNG text chunks. A file that is damaged, not an image, stripped of its metadata or too big to
open safely gets a sentence, never a crash.

The model a mark names is looked up in this machine's register (every export and release made here) and
in the release folders given with `--release`; a signature is checked only against a public key from
there, never against a key the file itself carries (anyone can sign with their own key).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ganforge.errors import GeneratorError
from ganforge.provenance import fingerprint, mark, sign
from ganforge.provenance.fingerprint import THRESHOLD

READ_SIDE = 1024  # larger images are box-reduced to about this before reading (the mark lives at 32 px)


@dataclass
class Verdict:
    file: str
    readable: bool = True
    problem: str | None = None  # why the file could not be read
    marked: bool = False
    model_id: str | None = None
    model_name: str | None = None  # from the register or a --release folder
    seed: int | None = None
    score: float = 0.0
    false_match_chance: float = 1.0
    signature: str = "absent"  # "valid", "invalid", "absent", "unchecked" (model unknown here), "unreadable"
    pixels_unchanged: bool | None = None  # the signed pixel digest against the pixels now
    fingerprint: str | None = None  # a model whose training fingerprint the pixels carry (when no mark is found)
    fingerprint_z: float = 0.0
    manifest: dict | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """Traced to a model with nothing contradicting it."""
        return (self.marked or self.fingerprint is not None) and self.signature not in ("invalid", "unreadable")

    def lines(self) -> list[str]:
        if not self.readable:
            return [f"{self.file}: cannot be read: {self.problem}"]
        out = []
        if self.marked:
            who = f"model {self.model_id}" + (f" ({self.model_name})" if self.model_name else " (not known on this machine)")
            seed = f"seed {self.seed}" if self.seed is not None else "no single seed (a bred, edited or translated image)"
            out.append(f"{self.file}: marked by {who}, {seed}; mark score {self.score:.2f} "
                       f"(chance of a false match below {max(self.false_match_chance, 1e-12):.0e})")
        elif self.fingerprint:
            name = f" ({self.model_name})" if self.model_name else ""
            out.append(f"{self.file}: no mark, but the fingerprint of model {self.fingerprint}{name} is in its pixels "
                       f"(z = {self.fingerprint_z:.1f}, above {THRESHOLD:g}): the generator was trained with "
                       "fingerprint=on, and this image came from its weights")
        else:
            out.append(f"{self.file}: no mark found (score {self.score:.2f}; ganforge's images carry one unless their "
                       "owner switched it off, or they were cropped, rotated or heavily edited)")
        words = {
            "valid": "the signature holds: the metadata was signed with the key of model "
                     f"{(self.manifest or {}).get('model_id')}",
            "invalid": "the signature does NOT hold: the metadata was altered, or signed with another key",
            "absent": "no signed metadata (stripped, or made where the owner's key is not)",
            "unchecked": f"signed metadata from model {(self.manifest or {}).get('model_id')}, which is not known on "
                         "this machine: pass its release folder with --release to check the signature",
            "unreadable": "its provenance metadata is damaged",
        }
        out.append(f"  {words[self.signature]}")
        if self.signature == "valid":
            out.append("  the pixels are unchanged since signing" if self.pixels_unchanged else
                       "  the pixels were changed after signing (re-encoded, edited or resized)")
        return out


def known_models(releases: list[str | os.PathLike] = ()) -> dict[str, dict]:
    """Model id -> {name, public_key, folder}: the register, plus each release or export folder given."""
    models = sign.registered()
    for folder in releases:
        folder = Path(folder)
        config = folder / "generator" / "config.json" if (folder / "generator" / "config.json").is_file() else folder / "config.json"
        try:
            provenance = json.loads(config.read_text(encoding="utf-8"))["provenance"]
            models[provenance["model_id"]] = {"name": provenance.get("name") or folder.name,
                                              "public_key": provenance["public_key"], "folder": str(folder),
                                              "fingerprint": bool(provenance.get("fingerprint"))}
        except (OSError, ValueError, KeyError, TypeError):
            raise GeneratorError(f"{folder} is not a ganforge release or exported model folder with a provenance "
                                 "record (config.json with a model id and public key).") from None
    return models


def verify_image(path: str | os.PathLike, models: dict[str, dict] | None = None) -> Verdict:
    """Read the mark and the signed metadata of one image file."""
    models = sign.registered() if models is None else models
    verdict = Verdict(str(path))
    try:
        image, pixels = _open(Path(path))
    except GeneratorError as err:
        verdict.readable, verdict.problem = False, str(err).removeprefix(f"{path} ")
        return verdict
    small = _read_mark(verdict, pixels)
    if not verdict.marked and small is not None:
        _read_fingerprints(verdict, small, models)
    _read_manifest(verdict, image, pixels, models)
    if verdict.model_id or verdict.fingerprint:
        verdict.model_id = verdict.model_id or verdict.fingerprint
        verdict.model_name = (models.get(verdict.model_id) or {}).get("name")
    return verdict


def _open(path: Path) -> tuple[Image.Image, np.ndarray]:
    from ganforge.generator import read_image

    image = read_image(path, "it is not an image ganforge can check", orient=False)
    if image.mode not in ("L", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    pixels = np.asarray(image)
    return image, pixels[..., None] if pixels.ndim == 2 else pixels


def _read_mark(verdict: Verdict, pixels: np.ndarray) -> np.ndarray | None:
    """Reads the mark into `verdict`; returns the (reduced) pixels read, None when too small for a mark."""
    h, w = pixels.shape[:2]
    if not mark.fits(h, w):
        return None
    small = pixels
    if max(h, w) > READ_SIDE:  # box-reduce first: the mark is read at 32 px, and this keeps memory small
        factor = -(-max(h, w) // READ_SIDE)
        picture = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).reduce(factor)
        small = np.asarray(picture)
        small = small[..., None] if small.ndim == 2 else small
    reading = mark.read(small[None])[0]
    verdict.score = reading.score
    if reading.found:
        verdict.marked, verdict.model_id, verdict.seed = True, reading.model_id, reading.seed
        verdict.false_match_chance = reading.false_match_chance
    return small


def _read_fingerprints(verdict: Verdict, small: np.ndarray, models: dict[str, dict]) -> None:
    """The best z-score among the known models trained with fingerprint=on, when above THRESHOLD."""
    for model_id, entry in models.items():
        if entry.get("fingerprint"):
            z = float(fingerprint.scores(small[None], model_id)[0])
            if z >= THRESHOLD and z > verdict.fingerprint_z:
                verdict.fingerprint, verdict.fingerprint_z = model_id, z


def _read_manifest(verdict: Verdict, image: Image.Image, pixels: np.ndarray, models: dict[str, dict]) -> None:
    text = getattr(image, "text", None) or image.info
    raw, signature = text.get(sign.MANIFEST_KEY), text.get(sign.SIGNATURE_KEY)
    if raw is None:
        return
    try:
        manifest = json.loads(raw)
        if not isinstance(manifest, dict):
            raise ValueError
    except ValueError:
        verdict.signature = "unreadable"
        return
    verdict.manifest = manifest
    if not verdict.marked and isinstance(manifest.get("model_id"), str):
        verdict.model_id = manifest["model_id"]  # a mark too weak to read: the metadata still names the model
        verdict.seed = manifest.get("seed") if isinstance(manifest.get("seed"), int) else None
    if signature is None:
        verdict.signature = "absent"
        return
    key = (models.get(str(manifest.get("model_id"))) or {}).get("public_key")
    if key is None:
        verdict.signature = "unchecked"
        return
    verdict.signature = "valid" if sign.signature_holds(manifest, signature, key) else "invalid"
    if verdict.signature == "valid":
        shown = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
        verdict.pixels_unchanged = manifest.get("pixels_sha256") == sign.pixel_digest(shown)


def to_json(verdicts: list[Verdict]) -> str:
    return json.dumps([asdict(v) for v in verdicts], indent=1)
