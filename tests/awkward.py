"""Shared helpers for the preparation tests: build awkward files in memory, run prepare, read results."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from ganforge.data.prepare import prepare_dataset

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)



# --- making files --------------------------------------------------------------------------------


def encode(img: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def solid(colour=RED, size=(8, 8), mode="RGB") -> Image.Image:
    return Image.new(mode, size, colour)


def halves(left, right, size=(16, 8)) -> Image.Image:
    """An RGB image whose left half is `left` and right half is `right`."""
    w, h = size
    img = Image.new("RGB", size, left)
    img.paste(right, (w // 2, 0, w, h))
    return img


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def noise_jpeg(size=64, seed=0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "JPEG", quality=90)


def first_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def png_chunk_offset(data: bytes, kind: bytes) -> int:
    """Offset of the 4-byte length field of the first chunk of type `kind`."""
    return data.index(kind) - 4


def png_with_bad_ihdr_crc() -> bytes:
    data = bytearray(encode(solid(GREEN)))
    data[29] ^= 0xFF  # IHDR: 8-byte signature, length, type, 13 bytes of data, then the CRC at 29
    return bytes(data)


def png_with_bad_idat_crc() -> bytes:
    data = bytearray(encode(solid(GREEN)))
    at = png_chunk_offset(bytes(data), b"IDAT")
    (length,) = struct.unpack(">I", data[at : at + 4])
    data[at + 8 + length] ^= 0xFF  # the CRC follows the chunk's data
    return bytes(data)


def png_with_corrupt_data() -> bytes:
    data = bytearray(encode(solid(GREEN, size=(16, 16))))
    data[png_chunk_offset(bytes(data), b"IDAT") + 8 + 5] ^= 0xFF  # a byte of the compressed pixels
    return bytes(data)


def png_bomb(width=40_000, height=40_000) -> bytes:
    """A small, valid PNG whose IHDR claims a huge size (CRC recomputed, so the header is sound)."""
    data = bytearray(encode(solid(128, mode="L")))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def png16(values: np.ndarray) -> bytes:
    img = Image.fromarray(values.astype(np.uint16))
    assert img.mode == "I;16"
    return encode(img)


def float_tiff(values: np.ndarray) -> bytes:
    img = Image.fromarray(values.astype(np.float32))
    assert img.mode == "F"
    return encode(img, "TIFF")


def exif_jpeg(img: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, "JPEG", quality=95, exif=exif.tobytes())


def animated_gif(colours) -> bytes:
    frames = [solid(c) for c in colours]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def quadrants(a, b, c, d, size=8) -> np.ndarray:
    """A (size, size) array: a top-left, b top-right, c bottom-left, d bottom-right."""
    h = size // 2
    out = np.empty((size, size))
    out[:h, :h], out[:h, h:], out[h:, :h], out[h:, h:] = a, b, c, d
    return out


# --- running and reading -------------------------------------------------------------------------


def prepare(src, out, **options):
    options = {"resolution": 8, "workers": 1, **options}
    return prepare_dataset(src, out, progress=False, **options)


def read_report(out: Path) -> dict:
    return json.loads((out / "prepare-report.json").read_text(encoding="utf-8"))


def skip_reasons(out: Path) -> dict[str, str]:
    return {s["source"]: s["reason"] for s in read_report(out)["skipped"]}


def included(out: Path) -> list[str]:
    return [r["source"] for r in read_report(out)["included"]]


def images(out: Path) -> np.ndarray:
    return np.load(out / "images.npy")


def image_of(out: Path, source: str) -> np.ndarray:
    index = {r["source"]: r["index"] for r in read_report(out)["included"]}[source]
    return images(out)[index]


def assert_close(pixel, expected, tolerance=0):
    diff = np.abs(np.asarray(pixel, int) - np.asarray(expected, int))
    assert diff.max() <= tolerance, f"{list(pixel)} is not within {tolerance} of {list(expected)}"


def files_found(root: Path) -> set[str]:
    """Every file and every link under `root`, found independently of ganforge (links not followed)."""
    found = set()
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root).as_posix()
        prefix = "" if rel == "." else rel + "/"
        found.update(prefix + name for name in files)
        found.update(prefix + name for name in dirs if os.path.islink(os.path.join(folder, name)))
    return found


def snapshot(root: Path) -> dict:
    """Listing, kinds, mtimes and contents of everything under `root`, without following links."""
    state = {}
    for folder, dirs, files in os.walk(root):
        for name in sorted(dirs + files) + ["."]:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            entry = (stat.S_IFMT(st.st_mode), st.st_mtime_ns, st.st_size)
            if stat.S_ISLNK(st.st_mode):
                entry += (os.readlink(path),)
            elif stat.S_ISREG(st.st_mode):
                entry += (hashlib.sha256(Path(path).read_bytes()).hexdigest(),)
            state[os.path.relpath(path, root)] = entry
    return state



def make_many(src: Path, n: int = 40, fmt: str = "PNG") -> None:
    """Enough distinct images for three chunks (chunks hold at least 16 files)."""
    for i in range(n):
        write(src / f"{i:03d}.{fmt.lower()}", encode(solid((i * 6, 255 - i * 6, (i * 37) % 256)), fmt))


def with_one_good_image(src: Path) -> Path:
    """Keep a preparation from failing for want of any usable image."""
    return write(src / "good.png", encode(solid(GREEN)))


def die_abruptly(task):
    """Stands in for process_chunk in a worker that is killed mid-chunk (by the kernel, for memory).

    It lives here, not in a test file, because a worker process imports it by name: this module is cheap."""
    os._exit(9)
