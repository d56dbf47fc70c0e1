"""Tests for `prepare_dataset` and `ganforge prepare`: every awkward file is built here, in tmp_path.

Each test makes the files it needs with Pillow/NumPy (tiny images, no network), prepares them at a
small resolution with one worker (two in the process-pool tests) and checks the prepared format:
pixels, the report's accounting, the skip reasons, and that the source is never written to.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import struct
import tarfile
import time
import zipfile
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganforge.cli import main
from ganforge.data import chunks as chunks_module
from ganforge.data.prepare import PrepareError, prepare_dataset

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


@pytest.fixture
def src(tmp_path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    return folder


@pytest.fixture
def out(tmp_path) -> Path:
    return tmp_path / "out"


def with_one_good_image(src: Path) -> Path:
    """Keep a preparation from failing for want of any usable image."""
    return write(src / "good.png", encode(solid(GREEN)))


# --- files that are skipped, and why -------------------------------------------------------------


SKIPPED_FILES = {
    "empty file": ("empty.jpg", lambda: b"", "empty file", ""),
    "truncated jpeg": ("cut.jpg", lambda: first_half(noise_jpeg()), "truncated", "truncated"),
    "html saved as jpg": ("photo.jpg", lambda: b"<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n",
                          "not an image", "HTML"),
    "plain text": ("notes.png", lambda: b"just some notes\nabout the photos\n" * 20, "not an image", "text"),
    "svg": ("logo.svg", lambda: b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="8" '
                                b'height="8"><rect width="8" height="8"/></svg>\n', "not an image", "SVG"),
    "png with corrupt pixel data": ("broken.png", png_with_corrupt_data, "corrupt", ""),
}


@pytest.mark.parametrize("case", SKIPPED_FILES, ids=list(SKIPPED_FILES))
def test_unusable_file_is_skipped_with_its_reason(src, out, case):
    name, make, reason, detail_word = SKIPPED_FILES[case]
    write(src / name, make())
    with_one_good_image(src)
    result = prepare(src, out)
    assert result.included == 1 and result.skipped_by_reason == {reason: 1}
    (entry,) = read_report(out)["skipped"]
    assert entry["source"] == name and entry["reason"] == reason
    assert detail_word in entry["detail"]


def test_png_with_a_bad_header_crc_is_skipped_as_corrupt(src, out):
    # Pillow answers a broken IHDR with "cannot identify image file"; a PNG is still an image.
    write(src / "bad-crc.png", png_with_bad_ihdr_crc())
    with_one_good_image(src)
    prepare(src, out)
    assert skip_reasons(out) == {"bad-crc.png": "corrupt"}


def test_jpeg_cut_inside_its_header_is_skipped_as_truncated_or_corrupt(src, out):
    write(src / "cut-early.jpg", noise_jpeg()[:20])
    with_one_good_image(src)
    prepare(src, out)
    assert skip_reasons(out)["cut-early.jpg"] in ("truncated", "corrupt")


def test_png_with_a_bad_data_crc_is_skipped_as_corrupt(src, out):
    # Pillow does not check IDAT CRCs; a file failing its own checksum is corrupt (libpng rejects it).
    write(src / "bad-idat-crc.png", png_with_bad_idat_crc())
    with_one_good_image(src)
    prepare(src, out)
    assert skip_reasons(out) == {"bad-idat-crc.png": "corrupt"}


def test_pixel_bomb_is_skipped_from_its_header_without_decoding(src, out):
    write(src / "bomb.png", png_bomb(40_000, 40_000))
    with_one_good_image(src)
    start = time.perf_counter()
    prepare(src, out)
    assert time.perf_counter() - start < 5
    (entry,) = read_report(out)["skipped"]
    assert entry["source"] == "bomb.png" and entry["reason"] == "decompression bomb"
    assert "40000x40000" in entry["detail"]


def test_max_pixels_sets_the_bomb_limit(src, out):
    write(src / "big.png", encode(solid(RED, size=(20, 20))))
    with_one_good_image(src)
    prepare(src, out, max_pixels=399)
    assert skip_reasons(out) == {"big.png": "decompression bomb"}


def test_images_below_min_size_are_skipped(src, out):
    write(src / "tiny.png", encode(solid(RED, size=(40, 7))))
    write(src / "ok.png", encode(solid(RED, size=(8, 40))))
    result = prepare(src, out, min_size=8)
    assert included(out) == ["ok.png"]
    assert skip_reasons(out) == {"tiny.png": "too small"}
    assert result.skipped_by_reason == {"too small": 1}


# --- formats and modes ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt, name, params", [
    ("PNG", "a.png", {}),
    ("WEBP", "a.webp", {"lossless": True}),
    ("BMP", "a.bmp", {}),
    ("TIFF", "a.tif", {}),
    ("GIF", "a.gif", {}),
    ("JPEG", "a.jpg", {"quality": 95}),
])
def test_each_format_is_read_with_its_colour(src, out, fmt, name, params):
    write(src / name, encode(solid((200, 40, 90)), fmt, **params))
    result = prepare(src, out)
    assert result.channels == 3 and images(out).shape == (1, 8, 8, 3)
    assert_close(images(out)[0, 4, 4], (200, 40, 90), tolerance=4 if fmt in ("JPEG", "GIF") else 0)


def test_format_is_decided_by_content_not_extension(src, out):
    write(src / "really-a-png.jpg", encode(solid(BLUE)))
    write(src / "no-extension", encode(solid(RED), "BMP"))
    prepare(src, out)
    assert sorted(included(out)) == ["no-extension", "really-a-png.jpg"]


def test_animated_gif_gives_its_first_frame(src, out):
    write(src / "anim.gif", animated_gif([RED, BLUE, GREEN]))
    prepare(src, out)
    assert_close(images(out)[0, 4, 4], RED, tolerance=2)


def test_cmyk_jpeg_becomes_rgb(src, out):
    write(src / "cmyk.jpg", encode(solid((0, 255, 255, 0), mode="CMYK"), "JPEG", quality=95))
    prepare(src, out)
    assert images(out).shape == (1, 8, 8, 3)
    assert_close(images(out)[0, 4, 4], RED, tolerance=8)


def test_16_bit_grey_png_is_scaled_to_8_bits(src, out):
    write(src / "deep.png", png16(quadrants(65535, 32896, 0, 257)))
    result = prepare(src, out)
    assert result.channels == 1
    pixels = images(out)[0, :, :, 0]
    assert (pixels[0, 0], pixels[0, 7], pixels[7, 0], pixels[7, 7]) == (255, 128, 0, 1)


def test_float_tiff_in_0_to_1_is_scaled_to_8_bits(src, out):
    write(src / "float.tif", float_tiff(quadrants(0.0, 1.0, 0.25, 0.5)))
    result = prepare(src, out)
    assert result.channels == 1
    pixels = images(out)[0, :, :, 0]
    assert (pixels[0, 0], pixels[0, 7], pixels[7, 0], pixels[7, 7]) == (0, 255, 64, 128)


def test_bilevel_image_becomes_black_and_white_grey(src, out):
    img = Image.new("1", (8, 8), 0)
    img.paste(1, (4, 0, 8, 8))
    write(src / "bilevel.png", encode(img))
    result = prepare(src, out)
    assert result.channels == 1
    assert images(out)[0, 0, :, 0].tolist() == [0, 0, 0, 0, 255, 255, 255, 255]


def test_grey_with_alpha_is_composited_onto_the_background(src, out):
    alpha = Image.new("L", (8, 8), 255)
    alpha.paste(0, (4, 0, 8, 8))
    write(src / "la.png", encode(Image.merge("LA", [Image.new("L", (8, 8), 100), alpha])))
    result = prepare(src, out)  # background: white
    assert result.channels == 1
    assert images(out)[0, 0, :, 0].tolist() == [100] * 4 + [255] * 4


def test_palette_transparency_shows_the_background_colour(src, out):
    img = Image.new("P", (8, 8), 0)
    img.putpalette([*GREEN, *BLUE] + [0, 0, 0] * 254)
    img.paste(1, (4, 0, 8, 8))
    write(src / "p.png", encode(img, transparency=0))
    prepare(src, out, background="#ff0000")
    row = images(out)[0, 0]
    assert [tuple(p) for p in row] == [RED] * 4 + [BLUE] * 4


def test_rgba_is_composited_onto_the_background(src, out):
    write(src / "rgba.png", encode(solid((0, 0, 255, 128), mode="RGBA")))
    result = prepare(src, out, background="#ff0000")
    assert result.channels == 3
    assert_close(images(out)[0, 3, 3], (127, 0, 128), tolerance=1)


@pytest.mark.parametrize("orientation, top, bottom", [(6, RED, BLUE), (8, BLUE, RED)])
def test_exif_orientation_puts_colours_where_a_viewer_shows_them(src, out, orientation, top, bottom):
    # Stored landscape, red left and blue right; 6 = rotate 90° clockwise to view, 8 = anticlockwise.
    write(src / "rotated.jpg", exif_jpeg(halves(RED, BLUE, size=(32, 16)), orientation))
    prepare(src, out, crop="stretch")
    pixels = images(out)[0]
    assert_close(pixels[1, 4], top, tolerance=40)
    assert_close(pixels[6, 4], bottom, tolerance=40)
    assert_close(pixels[1, 0], pixels[1, 7], tolerance=40)  # each colour spans the whole width


@pytest.mark.parametrize("crop", ["center", "pad", "stretch"])
@pytest.mark.parametrize("size", [(3000, 2), (1, 500)], ids=["3000x2", "1x500"])
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_extreme_aspect_ratios_prepare_in_every_crop_mode(src, out, crop, size, fmt):
    write(src / f"strip.{fmt.lower()}", encode(solid((30, 60, 200), size=size), fmt))
    result = prepare(src, out, crop=crop)
    assert result.included == 1 and images(out).shape == (1, 8, 8, 3)


def test_pad_letterboxes_onto_the_background_colour(src, out):
    write(src / "wide.png", encode(solid(RED, size=(16, 8))))
    prepare(src, out, crop="pad", background="#0000ff")
    column = [tuple(p) for p in images(out)[0, :, 4]]
    assert column == [BLUE] * 2 + [RED] * 4 + [BLUE] * 2


def test_center_crop_keeps_the_middle_square(src, out):
    img = Image.new("RGB", (24, 8), RED)
    img.paste(GREEN, (8, 0, 16, 8))
    write(src / "wide.png", encode(img))
    prepare(src, out, crop="center")
    assert {tuple(p) for p in images(out)[0].reshape(-1, 3)} == {GREEN}


def test_known_image_round_trips_byte_identical(src, out):
    pixels = np.random.default_rng(7).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    write(src / "known.png", encode(Image.fromarray(pixels)))
    prepare(src, out, crop="center")
    stored = images(out)
    assert stored.dtype == np.uint8 and stored.shape == (1, 8, 8, 3)
    assert stored[0].tobytes() == pixels.tobytes()


# --- channels ------------------------------------------------------------------------------------


def test_channels_auto_gives_one_channel_when_every_image_is_grey(src, out):
    write(src / "grey-rgb.png", encode(solid((90, 90, 90))))
    write(src / "grey-l.jpg", encode(solid(200, mode="L"), "JPEG"))
    result = prepare(src, out)
    assert result.channels == 1 and images(out).shape == (2, 8, 8, 1)
    assert json.loads((out / "manifest.json").read_text())["channels"] == 1
    assert_close(image_of(out, "grey-rgb.png")[4, 4], [90])


def test_channels_auto_gives_three_channels_when_any_image_has_colour(src, out):
    write(src / "grey.png", encode(solid(90, mode="L")))
    write(src / "red.png", encode(solid(RED)))
    result = prepare(src, out)
    assert result.channels == 3 and images(out).shape == (2, 8, 8, 3)
    assert tuple(image_of(out, "grey.png")[4, 4]) == (90, 90, 90)


def test_channels_4_keeps_transparency(src, out):
    write(src / "half-red.png", encode(solid((255, 0, 0, 128), mode="RGBA")))
    write(src / "opaque.jpg", encode(solid(BLUE), "JPEG", quality=95))
    result = prepare(src, out, channels=4)
    assert result.channels == 4 and images(out).shape == (2, 8, 8, 4)
    assert tuple(image_of(out, "half-red.png")[4, 4]) == (255, 0, 0, 128)
    assert image_of(out, "opaque.jpg")[4, 4, 3] == 255


def test_channels_4_accepts_16_bit_and_float_images(src, out):
    write(src / "a-rgba.png", encode(solid((255, 0, 0, 128), mode="RGBA")))
    write(src / "b-deep.png", png16(np.full((8, 8), 65535)))
    write(src / "c-float.tif", float_tiff(np.full((8, 8), 0.5)))
    result = prepare(src, out, channels=4)
    assert result.included == 3 and images(out).shape == (3, 8, 8, 4)
    assert tuple(image_of(out, "b-deep.png")[4, 4]) == (255, 255, 255, 255)
    assert tuple(image_of(out, "c-float.tif")[4, 4]) == (128, 128, 128, 255)


# --- names, links and litter ---------------------------------------------------------------------


def test_unicode_file_names_are_read_and_reported(src, out):
    write(src / "niño" / "ñandú 😀.png", encode(solid(RED)))
    write(src / "日本" / "写真.jpg", encode(solid(BLUE), "JPEG"))
    prepare(src, out)
    assert sorted(included(out)) == ["niño/ñandú 😀.png", "日本/写真.jpg"]


def test_symlink_to_a_file_is_followed(tmp_path, src, out):
    outside = write(tmp_path / "elsewhere" / "real.png", encode(solid(BLUE)))
    os.symlink(outside, src / "link.png")
    prepare(src, out)
    assert included(out) == ["link.png"]
    assert tuple(images(out)[0, 4, 4]) == BLUE


def test_dangling_symlink_is_skipped(src, out):
    with_one_good_image(src)
    os.symlink(src / "gone.png", src / "dangling.png")
    prepare(src, out)
    (entry,) = read_report(out)["skipped"]
    assert entry["source"] == "dangling.png" and entry["reason"] == "dangling symlink"


def test_symlink_cycles_are_skipped_not_followed(src, out):
    write(src / "a" / "x.png", encode(solid(RED)))
    os.symlink("..", src / "a" / "up")  # a folder linking to its parent
    os.symlink("self", src / "self")  # a link to itself
    prepare(src, out)
    assert included(out) == ["a/x.png"]
    assert skip_reasons(out) == {"a/up": "symlink loop", "self": "symlink loop"}


def test_link_to_a_folder_inside_the_source_does_not_hide_the_real_folder(src, out):
    # The link sits above the folder it names, so the scan meets it first.
    write(src / "sub" / "real" / "x.png", encode(solid(RED)))
    os.symlink("sub/real", src / "alias")
    prepare(src, out)
    assert included(out) == ["sub/real/x.png"]
    assert set(skip_reasons(out)) == {"alias"}


def test_os_litter_is_skipped(src, out):
    with_one_good_image(src)
    litter = [".DS_Store", "Thumbs.db", "desktop.ini", "__MACOSX/._good.png", "photos/._good.png"]
    for name in litter:
        write(src / name, encode(solid(RED)))  # even litter that looks like an image
    prepare(src, out)
    assert skip_reasons(out) == {name: "os litter" for name in litter}


def test_byte_identical_duplicates_are_kept_once(src, out):
    data = encode(solid(RED))
    write(src / "a.png", data)
    write(src / "copy" / "b.png", data)
    write(src / "c.png", encode(solid(BLUE)))
    result = prepare(src, out)
    assert result.included == 2 and included(out) == ["a.png", "c.png"]
    (entry,) = read_report(out)["skipped"]
    assert entry == {"source": "copy/b.png", "reason": "duplicate", "detail": "same bytes as a.png"}


def make_messy_folder(root: Path, outside: Path) -> None:
    """One of everything: good images, unusable files, litter, duplicates, links of every kind."""
    write(root / "cats" / "1.png", encode(solid(RED)))
    write(root / "cats" / "2.jpg", encode(solid(GREEN), "JPEG"))
    write(root / "cats" / "2-copy.jpg", encode(solid(GREEN), "JPEG"))
    write(root / "dogs" / "deep" / "3.webp", encode(solid(BLUE), "WEBP", lossless=True))
    write(root / "dogs" / "ñandú 😀.gif", animated_gif([RED, GREEN]))
    write(root / "dogs" / "cut.jpg", noise_jpeg()[:1500])
    write(root / "dogs" / "error.jpg", b"<html><body>Forbidden</body></html>")
    write(root / "notes.txt", b"hello\n")
    write(root / "empty.png", b"")
    write(root / "bomb.png", png_bomb())
    write(root / ".DS_Store", b"\0\0\0\1Bud1")
    write(root / "__MACOSX" / "cats" / "._1.png", b"\0\5\26\7")
    write(root / "dogs" / "Thumbs.db", b"\xd0\xcf\x11\xe0")
    write(outside / "outside.png", encode(solid((1, 2, 3))))
    os.symlink(outside / "outside.png", root / "cats" / "linked.png")
    os.symlink(root / "nowhere.png", root / "dangling.png")
    os.symlink("..", root / "dogs" / "deep" / "loop")
    os.mkfifo(root / "pipe")


def test_report_names_every_file_under_the_source_exactly_once(tmp_path, src, out):
    make_messy_folder(src, tmp_path / "outside")
    result = prepare(src, out)
    report = read_report(out)
    named = [r["source"] for r in report["included"]] + [s["source"] for s in report["skipped"]]
    assert len(named) == len(set(named)), "a file is named twice"
    assert set(named) == files_found(src)
    assert result.included == len(report["included"]) == len(images(out)) == 5
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files_found"] == len(named)
    assert [r["index"] for r in report["included"]] == list(range(result.included))
    assert skip_reasons(out) == {
        "cats/2.jpg": "duplicate", "dogs/cut.jpg": "truncated", "dogs/error.jpg": "not an image",
        "notes.txt": "not an image", "empty.png": "empty file", "bomb.png": "decompression bomb",
        ".DS_Store": "os litter", "__MACOSX/cats/._1.png": "os litter", "dogs/Thumbs.db": "os litter",
        "dangling.png": "dangling symlink", "dogs/deep/loop": "symlink loop", "pipe": "not a regular file",
    }


def test_source_is_never_written_to(tmp_path, src, out):
    make_messy_folder(src, tmp_path / "outside")
    before = snapshot(src)
    prepare(src, out)
    prepare(src, out)  # reused
    prepare(src, out, resolution=16, overwrite=True)
    assert snapshot(src) == before


# --- archives ------------------------------------------------------------------------------------


def test_zip_source_is_read_and_macos_resource_forks_are_litter(tmp_path, out):
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("photos/", b"")
        zf.writestr("photos/a.png", encode(solid(RED)))
        zf.writestr("photos/b.jpg", encode(solid(BLUE), "JPEG", quality=95))
        zf.writestr("__MACOSX/photos/._a.png", b"\0\5\26\7 resource fork")
        zf.writestr("photos/readme.txt", b"taken in 2020\n")
    before = archive.read_bytes()
    result = prepare(archive, out)
    assert result.included == 2
    assert tuple(image_of(out, "photos/a.png")[4, 4]) == RED
    assert skip_reasons(out) == {"__MACOSX/photos/._a.png": "os litter", "photos/readme.txt": "not an image"}
    assert archive.read_bytes() == before


def test_zip_member_failing_its_crc_is_skipped_as_unreadable(tmp_path, out):
    damaged = encode(solid(GREEN, size=(16, 16)))
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("good.png", encode(solid(RED)))
        zf.writestr("damaged.png", damaged)
    data = bytearray(archive.read_bytes())
    data[data.index(damaged) + len(damaged) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    prepare(archive, out)
    assert skip_reasons(out) == {"damaged.png": "unreadable"}


def make_tar_gz(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return path


def test_tar_gz_source_is_read(tmp_path, out):
    archive = make_tar_gz(tmp_path / "set.tar.gz", {
        "set/b.png": encode(solid(BLUE)),
        "set/a.png": encode(solid(RED)),
        "set/._a.png": b"\0\5\26\7",
        "set/sub/c.bmp": encode(solid(GREEN), "BMP"),
    }, links={"set/link.png": "a.png"})
    result = prepare(archive, out)
    assert result.included == 3
    assert sorted(included(out)) == ["set/a.png", "set/b.png", "set/sub/c.bmp"]
    for name, colour in [("set/a.png", RED), ("set/b.png", BLUE), ("set/sub/c.bmp", GREEN)]:
        assert tuple(image_of(out, name)[4, 4]) == colour
    assert skip_reasons(out) == {"set/._a.png": "os litter", "set/link.png": "link inside archive"}


def test_truncated_tar_reports_the_cut_member_as_unreadable(tmp_path, out):
    members = {f"{k}.png": encode(Image.fromarray(
        np.random.default_rng(k).integers(0, 256, (32, 32, 3), dtype=np.uint8))) for k in range(3)}
    whole = tmp_path / "whole.tar"
    with tarfile.open(whole, "w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole.read_bytes()[: 512 + 1000])  # the first member's header and part of its data
    with pytest.raises(PrepareError, match="No usable image"):
        prepare(cut, out)
    reasons = skip_reasons(out)
    assert reasons["0.png"] == "unreadable"
    assert "TypeError" not in json.dumps(read_report(out))


# --- labels --------------------------------------------------------------------------------------


def test_labels_from_folders_sorted_classes_and_unfiled_files_skipped(src, out):
    write(src / "zebra" / "1.png", encode(solid(RED)))
    write(src / "ant" / "1.png", encode(solid(GREEN)))
    write(src / "ant" / "nested" / "2.png", encode(solid(BLUE)))
    write(src / "loose.png", encode(solid((9, 9, 9))))
    result = prepare(src, out, labels="folders")
    assert result.classes == ["ant", "zebra"]
    labels = np.load(out / "labels.npy")
    assert labels.dtype == np.int64
    report = read_report(out)
    for entry in report["included"]:
        assert entry["class"] == entry["source"].split("/")[0]
        assert labels[entry["index"]] == entry["label"] == result.classes.index(entry["class"])
    assert skip_reasons(out) == {"loose.png": "not in a class folder"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["classes"] == ["ant", "zebra"] and manifest["class_counts"] == [2, 1]


def test_labels_from_folders_inside_a_zip_wrapper_folder(tmp_path, out):
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("pets/dog/1.png", encode(solid(RED)))
        zf.writestr("pets/cat/1.png", encode(solid(BLUE)))
        zf.writestr("pets/cat/2.png", encode(solid(GREEN)))
    result = prepare(archive, out, labels="folders")
    assert result.classes == ["cat", "dog"]
    assert sorted(np.load(out / "labels.npy").tolist()) == [0, 0, 1]


def test_no_labels_by_default(src, out):
    write(src / "a" / "1.png", encode(solid(RED)))
    result = prepare(src, out)
    assert result.classes is None and not (out / "labels.npy").exists()
    assert read_report(out)["included"] == [{"source": "a/1.png", "index": 0, "label": None, "class": None}]


# --- resuming, reusing, refusing -----------------------------------------------------------------


def make_many(src: Path, n: int = 40, fmt: str = "PNG") -> None:
    """Enough distinct images for three chunks (chunks hold at least 16 files)."""
    for i in range(n):
        write(src / f"{i:03d}.{fmt.lower()}", encode(solid((i * 6, 255 - i * 6, (i * 37) % 256)), fmt))


def interrupt_after_one_chunk(monkeypatch, src: Path, out: Path) -> int:
    """Run a preparation that is interrupted (Ctrl-C) once its first chunk is done; returns that chunk's size."""
    real_process_chunk = chunks_module.process_chunk
    finished = []

    def interrupted(task):
        if finished:
            raise KeyboardInterrupt
        finished.append(real_process_chunk(task))
        return finished[-1]

    with monkeypatch.context() as patch:
        patch.setattr(chunks_module, "process_chunk", interrupted)
        with pytest.raises(KeyboardInterrupt):
            prepare(src, out)
    return finished[0]


def test_interrupted_preparation_resumes_without_redoing_finished_chunks(tmp_path, src, out, monkeypatch):
    make_many(src, 40)
    reference = tmp_path / "reference"
    prepare(src, reference)

    done = interrupt_after_one_chunk(monkeypatch, src, out)
    assert 0 < done < 40
    assert not (out / "manifest.json").exists()
    assert (out / ".partial" / "chunk-000000.json").exists()

    real_decode = chunks_module.decode_image
    decoded = []
    monkeypatch.setattr(chunks_module, "decode_image", lambda data, opts: decoded.append(1) or real_decode(data, opts))
    result = prepare(src, out)
    assert len(decoded) == 40 - done
    assert result.included == 40 and not result.reused
    assert images(out).tobytes() == images(reference).tobytes()
    assert read_report(out)["included"] == read_report(reference)["included"]
    assert not (out / ".partial").exists()


def test_stale_chunks_are_redone_when_the_source_changed(src, out, monkeypatch):
    make_many(src, 40)
    interrupt_after_one_chunk(monkeypatch, src, out)
    (src / "000.png").write_bytes(encode(solid((1, 2, 3), size=(9, 9))))  # changed since
    result = prepare(src, out)
    assert result.included == 40
    assert tuple(image_of(out, "000.png")[4, 4]) == (1, 2, 3)


def test_a_file_rewritten_with_the_same_size_is_not_taken_from_a_stale_chunk(src, out, monkeypatch):
    # BMPs of one size have one byte count: only the content (or the mtime) tells them apart.
    make_many(src, 40, fmt="BMP")
    interrupt_after_one_chunk(monkeypatch, src, out)
    edited = src / "000.bmp"
    edited.write_bytes(encode(solid((7, 7, 250)), "BMP"))
    os.utime(edited, ns=(edited.stat().st_atime_ns, edited.stat().st_mtime_ns + 10**9))
    prepare(src, out)
    assert tuple(image_of(out, "000.bmp")[4, 4]) == (7, 7, 250)


@pytest.fixture
def pools(monkeypatch) -> list[int]:
    """The worker counts of the process pools prepare starts (so a test knows the pool really ran)."""
    started = []

    class RecordedPool(ProcessPoolExecutor):
        def __init__(self, max_workers, *args, **kwargs):
            started.append(max_workers)
            super().__init__(max_workers, *args, **kwargs)

    monkeypatch.setattr(chunks_module, "ProcessPoolExecutor", RecordedPool)
    return started


def test_two_workers_give_the_same_dataset_as_one(tmp_path, src, pools):
    make_many(src, 40)
    write(src / "zz-broken.jpg", b"<html></html>")
    prepare(src, tmp_path / "one", workers=1)
    prepare(src, tmp_path / "two", workers=2)
    assert pools == [2]
    assert images(tmp_path / "two").tobytes() == images(tmp_path / "one").tobytes()
    assert read_report(tmp_path / "two") == read_report(tmp_path / "one")


def test_two_workers_read_a_zip(tmp_path, out, pools):
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(34):
            zf.writestr(f"img/{i:03d}.png", encode(solid((i * 7, 0, 255 - i * 7))))
    result = prepare(archive, out, workers=2)
    assert pools == [2] and result.included == 34
    assert tuple(image_of(out, "img/010.png")[4, 4]) == (70, 0, 185)


def test_rerun_with_the_same_settings_does_nothing(src, out):
    with_one_good_image(src)
    prepare(src, out)
    stamp = (out / "images.npy").stat().st_mtime_ns
    result = prepare(src, out, workers=2)  # the worker count does not change the output
    assert result.reused and result.included == 1
    assert "nothing to do" in result.summary()
    assert (out / "images.npy").stat().st_mtime_ns == stamp


def test_rerun_with_other_settings_needs_overwrite(src, out):
    with_one_good_image(src)
    prepare(src, out)
    with pytest.raises(PrepareError, match="--overwrite"):
        prepare(src, out, resolution=16)
    assert images(out).shape == (1, 8, 8, 3)
    result = prepare(src, out, resolution=16, overwrite=True)
    assert not result.reused and images(out).shape == (1, 16, 16, 3)


@pytest.mark.parametrize("inside", [".", "prepared", "a/b"])
def test_output_inside_the_source_is_refused(src, inside):
    with_one_good_image(src)
    before = snapshot(src)
    with pytest.raises(PrepareError, match="inside the source"):
        prepare(src, src / inside)
    assert snapshot(src) == before


def test_source_inside_the_output_is_refused(tmp_path):
    src = tmp_path / "out" / "src"
    with_one_good_image(src)
    with pytest.raises(PrepareError, match="inside the output"):
        prepare(src, tmp_path / "out")


def test_foreign_non_empty_output_is_refused(src, out):
    with_one_good_image(src)
    write(out / "thesis.tex", b"\\documentclass{article}")
    with pytest.raises(PrepareError, match="not empty"):
        prepare(src, out)
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_output_with_a_foreign_manifest_json_is_refused_even_with_overwrite(src, out, overwrite):
    # "manifest.json" is a common name (web apps, other tools); only ganforge's own may be replaced.
    with_one_good_image(src)
    write(out / "manifest.json", b'{"name": "my web app"}')
    write(out / "index.html", b"<html></html>")
    with pytest.raises(PrepareError) as error:
        prepare(src, out, overwrite=overwrite)
    assert "--overwrite" not in str(error.value)  # following that advice would delete the user's file
    assert (out / "manifest.json").read_bytes() == b'{"name": "my web app"}'
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "manifest.json"]


def test_output_with_an_unreadable_manifest_is_a_clear_error(src, out):
    with_one_good_image(src)
    write(out / "manifest.json", b"{truncated")
    with pytest.raises(PrepareError):
        prepare(src, out)


def test_no_usable_image_is_a_clear_error_and_the_report_is_still_written(src, out):
    write(src / "a.jpg", b"<html>404</html>")
    write(src / "b.png", b"")
    with pytest.raises(PrepareError, match="No usable image") as error:
        prepare(src, out)
    assert "prepare-report.json" in str(error.value)
    assert not (out / "manifest.json").exists()
    assert read_report(out)["included"] == []
    assert skip_reasons(out) == {"a.jpg": "not an image", "b.png": "empty file"}


def test_empty_source_folder_is_a_clear_error(src, out):
    with pytest.raises(PrepareError, match="the source is empty"):
        prepare(src, out)


@pytest.mark.parametrize("options, message", [
    ({"resolution": None}, "--resolution is required"),
    ({"resolution": 2}, "between 4 and 4096"),
    ({"crop": "zoom"}, "crop must be one of"),
    ({"channels": 2}, "channels must be"),
    ({"background": "ultraviolet"}, "is not a colour"),
    ({"colour": "red"}, "Known options"),
])
def test_bad_options_are_refused_before_anything_is_written(src, out, options, message):
    with_one_good_image(src)
    with pytest.raises(PrepareError, match=message):
        prepare(src, out, **options)
    assert not out.exists()


# --- the command line ----------------------------------------------------------------------------


def test_cli_prepare_prints_the_summary(src, out, capsys):
    with_one_good_image(src)
    write(src / "notes.txt", b"not a picture\n")
    code = main(["prepare", str(src), str(out), "--resolution", "8", "--workers", "1", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0
    assert f"Prepared 1 images into {out}" in captured.out
    assert "not an image" in captured.out and "prepare-report.json" in captured.out
    assert images(out).shape == (1, 8, 8, 3)


@pytest.mark.parametrize("args, message", [
    (["--quiet"], "--resolution is required"),
    (["--resolution", "8", "--background", "nope"], "is not a colour"),
])
def test_cli_user_error_is_one_line_and_exit_code_2(src, out, capsys, args, message):
    with_one_good_image(src)
    code = main(["prepare", str(src), str(out), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("ganforge: error: ") and message in err
    assert err.strip().count("\n") == 0 and "Traceback" not in err


@pytest.mark.parametrize("source, message", [
    ("no-such-folder", "not found"),
    ("page.zip", "not a zip or tar archive"),
])
def test_cli_unusable_source_is_a_user_error(tmp_path, capsys, source, message):
    write(tmp_path / "page.zip", b"<html>403 Forbidden</html>")
    code = main(["prepare", str(tmp_path / source), str(tmp_path / "out"), "-r", "8", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.strip().count("\n") == 0
    assert not (tmp_path / "out").exists()
