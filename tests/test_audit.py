"""The memorisation audit: a copying generator is caught, fresh real images are not, the statistics match
independent computations, and the report files are complete. Real CIFAR-10 test images from
../shared/data; most tests use pooled pixels as cheap features, one uses the real Inception network."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganforge.data.fetch import fetch_dataset
from ganforge.metrics import audit
from ganforge.metrics.audit import (
    AuditError,
    audit_generator,
    data_copying_test,
    mann_whitney_z,
)
from ganforge.errors import GanforgeError
from ganforge.metrics.sources import ImageSource, open_source

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def pooled(images: np.ndarray) -> np.ndarray:
    """uint8 (B, 32, 32, C) -> (B, 64 C): 4x4 average pooling, a cheap stand-in for Inception features."""
    x = images.astype(np.float32) / 255
    b, h, w, c = x.shape
    return x.reshape(b, h // 4, 4, w // 4, 4, c).mean(axis=(2, 4)).reshape(b, -1)


FAST = {"extractor": pooled, "device": "cpu", "progress": False}


@pytest.fixture(scope="module")
def cifar() -> np.ndarray:
    images = fetch_dataset("cifar10-jpeg", "test", mirror=SHARED, progress=False).images
    # the files come sorted by class: shuffle, so that every slice holds all ten classes
    return images[np.random.default_rng(0).permutation(len(images))[:1300]]  # (1300, 32, 32, 3)


def array_source(images: np.ndarray, name: str) -> ImageSource:
    """Real images in the given order (so results line up with the array), seed ignored."""
    def batches(count, batch_size, seed):
        for start in range(0, min(count, len(images)), batch_size):
            yield images[start:min(start + batch_size, count)]

    return ImageSource("folder", Path(name), len(images), batches)


def copier(training: np.ndarray, noise: float = 2.0) -> ImageSource:
    """A generator that memorised its training set: random training images plus a little noise."""
    def batches(count, batch_size, seed):
        rng = np.random.default_rng(seed)
        for start in range(0, count, batch_size):
            picks = training[rng.integers(len(training), size=min(batch_size, count - start))]
            yield np.clip(picks + rng.normal(0, noise, picks.shape), 0, 255).astype(np.uint8)

    return ImageSource("generator", Path("copier"), None, batches)


def test_copying_generator_is_caught_and_reported(cifar, tmp_path):
    training = cifar[:800]
    result = audit_generator(copier(training), array_source(training, "train"), count=200, pairs=6,
                             out=tmp_path / "audit", **FAST)
    assert result.verdict == "copying"
    assert result.c_t < -5
    assert result.feature.near_duplicate_share > 0.5  # ~80% of copies land in the reference part
    assert any("held out" in note for note in result.notes)  # no held-out set: the split is declared
    assert result.setup["heldout_count"] == 160 and result.setup["reference"] == 640  # 1/5 held out

    out = tmp_path / "audit"
    assert sorted(p.name for p in out.iterdir()) == ["audit.json", "audit.md", "closest-pairs.png", "distances.png"]
    saved = json.loads((out / "audit.json").read_text())
    assert saved["verdict"] == "copying" and saved["c_t"] == pytest.approx(result.c_t)
    markdown = (out / "audit.md").read_text()
    assert "(closest-pairs.png)" in markdown and "(distances.png)" in markdown and "C_T" in markdown
    # 4 rows of 6 pairs of 32x32 images, 1 px gaps, enlarged by a whole factor to >= 512 px, labels on the left
    grid_w, grid_h = 6 * 33 + 1, 4 * 33 + 1
    scale = math.ceil(512 / grid_w)
    label_w = 8 + 7 * max(len(name) for name in audit.PAIR_ROWS)
    assert Image.open(out / "closest-pairs.png").size == (label_w + grid_w * scale, grid_h * scale)
    # the nearest pair is a noised copy: the training image beside it is the original
    gen, train = result.pairs["pixel"]
    assert np.abs(gen[0].astype(int) - train[0]).max() <= 10


def test_fresh_images_are_not_copying_and_distances_are_exact(cifar):
    training, fresh, heldout = cifar[:800], cifar[800:1000], cifar[1000:1200]
    result = audit_generator(array_source(fresh, "fresh"), array_source(training, "train"),
                             heldout=array_source(heldout, "heldout"), count=200, **FAST)
    assert result.verdict == "no evidence of copying"
    assert abs(result.c_t) < 3
    assert result.feature.near_duplicate_share <= audit.NEAR_SHARE
    assert result.setup["heldout_unseen"] and result.setup["reference"] == 800
    # nearest-neighbour distances against a brute-force computation, in both spaces
    def brute_nearest(queries, reference):
        return np.array([np.sqrt(((reference - q) ** 2).sum(1)).min() for q in queries])

    def flat(images):
        return images.reshape(len(images), -1).astype(np.float64) / 255

    assert np.allclose(result.pixel.generated, brute_nearest(flat(fresh), flat(training)))
    brute_features = brute_nearest(pooled(fresh).astype(np.float64), pooled(training).astype(np.float64))
    assert np.allclose(result.feature.generated, brute_features, atol=1e-5)


def test_images_far_from_the_data_read_as_underfitting(cifar):
    rng = np.random.default_rng(0)
    blocks = rng.choice([0, 255], size=(200, 8, 8, 3)).astype(np.uint8)  # saturated 4x4 colour blocks
    noise = np.repeat(np.repeat(blocks, 4, axis=1), 4, axis=2)
    result = audit_generator(array_source(noise, "noise"), array_source(cifar[:800], "train"),
                             heldout=array_source(cifar[1000:1200], "heldout"), count=200, **FAST)
    assert result.verdict == "underfitting" and result.c_t > 3


def test_mann_whitney_z_matches_scipy():
    from scipy.stats import mannwhitneyu, norm

    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 40), rng.normal(0.5, 1, 55)
    u = sum((x > y) + 0.5 * (x == y) for x in a for y in b)  # pairs where the first sample is larger
    assert mannwhitneyu(a, b).statistic == pytest.approx(u)
    # scipy's one-sided p-value with the continuity correction is Phi(Z) for the same Z (no ties here)
    p = mannwhitneyu(a, b, alternative="less", method="asymptotic", use_continuity=True).pvalue
    assert mann_whitney_z(a, b) == pytest.approx(norm.ppf(p), rel=1e-6)
    assert mann_whitney_z(a, b) < 0  # the first sample is smaller


def test_data_copying_statistic_on_gaussians():
    rng = np.random.default_rng(2)
    train, held = rng.normal(size=(600, 8)), rng.normal(size=(300, 8))
    copies = train[rng.integers(600, size=300)] + rng.normal(0, 0.01, (300, 8))
    assert data_copying_test(train, held, copies, cells=3).c_t < -10
    fresh = data_copying_test(train, held, rng.normal(size=(300, 8)), cells=3)
    assert abs(fresh.c_t) < 3
    assert data_copying_test(train, held, rng.normal(0, 2, (300, 8)), cells=3).c_t > 3
    # C_T is the held-out-weighted mean of the per-cell Z over cells with > 20 generated samples
    used = [c for c in fresh.cells if c["used"]]
    assert all(c["generated"] > audit.MIN_CELL_GENERATED for c in used)
    expected = sum(c["z"] * c["heldout"] for c in used) / sum(c["heldout"] for c in used)
    assert fresh.c_t == pytest.approx(expected)


def test_user_mistakes_are_explained(cifar):
    training = array_source(cifar[:100], "train")
    with pytest.raises(AuditError, match="are the training images"):
        audit_generator(copier(cifar[:100]), training, heldout=training, count=50, **FAST)
    with pytest.raises(AuditError, match="--data"):
        audit_generator(copier(cifar[:100]), None, count=50, **FAST)
    small = array_source(cifar[:60, :28, :28], "small")
    with pytest.raises(AuditError, match="resolution 32"):
        audit_generator(copier(cifar[:100]), training, heldout=small, count=50, **FAST)
    with pytest.raises(AuditError, match="at least 2"):
        audit_generator(copier(cifar[:100]), training, count=1, **FAST)


def test_channels_are_matched_only_when_nothing_is_lost():
    grey = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1)
    assert audit._conform(grey, (4, 4, 3), "generated").shape == (2, 4, 4, 3)
    assert np.array_equal(audit._conform(np.repeat(grey, 3, axis=3), (4, 4, 1), "generated"), grey)
    colour = np.zeros((2, 4, 4, 3), np.uint8)
    colour[..., 0] = 255
    with pytest.raises(AuditError, match="channels"):
        audit._conform(colour, (4, 4, 1), "held-out")


def test_real_inception_on_a_folder_and_a_prepared_dataset(cifar, tmp_path):
    from ganforge.data.prepare import prepare_dataset
    from ganforge.metrics import inception as inc
    from ganforge.metrics.evaluate import FeatureExtractor

    rng = np.random.default_rng(3)
    (tmp_path / "real").mkdir()
    (tmp_path / "fake").mkdir()
    training = cifar[1200:1220]  # few images: Inception runs at 5-10 images/s here
    for i, image in enumerate(training):
        Image.fromarray(image).save(tmp_path / "real" / f"{i:03d}.png")
    for i, pick in enumerate(rng.integers(len(training), size=6)):  # 6 noised copies
        noised = np.clip(training[pick] + rng.normal(0, 2, training[pick].shape), 0, 255).astype(np.uint8)
        Image.fromarray(noised).save(tmp_path / "fake" / f"{i:03d}.png")
    prepare_dataset(tmp_path / "real", tmp_path / "prepared", resolution=32, workers=1, progress=False)
    # posing as a generator that records its training data, so the audit finds the dataset itself
    fake = dataclasses.replace(open_source(tmp_path / "fake"), kind="generator", available=None,
                               training_data=tmp_path / "prepared")
    extractor = FeatureExtractor(inc.load_inception(SHARED / "inception" / inc.TORCHSCRIPT_FILE), progress=False)
    result = audit_generator(fake, None, count=6, pairs=4, extractor=extractor, device="cpu", progress=False,
                             out=tmp_path / "audit")
    assert result.setup["training"] == str(tmp_path / "prepared")
    assert result.setup["features"] == inc.PROTOCOL
    assert result.c_t is None  # 6 generated images: no cell reaches the 20 the test needs, and it says so
    assert any("C_T was not computed" in note for note in result.notes)
    assert result.verdict == "copying" and result.feature.near_duplicate_share > 0.5
    assert (tmp_path / "audit" / "closest-pairs.png").is_file()


def test_tiny_counts_and_bad_settings_are_refused_before_any_feature(cifar, tmp_path):
    def untouchable(images):
        raise AssertionError("features were computed before the inputs were checked")

    training = array_source(cifar[:100], "train")
    (tmp_path / "file").write_text("")
    for options, says in (({"count": -5}, "count=-5"), ({"count": 2, "reference_count": 1}, "reference_count=1"),
                          ({"count": 10**9}, "in memory"), ({"count": 50, "batch_size": 0}, "batch_size"), ({"count": 50, "seed": -1}, "seed"),
                          ({"count": 50, "device": "gpu"}, "not a device"),
                          ({"count": 50, "out": tmp_path / "file"}, "is a file")):
        with pytest.raises(GanforgeError, match=says):
            audit_generator(copier(cifar[:100]), training, extractor=untouchable, progress=False,
                            **{"device": "cpu", **options})
    few = array_source(cifar[:4], "few")  # a fifth of 4 images is no held-out image at all
    with pytest.raises(AuditError, match="--heldout"):
        audit_generator(copier(cifar[:4]), few, count=50, extractor=untouchable, device="cpu", progress=False)
    one = array_source(cifar[:1], "one")
    with pytest.raises(AuditError, match="one holds 1; give more images"):
        audit_generator(one, training, count=50, extractor=untouchable, device="cpu", progress=False)


def test_two_images_each_is_enough_to_audit(cifar):
    result = audit_generator(array_source(cifar[:2], "two"), array_source(cifar[2:12], "train"),
                             heldout=array_source(cifar[12:14], "held"), count=2, **FAST)
    assert result.c_t is None and result.setup["generated_count"] == 2 and result.verdict
