"""`Stamp`: what a generator or translator does to every image it makes before anyone sees it. It hides
the model id and the seed in the pixels (`mark`) and, when the owner's key is on this machine, signs a
manifest of the final pixels for the PNG file (`sign`).

The owner of a private model may switch the mark off (`ganforge export --no-mark`, or `mark=False` when
loading); a public release always marks. Exports older than identities carry model id 00000000.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from ganforge import __version__
from ganforge.provenance import mark, sign

UNKNOWN_ID = "00000000"  # an export made before models had ids


@dataclass
class Stamp:
    identity: sign.Identity | None
    name: str  # what the model is called in manifests: its folder's name, or the release's
    marking: bool = True
    public: bool = False

    @classmethod
    def of(cls, config: dict, name: str, marking: bool | None = None) -> "Stamp":
        """The stamp an exported config asks for. `marking=False` switches the mark off, which only the owner
        of a private model may do; None follows the config."""
        provenance = config.get("provenance") or {}
        public = bool(provenance.get("public"))
        if marking is False and public:
            raise sign.ProvenanceError(f"{name} is a public release: every image it makes carries its provenance "
                                       "mark, which cannot be switched off.")
        wanted = provenance.get("mark", True) if marking is None else marking
        return cls(sign.identity_of(provenance), provenance.get("name") or name, bool(wanted), public)

    @property
    def model_id(self) -> str:
        return self.identity.model_id if self.identity else UNKNOWN_ID

    def apply(self, images: np.ndarray, seeds: list[int | None] | None = None) -> np.ndarray:
        """(B, H, W, C) uint8 images, marked with this model's id and each one's seed (None: no single seed).
        Images too small for a mark (under 13 px) are returned as they are; their files are still signed."""
        if not self.marking or not mark.fits(*images.shape[1:3]):
            return images
        return mark.embed(images, self.model_id, list(seeds) if seeds is not None else [None] * len(images))

    def metadata(self, pixels: np.ndarray, seed: int | None) -> dict[str, str]:
        """PNG text chunks for one finished image: the manifest, and its signature when the key is here."""
        if not self.marking:
            return {}
        manifest = {"model_id": self.model_id, "model": self.name, "seed": seed, "public": self.public,
                    "software": f"ganforge {__version__}", "mark": mark.fits(*pixels.shape[:2]),
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "pixels_sha256": sign.pixel_digest(pixels)}
        chunks = {sign.MANIFEST_KEY: sign.canonical(manifest).decode("ascii")}
        if self.identity is not None and self.identity.can_sign:
            chunks[sign.SIGNATURE_KEY] = sign.sign(manifest, self.identity.private_key)
        return chunks
