"""Preparation of whole sources: links and litter, accounting, archives, labels, resuming, output rules, CLI."""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from awkward import (  # the file makers and readers these tests are written in
    BLUE,
    GREEN,
    RED,
    animated_gif,
    encode,
    files_found,
    image_of,
    images,
    included,
    make_many,
    noise_jpeg,
    png_bomb,
    prepare,
    read_report,
    skip_reasons,
    snapshot,
    solid,
    with_one_good_image,
    write,
)
from PIL import Image

from ganforge.data import chunks as chunks_module
from ganforge.data.prepare import PrepareError

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
