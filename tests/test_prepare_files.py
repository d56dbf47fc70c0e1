"""Preparation of single awkward files: what is skipped and why, every format and mode, channels.

Each test builds its files with Pillow/NumPy in tmp_path (see awkward.py), prepares them at a small
resolution with one worker, and checks pixels and the report's reasons.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from awkward import (  # the file makers and readers these tests are written in
    BLUE,
    GREEN,
    RED,
    animated_gif,
    assert_close,
    encode,
    exif_jpeg,
    first_half,
    float_tiff,
    halves,
    image_of,
    images,
    included,
    noise_jpeg,
    png16,
    png_bomb,
    png_with_bad_idat_crc,
    png_with_bad_ihdr_crc,
    png_with_corrupt_data,
    prepare,
    quadrants,
    read_report,
    skip_reasons,
    solid,
    with_one_good_image,
    write,
)
from PIL import Image

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




def test_large_jpeg_is_decoded_at_reduced_size(src, out, monkeypatch):
    """DCT scaling: a 2400x1600 photo prepared at 16 px is decoded at 1/8 size, not in full."""
    from PIL import JpegImagePlugin

    scales = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = real_draft(self, mode, size)
        scales.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (1600, 2400, 3), dtype=np.uint8))
    write(src / "photo.jpg", encode(photo, "JPEG", quality=80))
    prepare(src, out, resolution=16)
    assert scales == [(300, 200)]
    assert images(out).shape == (1, 16, 16, 3)
