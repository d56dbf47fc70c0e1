"""The exported generator as users load it: from_pretrained, seeds, classes, the sample command, the
model card, and clear errors for a damaged folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.cli import main
from ganforge.data.prepare import prepare_dataset
from ganforge.export import ExportError, export_generator
from ganforge.generator import Generator, GeneratorError, parse_seeds
from ganforge.train.session import train_gan

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
        gen.sample([0], truncation=0)
    z = gen.latents([5])
    half = gen.synthesize(z, torch.tensor([1]), truncation=0.5)
    assert torch.equal(half, gen.synthesize(z * 0.5, torch.tensor([1])))


def test_parse_seeds():
    assert parse_seeds("1,7,42") == [1, 7, 42]
    assert parse_seeds("0-3,10") == [0, 1, 2, 3, 10]
    with pytest.raises(GeneratorError):
        parse_seeds("a-b")


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
    with pytest.raises(ExportError, match="not a valid safetensors"):
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
