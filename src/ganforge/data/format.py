"""The prepared dataset format: what `ganforge prepare` writes and everything downstream trusts.

A prepared dataset is a folder (documented in docs/prepared-format.md):

    manifest.json          written last: its presence means the folder is complete
    images.npy             uint8 (N, H, W, C), C in {1, 3, 4}; read memory-mapped, never all in RAM
    labels.npy             int64 (N,), only for labelled datasets; class names are in the manifest
    attributes.npy         float32 (N, A), only with `prepare --attributes`: raw continuous values and
                           categorical value indices; names, kinds and statistics are in the manifest
    points.npy             float32 (N, 2), instead of images.npy for point datasets
    a.npy, b.npy           uint8 (N_A, H_A, W_A, C_A) and (N_B, H, W, C_B), instead of images.npy for the
                           kinds "paired" (N_A = N_B, row i of each is one pair) and "unpaired" (see paired.py)
    prepare-report.json    every source file, included (source, index, label) or skipped (source, reason)
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ganforge.errors import GanforgeError
from ganforge.files import atomic_write, write_json_atomic  # noqa: F401  (write_json_atomic: re-exported)

FORMAT_NAME = "ganforge.prepared"
FORMAT_VERSION = 1
PAIRED_FORMAT_VERSION = 2  # paired and unpaired manifests: an older ganforge then says to upgrade
PAIR_KINDS = ("paired", "unpaired")
MANIFEST = "manifest.json"
REPORT = "prepare-report.json"
ATTRIBUTE_KINDS = ("continuous", "categorical")


class DatasetError(GanforgeError):
    """A prepared dataset is missing, incomplete or malformed."""


class PreparedDataset:
    """A prepared dataset on disk. Images are memory-mapped: opening one costs no RAM."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self.kind: str = self.manifest["kind"]
        self.class_names: list[str] | None = self.manifest.get("classes")
        count = int(self.manifest["count"])
        if self.kind == "points":
            self.points = load_array(self.path / "points.npy", mmap=True)  # (N, 2)
            self.images = None
            self._check_shape(self.points, "points.npy", (count, 2), np.float32)
        elif self.kind in PAIR_KINDS:  # two arrays instead of images.npy (see data/paired.py)
            self.images = self.points = None
            for side, info in self.manifest["sides"].items():
                array = load_array(self.path / f"{side}.npy", mmap=True)  # (N_side, H, W, C)
                shape = (info["count"], info["resolution"], info["resolution"], info["channels"])
                self._check_shape(array, f"{side}.npy", shape, np.uint8)
                setattr(self, side, array)
        else:
            self.images = load_array(self.path / "images.npy", mmap=True)  # (N, H, W, C)
            self.points = None
            self._check_shape(self.images, "images.npy", (count, self.resolution, self.resolution, self.channels),
                              np.uint8)
        labels_file = self.path / "labels.npy"
        # a manifest with classes promises labels: without them training would silently ignore the classes
        self.labels = load_array(labels_file) if labels_file.exists() or self.class_names else None
        if self.labels is not None:  # an unpaired dataset's labels are side A's
            labelled = int(self.manifest["sides"]["a"]["count"]) if self.kind == "unpaired" else count
            self._check_labels(labels_file, labelled)
        # a few floats per image: read whole, so a batch's gather never touches the disk
        self.attribute_specs: list[dict] | None = self.manifest.get("attributes")
        self.attributes = None
        if self.attribute_specs is not None:
            self.attributes = load_array(self.path / "attributes.npy")  # (N, A)
            problem = attribute_values_problem(self.attributes, self.attribute_specs, count)
            if problem:
                raise DatasetError(f"{self.path / 'attributes.npy'} does not match the manifest ({problem}): "
                                   "the folder was changed after preparation, prepare it again.")

    def _check_shape(self, array: np.ndarray, name: str, expected: tuple[int, ...], dtype) -> None:
        if array.dtype != dtype or tuple(array.shape) != expected:
            raise DatasetError(
                f"{self.path / name} has shape {array.shape} ({array.dtype}) but the manifest says {expected} "
                f"{np.dtype(dtype).name}. The folder was changed after preparation: prepare it again."
            )

    def _check_labels(self, labels_file: Path, count: int) -> None:
        labels = self.labels
        if labels.ndim != 1 or len(labels) != count:
            raise DatasetError(f"{labels_file} has {labels.shape} labels for {count} items: prepare again.")
        classes = len(self.class_names or [])
        if labels.dtype.kind not in "iu" or (count and not (0 <= labels.min() and labels.max() < max(classes, 1))):
            raise DatasetError(f"{labels_file} holds values outside the {classes} classes of the manifest "
                               f"({labels.dtype}): the folder was changed after preparation, prepare it again.")

    @property
    def resolution(self) -> int:
        return int(self.manifest["resolution"])

    @property
    def channels(self) -> int:
        return int(self.manifest["channels"])

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else 0

    def __len__(self) -> int:
        return int(self.manifest["count"])

    def __getitem__(self, index: int) -> np.ndarray:
        if self.kind == "paired":
            return np.asarray(self.a[index]), np.asarray(self.b[index])
        data = self.points if self.kind == "points" else self.images
        return np.asarray(data[index])

    def __repr__(self) -> str:
        if self.kind == "points":
            return f"PreparedDataset({str(self.path)!r}, points, n={len(self)})"
        if self.kind in PAIR_KINDS:
            a, b = self.manifest["sides"]["a"], self.manifest["sides"]["b"]
            return (f"PreparedDataset({str(self.path)!r}, {self.kind}, A {a['count']} x {a['resolution']}px x "
                    f"{a['channels']}, B {b['count']} x {b['resolution']}px x {b['channels']})")
        classes = f", {self.num_classes} classes" if self.num_classes else ""
        return (
            f"PreparedDataset({str(self.path)!r}, n={len(self)}, "
            f"{self.resolution}x{self.resolution}x{self.channels}{classes})"
        )


def read_manifest(path: Path) -> dict[str, Any]:
    manifest_file = path / MANIFEST
    if not path.exists():
        raise DatasetError(f"{path} does not exist. Prepare a dataset first: ganforge prepare SRC {path} --resolution 64")
    if not manifest_file.exists():
        partial = " It looks like an unfinished preparation: run the same prepare command again to finish it." if (path / ".partial").exists() else ""
        raise DatasetError(f"{path} is not a prepared dataset (no {MANIFEST}).{partial}")
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{manifest_file} is unreadable ({exc}): prepare the dataset again.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise DatasetError(f"{manifest_file} is not a ganforge manifest.")
    version = manifest.get("version", 0)
    if isinstance(version, int) and version > PAIRED_FORMAT_VERSION:
        raise DatasetError(f"{path} was prepared by a newer ganforge (format version {version}); upgrade ganforge.")
    problem = _manifest_problem(manifest)
    if problem:
        raise DatasetError(f"{manifest_file} is damaged ({problem}): prepare the dataset again.")
    return manifest


def _manifest_problem(manifest: dict) -> str | None:
    """What is wrong with a manifest's fields that readers rely on, or None."""
    kind = manifest.get("kind")
    if kind not in ("images", "points", *PAIR_KINDS):
        return f"kind is {kind!r}, not images, points, paired or unpaired"
    if kind in PAIR_KINDS:
        problem = _sides_problem(manifest.get("sides"), kind)
        if problem:
            return problem
    needed = ("count",) if kind == "points" else ("count", "resolution", "channels")
    for key in needed:
        value = manifest.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "count" else 1):
            return f"{key} is {value!r}"
    if kind == "points" and not isinstance(manifest.get("modes"), list):
        return "modes is missing"
    classes = manifest.get("classes")
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        return "classes is not a list of names"
    if "attributes" in manifest:
        return attribute_specs_problem(manifest["attributes"])
    return None


def _sides_problem(sides, kind: str) -> str | None:
    """What is wrong with a paired or unpaired manifest's "sides", or None."""
    if not isinstance(sides, dict) or set(sides) != {"a", "b"}:
        return "sides is not {a, b}"
    for side, info in sides.items():
        for key in ("resolution", "channels", "count"):
            value = info.get(key) if isinstance(info, dict) else None
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                return f"sides.{side}.{key} is {value!r}"
    if kind == "paired" and sides["a"]["count"] != sides["b"]["count"]:
        return "the two sides of a paired dataset have different counts"
    return None


def attribute_specs_problem(specs) -> str | None:
    """What is wrong with a manifest's "attributes" list, or None."""
    if not isinstance(specs, list) or not specs:
        return "attributes is not a list"
    for spec in specs:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or spec.get("kind") not in ATTRIBUTE_KINDS:
            return "an attribute has no name or kind"
        if spec["kind"] == "continuous":
            mean, std = spec.get("mean"), spec.get("std")
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (mean, std)) or std <= 0:
                return f"attribute {spec['name']} has no valid mean and std"
        elif not (isinstance(spec.get("values"), list) and len(spec["values"]) >= 2
                  and all(isinstance(v, str) for v in spec["values"])):
            return f"attribute {spec['name']} has no list of values"
    return None


def attribute_values_problem(values: np.ndarray, specs: list[dict], count: int) -> str | None:
    """What is wrong with attributes.npy given the manifest, or None."""
    if values.dtype != np.float32 or values.shape != (count, len(specs)):
        return f"it has shape {values.shape} ({values.dtype}), not ({count}, {len(specs)}) float32"
    if not np.isfinite(values).all():
        return "it holds NaN or infinite values"
    for a, spec in enumerate(specs):
        if spec["kind"] == "categorical" and count:
            column = values[:, a]
            if (column != np.round(column)).any() or column.min() < 0 or column.max() >= len(spec["values"]):
                return f"{spec['name']} holds codes outside its {len(spec['values'])} values"
    return None


def load_array(path: Path, *, mmap: bool = False) -> np.ndarray:
    """A .npy file of a prepared dataset, or a DatasetError saying it is missing or damaged."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(6)
        if magic != b"\x93NUMPY":  # also keeps np.load from opening a zip (.npz) or a pickle
            raise ValueError("not a .npy file")
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing: the folder is incomplete, prepare the dataset again.") from None
    except (OSError, ValueError, EOFError) as exc:
        raise DatasetError(f"{path} is truncated or damaged ({_short(exc)}): prepare the dataset again "
                           "(ganforge prepare ... --overwrite).") from None
    return array


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_write(path, what=path.name) as handle:
        np.save(handle, array)


class NpyStreamWriter:
    """Write a large .npy array piece by piece, so memory stays flat whatever N is.

    Use it as a context manager: on any error (Ctrl-C, a full disk) the temporary file is removed."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype=np.uint8):
        self.path = path
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.written = 0
        self._context = atomic_write(path, what=path.name)
        self.handle = self._context.__enter__()
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape}
        try:
            np.lib.format.write_array_header_2_0(self.handle, header)
        except BaseException as error:  # the temporary file is removed (and a full disk translated) here too
            self._context.__exit__(type(error), error, error.__traceback__)
            raise

    def write(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.shape[1:]:
            raise ValueError(f"rows of shape {rows.shape[1:]} do not fit an array of {self.shape}")
        self.handle.write(rows.tobytes())
        self.written += len(rows)

    def close(self) -> None:
        if self.written != self.shape[0]:
            error = RuntimeError(f"wrote {self.written} rows into {self.path}, expected {self.shape[0]}")
            self._context.__exit__(type(error), error, None)
            raise error
        self._context.__exit__(None, None, None)

    def __enter__(self) -> "NpyStreamWriter":
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if error is None:
            self.close()
            return False
        return bool(self._context.__exit__(kind, error, traceback))  # removes the temporary file; may translate
