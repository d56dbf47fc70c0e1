"""Translators: export of image-to-image models, `Translator` (any size, tiles, labels, determinism),
`ganforge translate` (files, folders, datasets; nothing written half) and their metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from resuming import square_photos
from torch import nn

from ganforge.api import train_gan
from ganforge.cli import main
from ganforge.data.format import PreparedDataset
from ganforge.data.prepare import prepare_dataset
from ganforge.errors import GeneratorError
from ganforge.export import export_generator
from ganforge.generator import Generator
from ganforge.metrics import translation as tm
from ganforge.models import create_models
from ganforge.translator import TranslateError, Translator, write_translations

QUIET = {"progress": False, "workers": 1}
RUN = {"model.width": 4, "model.d_width": 4, "batch_size": 4, "tick_kimg": 0.008, "device": "cpu", "kimg": 0.008}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return square_photos(tmp_path_factory.mktemp("src") / "photos", noise=0)


def _exported(photos: Path, root: Path, derive: str) -> tuple[Path, Path]:
    data = root / f"pairs-{derive.replace(':', '')}"
    prepare_dataset(photos, data, resolution=16, derive=derive, **QUIET)
    run = train_gan(data, preset="pix2pix", overrides={**RUN, "runs_dir": str(root / "runs")}, progress=False).run_dir
    return export_generator(run), data


@pytest.fixture(scope="module")
def colouriser(photos, tmp_path_factory) -> tuple[Path, Path]:
    return _exported(photos, tmp_path_factory.mktemp("gray"), "gray")


@pytest.fixture(scope="module")
def painter(photos, tmp_path_factory) -> tuple[Path, Path]:
    return _exported(photos, tmp_path_factory.mktemp("labels"), "labels:3")


# --- export ------------------------------------------------------------------------------------------


def test_export_describes_the_translation(colouriser):
    folder, data = colouriser
    config = json.loads((folder / "config.json").read_text())
    assert config["task"] == "image-to-image" and config["architecture"] == "pix2pix"
    assert config["class_name"] == "UNetGenerator"
    t = config["translation"]
    assert t["directions"] == {"a_to_b": {"input": {"kind": "image", "channels": 1},
                                          "output": {"kind": "image", "channels": 3}}}
    assert t["scale"] == 1 and t["size_multiple"] == 16  # the U-Net halves 16 px four times
    assert t["derive"]["mode"] == "gray"
    card = (folder / "README.md").read_text()
    assert "colourises grey images" in card and "ganforge translate" in card


def test_a_translator_is_not_a_generator_and_back(colouriser):
    folder, _ = colouriser
    with pytest.raises(GeneratorError, match="image-to-image model.*ganforge translate"):
        Generator.from_pretrained(folder, device="cpu")
    assert main(["sample", str(folder), "--out", "/nonexistent-never-written"]) == 2


def test_translate_image_is_deterministic_and_in_the_output_channels(colouriser):
    tr = Translator.from_pretrained(colouriser[0], device="cpu")
    assert (tr.input.channels, tr.output.channels, tr.scale) == (1, 3, 1)
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 27, 3), dtype=np.uint8))
    first, again = tr.translate_image(photo), tr.translate_image(photo)
    assert first.size == (27, 20) and first.mode == "RGB"  # any size: padded to 32 x 32 for the U-Net, cropped back
    assert np.array_equal(np.asarray(first), np.asarray(again))
    # a colour picture is turned grey first: the same as giving its grey version
    assert np.array_equal(np.asarray(first), np.asarray(tr.translate_image(photo.convert("L"))))


def test_labels_model_reads_colour_pictures_and_index_maps(painter):
    folder, data = painter
    tr = Translator.from_pretrained(folder, device="cpu")
    assert tr.input.kind == "labels" and tr.input.classes == 3 and tr.input.colours.shape == (3, 3)
    dataset = PreparedDataset(data)
    labels = np.asarray(dataset.a[0])[..., 0]
    # the training picture, mapped to its nearest label colours, gives the training map
    assert np.array_equal(tr.from_image(Image.fromarray(np.asarray(dataset.b[0]))), labels)
    # a one-channel map of indices is read as the labels themselves
    assert np.array_equal(tr.from_image(Image.fromarray(labels)), labels)
    # painted in the label colours, the same map again
    assert np.array_equal(tr.from_image(Image.fromarray(tr.draw_input(labels))), labels)
    out = tr.translate_array(labels)
    assert out.shape == (16, 16, 3)
    with pytest.raises(TranslateError, match="values 0..5.*3 labels"):
        tr.translate_array(np.arange(36).reshape(6, 6) % 6)


# --- tiles ------------------------------------------------------------------------------------------


class Doubler(nn.Module):
    """A local x2 upscaler (what an SRResNet without batch norm is): conv, nearest x2, conv."""

    scale, size_multiple = 2, 1

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Conv2d(3, 8, 5, padding=2), nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x):
        return torch.tanh(self.b(nn.functional.interpolate(torch.relu(self.a(x)), scale_factor=2)))


def _config(scale: int, size_multiple: int, channels: int = 3) -> dict:
    side = {"kind": "image", "channels": channels}
    return {"task": "image-to-image", "architecture": "test", "config": {"resolution": 16},
            "translation": {"directions": {"a_to_b": {"input": side, "output": {"kind": "image", "channels": 3}}},
                            "scale": scale, "size_multiple": size_multiple, "derive": None}}


def test_tiles_give_the_untiled_result_for_a_local_upscaler():
    tr = Translator(Doubler(), _config(2, 1))
    image = np.random.default_rng(1).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    whole = tr.translate_array(image, tile=None)
    assert whole.shape == (90, 140, 3)
    tiled = tr.translate_array(image, tile=48, overlap=6)  # 48 output px: 24 input px, 3 x 5 tiles reaching 6 px out
    assert np.array_equal(whole, tiled)
    x = tr.input_tensor(image)
    # the float path too, to rounding (a convolution may sum in another order on a smaller input)
    assert torch.allclose(tr.translate_tensor(x, tile=None), tr.translate_tensor(x, tile=48, overlap=6), atol=1e-6)
    fits = tr.translate_array(image, tile=512)  # fits in one tile: the untiled path
    assert np.array_equal(whole, fits)
    # without enough overlap the seams show: the test above can fail
    assert not np.array_equal(whole, tr.translate_array(image, tile=48, overlap=0))


def test_tiles_sit_on_the_grid_of_a_strided_network():
    """A U-Net with batch norm in eval mode is local too; tiles start on multiples of its stride."""
    _, G, _ = create_models("pix2pix", resolution=16, in_channels=3, channels=3, width=4, d_width=4, depth=2, norm="batch")
    tr = Translator(G, _config(1, 4))
    image = np.random.default_rng(2).integers(0, 256, (50, 37, 3), dtype=np.uint8)  # not multiples of 4: padded
    whole = tr.translate_array(image, tile=None)
    assert whole.shape == (50, 37, 3)
    assert np.array_equal(whole, tr.translate_array(image, tile=32, overlap=12))


class Squeezer(nn.Module):
    """A network that reduces its 8x8 input to one vector and draws 8x8 from it (DTN's shape)."""

    scale, size_multiple, fully_convolutional = 1, 1, False

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.encode, self.decode = nn.Linear(3 * 64, 16), nn.Linear(16, 3 * 64)

    def forward(self, x):
        return torch.tanh(self.decode(torch.relu(self.encode(x.flatten(1))))).view(-1, 3, 8, 8)


def test_a_network_of_one_size_gets_its_size_and_gives_the_input_size_back():
    config = _config(1, 1)
    config["config"]["resolution"] = 8
    config["translation"]["fully_convolutional"] = False
    tr = Translator(Squeezer(), config)
    small = np.random.default_rng(4).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert tr.translate_array(small).shape == (8, 8, 3)
    big = np.asarray(Image.fromarray(small).resize((20, 30), Image.Resampling.BICUBIC))
    out = tr.translate_array(big)
    assert out.shape == (30, 20, 3)  # resized to 8 x 8 for the network, and back
    assert tr.translate_batch(np.stack([big, big])).shape == (2, 30, 20, 3)


def test_bad_inputs_are_refused_with_a_sentence():
    tr = Translator(Doubler(), _config(2, 1))
    with pytest.raises(TranslateError, match=r"uint8 \(H, W, 3\)"):
        tr.translate_array(np.zeros((8, 8, 2), np.uint8))  # a wrong channel count
    with pytest.raises(TranslateError, match="at least 2x2"):
        tr.translate_array(np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(TranslateError, match="tile side"):
        tr.translate_array(np.zeros((8, 8, 3), np.uint8), tile=4)
    with pytest.raises(TranslateError, match="no direction 'b_to_a'"):
        Translator(Doubler(), _config(2, 1), direction="b_to_a")


# --- the command -------------------------------------------------------------------------------------


def test_translate_files_folders_and_a_dataset(colouriser, photos, tmp_path, capsys):
    folder, data = colouriser
    nested = tmp_path / "in"
    (nested / "sub").mkdir(parents=True)
    Image.open(photos / "1.png").save(nested / "sub" / "one.jpg")
    Image.open(photos / "2.png").convert("L").save(nested / "two.png")
    out = tmp_path / "out"
    assert main(["translate", str(folder), str(nested), str(photos / "3.png"), "--out", str(out), "-q"]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["3.png", "sub/one.png", "two.png"]
    written = Image.open(out / "3.png")
    assert written.mode == "RGB" and written.size == (16, 16) and written.text["ganforge:source"] == "3.png"
    # a second time into the same folder is refused, and nothing is replaced
    before = (out / "3.png").read_bytes()
    assert main(["translate", str(folder), str(photos / "3.png"), "--out", str(out), "-q"]) == 2
    assert "already exists" in capsys.readouterr().err and (out / "3.png").read_bytes() == before
    # a prepared dataset: side A of each pair, in order, translated in batches as each alone would be
    tr = Translator.from_pretrained(folder, device="cpu")
    result = write_translations(tr, [data], tmp_path / "ds", progress=False)
    assert result.images == 12
    a = np.asarray(PreparedDataset(data).a[11])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "ds" / "000011.png")), tr.stamp.apply(tr.translate_array(a)[None])[0])
    # the files carry the provenance mark, the arrays (what metrics measure) do not
    assert not np.array_equal(tr.stamp.apply(tr.translate_array(a)[None])[0], tr.translate_array(a))


def test_a_bad_input_among_good_ones_writes_nothing(colouriser, photos, tmp_path, capsys):
    folder, _ = colouriser
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    tiny = tmp_path / "dot.png"
    Image.new("RGB", (1, 1)).save(tiny)
    out = tmp_path / "out"
    assert main(["translate", str(folder), str(photos / "0.png"), str(bad), str(tiny), "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "2 input(s) cannot be read" in err and "notes.png" in err and "1x1" in err
    assert not out.exists() or not any(out.iterdir())


# --- metrics -----------------------------------------------------------------------------------------


def test_psnr_and_ssim_by_hand():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (2, 12, 12, 3), dtype=np.uint8)
    y = np.clip(x.astype(int) + rng.integers(-10, 11, x.shape), 0, 255).astype(np.uint8)
    mse = ((x.astype(float) - y) ** 2).reshape(2, -1).mean(1)
    assert tm.psnr(x, y) == pytest.approx(np.mean(10 * np.log10(255**2 / mse)))
    # the Y channel: MATLAB's rgb2ycbcr luma, and the border crop
    lum = lambda a: 16 + (a[..., 0] * 65.481 + a[..., 1] * 128.553 + a[..., 2] * 24.966) / 255  # noqa: E731
    mse_y = ((lum(x.astype(float)) - lum(y.astype(float)))[:, 2:-2, 2:-2] ** 2).reshape(2, -1).mean(1)
    assert tm.psnr(x, y, y_channel=True, border=2) == pytest.approx(np.mean(10 * np.log10(255**2 / mse_y)))
    assert tm.ssim(x, x) == pytest.approx(1.0) and 0 < tm.ssim(x, y) < 1
    assert tm.l1(x, y) == pytest.approx(np.abs(x.astype(float) - y).mean() / 255)
    assert tm.bicubic(x[:, :6, :6], 2).shape == (2, 12, 12, 3)


def test_evaluate_translator_beside_its_baseline(colouriser, tmp_path):
    folder, data = colouriser
    results = tm.evaluate_translator(folder, data, fid=False, kid=False, device="cpu", progress=False)
    assert results["images"] == 12 and results["baseline"] == "the grey input"
    dataset = PreparedDataset(data)
    grey = np.repeat(np.asarray(dataset.a[:12]), 3, axis=-1)
    assert results["psnr_baseline"] == pytest.approx(tm.psnr(grey, np.asarray(dataset.b[:12])))
    assert np.isfinite(results["psnr"]) and 0 <= results["l1"] <= 1 and "psnr-rgb" in results["protocol"]


INCEPTION = Path(__file__).resolve().parents[2] / "shared" / "data" / "inception"


def test_eval_command_on_a_translator_prints_model_beside_baseline(colouriser, capsys):
    from ganforge.metrics.inception import TORCHSCRIPT_FILE

    folder, data = colouriser
    code = main(["eval", str(folder), "--data", str(data), "--count", "12", "--json", "-q", "--device", "cpu",
                 "--inception", str(INCEPTION / TORCHSCRIPT_FILE)])
    assert code == 0
    results = json.loads(capsys.readouterr().out)
    for key in ("psnr", "ssim", "l1", "fid", "kid"):
        assert np.isfinite(results[key]) and np.isfinite(results[f"{key}_baseline"]), key
    assert "inception" in results["protocol"]
    assert main(["eval", str(folder), "-q"]) == 2  # no held-out pairs named
    assert "held-out pairs" in capsys.readouterr().err


def test_cyclegan_exports_both_directions_and_round_trips(photos, tmp_path):
    grey = tmp_path / "grey"
    grey.mkdir()
    for file in sorted(photos.iterdir()):
        Image.open(file).convert("L").save(grey / file.name)
    data = tmp_path / "unpaired"
    prepare_dataset(grey, data, resolution=16, unpaired=str(photos), **QUIET)
    run = train_gan(data, preset="cyclegan", progress=False,
                    overrides={**RUN, "model.blocks": 1, "identity_weight": 0, "runs_dir": str(tmp_path / "runs")}).run_dir
    folder = export_generator(run)
    config = json.loads((folder / "config.json").read_text())
    assert set(config["translation"]["directions"]) == {"a_to_b", "b_to_a"}
    assert set(config["components"]) == {"a_to_b", "b_to_a"}
    there = Translator.from_pretrained(folder, device="cpu")
    back = Translator.from_pretrained(folder, device="cpu", direction="b_to_a")
    assert (there.input.channels, there.output.channels) == (1, 3) and (back.input.channels, back.output.channels) == (3, 1)
    # each direction is the trained network of that name, in eval mode
    from ganforge.train import checkpoint as ckpt

    state = ckpt.latest_loadable(run / "checkpoints")[1]
    _, G, _ = create_models("cyclegan", **state["model_config"])
    G.load_state_dict(state["G_ema"])
    G.eval()
    a = np.asarray(PreparedDataset(data).a[0])
    from ganforge.data.reader import to_uint8_images

    with torch.no_grad():
        coloured = to_uint8_images(G.a_to_b(there.input_tensor(a)))[0]
        assert np.array_equal(there.translate_array(a), coloured)
        assert np.array_equal(back.translate_array(coloured), to_uint8_images(G.b_to_a(back.input_tensor(coloured)))[0])
    assert there.turned().direction == "b_to_a"
    results = tm.evaluate_translator(folder, data, fid=False, kid=False, device="cpu", progress=False)
    assert 0 <= results["cycle_l1"] <= 1 and "psnr" not in results  # unpaired: no ground truth to compare with


def _bars(folder: Path, count: int, colour: bool) -> Path:
    """Two classes of 16 px pictures in class folders: a horizontal bar (0) or a vertical one (1)."""
    rng = np.random.default_rng(5 + colour)
    for i in range(count):
        image = np.zeros((16, 16, 3), np.uint8)
        at = int(rng.integers(3, 12))
        ink = rng.integers(128, 256, 3) if colour else 255
        if i % 2:
            image[:, at : at + 3] = ink
        else:
            image[at : at + 3, :] = ink
        (folder / str(i % 2)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / str(i % 2) / f"{i}.png")
    return folder


def test_class_preservation_with_a_judge_of_the_target_domain(tmp_path, capsys):
    from ganforge.metrics.judge import train_judge

    data, target = tmp_path / "bars", tmp_path / "target"
    prepare_dataset(_bars(tmp_path / "grey", 16, False), data, resolution=16, labels="folders",
                    unpaired=str(_bars(tmp_path / "colour", 16, True)), **QUIET)
    prepare_dataset(_bars(tmp_path / "judge", 40, True), target, resolution=16, labels="folders", **QUIET)
    run = train_gan(data, preset="cyclegan", progress=False,
                    overrides={**RUN, "model.blocks": 1, "identity_weight": 0, "runs_dir": str(tmp_path / "runs")}).run_dir
    folder = export_generator(run)
    results = tm.evaluate_translator(folder, data, fid=False, kid=False, device="cpu", progress=False,
                                     judge_data=target, judge_steps=60)
    assert 0 <= results["class_preserved"] <= 1 and 0 <= results["judge_accuracy"] <= 1
    # the baseline is the same judge (same data, split and seed) on the untouched inputs
    ref, ds = PreparedDataset(target), PreparedDataset(data)
    train = np.sort(np.random.default_rng(0).permutation(len(ref))[len(ref) // 10 :])
    judge = train_judge(np.asarray(ref.images)[train], ref.labels[train], steps=60, seed=0, classes=2)
    assert results["class_preserved_baseline"] == pytest.approx(
        float((judge.classify(np.asarray(ds.a)) == ds.labels).mean()))
    with pytest.raises(tm.TranslationMetricsError, match="classes"):
        tm.evaluate_translator(folder, data, fid=False, kid=False, device="cpu", progress=False, judge_data=data)
