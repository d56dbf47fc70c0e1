"""Progressive growing: the fade-in schedule and stage transitions from images shown, the networks at each
stage (full-size output always), the faded real images, WGAN-GP with drift against a hand computation,
a resume mid-fade equal to an uninterrupted run, and the export of a half-grown generator."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from resuming import assert_same_checkpoints, assert_same_tensors
from torch import nn

from ganforge.data.format import PreparedDataset
from ganforge.errors import GanforgeError
from ganforge.models import create_models, model_config
from ganforge.train import checkpoint as ckpt
from ganforge.train.config import ConfigError, build_config
from ganforge.train.loop import Trainer, TrainingError
from ganforge.train.recipes import create_recipe
from ganforge.train.recipes.base import Batch, Phase
from ganforge.train.recipes.progressive import GrowthSchedule, fade_reals

# 16 px digits: stages 4, 8, 16. 32 images of 4x4, then 64 fading in 8x8, 32 stable, 64 fading in 16x16, ...
TINY = {"model.channel_base": 64, "model.channel_max": 8, "model.z_dim": 8, "batch_size": 8,
        "grow_batch": "4:16,8:16", "grow_stable_kimg": 0.032, "grow_fade_kimg": 0.064, "conditional": "no",
        "tick_kimg": 0.016, "grid_size": 4, "precision": "fp32", "ema_kimg": 0.1, "eval_minutes": 0}


def progressive_config(digits, **overrides):
    return build_config(str(digits), "progan", {**TINY, **overrides})


def test_growth_schedule_from_images_shown():
    schedule = GrowthSchedule(stages=3, stable_images=100, fade_images=50)
    expected = {0: (0, 1.0), 99: (0, 1.0), 100: (1, 0.0), 125: (1, 0.5), 149: (1, 0.98), 150: (1, 1.0),
                249: (1, 1.0), 250: (2, 0.0), 290: (2, 0.8), 300: (2, 1.0), 10**6: (2, 1.0)}
    for images, (stage, alpha) in expected.items():
        got = schedule.at(images)
        assert got[0] == stage and got[1] == pytest.approx(alpha), images
    assert schedule.fully_grown_at() == 300
    assert GrowthSchedule(3, 100, 50, grow=False).at(0) == (2, 1.0)  # the same network, fully grown from the start
    assert GrowthSchedule(3, 100, 0).at(100) == (1, 1.0)  # no fade: the new block at once
    assert GrowthSchedule(1, 100, 50).at(0) == (0, 1.0)


def test_fade_reals_by_hand():
    real = torch.arange(16.0).reshape(1, 1, 4, 4)  # rows 0..3, 4..7, 8..11, 12..15
    # at 2 px: the 2x2 means, each shown on its 2x2 block
    means = torch.tensor([[2.5, 4.5], [10.5, 12.5]])
    assert torch.equal(fade_reals(real, 2, 1.0)[0, 0], means.repeat_interleave(2, 0).repeat_interleave(2, 1))
    # at 4 px fading in by 0.25: a quarter of the image, three quarters of its 2x2 means
    faded = fade_reals(real, 4, 0.25)[0, 0]
    assert torch.allclose(faded, 0.25 * real[0, 0] + 0.75 * means.repeat_interleave(2, 0).repeat_interleave(2, 1))
    assert torch.equal(fade_reals(real, 4, 1.0), real)


def test_networks_at_every_stage_make_and_take_full_size_images():
    config, G, D = create_models("progan", resolution=16, channels=4, z_dim=8, channel_base=64, channel_max=8)
    z = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    outputs = {}
    for stage, res in enumerate(config.resolutions):
        for alpha in (0.0, 0.5, 1.0):
            G.set_growth(stage, alpha)
            D.set_growth(stage, alpha)
            with torch.no_grad():
                x = G(z)
                logits, _ = D(x)
            assert x.shape == (6, 4, 16, 16) and logits.shape == (6,)
            # drawn at `res` and shown at 16 px: constant over each (16 / res)-pixel block
            f = 16 // res
            assert torch.equal(x, F.interpolate(x[..., ::f, ::f], scale_factor=f, mode="nearest"))
            outputs[stage, alpha] = x
    for stage in (1, 2):  # alpha 0: the new block is not seen yet, the image is the previous stage's
        assert torch.equal(outputs[stage, 0.0], outputs[stage - 1, 1.0])
        assert not torch.allclose(outputs[stage, 1.0], outputs[stage - 1, 1.0])
        mid = 0.5 * (outputs[stage, 0.0] + outputs[stage, 1.0])  # toRGB is linear, so the blend is the image mean
        assert torch.allclose(outputs[stage, 0.5], mid, atol=1e-5)
    # only the layers in use have requires_grad, so each gets a gradient
    G.set_growth(1, 0.5)
    D.set_growth(1, 0.5)
    D(G(z))[0].sum().backward()
    for network in (G, D):
        trainable = [name for name, p in network.named_parameters() if p.requires_grad]
        assert trainable and all(network.get_parameter(name).grad is not None for name in trainable)
        assert not any(name.startswith("blocks.1.") for name in trainable)  # the 16 px block waits
    with pytest.raises(GanforgeError, match="stage must be an integer in 0..2"):
        G.set_growth(3)
    with pytest.raises(GanforgeError, match="alpha"):
        G.set_growth(1, 1.5)


@pytest.mark.parametrize("fields, message", [
    ({"resolution": 48}, "power of two between 8 and 1024"),
    ({"channels": 2}, "1 \\(grey\\), 3 \\(RGB\\) or 4"),
    ({"channel_base": 8, "resolution": 16}, "use channel_base >= 16"),
    ({"mbstd_channels": 3, "resolution": 16, "channel_base": 64, "channel_max": 8}, "pick a divisor of 8"),
])
def test_bad_configs_say_what_to_do(fields, message):
    with pytest.raises(ValueError, match=message):
        model_config("progan", **fields)


def test_schedule_options_are_checked(digits):
    with pytest.raises(ConfigError, match="resolution:batch"):
        progressive_config(digits, grow_batch="4-16")
    with pytest.raises(ConfigError, match="not a resolution"):
        progressive_config(digits, grow_batch="6:16")
    with pytest.raises(TrainingError, match="grows through 4, 8, 16 px"):
        Trainer(progressive_config(digits, grow_batch="32:8"), None, progress=False)
    with pytest.raises(TrainingError, match="larger than the dataset"):
        Trainer(progressive_config(digits, grow_batch="4:100000"), None, progress=False)
    with pytest.raises(TrainingError, match="use model.name=progan"):
        Trainer(build_config(str(digits), "dcgan-small", {"recipe": "progressive", "conditional": "no"}), None,
                progress=False)


def adam_steps(optimizer) -> set[int]:
    return {int(state["step"]) for state in optimizer.state.values()}


def test_stage_transitions_batch_sizes_and_adam_restarts(digits, tmp_path):
    trainer = Trainer(progressive_config(digits), tmp_path, progress=False)
    recipe = trainer.recipe
    seen = []  # (images before the step, resolution, alpha, batch size, G's Adam step counts after it)
    while trainer.images_seen < 256:
        before = trainer.images_seen
        trainer._train_step()
        seen.append((before, recipe.resolutions[recipe.stage], recipe.alpha, trainer.images_seen - before,
                     adam_steps(trainer.optimizers["G"])))
    by_images = {images: rest for images, *rest in seen}
    assert [images for images, *_ in seen] == [0, 16, 32, 48, 64, 80, 96, 112, *range(128, 256, 8)]
    assert by_images[0][:3] == [4, 1.0, 16] and by_images[16][:3] == [4, 1.0, 16]
    # 8x8 fades in over images 32..96 with 16 a batch, then trains stably to 128
    assert [by_images[i][1] for i in (32, 48, 64, 80)] == pytest.approx([0.0, 0.25, 0.5, 0.75])
    assert by_images[96][:3] == [8, 1.0, 16]
    # 16x16 fades in from 128 with the batch_size of 8 (not listed in grow_batch)
    assert by_images[128][:3] == [16, 0.0, 8]
    assert by_images[160][:3] == [16, 0.5, 8]
    # Adam starts afresh when a fade starts and when it ends: its step count restarts at 1
    assert by_images[16][3] == {2}
    assert by_images[32][3] == {1} and by_images[80][3] == {4}  # fade 8x8: steps 1..4
    assert by_images[96][3] == {1} and by_images[112][3] == {2}  # stable 8x8
    assert by_images[128][3] == {1}  # fade 16x16
    # the preview (the averaged G) follows the stage, drawn at 16 px in any stage
    assert trainer.ema.module.current_growth() == trainer.G.current_growth()
    assert trainer.sample(trainer.grid_z, None).shape == (4, 1, 16, 16)


def test_wgan_gp_with_drift_against_a_hand_computation(digits):
    """D(x) = sum(w x) + b: its input gradient is w at every mixed point, so the penalty is (||w|| - 1)²."""

    class LinearD(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.linspace(-1, 1, 256).reshape(1, 16, 16) * 0.1)
            self.b = nn.Parameter(torch.tensor(0.25))

        def forward(self, x, labels=None):
            return (x * self.w).flatten(1).sum(1) + self.b, None

    class ConstantG(nn.Module):
        z_dim = 4

        def __init__(self):
            super().__init__()
            self.image = nn.Parameter(torch.zeros(1, 16, 16))

        def forward(self, z, labels=None):
            return self.image.expand(z.shape[0], 1, 16, 16) + 0 * z.sum()

    config = progressive_config(digits, gp_weight=10.0, drift_weight=0.001)
    recipe = create_recipe(config, PreparedDataset(digits), torch.device("cpu"), torch.Generator().manual_seed(0))
    assert recipe.name == "progressive" and config.loss == "wgan-gp"
    recipe.networks["D"] = D = LinearD()
    recipe.networks["G"] = ConstantG()
    real = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    loss, stats = recipe.loss(Phase("Dmain", "D"), Batch(real, None, torch.zeros(3, 4)))
    real_logits = [float((r * D.w.detach()).sum()) + 0.25 for r in real]
    penalty = (float(D.w.detach().norm()) - 1) ** 2
    drift = sum(r * r for r in real_logits) / 3
    expected = 0.25 - sum(real_logits) / 3 + 10 * penalty + 0.001 * drift
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    assert float(stats["drift"]) == pytest.approx(drift, rel=1e-5)
    assert float(stats["gradient_penalty"]) == pytest.approx(penalty, rel=1e-5)
    g_loss, _ = recipe.loss(Phase("Gmain", "G"), Batch(real, None, torch.zeros(3, 4)))
    assert float(g_loss.detach()) == pytest.approx(-0.25, rel=1e-6)  # -D(fake), fake = 0
    # the real batch D gets at 4x4 is the 4x4 area average, shown at 16 px
    batch = recipe.make_batch(Phase("Dmain", "D"), (real, None), torch.zeros(3, 4))
    assert recipe.stage == 0
    assert torch.allclose(batch.real, F.interpolate(F.avg_pool2d(real, 4), scale_factor=4, mode="nearest"))


def final_state(run):
    return ckpt.latest_loadable(run / "checkpoints")[1]


def test_resume_mid_fade_equals_an_uninterrupted_run(digits, tmp_path):
    from ganforge.api import train_gan

    # stopped at 64 images, in 8x8's fade; both runs go on through its end and into 16x16's fade
    base = {**TINY, "augment": "ada", "ada_kimg": 1.0, "ada_interval": 1, "ada_p": 0.3}
    straight = train_gan(digits, preset="progan", overrides={**base, "kimg": 0.192, "runs_dir": str(tmp_path / "a")},
                         progress=False).run_dir
    stopped = train_gan(digits, preset="progan", overrides={**base, "kimg": 0.064, "runs_dir": str(tmp_path / "b")},
                        progress=False).run_dir
    half = final_state(stopped)
    assert half["recipe"]["growth"]["stage"] == 1 and 0 < half["recipe"]["growth"]["alpha"] < 1
    train_gan(resume=stopped, overrides={"kimg": 0.192}, progress=False)
    a, b = final_state(straight), final_state(stopped)
    assert a["images_seen"] == b["images_seen"] == 192
    assert a["recipe"]["growth"] == b["recipe"]["growth"] == {"stage": 2, "alpha": 0.875, "period": [2, True]}
    assert_same_checkpoints(a, b)
    assert_same_tensors(a["G_ema"], b["G_ema"], "G_ema")
    for key, value in a["networks"]["G"].items():
        if key.startswith("blocks.0"):  # and they did train on after the stop
            assert not torch.equal(half["networks"]["G"][key], value), key
    assert a["recipe"]["ada"] == b["recipe"]["ada"]


def test_a_half_grown_export_makes_full_size_images(digits, tmp_path):
    from ganforge.api import train_gan
    from ganforge.cli import main
    from ganforge.export import export_generator, load_generator

    run = train_gan(digits, preset="progan", overrides={**TINY, "kimg": 0.064, "runs_dir": str(tmp_path / "runs")},
                    progress=False).run_dir
    state = final_state(run)
    folder = export_generator(run, tmp_path / "gen")
    G = load_generator(folder)
    weights = G.state_dict()
    assert weights.keys() == state["G_ema"].keys()
    assert all(torch.equal(weights[k], v) for k, v in state["G_ema"].items())
    assert G.current_growth() == (1, 0.25)  # a quarter into 8x8's fade (the last step began at 48 images)
    z = torch.randn(3, 8)
    with torch.no_grad():
        x = G(z)
    assert x.shape == (3, 1, 16, 16)
    assert torch.equal(x, F.interpolate(x[..., ::2, ::2], scale_factor=2, mode="nearest"))  # drawn at 8 px
    assert main(["sample", str(folder), "--count", "2", "--out", str(tmp_path / "samples"), "-q",
                 "--device", "cpu"]) == 0
    assert len(list((tmp_path / "samples").glob("*.png"))) == 2
    assert math.isfinite(float(x.abs().max()))
