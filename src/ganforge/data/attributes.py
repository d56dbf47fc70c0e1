"""Attributes per image for `prepare --attributes FILE`: read, checked, matched to the source's files, stored.

FILE is a CSV (a header `file,attr1,attr2,...`, one row per image) or a JSON object
(`{"a.png": {"age": 31, "hair": "black"}, ...}`). An image is named by its path relative to SRC
("/"-separated, as in prepare-report.json) or by its base name alone when that is unique in SRC; for a
dataset name (mnist, ...) by its index written with six digits (000000, 000001, ...).

Each attribute is continuous (numbers: the model sees them standardised by the dataset's mean and
standard deviation) or categorical (a few values, one-hot for the model). The kind follows the values:
a column of numbers is continuous, a column of words categorical; name it `hair:categorical` (or
`age:continuous`) to say so, e.g. for categories written as numbers. Every image included in the
dataset needs a value for every attribute.

Stored beside the images as `attributes.npy`, float32 (N, A): a continuous attribute's raw value, a
categorical one's index into its value list; the manifest's "attributes" lists each one's name and kind,
mean/std/min/max or values/counts.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from ganforge.data.format import ATTRIBUTE_KINDS as KINDS
from ganforge.data.output import PrepareError
FILE_COLUMN = "file"


class AttributeFileError(PrepareError):
    """The attribute file cannot be read or is not laid out as a CSV or JSON of file -> attributes."""


class UnknownFileError(AttributeFileError):
    """The attribute file names files that are not in SRC, or a base name that several files share."""


class MissingAttributesError(AttributeFileError):
    """Images with no row in the attribute file, or rows with no value for an attribute."""


class AttributeValueError(AttributeFileError):
    """A value that does not fit its attribute: text in a numeric one, NaN or infinity, an empty column,
    an attribute that is the same for every image."""


@dataclass
class AttributeTable:
    """The attribute file as read: attribute names, declared kinds (or None), and file -> cells."""

    path: Path
    names: list[str]
    declared: list[str | None]  # as headed (`hair:categorical`), then as the values show
    rows: dict[str, list]  # key as written in the file -> one cell per attribute (str, number, bool or None)
    sha256: str

    @property
    def settings(self) -> dict:
        """What the preparation records: a changed file prepares the dataset again."""
        return {"file": self.path.name, "sha256": self.sha256}


def _short_list(items, limit: int = 3) -> str:
    items = list(items)
    shown = ", ".join(map(str, items[:limit]))
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


# --- reading -------------------------------------------------------------------------------------


def read_attribute_file(path) -> AttributeTable:
    """The table in `path` (.csv or .json), with its layout checked; values are checked by `finish`."""
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AttributeFileError(f"The attribute file {path} cannot be read ({exc.strerror or exc}): "
                                 "give the path of a .csv or .json file.") from None
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise AttributeFileError(f"The attribute file {path} must be a .csv (header: file, then one column per "
                                 "attribute) or a .json ({file: {attribute: value}}), not {suffix or 'no extension'}.")
    try:
        text = data.decode("utf-8-sig")  # a spreadsheet's byte-order mark is dropped
    except UnicodeDecodeError:
        raise AttributeFileError(f"The attribute file {path} is not UTF-8 text: save it as UTF-8.") from None
    header, rows = _read_csv(path, text) if suffix == ".csv" else _read_json(path, text)
    names, declared = _split_kinds(path, header)
    if not rows:
        raise AttributeFileError(f"The attribute file {path} lists no files: add one row per image.")
    table = AttributeTable(path, names, declared, rows, hashlib.sha256(data).hexdigest())
    # every row is checked now, before a long decode; `finish` settles the statistics of the images kept
    keys = list(rows)
    for a, name in enumerate(names):
        _, spec = _column(path, name, declared[a], [rows[k][a] for k in keys], keys)
        table.declared[a] = spec["kind"]
    return table


def _read_csv(path: Path, text: str) -> tuple[list[str], dict[str, list]]:
    lines = list(csv.reader(text.splitlines()))
    lines = [line for line in lines if any(cell.strip() for cell in line)]  # blank lines are no rows
    if not lines:
        raise AttributeFileError(f"The attribute file {path} is empty: write a header (file, then one column "
                                 "per attribute) and one row per image.")
    header = [cell.strip() for cell in lines[0]]
    if header[0].lower() != FILE_COLUMN:
        hint = " (it looks separated by semicolons: use commas)" if ";" in lines[0][0] else ""
        raise AttributeFileError(f"The first column of {path} must be headed {FILE_COLUMN!r}, not {header[0]!r}"
                                 f"{hint}: the header is file, then one column per attribute.")
    rows: dict[str, list] = {}
    for number, line in enumerate(lines[1:], start=2):
        if len(line) != len(header):
            raise AttributeFileError(f"Line {number} of {path} has {len(line)} cells but the header has "
                                     f"{len(header)}: give each row a file and one value per attribute.")
        key = _key(path, line[0], f"line {number}")
        if key in rows:
            raise AttributeFileError(f"{path} lists {key!r} twice (again on line {number}): keep one row per image.")
        rows[key] = [cell.strip() or None for cell in line[1:]]
    return header[1:], rows


def _read_json(path: Path, text: str) -> tuple[list[str], dict[str, list]]:
    try:
        data = json.loads(text, object_pairs_hook=_refuse_duplicate_keys)
    except ValueError as exc:
        raise AttributeFileError(f"The attribute file {path} is not valid JSON ({exc}).") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise AttributeFileError(f"The attribute file {path} must hold one JSON object of file -> "
                                 '{attribute: value}, e.g. {"a.png": {"age": 31}}.')
    names: list[str] = []
    for attributes in data.values():
        names += [name for name in attributes if name not in names]
    rows: dict[str, list] = {}
    for raw_key, attributes in data.items():
        key = _key(path, raw_key, f"the entry {raw_key!r}")
        if key in rows:
            raise AttributeFileError(f"{path} lists {key!r} twice: keep one entry per image.")
        for name, value in attributes.items():
            if isinstance(value, (dict, list)):
                raise AttributeValueError(f"{raw_key} has a {type(value).__name__} for {name} in {path}: "
                                          "give a number or a word.")
        rows[key] = [attributes.get(name) for name in names]
    return names, rows


def _refuse_duplicate_keys(pairs):
    keys = [k for k, _ in pairs]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(f"{repeated[0]!r} appears twice in one object")
    return dict(pairs)


def _key(path: Path, raw: str, where: str) -> str:
    key = raw.strip().replace("\\", "/")
    while key.startswith("./"):
        key = key[2:]
    if not key:
        raise AttributeFileError(f"{where} of {path} has no file name: give the image's path relative to SRC, "
                                 "or its base name.")
    return key


def _split_kinds(path: Path, header: list[str]) -> tuple[list[str], list[str | None]]:
    """Names and declared kinds from headers such as `hair:categorical`."""
    if not header:
        raise AttributeFileError(f"The attribute file {path} names no attribute: add one column (CSV) or key "
                                 "(JSON) per attribute.")
    names, declared = [], []
    for column in header:
        name, _, kind = column.rpartition(":") if column.endswith(tuple(f":{k}" for k in KINDS)) else (column, "", "")
        name = name.strip()
        if not name:
            raise AttributeFileError(f"{path} has an attribute without a name: give every column a header.")
        if name in names:
            raise AttributeFileError(f"{path} has two attributes named {name!r}: rename one.")
        names.append(name)
        declared.append(kind or None)
    return names, declared


# --- matching ------------------------------------------------------------------------------------


def base_name(source: str) -> str:
    """An image's short name: the part after the last "/" (for a named dataset, its six-digit index)."""
    return PurePosixPath(source).name if "/" in source else source


def match_files(table: AttributeTable, sources: list[str]) -> dict[str, list]:
    """source name -> the row for it. `sources` is every file found in SRC (skipped ones too, so a row
    for a corrupt file is not called unknown). Unknown names and shared base names are errors."""
    exact = set(sources)
    by_base: dict[str, list[str]] = {}
    for source in sources:
        by_base.setdefault(base_name(source), []).append(source)
    matched: dict[str, list] = {}
    written_as: dict[str, str] = {}
    unknown = []
    for key, row in table.rows.items():
        if key in exact:
            source = key
        elif "/" not in key and key in by_base:
            candidates = by_base[key]
            if len(candidates) > 1:
                raise UnknownFileError(f"{key!r} in {table.path} could be any of {len(candidates)} files in SRC "
                                       f"({_short_list(sorted(candidates))}): write the path relative to SRC instead.")
            source = candidates[0]
        else:
            unknown.append(key)
            continue
        if source in matched:
            raise AttributeFileError(f"{table.path} gives {source} twice (as {written_as[source]!r} and {key!r}): "
                                     "keep one row per image.")
        matched[source], written_as[source] = row, key
    if unknown:
        example = sources[0] if sources else "a.png"
        raise UnknownFileError(f"{table.path} names {len(unknown)} file(s) that are not in SRC "
                               f"({_short_list(unknown)}): correct them to a path relative to SRC (like "
                               f"{example!r}) or a base name, or remove those rows.")
    return matched


# --- values --------------------------------------------------------------------------------------


def finish(table: AttributeTable, matched: dict[str, list], included: list[str]) -> tuple[np.ndarray, list[dict]]:
    """(float32 (N, A) values aligned with `included`, the manifest's description of each attribute).

    Only the images that made it into the dataset count: the statistics are theirs, and each of them
    needs a value for every attribute."""
    missing = [s for s in included if s not in matched]
    if missing:
        raise MissingAttributesError(f"{len(missing)} image(s) have no row in {table.path} "
                                     f"({_short_list(missing)}): add a row for each, or remove them from SRC.")
    columns = [[matched[s][a] for s in included] for a in range(len(table.names))]
    values, specs = [], []
    for name, declared, cells in zip(table.names, table.declared, columns):
        column, spec = _column(table.path, name, declared, cells, included)
        values.append(column)
        specs.append(spec)
    return np.stack(values, axis=1).astype(np.float32), specs


def _column(path: Path, name: str, declared: str | None, cells: list, sources: list[str]) -> tuple[np.ndarray, dict]:
    empty = [s for s, c in zip(sources, cells) if c is None]
    if len(empty) == len(cells):
        raise AttributeValueError(f"The attribute {name} in {path} is empty: fill it in for every image, "
                                  "or remove it.")
    if empty:
        raise MissingAttributesError(f"{len(empty)} image(s) have no value for {name} in {path} "
                                     f"({_short_list(empty)}): fill them in.")
    numbers = [_number(c) for c in cells]
    kind = declared or ("continuous" if all(n is not None for n in numbers) else
                        "categorical" if all(n is None for n in numbers) else None)
    if kind is None or (kind == "continuous" and None in numbers):
        text = [(s, c) for s, c, n in zip(sources, cells, numbers) if n is None]
        source, cell = text[0]
        comma = " (write decimals with a point)" if isinstance(cell, str) and _number(cell.replace(",", ".")) is not None else ""
        raise AttributeValueError(f"The attribute {name} in {path} holds numbers, but {source} has {cell!r}"
                                  f"{comma}: give a number, or head the column {name}:categorical if its values "
                                  "are categories.")
    if kind == "continuous":
        return _continuous(path, name, np.array(numbers, np.float64), sources)
    return _categorical(path, name, [_word(c) for c in cells])


def _number(cell) -> float | None:
    if isinstance(cell, bool):
        return None
    if isinstance(cell, (int, float)):
        return float(cell)
    try:
        return float(cell)
    except (TypeError, ValueError):
        return None


def _word(cell) -> str:
    if isinstance(cell, bool):
        return "true" if cell else "false"
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell)


def _continuous(path: Path, name: str, x: np.ndarray, sources: list[str]) -> tuple[np.ndarray, dict]:
    bad = ~np.isfinite(x)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise AttributeValueError(f"{name} is {x[first]} for {sources[first]} in {path}"
                                  f"{f' (and {int(bad.sum()) - 1} more)' if bad.sum() > 1 else ''}: give a finite "
                                  "number for every image.")
    mean, std = float(x.mean()), float(x.std())
    if not std > 0 or not math.isfinite(std):
        raise AttributeValueError(f"{name} is {x[0]:g} for every image in {path}: an attribute that never changes "
                                  "cannot steer the generator; remove it.")
    spec = {"name": name, "kind": "continuous", "mean": mean, "std": std, "min": float(x.min()), "max": float(x.max())}
    return x, spec


def _categorical(path: Path, name: str, words: list[str]) -> tuple[np.ndarray, dict]:
    found = set(words)
    numeric = all(_number(w) is not None for w in found)
    values = sorted(found, key=(lambda w: (float(w), w)) if numeric else None)  # 2 before 10
    if len(values) < 2:
        raise AttributeValueError(f"{name} is {values[0]!r} for every image in {path}: an attribute that never "
                                  "changes cannot steer the generator; remove it.")
    index = {v: i for i, v in enumerate(values)}
    codes = np.array([index[w] for w in words], np.float64)
    counts = np.bincount(codes.astype(np.int64), minlength=len(values)).tolist()
    return codes, {"name": name, "kind": "categorical", "values": values, "counts": counts}
