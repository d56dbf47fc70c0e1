"""Datasets by name: MNIST, Fashion-MNIST and CIFAR-10 as uint8 arrays, checksummed.

`fetch_dataset("mnist", "train")` looks for each file it needs in three places, in order:

1. a mirror folder (`mirror=` or `GANFORGE_MIRROR`), laid out as `<mirror>/<dataset>/<file>`;
   read in place, never written to;
2. the cache, `<cache root>/datasets/<dataset>/<file>` (`cache_dir=`, `GANFORGE_CACHE`, or
   `~/.cache/ganforge`);
3. the canonical URL, downloaded into the cache through a temporary file and `os.replace`, so an
   interrupted download never leaves a half file under the final name.

Every file is checked against a known hash each time it is read. Nothing here unpickles: CIFAR-10
comes from its binary version, never the python one. Base URLs are module attributes so tests can
point them at a local server.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
from tqdm import tqdm

from ganforge.errors import GanforgeError
from ganforge.files import DiskFullError, disk_full_message, is_disk_full

T = TypeVar("T")

# The widely used mirror of yann.lecun.com (which now refuses most automated downloads).
MNIST_URL_BASE = "https://ossci-datasets.s3.amazonaws.com/mnist/"
FASHION_MNIST_URL_BASE = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
CIFAR10_URL_BASE = "https://www.cs.toronto.edu/~kriz/"

DATASET_NAMES: tuple[str, ...] = ("mnist", "fashion-mnist", "cifar10", "cifar10-jpeg")
SPLITS: tuple[str, ...] = ("train", "test")

# sha256 of the *decompressed* idx payloads: packagers recompress the .gz files (so the .gz hashes
# differ between sources) but the payload is the same everywhere.
IDX_SHA256: dict[tuple[str, str], str] = {
    ("mnist", "train-images-idx3-ubyte"): "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ("mnist", "train-labels-idx1-ubyte"): "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ("mnist", "t10k-images-idx3-ubyte"): "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ("mnist", "t10k-labels-idx1-ubyte"): "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ("fashion-mnist", "train-images-idx3-ubyte"): "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ("fashion-mnist", "train-labels-idx1-ubyte"): "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ("fashion-mnist", "t10k-images-idx3-ubyte"): "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ("fashion-mnist", "t10k-labels-idx1-ubyte"): "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
CIFAR10_BINARY_FILE = "cifar-10-binary.tar.gz"
CIFAR10_BINARY_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"  # published by the dataset's authors
CIFAR10_JPEG_FILE = "cifar10-jpeg-q75.tar.gz"
CIFAR10_JPEG_SHA256 = "1ac6c798f4a0b7e17ca7710cdfad8f21866983681781d037df43d81ee994706f"

CLASS_NAMES: dict[str, list[str]] = {
    "mnist": [str(d) for d in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer",
                "dog", "frog", "horse", "ship", "truck"],
}
CLASS_NAMES["cifar10-jpeg"] = CLASS_NAMES["cifar10"]

_CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then the red, green and blue 32x32 planes


class FetchError(GanforgeError, RuntimeError):
    """A dataset could not be found, downloaded or read."""


class UnknownDatasetError(GanforgeError, ValueError):
    """A dataset name or split that does not exist."""


class ChecksumError(FetchError):
    """A file's content does not match its published hash."""


@dataclass
class ArrayDataset:
    """A labelled image dataset held in memory."""

    name: str  # e.g. "mnist", "cifar10"
    split: str  # "train" or "test"
    images: np.ndarray  # uint8 (N, H, W, C), C = 1 or 3
    labels: np.ndarray  # int64 (N,)
    class_names: list[str]
    origin: str  # where the bytes came from: URL(s) or file path(s)

    def __len__(self) -> int:
        return len(self.labels)


def parse_dataset_name(text: str) -> tuple[str, str] | None:
    """'mnist' -> ('mnist', 'train'); 'mnist:test' -> ('mnist', 'test'); unknown name -> None.

    None (rather than an error) lets callers treat anything else as a path to a folder or archive.
    """
    name, sep, split = text.partition(":")
    if name not in DATASET_NAMES:
        return None
    if not sep:
        return name, "train"
    if split not in SPLITS:
        raise UnknownDatasetError(f"{text!r}: unknown split {split!r} for dataset {name!r}; "
                         f"use {name}:train or {name}:test.")
    return name, split


def fetch_dataset(name: str, split: str = "train", *, mirror: str | os.PathLike | None = None,
                  cache_dir: str | os.PathLike | None = None, progress: bool = True) -> ArrayDataset:
    """Load a named dataset split from a mirror, the cache, or its canonical URL (see module doc).

    `cache_dir` is the cache root; files go in `<cache_dir>/datasets/<name>/`.
    """
    if name not in DATASET_NAMES:
        hint = " Give the split separately, or use parse_dataset_name()." if ":" in name else ""
        raise UnknownDatasetError(f"Unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)}.{hint}")
    if split not in SPLITS:
        raise UnknownDatasetError(f"Unknown split {split!r} for {name!r}; use one of {', '.join(SPLITS)}.")
    where = _Places(_mirror_root(mirror), _cache_root(cache_dir), progress)
    if name in ("mnist", "fashion-mnist"):
        return _fetch_idx_dataset(name, split, where)
    if name == "cifar10":
        try:
            (images, labels), origin = where.obtain(
                name, CIFAR10_BINARY_FILE, lambda path: _read_cifar_binary(path, split))
        except FetchError as err:
            if where.mirror is not None and (where.mirror / "cifar10-jpeg" / CIFAR10_JPEG_FILE).is_file():
                raise FetchError(f"{err} Your mirror has the JPEG copy of CIFAR-10: use the name "
                                 f"cifar10-jpeg{'' if split == 'train' else ':' + split} for it.") from None
            raise
    else:
        (images, labels), origin = where.obtain(
            name, CIFAR10_JPEG_FILE, lambda path: _read_cifar_jpeg(path, split))
    return ArrayDataset(name, split, images, labels, list(CLASS_NAMES[name]), origin)


# --- where files come from -------------------------------------------------------------------

def _mirror_root(mirror: str | os.PathLike | None) -> Path | None:
    if mirror is None:
        mirror = os.environ.get("GANFORGE_MIRROR") or None
        source = "GANFORGE_MIRROR"
    else:
        source = "mirror"
    if mirror is None:
        return None
    root = Path(mirror).expanduser()
    if not root.is_dir():
        raise FetchError(f"The mirror folder {str(root)!r} (from {source}) does not exist or is not a "
                         "folder; fix the path, or unset it to use the cache and the network.")
    return root


def _cache_root(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is None:
        cache_dir = os.environ.get("GANFORGE_CACHE") or Path.home() / ".cache" / "ganforge"
    return Path(cache_dir).expanduser()


def _url_base(name: str) -> str | None:
    # Read at call time so a monkeypatched attribute takes effect.
    return {"mnist": MNIST_URL_BASE, "fashion-mnist": FASHION_MNIST_URL_BASE,
            "cifar10": CIFAR10_URL_BASE, "cifar10-jpeg": None}[name]


@dataclass
class _Places:
    mirror: Path | None
    cache_root: Path
    progress: bool

    def obtain(self, name: str, filename: str, read: Callable[[Path], T]) -> tuple[T, str]:
        """Return (read(path), origin) for the first copy found; `read` verifies the checksum."""
        if self.mirror is not None:
            path = self.mirror / name / filename
            if path.is_file():
                hint = (f"The mirror copy is damaged or a different version: replace it in {self.mirror} "
                        "(ganforge never writes into a mirror), or drop --mirror / GANFORGE_MIRROR.")
                return _read_or_explain(read, path, hint), str(path)
        cached = self.cache_root / "datasets" / name / filename
        if cached.is_file():
            hint = f"The cached copy is damaged: delete {cached} and run again to download it afresh."
            return _read_or_explain(read, cached, hint), str(cached)
        base = _url_base(name)
        if base is None:
            raise FetchError(
                f"{name!r} is only available from a mirror folder: put {filename} in "
                f"<mirror>/{name}/ and pass --mirror <mirror> (or set GANFORGE_MIRROR), or copy it to "
                f"{cached.parent}/.")
        url = base + filename
        part = _download(url, cached.parent, f"{name}/{filename}", self.progress)
        try:
            hint = (f"The download from {url} was corrupt and has been removed; try again, or use a "
                    "mirror folder (--mirror / GANFORGE_MIRROR).")
            result = _read_or_explain(read, part, hint, shown_as=url)
            os.replace(part, cached)
        finally:
            part.unlink(missing_ok=True)
        return result, url


def _read_or_explain(read: Callable[[Path], T], path: Path, hint: str, shown_as: str | None = None) -> T:
    shown = shown_as or str(path)
    try:
        return read(path)
    except ChecksumError as err:
        raise ChecksumError(f"{shown}: {err} {hint}") from None
    except FetchError as err:
        raise FetchError(f"{shown}: {err} {hint}") from None
    except (OSError, EOFError, zlib.error, tarfile.TarError) as err:
        raise FetchError(f"{shown}: cannot be read ({err}). {hint}") from None


def _download(url: str, folder: Path, relative: str, progress: bool) -> Path:
    """Download `url` to a temporary file in `folder` and return its path.

    `relative` is `<dataset>/<file>`, the place the file would have in a mirror folder.
    """
    filename = relative.rsplit("/", 1)[-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{filename}.", suffix=".part")
    except OSError as err:
        if is_disk_full(err):
            raise DiskFullError(disk_full_message(folder, f"the download of {filename}")) from None
        raise FetchError(f"Cannot write into the dataset cache {folder} ({err.strerror or err}): set GANFORGE_CACHE "
                         "to a folder you can write to, or use a mirror folder (--mirror / GANFORGE_MIRROR).") from None
    part = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = response.headers.get("Content-Length")
            with tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                      unit_divisor=1024, desc=filename, disable=not progress) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as err:
        part.unlink(missing_ok=True)
        if is_disk_full(err):
            raise DiskFullError(disk_full_message(folder, f"the download of {filename}")) from None
        raise FetchError(f"Could not download {url} ({err}). If this machine is offline, put the file "
                         f"at <folder>/{relative} and pass --mirror <folder> or set GANFORGE_MIRROR.") from None
    except BaseException:  # Ctrl-C included: never leave the partial file behind
        part.unlink(missing_ok=True)
        raise
    return part


def file_digest(path: Path, algo: str) -> str:
    digest = hashlib.new(algo)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check(what: str, algo: str, actual: str, expected: str) -> None:
    if actual != expected:
        raise ChecksumError(f"{algo} of {what} is {actual}, expected {expected}.")


# --- MNIST and Fashion-MNIST (idx files) -----------------------------------------------------

def _fetch_idx_dataset(name: str, split: str, where: _Places) -> ArrayDataset:
    prefix = "train" if split == "train" else "t10k"
    images, images_origin = where.obtain(
        name, f"{prefix}-images-idx3-ubyte.gz",
        lambda path: _read_idx(path, IDX_SHA256[(name, f"{prefix}-images-idx3-ubyte")], ndim=3))
    labels, labels_origin = where.obtain(
        name, f"{prefix}-labels-idx1-ubyte.gz",
        lambda path: _read_idx(path, IDX_SHA256[(name, f"{prefix}-labels-idx1-ubyte")], ndim=1))
    if len(images) != len(labels):
        raise FetchError(f"{name} {split}: {len(images)} images but {len(labels)} labels; "
                         "the files come from different versions, replace them.")
    return ArrayDataset(name, split, images[..., None], labels.astype(np.int64),
                        list(CLASS_NAMES[name]), f"{images_origin} + {labels_origin}")


def _read_idx(path: Path, expected_sha256: str, ndim: int) -> np.ndarray:
    """Decompress a gzipped idx file, verify its payload, and parse it (ubyte data only)."""
    with gzip.open(path, "rb") as f:
        payload = f.read()
    _check("the decompressed content", "sha256", hashlib.sha256(payload).hexdigest(), expected_sha256)
    # Header: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, then
    # each dimension as a big-endian int32.
    if len(payload) < 4 + 4 * ndim or payload[:2] != b"\0\0" or payload[2] != 0x08 or payload[3] != ndim:
        raise FetchError(f"not an idx file of {ndim}-D unsigned bytes (magic {payload[:4].hex()}).")
    shape = tuple(int(d) for d in np.frombuffer(payload, ">i4", count=ndim, offset=4))
    data = np.frombuffer(payload, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise FetchError(f"header says shape {shape} but the file holds {data.size} values.")
    return data.reshape(shape)


# --- CIFAR-10 -----------------------------------------------------------------------------------

def _read_cifar_binary(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse the binary CIFAR-10 tar: records of a label byte then 3072 bytes of CHW pixels."""
    _check("the file", "md5", file_digest(path, "md5"), CIFAR10_BINARY_MD5)
    wanted = ([f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"])
    found: dict[str, bytes] = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:  # read members in memory only: nothing is extracted to disk
            base = member.name.rsplit("/", 1)[-1]
            if member.isfile() and base in wanted:
                found[base] = tar.extractfile(member).read()
    missing = [name for name in wanted if name not in found]
    if missing:
        raise FetchError(f"the archive lacks {', '.join(missing)}; it is not the CIFAR-10 binary version.")
    raw = b"".join(found[name] for name in wanted)
    if len(raw) % _CIFAR_RECORD:
        raise FetchError(f"batch files hold {len(raw)} bytes, not a whole number of "
                         f"{_CIFAR_RECORD}-byte records.")
    records = np.frombuffer(raw, np.uint8).reshape(-1, _CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max(initial=0) >= 10:
        raise FetchError(f"label {labels.max()} found; CIFAR-10 labels are 0-9.")
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
    return np.ascontiguousarray(images), labels


def _read_cifar_jpeg(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode `cifar10_jpeg/<split>/<class>/<file>.jpg`, ordered by class then file name."""
    from PIL import Image  # only this dataset needs Pillow

    _check("the file", "sha256", file_digest(path, "sha256"), CIFAR10_JPEG_SHA256)
    classes = CLASS_NAMES["cifar10-jpeg"]
    entries: list[tuple[int, str, bytes]] = []
    with tarfile.open(path, "r|gz") as tar:  # stream: one pass over the archive, in memory
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 4 or parts[0] != "cifar10_jpeg" or parts[1] != split:
                continue
            if parts[2] not in classes:
                raise FetchError(f"unexpected class folder {parts[2]!r} in {member.name}.")
            entries.append((classes.index(parts[2]), parts[3], tar.extractfile(member).read()))
    if not entries:
        raise FetchError(f"no images under cifar10_jpeg/{split}/ in the archive.")
    entries.sort(key=lambda entry: entry[:2])
    images = np.empty((len(entries), 32, 32, 3), np.uint8)
    for i, (_, filename, data) in enumerate(entries):
        with Image.open(io.BytesIO(data)) as image:
            if image.size != (32, 32):
                raise FetchError(f"{filename} is {image.size[0]}x{image.size[1]}, expected 32x32.")
            images[i] = np.asarray(image.convert("RGB"))
    labels = np.array([entry[0] for entry in entries], np.int64)
    return images, labels
