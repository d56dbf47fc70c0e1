"""The prepared dataset format: what `ganforge prepare` writes and everything downstream trusts.

A prepared dataset is a folder (documented in docs/prepared-format.md):

    manifest.json          written last: its presence means the folder is complete
    images.npy             uint8 (N, H, W, C), C in {1, 3, 4}; read memory-mapped, never all in RAM
    labels.npy             int64 (N,), only for labelled datasets; class names are in the manifest
    points.npy             float32 (N, 2), instead of images.npy for point datasets
    prepare-report.json    every source file, included (source, index, label) or skipped (source, reason)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ganforge.errors import GanforgeError
from ganforge.files import atomic_write, write_json_atomic  # noqa: F401  (write_json_atomic: re-exported)

FORMAT_NAME = "ganforge.prepared"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REPORT = "prepare-report.json"


class DatasetError(GanforgeError):
    """A prepared dataset is missing, incomplete or malformed."""


class PreparedDataset:
    """A prepared dataset on disk. Images are memory-mapped: opening one costs no RAM."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self.kind: str = self.manifest["kind"]
        self.class_names: list[str] | None = self.manifest.get("classes")
        if self.kind == "points":
            self.points = np.load(self.path / "points.npy", mmap_mode="r")
            self.images = None
            count = len(self.points)
        else:
            self.images = np.load(self.path / "images.npy", mmap_mode="r")  # (N, H, W, C)
            count = len(self.images)
            expected = (self.manifest["count"], self.resolution, self.resolution, self.channels)
            if self.images.dtype != np.uint8 or tuple(self.images.shape) != expected:
                raise DatasetError(
                    f"{self.path / 'images.npy'} has shape {self.images.shape} ({self.images.dtype}) "
                    f"but the manifest says {expected} uint8. The folder was changed after preparation: "
                    "prepare it again."
                )
        labels_file = self.path / "labels.npy"
        self.labels = np.load(labels_file) if labels_file.exists() else None
        if self.labels is not None and len(self.labels) != count:
            raise DatasetError(f"{labels_file} has {len(self.labels)} labels for {count} items: prepare again.")

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
        data = self.points if self.kind == "points" else self.images
        return np.asarray(data[index])

    def __repr__(self) -> str:
        if self.kind == "points":
            return f"PreparedDataset({str(self.path)!r}, points, n={len(self)})"
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
    if manifest.get("format") != FORMAT_NAME:
        raise DatasetError(f"{manifest_file} is not a ganforge manifest.")
    if manifest.get("version", 0) > FORMAT_VERSION:
        raise DatasetError(
            f"{path} was prepared by a newer ganforge (format version {manifest['version']}); upgrade ganforge."
        )
    return manifest


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
        np.lib.format.write_array_header_2_0(self.handle, header)

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
