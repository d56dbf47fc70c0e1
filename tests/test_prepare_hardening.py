"""Preparation under hostile conditions: kills and Ctrl-C at any moment, a full disk, damaged datasets,
folders that cannot be written, and every user mistake on the command line a one-line sentence.

Full disks are real ones: a `.tmp` path made a symbolic link to /dev/full, so writes fail with ENOSPC.
"""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from awkward import (
    BLUE,
    GREEN,
    RED,
    encode,
    images,
    make_many,
    noise_jpeg,
    prepare,
    read_report,
    snapshot,
    solid,
    with_one_good_image,
    write,
)

from ganforge.cli import main
from ganforge.data import chunks as chunks_module
from ganforge.data import decode as decode_module
from ganforge.data import fetch
from ganforge.data import prepare as prepare_module
from ganforge.data import sources as sources_module
from ganforge.data.format import DatasetError, PreparedDataset
from ganforge.data.inspect import inspect_dataset
from ganforge.data.prepare import PrepareError, PrepareOptions
from ganforge.data.reader import BatchReader
from ganforge.errors import GanforgeError
from ganforge.files import DiskFullError

needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full to fill a disk")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


def count_decodes(monkeypatch) -> list[int]:
    decoded: list[int] = []
    real = chunks_module.decode_image
    monkeypatch.setattr(chunks_module, "decode_image", lambda data, opts: decoded.append(1) or real(data, opts))
    return decoded


def fill_disk_at(path: Path) -> None:
    """Make `path`'s temporary file a link to /dev/full: the next atomic write to `path` hits a full disk."""
    os.symlink("/dev/full", path.with_name(path.name + ".tmp"))


def interrupt_merge(monkeypatch, src: Path, out: Path) -> None:
    """Ctrl-C while images.npy is being written, after its first chunk's rows are in."""
    real = chunks_module._to_channels
    calls = []

    def interrupted(pixels, channels):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(pixels, channels)

    with monkeypatch.context() as patch:
        patch.setattr(chunks_module, "_to_channels", interrupted)
        with pytest.raises(KeyboardInterrupt):
            prepare(src, out)
    assert calls, "the merge never started"


# --- temporary files: cleaned on error, recognised after a kill -9 ------------------------------


def test_ctrl_c_while_merging_leaves_no_tmp_and_a_rerun_finishes_without_decoding(tmp_path, src, out, monkeypatch,
                                                                                  capsys):
    make_many(src, 40)
    reference = tmp_path / "reference"
    prepare(src, reference)
    interrupt_merge(monkeypatch, src, out)
    assert "Interrupted. The finished part is kept" in capsys.readouterr().err
    assert leftovers(out) == [] and not (out / "images.npy").exists() and not (out / "manifest.json").exists()
    decoded = count_decodes(monkeypatch)
    result = prepare(src, out)
    assert decoded == [] and result.included == 40
    assert images(out).tobytes() == images(reference).tobytes()


@pytest.mark.parametrize("overwrite", [False, True], ids=["rerun resumes", "overwrite starts afresh"])
def test_a_tmp_left_by_kill_9_is_ganforges_own_and_removed(src, out, monkeypatch, overwrite):
    make_many(src, 40)
    interrupt_merge(monkeypatch, src, out)
    write(out / "images.npy.tmp", b"\x93NUMPY half an array")  # what a kill -9 mid-merge leaves
    write(out / "manifest.json.tmp", b'{"format": "ganf')
    decoded = count_decodes(monkeypatch)
    result = prepare(src, out, overwrite=overwrite)
    assert result.included == 40 and leftovers(out) == []
    assert len(decoded) == (40 if overwrite else 0)
    assert sorted(p.name for p in out.iterdir()) == ["images.npy", "manifest.json", "prepare-report.json"]


def test_a_finished_dataset_with_a_stale_tmp_is_reused_and_tidied(src, out):
    with_one_good_image(src)
    prepare(src, out)
    write(out / "prepare-report.json.tmp", b"{")
    (out / ".partial").mkdir()  # a kill after the manifest was written, before the clean-up
    assert prepare(src, out).reused
    assert leftovers(out) == [] and not (out / ".partial").exists()


@pytest.mark.parametrize("name, make", [
    ("thesis.tex.tmp", lambda path: write(path, b"\\documentclass{article}")),  # not a name ganforge writes
    ("images.npy.tmp", lambda path: write(path / "keep.txt", b"mine")),  # a folder, not a file ganforge left
    ("images.npy", lambda path: write(path / "keep.txt", b"mine")),  # a folder where ganforge writes a file
])
@pytest.mark.parametrize("overwrite", [False, True], ids=["rerun", "overwrite"])
def test_files_ganforge_did_not_make_are_refused_and_kept(src, out, name, make, overwrite):
    with_one_good_image(src)
    make(out / name)
    before = snapshot(out)
    with pytest.raises(PrepareError, match="not empty"):
        prepare(src, out, overwrite=overwrite)
    assert snapshot(out) == before


def kill_before_the_manifest(monkeypatch, prepare_it) -> None:
    """Stop a preparation as a kill would, just before it writes its manifest."""
    real = prepare_module.write_json_atomic

    def killed(path, data):
        if Path(path).name == "manifest.json":
            raise KeyboardInterrupt
        return real(path, data)

    with monkeypatch.context() as patch:
        patch.setattr(prepare_module, "write_json_atomic", killed)
        with pytest.raises(KeyboardInterrupt):
            prepare_it()


def test_an_unfinished_run_does_not_leave_its_labels_to_the_next(src, out, monkeypatch):
    write(src / "a" / "1.png", encode(solid(RED)))
    write(src / "b" / "1.png", encode(solid(BLUE)))
    kill_before_the_manifest(monkeypatch, lambda: prepare(src, out, labels="folders"))
    assert (out / "labels.npy").exists() and not (out / "manifest.json").exists()
    prepare(src, out, labels="none")
    assert not (out / "labels.npy").exists()
    assert PreparedDataset(out).labels is None


USERS_FILES = {  # a name ganforge writes, holding the user's own bytes
    "images.npy": b"mine\n",
    "labels.npy": np.arange(3).tobytes(),
    "points.npy": b"mine",
    "prepare-report.json": b'{"my": "notes"}',
    "manifest.json.tmp": b"{}",
    "contact-sheet.png": encode(solid(RED)),
}


@pytest.mark.parametrize("name", USERS_FILES)
@pytest.mark.parametrize("overwrite", [False, True], ids=["rerun", "overwrite"])
@pytest.mark.parametrize("with_empty_partial", [False, True], ids=["alone", "beside an empty .partial"])
def test_a_users_file_with_an_output_name_is_refused_and_kept(src, out, name, overwrite, with_empty_partial):
    """Without a manifest, an output's name alone does not make a file ganforge's: only a .partial with its plan does."""
    with_one_good_image(src)
    write(out / name, USERS_FILES[name])
    if with_empty_partial:
        (out / ".partial").mkdir()
    before = snapshot(out)
    with pytest.raises(PrepareError, match=f"not empty and holds no prepared dataset \\(.*{name}"):
        prepare(src, out, overwrite=overwrite)
    assert snapshot(out) == before


def test_the_cli_refuses_a_folder_holding_a_users_images_npy(tmp_path, capsys):
    folder = tmp_path / "u"
    write(folder / "images.npy", b"mine\n")
    code = main(["prepare", "digits", str(folder), "-r", "16", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "not empty and holds no prepared dataset (images.npy)" in err and err.count("\n") == 1
    assert sorted(p.name for p in folder.iterdir()) == ["images.npy"]
    assert (folder / "images.npy").read_bytes() == b"mine\n"


def test_a_kill_while_overwriting_leaves_a_folder_the_next_run_finishes(src, out, monkeypatch):
    with_one_good_image(src)
    prepare(src, out)
    real, calls = Path.unlink, []

    def killed_after_the_manifest(path, *args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(path.name)
        return real(path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(Path, "unlink", killed_after_the_manifest)
        with pytest.raises(KeyboardInterrupt):
            prepare(src, out, crop="pad", overwrite=True)
    assert calls == ["manifest.json"] and (out / "images.npy").exists()
    assert prepare(src, out, crop="pad").included == 1
    assert PreparedDataset(out).manifest["settings"]["crop"] == "pad"


@pytest.mark.parametrize("overwrite", [False, True], ids=["rerun", "overwrite"])
def test_a_point_set_killed_before_its_manifest_is_finished_by_the_next_run(out, monkeypatch, overwrite):
    run = lambda **kw: prepare_module.prepare_dataset("ring8", out, count=100, progress=False, **kw)  # noqa: E731
    kill_before_the_manifest(monkeypatch, run)
    assert (out / "points.npy").exists() and (out / "labels.npy").exists()
    assert run(overwrite=overwrite).included == 100
    assert sorted(p.name for p in out.iterdir()) == ["labels.npy", "manifest.json", "points.npy"]


def test_a_run_that_found_no_image_can_be_run_again_once_there_are_images(src, out):
    write(src / "a.jpg", b"<html>404</html>")
    with pytest.raises(PrepareError, match="No usable image"):
        prepare(src, out)
    with_one_good_image(src)
    assert prepare(src, out).included == 1


def test_no_usable_image_leaves_no_unfinished_work(src, out):
    write(src / "a.jpg", b"<html>404</html>")
    with pytest.raises(PrepareError, match="No usable image"):
        prepare(src, out)
    assert sorted(p.name for p in out.iterdir()) == ["prepare-report.json"]
    with pytest.raises(DatasetError) as error:
        PreparedDataset(out)
    assert "unfinished" not in str(error.value)


# --- a full disk -------------------------------------------------------------------------------


@needs_dev_full
def test_disk_full_while_decoding_is_one_sentence_and_the_rerun_resumes(src, out, monkeypatch):
    make_many(src, 40)
    real_save = chunks_module.save_npy_atomic

    def second_chunk_hits_a_full_disk(path, array):
        if path.name == "chunk-000001.npy":
            fill_disk_at(path)
        real_save(path, array)

    with monkeypatch.context() as patch:
        patch.setattr(chunks_module, "save_npy_atomic", second_chunk_hits_a_full_disk)
        with pytest.raises(DiskFullError) as error:
            prepare(src, out)
    message = str(error.value)
    assert "full" in message and "run the same command again" in message and "\n" not in message
    assert leftovers(out) == [] and (out / ".partial" / "chunk-000000.json").exists()
    decoded = count_decodes(monkeypatch)
    assert prepare(src, out).included == 40
    assert 0 < len(decoded) < 40  # the first chunk was kept


@needs_dev_full
def test_disk_full_while_merging_leaves_nothing_half_written(src, out, monkeypatch, capsys):
    make_many(src, 40)
    real_write = prepare_module.write_images

    def full_disk(work, keep, target, *args):
        fill_disk_at(target)
        real_write(work, keep, target, *args)

    with monkeypatch.context() as patch:
        patch.setattr(prepare_module, "write_images", full_disk)
        code = main(["prepare", str(src), str(out), "-r", "8", "--workers", "1", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("ganforge: error: The disk holding") and err.count("\n") == 1
    assert "Traceback" not in err
    assert leftovers(out) == [] and not (out / "images.npy").exists() and not (out / "manifest.json").exists()
    decoded = count_decodes(monkeypatch)
    assert prepare(src, out).included == 40 and decoded == []


@needs_dev_full
def test_disk_full_while_drawing_the_contact_sheet(src, out):
    with_one_good_image(src)
    prepare(src, out)
    fill_disk_at(out / "contact-sheet.png")
    with pytest.raises(DiskFullError):
        inspect_dataset(out)
    assert leftovers(out) == [] and not (out / "contact-sheet.png").exists()


class _Download(io.BytesIO):
    headers = {"Content-Length": str(3 << 20)}

    def __enter__(self):
        return self

    def __exit__(self, *error):
        self.close()


@needs_dev_full
def test_disk_full_while_downloading_is_not_called_a_network_failure(tmp_path, monkeypatch):
    def part_on_a_full_disk(dir, prefix, suffix):
        link = Path(dir) / f"{prefix}test{suffix}"
        os.symlink("/dev/full", link)
        return os.open(link, os.O_WRONLY), str(link)

    monkeypatch.setattr(fetch.urllib.request, "urlopen", lambda url, timeout: _Download(b"x" * (3 << 20)))
    monkeypatch.setattr(fetch.tempfile, "mkstemp", part_on_a_full_disk)
    with pytest.raises(DiskFullError, match="download of train.gz"):
        fetch._download("http://127.0.0.1:9/train.gz", tmp_path, "mnist/train.gz", progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="uses /proc, where no folder can be made")
def test_a_cache_that_cannot_be_written_says_how_to_choose_another(monkeypatch):
    monkeypatch.setattr(fetch, "MNIST_URL_BASE", "http://127.0.0.1:9/")
    monkeypatch.delenv("GANFORGE_MIRROR", raising=False)
    with pytest.raises(fetch.FetchError, match="GANFORGE_CACHE"):
        fetch.fetch_dataset("mnist", "test", cache_dir="/proc/ganforge-cache", progress=False)


# --- damaged datasets --------------------------------------------------------------------------


@pytest.fixture
def labelled(tmp_path) -> Path:
    src, out = tmp_path / "labelled-src", tmp_path / "labelled"
    write(src / "a" / "1.png", encode(solid(RED)))
    write(src / "b" / "1.png", encode(solid(GREEN)))
    prepare(src, out, labels="folders")
    return out


@pytest.fixture
def points(tmp_path) -> Path:
    out = tmp_path / "points"
    prepare_module.prepare_dataset("ring8", out, count=100, progress=False)
    return out


DAMAGE = {
    "truncated": lambda path: os.truncate(path, path.stat().st_size - 8),  # its last value cut off
    "cut in its header": lambda path: os.truncate(path, 20),
    "empty": lambda path: os.truncate(path, 0),
    "garbage": lambda path: path.write_bytes(b"these are not the bytes you are looking for" * 40),
    "a zip": lambda path: path.write_bytes(b"PK\x03\x04" + b"\0" * 200),
    "missing": lambda path: path.unlink(),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
@pytest.mark.parametrize("dataset, name", [("labelled", "images.npy"), ("labelled", "labels.npy"),
                                           ("points", "points.npy"), ("points", "labels.npy")])
def test_a_damaged_file_is_a_clear_dataset_error(request, dataset, name, damage):
    folder = request.getfixturevalue(dataset)
    DAMAGE[damage](folder / name)
    with pytest.raises(DatasetError) as error:
        PreparedDataset(folder)
    message = str(error.value)
    assert str(folder / name) in message and "prepare" in message and "\n" not in message


def test_labels_outside_the_classes_are_detected(labelled):
    np.save(labelled / "labels.npy", np.array([0, 7], np.int64))
    with pytest.raises(DatasetError, match="outside the 2 classes"):
        PreparedDataset(labelled)


@pytest.mark.parametrize("change", [{"kind": "banana"}, {"count": "many"}, {"resolution": None}])
def test_a_damaged_manifest_is_a_clear_dataset_error(labelled, change):
    manifest = json.loads((labelled / "manifest.json").read_text())
    (labelled / "manifest.json").write_text(json.dumps({**manifest, **change}))
    with pytest.raises(DatasetError, match="damaged"):
        PreparedDataset(labelled)


def test_preparing_again_repairs_a_damaged_dataset_instead_of_saying_nothing_to_do(src, out, capsys):
    with_one_good_image(src)
    prepare(src, out)
    os.truncate(out / "images.npy", 100)
    result = prepare(src, out)
    assert not result.reused and "damaged" in capsys.readouterr().err
    assert len(PreparedDataset(out)) == 1


def test_a_batch_larger_than_the_dataset_is_a_users_mistake(labelled):
    with pytest.raises(GanforgeError, match="at most 2"):
        BatchReader(labelled, 3)


@pytest.mark.parametrize("packed", [False, True], ids=["folder", "tar"])
def test_a_file_too_big_for_any_allowed_image_is_skipped_unread(tmp_path, src, out, monkeypatch, packed):
    monkeypatch.setattr(decode_module, "MAX_METADATA_BYTES", 0)  # so that a few kilobytes are "too big"
    write(src / "huge.jpg", noise_jpeg(64))  # kilobytes, over 100 pixels x 16 bytes
    with_one_good_image(src)
    if packed:
        with tarfile.open(tmp_path / "photos.tar", "w") as archive:
            archive.add(src, arcname="photos")
        read = []
        real_iter = sources_module.TarSource.iter_bytes
        monkeypatch.setattr(sources_module.TarSource, "iter_bytes",
                            lambda self, wanted: read.extend(wanted) or real_iter(self, wanted))
        prepare(tmp_path / "photos.tar", out, max_pixels=100)
        assert read == ["photos/good.png"]
    else:
        prepare(src, out, max_pixels=100)
    (entry,) = read_report(out)["skipped"]
    assert entry["reason"] == "too large to decode" and "bytes" in entry["detail"]


# --- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize("resolution, nearest", [(33, "use 32 or 64"), (48, "use 32 or 64"), (5, "use 4 or 8"),
                                                 (4095, "use 2048 or 4096")])
def test_a_resolution_that_is_not_a_power_of_two_names_the_nearest(src, out, resolution, nearest):
    with_one_good_image(src)
    with pytest.raises(PrepareError, match="power of two") as error:
        prepare(src, out, resolution=resolution)
    assert nearest in str(error.value) and not out.exists()


def test_every_power_of_two_from_4_to_4096_is_accepted():
    for exponent in range(2, 13):
        PrepareOptions(resolution=2**exponent).validate("folder")
    for refused in (2, 8192, 64.0, "64", True):
        with pytest.raises(PrepareError):
            PrepareOptions(resolution=refused).validate("folder")


@pytest.mark.parametrize("kind, options, flag", [
    ("folder", {"workers": -3}, "--workers"),
    ("folder", {"min_size": -1}, "--min-size"),
    ("folder", {"max_pixels": 0}, "--max-pixels"),
    ("points", {"count": 0}, "--count"),
    ("points", {"seed": -1}, "--seed"),
    ("folder", {"background": 3}, "background"),
])
def test_out_of_range_options_are_refused(kind, options, flag):
    with pytest.raises(PrepareError, match=flag):
        PrepareOptions(resolution=8, **options).validate(kind)


# --- where the output goes ---------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="uses /proc, where no folder can be made")
def test_an_output_that_cannot_be_created_names_the_folder_and_what_to_do(src):
    with_one_good_image(src)
    with pytest.raises(PrepareError) as error:
        prepare(src, "/proc/ganforge-test/out")
    message = str(error.value)
    assert "in /proc " in message and "Choose an output folder you can write to" in message


def test_an_unwritable_output_parent_is_refused_before_scanning(tmp_path, src, monkeypatch):
    with_one_good_image(src)
    parent = tmp_path / "locked"
    parent.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == parent else real_access(path, mode))
    scanned = []
    monkeypatch.setattr(sources_module.FolderSource, "scan", lambda self: scanned.append(1) or ([], []))
    with pytest.raises(PrepareError) as error:
        prepare(src, parent / "out")
    assert f"in {parent} (no permission" in str(error.value)
    assert "Choose an output folder you can write to" in str(error.value)
    assert scanned == [] and not (parent / "out").exists()


def test_an_output_below_a_file_is_refused(tmp_path, src):
    with_one_good_image(src)
    write(tmp_path / "notes.txt", b"mine")
    with pytest.raises(PrepareError, match="is a file, not a folder"):
        prepare(src, tmp_path / "notes.txt" / "out")
    assert (tmp_path / "notes.txt").read_bytes() == b"mine"


# --- the command line, used wrongly ------------------------------------------------------------


def _cut_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.png", encode(solid(RED)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _empty_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w"):
        pass


CLI_MISTAKES = {
    "negative workers": (["prepare", "{src}", "{tmp}/o", "-r", "8", "--workers", "-3"], "--workers"),
    "negative min-size": (["prepare", "{src}", "{tmp}/o", "-r", "8", "--min-size", "-1"], "--min-size"),
    "zero max-pixels": (["prepare", "{src}", "{tmp}/o", "-r", "8", "--max-pixels", "0"], "--max-pixels"),
    "resolution 33": (["prepare", "{src}", "{tmp}/o", "-r", "33"], "use 32 or 64"),
    "zero points": (["prepare", "ring8", "{tmp}/o", "--count", "0"], "--count"),
    "output is a file": (["prepare", "{src}", "{tmp}/notes.txt", "-r", "8"], "is not a folder"),
    "source is a text file": (["prepare", "{tmp}/notes.txt", "{tmp}/o", "-r", "8"], "not a zip or tar"),
    "source is an empty file": (["prepare", "{tmp}/empty.zip", "{tmp}/o", "-r", "8"], "empty (0 bytes)"),
    "source is a cut zip": (["prepare", "{tmp}/cut.zip", "{tmp}/o", "-r", "8"], "cut short"),
    "source is an empty zip": (["prepare", "{tmp}/nothing.zip", "{tmp}/o", "-r", "8"], "the source is empty"),
    "source is an empty folder": (["prepare", "{tmp}/void", "{tmp}/o", "-r", "8"], "the source is empty"),
    "source is the output": (["prepare", "{src}", "{src}", "-r", "8"], "inside the source"),
    "inspect a non-dataset": (["inspect", "{src}"], "not a prepared dataset"),
    "digits:test": (["prepare", "digits:test", "{tmp}/o", "-r", "16"], "1,797 images with no test split: use digits."),
    "digits:foo": (["prepare", "digits:foo", "{tmp}/o", "-r", "16"], "with no foo split: use digits."),
    "ring8:test": (["prepare", "ring8:test", "{tmp}/o"], "ring8 is a generated point set; it has no test split: use ring8."),
    "a prepared dataset as the source": (["prepare", "{tmp}/ds", "{tmp}/o", "-r", "16"],
                                         "is already a prepared dataset: train on it directly (ganforge train "),
    "inspect --count 0": (["inspect", "{tmp}/ds", "--count", "0"], "--count must be between 1 and"),
    "inspect --count -5": (["inspect", "{tmp}/ds", "--count", "-5"], "--count must be between 1 and"),
    "inspect --out x.txt": (["inspect", "{tmp}/ds", "--out", "{tmp}/x.txt"], "end it in .png"),
    "inspect --out a folder": (["inspect", "{tmp}/ds", "--out", "{tmp}"], "is a folder"),
}


@pytest.mark.parametrize("case", CLI_MISTAKES, ids=list(CLI_MISTAKES))
def test_cli_mistakes_are_one_sentence_and_touch_no_user_file(tmp_path, capsys, case):
    src = tmp_path / "my photos ñ"
    with_one_good_image(src)
    write(tmp_path / "notes.txt", b"mine\n")
    write(tmp_path / "empty.zip", b"")
    _cut_zip(tmp_path / "cut.zip")
    _empty_zip(tmp_path / "nothing.zip")
    (tmp_path / "void").mkdir()
    if case.startswith("inspect --") or case == "a prepared dataset as the source":
        prepare(src, tmp_path / "ds")
    before = files_under(tmp_path)
    argv, expected = CLI_MISTAKES[case]
    code = main([a.format(src=src, tmp=tmp_path) for a in argv] + ["-q"] * (argv[0] == "prepare"))
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("ganforge: error: ") and err.count("\n") == 1 and expected in err
    after = files_under(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before  # no user file changed or gone
    assert set(after) - set(before) <= {"o", "o/prepare-report.json"}  # at most the report of a source with no image


def test_the_built_in_digits_without_a_split_are_still_prepared(out):
    result = prepare_module.prepare_dataset("digits", out, resolution=8, workers=1, progress=False)
    assert result.included == 1797 and PreparedDataset(out).manifest["settings"]["source"] == "dataset:digits:train"


def files_under(root: Path) -> dict:
    """`snapshot` without folders' times (making a folder inside one changes its mtime)."""
    return {k: v[:1] if stat.S_ISDIR(v[0]) else v for k, v in snapshot(root).items() if k != "."}
