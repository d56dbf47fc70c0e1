"""Steering: layer groups, the style-mixing grid, PCA directions, edits, breeding with genes and its
recipes, and projection in w / w+ — on tiny exported StyleGAN2 and DCGAN generators."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from ganforge import directions, steer
from ganforge.api import train_gan
from ganforge.cli import main
from ganforge.export import export_generator
from ganforge.generator import Generator, GeneratorError

TINY = {"model.g_width": 8, "model.d_width": 8, "model.z_dim": 16, "batch_size": 16, "tick_kimg": 0.032,
        "grid_size": 4, "precision": "fp32", "ema_kimg": 0.1, "eval_minutes": 0, "kimg": 0.032, "conditional": "no"}
SG2 = {"model.name": "stylegan2", "model.z_dim": 16, "model.w_dim": 16, "model.mapping_layers": 2,
       "model.channel_base": 128, "model.channel_max": 8, "batch_size": 8, "tick_kimg": 0.016, "grid_size": 4,
       "precision": "fp32", "ema_kimg": 0.1, "eval_minutes": 0, "kimg": 0.032, "augment": "", "r1_gamma": 0.1,
       "conditional": "no"}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest


@pytest.fixture(scope="module")
def exports(digits, tmp_path_factory):
    root = tmp_path_factory.mktemp("steer")
    style = train_gan(digits, overrides={**SG2, "runs_dir": str(root / "runs")}, progress=False).run_dir
    plain = train_gan(digits, preset="dcgan-small", overrides={**TINY, "runs_dir": str(root / "runs")},
                      progress=False).run_dir
    return export_generator(style), export_generator(plain)


@pytest.fixture
def sg2(exports, tmp_path):
    """A private copy of the StyleGAN2 export (directions are written into the generator's folder)."""
    folder = shutil.copytree(exports[0], tmp_path / "sg2")
    return Generator.from_pretrained(folder, device="cpu")


@pytest.fixture
def dcgan(exports, tmp_path):
    return Generator.from_pretrained(shutil.copytree(exports[1], tmp_path / "dcgan"), device="cpu")


def pixels(images) -> np.ndarray:
    return np.stack([np.asarray(im) for im in images])


def same_image(a, b) -> bool:
    """Equal up to one grey level: a batch of 1 and a batch of 3 may round a pixel differently (GEMM blocking)."""
    a, b = np.asarray(a).astype(int), np.asarray(b).astype(int)
    return a.shape == b.shape and int(np.abs(a - b).max()) <= 1


def styles_of(gen: Generator, seed: int) -> torch.Tensor:
    return gen.module.mapping(gen.latents([seed]))[0]  # (num_ws, w_dim)


# --- layers --------------------------------------------------------------------------------------------


def test_layer_groups_follow_resolution_and_parse(sg2, dcgan):
    assert sg2.module.num_ws == 6  # 16 px: 4, 8, 16 px blocks
    assert steer.layer_groups(sg2) == {"coarse": [0, 1, 2, 3], "middle": [], "fine": [4, 5]}
    assert steer.parse_layers(sg2, "coarse") == [0, 1, 2, 3]
    assert steer.parse_layers(sg2, "0-1,5") == [0, 1, 5]
    assert steer.parse_layers(sg2, "fine,0") == [0, 4, 5]
    assert steer.parse_layers(sg2, "all") == list(range(6))
    for bad, words in (("middle", "no middle layers"), ("6", "out of range"), ("3-1", "out of range"), ("x", "not a")):
        with pytest.raises(GeneratorError, match=words):
            steer.parse_layers(sg2, bad)
    with pytest.raises(GeneratorError, match="style-based generator"):
        steer.parse_layers(dcgan, "coarse")


def test_groups_at_64_px_match_stylegan_figure():
    from ganforge.models.stylegan2 import StyleGAN2Config, StyleGAN2Generator

    module = StyleGAN2Generator(StyleGAN2Config(resolution=64, z_dim=8, w_dim=8, channel_base=64, channel_max=4,
                                                mapping_layers=1))
    gen = Generator(module, {"config": {"z_dim": 8, "resolution": 64, "channels": 3}, "architecture": "stylegan2"})
    assert steer.layer_groups(gen) == {"coarse": [0, 1, 2, 3], "middle": [4, 5, 6, 7], "fine": [8, 9]}


# --- style mixing --------------------------------------------------------------------------------------


def test_style_mix_grid_takes_rows_layers_from_rows_and_the_rest_from_columns(sg2, tmp_path):
    made = steer.style_mix(sg2, [1, 2], [10, 11, 12], layers="coarse", out=tmp_path)
    assert len(made.cells) == 2 and all(len(row) == 3 for row in made.cells)
    coarse, fine = [0, 1, 2, 3], [4, 5]
    for r, row_seed in enumerate([1, 2]):
        for c, col_seed in enumerate([10, 11, 12]):
            row, col = styles_of(sg2, row_seed), styles_of(sg2, col_seed)
            mixed = steer.mix(row, col, coarse)
            assert torch.equal(mixed[coarse], row[coarse]) and torch.equal(mixed[fine], col[fine])
            expected = sg2.to_images(sg2.module.synthesis(mixed[None]))[0]
            assert np.array_equal(np.asarray(made.cells[r][c]), np.asarray(expected))
    # the headers are the latents' own images, the same as sample gives
    assert np.array_equal(pixels(made.cols), pixels(sg2.sample([10, 11, 12])))
    assert np.array_equal(pixels(made.rows), pixels(sg2.sample([1, 2])))
    # all of a row's layers: the row's own image (compared unmarked: a mixed cell's mark carries no seed)
    unmarked = Generator(sg2.module, sg2.config, sg2.path, mark=False)
    every = steer.style_mix(unmarked, [1, 2], [10], layers="all")
    assert np.array_equal(pixels([every.cells[0][0], every.cells[1][0]]), pixels(every.rows))
    assert (tmp_path / "style-mix.png").is_file()
    with pytest.raises(GeneratorError, match="already exists"):
        steer.style_mix(sg2, [1], [2], out=tmp_path)


def test_style_mix_refuses_dcgan_with_a_way_out(dcgan):
    with pytest.raises(GeneratorError, match="--mode blend or crossover"):
        steer.style_mix(dcgan, [1], [2])


# --- directions ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["sg2", "dcgan"])
def test_directions_are_orthonormal_reproducible_and_saved(which, request):
    gen = request.getfixturevalue(which)
    found = directions.find_directions(gen, count=4, samples=600)
    again = directions.find_directions(gen, count=4, samples=600, save=False)
    v = found.vectors
    assert torch.allclose(v @ v.T, torch.eye(4), atol=1e-5)
    assert torch.equal(found.vectors, again.vectors) and torch.equal(found.sigma, again.sigma)
    assert (found.variance[:-1] >= found.variance[1:]).all() and 0 < float(found.variance.sum()) <= 1 + 1e-6
    assert found.space == ("w" if which == "sg2" else "z")
    for name in ("directions.json", "directions.safetensors", "directions.png", "directions/direction-03.png"):
        assert (gen.path / name).is_file()
    loaded = directions.load_directions(gen)
    assert torch.equal(loaded.vectors, found.vectors) and loaded.layers == found.layers
    if which == "sg2":  # sigma is w's spread along each direction: check it against the samples
        z, _ = steer._draw_z(gen, 600, 0)
        w = gen.module.mapping(z)[:, 0]
        assert torch.allclose(((w - w.mean(0)) @ v.T).std(0), found.sigma, rtol=1e-3)
        assert set(json.loads((gen.path / "directions.json").read_text())["directions"][0]["effect"]) == {"coarse", "fine"}
    with pytest.raises(GeneratorError, match="--overwrite"):
        directions.find_directions(gen, count=4, samples=600)


def test_directions_found_for_other_weights_are_refused(sg2):
    directions.find_directions(sg2, count=2, samples=300)
    meta = json.loads((sg2.path / "directions.json").read_text())
    (sg2.path / "directions.json").write_text(json.dumps({**meta, "weights_sha256": "0" * 64}))
    with pytest.raises(GeneratorError, match="other weights"):
        directions.load_directions(sg2)
    (sg2.path / "directions.safetensors").write_bytes(b"damaged")
    with pytest.raises(GeneratorError, match="damaged"):
        directions.load_directions(sg2)


@pytest.mark.parametrize("which", ["sg2", "dcgan"])
def test_edit_at_strength_zero_is_the_plain_sample_and_moves_otherwise(which, request, tmp_path):
    gen = request.getfixturevalue(which)
    directions.find_directions(gen, count=3, samples=400)
    made = directions.edit(gen, 7, direction=1, strengths=[-2, 0, 2], out=tmp_path)
    plain = np.asarray(gen.sample([7])[0])
    assert same_image(made.images[1], plain)
    assert not same_image(made.images[0], plain) and not same_image(made.images[2], plain)
    assert (tmp_path / "strip.png").is_file() and (tmp_path / "edit.gif").is_file()
    fast = directions.Steer(gen)
    assert same_image(fast.image(7, {1: 2.0}), made.images[2])
    with pytest.raises(GeneratorError, match="directions 0-2"):
        fast.image(7, {3: 1.0})
    with pytest.raises(GeneratorError, match="strength"):
        fast.image(7, {0: float("nan")})


def test_edit_only_moves_the_chosen_layers(sg2):
    directions.find_directions(sg2, count=2, samples=400)
    fast = directions.Steer(sg2)
    base = fast.code(5)
    moved = fast.edited(base, {0: 3.0}, layers="fine")
    assert torch.equal(moved.value[:4], base.value[:4]) and not torch.equal(moved.value[4:], base.value[4:])


def test_parse_strengths():
    assert directions.parse_strengths("-2..2", 5) == [-2.0, -1.0, 0.0, 1.0, 2.0]
    assert directions.parse_strengths("1.5") == [1.5]
    for bad in ("a..b", "1..2..3", "50"):
        with pytest.raises(GeneratorError):
            directions.parse_strengths(bad)


# --- breeding with genes, recipes ----------------------------------------------------------------------


def test_genes_take_each_group_from_the_named_parent(sg2):
    brood = steer.breed_genes(sg2, [3, 17], children=2, mutation=0, genes="coarse=0,fine=1")
    a, b = styles_of(sg2, 3), styles_of(sg2, 17)
    for child in brood.latents:
        assert torch.equal(child[:4], a[:4]) and torch.equal(child[4:], b[4:])
    blended = steer.breed_genes(sg2, [3, 17], children=1, mutation=0, genes="coarse=blend,fine=0")
    assert not torch.equal(blended.latents[0][:4], a[:4]) and torch.equal(blended.latents[0][4:], a[4:])
    for bad in ("middle=0", "coarse=2", "coarse=a", "hair=0"):
        with pytest.raises(GeneratorError, match="genes"):
            steer.breed_genes(sg2, [3, 17], genes=bad)


def test_children_and_edits_are_remade_exactly_from_their_recipes(sg2, tmp_path):
    first = steer.breed_genes(sg2, [3, 17, 40], children=4, mutation=0.3, seed=9, out=tmp_path / "b1")
    same = steer.breed_genes(sg2, [3, 17, 40], children=4, mutation=0.3, seed=9)
    assert torch.equal(first.latents, same.latents)
    saved = steer.load_styles(sg2, tmp_path / "b1" / "child-02.npy")
    assert torch.equal(saved.value, first.latents[2])
    assert torch.equal(directions.remake(sg2, tmp_path / "b1" / "child-02.json").value, saved.value)
    # a grandchild, bred from a child's file: its recipe names the file by digest and carries the parent's recipe
    second = steer.breed_genes(sg2, [str(tmp_path / "b1" / "child-02.npy"), 5], children=2, seed=1, out=tmp_path / "b2")
    recipe = json.loads((tmp_path / "b2" / "child-01.json").read_text())
    assert recipe["parents"][0]["recipe"]["seed"] == 9
    assert torch.equal(directions.remake(sg2, tmp_path / "b2" / "child-01.json").value, second.latents[1])
    # an edit of the grandchild, remade through the whole lineage
    directions.find_directions(sg2, count=2, samples=400)
    directions.edit(sg2, str(tmp_path / "b2" / "child-01.npy"), direction=1, strengths=[1.5], out=tmp_path / "e")
    edited = steer.load_styles(sg2, tmp_path / "e" / "edited.npy")
    assert torch.equal(directions.remake(sg2, tmp_path / "e" / "edited.json").value, edited.value)
    image = np.asarray(directions.Steer(sg2).image(edited))
    from PIL import Image
    assert np.array_equal(image, np.asarray(Image.open(tmp_path / "e" / "edited.png")))
    # a changed parent file breaks the chain loudly, never silently
    np.save(tmp_path / "b1" / "child-02.npy", np.zeros(3, np.float32))
    with pytest.raises(GeneratorError, match="has changed"):
        directions.remake(sg2, tmp_path / "b2" / "child-01.json")


def test_style_files_are_checked(sg2, dcgan, tmp_path):
    steer.save_styles(tmp_path / "s.npy", steer.Code(torch.zeros(5, 16), None, "s"))
    with pytest.raises(GeneratorError, match="shape"):
        steer.load_styles(sg2, tmp_path / "s.npy")
    steer.save_styles(tmp_path / "n.npy", steer.Code(torch.full((6, 16), float("nan")), None, "n"))
    with pytest.raises(GeneratorError, match="NaN"):
        steer.load_styles(sg2, tmp_path / "n.npy")
    steer.save_styles(tmp_path / "ok.npy", steer.Code(torch.zeros(6, 16), None, "ok"))
    with pytest.raises(GeneratorError, match="per-layer styles"):
        steer.load_styles(dcgan, tmp_path / "ok.npy")


# --- projection in w / w+ ------------------------------------------------------------------------------


@pytest.mark.parametrize("space", ["w", "w+"])
def test_projection_recovers_a_w_the_generator_made(sg2, space, tmp_path):
    true = styles_of(sg2, 123)
    target = sg2.to_images(sg2.module.synthesis(true[None]))[0]
    found = steer.project_styles(sg2, target, space=space, steps=250, out=tmp_path, progress=False)
    w_avg = steer._map(sg2, steer._draw_z(sg2, 10_000, 0)[0], None)[:, 0].mean(0)
    start = float((sg2.module.synthesis(w_avg[None, None].expand(1, 6, -1)) - sg2.module.synthesis(true[None]))
                  .pow(2).mean())
    assert found.pixel_mse < 0.1 * start
    if space == "w":  # all layers share one w. (Not "near the true w": this barely trained net gives
        # nearly the same image for many w, so the image is what a projection can be asked to recover.)
        assert torch.allclose(found.code.value[0], found.code.value[-1])
    else:
        assert not torch.allclose(found.code.value[0], found.code.value[-1])  # w+: a style per layer
    saved = steer.load_styles(sg2, tmp_path / "projected.npy")
    assert saved.noise is not None and len(saved.noise) == len(steer._noise_layers(sg2))
    assert np.array_equal(np.asarray(directions.Steer(sg2, directions.find_directions(sg2, count=2, samples=300, save=False))
                                     .image(saved)), np.asarray(found.reconstruction))


def test_noise_penalty_is_small_for_white_noise_and_large_for_smooth_maps():
    white = [torch.randn(16, 16, generator=torch.Generator().manual_seed(0))]
    smooth = [torch.ones(16, 16)]
    assert steer._noise_penalty(white) < 0.01 < steer._noise_penalty(smooth)


# --- the command line ----------------------------------------------------------------------------------


def test_commands_end_to_end(sg2, dcgan, tmp_path, capsys):
    gen = str(sg2.path)
    assert main(["style-mix", gen, "--rows", "1,2", "--cols", "3,4,5", "--layers", "fine", "--out", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "style-mix.png").is_file()
    assert main(["directions", gen, "--count", "3", "--samples", "400"]) == 0
    assert main(["edit", gen, "--seed", "7", "--direction", "2", "--steps", "5", "--out", str(tmp_path / "e")]) == 0
    assert (tmp_path / "e" / "edit.gif").is_file()
    assert main(["breed", gen, "--parents", "1,2", "--mode", "genes", "--genes", "coarse=1",
                 "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "child-07.json").is_file()
    target = tmp_path / "target.png"
    sg2.sample([9])[0].save(target)
    assert main(["project", gen, str(target), "--steps", "20", "--quiet", "--out", str(tmp_path / "p")]) == 0
    assert "in w:" in capsys.readouterr().out
    assert main(["edit", gen, "--latent", str(tmp_path / "p" / "projected.npy"), "--direction", "0",
                 "--strength", "1", "--out", str(tmp_path / "pe")]) == 0
    assert (tmp_path / "pe" / "edited.png").is_file()
    assert main(["edit", gen, "--seed", "1", "--out", str(tmp_path / "x")]) == 2  # no direction: one clear line
    assert "--direction" in capsys.readouterr().err
    assert main(["style-mix", str(dcgan.path), "--rows", "1", "--cols", "2"]) == 2


def test_export_again_over_a_folder_with_directions(exports, tmp_path):
    folder = shutil.copytree(exports[0], tmp_path / "again")
    directions.find_directions(Generator.from_pretrained(folder, device="cpu"), count=2, samples=300)
    export_generator(exports[0].parent, out=folder)  # directions are ganforge's own files: not refused
    assert len(directions.load_directions(Generator.from_pretrained(folder, device="cpu"))) == 2  # same weights: valid
