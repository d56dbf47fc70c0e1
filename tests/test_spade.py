"""SPADE: shapes, the SPADE layer's dependence on the map (and where), the hinge and feature-matching losses
by hand, deterministic eval, refusals, training end to end and resume."""

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
from ganforge.export import export_generator
from ganforge.models import MODELS, TRANSLATORS, ModelConfigError, create_generator, create_models
from ganforge.models.spade import SPADE, SPADEConfig
from ganforge.train import checkpoint as ckpt
from ganforge.train.config import ConfigError, build_config
from ganforge.train.loop import Trainer, TrainingError
from ganforge.train.recipes.spade import SPADERecipe
from ganforge.translator import Translator

TINY = {"width": 4, "hidden": 4, "d_width": 4, "d_layers": 3}


def _labels(batch: int, size: int, k: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, k, (batch, size, size), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("resolution,steps,channels", [(16, 1, 1), (16, 1, 4), (32, 2, 3), (64, 3, 3)])
def test_generator_and_multiscale_discriminator_shapes(resolution, steps, channels):
    cfg, G, D = create_models("spade", resolution=resolution, channels=channels, input_classes=5, **TINY)
    a = _labels(2, resolution, 5)
    b = G(a)
    assert b.shape == (2, channels, resolution, resolution)
    assert b.min() >= -1 and b.max() <= 1  # tanh
    assert cfg.steps == steps and G.size_multiple == 2**steps and G.scale == 1 and G.z_dim == 0
    assert len(G.ups) == steps  # one block per upsampling, from an 8x8 start map
    assert G.fc.out_channels == 4 * min(2**steps, 16) and G.to_image.in_channels == 4
    outputs = D(a, b)
    assert len(outputs) == 2 and all(len(scale) == 3 + 1 for scale in outputs)  # d_layers convs, then the logits
    assert outputs[0][0].shape[1] == 4 and outputs[0][-1].shape[1] == 1
    assert outputs[1][-1].shape[-1] < outputs[0][-1].shape[-1]  # the second scale sees the pair halved
    assert D.scales[0].layers[0][0].in_channels == 5 + channels  # (one-hot map, image)


def test_paper_sizes():
    # width 4 stands in for the paper's 64 (ngf), to keep the test fast: the same multiples of it
    cfg, G, D = create_models("spade", resolution=256, input_classes=8, width=4, d_width=64, hidden=128)
    assert cfg.steps == 5 and cfg.d_layers == 4 and cfg.d_scales == 2  # an 8x8 start, as the paper's "normal"
    widths = [G.head.conv_0.out_channels] + [block.conv_1.out_channels for block in G.ups]
    assert widths == [4 * f for f in (16, 16, 8, 4, 2, 1)]  # 16nf at 8x8 and 16x16, then halving to nf
    assert G.head.norm_0.shared[0].out_channels == 128
    d_convs = [m.out_channels for m in D.scales[0].modules() if isinstance(m, nn.Conv2d)]
    assert d_convs == [64, 128, 256, 512, 1]
    # spectral norm on G's block convs and D's middle convs, as the paper
    assert hasattr(G.head.conv_0, "parametrizations") and hasattr(G.ups[1].conv_s, "parametrizations")
    assert not hasattr(G.to_image, "parametrizations")
    assert hasattr(D.scales[0].layers[1][0], "parametrizations") and not hasattr(D.scales[0].layers[0][0], "parametrizations")


def test_bad_inputs_and_configs_are_refused():
    _, G, D = create_models("spade", resolution=16, input_classes=3, **TINY)
    with pytest.raises(ModelConfigError, match="label map of 3 classes.*--derive labels:3"):
        G(torch.rand(2, 1, 16, 16))
    with pytest.raises(ModelConfigError, match=r"values must be 0 \.\. 2, got 3 \.\. 3"):
        G(torch.full((1, 16, 16), 3))
    with pytest.raises(ModelConfigError, match="multiples of 2"):
        G(torch.zeros(1, 16, 17, dtype=torch.long))
    with pytest.raises(ModelConfigError, match="power of two"):
        SPADEConfig(resolution=48)
    with pytest.raises(ModelConfigError, match="norm must be one of"):
        SPADEConfig(norm="group")
    with pytest.raises(ModelConfigError, match="input_classes"):
        SPADEConfig(input_classes=1)


def test_any_size_divisible_by_the_start_map_works():
    _, G, _ = create_models("spade", resolution=32, input_classes=3, **TINY)
    assert G(torch.zeros(1, 32, 48, dtype=torch.long)).shape == (1, 3, 32, 48)


def test_spade_layer_scale_and_shift_come_from_the_map_where_it_changed():
    torch.manual_seed(0)
    layer = SPADE(channels=6, classes=4, hidden=8, norm="instance")
    x = torch.randn(1, 6, 16, 16)
    m = _labels(1, 16, 4)
    changed = m.clone()
    changed[:, 4:8, 4:8] = (changed[:, 4:8, 4:8] + 1) % 4  # another class in one 4x4 region
    one_hot = lambda labels: nn.functional.one_hot(labels, 4).permute(0, 3, 1, 2).float()  # noqa: E731
    with torch.no_grad():
        before, after = layer(x, one_hot(m)), layer(x, one_hot(changed))
    difference = (after - before).abs().sum(1)[0]  # (16, 16)
    near = torch.zeros(16, 16, dtype=torch.bool)
    near[2:10, 2:10] = True  # two 3x3 convs reach 2 pixels beyond the region
    assert difference[4:8, 4:8].min() > 0  # gamma and beta changed where the map did ...
    assert torch.all(difference[~near] == 0)  # ... and nowhere further than the convs reach
    # the map is resized to x's size: a half-size x is modulated by the map's nearest pixels
    small = torch.randn(1, 6, 8, 8)
    with torch.no_grad():
        assert not torch.equal(layer(small, one_hot(m)), layer(small, one_hot(changed)))


def test_generator_output_changes_mostly_where_the_map_changed():
    torch.manual_seed(0)
    _, G, _ = create_models("spade", resolution=32, input_classes=4, norm="batch", width=8, hidden=8)
    G.eval()  # batch norm's running averages: no statistic spreads a change across the picture
    m = _labels(1, 32, 4)
    changed = m.clone()
    changed[:, :16, :16] = (changed[:, :16, :16] + 2) % 4
    with torch.no_grad():
        difference = (G(changed) - G(m)).abs().mean(1)[0]  # (32, 32)
    inside = difference[:16, :16].mean()
    outside = torch.cat([difference[16:].flatten(), difference[:16, 16:].flatten()]).mean()
    assert inside > 0 and inside > 5 * outside, (inside, outside)


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_eval_mode_is_deterministic(norm):
    torch.manual_seed(0)
    _, G, _ = create_models("spade", resolution=16, input_classes=3, norm=norm, **TINY)
    a = _labels(4, 16, 3)
    G.train()
    G(a), G(a)  # batch norm gathers running statistics; spectral norm's power iteration moves
    G.eval()
    with torch.no_grad():
        first, second = G(a), G(a)
        alone = G(a[:1])
    assert torch.equal(first, second)
    assert torch.allclose(alone, first[:1], atol=1e-6)  # one image's output does not depend on its batch


def test_registered_as_a_translator_only():
    assert "spade" in TRANSLATORS and "spade" not in MODELS
    cfg, G, _ = create_models("spade", resolution=16, input_classes=3, **TINY)
    G(_labels(2, 16, 3))  # move batch norm's statistics and spectral norm's vectors off their start
    G.eval()
    rebuilt = create_generator("spade", json.loads(json.dumps(dataclasses.asdict(cfg))))  # as export reads it back
    rebuilt.load_state_dict(G.state_dict())
    rebuilt.eval()
    a = _labels(2, 16, 3, seed=1)
    with torch.no_grad():
        assert torch.equal(rebuilt(a), G(a))


# --- the recipe -------------------------------------------------------------------------------------

QUIET = {"progress": False, "workers": 1}
RUN = {"model.width": 4, "model.hidden": 4, "model.d_width": 4, "batch_size": 4, "tick_kimg": 0.008, "device": "cpu"}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return square_photos(tmp_path_factory.mktemp("src") / "photos")


@pytest.fixture(scope="module")
def label_pairs(photos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "labels"
    prepare_dataset(photos, out, resolution=16, derive="labels:3", **QUIET)
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
    """Fixed outputs per scale: one set for the real B, another for anything else (the fakes); the fakes'
    features are tied to the fake image, so G's loss has a gradient."""

    def __init__(self, real_b, real, fake):
        super().__init__()
        self.real_b, self.real, self.fake = real_b, real, fake

    def forward(self, a, b):
        if torch.equal(b, self.real_b):
            return self.real
        return [[t + 0 * b.sum() for t in scale] for scale in self.fake]


def test_losses_match_a_hand_computation(label_pairs):
    config = build_config(str(label_pairs), "spade", {**RUN, "fm_weight": 3})
    recipe = SPADERecipe(config, PreparedDataset(label_pairs), torch.device("cpu"), torch.Generator().manual_seed(0))
    a, b = torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 3, 2, 2), 0.5)
    t = torch.tensor
    # two scales; each: one feature map, then the logits
    real = [[t([[[[1.0, 2.0]]]]), t([[[[2.0, -1.0]]]])],
            [t([[[[0.0]], [[4.0]]]]), t([[[[0.5, 3.0, -0.5]]]])]]
    fake = [[t([[[[1.5, 0.0]]]]), t([[[[0.5, -3.0]]]])],
            [t([[[[1.0]], [[1.0]]]]), t([[[[-2.0, 1.0, 0.0]]]])]]
    recipe.networks = {"G": StubG(torch.zeros(1, 3, 2, 2)), "D": StubD(b, real, fake)}
    phases = {p.name: p for p in recipe.phases()}
    assert list(phases) == ["Dmain", "Gmain"]
    batch = recipe.make_batch(phases["Dmain"], (a, b), torch.zeros(1, 0))
    d, d_stats = recipe.loss(phases["Dmain"], batch)
    g, g_stats = recipe.loss(phases["Gmain"], batch)
    relu = lambda x: max(x, 0.0)  # noqa: E731
    # hinge: mean relu(1 - real) + mean relu(1 + fake), per scale; then the mean of the scales
    d0 = (relu(1 - 2) + relu(1 + 1)) / 2 + (relu(1 + 0.5) + relu(1 - 3)) / 2  # 1.0 + 0.75
    d1 = (relu(1 - 0.5) + relu(1 - 3) + relu(1 + 0.5)) / 3 + (relu(1 - 2) + relu(1 + 1) + relu(1 + 0)) / 3  # 2/3 + 1
    assert d.item() == pytest.approx((d0 + d1) / 2, rel=1e-6)
    adversarial = (-(0.5 - 3.0) / 2 + -(-2.0 + 1.0 + 0.0) / 3) / 2  # -mean(fake logits), mean of the scales
    fm0 = (abs(1.5 - 1.0) + abs(0.0 - 2.0)) / 2  # the layers before the logits: here one per scale
    fm1 = (abs(1.0 - 0.0) + abs(1.0 - 4.0)) / 2
    matching = (fm0 + fm1) / 2
    assert g_stats["G_adv"].item() == pytest.approx(adversarial, rel=1e-6)
    assert g_stats["G_FM"].item() == pytest.approx(matching, rel=1e-6)
    assert g.item() == pytest.approx(adversarial + 3 * matching, rel=1e-6)
    assert g_stats["G_L1"].item() == pytest.approx(0.5)  # |0 - 0.5|, logged only
    assert d_stats["D_accuracy"].item() == pytest.approx(((0.5 + 0.5) / 2 + (2 / 3 + 1 / 3) / 2) / 2)
    g.backward()  # G's loss reaches G through the fakes D's phase kept
    assert recipe.networks["G"].scale.grad is not None


def test_wrong_data_and_settings_are_refused(label_pairs, photos, tmp_path):
    images, gray = tmp_path / "images", tmp_path / "gray"
    prepare_dataset(photos, images, resolution=16, **QUIET)
    prepare_dataset(photos, gray, resolution=16, derive="gray", **QUIET)
    with pytest.raises(TrainingError, match="learns from pairs.*--derive labels:8"):
        Trainer(build_config(str(images), "spade", RUN), None, progress=False)
    with pytest.raises(TrainingError, match="derived with --derive gray.*--preset pix2pix"):
        Trainer(build_config(str(gray), "spade", RUN), None, progress=False)
    with pytest.raises(TrainingError, match="loss=hinge"):
        Trainer(build_config(str(label_pairs), "spade", {**RUN, "loss": "lsgan"}), None, progress=False)
    with pytest.raises(TrainingError, match="comes from the dataset"):
        Trainer(build_config(str(label_pairs), "spade", {**RUN, "model.input_classes": 3}), None, progress=False)
    with pytest.raises(TrainingError, match="does not use augment"):
        Trainer(build_config(str(label_pairs), "spade", {**RUN, "augment": "ada"}), None, progress=False)
    with pytest.raises(ConfigError, match="fm_weight"):
        build_config(str(label_pairs), "spade", {"fm_weight": -1})


def _cells(picture: Image.Image, size: int, columns: int) -> list[np.ndarray]:
    """The grid's cells, left to right then down, from a whole-factor enlarged image_grid picture."""
    canvas = np.asarray(picture)
    scale = canvas.shape[1] // (columns * (size + 1) + 1)
    canvas = canvas[::scale, ::scale]
    rows = (canvas.shape[0] - 1) // (size + 1)
    return [canvas[1 + r * (size + 1) : 1 + r * (size + 1) + size, 1 + c * (size + 1) : 1 + c * (size + 1) + size]
            for r in range(rows) for c in range(columns)]


def test_trains_end_to_end_and_the_grid_is_map_beside_g_beside_b(label_pairs, tmp_path):
    run = train_gan(label_pairs, preset="spade", overrides={**RUN, "kimg": 0.016, "runs_dir": str(tmp_path / "runs")},
                    progress=False).run_dir
    grids = sorted((run / "grids").glob("grid-*.png"))
    assert len(grids) == 3
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    trained = [r for r in records if "loss_G" in r]
    assert trained and all(math.isfinite(r["loss_G"]) and math.isfinite(r["G_FM"]) for r in trained)
    config = build_config(str(label_pairs), "spade")
    assert (config.loss, config.lr_g, config.lr_d, config.beta1, config.beta2, config.fm_weight) == (
        "hinge", 1e-4, 4e-4, 0.0, 0.999, 10.0)  # the paper's TTUR

    dataset = PreparedDataset(label_pairs)
    state = ckpt.latest_loadable(run / "checkpoints")[1]
    assert state["model_name"] == "spade" and state["model_config"]["input_classes"] == 3
    G = create_generator("spade", state["model_config"])
    G.load_state_dict(state["G_ema"])
    G.eval()
    index = np.sort(np.random.default_rng(0).choice(len(dataset), 12, replace=False))
    a = torch.from_numpy(np.asarray(dataset.a[index]))[..., 0].long()
    with torch.no_grad():
        expected = to_uint8_images(G(a))
    cells = _cells(Image.open(grids[-1]).convert("RGB"), 16, 12)
    for k in range(12):
        assert np.array_equal(cells[3 * k + 1], expected[k]), k  # G(A), in eval mode
        assert np.array_equal(cells[3 * k + 2], np.asarray(dataset.b[index[k]])), k  # B
        classes = np.asarray(dataset.a[index[k], :, :, 0])
        for c in np.unique(classes):  # the map: each class one colour
            assert len(np.unique(cells[3 * k][classes == c], axis=0)) == 1

    # exported, the translator paints the same pixels, and pads a map of another size to the multiple of 2
    translator = Translator.from_pretrained(export_generator(run), device="cpu")
    assert (translator.scale, translator.size_multiple, translator.input.kind) == (1, 2, "labels")
    assert np.array_equal(translator.translate_batch(np.asarray(dataset.a[index])), expected)
    assert translator.translate_array(np.zeros((15, 21), np.uint8)).shape == (15, 21, 3)


def test_resume_equals_an_uninterrupted_run(label_pairs, tmp_path):
    # batch norm's running statistics, spectral norm's power-iteration vectors, Adam's moments and the
    # learning-rate ramp (over the last half of the budget, from the preset) all continue where they stopped
    overrides = {**RUN, "kimg": 0.032}
    straight = train_gan(label_pairs, preset="spade", overrides={**overrides, "runs_dir": str(tmp_path / "a")},
                         progress=False).run_dir
    stopped = tmp_path / "b"
    stopped.mkdir()
    trainer = Trainer(build_config(str(label_pairs), "spade", overrides), stopped, progress=False)
    trainer.add_callback(StopAt(16))
    assert trainer.run() == "patience" and trainer.images_seen == 16
    train_gan(resume=stopped, progress=False)
    a, b = (ckpt.latest_loadable(run / "checkpoints")[1] for run in (straight, stopped))
    assert a["images_seen"] == b["images_seen"] == 32 and a["step"] == b["step"] == 8
    vectors = [key for key in a["networks"]["G"] if key.endswith("_u")]
    assert vectors and any(key.endswith("running_mean") for key in a["networks"]["G"])
    assert_same_checkpoints(a, b)
