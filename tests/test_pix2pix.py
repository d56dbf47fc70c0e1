"""pix2pix: the U-Net and PatchGAN shapes, the recipe's losses by hand, deterministic eval, training and resume."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from resuming import StopAt, assert_same_checkpoints, square_photos
from torch import nn

from ganforge.api import train_gan
from ganforge.data.format import PreparedDataset
from ganforge.data.prepare import prepare_dataset
from ganforge.data.reader import to_uint8_images
from ganforge.models import MODELS, TRANSLATORS, ModelConfigError, create_generator, create_models
from ganforge.models.pix2pix import Pix2PixConfig, with_luma
from ganforge.train import checkpoint as ckpt
from ganforge.train.config import ConfigError, build_config
from ganforge.train.loop import Trainer, TrainingError
from ganforge.train.recipes.pix2pix import Pix2PixRecipe

TINY = {"width": 4, "d_width": 4}


@pytest.mark.parametrize("resolution", [16, 32])
@pytest.mark.parametrize("in_channels,channels", [(1, 1), (1, 3), (3, 3), (4, 4), (3, 1)])
def test_unet_and_patchgan_shapes(resolution, in_channels, channels):
    cfg, G, D = create_models("pix2pix", resolution=resolution, in_channels=in_channels, channels=channels, **TINY)
    a = torch.rand(2, in_channels, resolution, resolution) * 2 - 1
    b = G(a)
    assert b.shape == (2, channels, resolution, resolution)
    assert b.min() >= -1 and b.max() <= 1  # tanh
    logits = D(a, b)
    side = {16: 6, 32: 6}[resolution]  # 16 px: 1 stride-2 conv (8) then two 4x4 stride-1 convs (-1 each)
    assert logits.shape == (2, 1, side, side)
    # the encoder reaches a 1x1 bottleneck, as the paper's unet_256 does at 256 px
    assert len(G.down) == cfg.encoder_depth == {16: 4, 32: 5}[resolution]


def test_paper_sizes_at_256px():
    cfg, G, D = create_models("pix2pix", resolution=256, in_channels=3, channels=3, width=2, d_width=64)
    assert cfg.encoder_depth == 8 and cfg.patch_layers == 3
    d_convs = [m.out_channels for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert d_convs == [64, 128, 256, 512, 1]  # C64-C128-C256-C512, then the patch logits
    strides = [m.stride[0] for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert strides == [2, 2, 2, 1, 1]  # the 70x70 receptive field
    assert D(torch.zeros(1, 3, 256, 256), torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30)
    g_convs = [m.out_channels for m in G.down.modules() if isinstance(m, nn.Conv2d)]
    assert g_convs == [2, 4, 8, 16, 16, 16, 16, 16]  # width x 1, 2, 4, 8, 8, ...
    assert G.dropout_after == (0, 1, 2)  # the innermost three decoder layers, as unet_256


def test_label_map_input_is_one_hot():
    cfg, G, D = create_models("pix2pix", resolution=16, input_classes=5, channels=3, **TINY)
    labels = torch.randint(0, 5, (2, 16, 16))
    b = G(labels)
    assert b.shape == (2, 3, 16, 16)
    assert G.down[0][0].in_channels == 5 and D.features[0].in_channels == 5 + 3
    assert D(labels, b).shape == (2, 1, 6, 6)
    with pytest.raises(ModelConfigError, match="label map of 5 classes"):
        G(torch.rand(2, 1, 16, 16))


def test_bad_inputs_and_configs_are_refused():
    _, G, _ = create_models("pix2pix", resolution=16, in_channels=1, channels=3, **TINY)
    with pytest.raises(ModelConfigError, match=r"\(B, 1, H, W\)"):
        G(torch.rand(2, 3, 16, 16))
    with pytest.raises(ModelConfigError, match="multiples of 16"):
        G(torch.rand(2, 1, 24, 24))
    with pytest.raises(ModelConfigError, match="power of two"):
        Pix2PixConfig(resolution=48)
    with pytest.raises(ModelConfigError, match="norm must be one of"):
        Pix2PixConfig(norm="group")
    with pytest.raises(ModelConfigError, match="dropout"):
        Pix2PixConfig(dropout=1.0)


def test_keep_luma_moves_the_colours_to_the_grey_inputs_light():
    gray = torch.tensor([[[[0.2]]]])
    colour = torch.tensor([0.5, -0.5, 0.1]).reshape(1, 3, 1, 1)  # luma .299*.5 - .587*.5 + .114*.1 = -.1326
    shift = 0.2 - (0.299 * 0.5 - 0.587 * 0.5 + 0.114 * 0.1)
    assert torch.allclose(with_luma(gray, colour).flatten(), torch.tensor([0.5, -0.5, 0.1]) + shift)
    assert with_luma(torch.ones(1, 1, 1, 1), torch.ones(1, 3, 1, 1)).max() == 1  # clamped to the pixel range
    for channels in (3, 4):
        torch.manual_seed(0)
        _, plain, _ = create_models("pix2pix", resolution=16, in_channels=1, channels=channels, **TINY)
        _, G, _ = create_models("pix2pix", resolution=16, in_channels=1, channels=channels, keep_luma=True, **TINY)
        G.load_state_dict(plain.state_dict())  # the same weights: keep_luma adds no parameter
        a = torch.rand(2, 1, 16, 16) - 0.5
        G.eval(), plain.eval()
        out, free = G(a), plain(a)
        luma = sum(w * out[:, i] for i, w in enumerate((0.299, 0.587, 0.114)))
        inside = out[:, :3].abs().amax(1) < 1  # pixels the clamp left alone
        assert inside.float().mean() > 0.5
        assert torch.allclose(luma[inside], a[:, 0][inside], atol=1e-6)  # the light is the input's
        difference = (out[:, 0] - out[:, 1])[inside], (free[:, 0] - free[:, 1])[inside]
        assert torch.allclose(*difference, atol=1e-6)  # and the colour differences G's
        assert torch.equal(out[:, 3:], free[:, 3:])  # alpha is G's own
    for bad in ({"in_channels": 3, "channels": 3}, {"in_channels": 1, "channels": 1}, {"input_classes": 4}):
        with pytest.raises(ModelConfigError, match="keep_luma colours a grey image"):
            Pix2PixConfig(keep_luma=True, **bad)


def test_gray_pairs_train_a_model_that_keeps_the_luma(gray_pairs):
    dataset = PreparedDataset(gray_pairs)
    recipe = Pix2PixRecipe(build_config(str(gray_pairs), "pix2pix", RUN), dataset, torch.device("cpu"),
                           torch.Generator().manual_seed(0))
    assert recipe.G.config.keep_luma
    off = build_config(str(gray_pairs), "pix2pix", {**RUN, "model.keep_luma": False})
    assert not Pix2PixRecipe(off, dataset, torch.device("cpu"), torch.Generator().manual_seed(0)).G.config.keep_luma


def test_any_size_divisible_by_the_depth_works():
    # fully convolutional: a wider image than trained on translates too
    _, G, _ = create_models("pix2pix", resolution=16, in_channels=1, channels=1, **TINY)
    assert G(torch.zeros(1, 1, 32, 48)).shape == (1, 1, 32, 48)


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_eval_mode_is_deterministic(norm):
    torch.manual_seed(0)
    _, G, _ = create_models("pix2pix", resolution=16, in_channels=1, channels=3, norm=norm, **TINY)
    a = torch.rand(4, 1, 16, 16) * 2 - 1
    G.train()
    G(a), G(a)  # batch norm gathers running statistics; dropout makes these differ
    assert not torch.equal(G(a), G(a))  # training mode: dropout is on
    G.eval()
    with torch.no_grad():
        first, second = G(a), G(a)
        alone = G(a[:1])
    assert torch.equal(first, second)
    G.train()  # in training the masks come from the generator given, so a seeded stream repeats them
    assert torch.equal(G(a, torch.Generator().manual_seed(3)), G(a, torch.Generator().manual_seed(3)))
    # no batch statistics in eval: one image's output does not depend on the rest of its batch
    assert torch.allclose(alone, first[:1], atol=1e-6)


def test_registered_as_a_translator_only():
    # MODELS' consumers (sample, metrics, explore) all assume G(z, labels): pix2pix stays out of it
    assert "pix2pix" in TRANSLATORS and "pix2pix" not in MODELS
    cfg, G, _ = create_models("pix2pix", resolution=16, in_channels=1, channels=3, **TINY)
    rebuilt = create_generator("pix2pix", dataclasses.asdict(cfg))  # as export will read it back
    rebuilt.load_state_dict(G.state_dict())


# --- the recipe -------------------------------------------------------------------------------------

QUIET = {"progress": False, "workers": 1}
RUN = {"model.width": 4, "model.d_width": 4, "batch_size": 4, "tick_kimg": 0.008, "device": "cpu"}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return square_photos(tmp_path_factory.mktemp("src") / "photos")


@pytest.fixture(scope="module")
def gray_pairs(photos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "gray"
    prepare_dataset(photos, out, resolution=16, derive="gray", **QUIET)
    return out


class StubG(nn.Module):
    """Always the same output (what G(A) would be), with a parameter so it can be optimised."""

    z_dim = 0

    def __init__(self, out: torch.Tensor):
        super().__init__()
        self.out, self.scale = out, nn.Parameter(torch.ones(()))

    def forward(self, a, generator=None):
        return self.out * self.scale


class StubD(nn.Module):
    """Fixed logits: one table for the real B, another for anything else (the fakes)."""

    def __init__(self, real_b, real_logits, fake_logits):
        super().__init__()
        self.real_b, self.real_logits, self.fake_logits = real_b, real_logits, fake_logits

    def forward(self, a, b):
        return self.real_logits if torch.equal(b, self.real_b) else self.fake_logits


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


@pytest.mark.parametrize("loss", ["nonsaturating", "lsgan"])
def test_losses_match_a_hand_computation(gray_pairs, loss):
    config = build_config(str(gray_pairs), "pix2pix", {**RUN, "loss": loss, "l1_weight": 10})
    dataset = PreparedDataset(gray_pairs)
    recipe = Pix2PixRecipe(config, dataset, torch.device("cpu"), torch.Generator().manual_seed(0))
    a, b = torch.zeros(1, 1, 2, 2), torch.full((1, 3, 2, 2), 0.5)
    fake = torch.tensor([-0.25, 0.5, 1.0, 0.0]).repeat(3).reshape(1, 3, 2, 2)  # |fake - b| = .75 .0 .5 .5
    real_logits, fake_logits = torch.tensor([[[[2.0, -1.0]]]]), torch.tensor([[[[0.5, -3.0]]]])
    recipe.networks = {"G": StubG(fake), "D": StubD(b, real_logits, fake_logits)}
    phases = {p.name: p for p in recipe.phases()}
    assert list(phases) == ["Dmain", "Gmain"]
    batch = recipe.make_batch(phases["Dmain"], (a, b), torch.zeros(1, 0))
    d, d_stats = recipe.loss(phases["Dmain"], batch)
    g, g_stats = recipe.loss(phases["Gmain"], batch)
    if loss == "nonsaturating":  # BCE(l, 1) = softplus(-l), BCE(l, 0) = softplus(l)
        d_real = (_softplus(-2.0) + _softplus(1.0)) / 2
        d_fake = (_softplus(0.5) + _softplus(-3.0)) / 2
        adversarial = (_softplus(-0.5) + _softplus(3.0)) / 2
    else:
        d_real, d_fake = ((2 - 1) ** 2 + (-1 - 1) ** 2) / 2, (0.5**2 + 3.0**2) / 2
        adversarial = ((0.5 - 1) ** 2 + (-3 - 1) ** 2) / 2
    l1 = (0.75 + 0 + 0.5 + 0.5) / 4
    assert d.item() == pytest.approx(0.5 * (d_real + d_fake), rel=1e-6)  # halved, as in the paper
    assert g.item() == pytest.approx(adversarial + 10 * l1, rel=1e-6)
    assert g_stats["G_L1"].item() == pytest.approx(l1) and g_stats["G_adv"].item() == pytest.approx(adversarial, rel=1e-6)
    assert d_stats["D_accuracy"].item() == pytest.approx(0.5 * (0.5 + 0.5))
    g.backward()  # G's loss reaches G through the fakes D's phase kept
    assert recipe.networks["G"].scale.grad is not None


def test_wrong_data_and_settings_are_refused(gray_pairs, photos, tmp_path):
    images = tmp_path / "images"
    prepare_dataset(photos, images, resolution=16, **QUIET)
    with pytest.raises(TrainingError, match="pix2pix learns from pairs"):
        Trainer(build_config(str(images), "pix2pix", RUN), None, progress=False)
    with pytest.raises(TrainingError, match="loss=nonsaturating"):
        Trainer(build_config(str(gray_pairs), "pix2pix", {**RUN, "loss": "hinge"}), None, progress=False)
    with pytest.raises(TrainingError, match="comes from the dataset"):
        Trainer(build_config(str(gray_pairs), "pix2pix", {**RUN, "model.in_channels": 3}), None, progress=False)
    with pytest.raises(TrainingError, match="does not use augment"):
        Trainer(build_config(str(gray_pairs), "pix2pix", {**RUN, "augment": "ada"}), None, progress=False)
    with pytest.raises(ConfigError, match="l1_weight"):
        build_config(str(gray_pairs), "pix2pix", {"l1_weight": -1})


def _cells(picture: Image.Image, size: int, columns: int) -> list[np.ndarray]:
    """The grid's cells, left to right then down, from a whole-factor enlarged image_grid picture."""
    canvas = np.asarray(picture)
    scale = canvas.shape[1] // (columns * (size + 1) + 1)
    canvas = canvas[::scale, ::scale]
    rows = (canvas.shape[0] - 1) // (size + 1)
    return [canvas[1 + r * (size + 1) : 1 + r * (size + 1) + size, 1 + c * (size + 1) : 1 + c * (size + 1) + size]
            for r in range(rows) for c in range(columns)]


@pytest.mark.parametrize("derive_mode", ["gray", "labels:3"])
def test_trains_end_to_end_and_the_grid_is_a_beside_g_of_a_beside_b(photos, tmp_path, derive_mode):
    data = tmp_path / "pairs"
    prepare_dataset(photos, data, resolution=16, derive=derive_mode, **QUIET)
    run = train_gan(data, preset="pix2pix", overrides={**RUN, "kimg": 0.016, "runs_dir": str(tmp_path / "runs")},
                    progress=False).run_dir
    grids = sorted((run / "grids").glob("grid-*.png"))
    assert [g.name for g in grids] == ["grid-0000000.000kimg.png", "grid-0000000.008kimg.png", "grid-0000000.016kimg.png"]
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    trained = [r for r in records if "loss_G" in r]
    assert trained and all(math.isfinite(r["loss_G"]) and math.isfinite(r["G_L1"]) for r in trained)
    assert (run / "reals.png").exists()

    # the grid: 12 pairs as A | G(A) | B, 4 to a row; G(A) is the saved average in eval mode
    dataset = PreparedDataset(data)
    state = ckpt.latest_loadable(run / "checkpoints")[1]
    G = create_generator("pix2pix", state["model_config"])
    G.load_state_dict(state["G_ema"])
    G.eval()
    index = np.sort(np.random.default_rng(0).choice(len(dataset), 12, replace=False))
    labels = derive_mode.startswith("labels")
    a = torch.from_numpy(np.asarray(dataset.a[index]))
    a = a[..., 0].long() if labels else a.permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        expected = to_uint8_images(G(a))
    cells = _cells(Image.open(grids[-1]).convert("RGB"), 16, 12)
    for k in range(12):
        assert np.array_equal(cells[3 * k + 1], expected[k]), k  # G(A)
        assert np.array_equal(cells[3 * k + 2], np.asarray(dataset.b[index[k]])), k  # B
        shown = cells[3 * k]
        if labels:  # each class in its centre's colour, as translate and the label baseline draw it
            classes = np.asarray(dataset.a[index[k], :, :, 0])
            colours = np.asarray(dataset.manifest["derive"]["colours_rgb"], np.uint8)
            assert np.array_equal(shown, colours[classes])
        else:
            assert np.array_equal(shown[..., 0], np.asarray(dataset.a[index[k], :, :, 0]))


def test_resume_equals_an_uninterrupted_run(gray_pairs, tmp_path):
    # batch norm's running statistics, dropout's draws and the learning-rate ramp (over the last half of
    # the budget, from the preset) all have to continue where they stopped
    overrides = {**RUN, "model.norm": "batch", "kimg": 0.032}
    straight = train_gan(gray_pairs, preset="pix2pix", overrides={**overrides, "runs_dir": str(tmp_path / "a")},
                         progress=False).run_dir
    stopped = tmp_path / "b"
    stopped.mkdir()
    trainer = Trainer(build_config(str(gray_pairs), "pix2pix", overrides), stopped, progress=False)
    trainer.add_callback(StopAt(16))
    assert trainer.run() == "patience" and trainer.images_seen == 16
    assert trainer.config.lr_ramp_down == 0.5 and trainer.lr_factor() == 1.0
    train_gan(resume=stopped, progress=False)
    a, b = (ckpt.latest_loadable(run / "checkpoints")[1] for run in (straight, stopped))
    assert a["images_seen"] == b["images_seen"] == 32 and a["step"] == b["step"] == 8
    assert_same_checkpoints(a, b)  # Adam's moments and step counts continue, as does the learning-rate ramp


def test_a_paired_dataset_trains_pix2pix_without_a_preset(gray_pairs, capsys):
    from ganforge.api import train_gan
    from ganforge.train.defaults import choose_defaults
    from ganforge.train.recipes import RecipeError

    config = train_gan(gray_pairs, dry_run=True, progress=True, overrides={"device": "cpu", "batch_size": 8}).config
    assert config.preset == "pix2pix" and config.model["name"] == "pix2pix"
    assert "12 pairs at 16 px" in capsys.readouterr().err
    assert choose_defaults("unpaired", 100, 32).preset == "cyclegan"  # two unpaired sets: no pix2pix
    # grey A and colour B: no identity loss (an image cannot equal its translation in other channels)
    assert choose_defaults("unpaired", 100, 32, same_channels=False).overrides == {"identity_weight": 0.0}
    with pytest.raises(RecipeError, match="no default model"):
        choose_defaults("mystery", 100, 32)


def test_training_on_random_crops_builds_the_network_for_the_crop(gray_pairs, photos, tmp_path):
    run = train_gan(gray_pairs, preset="pix2pix", overrides={**RUN, "kimg": 0.008, "crop": 8,
                                                             "runs_dir": str(tmp_path / "runs")}, progress=False).run_dir
    state = ckpt.latest_loadable(run / "checkpoints")[1]
    assert state["model_config"]["resolution"] == 8 and state["config"]["crop"] == 8
    grid = Image.open(sorted((run / "grids").glob("grid-*.png"))[-1])
    assert grid.size == (545, 140)  # 8 px centre crops: 3 rows of 4 triples, (12 x 9 + 1) x (3 x 9 + 1) enlarged 5 times
    with pytest.raises(Exception, match="larger than the dataset"):
        train_gan(gray_pairs, preset="pix2pix", overrides={**RUN, "crop": 32}, dry_run=True, progress=False)
    images = tmp_path / "images"
    prepare_dataset(photos, images, resolution=16, **QUIET)
    with pytest.raises(Exception, match="crop=8 is for image-to-image"):
        train_gan(images, overrides={"crop": 8, "device": "cpu"}, dry_run=True, progress=False)
