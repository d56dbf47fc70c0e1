"""The exported generator as users load it: from_pretrained, seeds, classes, the sample command, the
model card, and clear errors for a damaged folder."""

from __future__ import annotations

import itertools
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.cli import main
from ganforge.data.prepare import prepare_dataset
from ganforge.export import ExportError, export_generator
from ganforge import generator as generator_module
from ganforge.generator import MAX_SEED, Generator, GeneratorError, parse_seeds, write_samples
from ganforge.api import train_gan

TINY = {"model.g_width": 8, "model.d_width": 8, "model.z_dim": 16, "batch_size": 16, "tick_kimg": 0.032,
        "grid_size": 10, "precision": "fp32", "ema_kimg": 0.1, "kimg": 0.064}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gen")
    prepare_dataset("digits", root / "digits", resolution=16, workers=1, progress=False)
    result = train_gan(root / "digits", preset="dcgan-small", overrides={**TINY, "runs_dir": str(root / "runs")},
                       progress=False)
    return export_generator(result.run_dir)


def pixels(images) -> np.ndarray:
    return np.stack([np.asarray(im) for im in images])


def test_from_pretrained_knows_its_classes_and_reproduces_seeds(exported):
    gen = Generator.from_pretrained(exported, device="cpu")
    assert gen.num_classes == 10 and gen.classes[:3] == ["0", "1", "2"] and gen.resolution == 16
    a = pixels(gen.sample([3, 17, 42]))
    b = pixels(gen.sample([42, 3, 5, 17]))  # other batch-mates, other order
    assert np.array_equal(a[0], b[1]) and np.array_equal(a[1], b[3]) and np.array_equal(a[2], b[0])
    again = Generator.from_pretrained(exported.parent, device="cpu")  # the run folder finds its export
    assert np.array_equal(pixels(again.sample([3, 17, 42])), a)


def test_classes_by_name_index_and_errors(exported):
    gen = Generator.from_pretrained(exported, device="cpu")
    assert torch.equal(gen.labels_for(3, "7"), torch.tensor([7, 7, 7]))
    assert torch.equal(gen.labels_for(2, None, seeds=[12, 25]), torch.tensor([2, 5]))
    with pytest.raises(GeneratorError, match="out of range"):
        gen.label_index(10)
    with pytest.raises(GeneratorError, match="truncation"):
        gen.sample([0], truncation=-0.5)
    z = gen.latents([5])
    half = gen.synthesize(z, torch.tensor([1]), truncation=0.5)
    assert torch.equal(half, gen.synthesize(z * 0.5, torch.tensor([1])))


def test_parse_seeds():
    assert parse_seeds("1,7,42") == [1, 7, 42]
    assert parse_seeds("0-3,10") == [0, 1, 2, 3, 10]
    assert parse_seeds(" 4 - 6 , 9 ") == [4, 5, 6, 9] and parse_seeds("5-5") == [5]
    assert parse_seeds(f"{MAX_SEED}") == [MAX_SEED]
    with pytest.raises(GeneratorError):
        parse_seeds("a-b")


@pytest.mark.parametrize("text, says", [
    ("5-1", "reversed: write 1-5"), ("-5", "negative"), ("1--3", "negative"), (str(MAX_SEED + 1), "too large"),
    ("99999999999999999999", "too large"), ("a-b", "not a seed or a range"), ("1.5", "not a seed or a range"),
    ("1,,2", "empty item"), ("3,", "empty item"), ("", "No seeds"), ("1-2-3", "not a seed or a range"),
])
def test_bad_seeds_get_a_sentence_saying_what_is_wrong(text, says):
    with pytest.raises(GeneratorError, match=says):
        parse_seeds(text)


def test_seed_ranges_stay_ranges():
    tracemalloc.start()
    seeds = parse_seeds("0-999999,5")  # a list of a million seeds would take ~36 MB
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 100_000 and len(seeds) == 1_000_001 and seeds[-1] == 5 and seeds[999_999] == 999_999
    assert list(itertools.islice(seeds, 3)) == [0, 1, 2]


def test_sample_command_writes_seeded_pngs_and_a_grid(exported, tmp_path):
    out = tmp_path / "samples"
    assert main(["sample", str(exported), "--seeds", "4-6", "--class", "3", "--grid", "--out", str(out), "--device", "cpu"]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["grid.png", "seed000004.png", "seed000005.png", "seed000006.png"]
    with Image.open(out / "seed000005.png") as image:
        assert image.text["seed"] == "5" and image.text["class"] == "3"
        first = np.asarray(image)
    gen = Generator.from_pretrained(exported, device="cpu")
    assert np.array_equal(first, np.asarray(gen.sample([5], label=3)[0]))
    assert main(["sample", str(exported), "--class", "cat", "--out", str(out)]) == 2  # unknown class: a sentence


def test_model_card_and_config_summary(exported):
    config = json.loads((exported / "config.json").read_text())
    assert config["training"]["data_summary"]["images"] > 1000 and config["training"]["data_summary"]["resolution"] == 16
    card = (exported / "README.md").read_text()
    for words in ("Training data", "Intended use", "Limitations", "ganforge audit", "Metrics"):
        assert words in card


def test_a_tampered_folder_gets_a_clear_error(exported, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    config = json.loads((exported / "config.json").read_text())
    config["config"]["z_dim"] = 99  # weights no longer fit
    (bad / "config.json").write_text(json.dumps(config))
    (bad / "model.safetensors").write_bytes((exported / "model.safetensors").read_bytes())
    with pytest.raises(ExportError, match="do not match"):
        Generator.from_pretrained(bad, device="cpu")
    (bad / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ExportError, match="not a valid safetensors|damaged"):
        Generator.from_pretrained(bad, device="cpu")


def test_explore_commands_write_their_files(exported, tmp_path):
    assert main(["interpolate", str(exported), "--seeds", "1,7", "--steps", "3", "--out", str(tmp_path / "walk"),
                 "--device", "cpu"]) == 0
    assert (tmp_path / "walk" / "interpolation.gif").is_file()
    assert main(["breed", str(exported), "--parents", "1,7", "--children", "3", "--out", str(tmp_path / "brood"),
                 "--device", "cpu"]) == 0
    child = tmp_path / "brood" / "child-01.npy"
    assert main(["breed", str(exported), "--parents", f"{child},5", "--children", "2", "--out", str(tmp_path / "again"),
                 "--device", "cpu"]) == 0
    target = tmp_path / "target.png"
    Generator.from_pretrained(exported, device="cpu").sample([9])[0].save(target)
    assert main(["project", str(exported), str(target), "--steps", "5", "--out", str(tmp_path / "proj"),
                 "--device", "cpu"]) == 0
    assert {"projected.npy", "reconstruction.png", "projection.gif"} <= {p.name for p in (tmp_path / "proj").iterdir()}


# --- sampling many images: streamed, and the same images as one by one ---------------------------------


def count_generated(monkeypatch) -> list[int]:
    """Patch synthesis to count the images made so far; returns the running count (one entry per call)."""
    made = [0]
    original = Generator.synthesize

    def counting(self, z, *args, **kwargs):
        made[0] += len(z)
        return original(self, z, *args, **kwargs)

    monkeypatch.setattr(Generator, "synthesize", counting)
    return made


def test_sample_writes_each_batch_before_making_the_next(exported, tmp_path, monkeypatch):
    made = count_generated(monkeypatch)
    seen_at_write = []
    original = generator_module.save_png
    def recording(*args, **kwargs):
        seen_at_write.append(made[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(generator_module, "save_png", recording)
    assert main(["sample", str(exported), "--count", "100", "--batch-size", "16", "--out", str(tmp_path), "-q",
                 "--device", "cpu"]) == 0
    assert len(seen_at_write) == 100 and made[0] == 100
    assert max(seen - written for written, seen in enumerate(seen_at_write)) <= 16  # never a batch ahead
    assert seen_at_write[0] == 16  # the first file is written before the second batch is made


def test_streamed_files_are_the_images_of_each_seed_alone(exported, tmp_path):
    gen = Generator.from_pretrained(exported, device="cpu")
    seeds = parse_seeds("3,10-16,5")
    written = write_samples(gen, seeds, tmp_path, batch_size=3, progress=False)
    assert written.images == 9 and written.grid is None
    for seed in seeds:
        with Image.open(tmp_path / f"seed{seed:06d}.png") as png:
            assert png.text["seed"] == str(seed) and png.text["class"] == str(seed % 10)
            assert np.array_equal(np.asarray(png), np.asarray(gen.sample([seed])[0]))  # the seed alone, batch of 1
    assert not list(tmp_path.glob("*.tmp"))


def test_a_huge_grid_only_run_makes_just_the_grid_images(exported, tmp_path, monkeypatch, capsys):
    made = count_generated(monkeypatch)
    assert main(["sample", str(exported), "--seeds", "0-99999999", "--grid-only", "--out", str(tmp_path), "-q"]) == 0
    assert made[0] == generator_module.GRID_MAX and [p.name for p in tmp_path.iterdir()] == ["grid.png"]
    assert "the first 256 of 100,000,000" in capsys.readouterr().out
    with Image.open(tmp_path / "grid.png") as picture:  # 16 x 16 images of 16 px with 1 px gaps, enlarged
        assert picture.width == picture.height and picture.width % (16 * 17 + 1) == 0


def test_the_progress_bar_counts_every_image(exported, tmp_path, monkeypatch):
    import tqdm

    bars = []
    original = tqdm.tqdm
    monkeypatch.setattr(tqdm, "tqdm", lambda *a, **k: bars.append(k) or original(*a, **k))
    gen = Generator.from_pretrained(exported, device="cpu")
    write_samples(gen, range(5), tmp_path, progress=True)
    assert bars[0]["total"] == 5 and bars[0]["unit"] == "img" and not bars[0]["disable"]


def test_sampling_nothing_is_refused(exported):
    gen = Generator.from_pretrained(exported, device="cpu")
    for count in (0, -3):
        with pytest.raises(GeneratorError, match="at least 1 image"):
            gen.sample(count=count)
    with pytest.raises(GeneratorError, match="No seeds"):
        gen.sample([])
    with pytest.raises(GeneratorError, match="seeds are whole numbers"):
        gen.latents([-1])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("ganforge: error: ") and "\n" not in err and "unexpected failure" not in err, err
    return err


@pytest.mark.parametrize("args, says", [
    (["--count", "0"], "at least 1 image"), (["--count", "-3"], "at least 1 image"),
    (["--seeds", "5-1"], "write 1-5"), (["--seeds=-5"], "negative"), (["--seeds", "1,,2"], "empty item"),
    (["--seeds", "1", "--count", "3"], "not both"), (["--truncation", "-1"], "truncation"),
    (["--truncation", "5"], "truncation"), (["--truncation", "nan"], "truncation"),
    (["--class", "cat"], "Unknown class"), (["--class", "10"], "out of range"), (["--device", "gpu"], "not a device"), (["--device", "meta"], "cpu, cuda"),
    (["--device", "cuda"], "no CUDA GPU" if not torch.cuda.is_available() else None),
    (["--batch-size", "0"], "batch_size"), (["--out", "FILE"], "is a file"), (["--out", "FILE/sub"], "is a file"),
])
def test_sample_mistakes_get_one_sentence(exported, tmp_path, capsys, args, says):
    if says is None:
        pytest.skip("this machine has a GPU")
    (tmp_path / "FILE").write_text("not a folder")
    args = [a.replace("FILE", str(tmp_path / "FILE")) for a in args]
    out = [] if any(a == "--out" for a in args) else ["--out", str(tmp_path / "s")]
    assert main(["sample", str(exported), *args, *out]) == 2
    assert says in one_line_error(capsys)


@pytest.mark.parametrize("kind, says", [
    ("missing", "does not exist"), ("file", "is a file"), ("run", "ganforge export"), ("dataset", "prepared dataset"),
    ("empty", "not an exported generator"),
])
def test_what_is_not_a_generator_is_named(tmp_path, capsys, kind, says):
    path = tmp_path / "thing"
    if kind == "file":
        path.write_text("{}")
    elif kind != "missing":
        path.mkdir()
        (path / "checkpoints").mkdir() if kind == "run" else None
        (path / "manifest.json").write_text("{}") if kind == "dataset" else None
    assert main(["sample", str(path), "--out", str(tmp_path / "s")]) == 2
    assert says in one_line_error(capsys)


def test_unicode_paths(exported, tmp_path):
    out = tmp_path / "échantillons ☃"
    assert main(["sample", str(exported), "--seeds", "2", "--out", str(out), "-q"]) == 0
    assert (out / "seed000002.png").is_file()


@pytest.mark.parametrize("args, says", [
    (["interpolate", "GEN", "--seeds", "1,2", "--steps", "0"], "at least 1 frame"),
    (["interpolate", "GEN", "--seeds", "0-99999999"], "more than 1,000"),
    (["interpolate", "GEN", "--seeds", "1,2", "--fps", "nan"], "frame rate"),
    (["interpolate", "GEN", "--seeds", "1,missing.npy"], "not a file"),
    (["breed", "GEN", "--parents", "1,2", "--children", "0"], "children=0"),
    (["breed", "GEN", "--parents", "1,2", "--mutation", "1e200"], "mutation"),
    (["breed", "GEN", "--parents", "1,2", "--seed", "-1"], "seeds are whole numbers"),
    (["project", "GEN", "BOMB", "--steps", "1"], "decompression bomb"),
    (["project", "GEN", "missing.png", "--steps", "1"], "not a file"),
    (["project", "GEN", "FILE", "--steps", "1"], "Pillow"),
    (["eval", "ONE", "--data", "ONE", "-q"], "at least 2 generated images"),
    (["eval", "GEN", "--count", "1", "-q"], "count=1"),
    (["audit", "GEN", "--count", "1", "-q"], "count=1"),
    (["audit", "GEN", "--count", "5", "--out", "FILE", "-q"], "is a file"),
])
def test_explore_and_metrics_mistakes_get_one_sentence(exported, tmp_path, capsys, args, says):
    from awkward import png_bomb

    (tmp_path / "FILE").write_text("not an image, not a folder")
    (tmp_path / "BOMB").write_bytes(png_bomb(20_000, 20_000))
    (tmp_path / "ONE").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "ONE" / "only.png")
    names = {"GEN": str(exported), "FILE": str(tmp_path / "FILE"), "BOMB": str(tmp_path / "BOMB"),
             "ONE": str(tmp_path / "ONE"), "missing.png": str(tmp_path / "missing.png")}
    args = [names.get(a, a) for a in args]
    out = [] if "--out" in args or args[0] == "eval" else ["--out", str(tmp_path / "out")]
    assert main([*args, *out, "--device", "cpu"] if args[0] != "eval" else args) == 2
    assert says in one_line_error(capsys)


def test_a_long_run_stopped_early_keeps_its_grid_and_no_half_files(exported, tmp_path, monkeypatch):
    gen = Generator.from_pretrained(exported, device="cpu")
    calls = [0]
    original = generator_module.save_png

    def interrupted_at_260(image, path, metadata):
        calls[0] += 1
        if calls[0] == 260:
            raise KeyboardInterrupt
        original(image, path, metadata)

    monkeypatch.setattr(generator_module, "save_png", interrupted_at_260)
    with pytest.raises(KeyboardInterrupt):
        write_samples(gen, range(10**6), tmp_path, with_grid=True, progress=False)
    assert (tmp_path / "grid.png").is_file() and len(list(tmp_path.glob("seed*.png"))) == 259
    assert not list(tmp_path.glob("*.tmp"))


def test_a_png_cut_off_while_written_leaves_nothing_under_its_name(tmp_path, monkeypatch):
    def half_then_interrupted(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", half_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        generator_module.save_png(Image.new("L", (4, 4)), tmp_path / "seed000001.png", {"seed": 1})
    assert list(tmp_path.iterdir()) == []


# --- files already in the output folder are never written over ------------------------------------------


def test_sample_refuses_to_write_over_a_file_it_would_write(exported, tmp_path, capsys):
    own = tmp_path / "own"
    own.mkdir()
    (own / "seed000001.png").write_text("precious")
    (own / "seed000003.png").write_text("precious too")
    assert main(["sample", str(exported), "--seeds", "1-3", "--grid", "-q", "--out", str(own), "--device", "cpu"]) == 2
    err = one_line_error(capsys)
    assert "seed000001.png already exists (and 1 more" in err and "--overwrite" in err and "another --out" in err
    assert sorted(p.name for p in own.iterdir()) == ["seed000001.png", "seed000003.png"]  # nothing written at all
    assert (own / "seed000001.png").read_text() == "precious"
    (own / "grid.png").write_text("a grid of mine")
    assert main(["sample", str(exported), "--seeds", "5", "--grid-only", "-q", "--out", str(own)]) == 2
    assert "grid.png already exists" in one_line_error(capsys)
    assert main(["sample", str(exported), "--seeds", "4-6", "-q", "--out", str(own)]) == 0  # other names: fine
    assert main(["sample", str(exported), "--seeds", "1-3", "-q", "--out", str(own), "--overwrite"]) == 0
    assert Image.open(own / "seed000001.png").size == (16, 16)


def test_a_huge_sample_checks_its_names_with_one_listing(exported, tmp_path, capsys, monkeypatch):
    (tmp_path / "seed50000000.png").write_text("precious")  # deep in 0-99999999
    (tmp_path / "seed0000007.png").write_text("not a name sample writes")
    looked_up = []
    monkeypatch.setattr(Path, "exists", lambda self: looked_up.append(self) or Path.is_file(self) or Path.is_dir(self))
    assert main(["sample", str(exported), "--seeds", "0-99999999", "-q", "--out", str(tmp_path)]) == 2
    assert "seed50000000.png already exists:" in one_line_error(capsys) and len(looked_up) < 10
    assert (tmp_path / "seed50000000.png").read_text() == "precious"


def test_the_readme_breed_workflow_keeps_the_first_brood(exported, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["breed", str(exported), "--parents", "3,17", "--children", "4", "--device", "cpu"]) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "brood").iterdir()}
    capsys.readouterr()
    assert main(["breed", str(exported), "--parents", "brood/child-02.npy,5", "--children", "4",
                 "--device", "cpu"]) == 2
    assert "child-00.npy already exists (and 8 more" in one_line_error(capsys)
    assert {p.name: p.read_bytes() for p in (tmp_path / "brood").iterdir()} == before
    assert main(["breed", str(exported), "--parents", "brood/child-02.npy,5", "--children", "4", "--out", "brood2",
                 "--device", "cpu"]) == 0
    for command in (["interpolate", str(exported), "--seeds", "1,2", "--steps", "2", "--out", "brood2"],
                    ["project", str(exported), "brood2/child-00.png", "--steps", "1", "--out", "brood2"]):
        (tmp_path / "brood2" / "interpolation.gif").write_text("mine")
        (tmp_path / "brood2" / "projected.npy").write_text("mine")
        assert main([*command, "--device", "cpu"]) == 2 and "already exists" in one_line_error(capsys)
        assert main([*command, "--device", "cpu", "--overwrite", *(["-q"] if command[0] == "project" else [])]) == 0


# --- edited, newer and stale exports ----------------------------------------------------------------------


def edited_copy(exported: Path, tmp_path: Path, **changes) -> Path:
    copy = tmp_path / "edited"
    copy.mkdir(parents=True)
    for name in ("model.safetensors", "README.md"):
        (copy / name).write_bytes((exported / name).read_bytes())
    config = json.loads((exported / "config.json").read_text())
    config.update(changes)
    (copy / "config.json").write_text(json.dumps(config))
    return copy


@pytest.mark.parametrize("classes, says", [
    (["0", "1", "2", "3", "4"], "is a list of 5, not a list of 10 class names"),
    (5, "is 5, not a list of 10 class names"),
    ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], "not a list of 10 class names"),
])
def test_edited_classes_are_refused_on_load(exported, tmp_path, capsys, classes, says):
    copy = edited_copy(exported, tmp_path, classes=classes)
    with pytest.raises(GeneratorError, match="config.json was edited"):
        Generator.from_pretrained(copy, device="cpu")
    assert main(["sample", str(copy), "--class", "7", "--out", str(tmp_path / "s"), "-q"]) == 2
    err = one_line_error(capsys)
    assert says in err and "Export the run again" in err
    assert Generator.from_pretrained(edited_copy(exported, tmp_path / "n", classes=None), device="cpu").classes is None


def test_an_export_from_a_newer_ganforge_is_refused(exported, tmp_path, capsys):
    from ganforge.export import VERSION

    copy = edited_copy(exported, tmp_path, version=VERSION + 1)
    with pytest.raises(GeneratorError, match="made by a newer ganforge.*upgrade"):
        Generator.from_pretrained(copy, device="cpu")
    assert main(["sample", str(copy), "--out", str(tmp_path / "s"), "-q"]) == 2
    assert "newer ganforge" in one_line_error(capsys)


def test_sampling_a_run_whose_training_went_on_warns_of_the_stale_export(exported, tmp_path, capsys):
    import os
    import shutil

    run = tmp_path / "run"
    shutil.copytree(exported.parent, run)
    assert main(["sample", str(run), "--seeds", "1", "-q", "--out", str(tmp_path / "a")]) == 0
    assert "warning" not in capsys.readouterr().err  # fresh: no warning
    seen = json.loads((run / "generator" / "config.json").read_text())["training"]["images_seen"]
    newest = sorted((run / "checkpoints").glob("checkpoint-*.pt"))[-1]
    later = run / "checkpoints" / f"checkpoint-{seen + 6400:09d}.pt"  # training went on after the export
    shutil.copy(newest, later)
    stamp = (run / "generator" / "config.json").stat().st_mtime + 60
    os.utime(later, (stamp, stamp))
    assert main(["sample", str(run), "--seeds", "1", "-q", "--out", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert f"training went on to {seen + 6400:,}" in err and f"ganforge export {run}" in err
    assert main(["sample", str(run / "generator"), "--seeds", "1", "-q", "--out", str(tmp_path / "c")]) == 0
    assert "warning" not in capsys.readouterr().err  # the export folder itself names no run


def test_explore_command_messages_and_limits(exported, tmp_path, capsys):
    base = ["--out", str(tmp_path / "x"), "--device", "cpu"]
    assert main(["breed", str(exported), "--parents", "1", *base]) == 2
    assert "give 2 to" in one_line_error(capsys)
    np.save(tmp_path / "bare.npy", np.zeros(16, np.float32))
    assert main(["breed", str(exported), "--parents", f"{tmp_path / 'bare.npy'},1", *base]) == 2
    assert "give a class with --class" in one_line_error(capsys)
    target = tmp_path / "t.png"
    Image.new("RGB", (16, 16)).save(target)
    assert main(["project", str(exported), str(target), "--steps", "1000000000", *base]) == 2
    assert "at most 100,000 steps" in one_line_error(capsys)
    assert main(["project", str(exported), str(target), "--feature-weight", "1", "--inception",
                 str(tmp_path / "missing.pt"), "--steps", "1", "-q", *base]) != 0  # the option exists
    assert "unrecognized" not in capsys.readouterr().err
