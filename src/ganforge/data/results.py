"""What every kind of preparation shares: the resolution check, the result it returns, the digest of the
files it read and the words it says when interrupted (images, points, paired and unpaired datasets)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ganforge.data.format import REPORT
from ganforge.data.output import PrepareError
from ganforge.data.sources import SourceFile

MIN_RESOLUTION, MAX_RESOLUTION = 4, 4096
INTERRUPTED = "Interrupted. The finished part is kept: run the same command again to finish."


def check_resolution(resolution) -> None:
    """Training builds its networks by doubling, so a prepared resolution is a power of two."""
    if resolution is None:
        raise PrepareError("--resolution is required for images, for example --resolution 64.")
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)):
        raise PrepareError(f"resolution must be a whole number of pixels, for example 64, not {resolution!r}.")
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise PrepareError(f"resolution must be between {MIN_RESOLUTION} and {MAX_RESOLUTION} pixels, not {resolution}.")
    if resolution & (resolution - 1):
        lower = 1 << (int(resolution).bit_length() - 1)
        raise PrepareError(f"resolution must be a power of two (the models double their size layer by layer), "
                           f"not {resolution}: use {lower} or {2 * lower}.")


@dataclass
class PrepareResult:
    path: Path
    kind: str
    included: int
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    channels: int | None = None
    classes: list[str] | None = None
    reused: bool = False

    @property
    def skipped(self) -> int:
        return sum(self.skipped_by_reason.values())

    def summary(self) -> str:
        if self.reused:
            head = f"{self.path} is already prepared with these settings: nothing to do."
        else:
            noun = {"points": "point", "paired": "pair"}.get(self.kind, "image")
            head = f"Prepared {self.included:,} {noun}{'' if self.included == 1 else 's'} into {self.path}"
        lines = [head]
        if self.kind != "points":
            lines.append(f"  included: {self.included:,}" + (f" in {len(self.classes)} classes" if self.classes else ""))
            lines.append(f"  skipped:  {self.skipped:,}")
            for reason, n in sorted(self.skipped_by_reason.items(), key=lambda kv: -kv[1]):
                lines.append(f"    {n:>8,}  {reason}")
            if self.skipped:
                lines.append(f"  Every file and the reason for each skip: {self.path / REPORT}")
        return "\n".join(lines)


def reused_result(out: Path, manifest: dict) -> PrepareResult:
    return PrepareResult(out, manifest["kind"], manifest["count"], manifest.get("skipped_by_reason", {}),
                         manifest.get("channels"), manifest.get("classes"), reused=True)


def files_digest(files: list[SourceFile]) -> str:
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.name}\t{f.size}\t{f.stamp}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()
