"""The export format: version 3 names the task and the components; folders of versions 1 and 2 still
load; a StyleGAN2 export round-trips bit-exact and truncates toward its mean w."""

from __future__ import annotations

import json

import pytest
import torch

from ganforge.export import VERSION, export_generator, load_generator
from ganforge.generator import Generator
from ganforge.api import train_gan

TINY = {"model.g_width": 8, "model.d_width": 8, "model.z_dim": 16, "batch_size": 16, "tick_kimg": 0.032,
        "grid_size": 10, "precision": "fp32", "ema_kimg": 0.1, "eval_minutes": 0, "kimg": 0.032}
SG2 = {"model.name": "stylegan2", "model.z_dim": 16, "model.w_dim": 16, "model.mapping_layers": 2,
       "model.channel_base": 128, "model.channel_max": 8, "batch_size": 8, "tick_kimg": 0.016, "grid_size": 4,
       "precision": "fp32", "ema_kimg": 0.1, "eval_minutes": 0, "kimg": 0.032, "augment": "ada", "r1_gamma": 0.1}


@pytest.fixture(scope="module")
def dcgan_export(digits, tmp_path_factory):
    run = train_gan(digits, preset="dcgan-small", overrides={**TINY, "runs_dir": str(tmp_path_factory.mktemp("runs"))},
                    progress=False).run_dir
    return export_generator(run)


@pytest.fixture(scope="module")
def stylegan2_run(digits, tmp_path_factory):
    return train_gan(digits, overrides={**SG2, "runs_dir": str(tmp_path_factory.mktemp("runs"))}, progress=False).run_dir


def test_version_3_names_the_task_and_components(dcgan_export, stylegan2_run):
    config = json.loads((dcgan_export / "config.json").read_text())
    assert config["version"] == VERSION == 3
    assert config["task"] == "class-conditional-image-generation"
    assert config["class_name"] == "DCGANGenerator"
    assert list(config["components"]) == ["generator"] and config["components"]["generator"]["prefix"] == ""
    sg = json.loads((export_generator(stylegan2_run) / "config.json").read_text())
    assert sg["architecture"] == "stylegan2" and sg["class_name"] == "StyleGAN2Generator"
    assert set(sg["components"]) == {"mapping", "synthesis"}
    assert sg["components"]["mapping"]["class"] == "MappingNetwork"
    assert sg["components"]["synthesis"]["parameters"] > sg["components"]["mapping"]["parameters"] > 0


@pytest.mark.parametrize("version", [1, 2])
def test_older_export_versions_still_load(dcgan_export, tmp_path, version):
    config = json.loads((dcgan_export / "config.json").read_text())
    old = {k: v for k, v in config.items() if k not in ("task", "class_name", "components")}
    old["version"] = version
    if version == 1:
        del old["files"]  # version 1 recorded no digests
    folder = tmp_path / f"v{version}"
    folder.mkdir()
    for name in ("model.safetensors", "README.md"):
        (folder / name).write_bytes((dcgan_export / name).read_bytes())
    (folder / "config.json").write_text(json.dumps(old))
    z, labels = torch.randn(3, 16), torch.tensor([0, 4, 9])
    with torch.no_grad():
        assert torch.equal(load_generator(folder)(z, labels), load_generator(dcgan_export)(z, labels))


def test_stylegan2_export_round_trips_bit_exact_and_truncates_to_the_mean(stylegan2_run, tmp_path):
    from ganforge.train import checkpoint as ckpt

    state = ckpt.latest_loadable(stylegan2_run / "checkpoints")[1]
    folder = export_generator(stylegan2_run, tmp_path / "sg2")
    gen = Generator.from_pretrained(folder, device="cpu")
    weights = gen.module.state_dict()
    assert weights.keys() == state["G_ema"].keys()
    assert all(torch.equal(weights[k], v) for k, v in state["G_ema"].items())
    a, b = gen.sample([3, 5]), gen.sample([3, 5])
    assert [im.tobytes() for im in a] == [im.tobytes() for im in b]  # fixed noise: a seed is an image
    z, labels = gen.latents([1, 2, 3]), gen.labels_for(3)  # digits: a class-conditional StyleGAN2
    mean = gen.synthesize(z, labels, truncation=0.0)
    w_avg = gen.module.mapping.w_avg.reshape(1, 1, -1).expand(1, gen.module.num_ws, -1)
    with torch.no_grad():
        expected = gen.module.synthesis(w_avg).float()
    assert torch.allclose(mean, expected.expand_as(mean), atol=1e-6)
    assert not torch.allclose(gen.synthesize(z, labels, truncation=1.0), mean, atol=1e-3)


def test_truncation_cutoff_from_the_command_line(stylegan2_run, tmp_path):
    from ganforge.cli import main

    folder = export_generator(stylegan2_run, tmp_path / "sg2")
    gen = Generator.from_pretrained(folder, device="cpu")
    assert main(["sample", str(folder), "--count", "2", "--truncation", "0", "--truncation-cutoff", "2",
                 "--out", str(tmp_path / "cut"), "-q", "--device", "cpu"]) == 0
    z, labels = gen.latents([0, 1]), gen.labels_for(2, seeds=[0, 1])
    cut = gen.synthesize(z, labels, truncation=0.0, cutoff=2)
    assert not torch.allclose(cut, gen.synthesize(z, labels, truncation=0.0), atol=1e-4)  # fine layers kept
    assert main(["sample", str(folder), "--count", "1", "--truncation-cutoff", "99", "--out", str(tmp_path / "x"),
                 "-q", "--device", "cpu"]) == 2
