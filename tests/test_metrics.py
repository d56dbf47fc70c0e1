"""Metrics: the FID network matches the original, and each score matches an independent computation
on real CIFAR-10 and MNIST images from ../shared/data."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

from ganforge.data.fetch import fetch_dataset
from ganforge.metrics import inception as inc
from ganforge.metrics import scores
from ganforge.metrics.evaluate import FeatureExtractor, calculate_metrics

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
INCEPTION = SHARED / "inception" / inc.TORCHSCRIPT_FILE


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    return FeatureExtractor(inc.load_inception(INCEPTION), progress=False)


@pytest.fixture(scope="module")
def cifar() -> np.ndarray:
    return fetch_dataset("cifar10-jpeg", "test", mirror=SHARED, progress=False).images[:64]  # (64, 32, 32, 3)


@pytest.fixture(scope="module")
def features(extractor, cifar) -> dict[str, np.ndarray]:
    mnist = fetch_dataset("mnist", "test", mirror=SHARED, progress=False).images[:32]
    return {"cifar": extractor.features(cifar), "mnist": extractor.features(mnist.reshape(32, 28, 28, 1))}


def stats_of(features: np.ndarray) -> scores.FeatureStats:
    stats = scores.FeatureStats(dim=features.shape[1], keep=len(features))
    for part in np.array_split(features, 3):  # streamed in pieces, as during extraction
        stats.add(part)
    return stats


# --- the network ---------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.load, for the original only
def test_features_match_the_torchscript_original(cifar):
    original = torch.jit.load(str(INCEPTION), map_location="cpu").eval()
    ours = inc.load_inception(INCEPTION)
    x = inc.to_inception_input(torch.from_numpy(cifar[:6]))
    with torch.inference_mode():
        expected, got = original(x), ours(x)
    assert got.shape == (6, 2048)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert ((got - expected).norm() / expected.norm()).item() < 1e-5


def test_input_protocol_scales_and_resizes():
    white = torch.full((2, 8, 8, 1), 255, dtype=torch.uint8)  # greyscale, channels last
    x = inc.to_inception_input(white)
    assert x.shape == (2, 3, 299, 299)
    assert torch.allclose(x, torch.full_like(x, 127 / 128))  # (255 - 128) / 128: TensorFlow's scaling
    with pytest.raises(TypeError):
        inc.to_inception_input(torch.zeros(1, 8, 8, 3))  # float, not uint8
    with pytest.raises(TypeError):
        inc.to_inception_input(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))  # channels first


def _as_pytorch_fid_state(weights: dict[str, torch.Tensor], fc_seed: int = 0) -> dict[str, torch.Tensor]:
    """Our weights renamed to pytorch-fid's layout, with a random 1008-way classifier."""
    ours_to_theirs = {}
    for block, ours in inc._FULL_BLOCKS.items():
        if not block.startswith("Mixed"):
            ours_to_theirs[ours] = block
            continue
        kind = inc._BLOCK_KIND.get(block) or inc._BLOCK_KIND[block[:7]]
        for branch, layer in inc._FULL_BRANCHES[kind].items():
            ours_to_theirs[f"{ours}.{layer}"] = f"{block}.{branch}"
    parts = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean", "var": "bn.running_var"}
    state = {}
    for key, value in weights.items():
        layer, part = key.rsplit(".", 1)
        state[f"{ours_to_theirs[layer]}.{parts[part]}"] = value
        if part == "beta":
            state[f"{ours_to_theirs[layer]}.bn.weight"] = torch.ones_like(value)
    g = torch.Generator().manual_seed(fc_seed)
    state["fc.weight"] = torch.randn(1008, 2048, generator=g) * 0.01
    state["fc.bias"] = torch.zeros(1008)
    return state


def test_full_weights_give_the_same_features_and_logits_for_the_inception_score(tmp_path, cifar):
    weights = inc.read_weights(inc.InceptionFile(INCEPTION, "torchscript"))
    path = tmp_path / "full.pth"
    torch.save(_as_pytorch_fid_state(weights), path)
    full = inc.load_inception(path, verify=False)  # a stand-in file, so its checksum is not the real one
    features_only = inc.FIDInceptionV3(weights)
    x = inc.to_inception_input(torch.from_numpy(cifar[:4]))
    with torch.inference_mode():
        f, logits = full(x, logits=True)
        assert torch.allclose(f, features_only(x), rtol=1e-5, atol=1e-5)
        assert logits.shape == (4, 1008)
        with pytest.raises(inc.InceptionWeightsError, match="full weights"):
            features_only(x, logits=True)
    with pytest.raises(inc.InceptionWeightsError, match="not one of the standard"):
        inc.load_inception(path)  # verified by default: the stand-in is refused


def test_onnx_runtime_gives_the_pytorch_features_and_logits(tmp_path, cifar):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from ganforge.metrics.inception_onnx import OnnxInception

    weights = inc.read_weights(inc.InceptionFile(INCEPTION, "torchscript"))
    full = inc.FIDInceptionV3(inc._rename_full(_as_pytorch_fid_state(weights)))  # with a classifier
    fast = OnnxInception(full, threads=1)
    x = inc.to_inception_input(torch.from_numpy(cifar[:5]))  # an odd batch: the batch axis is dynamic
    with torch.inference_mode():
        expected_f, expected_y = full(x, logits=True)
        got_f, got_y = fast(x, logits=True)
        assert torch.equal(fast(x), got_f)
    assert got_f.shape == (5, 2048) and got_y.shape == (5, 1008)
    assert torch.allclose(got_f, expected_f, rtol=1e-4, atol=1e-4)
    assert ((got_f - expected_f).norm() / expected_f.norm()).item() < 1e-5
    assert ((got_y - expected_y).norm() / expected_y.norm()).item() < 1e-5
    chunked = OnnxInception(full, threads=1, chunk=2)  # 5 images in runs of 2, 2 and 1
    assert torch.allclose(chunked(x), got_f, rtol=1e-5, atol=1e-5)
    shared = OnnxInception(full, threads=2, chunk=1)  # two one-thread sessions take the 5 images as they free up
    assert len(shared.sessions) == 2
    shared_f, shared_y = shared(x, logits=True)
    assert torch.allclose(shared_f, got_f, rtol=1e-5, atol=1e-5)  # each image's features in its own row
    assert torch.allclose(shared_y, got_y, rtol=1e-5, atol=1e-5)
    features_only = OnnxInception(inc.FIDInceptionV3(weights), threads=1)
    with pytest.raises(inc.InceptionWeightsError, match="full weights"):
        features_only(x[:1], logits=True)


def test_runtime_choice(monkeypatch, extractor, cifar):
    from ganforge.metrics import evaluate, inception_onnx

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    expected = extractor.features(cifar[:3])  # by the default runtime, before anything is patched
    monkeypatch.delenv("GANFORGE_RUNTIME", raising=False)
    assert inception_onnx.choose_runtime("torch", cpu) == "torch"
    assert inception_onnx.choose_runtime("auto", gpu) == "torch"  # ONNX Runtime is used on CPU only
    with pytest.raises(inception_onnx.RuntimeChoiceError, match="CPU only"):
        inception_onnx.choose_runtime("onnxruntime", gpu)
    with pytest.raises(inception_onnx.RuntimeChoiceError, match="choose one of"):
        inception_onnx.choose_runtime("tensorflow", cpu)
    monkeypatch.setenv("GANFORGE_RUNTIME", "torch")
    assert inception_onnx.choose_runtime(None, cpu) == "torch"
    monkeypatch.delenv("GANFORGE_RUNTIME")
    # an ONNX Runtime that cannot start: "auto" warns and computes with PyTorch; asked for by name, it fails
    def broken(network):
        raise RuntimeError("no exporter in this build")

    monkeypatch.setattr(inception_onnx, "installed", lambda: True)
    monkeypatch.setattr(evaluate, "OnnxInception", broken)
    auto = FeatureExtractor(extractor.network, progress=False)
    with pytest.warns(UserWarning, match="no exporter in this build.*PyTorch instead"):
        fallback = auto.features(cifar[:3])
    assert auto.runtime == "torch" and np.isfinite(fallback).all()
    with pytest.raises(RuntimeError, match="no exporter"):
        FeatureExtractor(extractor.network, runtime="onnxruntime", progress=False).features(cifar[:3])
    monkeypatch.setattr(inception_onnx, "installed", lambda: False)  # as on a machine without ganforge[fast]
    assert inception_onnx.choose_runtime(None, cpu) == "torch"
    with pytest.raises(inception_onnx.RuntimeChoiceError, match=r"ganforge\[fast\]"):
        inception_onnx.choose_runtime("onnxruntime", cpu)
    # forced to PyTorch, an extractor never builds the ONNX session and gives the same features
    plain = FeatureExtractor(extractor.network, runtime="torch", progress=False)
    assert plain.runner is plain.network
    assert np.allclose(plain.features(cifar[:3]), expected, rtol=1e-4, atol=1e-4)


def test_inception_score_bounds():
    uniform = np.zeros((100, 1008))
    assert scores.inception_score(uniform, splits=2)[0] == pytest.approx(1.0)
    confident = np.full((100, 1008), -50.0)
    confident[np.arange(100), np.arange(100) % 10] = 50.0  # 10 classes, each predicted with certainty
    assert scores.inception_score(confident, splits=1)[0] == pytest.approx(10.0, rel=1e-6)


# --- finding the weights ---------------------------------------------------------------------------------


def test_locate_from_environment_cache_and_refusals(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_INCEPTION", str(INCEPTION))
    assert inc.locate_inception() == inc.InceptionFile(INCEPTION, "torchscript")
    monkeypatch.setenv("GANFORGE_INCEPTION", str(tmp_path / "missing.pt"))
    with pytest.raises(inc.InceptionWeightsError, match="does not exist"):
        inc.locate_inception()
    monkeypatch.delenv("GANFORGE_INCEPTION")
    with pytest.raises(inc.InceptionWeightsError, match="download .*sha1"):
        inc.locate_inception(cache_dir=tmp_path / "empty", download=False)
    fake = tmp_path / "cache" / "weights" / inc.TORCHSCRIPT_FILE
    fake.parent.mkdir(parents=True)
    fake.write_bytes(b"not the network")
    with pytest.raises(inc.InceptionWeightsError, match="not one of the standard"):
        inc.locate_inception(cache_dir=tmp_path / "cache")


def test_download_from_the_canonical_url_is_checked_and_cached(tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(INCEPTION, served / "default_1.pt")
    (served / "wrong.pt").write_bytes(b"a page that is not the network")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        monkeypatch.setattr(inc, "TORCHSCRIPT_URL", base + "wrong.pt")
        with pytest.raises(inc.InceptionWeightsError, match="did not match its sha1"):
            inc.locate_inception(cache_dir=tmp_path / "cache", progress=False)
        assert not list((tmp_path / "cache" / "weights").iterdir())  # nothing half-written is left
        monkeypatch.setattr(inc, "TORCHSCRIPT_URL", base + "default_1.pt")
        found = inc.locate_inception(cache_dir=tmp_path / "cache", progress=False)
    finally:
        server.shutdown()
    assert found.path == tmp_path / "cache" / "weights" / inc.TORCHSCRIPT_FILE
    assert hashlib.sha1(found.path.read_bytes()).hexdigest() == inc.TORCHSCRIPT_SHA1
    assert inc.locate_inception(cache_dir=tmp_path / "cache", download=False) == found  # now from the cache


# --- the scores against independent computations -------------------------------------------------------


def test_streamed_statistics_match_numpy(features):
    f = features["cifar"].astype(np.float64)
    stats = stats_of(features["cifar"])
    assert np.allclose(stats.mean, f.mean(axis=0), rtol=1e-10, atol=1e-12)
    assert np.allclose(stats.cov, np.cov(f, rowvar=False), rtol=1e-7, atol=1e-10)


def _fid_by_svd(a: np.ndarray, b: np.ndarray) -> float:
    """FID from the features directly: with centred features A, B, the eigenvalues of S1 S2 are the squared
    singular values of A B^T / sqrt((n1-1)(n2-1)), so Tr sqrt(S1 S2) is that matrix's nuclear norm."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    ca, cb = a - a.mean(0), b - b.mean(0)
    na, nb = len(a) - 1, len(b) - 1
    nuclear = scipy.linalg.svdvals(ca @ cb.T).sum() / np.sqrt(na * nb)
    diff = a.mean(0) - b.mean(0)
    return float(diff @ diff + (ca ** 2).sum() / na + (cb ** 2).sum() / nb - 2 * nuclear)


def test_fid_zero_symmetric_and_equal_to_an_independent_computation(features):
    cifar_a, cifar_b, mnist = features["cifar"][:32], features["cifar"][32:], features["mnist"]
    a, b, m = stats_of(cifar_a), stats_of(cifar_b), stats_of(mnist)
    assert abs(scores.fid_from_stats(a, a)) < 1e-3  # exactly 0 up to round-off on values in the hundreds
    ab, am = scores.fid_from_stats(a, b), scores.fid_from_stats(a, m)
    assert scores.fid_from_stats(b, a) == pytest.approx(ab, rel=1e-7)
    assert ab == pytest.approx(_fid_by_svd(cifar_a, cifar_b), rel=1e-6)
    assert am == pytest.approx(_fid_by_svd(cifar_a, mnist), rel=1e-6)
    assert am > 1.3 * ab  # digits are further from photos than photos are from photos (FID at n=32 is biased high)


@pytest.mark.parametrize("n", [20, 100])  # fewer samples than dimensions (singular) and more (Cholesky)
def test_fid_without_kept_features_uses_a_factor_of_the_covariance(n):
    rng = np.random.default_rng(n)
    x, y = rng.gamma(1.0, size=(n, 64)), rng.gamma(1.2, size=(n + 7, 64))
    sx, sy = stats_of(x), stats_of(y)
    expected = _fid_by_svd(x, y)
    assert scores.frechet_distance(sx.mean, sx.cov, sy.mean, sy.cov) == pytest.approx(expected, rel=1e-6)
    assert scores.fid_from_stats(sx, sy) == pytest.approx(expected, rel=1e-6)


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Binkowski et al.'s unbiased estimator written out pair by pair."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    d = x.shape[1]

    def k(u, v):
        return (u @ v / d + 1) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_is_unbiased_mmd_near_zero_for_two_halves(features):
    cifar_a, cifar_b, mnist = features["cifar"][:32], features["cifar"][32:], features["mnist"]
    # one subset holding every sample: KID is then exactly the full-set estimator
    kid_one, std_one = scores.kernel_inception_distance(cifar_a, mnist, subsets=1, subset_size=32)
    assert kid_one == pytest.approx(_mmd2_unbiased(mnist, cifar_a), rel=1e-9)
    halves, _ = scores.kernel_inception_distance(cifar_a, cifar_b, subsets=50, subset_size=24)
    apart, _ = scores.kernel_inception_distance(cifar_a, mnist, subsets=50, subset_size=24)
    assert abs(halves) < 0.1 * apart


def _brute_precision(real: np.ndarray, fake: np.ndarray, k: int) -> float:
    real, fake = real.astype(np.float64), fake.astype(np.float64)
    radii = [np.sort(np.linalg.norm(real - r, axis=1))[k] for r in real]  # [0] is the point itself
    return float(np.mean([any(np.linalg.norm(f - r) <= rad for r, rad in zip(real, radii)) for f in fake]))


def test_precision_recall_density_coverage(features):
    cifar, mnist = features["cifar"], features["mnist"]
    assert scores.precision_recall(cifar, cifar) == (1.0, 1.0)
    assert scores.density_coverage(cifar, cifar)[1] == 1.0
    precision, recall = scores.precision_recall(cifar[:32], mnist)
    assert precision == pytest.approx(_brute_precision(cifar[:32], mnist, 3))
    assert recall == pytest.approx(_brute_precision(mnist, cifar[:32], 3))
    assert precision < 0.5
    density, coverage = scores.density_coverage(cifar[:32], cifar[32:])
    assert 0.3 < density < 2.0 and 0.3 < coverage <= 1.0


# --- the one call --------------------------------------------------------------------------------------


def _write_pngs(folder: Path, images: np.ndarray) -> Path:
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    return folder


def test_calculate_metrics_on_folders_caches_the_reference(tmp_path, monkeypatch, extractor, cifar):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    a = _write_pngs(tmp_path / "a", cifar[:16])
    b = _write_pngs(tmp_path / "b", cifar[16:32])
    calls = []
    original = extractor.stats
    monkeypatch.setattr(extractor, "stats", lambda source, count, **kw: calls.append(source.kind) or original(source, count, **kw))
    first = calculate_metrics(a, b, count=16, pr=True, dc=True, extractor=extractor, progress=False)
    assert set(first) >= {"fid16", "kid16", "kid16_std", "pr16_precision", "pr16_recall", "dc16_density",
                          "dc16_coverage", "protocol"}
    assert len(calls) == 2
    second = calculate_metrics(a, b, count=16, pr=True, dc=True, extractor=extractor, progress=False)
    assert len(calls) == 3  # the reference came from the cache
    assert second == first


def test_batches_are_read_ahead_in_order_and_a_bad_file_still_stops_with_its_name(tmp_path, extractor, cifar):
    from ganforge.metrics.evaluate import _ahead
    from ganforge.metrics.sources import SourceError, open_source

    def numbers():
        yield from (1, 2, 3)
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):  # raised where it happened, after the items before it
        for item in _ahead(numbers(), lambda n: n * 10):
            got.append(item)
    assert got == [10, 20, 30]
    folder = _write_pngs(tmp_path / "a", cifar[:12])
    source = open_source(folder)
    stats, _ = extractor.stats(source, 12, keep=12, seed=3)  # one batch
    extractor.batch_size, saved = 5, extractor.batch_size
    try:
        five, _ = extractor.stats(source, 12, keep=12, seed=3)  # batches of 5, 5 and 2, each read ahead
        expected = np.concatenate([extractor.features(b) for b in source.batches(12, 5, 3)])
        assert np.allclose(five.features, expected, rtol=1e-5, atol=1e-5)
        assert np.allclose(stats.features, expected, rtol=1e-5, atol=1e-5)
        (folder / "broken.png").write_bytes(b"not a png")
        with pytest.raises(SourceError, match="broken.png"):
            extractor.stats(open_source(folder), 13, keep=13, seed=3)
    finally:
        extractor.batch_size = saved


# --- refusing what cannot be measured, before any image is read --------------------------------------


class Untouchable:
    """An extractor that must not be reached: inputs are checked before any feature is computed."""

    def __getattr__(self, name):
        raise AssertionError(f"the extractor was used ({name}) before the inputs were checked")


def _folder_of(folder: Path, n: int) -> Path:
    return _write_pngs(folder, np.full((n, 8, 8, 3), 100, np.uint8))


@pytest.mark.parametrize("n_generated, n_real, metrics, says", [
    (1, 3, {}, "FID needs at least 2 generated images"), (3, 1, {}, "FID needs at least 2 real images"),
    (3, 3, {"fid": False, "kid": False, "pr": True}, "Precision/recall needs at least 4"),
    (8, 5, {"fid": False, "kid": False, "dc": True}, "Density/coverage needs at least 6 real"),
    (5, 5, {"fid": False, "kid": False, "isc": True}, "Inception Score needs at least 10"),
    (3, 3, {"fid": False, "kid": False}, "No metric chosen"),
    (3, 3, {"count": 1}, "count=1"), (3, 3, {"batch_size": 0}, "batch_size"), (3, 3, {"seed": -1}, "seed"),
    (3, 3, {"device": "gpu"}, "not a device"), (3, 3, {"reference_count": 0}, "reference_count=0"),
])
def test_too_few_images_or_bad_settings_are_refused_up_front(tmp_path, n_generated, n_real, metrics, says):
    from ganforge.errors import GanforgeError

    generated, real = _folder_of(tmp_path / "gen", n_generated), _folder_of(tmp_path / "real", n_real)
    with pytest.raises(GanforgeError, match=says):
        calculate_metrics(generated, real, extractor=Untouchable(), progress=False, **metrics)


def test_scores_of_too_few_samples_say_so():
    from ganforge.errors import GanforgeError

    one = scores.FeatureStats(dim=4, keep=1)
    one.add(np.ones((1, 4)))
    with pytest.raises(GanforgeError, match="at least 2"):
        scores.fid_from_stats(one, one)
    with pytest.raises(GanforgeError, match="at least 2"):
        scores.kernel_inception_distance(np.ones((1, 4)), np.ones((5, 4)))
    with pytest.raises(GanforgeError, match="more than 3"):
        scores.precision_recall(np.ones((3, 4)), np.ones((5, 4)))


def test_a_decompression_bomb_or_a_cut_file_in_a_folder_is_named(tmp_path):
    from awkward import encode, first_half, png_bomb, solid

    from ganforge.metrics.sources import SourceError, open_source

    folder = _folder_of(tmp_path / "images", 2)
    for name, data, says in (("bomb.png", png_bomb(), "decompression bomb"),
                             ("cut.png", first_half(encode(solid(size=(32, 32)))), "cut.png")):
        (folder / name).write_bytes(data)
        with pytest.raises(SourceError, match=says):
            list(open_source(folder).batches(3, 8, 0))
        (folder / name).unlink()
    with pytest.raises(SourceError, match="does not exist: give"):
        open_source(tmp_path / "missing")


class RandomFeatures:
    """Stands in for the extractor: random features, counted, for the cache's sake."""

    def __init__(self):
        self.calls, self.kept = 0, []

    def stats(self, source, count, *, keep, seed=0, logits=False, label=""):
        self.calls += 1
        self.kept.append(keep)
        stats = scores.FeatureStats(dim=8, keep=keep)
        stats.add(np.random.default_rng(seed).normal(size=(count, 8)))
        return stats, None


def test_a_cache_that_cannot_be_written_or_read_costs_only_time(tmp_path, monkeypatch, capsys):
    from ganforge.metrics.evaluate import reference_stats
    from ganforge.metrics.sources import open_source

    source = open_source(_folder_of(tmp_path / "real", 4))
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "not-a-folder"))
    extractor = RandomFeatures()
    assert reference_stats(extractor, source, 4, keep=4).count == 4
    assert "could not be cached" in capsys.readouterr().err
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    first = reference_stats(extractor, source, 4, keep=4)
    for damaged in (tmp_path / "cache" / "metrics").iterdir():
        damaged.write_bytes(b"PK\x03\x04 cut short")  # a zip header and nothing after it
    again = reference_stats(extractor, source, 4, keep=4)  # recomputed, not a crash
    assert extractor.calls == 3 and np.allclose(again.features, first.features)


def test_cached_statistics_holding_nan_are_recomputed_with_a_warning(tmp_path, monkeypatch, capsys):
    from ganforge.metrics.evaluate import reference_stats
    from ganforge.metrics.sources import open_source

    source = open_source(_folder_of(tmp_path / "real", 4))
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    extractor = RandomFeatures()
    first = reference_stats(extractor, source, 4, keep=4)
    (cached,) = (tmp_path / "cache" / "metrics").iterdir()
    with np.load(cached) as data:
        state = dict(data)
    state["outer"][0, 0] = np.nan  # what the tester wrote into the cache
    np.savez(cached, **state)
    capsys.readouterr()
    again = reference_stats(extractor, source, 4, keep=4)
    assert extractor.calls == 2 and np.isfinite(again.outer).all() and np.allclose(again.outer, first.outer)
    assert "NaN or infinite" in capsys.readouterr().err
    with np.load(cached) as data:  # and the damaged file was replaced
        assert np.isfinite(data["outer"]).all()
    reference_stats(extractor, source, 4, keep=4)
    assert extractor.calls == 2


def test_results_survive_a_run_folder_that_cannot_be_written(tmp_path, capsys):
    from ganforge.metrics.sources import ImageSource

    (tmp_path / "run").write_text("a file where the run folder should be")
    run = ImageSource("run", tmp_path / "run", None, lambda count, batch_size, seed: iter(()))
    extractor = RandomFeatures()
    extractor.runtime = "torch"
    results = calculate_metrics(run, _folder_of(tmp_path / "real", 4), count=4, extractor=extractor, cache=False,
                                progress=False)
    assert "fid4" in results and "could not be added" in capsys.readouterr().err


def test_fid_alone_keeps_no_generated_features(tmp_path):
    extractor = RandomFeatures()
    extractor.runtime = "torch"
    a, b = _folder_of(tmp_path / "a", 6), _folder_of(tmp_path / "b", 6)
    both = calculate_metrics(a, b, count=6, extractor=extractor, cache=False, progress=False)
    alone = calculate_metrics(a, b, count=6, kid=False, extractor=extractor, cache=False, progress=False)
    assert alone["fid6"] == both["fid6"] and extractor.kept == [6, 6, 0, 6]  # generated, real; generated, real


def test_a_generator_as_the_reference_draws_count_images_not_fifty_thousand(tmp_path):
    from ganforge.metrics.sources import ImageSource

    class Counting(RandomFeatures):
        def __init__(self):
            super().__init__()
            self.counts = []

        def stats(self, source, count, **options):
            self.counts.append(count)
            return super().stats(source, count, **options)

    extractor = Counting()
    extractor.runtime = "torch"
    reference = ImageSource("generator", tmp_path / "other", None, lambda count, batch_size, seed: iter(()))
    results = calculate_metrics(_folder_of(tmp_path / "a", 6), reference, count=6, extractor=extractor, cache=False,
                                progress=False)
    assert "fid6" in results and extractor.counts == [6, 6]
    calculate_metrics(_folder_of(tmp_path / "b", 6), reference, count=6, reference_count=12, extractor=extractor,
                      cache=False, progress=False)
    assert extractor.counts[-1] == 12  # asked for: given
