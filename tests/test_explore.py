"""Exploring a generator: interpolation walks, breeding latents, projecting images back to latents."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge import explore
from ganforge.data.prepare import prepare_dataset
from ganforge.export import export_generator
from ganforge.generator import Generator, GeneratorError
from ganforge.api import train_gan

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TINY = {"model.g_width": 8, "model.d_width": 8, "model.z_dim": 16, "batch_size": 16, "tick_kimg": 0.032,
        "grid_size": 10, "precision": "fp32", "ema_kimg": 0.1, "kimg": 0.1}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("explore")
    data = root / "digits-16"
    prepare_dataset("digits", data, resolution=16, workers=1, progress=False)
    made = []
    for conditional in ("yes", "no"):  # digits has labels: one generator with classes, one without
        overrides = {**TINY, "conditional": conditional, "runs_dir": str(root / "runs")}
        run = train_gan(data, preset="dcgan-small", overrides=overrides, progress=False)
        made.append(export_generator(run.run_dir))
    return made[0], made[1]


@pytest.fixture(scope="module")
def classes(runs) -> Generator:
    return Generator.from_pretrained(runs[0], device="cpu")


@pytest.fixture(scope="module")
def plain(runs) -> Generator:
    return Generator.from_pretrained(runs[1], device="cpu")


def pixels(images) -> np.ndarray:
    return np.stack([np.asarray(im) for im in images])


# --- interpolate ---------------------------------------------------------------------------------------


def test_slerp_keeps_gaussian_length_and_hits_its_ends():
    a, b = torch.randn(2, 512, generator=torch.Generator().manual_seed(0))
    path = explore.slerp(a, b, torch.tensor([0.0, 0.5, 1.0]))
    assert torch.equal(path[0], a) and torch.allclose(path[2], b, atol=1e-5)
    assert abs(path[1].norm() / a.norm() - 1) < 0.1  # a straight line's middle would be ~1/sqrt(2) as long
    assert (a + b).norm() / 2 < 0.8 * a.norm()


def test_interpolation_loops_through_the_seeds_own_images(plain, tmp_path):
    seeds = [1, 7, 42]
    walk = explore.interpolate(plain, seeds, steps=4, out=tmp_path, fps=10)
    assert len(walk.frames) == len(seeds) * 4 and walk.latents.shape == (12, plain.z_dim) and walk.label is None
    assert np.array_equal(pixels(walk.frames[::4]), pixels(plain.sample(seeds)))  # exactly, not nearly
    assert torch.equal(walk.latents[::4], plain.latents(seeds))
    assert not np.array_equal(pixels(walk.frames[1:2]), pixels(walk.frames[:1]))  # it moves between them
    with Image.open(tmp_path / "interpolation.gif") as gif:
        assert gif.n_frames == 12 and gif.info["loop"] == 0 and min(gif.size) >= explore.ANIMATION_MIN_SIZE
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:  # the video is optional, and the walk says why it is missing
        assert "imageio-ffmpeg" in walk.skipped["interpolation.mp4"] and walk.files == [tmp_path / "interpolation.gif"]
    else:
        assert (tmp_path / "interpolation.mp4").stat().st_size > 0 and not walk.skipped


def test_conditional_interpolation_keeps_one_class(classes):
    seeds = [3, 14, 25]
    walk = explore.interpolate(classes, seeds, steps=2)
    assert walk.label == 3 % classes.num_classes and walk.files == []  # the first seed's class; no out, no files
    assert np.array_equal(pixels(walk.frames[::2]), pixels(classes.sample(seeds, label=walk.label)))
    assert explore.interpolate(classes, seeds, steps=2, label=5).label == 5


def test_interpolation_refuses_what_it_cannot_walk(plain):
    with pytest.raises(GeneratorError, match="at least two seeds"):
        explore.interpolate(plain, [1])
    with pytest.raises(GeneratorError, match="not class-conditional"):
        explore.interpolate(plain, [1, 2], label=3)


# --- breed ---------------------------------------------------------------------------------------------


def test_breeding_is_reproducible_and_children_breed_again(plain, tmp_path):
    first = explore.breed(plain, [3, 17], children=6, seed=0, out=tmp_path / "a")
    again = explore.breed(plain, [3, 17], children=6, seed=0, out=tmp_path / "b")
    other = explore.breed(plain, [3, 17], children=6, seed=1)
    assert torch.equal(first.latents, again.latents) and np.array_equal(pixels(first.images), pixels(again.images))
    assert not torch.equal(first.latents, other.latents)
    assert first.parents == ["seed 3", "seed 17"] and first.labels == [None] * 6
    for k in range(6):
        record = np.load(tmp_path / "a" / f"child-{k:02d}.npy", allow_pickle=False)  # plain numpy, no pickle
        assert np.array_equal(record["z"], first.latents[k].numpy()) and record["label"] == -1
        with Image.open(tmp_path / "a" / f"child-{k:02d}.png") as png:
            assert png.text["parents"] == "seed 3, seed 17" and png.text["mode"] == "blend"
            assert np.array_equal(np.asarray(png), pixels(first.images[k:k + 1])[0])
    assert (tmp_path / "a" / "children.png").is_file()
    # a saved child is the same latent again: bred with itself and no mutation, it is itself
    child = tmp_path / "a" / "child-02.npy"
    selfed = explore.breed(plain, [child, child], children=1, mutation=0)
    assert torch.allclose(selfed.latents[0], first.latents[2], atol=1e-5)
    grand = explore.breed(plain, [child, tmp_path / "a" / "child-04.npy", 5], children=3, mode="crossover",
                          mutation=0, out=tmp_path / "c")
    parents = torch.stack([first.latents[2], first.latents[4], plain.latents([5])[0]])
    assert grand.parents == ["child-02.npy", "child-04.npy", "seed 5"]
    assert bool((grand.latents[:, None, :] == parents[None]).any(dim=1).all())  # each value from some parent


def test_blended_children_keep_the_parents_length(plain):
    brood = explore.breed(plain, [3, 17], children=8, mutation=0)
    parents = plain.latents([3, 17]).norm(dim=1)
    lengths = brood.latents.norm(dim=1)
    assert bool(((lengths >= parents.min() - 1e-4) & (lengths <= parents.max() + 1e-4)).all())


def test_conditional_children_take_a_parents_class(classes, tmp_path):
    brood = explore.breed(classes, [3, 17], children=16, out=tmp_path)  # seeds 3, 17 draw classes 3 and 7
    assert set(brood.labels) == {3, 7}
    assert np.array_equal(pixels(brood.images), pixels(classes.to_images(classes.synthesize(
        brood.latents, torch.tensor(brood.labels)))))
    assert np.load(tmp_path / "child-00.npy", allow_pickle=False)["label"] == brood.labels[0]
    assert explore.breed(classes, [tmp_path / "child-00.npy", 4], children=4).labels[0] in (brood.labels[0], 4)
    assert explore.breed(classes, [3, 17], children=4, label=5).labels == [5] * 4


def test_breeding_explains_bad_parents(classes, plain, tmp_path):
    np.save(tmp_path / "bare.npy", np.zeros(plain.z_dim, np.float32))
    np.save(tmp_path / "short.npy", np.zeros(3, np.float32))
    assert explore.breed(plain, [tmp_path / "bare.npy", 1], children=1).parents[0] == "bare.npy"
    with pytest.raises(GeneratorError, match="has no class"):
        explore.breed(classes, [tmp_path / "bare.npy", 1])
    assert explore.breed(classes, [tmp_path / "bare.npy", 1], children=2, label=2).labels == [2, 2]
    with pytest.raises(GeneratorError, match="another one"):
        explore.breed(plain, [tmp_path / "short.npy", 1])
    with pytest.raises(GeneratorError, match="not a file"):
        explore.breed(plain, [tmp_path / "missing.npy", 1])
    with pytest.raises(GeneratorError, match="crossover"):
        explore.breed(plain, [1, 2], mode="mix")
    with pytest.raises(GeneratorError, match="1 parent.*give 2"):  # as breed --help says: two or more
        explore.breed(plain, [1])
    with pytest.raises(GeneratorError, match="--class"):  # the option the command line has
        explore.breed(classes, [tmp_path / "bare.npy", 1])
    assert explore.parse_latents("0-2,brood/child-01.npy") == [0, 1, 2, "brood/child-01.npy"]


# --- project -------------------------------------------------------------------------------------------


def random_pair_mse(gen: Generator) -> float:
    """How far apart two of the generator's images are on average: the scale a projection must beat."""
    x = gen.synthesize(gen.latents(range(32)), gen.labels_for(32, None, range(32)))
    return float((x[:16] - x[16:]).pow(2).mean())


@pytest.mark.parametrize("which", ["plain", "classes"])
def test_projection_finds_a_generated_image_again(which, request, tmp_path):
    gen = request.getfixturevalue(which)
    # the generator's own output: a sample would also carry the provenance mark, which no latent reproduces
    target = Generator(gen.module, gen.config, gen.path, mark=False).sample([123])[0]
    found = explore.project(gen, target, steps=150, restarts=4, seed=1, out=tmp_path)  # starts far from seed 123
    start = explore.project(gen, target, steps=1, restarts=4, seed=1)
    # A generated target is reachable to within uint8 rounding (~1e-5). Random pairs of this tiny
    # generator's images differ by ~0.02, untouched starts by about as much: 5% of it is a clear find.
    scale = random_pair_mse(gen)
    assert found.pixel_mse < 0.05 * scale < start.pixel_mse
    assert found.feature_distance is None and found.feature_gradients is None
    assert (found.label is None) == (which == "plain")
    record = np.load(tmp_path / "projected.npy", allow_pickle=False)
    assert np.array_equal(record["z"], found.latent.numpy())
    with Image.open(tmp_path / "reconstruction.png") as png:
        assert np.array_equal(np.asarray(png), np.asarray(found.reconstruction)) and "pixel_mse" in png.text
    with Image.open(tmp_path / "target.png") as png:
        assert np.array_equal(np.asarray(png), np.asarray(target))
    with Image.open(tmp_path / "projection.gif") as gif:
        assert gif.n_frames > 10 and gif.info["loop"] == 0


def test_projection_takes_any_image_file(plain, tmp_path):
    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "photo.jpg")
    found = explore.project(plain, tmp_path / "photo.jpg", steps=2, restarts=2)
    assert found.target.size == (16, 16) and found.target.mode == "L" and math.isfinite(found.pixel_mse)
    with pytest.raises(GeneratorError, match="not a file"):
        explore.project(plain, tmp_path / "nothing.png")
    (tmp_path / "fake.png").write_text("not an image")
    with pytest.raises(GeneratorError, match="Pillow"):
        explore.project(plain, tmp_path / "fake.png")


class TinyFeatures:
    """Stands in for the Inception extractor: a differentiable (B, 3, 299, 299) -> (B, 48) network."""

    def __init__(self):
        self.device = torch.device("cpu")
        self.network = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten())


def test_feature_term_steers_the_descent_when_gradients_flow(plain):
    target = plain.sample([7])[0]
    pixels_only = explore.project(plain, target, steps=20, restarts=2, seed=3)
    both = explore.project(plain, target, steps=20, restarts=2, seed=3, feature_weight=10.0, feature_every=2,
                           extractor=TinyFeatures())
    assert both.feature_gradients is True and both.feature_distance >= 0
    assert not torch.equal(both.latent, pixels_only.latent)


def test_feature_term_with_the_real_inception_network(plain):
    from ganforge.metrics.evaluate import FeatureExtractor

    weights = SHARED / "inception" / "fid-inception-v3-pool3.pt"
    if not weights.is_file():
        pytest.skip(f"no Inception weights at {weights}")
    extractor = FeatureExtractor(inception=weights, progress=False)
    target = plain.sample([7])[0]
    found = explore.project(plain, target, steps=3, restarts=2, feature_weight=1.0, extractor=extractor)
    # on the CPU oneDNN's fused convolution has no backward: the term then only chooses the start
    assert isinstance(found.feature_gradients, bool) and 0 <= found.feature_distance < math.inf


# --- hostile arguments ---------------------------------------------------------------------------------


def test_walks_refuse_what_they_cannot_draw(plain):
    for steps in (0, -4):
        with pytest.raises(GeneratorError, match="at least 1 frame"):
            explore.interpolate(plain, [1, 2], steps=steps)
    with pytest.raises(GeneratorError, match="2,000,000 frames"):  # would hold every frame in memory
        explore.interpolate(plain, [1, 2], steps=1_000_000)
    for fps in (0, float("nan"), 1e-9, 1e9):
        with pytest.raises(GeneratorError, match="frame rate"):
            explore.interpolate(plain, [1, 2], fps=fps)
    with pytest.raises(GeneratorError, match="truncation"):
        explore.interpolate(plain, [1, 2], truncation=-0.5)


def test_broods_refuse_what_they_cannot_breed(plain):
    for children in (0, -1, 10**8):
        with pytest.raises(GeneratorError, match="children"):
            explore.breed(plain, [1, 2], children=children)
    for mutation in (-1, float("nan"), 1e200):
        with pytest.raises(GeneratorError, match="mutation"):
            explore.breed(plain, [1, 2], mutation=mutation)
    for seed in (-1, 2**64):
        with pytest.raises(GeneratorError, match="seeds are whole numbers"):
            explore.breed(plain, [1, 2], seed=seed)


@pytest.mark.parametrize("text, says", [
    ("1,x.npz", "neither a seed"), ("1,,2", "empty item"), ("0-5000", "more than 1,000"), (",", "No latents"),
    ("3,-4", "negative"), ("7-2", "reversed"),
])
def test_latent_lists_are_checked(text, says):
    with pytest.raises(GeneratorError, match=says):
        explore.parse_latents(text)


def test_damaged_or_foreign_latent_files_are_named(classes, plain, tmp_path):
    record = np.zeros((), dtype=[("z", "<f4", (plain.z_dim,)), ("label", "<i8")])
    files = {"nan.npy": np.full(plain.z_dim, np.nan, np.float32), "three.npy": np.zeros(3, record.dtype),
             "ints.npy": np.zeros(plain.z_dim, np.int64)}
    for name, array in files.items():
        np.save(tmp_path / name, array)
    np.save(tmp_path / "pickled.npy", np.array([{"z": 1}], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "archive.npz", z=np.zeros(plain.z_dim, np.float32))
    (tmp_path / "archive.npz").rename(tmp_path / "archive.npy")
    record["label"] = 42
    np.save(tmp_path / "class42.npy", record)
    for name, says in (("nan.npy", "NaN"), ("three.npy", "holds 3 latent records"), ("ints.npy", "another one"),
                       ("pickled.npy", "pickled objects"), ("archive.npy", "npz archive")):
        with pytest.raises(GeneratorError, match=says):
            explore.load_latent(plain, tmp_path / name)
    with pytest.raises(GeneratorError, match="class 42, which this generator does not have"):
        explore.load_latent(classes, tmp_path / "class42.npy")


def test_images_that_cannot_be_projected_are_explained(plain, tmp_path):
    from awkward import encode, first_half, png_bomb, png_with_corrupt_data, solid

    cases = {"bomb.png": (png_bomb(20_000, 20_000), "decompression bomb"), "text.png": (b"hello", "Pillow"),
             "cut.png": (first_half(encode(solid(size=(32, 32)))), "Pillow"),
             "corrupt.png": (png_with_corrupt_data(), "Pillow")}
    for name, (data, says) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(GeneratorError, match=says):
            explore.target_image(plain, tmp_path / name)
    with pytest.raises(GeneratorError, match="not a file"):
        explore.target_image(plain, tmp_path)  # a folder
    with pytest.raises(GeneratorError, match="projection seed"):
        explore.project(plain, plain.sample([1])[0], seed=-1)
    with pytest.raises(GeneratorError, match="lr > 0"):
        explore.project(plain, plain.sample([1])[0], feature_weight=float("nan"))
    (tmp_path / "file").write_text("")
    with pytest.raises(GeneratorError, match="is a file"):  # refused before the search, not after it
        explore.project(plain, plain.sample([1])[0], steps=1, out=tmp_path / "file")


# --- nothing already in the output folder is written over ------------------------------------------------


def test_a_second_brood_into_the_same_folder_keeps_the_first_and_its_parent(plain, tmp_path):
    first = explore.breed(plain, [3, 17], children=4, out=tmp_path / "brood")
    before = {p.name: p.read_bytes() for p in (tmp_path / "brood").iterdir()}
    parent = tmp_path / "brood" / "child-02.npy"
    with pytest.raises(GeneratorError) as err:  # the README's workflow, with the default --out both times
        explore.breed(plain, [parent, 5], children=4, out=tmp_path / "brood")
    message = str(err.value)
    assert "child-00.npy already exists (and 8 more" in message and "--overwrite" in message and "--out" in message
    assert {p.name: p.read_bytes() for p in (tmp_path / "brood").iterdir()} == before  # nothing touched
    again = explore.breed(plain, [parent, 5], children=4, out=tmp_path / "brood2")
    assert not torch.equal(again.latents, first.latents)
    explore.breed(plain, [parent, 5], children=2, out=tmp_path / "brood", overwrite=True)
    assert (tmp_path / "brood" / "child-00.npy").read_bytes() != before["child-00.npy"]
    assert (tmp_path / "brood" / "child-03.npy").read_bytes() == before["child-03.npy"]  # not one it wrote


def test_interpolate_and_project_refuse_to_write_over_files(plain, tmp_path):
    (tmp_path / "interpolation.gif").write_text("precious")
    with pytest.raises(GeneratorError, match="interpolation.gif already exists: choose another --out"):
        explore.interpolate(plain, [1, 2], steps=2, out=tmp_path)
    assert (tmp_path / "interpolation.gif").read_text() == "precious"
    explore.interpolate(plain, [1, 2], steps=2, out=tmp_path, overwrite=True)
    assert (tmp_path / "interpolation.gif").read_bytes().startswith(b"GIF")
    (tmp_path / "target.png").write_text("precious")
    with pytest.raises(GeneratorError, match="target.png already exists.*--overwrite"):
        explore.project(plain, plain.sample([1])[0], steps=1, restarts=1, out=tmp_path)
    assert (tmp_path / "target.png").read_text() == "precious" and not (tmp_path / "projected.npy").exists()


def test_projection_steps_are_capped_and_long_ones_show_a_bar(plain, capsys, monkeypatch):
    with pytest.raises(GeneratorError, match="at most 100,000 steps"):
        explore.project(plain, plain.sample([1])[0], steps=1_000_000_000)
    import tqdm

    totals = []
    original = tqdm.tqdm.__init__

    def recording(self, *args, **kwargs):
        totals.append((kwargs.get("total"), kwargs.get("disable")))
        original(self, *args, **kwargs)

    monkeypatch.setattr(tqdm.tqdm, "__init__", recording)
    explore.project(plain, plain.sample([1])[0], steps=6, restarts=1)
    explore.project(plain, plain.sample([1])[0], steps=6, restarts=1, progress=False)
    assert totals == [(6, False), (6, True)]
