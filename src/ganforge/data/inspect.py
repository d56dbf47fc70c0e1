"""`inspect_dataset`: what a prepared dataset holds, in numbers and in one picture (a contact sheet)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ganforge.data.format import PreparedDataset
from ganforge.errors import GanforgeError
from ganforge.files import atomic_write, is_disk_full
from ganforge.pictures import image_grid, labelled_rows, points_plot

MAX_SHEET_PIXELS = 64 << 20  # the pixels of every image drawn together: a sheet stays viewable and small


class InspectError(GanforgeError):
    pass


@dataclass
class Inspection:
    dataset: PreparedDataset
    contact_sheet: Path
    skipped_by_reason: dict[str, int]

    def summary(self) -> str:
        ds = self.dataset
        lines = [f"{ds.path}"]
        if ds.kind in ("paired", "unpaired"):
            from ganforge.data.pair_reader import describe_sides

            lines += describe_sides(ds)
        elif ds.kind == "points":
            lines.append(f"  {len(ds):,} points from the {ds.manifest['mixture']} mixture "
                         f"({len(ds.manifest['modes'])} modes, std {ds.manifest['std']})")
        else:
            lines.append(f"  {len(ds):,} images, {ds.resolution}x{ds.resolution}, {ds.channels} channel(s)")
        if ds.class_names and ds.kind != "points":
            counts = ds.manifest.get("class_counts") or [0] * ds.num_classes
            lines.append(f"  {ds.num_classes} classes:")
            lines += [f"    {n:>8,}  {name}" for name, n in zip(ds.class_names, counts)]
        for spec in ds.attribute_specs or ():
            if spec["kind"] == "continuous":
                lines.append(f"  attribute {spec['name']}: a number, mean {spec['mean']:.4g}, std {spec['std']:.4g}, "
                             f"{spec.get('min', float('nan')):.4g} to {spec.get('max', float('nan')):.4g}")
            else:
                counts = ", ".join(f"{v} {n:,}" for v, n in zip(spec["values"], spec.get("counts") or []))
                lines.append(f"  attribute {spec['name']}: {len(spec['values'])} values ({counts})")
        if self.skipped_by_reason:
            lines.append(f"  skipped when prepared: {sum(self.skipped_by_reason.values()):,}")
            lines += [f"    {n:>8,}  {reason}" for reason, n in sorted(self.skipped_by_reason.items(), key=lambda kv: -kv[1])]
        lines.append(f"  contact sheet: {self.contact_sheet}")
        return "\n".join(lines)


def inspect_dataset(path: str | os.PathLike, *, out: str | os.PathLike | None = None,
                    count: int = 64, seed: int = 0) -> Inspection:
    """Count a prepared dataset and draw `count` random items into a PNG (default: PATH/contact-sheet.png)."""
    dataset = PreparedDataset(path)
    target = Path(out).expanduser() if out else dataset.path / "contact-sheet.png"
    picture_format = _picture_format(target)
    if dataset.kind != "points":
        _check_count(count, dataset.resolution)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InspectError(f"--seed must be 0 or more, not {seed!r}.")
    rng = np.random.default_rng(seed)
    if dataset.kind in ("paired", "unpaired"):
        from ganforge.data.pair_reader import pairs_sheet

        sheet = pairs_sheet(dataset, count, rng)  # A beside B
    elif dataset.kind == "points":
        sheet = points_plot(np.asarray(dataset.points[:20_000]), modes=np.asarray(dataset.manifest["modes"]))
    elif dataset.class_names and dataset.num_classes <= 20 and dataset.labels is not None:
        sheet = _sheet_by_class(dataset, max(1, count // dataset.num_classes), rng)
    else:
        picks = np.sort(rng.choice(len(dataset), size=min(count, len(dataset)), replace=False))
        sheet = image_grid(np.asarray(dataset.images[picks]))
    _save(sheet, target, picture_format)
    return Inspection(dataset, target, dataset.manifest.get("skipped_by_reason") or {})


def _check_count(count, resolution: int) -> None:
    most = max(1, MAX_SHEET_PIXELS // (resolution * resolution))
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 1 <= count <= most:
        raise InspectError(f"--count must be between 1 and {most:,} images at {resolution}x{resolution}, not {count!r}.")


def _picture_format(target: Path) -> str:
    """Pillow's format for the sheet's file name; refused before any work when it is not a picture."""
    if target.is_dir():
        raise InspectError(f"--out {target} is a folder: give a file name, for example {target / 'contact-sheet.png'}.")
    picture_format = Image.registered_extensions().get(target.suffix.lower())
    if picture_format not in ("PNG", "JPEG", "WEBP", "BMP", "TIFF"):
        raise InspectError(f"--out {target} is not a picture file name: end it in .png (or .jpg, .webp).")
    return picture_format


def _save(sheet: Image.Image, target: Path, picture_format: str) -> None:
    if picture_format == "JPEG":
        sheet = sheet.convert("RGB")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(target, what="the contact sheet") as handle:
            sheet.save(handle, picture_format)
    except OSError as exc:
        if is_disk_full(exc):
            raise
        raise InspectError(f"Cannot write the contact sheet {target} ({exc.strerror or exc}). "
                           "Give --out a file in a folder you can write to.") from None


def _sheet_by_class(dataset: PreparedDataset, per_class: int, rng: np.random.Generator) -> Image.Image:
    """One row per class, its name on the left: the first thing to check after labelling by folders."""
    per_class = min(per_class, 16) if per_class > 1 else 8
    rows = []
    for label in range(dataset.num_classes):
        members = np.flatnonzero(dataset.labels == label)
        picks = np.sort(rng.choice(members, size=min(per_class, len(members)), replace=False))
        rows.append(np.asarray(dataset.images[picks]))
    return labelled_rows(rows, dataset.class_names, per_class)
