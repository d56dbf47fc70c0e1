"""Attributes: files checked at prepare (each mistake its own sentence), stored aligned with the images,
read back by the reader, conditioning DCGAN and StyleGAN2 in training, kept through export, and edited
with the latent fixed; the Morpho-MNIST measurements of the benchmark on strokes drawn by hand."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from resuming import assert_same_checkpoints

from ganforge.attributes import AttributeEditError, attribute_edit, attribute_specs, edit_values, parse_attribute_edit
from ganforge.cli import main
from ganforge.data.attributes import AttributeFileError, AttributeValueError, MissingAttributesError, UnknownFileError
from ganforge.data.format import PreparedDataset
from ganforge.data.inspect import inspect_dataset
from ganforge.data.output import PrepareError
from ganforge.data.prepare import prepare_dataset
from ganforge.data.reader import BatchReader
from ganforge.generator import Generator
from ganforge.models import create_models
from ganforge.models.layers import ModelConfigError
from ganforge.models.sampling import synthesize

TINY = {"model.g_width": 8, "model.d_width": 8, "model.z_dim": 16, "batch_size": 16, "tick_kimg": 0.032,
        "grid_size": 10, "precision": "fp32", "ema_kimg": 0.1, "eval_minutes": 0, "augment": ""}
SG2 = {"model.name": "stylegan2", "model.z_dim": 16, "model.w_dim": 16, "model.mapping_layers": 2,
       "model.channel_base": 128, "model.channel_max": 8, "batch_size": 8, "tick_kimg": 0.016, "grid_size": 4,
       "precision": "fp32", "ema_kimg": 0.1, "eval_minutes": 0, "r1_every": 2, "pl_every": 2, "r1_gamma": 0.1}
SPECS = [{"name": "thick", "kind": "continuous", "mean": 2.0, "std": 0.5},
         {"name": "hair", "kind": "categorical", "values": ["black", "blond", "red"]}]


# --- a source folder and its attribute files -------------------------------------------------------


@pytest.fixture
def photos(src: Path) -> Path:
    """Five images in two folders (a/img0.png ... b/img3.png, plus top.png) and a corrupt a/bad.png."""
    rng = np.random.default_rng(0)
    for i in range(4):
        (src / "ab"[i % 2]).mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), np.uint8)).save(src / "ab"[i % 2] / f"img{i}.png")
    Image.fromarray(rng.integers(0, 255, (12, 12, 3), np.uint8)).save(src / "top.png")
    (src / "a" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return src


ROWS = {"a/img0.png": (0.5, "black"), "b/img1.png": (1.5, "blond"), "a/img2.png": (2.5, "black"),
        "b/img3.png": (3.0, "red"), "top.png": (4.0, "blond"), "a/bad.png": (9.0, "red")}


def write_csv(path: Path, rows: dict = ROWS, header: str = "file,thick,hair", edit=None) -> Path:
    lines = [header] + [f"{name},{t},{h}" for name, (t, h) in rows.items()]
    if edit:
        lines = edit(lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def prepare(photos: Path, out: Path, attributes: Path, **options):
    return prepare_dataset(photos, out, resolution=8, workers=1, progress=False, attributes=str(attributes), **options)


def expected_by_source(out: Path) -> list[str]:
    report = json.loads((out / "prepare-report.json").read_text())
    return [r["source"] for r in sorted(report["included"], key=lambda r: r["index"])]


@pytest.mark.parametrize("kind", ["csv", "json"])
def test_attributes_are_stored_aligned_after_a_skipped_corrupt_image(photos, out, tmp_path, kind):
    if kind == "csv":
        table = write_csv(tmp_path / "attrs.csv")
    else:  # base names where they are unique, paths where not
        table = tmp_path / "attrs.json"
        table.write_text(json.dumps({("top.png" if k == "top.png" else k): {"thick": t, "hair": h}
                                     for k, (t, h) in ROWS.items()}))
    result = prepare(photos, out, table)
    assert result.included == 5 and result.skipped == 1  # a/bad.png
    dataset = PreparedDataset(out)
    thick, hair = dataset.attribute_specs
    kept = [ROWS[s] for s in expected_by_source(out)]
    values = np.array([t for t, _ in kept])
    assert thick == {"name": "thick", "kind": "continuous", "mean": pytest.approx(values.mean()),
                     "std": pytest.approx(values.std()), "min": 0.5, "max": 4.0}  # bad.png's 9.0 is not counted
    assert hair["kind"] == "categorical" and hair["values"] == ["black", "blond", "red"] and hair["counts"] == [2, 2, 1]
    assert dataset.attributes.dtype == np.float32 and dataset.attributes.shape == (5, 2)
    np.testing.assert_allclose(dataset.attributes[:, 0], values)
    assert [hair["values"][int(c)] for c in dataset.attributes[:, 1]] == [h for _, h in kept]
    # the reader hands each image its own row: with the whole set in one batch the order is the dataset's
    images, labels, attributes = next(BatchReader(dataset, 5, seed=3))
    assert labels is None and attributes.shape == (5, 2)
    assert torch.equal(attributes, torch.from_numpy(dataset.attributes))
    summary = inspect_dataset(out).summary()
    assert "attribute thick: a number, mean" in summary and "attribute hair: 3 values (black 2, blond 2, red 1)" in summary


def test_base_names_numbers_as_categories_and_a_spreadsheet_bom(photos, out, tmp_path):
    rows = {"img0.png": (1, 3), "img1.png": (2, 10), "img2.png": (3, 3), "img3.png": (4, 2), "top.png": (5, 2)}
    table = write_csv(tmp_path / "attrs.csv", rows, header="\ufefffile,thick,size:categorical")
    prepare(photos, out, table)
    size = PreparedDataset(out).attribute_specs[1]
    assert size["kind"] == "categorical" and size["values"] == ["2", "3", "10"]  # in numeric order


def missing_cell(lines):
    lines[2] = "b/img1.png,,blond"
    return lines


def text_in_numbers(lines):
    lines[3] = "a/img2.png,thick,black"
    return lines


def decimal_comma(lines):
    lines[3] = 'a/img2.png,"2,5",black'
    return lines


@pytest.mark.parametrize("rows, header, edit, error, message", [
    ({**ROWS, "zzz.png": (1, "red")}, "file,thick,hair", None, UnknownFileError,
     r"names 1 file\(s\) that are not in SRC \(zzz.png\)"),
    ({k: v for k, v in ROWS.items() if k != "b/img3.png"}, "file,thick,hair", None, MissingAttributesError,
     r"1 image\(s\) have no row in .*attrs.csv \(b/img3.png\): add a row"),
    (ROWS, "file,thick,hair", missing_cell, MissingAttributesError, r"have no value for thick .*\(b/img1.png\)"),
    (ROWS, "file,thick,hair", text_in_numbers, AttributeValueError,
     r"thick .* holds numbers, but a/img2.png has 'thick': give a number, or head the column thick:categorical"),
    (ROWS, "file,thick,hair", decimal_comma, AttributeValueError, r"write decimals with a point"),
    ({**ROWS, "top.png": ("nan", "red")}, "file,thick,hair", None, AttributeValueError, r"thick is nan for top.png"),
    ({**ROWS, "top.png": ("inf", "red")}, "file,thick,hair", None, AttributeValueError, r"thick is inf .*finite"),
    ({k: ("", h) for k, (_, h) in ROWS.items()}, "file,thick,hair", None, AttributeValueError,
     r"The attribute thick in .* is empty: fill it in"),
    ({k: (2.0, h) for k, (_, h) in ROWS.items()}, "file,thick,hair", None, AttributeValueError,
     r"thick is 2 for every image .*never changes"),
    ({k: (t, "black") for k, (t, _) in ROWS.items()}, "file,thick,hair", None, AttributeValueError,
     r"hair is 'black' for every image"),
    (ROWS, "image,thick,hair", None, AttributeFileError, r"must be headed 'file', not 'image'"),
    (ROWS, "file,thick,thick", None, AttributeFileError, r"two attributes named 'thick'"),
    ({**ROWS, "img0.png": (1, "red")}, "file,thick,hair", None, AttributeFileError, r"gives a/img0.png twice"),
    (ROWS, "file,thick,hair,extra", None, AttributeFileError, r"has 3 cells but the header has 4"),
])
def test_bad_attribute_files_are_refused_with_their_reason(photos, out, tmp_path, rows, header, edit, error, message):
    table = write_csv(tmp_path / "attrs.csv", rows, header, edit)
    with pytest.raises(error, match=message) as caught:
        prepare(photos, out, table)
    assert isinstance(caught.value, PrepareError) and "\n" not in str(caught.value)  # one line, as the CLI prints it


def test_a_base_name_shared_by_two_files_is_ambiguous(photos, out, tmp_path):
    Image.new("RGB", (12, 12), "red").save(photos / "b" / "img0.png")  # a/img0.png and b/img0.png
    rows = {k: v for k, v in ROWS.items() if k != "a/img0.png"}
    table = write_csv(tmp_path / "attrs.csv", {"img0.png": (1.0, "red"), **rows})
    with pytest.raises(UnknownFileError, match=r"'img0.png' .* could be any of 2 files in SRC \(a/img0.png, "
                                               r"b/img0.png\): write the path relative to SRC"):
        prepare(photos, out, table)


@pytest.mark.parametrize("content, error, message", [
    ('{"a/img0.png": {"thick": NaN, "hair": "red"}}', AttributeValueError, r"thick is nan for a/img0.png"),
    ('{"a/img0.png": {"thick": 1}, "b/img1.png": {"thick": "two"}}', AttributeValueError, r"holds numbers, but b/img1.png has 'two'"),
    ('{"a/img0.png": {"thick": [1, 2]}}', AttributeValueError, r"a list for thick"),
    ('["a/img0.png"]', AttributeFileError, r"must hold one JSON object of file -> "),
    ('{"a/img0.png": {"thick": 1}, "a/img0.png": {"thick": 2}}', AttributeFileError, r"appears twice"),
    ('{"a/img0.png": {"thick": 1}, "b/img1.png": {"thick": 2, "hair": "red"}}', MissingAttributesError,
     r"have no value for hair"),
])
def test_bad_json_files_are_refused_with_their_reason(photos, out, tmp_path, content, error, message):
    table = tmp_path / "attrs.json"
    table.write_text(content)
    with pytest.raises(error, match=message):
        prepare(photos, out, table)


def test_the_command_line_says_what_to_fix_and_a_changed_file_needs_overwrite(photos, out, tmp_path, capsys):
    bad = write_csv(tmp_path / "bad.csv", {**ROWS, "zzz.png": (1, "red")})
    args = ["prepare", str(photos), str(out), "-r", "8", "-q", "--workers", "1", "--attributes"]
    assert main([*args, str(bad)]) == 2
    assert "not in SRC (zzz.png)" in capsys.readouterr().err
    good = write_csv(tmp_path / "good.csv")
    assert main([*args, str(good)]) == 0
    assert main([*args, str(good)]) == 0 and "already prepared" in capsys.readouterr().out
    write_csv(good, {**ROWS, "top.png": (5.0, "red")})
    with pytest.raises(PrepareError, match="other settings .*attributes"):
        prepare(photos, out, good)
    prepare(photos, out, good, overwrite=True)
    assert PreparedDataset(out).attribute_specs[0]["max"] == 5.0
    with pytest.raises(PrepareError, match="--attributes is for images"):
        prepare_dataset("ring8", tmp_path / "ring", attributes=str(good), progress=False)


# --- models -----------------------------------------------------------------------------------------


def tiny_models(name: str, **fields):
    sizes = ({"z_dim": 8, "g_width": 8, "d_width": 8} if name == "dcgan" else
             {"z_dim": 8, "w_dim": 8, "channel_base": 64, "channel_max": 8, "mapping_layers": 2})
    return create_models(name, resolution=16, channels=1, attributes=SPECS, **sizes, **fields)


@pytest.mark.parametrize("name", ["dcgan", "stylegan2"])
def test_models_take_raw_attributes_and_refuse_wrong_ones(name):
    torch.manual_seed(0)
    config, G, D = tiny_models(name)
    G.eval()
    z = torch.randn(3, 8).repeat(2, 1)
    raw = torch.tensor([[1.0, 0], [2.0, 1], [3.0, 2], [4.0, 0], [2.0, 2], [3.0, 1]])
    x = G(z, attributes=raw)
    assert x.shape == (6, 1, 16, 16) and not torch.allclose(x[:3], x[3:])  # same z, other attributes
    logits, _ = D(x, attributes=raw)
    assert logits.shape == (6,) and not torch.allclose(logits, D(x, attributes=raw.flip(0))[0])
    # None: every attribute at the data's average; NaN: that attribute alone at its average
    average = torch.tensor([[2.0, float("nan")]]).expand(6, -1)
    assert torch.allclose(G(z), G(z, attributes=average), atol=1e-6)
    with pytest.raises(ModelConfigError, match=r"attributes must be a float tensor of shape \(6, 2\) \(thick, hair\)"):
        G(z, attributes=raw[:, :1])
    plain = create_models(name, **{k: getattr(config, k) for k in ("resolution", "channels", "z_dim")})[1]
    with pytest.raises(ModelConfigError, match="not conditioned on attributes"):
        plain(z, attributes=raw)


def test_attribute_descriptions_are_checked():
    with pytest.raises(ModelConfigError, match="attribute thick needs a finite mean and a positive std"):
        create_models("dcgan", attributes=[{**SPECS[0], "std": 0.0}])
    with pytest.raises(ModelConfigError, match="hair needs a list of at least two values"):
        create_models("dcgan", attributes=[{**SPECS[1], "values": ["black"]}])


# --- training, export, editing ------------------------------------------------------------------------


def test_fakes_get_the_attributes_and_class_of_a_real_image(digits_attr):
    from ganforge.train.config import build_config
    from ganforge.train.recipes import create_recipe
    from ganforge.train.recipes.base import Phase

    dataset = PreparedDataset(digits_attr)
    config = build_config(str(digits_attr), "dcgan-small", TINY)
    recipe = create_recipe(config, dataset, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert [a.name for a in recipe.model_config.attributes] == ["ink", "parity"]
    data = next(BatchReader(dataset, 16, seed=0))
    batch = recipe.make_batch(Phase("Dmain", "D", draws=True), data, torch.randn(16, 16))
    pool = {tuple(row) + (int(label),) for row, label in zip(dataset.attributes.tolist(), dataset.labels)}
    drawn = {tuple(row) + (int(label),) for row, label in
             zip(batch.extra["fake_attributes"].tolist(), batch.extra["fake_labels"])}
    assert drawn <= pool  # each fake's (ink, parity, class) is one real image's
    assert torch.equal(batch.extra["attributes"], data[2])
    loss, _ = recipe.loss(Phase("Dmain", "D"), batch)
    loss.backward()
    assert recipe.D.project_attributes.embed.weight.grad.abs().sum() > 0
    recipe.loss(Phase("Gmain", "G"), batch)[0].backward()
    assert recipe.G.attribute_affines[0].gain.weight.grad.abs().sum() > 0


def test_attribute_loss_by_hand():
    from ganforge.models.layers import AttributeEncoder, AttributeSpec, attribute_loss

    encoder = AttributeEncoder(tuple(AttributeSpec(**s) for s in SPECS))  # thick (mean 2, std 0.5), hair (3 values)
    attributes = torch.tensor([[3.0, 1.0], [float("nan"), 2.0]])
    predicted = torch.tensor([[1.5, 0.0, 2.0, 0.0], [9.0, 1.0, 0.0, 0.5]])  # (B, 1 + 3)
    # thick: only the first image has one: standardised (3 - 2) / 0.5 = 2, predicted 1.5 -> error 0.25
    thick = (1.5 - 2.0) ** 2
    # hair: cross-entropy of the logits against the index (1 and 2)
    logits = predicted[:, 1:]
    hair = -(torch.log_softmax(logits, 1)[0, 1] + torch.log_softmax(logits, 1)[1, 2]) / 2
    assert attribute_loss(encoder, predicted, attributes).item() == pytest.approx((thick + hair.item()) / 2, rel=1e-6)


def test_attribute_weight_trains_a_head_on_reals_and_g_toward_the_asked_values(digits_attr):
    from ganforge.train.config import build_config
    from ganforge.train.recipes import RecipeError, create_recipe
    from ganforge.train.recipes.base import Phase

    dataset = PreparedDataset(digits_attr)
    config = build_config(str(digits_attr), "dcgan-small", {**TINY, "attribute_weight": 2.0})
    recipe = create_recipe(config, dataset, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert recipe.model_config.attribute_head
    data = next(BatchReader(dataset, 16, seed=0))
    batch = recipe.make_batch(Phase("Dmain", "D", draws=True), data, torch.randn(16, 16))
    loss, stats = recipe.loss(Phase("Dmain", "D"), batch)
    # the D term is the head's loss on the reals' own attributes, weighted
    from ganforge.models.layers import attribute_loss

    with torch.no_grad():
        predicted = recipe.D(batch.real, batch.labels, attributes=batch.extra["attributes"], predict_attributes=True)[2]
        expected = 2.0 * attribute_loss(recipe.D.encode_attributes, predicted, batch.extra["attributes"])
    assert stats["D_attributes"].item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert recipe.D.regress_attributes.predict.weight.grad.abs().sum() > 0
    recipe.D.zero_grad()
    g_loss, g_stats = recipe.loss(Phase("Gmain", "G"), batch)
    assert g_stats["G_attributes"] > 0
    g_loss.backward()
    assert recipe.G.attribute_affines[0].gain.weight.grad.abs().sum() > 0
    with pytest.raises(RecipeError, match="StyleGAN2|DCGAN"):
        create_recipe(build_config(str(digits_attr), None, {**SG2, "attribute_weight": 1.0}), dataset,
                      torch.device("cpu"), torch.Generator())


@pytest.fixture(scope="module")
def trained(digits_attr, tmp_path_factory):
    from ganforge.api import train_gan

    runs = tmp_path_factory.mktemp("runs")
    dcgan = train_gan(digits_attr, preset="dcgan-small",
                      overrides={**TINY, "kimg": 0.064, "runs_dir": str(runs / "d")}, progress=False).run_dir
    sg2 = train_gan(digits_attr, overrides={**SG2, "kimg": 0.032, "runs_dir": str(runs / "s")}, progress=False).run_dir
    return {"dcgan": dcgan, "stylegan2": sg2}


@pytest.mark.parametrize("name", ["dcgan", "stylegan2"])
def test_export_keeps_the_attributes_and_edits_keep_the_latent(trained, digits_attr, tmp_path, name):
    from ganforge.export import export_generator

    folder = export_generator(trained[name], tmp_path / "gen")
    gen = Generator.from_pretrained(folder, device="cpu")
    manifest = PreparedDataset(digits_attr).attribute_specs
    specs = attribute_specs(gen)
    assert [(s.name, s.kind) for s in specs] == [("ink", "continuous"), ("parity", "categorical")]
    assert specs[0].mean == manifest[0]["mean"] and specs[0].std == manifest[0]["std"]
    assert (specs[0].low, specs[0].high) == (manifest[0]["min"], manifest[0]["max"])
    assert specs[1].values == ("even", "odd")
    assert "`ink` (a number" in (folder / "README.md").read_text()

    name_, start, stop = parse_attribute_edit("ink=60..95")
    values = edit_values(gen, name_, start, stop, 5)
    assert values == pytest.approx([60, 68.75, 77.5, 86.25, 95])
    images = attribute_edit(gen, 7, "ink", values, label=3)
    pixels = np.stack([np.asarray(im, np.int16) for im in images])
    assert len(images) == 5 and np.abs(pixels[0] - pixels[-1]).mean() > 0  # the attribute changes the image
    # the same latent throughout: each image is seed 7's latent at that value, nothing else drawn
    direct = synthesize(gen.module, gen.latents([7]), torch.tensor([3]),
                        attributes=torch.tensor([[values[2], float("nan")]]))
    assert np.array_equal(np.asarray(gen.to_images(direct, [7])[0]), np.asarray(images[2]))  # marked with seed 7
    again = attribute_edit(gen, 7, "ink", values, label=3)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(images, again))
    other_seed = attribute_edit(gen, 8, "ink", values[2:3], label=3)[0]
    assert not np.array_equal(np.asarray(other_seed), np.asarray(images[2]))
    odd = attribute_edit(gen, 7, "parity", edit_values(gen, "parity", "even", "odd", 9), others={"ink": 70}, label=3)
    assert len(odd) == 2


def test_edit_mistakes_are_refused_with_a_sentence(trained, tmp_path):
    from ganforge.export import export_generator

    gen = Generator.from_pretrained(export_generator(trained["dcgan"], tmp_path / "gen"), device="cpu")
    with pytest.raises(AttributeEditError, match=r"Unknown attribute 'inc'; this generator's are: ink \(a number, "):
        attribute_edit(gen, 7, "inc", [1.0])
    with pytest.raises(AttributeEditError, match=r"parity has no value 'blue'; its values are even, odd"):
        edit_values(gen, "parity", "even", "blue", 3)
    with pytest.raises(AttributeEditError, match="ink is a number, not 'lots'"):
        attribute_edit(gen, 7, "ink", ["lots"])
    with pytest.raises(AttributeEditError, match="is not NAME=START..STOP"):
        parse_attribute_edit("ink")
    assert parse_attribute_edit(" slant = -0.3..0.3 ") == ("slant", -0.3, 0.3)
    assert parse_attribute_edit("hair=black..blond") == ("hair", "black", "blond")


def test_a_resumed_attribute_run_equals_an_uninterrupted_one(digits_attr, tmp_path):
    from ganforge.api import train_gan
    from ganforge.train import checkpoint as ckpt

    straight = train_gan(digits_attr, preset="dcgan-small",
                         overrides={**TINY, "kimg": 0.096, "runs_dir": str(tmp_path / "a")}, progress=False).run_dir
    stopped = train_gan(digits_attr, preset="dcgan-small",
                        overrides={**TINY, "kimg": 0.048, "runs_dir": str(tmp_path / "b")}, progress=False).run_dir
    train_gan(resume=stopped, overrides={"kimg": 0.096}, progress=False)
    a, b = (ckpt.latest_loadable(run / "checkpoints")[1] for run in (straight, stopped))
    assert a["images_seen"] == b["images_seen"] == 96
    assert_same_checkpoints(a, b)


def test_conditional_no_trains_without_attributes(digits_attr):
    from ganforge.train.config import build_config
    from ganforge.train.recipes import create_recipe

    config = build_config(str(digits_attr), "dcgan-small", {**TINY, "conditional": "no"})
    recipe = create_recipe(config, PreparedDataset(digits_attr), torch.device("cpu"), torch.Generator())
    assert recipe.model_config.attributes == () and recipe.num_classes == 0


def test_without_a_preset_attribute_data_trains_d_to_read_attributes_and_class(digits_attr, digits, capsys):
    from ganforge.api import train_gan

    config = train_gan(digits_attr, dry_run=True, overrides={"device": "cpu"}).config
    assert config.attribute_weight == 2.0 and config.model["class_head"] is True and config.loss == "hinge"
    assert config.model.get("conditioning", "cbn-projection") == "cbn-projection"  # D's logit reads the class too
    assert "attributes, so D also reads them and the class (AC-GAN's class head)" in capsys.readouterr().err
    mine = train_gan(digits_attr, dry_run=True, progress=False, overrides={"device": "cpu", "attribute_weight": 0.5}).config
    assert mine.attribute_weight == 0.5  # the command line wins
    plain = train_gan(digits_attr, dry_run=True, progress=False, overrides={"device": "cpu", "conditional": "no"}).config
    assert plain.attribute_weight == 0 and "conditioning" not in plain.model  # nothing to read: the plain defaults
    styled = train_gan(digits_attr, dry_run=True, progress=False, overrides={**SG2, "device": "cpu"}).config
    assert styled.attribute_weight == 0 and styled.loss == "nonsaturating"  # another model: its own settings
    assert train_gan(digits, dry_run=True, progress=False, overrides={"device": "cpu"}).config.attribute_weight == 0


# --- the benchmark's Morpho-MNIST measurements ---------------------------------------------------------


@pytest.fixture(scope="module")
def morpho():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_attributes.py"
    spec = importlib.util.spec_from_file_location("bench_attributes", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stroke(width: int, lean: int = 0) -> np.ndarray:
    """A 28 px image with one bright stroke from (14 + lean, 4) at the top to (14 - lean, 24) at the bottom."""
    image = Image.new("L", (28, 28))
    ImageDraw.Draw(image).line([(14 + lean, 4), (14 - lean, 24)], fill=255, width=width)
    return np.asarray(image)


def test_morpho_thickness_grows_with_the_stroke_and_slant_follows_the_shear(morpho):
    widths = [1, 2, 3, 5]
    thickness = [morpho.stroke_thickness(stroke(w)) for w in widths]
    assert thickness == sorted(thickness) and thickness[0] < thickness[-1]
    assert thickness == pytest.approx(widths, abs=0.5)  # a straight bar's width, in pixels
    assert morpho.slant(stroke(3, lean=5)) == pytest.approx(np.arctan(10 / 20), abs=0.05)  # top to the right
    assert morpho.slant(stroke(3, lean=-5)) < -0.4
    assert abs(morpho.slant(stroke(3))) < 1e-9
    assert morpho.stroke_thickness(np.zeros((28, 28), np.uint8)) == 0.0
