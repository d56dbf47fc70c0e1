"""Pictures of data and samples: image grids and 2-D point plots, shared by inspect, training and the demo."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

_GAP_GREY = 32


def image_grid(images: np.ndarray, columns: int | None = None, min_width: int = 512) -> Image.Image:
    """uint8 (N, H, W, C) -> one RGB picture with 1 px gaps; C = 1, 3 or 4 (alpha over a checkerboard).

    Small results are enlarged by a whole factor (nearest neighbour, so pixels stay honest).
    """
    n, height, width, channels = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    if channels == 1:
        images = np.repeat(images, 3, axis=3)
    elif channels == 4:
        images = _over_checkerboard(images)
    canvas = np.full((rows * (height + 1) + 1, columns * (width + 1) + 1, 3), _GAP_GREY, np.uint8)
    for k in range(n):
        r, c = divmod(k, columns)
        canvas[1 + r * (height + 1) : (r + 1) * (height + 1), 1 + c * (width + 1) : (c + 1) * (width + 1)] = images[k]
    picture = Image.fromarray(canvas)
    if picture.width < min_width:
        scale = math.ceil(min_width / picture.width)
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    return picture


def labelled_rows(rows: list[np.ndarray], names: list[str], columns: int) -> Image.Image:
    """One row of images per class with its name on the left; short rows are padded with blanks."""
    shape = next(row for row in rows if len(row)).shape[1:]  # (H, W, C)
    cells = [np.concatenate([row[:columns], np.full((columns - len(row[:columns]), *shape), _GAP_GREY, np.uint8)])
             for row in rows]
    grid = image_grid(np.concatenate(cells), columns=columns)
    label_width = 8 + 7 * max(len(name) for name in names)
    sheet = Image.new("RGB", (label_width + grid.width, grid.height), (40, 40, 40))
    sheet.paste(grid, (label_width, 0))
    draw = ImageDraw.Draw(sheet)
    row_height = grid.height / len(rows)
    for r, name in enumerate(names):
        draw.text((4, int((r + 0.5) * row_height) - 6), name, fill=(230, 230, 230))
    return sheet


def points_plot(points: np.ndarray, reference: np.ndarray | None = None, modes: np.ndarray | None = None,
                size: int = 512) -> Image.Image:
    """2-D points: samples dark, reference (real) points light blue, mode centres as red rings."""
    parts = [p for p in (points, reference, modes) if p is not None]
    frame = np.concatenate(parts)
    low, high = np.percentile(frame, 0.5, axis=0) - 0.5, np.percentile(frame, 99.5, axis=0) + 0.5
    scale = (size - 1) / max(float((high - low).max()), 1e-6)
    canvas = np.full((size, size, 3), 255, np.uint8)
    for data, colour in ((reference, (180, 200, 255)), (points, (30, 30, 30))):
        if data is not None:
            xy = np.clip(((data - low) * scale).astype(int), 0, size - 1)
            canvas[size - 1 - xy[:, 1], xy[:, 0]] = colour
    picture = Image.fromarray(canvas)
    if modes is not None:
        draw = ImageDraw.Draw(picture)
        for x, y in (modes - low) * scale:
            draw.ellipse((x - 4, size - 1 - y - 4, x + 4, size - 1 - y + 4), outline=(220, 30, 30))
    return picture


def _over_checkerboard(images: np.ndarray) -> np.ndarray:
    """RGBA -> RGB over a grey checkerboard, as image editors show transparency."""
    _, height, width, _ = images.shape
    tile = max(2, width // 8)
    yy, xx = np.mgrid[0:height, 0:width]
    board = np.where((yy // tile + xx // tile) % 2 == 0, 200, 150).astype(np.float32)[None, :, :, None]
    alpha = images[..., 3:].astype(np.float32) / 255
    return (images[..., :3] * alpha + board * (1 - alpha)).round().astype(np.uint8)
