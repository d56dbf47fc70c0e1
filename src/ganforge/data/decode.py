"""One file's bytes to a fixed-size uint8 image, or a stated reason to skip it.

Everything here runs inside preparation workers, so it imports no torch. The rules:
- the format is decided by the bytes (Pillow's sniffing), never by the file's extension;
- the pixel count is checked from the header before any pixel is decoded (decompression bombs);
- large JPEGs are decoded at reduced size (DCT scaling) when the target allows it;
- EXIF orientation is applied; transparency is composited onto a background colour
  (or kept, for 4-channel datasets); 16-bit and float images are scaled to 8 bits.
"""

from __future__ import annotations

import io
import warnings
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Preparation checks pixel counts itself (see `max_pixels`), so Pillow's global guard is
# lifted in the processes that decode; its warning would otherwise flood the terminal.
Image.MAX_IMAGE_PIXELS = None
warnings.simplefilter("ignore", Image.DecompressionBombWarning)

CROP_MODES = ("center", "pad", "stretch")
DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own "this is a bomb" threshold (2 x 89.5 MP)
# No image file needs more than 16 bytes a pixel (uncompressed float RGBA) plus its metadata, so a
# bigger file is refused before it is read into memory (a 50 GB file would otherwise kill a worker).
MAX_BYTES_PER_PIXEL = 16
MAX_METADATA_BYTES = 64 << 20

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_GRAY_MODES = {"1", "L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}


class Skip(Exception):
    """Raised for a file that cannot become a training image; carries the reason."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class DecodeOptions:
    resolution: int
    crop: str = "center"
    background: tuple[int, int, int] = (255, 255, 255)
    keep_alpha: bool = False
    min_size: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS


def check_file_size(size: int, opts: DecodeOptions) -> None:
    """Raise `Skip` for a file too big to be an image within `max_pixels`, before it is read."""
    limit = opts.max_pixels * MAX_BYTES_PER_PIXEL + MAX_METADATA_BYTES
    if size > limit:
        raise Skip("too large to decode", f"{size:,} bytes is more than any image of at most "
                                          f"{opts.max_pixels:,} pixels needs ({limit:,} bytes)")


def decode_image(data: bytes, opts: DecodeOptions) -> tuple[np.ndarray, bool, int]:
    """Decode `data` to `(pixels, is_gray, side)`; pixels are uint8 (R, R, 3), or (R, R, 4) with alpha kept;
    `side` is the decoded image's shorter side before resizing (to warn when most images are upsampled).

    Raises `Skip` with a reason for anything that is not a usable image.
    """
    if not data:
        raise Skip("empty file")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        claimed = _claimed_format(data)
        if claimed:  # Pillow says "unidentified" for a damaged header too
            raise Skip("corrupt", f"starts like a {claimed} file but its header is damaged or cut short") from None
        raise Skip("not an image", _describe_non_image(data)) from None
    except Exception as exc:  # a recognised format whose header is broken
        raise Skip("corrupt", _message(exc)) from None
    if img.format == "PNG":
        _check_png_crcs(data)

    width, height = img.size
    if width * height > opts.max_pixels:
        raise Skip(
            "decompression bomb",
            f"{width}x{height} = {width * height:,} pixels is over the limit of {opts.max_pixels:,}",
        )
    if min(width, height) < opts.min_size:
        raise Skip("too small", f"{width}x{height} is under the minimum size {opts.min_size}")
    if width < 1 or height < 1:
        raise Skip("corrupt", f"image has size {width}x{height}")

    if img.format == "JPEG" and img.mode in ("RGB", "L"):
        # DCT scaling: decode a 4000 px photo at 1/8 size when the target is small. Pillow keeps
        # both sides >= the requested size, so crop and pad still have enough pixels.
        img.draft(img.mode, (opts.resolution, opts.resolution))
    try:
        img.load()  # for animated files (GIF, APNG, WebP) this is the first frame
        img = ImageOps.exif_transpose(img)
    except Exception as exc:
        text = _message(exc)
        raise Skip("truncated" if "truncated" in text.lower() else "corrupt", text) from None
    return _to_array(img, opts)


def fit_image(img: Image.Image, opts: DecodeOptions) -> tuple[np.ndarray, bool, int]:
    """Bring an already-decoded image (any mode, any size) to the target; used for array datasets."""
    return _to_array(img, opts)


def _to_array(img: Image.Image, opts: DecodeOptions) -> tuple[np.ndarray, bool, int]:
    side = min(img.size)
    img = _normalise_mode(img, opts)
    img = _resize(img, opts)
    pixels = np.asarray(img)
    if pixels.ndim == 2:  # grey stays grey until here: resizing one channel is 3x cheaper
        return np.repeat(pixels[:, :, None], 3, axis=2), True, side
    colour = pixels[:, :, :3]
    is_gray = bool(
        (colour[:, :, 0] == colour[:, :, 1]).all() and (colour[:, :, 1] == colour[:, :, 2]).all()
    )
    if pixels.shape[2] == 4 and is_gray:
        is_gray = False  # a grey picture with alpha still needs its alpha channel
    return np.ascontiguousarray(pixels), is_gray, side


def _normalise_mode(img: Image.Image, opts: DecodeOptions) -> Image.Image:
    """Any Pillow mode to "L", "RGB" or (with alpha kept) "RGBA"."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        gray = Image.fromarray(_high_depth_to_uint8(img), "L")
        return gray.convert("RGBA") if opts.keep_alpha else gray
    has_alpha = mode in _ALPHA_MODES or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        if opts.keep_alpha:
            return rgba
        background = Image.new("RGBA", rgba.size, (*opts.background, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if opts.keep_alpha:
        return img.convert("RGBA")
    if mode in ("1", "L"):
        return img.convert("L")
    if mode == "P" and _palette_is_gray(img):
        return img.convert("L")
    return img.convert("RGB")  # RGB, P, CMYK, YCbCr, LAB, HSV


def _high_depth_to_uint8(img: Image.Image) -> np.ndarray:
    """16-bit, 32-bit integer and float greyscale to 8 bits, keeping the full tonal range.

    I;16 is scaled from 0..65535. Mode "I" is treated as 16-bit data when any value exceeds 255
    (Pillow opens some 16-bit files as "I") and as 8-bit otherwise. Float images are taken as
    0..1 when their maximum is at most 1, else as 0..255.
    """
    values = np.asarray(img).astype(np.float64)
    if img.mode.startswith("I;16") or (img.mode == "I" and values.max(initial=0) > 255):
        values = values / 257.0
    elif img.mode == "F" and values.max(initial=0) <= 1.0:
        values = values * 255.0
    return np.clip(np.rint(np.nan_to_num(values)), 0, 255).astype(np.uint8)


def _palette_is_gray(img: Image.Image) -> bool:
    palette = img.getpalette() or []
    triples = np.asarray(palette[: len(palette) // 3 * 3]).reshape(-1, 3)
    return bool(len(triples)) and bool((triples == triples[:, :1]).all())


def _resize(img: Image.Image, opts: DecodeOptions) -> Image.Image:
    size = opts.resolution
    width, height = img.size
    resample = Image.Resampling.LANCZOS
    if opts.crop == "stretch":
        return img.resize((size, size), resample, reducing_gap=3.0)
    if opts.crop == "center":
        side = min(width, height)
        left, top = (width - side) / 2, (height - side) / 2
        box = (left, top, left + side, top + side)
        return img.resize((size, size), resample, box=box, reducing_gap=3.0)
    # pad: the whole picture, letterboxed on the background colour
    scale = size / max(width, height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = img.resize((new_w, new_h), resample, reducing_gap=3.0)
    fill: int | tuple[int, ...]
    if img.mode == "RGBA":
        fill = (0, 0, 0, 0)
    elif img.mode == "L":
        if len(set(opts.background)) == 1:
            fill = opts.background[0]
        else:  # a coloured background makes the picture colour
            resized, fill = resized.convert("RGB"), opts.background
    else:
        fill = opts.background
    canvas = Image.new(resized.mode, (size, size), fill)
    canvas.paste(resized, ((size - new_w) // 2, (size - new_h) // 2))
    return canvas


_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF87a": "GIF", b"GIF89a": "GIF",
    b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"BM": "BMP",
}


def _claimed_format(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _SIGNATURES.items() if data.startswith(magic)), None)


def _check_png_crcs(data: bytes) -> None:
    """Verify every chunk's CRC, as libpng does; Pillow skips the check for image data (IDAT)."""
    position = 8
    while position + 12 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        end = position + 8 + length
        if end + 4 > len(data):
            return  # cut short: Pillow reports it as truncated when decoding
        stored = int.from_bytes(data[end : end + 4], "big")
        if zlib.crc32(data[position + 4 : end]) != stored:
            kind = data[position + 4 : position + 8].decode("latin-1")
            raise Skip("corrupt", f"PNG {kind} chunk fails its CRC check (the file was damaged)")
        if data[position + 4 : position + 8] == b"IEND":
            return
        position = end + 4


def _describe_non_image(data: bytes) -> str:
    head = data[:2048].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head[:512]:
        return "an HTML page (often a failed download saved under an image name)"
    if b"<svg" in head:
        return "an SVG vector drawing (only raster images are supported)"
    if head.startswith(b"%pdf"):
        return "a PDF document"
    if head.startswith((b"pk\x03\x04", b"\x1f\x8b", b"7z\xbc\xaf")):
        return "an archive (point prepare at the archive itself to read it)"
    sample = data[:2048]
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in sample)
    if printable >= 0.95 * len(sample):
        return "a text file"
    return "data in a format Pillow does not recognise"


def _message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
