"""Tests for ganforge.data.fetch: mirror, cache and download paths, checksums, parsing.

The real files come from the shared data folder used as a mirror; the download path runs against a
local HTTP server. Nothing here touches the network or writes outside pytest's tmp_path.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import shutil
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from ganforge.data import fetch
from ganforge.data.fetch import ChecksumError, FetchError, fetch_dataset, parse_dataset_name

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared_data = pytest.mark.skipif(
    not (SHARED_DATA / "mnist").is_dir(),
    reason=f"shared data folder {SHARED_DATA} is missing (it holds the real MNIST / CIFAR files)")


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No test may reach the real servers or the user's own cache or mirror."""
    for attr in ("MNIST_URL_BASE", "FASHION_MNIST_URL_BASE", "CIFAR10_URL_BASE"):
        monkeypatch.setattr(fetch, attr, "http://127.0.0.1:9/")  # discard port: refused at once
    monkeypatch.delenv("GANFORGE_MIRROR", raising=False)
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "default-cache"))


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_server(tmp_path):
    """Serve tmp_path/served over HTTP on 127.0.0.1; yields (folder, base URL, server)."""
    folder = tmp_path / "served"
    folder.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}/", server
    finally:
        server.shutdown()
        server.server_close()


def _copy_mnist_test(destination: Path) -> None:
    destination.mkdir(parents=True, exist_ok=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(SHARED_DATA / "mnist" / name, destination / name)


# --- names -----------------------------------------------------------------------------------

def test_parse_dataset_name():
    assert parse_dataset_name("mnist") == ("mnist", "train")
    assert parse_dataset_name("mnist:test") == ("mnist", "test")
    assert parse_dataset_name("fashion-mnist:train") == ("fashion-mnist", "train")
    assert parse_dataset_name("cifar10-jpeg") == ("cifar10-jpeg", "train")
    assert parse_dataset_name("imagenet") is None
    assert parse_dataset_name("photos/cats") is None
    assert parse_dataset_name("imagenet:test") is None
    for bad in ("mnist:valid", "mnist:", "cifar10:test:x"):
        with pytest.raises(ValueError, match="train or"):
            parse_dataset_name(bad)


def test_unknown_names_are_clear(tmp_path):
    with pytest.raises(ValueError, match="Unknown dataset 'imagenet'.*mnist, fashion-mnist, cifar10"):
        fetch_dataset("imagenet", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="Give the split separately"):
        fetch_dataset("mnist:test", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="Unknown split 'valid'"):
        fetch_dataset("mnist", "valid", cache_dir=tmp_path)


def test_missing_mirror_folder_is_an_error(tmp_path):
    with pytest.raises(FetchError, match="does not exist"):
        fetch_dataset("mnist", mirror=tmp_path / "nowhere", cache_dir=tmp_path)


# --- MNIST / Fashion-MNIST from the mirror -----------------------------------------------------

@needs_shared_data
@pytest.mark.parametrize("name, split, count, mean", [
    ("mnist", "train", 60000, 0.1307),
    ("mnist", "test", 10000, 0.1325),
    ("fashion-mnist", "train", 60000, 0.2860),
    ("fashion-mnist", "test", 10000, 0.2868),
])
def test_idx_datasets_from_mirror(tmp_path, name, split, count, mean):
    cache = tmp_path / "cache"
    data = fetch_dataset(name, split, mirror=SHARED_DATA, cache_dir=cache, progress=False)
    assert (data.name, data.split, len(data)) == (name, split, count)
    assert data.images.shape == (count, 28, 28, 1) and data.images.dtype == np.uint8
    assert data.labels.shape == (count,) and data.labels.dtype == np.int64
    assert data.labels.min() == 0 and data.labels.max() == 9
    assert len(np.unique(data.labels)) == 10
    assert data.images.mean() / 255 == pytest.approx(mean, abs=5e-4)  # the published normalisation means
    assert len(data.class_names) == 10
    assert str(SHARED_DATA) in data.origin
    assert not cache.exists()  # read in place: nothing copied into the cache


@needs_shared_data
def test_class_names():
    assert fetch.CLASS_NAMES["fashion-mnist"][0] == "T-shirt/top"
    assert fetch.CLASS_NAMES["fashion-mnist"][9] == "Ankle boot"
    assert fetch.CLASS_NAMES["cifar10"][0] == "airplane" and fetch.CLASS_NAMES["cifar10"][9] == "truck"
    data = fetch_dataset("mnist", "test", mirror=SHARED_DATA, progress=False)
    assert data.class_names == [str(d) for d in range(10)]
    assert data.labels[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known first test digits


@needs_shared_data
def test_mirror_from_environment(monkeypatch):
    monkeypatch.setenv("GANFORGE_MIRROR", str(SHARED_DATA))
    data = fetch_dataset("mnist", "test", progress=False)
    assert len(data) == 10000 and str(SHARED_DATA) in data.origin


@needs_shared_data
def test_corrupted_mirror_copy_is_rejected(tmp_path):
    mirror = tmp_path / "mirror"
    _copy_mnist_test(mirror / "mnist")
    path = mirror / "mnist" / "t10k-labels-idx1-ubyte.gz"
    payload = bytearray(gzip.decompress(path.read_bytes()))
    payload[100] ^= 0xFF  # one label changed: still a valid gzip, wrong content
    path.write_bytes(gzip.compress(bytes(payload)))
    with pytest.raises(ChecksumError) as info:
        fetch_dataset("mnist", "test", mirror=mirror, cache_dir=tmp_path / "cache", progress=False)
    message = str(info.value)
    assert str(path) in message
    assert fetch.IDX_SHA256[("mnist", "t10k-labels-idx1-ubyte")] in message
    assert hashlib.sha256(bytes(payload)).hexdigest() in message
    assert "mirror" in message


@needs_shared_data
def test_truncated_gzip_is_a_clear_error(tmp_path):
    mirror = tmp_path / "mirror"
    _copy_mnist_test(mirror / "mnist")
    path = mirror / "mnist" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(FetchError, match="cannot be read"):
        fetch_dataset("mnist", "test", mirror=mirror, cache_dir=tmp_path / "cache", progress=False)


def test_malformed_idx_header(tmp_path, monkeypatch):
    path = tmp_path / "bad.gz"
    payload = b"\0\0\x08\x03" + np.array([2, 2, 2], ">i4").tobytes() + bytes(7)  # one byte short
    path.write_bytes(gzip.compress(payload))
    with pytest.raises(FetchError, match=r"shape \(2, 2, 2\) but the file holds 7"):
        fetch._read_idx(path, hashlib.sha256(payload).hexdigest(), ndim=3)
    with pytest.raises(FetchError, match="not an idx file"):
        fetch._read_idx(path, hashlib.sha256(payload).hexdigest(), ndim=1)


# --- the download path, against a local server ------------------------------------------------

@needs_shared_data
def test_download_then_cache(http_server, tmp_path, monkeypatch):
    folder, url, server = http_server
    _copy_mnist_test(folder)
    monkeypatch.setattr(fetch, "MNIST_URL_BASE", url)
    cache = tmp_path / "cache"
    data = fetch_dataset("mnist", "test", cache_dir=cache, progress=True)
    assert data.images.shape == (10000, 28, 28, 1)
    assert data.origin.startswith(url)
    cached = sorted(p.name for p in (cache / "datasets" / "mnist").iterdir())
    assert cached == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]  # no .part left over

    server.shutdown()  # the second fetch must not need the server
    server.server_close()
    again = fetch_dataset("mnist", "test", cache_dir=cache, progress=False)
    assert np.array_equal(again.images, data.images)
    assert again.origin.startswith(str(cache))


@needs_shared_data
def test_download_uses_cache_from_environment(http_server, tmp_path, monkeypatch):
    folder, url, _ = http_server
    _copy_mnist_test(folder)
    monkeypatch.setattr(fetch, "MNIST_URL_BASE", url)
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "env-cache"))
    fetch_dataset("mnist", "test", progress=False)
    assert (tmp_path / "env-cache" / "datasets" / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()


@needs_shared_data
def test_bad_download_leaves_nothing(http_server, tmp_path, monkeypatch):
    folder, url, _ = http_server
    _copy_mnist_test(folder)
    served = folder / "t10k-images-idx3-ubyte.gz"
    payload = bytearray(gzip.decompress(served.read_bytes()))
    payload[-1] ^= 0xFF
    served.write_bytes(gzip.compress(bytes(payload), compresslevel=1))
    monkeypatch.setattr(fetch, "MNIST_URL_BASE", url)
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match="corrupt and has been removed"):
        fetch_dataset("mnist", "test", cache_dir=cache, progress=False)
    assert sorted(p.name for p in (cache / "datasets" / "mnist").iterdir()) == []


def test_missing_file_on_server(http_server, tmp_path, monkeypatch):
    _, url, _ = http_server
    monkeypatch.setattr(fetch, "FASHION_MNIST_URL_BASE", url)
    cache = tmp_path / "cache"
    with pytest.raises(FetchError, match="Could not download.*GANFORGE_MIRROR"):
        fetch_dataset("fashion-mnist", "test", cache_dir=cache, progress=False)
    assert list((cache / "datasets" / "fashion-mnist").iterdir()) == []


def test_network_failure_suggests_mirror(tmp_path):
    with pytest.raises(FetchError, match="--mirror"):
        fetch_dataset("mnist", "test", cache_dir=tmp_path, progress=False)


# --- CIFAR-10 binary, on a tiny fake archive --------------------------------------------------

def _fake_cifar_tar(path: Path, records_per_batch: int = 3) -> dict[str, np.ndarray]:
    """Write a tar.gz with the real layout; return the (N, 3, 32, 32) pixels and labels per split."""
    rng = np.random.default_rng(0)
    made = {"train": [], "test": []}
    with tarfile.open(path, "w:gz") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("batches.meta.txt", "\n".join(fetch.CLASS_NAMES["cifar10"]).encode() + b"\n\n")
        for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
            labels = rng.integers(0, 10, records_per_batch, dtype=np.uint8)
            pixels = rng.integers(0, 256, (records_per_batch, 3, 32, 32), dtype=np.uint8)
            add(name, np.concatenate([labels[:, None], pixels.reshape(records_per_batch, -1)], 1).tobytes())
            made["test" if name == "test_batch.bin" else "train"].append((labels, pixels))
    return {split: (np.concatenate([p for _, p in parts]), np.concatenate([lab for lab, _ in parts]))
            for split, parts in made.items()}


def test_cifar10_binary_parsing(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    (mirror / "cifar10").mkdir(parents=True)
    archive = mirror / "cifar10" / "cifar-10-binary.tar.gz"
    expected = _fake_cifar_tar(archive)
    monkeypatch.setattr(fetch, "CIFAR10_BINARY_MD5", hashlib.md5(archive.read_bytes()).hexdigest())

    train = fetch_dataset("cifar10", "train", mirror=mirror, progress=False)
    assert train.images.shape == (15, 32, 32, 3) and train.images.dtype == np.uint8
    assert train.labels.dtype == np.int64 and train.class_names[0] == "airplane"
    pixels, labels = expected["train"]
    assert np.array_equal(train.labels, labels)
    # Record 4 (second record of data_batch_2): channel c, row y, column x -> images[4, y, x, c].
    assert train.images[4, 5, 7, 0] == pixels[4, 0, 5, 7]
    assert train.images[4, 31, 0, 2] == pixels[4, 2, 31, 0]
    assert np.array_equal(train.images, pixels.transpose(0, 2, 3, 1))

    test = fetch_dataset("cifar10", "test", mirror=mirror, progress=False)
    assert np.array_equal(test.labels, expected["test"][1]) and len(test) == 3


def test_cifar10_wrong_md5(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "cifar10").mkdir(parents=True)
    _fake_cifar_tar(mirror / "cifar10" / "cifar-10-binary.tar.gz")
    with pytest.raises(ChecksumError, match=f"md5 of the file is .*expected {fetch.CIFAR10_BINARY_MD5}"):
        fetch_dataset("cifar10", mirror=mirror, progress=False)


def test_cifar10_downloads_into_cache(http_server, tmp_path, monkeypatch):
    folder, url, _ = http_server
    _fake_cifar_tar(folder / "cifar-10-binary.tar.gz")
    monkeypatch.setattr(fetch, "CIFAR10_URL_BASE", url)
    monkeypatch.setattr(fetch, "CIFAR10_BINARY_MD5",
                        hashlib.md5((folder / "cifar-10-binary.tar.gz").read_bytes()).hexdigest())
    data = fetch_dataset("cifar10", "test", cache_dir=tmp_path / "cache", progress=False)
    assert data.origin == url + "cifar-10-binary.tar.gz" and len(data) == 3
    assert (tmp_path / "cache" / "datasets" / "cifar10" / "cifar-10-binary.tar.gz").is_file()


# --- CIFAR-10 as JPEG, from the real mirror file ----------------------------------------------

def test_cifar10_jpeg_needs_a_mirror(tmp_path):
    with pytest.raises(FetchError, match="only available from a mirror folder"):
        fetch_dataset("cifar10-jpeg", cache_dir=tmp_path, progress=False)


@needs_shared_data
def test_cifar10_jpeg_test_split():
    data = fetch_dataset("cifar10-jpeg", "test", mirror=SHARED_DATA, progress=False)  # ~4 s of decoding
    assert data.images.shape == (10000, 32, 32, 3) and data.images.dtype == np.uint8
    assert np.array_equal(np.bincount(data.labels), np.full(10, 1000))
    assert np.all(np.diff(data.labels) >= 0)  # sorted by class
    assert data.class_names[3] == "cat"
    # Per-channel means of the CIFAR-10 test set (0.4942, 0.4851, 0.4504); JPEG moves them a little.
    means = data.images.reshape(-1, 3).mean(0) / 255
    assert means == pytest.approx([0.4942, 0.4851, 0.4504], abs=0.01)
