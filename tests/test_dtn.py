"""DTN: the models (f frozen as buffers), side A's classes in an unpaired dataset, the classifier warm-up, the
losses by hand, training end to end through export, and resume equal to an uninterrupted run."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from resuming import StopAt, assert_same_checkpoints, assert_same_tensors
from torch import nn

from ganforge.api import train_gan
from ganforge.data.format import PreparedDataset
from ganforge.data.output import PrepareError
from ganforge.data.prepare import prepare_dataset
from ganforge.data.reader import to_uint8_images
from ganforge.export import export_generator
from ganforge.models import MODELS, TRANSLATORS, ModelConfigError, create_generator, create_models
from ganforge.models.dtn import DTNClassifier, DTNConfig, freeze_as_buffers
from ganforge.train import checkpoint as ckpt
from ganforge.train.config import ConfigError, build_config
from ganforge.train.loop import Trainer, TrainingError
from ganforge.train.recipes import dtn as dtn_recipe
from ganforge.train.recipes.dtn import DTNRecipe, jitter, total_variation
from ganforge.translator import Translator

TINY = {"features": 8, "f_width": 4, "width": 4, "d_width": 4}
QUIET = {"progress": False, "workers": 1}
RUN = {"model.features": 8, "model.f_width": 4, "model.width": 4, "model.d_width": 4, "batch_size": 4,
       "tick_kimg": 0.008, "classifier_steps": 40, "device": "cpu"}


# --- the models -------------------------------------------------------------------------------------


@pytest.mark.parametrize("resolution,channels", [(16, 1), (32, 3)])
def test_shapes_and_the_frozen_encoder(resolution, channels):
    cfg, G, D = create_models("dtn", resolution=resolution, in_channels=channels, channels=channels, **TINY)
    x = torch.rand(3, channels, resolution, resolution) * 2 - 1
    assert G.encode(x).shape == (3, 8, 1, 1)
    out = G(x)
    assert out.shape == x.shape and out.abs().max() <= 1
    assert D(x).shape == (3, 3)  # the ternary D
    assert G.scale == 1 and G.size_multiple == resolution // 4
    # f's weights are buffers: not parameters (no optimiser or average moves them), but in the state dict
    assert not list(G.encoder.parameters()) and all(not name.startswith("encoder") for name, _ in G.named_parameters())
    assert {k for k in G.state_dict() if k.startswith("encoder")} == {f"encoder.{k}" for k in G.encoder.state_dict()}
    classifier = DTNClassifier(cfg, 5)
    assert classifier(x).shape == (3, 5)
    G.encoder.load_state_dict(classifier.encoder.state_dict())  # the recipe hands f over like this
    assert torch.equal(G.encode(x), classifier.encoder(x))


def test_a_bounded_f_squashes_the_features_in_the_classifier_and_in_g():
    torch.manual_seed(0)
    cfg, G, _ = create_models("dtn", resolution=16, f_bound="tanh", **TINY)
    classifier = DTNClassifier(cfg, 4)
    G.encoder.load_state_dict(classifier.encoder.state_dict())
    x = torch.rand(5, 1, 16, 16) * 2 - 1
    unbounded = torch.nn.Sequential(*list(classifier.encoder)[:-1])(x)  # the same f before its tanh
    assert torch.equal(G.encode(x), torch.tanh(unbounded)) and torch.equal(classifier.encoder(x), G.encode(x))
    assert G.encode(x).abs().max() < 1


def test_freeze_as_buffers_keeps_values_and_names():
    conv = nn.Conv2d(2, 3, 3)
    before = {k: v.clone() for k, v in conv.state_dict().items()}
    freeze_as_buffers(conv)
    assert not list(conv.parameters()) and set(dict(conv.named_buffers())) == {"weight", "bias"}
    assert all(torch.equal(conv.state_dict()[k], v) for k, v in before.items())


def test_bad_configs_and_inputs_are_refused():
    with pytest.raises(ModelConfigError, match="same channels"):
        DTNConfig(in_channels=1, channels=3)
    with pytest.raises(ModelConfigError, match="power of two"):
        DTNConfig(resolution=24)
    with pytest.raises(ModelConfigError, match="f_bound"):
        DTNConfig(f_bound="sigmoid")
    _, G, _ = create_models("dtn", resolution=16, **TINY)
    with pytest.raises(ModelConfigError, match="whole images of 16 px"):
        G(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ModelConfigError, match=r"\(B, 1, H, W\)"):
        G(torch.zeros(1, 3, 16, 16))


def test_eval_is_deterministic_and_rebuilt_from_its_config():
    torch.manual_seed(0)
    cfg, G, _ = create_models("dtn", resolution=16, **TINY)
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    G.train()
    G(x)  # batch norm gathers running statistics
    G.eval()
    with torch.no_grad():
        first, second, alone = G(x), G(x), G(x[:1])
    assert torch.equal(first, second) and torch.allclose(alone, first[:1], atol=1e-6)
    assert "dtn" in TRANSLATORS and "dtn" not in MODELS
    rebuilt = create_generator("dtn", json.loads(json.dumps(dataclasses.asdict(cfg))))
    rebuilt.load_state_dict(G.state_dict())  # f included, as export writes it


def test_total_variation_by_hand():
    x = torch.tensor([[[[0.0, 3.0], [4.0, 0.0]]]])  # one pixel with both neighbours: sqrt(3^2 + 4^2)
    assert total_variation(x).item() == pytest.approx(5.0, rel=1e-6)


# --- data: side A's classes -------------------------------------------------------------------------


def _save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _bar(vertical: bool, offset: int, thick: int, size: int = 16) -> np.ndarray:
    image = np.zeros((size, size), np.uint8)
    if vertical:
        image[2:14, offset : offset + thick] = 255
    else:
        image[offset : offset + thick, 2:14] = 255
    return image


def _bars(root: Path) -> tuple[Path, Path]:
    """A: thin bars in class folders h/ and v/ (8 each); B: thick bars, no classes (12)."""
    for k, name in enumerate(("h", "v")):
        for offset in range(3, 11):
            _save(root / "A" / name / f"{offset}.png", _bar(bool(k), offset, 2))
    for i in range(12):
        _save(root / "B" / f"{i}.png", _bar(i % 2 == 1, 2 + i // 2, 4))
    return root / "A", root / "B"


@pytest.fixture(scope="module")
def bars(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bars")
    a, b = _bars(root)
    prepare_dataset(a, root / "data", resolution=16, unpaired=str(b), labels="folders", **QUIET)
    return root / "data"


def test_unpaired_with_class_folders_labels_side_a(bars, tmp_path):
    dataset = PreparedDataset(bars)
    assert dataset.kind == "unpaired" and len(dataset.a) == 16 and len(dataset.b) == 12
    assert dataset.class_names == ["h", "v"] and dataset.labels.tolist() == [0] * 8 + [1] * 8
    assert dataset.manifest["class_counts"] == [8, 8]
    for k in range(16):  # a horizontal bar has a full row, a vertical one a full column
        image = np.asarray(dataset.a[k, :, :, 0])
        assert (image.max(axis=1 if dataset.labels[k] == 0 else 0) > 0).sum() == 2
    a, b = bars.parent / "A", bars.parent / "B"
    with pytest.raises(PrepareError, match="--labels folders cannot be combined with --pair-with"):
        prepare_dataset(a, tmp_path / "paired", resolution=16, pair_with=str(b), labels="folders", **QUIET)
    prepare_dataset(a, tmp_path / "plain", resolution=16, unpaired=str(b), **QUIET)
    assert PreparedDataset(tmp_path / "plain").labels is None  # without --labels folders: no classes


# --- the recipe -------------------------------------------------------------------------------------


def _recipe(data: Path, **overrides) -> DTNRecipe:
    config = build_config(str(data), "dtn", {**RUN, **overrides})
    torch.manual_seed(0)  # the weights' start, as the trainer seeds it
    return DTNRecipe(config, PreparedDataset(data), torch.device("cpu"), torch.Generator().manual_seed(0))


def test_the_classifier_is_trained_on_a_frozen_and_handed_to_g(bars):
    recipe = _recipe(bars, classifier_steps=150)
    before = {k: v.clone() for k, v in recipe.G.encoder.state_dict().items()}
    recipe.train_classifier()
    assert recipe.classifier_trained
    train, held = recipe._labelled_split()
    assert len(held) == 1 and len(train) == 15 and not set(train) & set(held)
    assert recipe.accuracy(np.arange(16)) == 1.0  # bars across or down: easy to tell apart
    assert not any(p.requires_grad for p in recipe.classifier.parameters())
    after = recipe.G.encoder.state_dict()
    assert all(torch.equal(after[k], v) for k, v in recipe.classifier.encoder.state_dict().items())
    assert not all(torch.equal(after[k], v) for k, v in before.items())
    again = _recipe(bars, classifier_steps=150)
    again.train_classifier()  # its own seeded draws: the same classifier, and the trainer's stream untouched
    assert all(torch.equal(again.classifier.state_dict()[k], v) for k, v in recipe.classifier.state_dict().items())
    assert torch.equal(again.rng.get_state(), torch.Generator().manual_seed(0).get_state())


def test_classifier_jitter_moves_and_restrokes_images_from_its_own_draws(bars, monkeypatch):
    x = -torch.ones(6, 1, 16, 16)
    x[:, :, 4:12, 6:10] = 1  # a bar 4 px wide
    y = jitter(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    assert torch.equal(y, jitter(x, torch.Generator().manual_seed(0))) and not torch.equal(y, x)
    monkeypatch.setattr(dtn_recipe, "JITTER", {"turn": 0.0, "shear": 0.0, "scale": 0.0, "move": 0.0})
    still = jitter(x, torch.Generator().manual_seed(1))  # no affine change: only the strokes
    widths = sorted({int((image[0, 8] > 0).sum()) for image in still})
    assert set(widths) <= {2, 4, 6} and len(widths) >= 2  # thinned, kept or thickened by one pixel a side
    plain = _recipe(bars, classifier_steps=20, classifier_jitter=False)
    plain.train_classifier()
    jittered = _recipe(bars, classifier_steps=20, classifier_jitter=True)
    jittered.train_classifier()  # other images, so another classifier; the trainer's stream untouched
    assert not torch.equal(plain.classifier.head[2].weight, jittered.classifier.head[2].weight)
    assert torch.equal(jittered.rng.get_state(), torch.Generator().manual_seed(0).get_state())


def test_surest_keeps_each_classs_surest_readings_up_to_half_its_fair_share():
    probabilities = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.95, 0.05], [0.3, 0.7], [0.55, 0.45],
                                  [0.1, 0.9], [0.8, 0.2]])  # read as 0, 0, 1, 0, 1, 0, 1, 0
    rows, read = dtn_recipe.surest(probabilities, 2)  # quota 8 / 2 / 2 = 2 a class
    assert rows.tolist() == [0, 2, 3, 6]  # class 0's 0.95 and 0.9; class 1's 0.9 and 0.8
    assert read.tolist() == [0, 1, 0, 1]
    rows, read = dtn_recipe.surest(torch.tensor([[0.7, 0.3, 0.0]] * 3), 3)  # one class read: no others invented
    assert rows.tolist() == [0] and read.tolist() == [0]


def test_target_rounds_train_the_classifier_on_side_b_as_it_reads_it(bars, monkeypatch):
    fits = []
    original = DTNRecipe._fit

    def spy(self, train, target, draws):
        fits.append(None if target is None else (target[0].copy(), target[1].copy()))
        return original(self, train, target, draws)

    monkeypatch.setattr(DTNRecipe, "_fit", spy)
    recipe = _recipe(bars, classifier_steps=150, classifier_target_rounds=2)
    recipe.train_classifier()
    assert len(fits) == 3 and fits[0] is None  # A alone, then two rounds with B
    for rows, read in fits[1:]:
        assert len(rows) == 6 and list(rows) == sorted(set(rows))  # 3 a class of B's 12 (half of 12 / 2 each)
        assert np.bincount(read, minlength=2).tolist() == [3, 3]
        assert read.tolist() == [int(r) % 2 for r in rows]  # B's thick bars read as their own class (odd: down)
    assert recipe.classifier_trained and not any(p.requires_grad for p in recipe.classifier.parameters())
    assert torch.equal(recipe.rng.get_state(), torch.Generator().manual_seed(0).get_state())
    plain = _recipe(bars, classifier_steps=150, classifier_target_rounds=0)
    plain.train_classifier()
    assert not torch.equal(plain.classifier.head[2].weight, recipe.classifier.head[2].weight)  # it learnt from B
    again = _recipe(bars, classifier_steps=150, classifier_target_rounds=2)
    again.train_classifier()  # seeded: the same rounds, the same classifier
    assert all(torch.equal(again.classifier.state_dict()[k], v) for k, v in recipe.classifier.state_dict().items())
    monkeypatch.setattr(dtn_recipe, "TARGET_POOL", 5)
    pool = recipe._target_pool(torch.Generator().manual_seed(0))  # a larger B: a random draw of 5 rows
    assert len(pool) == 5 and list(pool) == sorted(set(pool)) and pool.max() < 12


def test_target_rounds_cannot_be_negative(bars):
    with pytest.raises(ConfigError, match="classifier_target_rounds cannot be negative"):
        build_config(str(bars), "dtn", {**RUN, "classifier_target_rounds": -1})


class StubG(nn.Module):
    """G(cat(x, t)) is a fixed (fake_x, fake_t) times a parameter; encode maps x and fake_x to fixed features."""

    def __init__(self, x, out, codes):
        super().__init__()
        self.x, self.out, self.codes = x, out, codes
        self.gain = nn.Parameter(torch.ones(()))

    def forward(self, both):
        assert torch.equal(both[: len(self.x)], self.x)
        return self.out * self.gain

    def encode(self, images):
        for key, code in self.codes:
            if torch.equal(images.detach(), key):
                return code * self.gain if key is not self.x else code
        raise AssertionError("an input the stub does not know")


class StubD(nn.Module):
    def __init__(self, table):
        super().__init__()
        self.table = table

    def forward(self, images):
        for key, logits in self.table:
            if torch.equal(images.detach(), key):
                return logits
        raise AssertionError("an input the stub does not know")


def _ce(logits: list[float], target: int) -> float:
    return -(logits[target] - math.log(sum(math.exp(v) for v in logits)))


def test_losses_match_a_hand_computation(bars):
    recipe = _recipe(bars, const_weight=15, tid_weight=15, tv_weight=2, class_weight=0)
    recipe.classifier_trained = True  # the stubs stand in for the trained networks
    x, t = torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5)
    fake_x = torch.tensor([[[[0.0, 3.0], [4.0, 0.0]]]]) / 10  # TV: one pixel, sqrt(.3^2 + .4^2) = .5
    fake_t = torch.tensor([[[[0.5, 0.0], [1.0, 0.5]]]])  # (G(t) - t)^2: 0 .25 .25 0
    f_x, f_fake = torch.tensor([[[[1.0]], [[2.0]]]]), torch.tensor([[[[0.0]], [[4.0]]]])  # (f - f)^2: 1, 4
    la, lb, lc = [0.0, 1.0, -1.0], [0.5, 2.0, 0.0], [0.0, 0.0, 3.0]  # D on G(x), G(t), t
    recipe.networks = {"G": StubG(x, torch.cat([fake_x, fake_t]), [(x, f_x), (fake_x, f_fake)]),
                       "D": StubD([(fake_x, torch.tensor([la])), (fake_t, torch.tensor([lb])), (t, torch.tensor([lc]))])}
    phases = {p.name: p for p in recipe.phases()}
    assert list(phases) == ["Dmain", "Gmain"] and phases["Dmain"].draws and phases["Dmain"].graph == ("G",)
    batch = recipe.make_batch(phases["Dmain"], (x, t), torch.zeros(1, 0))
    d, d_stats = recipe.loss(phases["Dmain"], batch)
    g, g_stats = recipe.loss(phases["Gmain"], batch)
    assert d.item() == pytest.approx(_ce(la, 0) + _ce(lb, 1) + _ce(lc, 2), rel=1e-6)
    assert d_stats["D_accuracy"].item() == pytest.approx(2 / 3)  # G(t) and t are told right, G(x) is not
    gan, const, tid, tv = _ce(la, 2) + _ce(lb, 2), (1 + 4) / 2, (0 + 0.25 + 0.25 + 0) / 4, 0.5
    assert g_stats["G_adv"].item() == pytest.approx(gan, rel=1e-6)
    assert g_stats["L_CONST"].item() == pytest.approx(const) and g_stats["L_TID"].item() == pytest.approx(tid)
    assert g_stats["L_TV"].item() == pytest.approx(tv, rel=1e-4)
    assert g.item() == pytest.approx(gan + 15 * const + 15 * tid + 2 * tv, rel=1e-5)
    assert "L_CLASS" not in g_stats  # class_weight 0: the paper's losses only
    g.backward()
    assert recipe.networks["G"].gain.grad is not None


def test_the_class_term_keeps_the_classifiers_reading_of_x(bars):
    recipe = _recipe(bars, const_weight=0, tid_weight=0, class_weight=3)
    recipe.classifier_trained = True
    x, t = torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5)
    fake_x, fake_t = torch.full((1, 1, 2, 2), 0.1), torch.full((1, 1, 2, 2), 0.2)
    f_x, f_fake = torch.tensor([[[[1.0]], [[2.0]]]]), torch.tensor([[[[3.0]], [[1.0]]]])
    la, lb = [0.0, 1.0, -1.0], [0.5, 2.0, 0.0]
    recipe.networks = {"G": StubG(x, torch.cat([fake_x, fake_t]), [(x, f_x), (fake_x, f_fake)]),
                       "D": StubD([(fake_x, torch.tensor([la])), (fake_t, torch.tensor([lb])), (t, torch.zeros(1, 3))])}
    head = nn.Linear(2, 2, bias=False)
    head.weight.data = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # logits = f's two features
    recipe.classifier.head = nn.Sequential(nn.Flatten(), head)
    phases = {p.name: p for p in recipe.phases()}
    batch = recipe.make_batch(phases["Dmain"], (x, t), torch.zeros(1, 0))
    recipe.loss(phases["Dmain"], batch)
    g, stats = recipe.loss(phases["Gmain"], batch)
    keep = _ce([3.0, 1.0], 1)  # x is read as class 1 (logits 1, 2); G(x) as class 0 (3, 1): the term pulls it to 1
    assert stats["L_CLASS"].item() == pytest.approx(keep, rel=1e-6)
    assert g.item() == pytest.approx(_ce(la, 2) + _ce(lb, 2) + 3 * keep, rel=1e-6)


def test_wrong_data_and_settings_are_refused(bars, tmp_path):
    a, b = bars.parent / "A", bars.parent / "B"
    plain, images, colour = tmp_path / "plain", tmp_path / "images", tmp_path / "colour"
    prepare_dataset(a, plain, resolution=16, unpaired=str(b), **QUIET)
    prepare_dataset(b, images, resolution=16, **QUIET)
    prepare_dataset(a, colour, resolution=16, unpaired=str(b), labels="folders", channels="3", **QUIET)
    with pytest.raises(TrainingError, match="side A of .* has no classes.*--labels folders"):
        Trainer(build_config(str(plain), "dtn", RUN), None, progress=False)
    with pytest.raises(TrainingError, match="two unpaired sets"):
        Trainer(build_config(str(images), "dtn", RUN), None, progress=False)
    with pytest.raises(TrainingError, match="3-class cross-entropy"):
        Trainer(build_config(str(bars), "dtn", {**RUN, "loss": "lsgan"}), None, progress=False)
    with pytest.raises(TrainingError, match="leave crop out"):
        Trainer(build_config(str(bars), "dtn", {**RUN, "crop": 8}), None, progress=False)
    with pytest.raises(TrainingError, match="comes from the dataset"):
        Trainer(build_config(str(bars), "dtn", {**RUN, "model.in_channels": 1}), None, progress=False)
    assert PreparedDataset(colour).a.shape[-1] == 3 and PreparedDataset(colour).b.shape[-1] == 3
    Trainer(build_config(str(colour), "dtn", RUN), None, progress=False)  # colour on both sides is fine
    with pytest.raises(ConfigError, match="classifier_steps"):
        build_config(str(bars), "dtn", {"classifier_steps": 0})
    with pytest.raises(ConfigError, match="tid_weight=-1"):
        build_config(str(bars), "dtn", {"tid_weight": -1})


def _cells(picture: Image.Image, size: int, columns: int) -> list[np.ndarray]:
    canvas = np.asarray(picture)
    scale = canvas.shape[1] // (columns * (size + 1) + 1)
    canvas = canvas[::scale, ::scale]
    rows = (canvas.shape[0] - 1) // (size + 1)
    return [canvas[1 + r * (size + 1) : 1 + r * (size + 1) + size, 1 + c * (size + 1) : 1 + c * (size + 1) + size]
            for r in range(rows) for c in range(columns)]


def test_trains_end_to_end_through_export(bars, tmp_path):
    run = train_gan(bars, preset="dtn", progress=False,
                    overrides={**RUN, "kimg": 0.016, "runs_dir": str(tmp_path / "runs")}).run_dir
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    trained = [r for r in records if "loss_G" in r]
    assert trained and all(math.isfinite(r[k]) for r in trained for k in ("loss_D", "loss_G", "L_CONST", "L_TID"))
    assert all(0 <= r["classifier_accuracy"] <= 1 for r in trained)
    state = ckpt.latest_loadable(run / "checkpoints")[1]
    assert state["recipe"]["classifier_trained"]
    for key, value in state["recipe"]["classifier"].items():  # G's f is the trained classifier's encoder
        if key.startswith("encoder."):
            assert torch.equal(state["G_ema"][key], value) and torch.equal(state["networks"]["G"][key], value), key
    # the grid: rows x | G(x) | t | G(t) of fixed images, from the averaged G in eval mode
    dataset = PreparedDataset(bars)
    G = create_generator("dtn", state["model_config"])
    G.load_state_dict(state["G_ema"])
    G.eval()
    pick = np.random.default_rng(0)
    ia, ib = np.sort(pick.choice(16, 8, replace=False)), np.sort(pick.choice(12, 8, replace=False))
    x = torch.from_numpy(np.asarray(dataset.a[ia])).permute(0, 3, 1, 2).float() / 127.5 - 1
    t = torch.from_numpy(np.asarray(dataset.b[ib])).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        expected = [to_uint8_images(v) for v in (x, G(x), t, G(t))]
    cells = _cells(Image.open(sorted((run / "grids").glob("grid-*.png"))[-1]).convert("RGB"), 16, 4)
    for k in range(8):
        for column in range(4):
            assert np.array_equal(cells[4 * k + column][..., 0], expected[column][k][..., 0]), (k, column)
    translator = Translator.from_pretrained(export_generator(run, tmp_path / "exported"), device="cpu")
    with torch.no_grad():
        assert torch.allclose(translator.translate_tensor(x[:1], tile=None), G(x[:1]), atol=1e-6)


def test_resume_equals_an_uninterrupted_run_and_keeps_the_classifier(bars, tmp_path, monkeypatch):
    overrides = {**RUN, "kimg": 0.032}
    straight = train_gan(bars, preset="dtn", overrides={**overrides, "runs_dir": str(tmp_path / "a")},
                         progress=False).run_dir
    stopped = tmp_path / "b"
    stopped.mkdir()
    trainer = Trainer(build_config(str(bars), "dtn", overrides), stopped, progress=False)
    trainer.add_callback(StopAt(16))
    assert trainer.run() == "patience" and trainer.images_seen == 16

    def never(self):
        raise AssertionError("a resumed run trained its classifier again")

    monkeypatch.setattr(DTNRecipe, "train_classifier", never)
    train_gan(resume=stopped, progress=False)
    a, b = (ckpt.latest_loadable(run / "checkpoints")[1] for run in (straight, stopped))
    assert a["images_seen"] == b["images_seen"] == 32 and a["step"] == b["step"] == 8
    assert_same_checkpoints(a, b)
    assert_same_tensors(a["G_ema"], b["G_ema"], "G_ema")  # batch norm recalibrated from the same mixed A and B draws
    assert_same_tensors(a["recipe"]["classifier"], b["recipe"]["classifier"], "classifier")
