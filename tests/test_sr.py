"""Super-resolution: the SRResNet/RRDB generator and SRGAN discriminator shapes, the sr recipe's losses by hand
with stub networks, the warm-up -> GAN switch by images shown (and across a resume), refusals, defaults."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from resuming import StopAt, assert_same_checkpoints, square_photos
from torch import nn

from ganforge.api import train_gan
from ganforge.data.format import PreparedDataset
from ganforge.data.prepare import prepare_dataset
from ganforge.models import MODELS, TRANSLATORS, ModelConfigError, create_generator, create_models
from ganforge.models.srresnet import SRResNetConfig
from ganforge.train import checkpoint as ckpt
from ganforge.train.config import ConfigError, build_config
from ganforge.train.loop import Trainer, TrainingError
from ganforge.train.recipes import sr as sr_recipe
from ganforge.train.recipes.sr import SRRecipe, relativistic_d_loss, relativistic_g_loss, to_feature_input

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TINY = {"width": 4, "blocks": 2, "growth": 4, "d_width": 4, "d_dense": 8}


@pytest.mark.parametrize("block", ["residual", "rrdb"])
@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("in_channels,channels", [(3, 3), (1, 1), (4, 4), (1, 3)])
def test_output_is_scale_times_the_input_and_d_gives_one_logit_per_image(block, scale, in_channels, channels):
    cfg, G, D = create_models("srresnet", resolution=16, scale=scale, block=block, in_channels=in_channels,
                              channels=channels, **TINY)
    a = torch.rand(2, in_channels, 16 // scale, 16 // scale) * 2 - 1
    b = G(a)
    assert b.shape == (2, channels, 16, 16)
    assert D(b).shape == (2,)
    assert G.scale == scale and G.size_multiple == 1 and G.z_dim == 0
    G.eval()
    with torch.no_grad():
        odd = G(torch.rand(1, in_channels, 5, 7) * 2 - 1)  # fully convolutional: any size, not only the trained one
    assert odd.shape == (1, channels, 5 * scale, 7 * scale)
    assert odd.min() >= -1 and odd.max() <= 1  # clamped in eval


def test_paper_shapes():
    cfg, G, D = create_models("srresnet", resolution=96, scale=4)  # SRGAN: 16 blocks of 64, 96 px crops
    assert len(G.body) == 16 + 2 and G.head[0].kernel_size == (9, 9) and G.tail.kernel_size == (9, 9)
    shuffles = [m for m in G.upsample if isinstance(m, nn.PixelShuffle)]
    assert len(shuffles) == 2  # two x2 sub-pixel stages
    widths = [m.out_channels for m in D.features if isinstance(m, nn.Conv2d)]
    strides = [m.stride[0] for m in D.features if isinstance(m, nn.Conv2d)]
    assert widths == [64, 64, 128, 128, 256, 256, 512, 512] and strides == [1, 2] * 4
    assert D.side == 6 and D.head[1].in_features == 512 * 6 * 6 and D.head[1].out_features == 1024
    assert not any(isinstance(m, nn.BatchNorm2d) for m in G.modules())  # norm=none by default: a local model
    _, rrdb, _ = create_models("srresnet", resolution=32, scale=4, block="rrdb", blocks=1, growth=32)
    dense = rrdb.body[0].dense[0]
    assert [c.in_channels for c in dense.convs] == [64, 96, 128, 160, 192] and dense.convs[-1].out_channels == 64
    assert rrdb.body[0].res_scale == 0.2 and dense.res_scale == 0.2


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_eval_is_deterministic_and_per_image(norm):
    torch.manual_seed(0)
    _, G, _ = create_models("srresnet", resolution=16, scale=2, norm=norm, **TINY)
    a = torch.rand(4, 3, 8, 8) * 2 - 1
    G.train()
    G(a)  # batch norm gathers running statistics
    G.eval()
    with torch.no_grad():
        first, second, alone = G(a), G(a), G(a[:1])
    assert torch.equal(first, second)
    assert torch.allclose(alone, first[:1], atol=1e-6)  # no batch statistics at inference


def test_no_norm_makes_the_model_local():
    # a pixel of A changes only the output pixels within G's receptive field: what makes tiling exact
    _, G, _ = create_models("srresnet", resolution=16, scale=2, **TINY)
    G.eval()
    a = torch.rand(1, 3, 24, 24) * 2 - 1
    changed = a.clone()
    changed[:, :, 0, 0] = -changed[:, :, 0, 0]
    with torch.no_grad():
        difference = (G(a) - G(changed)).abs().sum(dim=(0, 1))  # (48, 48)
    assert difference[:2, :2].sum() > 0 and difference[30:, 30:].sum() == 0


def test_bicubic_skip_starts_as_bicubic_upscaling():
    _, G, _ = create_models("srresnet", resolution=16, scale=4, input_skip="bicubic", **TINY)
    a = torch.rand(2, 3, 4, 4) * 1.6 - 0.8
    expected = F.interpolate(a, scale_factor=4, mode="bicubic", align_corners=False)
    assert torch.allclose(G(a), expected, atol=1e-6)  # the tail starts at zero


def test_bad_configs_and_inputs_are_refused():
    with pytest.raises(ModelConfigError, match="scale must be 2 or 4"):
        SRResNetConfig(scale=3)
    with pytest.raises(ModelConfigError, match="not a multiple of the scale"):
        SRResNetConfig(resolution=50, scale=4)
    with pytest.raises(ModelConfigError, match="rrdb has no batch norm"):
        SRResNetConfig(block="rrdb", norm="batch")
    with pytest.raises(ModelConfigError, match="same channels"):
        SRResNetConfig(in_channels=1, channels=3, input_skip="bicubic")
    with pytest.raises(ModelConfigError, match="input_skip must be"):
        SRResNetConfig(input_skip="nearest")
    _, G, D = create_models("srresnet", resolution=16, scale=4, in_channels=1, channels=1, **TINY)
    with pytest.raises(ModelConfigError, match=r"\(B, 1, H, W\)"):
        G(torch.rand(1, 3, 4, 4))
    with pytest.raises(ModelConfigError, match="fix the size"):
        D(torch.rand(1, 1, 32, 32))


def test_registered_as_a_translator_and_rebuilt_from_its_config():
    assert "srresnet" in TRANSLATORS and "srresnet" not in MODELS
    cfg, G, _ = create_models("srresnet", resolution=16, scale=4, **TINY)
    rebuilt = create_generator("srresnet", dataclasses.asdict(cfg))  # as export reads it back
    rebuilt.load_state_dict(G.state_dict())
    a = torch.rand(1, 3, 4, 4)
    assert torch.equal(rebuilt(a), G(a))


# --- the recipe -------------------------------------------------------------------------------------

QUIET = {"progress": False, "workers": 1}
RUN = {**{f"model.{k}": v for k, v in TINY.items()}, "batch_size": 4, "tick_kimg": 0.004, "device": "cpu"}


class StubFeatures(nn.Module):
    """phi(x) = 2 x, averaged over 2x2 blocks: a feature map the loss can be computed by hand from."""

    def forward(self, x):
        return 2 * F.avg_pool2d(x, 2)


@pytest.fixture
def stub_features(monkeypatch):
    """The seam: the recipe's feature network replaced, so tests need neither the Inception weights nor its time."""
    calls = []

    def load(device, resolution):
        calls.append(resolution)
        return StubFeatures()

    monkeypatch.setattr(sr_recipe, "load_feature_network", load)
    return calls


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return square_photos(tmp_path_factory.mktemp("src") / "photos")


@pytest.fixture(scope="module")
def x4_pairs(photos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "x4"
    prepare_dataset(photos, out, resolution=16, derive="downscale:4", **QUIET)
    return out


class StubG(nn.Module):
    z_dim = 0

    def __init__(self, out: torch.Tensor):
        super().__init__()
        self.out, self.scale = out, nn.Parameter(torch.ones(()))

    def forward(self, a):
        return self.out * self.scale


class StubD(nn.Module):
    """Fixed logits (B,): one vector for the real B, another for anything else."""

    def __init__(self, real_b, real_logits, fake_logits):
        super().__init__()
        self.real_b, self.real_logits, self.fake_logits = real_b, real_logits, fake_logits

    def forward(self, b):
        return self.real_logits if torch.equal(b, self.real_b) else self.fake_logits


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def _recipe(data, overrides=None) -> SRRecipe:
    config = build_config(str(data), "sr", {**RUN, **(overrides or {})})
    return SRRecipe(config, PreparedDataset(data), torch.device("cpu"), torch.Generator().manual_seed(0))


def test_relativistic_losses_match_a_hand_computation():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])  # means 0.5 and -1.25
    # BCE(l, 1) = softplus(-l), BCE(l, 0) = softplus(l); real - mean(fake) = 3.25, 0.25; fake - mean(real) = 0, -3.5
    d = 0.5 * ((_softplus(-3.25) + _softplus(-0.25)) / 2 + (_softplus(0.0) + _softplus(-3.5)) / 2)
    g = 0.5 * ((_softplus(3.25) + _softplus(0.25)) / 2 + (_softplus(-0.0) + _softplus(3.5)) / 2)
    assert relativistic_d_loss(real, fake).item() == pytest.approx(d, rel=1e-6)
    assert relativistic_g_loss(real, fake).item() == pytest.approx(g, rel=1e-6)


def test_feature_input_is_the_fid_scaling():
    x = torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 1, 3)  # uint8 0, 127.5, 255 -> (u - 128) / 128
    assert torch.allclose(to_feature_input(x), torch.tensor([-1.0, -0.5 / 128, 127 / 128]).expand(1, 3, 1, 3))
    rgba = torch.rand(1, 4, 2, 2)
    assert torch.equal(to_feature_input(rgba), to_feature_input(rgba[:, :3]))  # alpha left to the pixel loss


def test_losses_of_both_periods_match_a_hand_computation(x4_pairs, stub_features):
    recipe = _recipe(x4_pairs, {"pixel_weight": 0.5, "feature_weight": 2.0, "adversarial_weight": 0.25,
                                "warmup_kimg": 0.008})
    assert stub_features  # loaded once, at construction, because feature_weight > 0
    a, b = torch.zeros(2, 3, 1, 1), torch.full((2, 3, 4, 4), 0.5)
    fake = torch.full((2, 3, 4, 4), 0.25)
    fake[:, :, :2] = 1.0  # |fake - b| = 0.5 on half the pixels, 0.25 on the other half
    real_logits, fake_logits = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    recipe.networks = {"G": StubG(fake), "D": StubD(b, real_logits, fake_logits)}
    phases = {p.name: p for p in recipe.phases()}
    assert list(phases) == ["Dmain", "Gmain"] and phases["Dmain"].start_kimg == 0.008
    pixel = (0.5 + 0.25) / 2
    # phi = 2 avg_pool(2) of the FID scaling: each 2x2 block averages one kind of row, |diff| x 2 x 127.5/128
    feature = 2 * (127.5 / 128) * pixel

    recipe.step_plan(0, 0)  # images shown before the step: 0 < 8, the warm-up
    assert not recipe.gan_period
    batch = recipe.make_batch(phases["Gmain"], (a, b), torch.zeros(2, 0))
    g, stats = recipe.loss(phases["Gmain"], batch)  # no Dmain ran: G draws its own fakes
    assert g.item() == pytest.approx(pixel) and set(stats) == {"loss_G", "G_pixel"}

    assert recipe.step_plan(2, 8) == (4, ("G",))  # the first GAN step restarts G's Adam
    assert recipe.step_plan(3, 12) == (4, ())
    d, d_stats = recipe.loss(phases["Dmain"], batch)
    g, g_stats = recipe.loss(phases["Gmain"], batch)
    adversarial = relativistic_g_loss(real_logits, fake_logits).item()
    assert d.item() == pytest.approx(relativistic_d_loss(real_logits, fake_logits).item())
    assert g_stats["G_pixel"].item() == pytest.approx(pixel)
    assert g_stats["G_feature"].item() == pytest.approx(feature, rel=1e-6)
    assert g_stats["G_adv"].item() == pytest.approx(adversarial, rel=1e-6)
    assert g.item() == pytest.approx(0.5 * pixel + 2.0 * feature + 0.25 * adversarial, rel=1e-6)
    # both reals above the mean fake (-1.25), one fake of two below the mean real (0.5)
    assert d_stats["D_accuracy"].item() == pytest.approx(0.5 * (1.0 + 0.5))
    g.backward()  # G's loss reaches G through the fakes D's phase kept
    assert recipe.networks["G"].scale.grad is not None


def test_without_feature_loss_the_network_is_not_loaded(x4_pairs, stub_features):
    recipe = _recipe(x4_pairs, {"feature_weight": 0})
    assert recipe.features is None and not stub_features


def test_missing_inception_weights_or_too_small_pairs_are_said_early(photos, x4_pairs, monkeypatch, tmp_path):
    with pytest.raises(TrainingError, match="at least 19 px"):  # 16 px: nothing left after Inception's stem
        Trainer(build_config(str(x4_pairs), "sr", RUN), None, progress=False)
    square_photos(tmp_path / "big", count=4, size=32)
    prepare_dataset(tmp_path / "big", tmp_path / "x4-32", resolution=32, derive="downscale:4", **QUIET)
    monkeypatch.setenv("GANFORGE_INCEPTION", str(tmp_path / "missing.pt"))
    with pytest.raises(TrainingError, match=r"(?s)Inception weights.*download: https://.*feature_weight=0"):
        Trainer(build_config(str(tmp_path / "x4-32"), "sr", RUN), None, progress=False)


def test_wrong_data_and_settings_are_refused(photos, x4_pairs, tmp_path, stub_features):
    images, gray = tmp_path / "images", tmp_path / "gray"
    prepare_dataset(photos, images, resolution=16, **QUIET)
    prepare_dataset(photos, gray, resolution=16, derive="gray", **QUIET)
    refusals = [(images, {}, "derive downscale:4"), (gray, {}, "enlarges 2 or 4 times"),
                (x4_pairs, {"loss": "hinge"}, "relativistic average"), (x4_pairs, {"model.scale": 2}, "comes from"),
                (x4_pairs, {"augment": "ada"}, "does not use augment"), (x4_pairs, {"model.name": "pix2pix", "recipe": "sr"},
                                                                      "trains model srresnet")]
    for data, overrides, message in refusals:
        with pytest.raises(TrainingError, match=message):
            Trainer(build_config(str(data), "sr", {**RUN, **overrides}), None, progress=False)
    with pytest.raises(ConfigError, match="cannot be negative"):
        build_config(str(x4_pairs), "sr", {"warmup_kimg": -1})


def test_a_downscaled_dataset_trains_sr_without_a_preset(x4_pairs, capsys):
    config = train_gan(x4_pairs, dry_run=True, overrides={"device": "cpu", "batch_size": 4}).config
    assert config.preset == "sr" and config.model["name"] == "srresnet"
    assert "12 pairs at 16 px whose A is B made smaller" in capsys.readouterr().err


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_the_gan_period_starts_at_warmup_kimg_and_previews_show_a_g_of_a_and_b(x4_pairs, tmp_path, stub_features):
    run = train_gan(x4_pairs, preset="sr", overrides={**RUN, "kimg": 0.032, "warmup_kimg": 0.016,
                                                      "runs_dir": str(tmp_path / "runs")}, progress=False).run_dir
    ticks = [r for r in _records(run) if r["tick"] > 0]  # one step of 4 images each
    assert [r["images_seen"] for r in ticks] == list(range(4, 36, 4))
    for r in ticks:  # the step that starts with 16 images shown is the first of the GAN period
        gan = r["images_seen"] - 4 >= 16
        assert ("loss_D" in r) == gan and ("G_adv" in r) == gan and ("G_feature" in r) == gan, r
        assert r["gan_period"] == float(gan) and math.isfinite(r["loss_G"])
    state = ckpt.latest_loadable(run / "checkpoints")[1]
    adam_steps = {name: {int(s["step"]) for s in opt["state"].values()} for name, opt in state["optimizers"].items()}
    assert adam_steps == {"G": {4}, "D": {4}}  # G's Adam restarted at the switch; D only ever trained after it
    # the grid: 12 pairs as A (each pixel 4x4) | G(A) | B
    grid = Image.open(sorted((run / "grids").glob("grid-*.png"))[-1])
    columns, rows = 3 * 4, 3
    scale = grid.width // (columns * 17 + 1)
    assert grid.size == ((columns * 17 + 1) * scale, (rows * 17 + 1) * scale)
    assert (run / "reals.png").exists()


@pytest.mark.parametrize("stop_at", [8, 16, 24], ids=["in-warm-up", "at-the-switch", "in-gan-period"])
def test_resume_equals_an_uninterrupted_run_across_the_switch(x4_pairs, tmp_path, stub_features, stop_at):
    overrides = {**RUN, "kimg": 0.032, "warmup_kimg": 0.016, "tick_kimg": 0.008}
    straight = train_gan(x4_pairs, preset="sr", overrides={**overrides, "runs_dir": str(tmp_path / "a")},
                         progress=False).run_dir
    stopped = tmp_path / "b"
    stopped.mkdir()
    trainer = Trainer(build_config(str(x4_pairs), "sr", overrides), stopped, progress=False)
    trainer.add_callback(StopAt(stop_at))
    assert trainer.run() == "patience" and trainer.images_seen == stop_at
    train_gan(resume=stopped, progress=False)
    a, b = (ckpt.latest_loadable(run / "checkpoints")[1] for run in (straight, stopped))
    assert a["images_seen"] == b["images_seen"] == 32 and a["step"] == b["step"] == 8
    assert_same_checkpoints(a, b)  # Adam's moments and step counts, restarted once at the switch in both
    assert [r.get("gan_period") for r in _records(straight)] == [r.get("gan_period") for r in _records(stopped)]


@pytest.mark.slow
def test_the_real_inception_features_train_the_upscaler(x4_pairs):
    """With the FID weights: 64 px gives the documented 12x12x192 map, pre-activation (negative values too),
    and the feature loss's gradient reaches the image."""
    from ganforge.models.inception import InceptionFeatures, locate_inception, read_weights

    phi = InceptionFeatures(read_weights(locate_inception(SHARED / "inception" / "fid-inception-v3-pool3.pt")))
    x = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
    features = phi(to_feature_input(x))
    assert features.shape == (2, 192, 12, 12) == (2, 192, phi.feature_side(64), phi.feature_side(64))
    assert features.min() < 0 < features.max()
    features.abs().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in phi.parameters())
