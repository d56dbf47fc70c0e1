"""`inspect_dataset`: what a prepared dataset holds, in numbers and in one picture (a contact sheet)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ganforge.data.format import REPORT, PreparedDataset

_CELL_MIN = 64  # small images are enlarged (nearest neighbour, so pixels stay honest) to this size
_GAP = 2


@dataclass
class Inspection:
    dataset: PreparedDataset
    contact_sheet: Path
    skipped_by_reason: dict[str, int]

    def summary(self) -> str:
        ds = self.dataset
        lines = [f"{ds.path}"]
        if ds.kind == "points":
            lines.append(f"  {len(ds):,} points from the {ds.manifest['mixture']} mixture "
                         f"({len(ds.manifest['modes'])} modes, std {ds.manifest['std']})")
        else:
            lines.append(f"  {len(ds):,} images, {ds.resolution}x{ds.resolution}, {ds.channels} channel(s)")
        if ds.class_names and ds.kind != "points":
            counts = ds.manifest.get("class_counts") or [0] * ds.num_classes
            lines.append(f"  {ds.num_classes} classes:")
            lines += [f"    {n:>8,}  {name}" for name, n in zip(ds.class_names, counts)]
        if self.skipped_by_reason:
            lines.append(f"  skipped when prepared: {sum(self.skipped_by_reason.values()):,}")
            lines += [f"    {n:>8,}  {reason}" for reason, n in sorted(self.skipped_by_reason.items(), key=lambda kv: -kv[1])]
        lines.append(f"  contact sheet: {self.contact_sheet}")
        return "\n".join(lines)


def inspect_dataset(path: str | os.PathLike, *, out: str | os.PathLike | None = None,
                    count: int = 64, seed: int = 0) -> Inspection:
    """Count a prepared dataset and draw `count` random items into a PNG (default: PATH/contact-sheet.png)."""
    dataset = PreparedDataset(path)
    target = Path(out) if out else dataset.path / "contact-sheet.png"
    rng = np.random.default_rng(seed)
    if dataset.kind == "points":
        sheet = _scatter(np.asarray(dataset.points), np.asarray(dataset.manifest["modes"]))
    elif dataset.class_names and dataset.num_classes <= 20 and dataset.labels is not None:
        sheet = _sheet_by_class(dataset, max(1, count // dataset.num_classes), rng)
    else:
        picks = np.sort(rng.choice(len(dataset), size=min(count, len(dataset)), replace=False))
        sheet = _grid([dataset.images[i] for i in picks])
    target.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(target)
    skipped = {}
    report = dataset.path / REPORT
    if report.exists():
        skipped = dataset.manifest.get("skipped_by_reason") or _count_reasons(report)
    return Inspection(dataset, target, skipped)


def _count_reasons(report: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in json.loads(report.read_text(encoding="utf-8"))["skipped"]:
        counts[entry["reason"]] = counts.get(entry["reason"], 0) + 1
    return counts


def _cell(pixels: np.ndarray) -> Image.Image:
    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    if image.mode == "RGBA":  # show transparency on a checkerboard, as image editors do
        image = _on_checkerboard(image)
    scale = max(1, -(-_CELL_MIN // image.width))
    return image.convert("RGB").resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def _grid(images: list[np.ndarray], columns: int | None = None) -> Image.Image:
    cells = [_cell(p) for p in images]
    columns = columns or max(1, int(np.ceil(np.sqrt(len(cells)))))
    rows = -(-len(cells) // columns)
    size = cells[0].width
    sheet = Image.new("RGB", (columns * (size + _GAP) + _GAP, rows * (size + _GAP) + _GAP), (40, 40, 40))
    for k, cell in enumerate(cells):
        sheet.paste(cell, (_GAP + (k % columns) * (size + _GAP), _GAP + (k // columns) * (size + _GAP)))
    return sheet


def _sheet_by_class(dataset: PreparedDataset, per_class: int, rng: np.random.Generator) -> Image.Image:
    """One row per class, its name on the left: the first thing to check after labelling by folders."""
    per_class = min(per_class, 16) if per_class > 1 else 8
    rows = []
    for label in range(dataset.num_classes):
        members = np.flatnonzero(dataset.labels == label)
        picks = np.sort(rng.choice(members, size=min(per_class, len(members)), replace=False)) if len(members) else []
        rows.append([dataset.images[i] for i in picks])
    cell = _cell(dataset.images[0]).width
    label_width = 8 + 7 * max(len(name) for name in dataset.class_names)
    sheet = Image.new("RGB", (label_width + per_class * (cell + _GAP) + _GAP,
                              dataset.num_classes * (cell + _GAP) + _GAP), (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    for r, (name, row) in enumerate(zip(dataset.class_names, rows)):
        top = _GAP + r * (cell + _GAP)
        draw.text((4, top + cell // 2 - 6), name, fill=(230, 230, 230))
        for c, pixels in enumerate(row):
            sheet.paste(_cell(pixels), (label_width + c * (cell + _GAP), top))
    return sheet


def _on_checkerboard(image: Image.Image) -> Image.Image:
    tile = max(2, image.width // 8)
    yy, xx = np.mgrid[0 : image.height, 0 : image.width]
    board = np.where(((yy // tile + xx // tile) % 2)[..., None] == 0, 200, 150).astype(np.uint8)
    background = Image.fromarray(np.repeat(board, 3, axis=2)).convert("RGBA")
    return Image.alpha_composite(background, image)


def _scatter(points: np.ndarray, modes: np.ndarray, size: int = 512) -> Image.Image:
    """Point datasets: a scatter plot (points grey, mode centres red) drawn without matplotlib."""
    sample = points[: 20_000]
    low, high = modes.min(0) - 1.0, modes.max(0) + 1.0
    scale = (size - 1) / (high - low).max()
    sheet = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for x, y in (sample - low) * scale:
        draw.point((x, size - 1 - y), fill=(60, 60, 60))
    for x, y in (modes - low) * scale:
        draw.ellipse((x - 3, size - 1 - y - 3, x + 3, size - 1 - y + 3), outline=(220, 30, 30))
    return sheet
