"""CycleGAN: the ResNet and PatchGAN shapes, both directions, the losses by hand, the image pools, training
end to end, and resume (networks, optimisers, pools and the learning-rate decay) equal to an unbroken run."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from resuming import StopAt, assert_same_checkpoints
from torch import nn

from ganforge.api import train_gan
from ganforge.data.format import PreparedDataset
from ganforge.data.prepare import prepare_dataset
from ganforge.data.reader import to_uint8_images
from ganforge.export import export_generator
from ganforge.models import MODELS, TRANSLATORS, ModelConfigError, create_generator, create_models
from ganforge.models.cyclegan import CycleGANConfig
from ganforge.train import checkpoint as ckpt
from ganforge.train.config import ConfigError, build_config
from ganforge.train.defaults import choose_defaults
from ganforge.train.loop import Trainer, TrainingError
from ganforge.train.recipes.cyclegan import CycleGANRecipe, ImagePool
from ganforge.translator import Translator

TINY = {"width": 4, "d_width": 4, "blocks": 1}
QUIET = {"progress": False, "workers": 1}
RUN = {"model.width": 4, "model.d_width": 4, "model.blocks": 1, "batch_size": 4, "tick_kimg": 0.008, "device": "cpu"}


# --- the models -------------------------------------------------------------------------------------


@pytest.mark.parametrize("resolution", [16, 32])
@pytest.mark.parametrize("in_channels,channels", [(1, 3), (3, 3), (3, 1), (4, 3)])
def test_both_directions_and_their_channels(resolution, in_channels, channels):
    cfg, G, D = create_models("cyclegan", resolution=resolution, in_channels=in_channels, channels=channels, **TINY)
    a = torch.rand(2, in_channels, resolution, resolution) * 2 - 1
    b = torch.rand(2, channels, resolution, resolution) * 2 - 1
    assert G.components == ("a_to_b", "b_to_a") and G.scale == 1 and G.size_multiple == 4
    fake_b, fake_a = G.a_to_b(a), G.b_to_a(b)
    assert fake_b.shape == (2, channels, resolution, resolution) and fake_a.shape == (2, in_channels, resolution, resolution)
    assert fake_b.abs().max() <= 1 and fake_a.abs().max() <= 1  # tanh
    assert torch.equal(G(a), fake_b)  # forward is A -> B
    for part in G.components:
        assert getattr(G, part).scale == 1 and getattr(G, part).size_multiple == 4
    side = {16: 6, 32: 6}[resolution]  # 16 px: 1 stride-2 conv; 32 px: 2 (34x34 patches)
    assert D.d_a(a).shape == (2, 1, side, side) and D.d_b(b).shape == (2, 1, side, side)
    assert D.d_a.features[0].in_channels == in_channels and D.d_b.features[0].in_channels == channels


def test_paper_sizes():
    cfg, G, D = create_models("cyclegan", resolution=256, in_channels=3, channels=3, width=2)
    assert cfg.residual_blocks == 9 and CycleGANConfig(resolution=128).residual_blocks == 6
    convs = [m for m in G.a_to_b.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    kinds = [(type(m).__name__[4], m.out_channels, m.kernel_size[0], m.stride[0]) for m in convs]
    # c7s1-64, d128, d256, 9 x R256 (two 3x3 convs each), u128, u64, c7s1-3 (at width 2: 64 -> 2)
    assert kinds == [("2", 2, 7, 1), ("2", 4, 3, 2), ("2", 8, 3, 2), *[("2", 8, 3, 1)] * 18,
                     ("T", 4, 3, 2), ("T", 2, 3, 2), ("2", 3, 7, 1)]
    assert sum(isinstance(m, nn.ReflectionPad2d) for m in G.a_to_b.modules()) == 2 + 18
    assert all(not m.affine and not m.track_running_stats for m in G.modules() if isinstance(m, nn.InstanceNorm2d))
    d_convs = [(m.out_channels, m.stride[0]) for m in D.d_b.modules() if isinstance(m, nn.Conv2d)]
    assert d_convs == [(64, 2), (128, 2), (256, 2), (512, 1), (1, 1)]  # the 70x70 PatchGAN
    assert D.d_b(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30)


def test_any_multiple_of_four_and_bad_inputs():
    _, G, _ = create_models("cyclegan", resolution=16, in_channels=1, channels=3, **TINY)
    assert G(torch.zeros(1, 1, 20, 36)).shape == (1, 3, 20, 36)  # fully convolutional
    with pytest.raises(ModelConfigError, match="multiples of 4"):
        G(torch.zeros(1, 1, 18, 16))
    with pytest.raises(ModelConfigError, match=r"\(B, 1, H, W\)"):
        G(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ModelConfigError, match=r"\(B, 3, H, W\)"):
        G.b_to_a(torch.zeros(1, 1, 16, 16))
    with pytest.raises(ModelConfigError, match="multiple of 4"):
        CycleGANConfig(resolution=30)
    with pytest.raises(ModelConfigError, match="num_classes"):
        CycleGANConfig(num_classes=2)


def test_eval_is_deterministic_and_independent_of_the_batch():
    torch.manual_seed(0)
    _, G, _ = create_models("cyclegan", resolution=16, in_channels=3, channels=3, **TINY)
    a = torch.rand(4, 3, 16, 16) * 2 - 1
    G.eval()
    with torch.no_grad():
        first, second, alone = G(a), G(a), G(a[:1])
    assert torch.equal(first, second)
    assert torch.allclose(alone, first[:1], atol=1e-6)


def test_registered_as_a_translator_and_rebuilt_from_its_config():
    assert "cyclegan" in TRANSLATORS and "cyclegan" not in MODELS
    cfg, G, _ = create_models("cyclegan", resolution=16, in_channels=1, channels=3, **TINY)
    rebuilt = create_generator("cyclegan", json.loads(json.dumps(dataclasses.asdict(cfg))))
    rebuilt.load_state_dict(G.state_dict())  # both directions' weights, as export writes them
    assert {k.split(".")[0] for k in G.state_dict()} == {"a_to_b", "b_to_a"}


# --- the image pool ---------------------------------------------------------------------------------


def _distinct(count: int, start: int) -> torch.Tensor:
    """`count` images (1, 2, 2), image k filled with the value start + k: each tells where it came from."""
    return torch.arange(start, start + count, dtype=torch.float32).reshape(count, 1, 1, 1).expand(count, 1, 2, 2).clone()


def test_pool_fills_then_swaps_half_on_average():
    pool, stream = ImagePool(50), torch.Generator().manual_seed(0)
    first = _distinct(50, 0)
    assert torch.equal(pool.query(first[:30], stream), first[:30]) and len(pool.images) == 30
    assert torch.equal(pool.query(first[30:], stream), first[30:]) and len(pool.images) == 50  # full now
    state = stream.get_state()
    new = _distinct(2000, 1000)
    shown = torch.cat([pool.query(new[i : i + 10], stream) for i in range(0, 2000, 10)])
    old = shown[:, 0, 0, 0] != new[:, 0, 0, 0]  # an image from the history, not the one just made
    assert abs(old.float().mean().item() - 0.5) < 0.05  # 2000 draws: 0.05 is 4.5 standard deviations
    assert len(pool.images) == 50
    # an image from the history was made earlier (or was one of the first 50); the pool keeps 50 distinct
    assert (shown[old, 0, 0, 0] < new[old, 0, 0, 0]).all()
    held = [float(x[0, 0, 0]) for x in pool.images]
    assert len(set(held)) == 50 and sum(h < 50 for h in held) < 5  # nearly all replaced after 1,000 swaps
    # the draws are the stream's: the same stream state shows the same images
    again = ImagePool(50)
    again.query(first, torch.Generator())  # filling draws nothing
    stream.set_state(state)
    assert torch.equal(torch.cat([again.query(new[i : i + 10], stream) for i in range(0, 2000, 10)]), shown)


def test_pool_of_zero_passes_fakes_through_and_state_round_trips():
    assert torch.equal(ImagePool(0).query(_distinct(3, 0), torch.Generator()), _distinct(3, 0))
    pool = ImagePool(4)
    pool.query(_distinct(3, 0), torch.Generator())
    restored = ImagePool(4)
    restored.load_state_dict(pool.state_dict(), torch.device("cpu"))
    assert len(restored.images) == 3 and all(torch.equal(x, y) for x, y in zip(restored.images, pool.images))
    empty = ImagePool(4)
    empty.load_state_dict(ImagePool(4).state_dict(), torch.device("cpu"))
    assert empty.images == []
    with pytest.raises(Exception, match="pool_size back to 4"):
        ImagePool(5).load_state_dict(pool.state_dict(), torch.device("cpu"))


# --- the recipe -------------------------------------------------------------------------------------


def _save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _unpaired_folders(root: Path, size: int = 16) -> tuple[Path, Path]:
    """A: 10 grey images (a light square on dark); B: 12 colour ones (a dark square on a colour)."""
    for i in range(10):
        rng = np.random.default_rng(i)
        grey = np.full((size, size), 40 + 3 * i, np.uint8)
        lo = 2 + i % 4
        grey[lo : lo + size // 2, lo : lo + size // 2] = 200
        _save(root / "A" / f"{i}.png", np.clip(grey + rng.integers(-5, 6, grey.shape), 0, 255).astype(np.uint8))
    for i in range(12):
        rng = np.random.default_rng(100 + i)
        colour = np.empty((size, size, 3), np.uint8)
        colour[:] = rng.integers(80, 256, 3)
        colour[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = rng.integers(0, 60, 3)
        _save(root / "B" / f"{i}.png", colour)
    return root / "A", root / "B"


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    return _unpaired_folders(tmp_path_factory.mktemp("src"))


@pytest.fixture(scope="module")
def gray_to_colour(folders, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "unpaired"
    prepare_dataset(folders[0], out, resolution=16, unpaired=str(folders[1]), **QUIET)
    return out


@pytest.fixture(scope="module")
def colour_both(folders, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "unpaired-rgb"
    prepare_dataset(folders[0], out, resolution=16, unpaired=str(folders[1]), channels="3", **QUIET)
    return out


class Lookup(nn.Module):
    """A stub direction: each known input (compared by value) maps to a fixed output, times a parameter."""

    def __init__(self, table: list[tuple[torch.Tensor, torch.Tensor]]):
        super().__init__()
        self.table, self.gain = table, nn.Parameter(torch.ones(()))

    def forward(self, x):
        for key, out in self.table:
            if torch.equal(x.detach(), key):
                return out * self.gain
        raise AssertionError("an input the stub does not know")


class StubD(nn.Module):
    """Fixed logits for the real images of its side, other fixed logits for anything else."""

    def __init__(self, real, real_logits, fake_logits):
        super().__init__()
        self.real, self.real_logits, self.fake_logits = real, real_logits, fake_logits

    def forward(self, x):
        return self.real_logits if torch.equal(x, self.real) else self.fake_logits


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


@pytest.mark.parametrize("loss", ["lsgan", "nonsaturating"])
def test_losses_match_a_hand_computation(colour_both, loss):
    config = build_config(str(colour_both), "cyclegan", {**RUN, "loss": loss, "cycle_weight": 10, "identity_weight": 0.5})
    recipe = CycleGANRecipe(config, PreparedDataset(colour_both), torch.device("cpu"), torch.Generator().manual_seed(0))
    # one-channel 1x2 images; each stub output differs from its target by known amounts
    a, b = torch.tensor([[[[0.0, 0.5]]]]), torch.tensor([[[[-0.5, 1.0]]]])
    fake_b, fake_a = torch.tensor([[[[0.25, 0.75]]]]), torch.tensor([[[[-0.25, -1.0]]]])
    rec_a, rec_b = torch.tensor([[[[0.5, 0.5]]]]), torch.tensor([[[[-0.5, 0.0]]]])  # |rec_a - a| = .5 0, |rec_b - b| = 0 1
    idt_b, idt_a = torch.tensor([[[[-0.25, 0.5]]]]), torch.tensor([[[[0.0, 0.0]]]])  # |idt_b - b| = .25 .5, |idt_a - a| = 0 .5
    G = nn.Module()
    G.a_to_b = Lookup([(a, fake_b), (fake_a, rec_b), (b, idt_b)])
    G.b_to_a = Lookup([(b, fake_a), (fake_b, rec_a), (a, idt_a)])
    D = nn.Module()
    D.d_a = StubD(a, torch.tensor([[[[1.0, 0.0]]]]), torch.tensor([[[[0.5, -1.0]]]]))
    D.d_b = StubD(b, torch.tensor([[[[2.0, -1.0]]]]), torch.tensor([[[[0.0, 3.0]]]]))
    recipe.networks = {"G": G, "D": D}
    phases = {p.name: p for p in recipe.phases()}
    assert list(phases) == ["Gmain", "Dmain"] and phases["Gmain"].draws and not phases["Dmain"].draws
    batch = recipe.make_batch(phases["Gmain"], (a, b), torch.zeros(1, 0))
    g, g_stats = recipe.loss(phases["Gmain"], batch)
    d, d_stats = recipe.loss(phases["Dmain"], batch)
    if loss == "lsgan":
        def to_one(logits):
            return sum((x - 1) ** 2 for x in logits) / len(logits)

        def to_zero(logits):
            return sum(x**2 for x in logits) / len(logits)
    else:  # BCE(l, 1) = softplus(-l), BCE(l, 0) = softplus(l)
        def to_one(logits):
            return sum(_softplus(-x) for x in logits) / len(logits)

        def to_zero(logits):
            return sum(_softplus(x) for x in logits) / len(logits)
    adversarial = to_one([0.0, 3.0]) + to_one([0.5, -1.0])  # D_B(G_AB(a)), D_A(G_BA(b))
    cycle_a, cycle_b = (0.5 + 0) / 2, (0 + 1) / 2
    identity = (0.25 + 0.5) / 2 + (0 + 0.5) / 2
    assert g.item() == pytest.approx(adversarial + 10 * (cycle_a + cycle_b) + 10 * 0.5 * identity, rel=1e-6)
    assert g_stats["cycle_A"].item() == pytest.approx(cycle_a) and g_stats["cycle_B"].item() == pytest.approx(cycle_b)
    assert g_stats["identity"].item() == pytest.approx(identity)
    d_a = 0.5 * (to_one([1.0, 0.0]) + to_zero([0.5, -1.0]))
    d_b = 0.5 * (to_one([2.0, -1.0]) + to_zero([0.0, 3.0]))  # the pool is filling: D sees the fakes themselves
    assert d.item() == pytest.approx(d_a + d_b, rel=1e-6)  # each D halved, as the paper
    assert d_stats["loss_D_A"].item() == pytest.approx(d_a, rel=1e-6)
    assert d_stats["loss_D_B"].item() == pytest.approx(d_b, rel=1e-6)
    assert [len(p.images) for p in recipe.pools.values()] == [1, 1]
    g.backward()  # G's loss reaches both directions
    assert G.a_to_b.gain.grad is not None and G.b_to_a.gain.grad is not None


def test_wrong_data_and_settings_are_refused(gray_to_colour, colour_both, folders, tmp_path):
    images, pairs = tmp_path / "images", tmp_path / "pairs"
    prepare_dataset(folders[1], images, resolution=16, **QUIET)
    prepare_dataset(folders[1], pairs, resolution=16, derive="gray", **QUIET)
    with pytest.raises(TrainingError, match="two unpaired sets.*images dataset.*--unpaired B"):
        Trainer(build_config(str(images), "cyclegan", RUN), None, progress=False)
    with pytest.raises(TrainingError, match="paired dataset. It holds pairs: train pix2pix"):
        Trainer(build_config(str(pairs), "cyclegan", RUN), None, progress=False)
    with pytest.raises(TrainingError, match="Side A has 1 channel.*identity_weight=0"):
        Trainer(build_config(str(gray_to_colour), "cyclegan", RUN), None, progress=False)
    with pytest.raises(TrainingError, match="loss=lsgan"):
        Trainer(build_config(str(colour_both), "cyclegan", {**RUN, "loss": "hinge"}), None, progress=False)
    with pytest.raises(TrainingError, match="comes from the dataset"):
        Trainer(build_config(str(colour_both), "cyclegan", {**RUN, "model.in_channels": 3}), None, progress=False)
    with pytest.raises(TrainingError, match="does not use augment"):
        Trainer(build_config(str(colour_both), "cyclegan", {**RUN, "augment": "ada"}), None, progress=False)
    with pytest.raises(ConfigError, match="pool_size=-1"):
        build_config(str(colour_both), "cyclegan", {"pool_size": -1})


def test_an_unpaired_dataset_trains_cyclegan_without_a_preset(colour_both):
    assert choose_defaults("unpaired", 22, 16).preset == "cyclegan"
    config = train_gan(colour_both, dry_run=True, progress=False, overrides={"device": "cpu", "batch_size": 4}).config
    assert config.preset == "cyclegan" and config.model["name"] == "cyclegan" and config.loss == "lsgan"


def _cells(picture: Image.Image, size: int, columns: int) -> list[np.ndarray]:
    """The grid's cells, left to right then down, from a whole-factor enlarged image_grid picture."""
    canvas = np.asarray(picture)
    scale = canvas.shape[1] // (columns * (size + 1) + 1)
    canvas = canvas[::scale, ::scale]
    rows = (canvas.shape[0] - 1) // (size + 1)
    return [canvas[1 + r * (size + 1) : 1 + r * (size + 1) + size, 1 + c * (size + 1) : 1 + c * (size + 1) + size]
            for r in range(rows) for c in range(columns)]


def _grey(pictures: np.ndarray) -> np.ndarray:
    return np.repeat(pictures, 3, axis=-1) if pictures.shape[-1] == 1 else pictures


def test_gray_to_colour_trains_and_the_grid_shows_both_cycles(gray_to_colour, tmp_path):
    run = train_gan(gray_to_colour, preset="cyclegan", progress=False,
                    overrides={**RUN, "identity_weight": 0, "kimg": 0.016, "runs_dir": str(tmp_path / "runs")}).run_dir
    grids = sorted((run / "grids").glob("grid-*.png"))
    assert [g.name for g in grids] == ["grid-0000000.000kimg.png", "grid-0000000.008kimg.png", "grid-0000000.016kimg.png"]
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    trained = [r for r in records if "loss_G" in r]
    assert trained and all(math.isfinite(r[k]) for r in trained for k in ("loss_G", "loss_D", "cycle_A", "cycle_B"))
    assert "identity" not in trained[0]
    # the grid: 8 fixed images of each side, a row A | G_AB(A) | G_BA(G_AB(A)) | B | G_BA(B) | G_AB(G_BA(B))
    dataset = PreparedDataset(gray_to_colour)
    assert dataset.a.shape[-1] == 1 and dataset.b.shape[-1] == 3
    state = ckpt.latest_loadable(run / "checkpoints")[1]
    assert state["model_config"]["in_channels"] == 1 and state["model_config"]["channels"] == 3
    G = create_generator("cyclegan", state["model_config"])
    G.load_state_dict(state["G_ema"])
    G.eval()
    pick = np.random.default_rng(0)
    ia, ib = np.sort(pick.choice(10, 8, replace=False)), np.sort(pick.choice(12, 8, replace=False))
    a = torch.from_numpy(np.asarray(dataset.a[ia])).permute(0, 3, 1, 2).float() / 127.5 - 1
    b = torch.from_numpy(np.asarray(dataset.b[ib])).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        fake_b, fake_a = G.a_to_b(a), G.b_to_a(b)
        expected = [a, fake_b, G.b_to_a(fake_b), b, fake_a, G.a_to_b(fake_a)]
    expected = [_grey(to_uint8_images(x)) for x in expected]
    cells = _cells(Image.open(grids[-1]).convert("RGB"), 16, 6)
    assert len(cells) == 6 * 8
    for k in range(8):
        for column in range(6):
            assert np.array_equal(cells[6 * k + column], expected[column][k]), (k, column)
    assert (run / "reals.png").exists()
    # both directions round-trip through export
    translator = Translator.from_pretrained(export_generator(run, tmp_path / "exported"), device="cpu")
    back = translator.turned()
    assert (translator.direction, back.direction) == ("a_to_b", "b_to_a")
    assert (translator.input.channels, translator.output.channels, back.output.channels) == (1, 3, 1)
    with torch.no_grad():
        assert torch.allclose(translator.translate_tensor(a[:1], tile=None), G.a_to_b(a[:1]), atol=1e-6)
        assert torch.allclose(back.translate_tensor(b[:1], tile=None), G.b_to_a(b[:1]), atol=1e-6)


def test_resume_equals_an_uninterrupted_run(colour_both, tmp_path):
    # a pool of 3 is full after the first step, so the resumed half swaps images: pools, their draws from
    # the stream and the learning-rate decay (over the last half of the budget, from the preset) all continue
    overrides = {**RUN, "kimg": 0.032, "pool_size": 3}
    straight = train_gan(colour_both, preset="cyclegan", overrides={**overrides, "runs_dir": str(tmp_path / "a")},
                         progress=False).run_dir
    stopped = tmp_path / "b"
    stopped.mkdir()
    trainer = Trainer(build_config(str(colour_both), "cyclegan", overrides), stopped, progress=False)
    trainer.add_callback(StopAt(16))
    assert trainer.run() == "patience" and trainer.images_seen == 16
    assert trainer.config.lr_ramp_down == 0.5 and trainer.lr_factor() == 1.0
    halfway = ckpt.latest_loadable(stopped / "checkpoints")[1]
    assert [len(halfway["recipe"]["pools"][s]["images"]) for s in "AB"] == [3, 3]
    train_gan(resume=stopped, progress=False)
    a, b = (ckpt.latest_loadable(run / "checkpoints")[1] for run in (straight, stopped))
    assert a["images_seen"] == b["images_seen"] == 32 and a["step"] == b["step"] == 8
    assert_same_checkpoints(a, b)
    # the last step ran at 28 of 32 images: (1 - 28/32) / 0.5 = 0.25 of the rate, in both runs
    for name in a["optimizers"]:
        for run in (a, b):
            assert run["optimizers"][name]["param_groups"][0]["lr"] == pytest.approx(2e-4 * 0.25)
    for side in "AB":
        assert torch.equal(a["recipe"]["pools"][side]["images"], b["recipe"]["pools"][side]["images"]), side
        assert not torch.equal(a["recipe"]["pools"][side]["images"], halfway["recipe"]["pools"][side]["images"])
