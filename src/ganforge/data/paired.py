"""Paired and unpaired prepared datasets, for image-to-image models (pix2pix, CycleGAN, SR, SPADE).

Four ways in, one format out (docs/prepared-format.md, kinds "paired" and "unpaired"):

- `--pair-with B`: A from SRC and B from another source, matched by path without extension;
- `--pairs side-by-side`: pix2pix's AB images, each split into its left half (A) and right half (B);
- `--derive MODE`: A computed from each image of SRC (see `derive`), B the image itself;
- `--unpaired B`: two independent sets, each with its own count.

Each side read from a source is an ordinary image preparation in OUT/.partial/a or /b, so it
decodes in parallel, skips and reports files as `prepare` does, and resumes when run again; the
pairing, the derived chunks (OUT/.partial/derive) and the manifest (last) come after.

Reading them (inspect's summary and sheet, the batch readers) is in data/pair_reader.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from ganforge import __version__
from ganforge.data import derive as derive_mod
from ganforge.data.chunks import _to_channels, chunk_done, chunk_size, settle_channels
from ganforge.data.decode import DecodeOptions, Skip, check_file_size, decode_image, fit_image
from ganforge.data.format import (FORMAT_NAME, MANIFEST, PAIRED_FORMAT_VERSION, REPORT, DatasetError,
                                  NpyStreamWriter, PreparedDataset, save_npy_atomic, write_json_atomic)
from ganforge.data.output import (OUTPUT_FILES, PARTIAL, PrepareError, check_writable, clear_output, make_folder,
                                  previous_manifest, remove_leftovers, reuse_or_clear)
from ganforge.data.results import INTERRUPTED, PrepareResult, check_resolution, files_digest, reused_result
from ganforge.data.sources import FolderSource, ZipSource, open_source

ROWS = 256  # images per piece when copying or deriving: memory stays flat whatever N is


# --- preparing -----------------------------------------------------------------------------------


def pair_mode(opts) -> str | None:
    """"name", "side-by-side", "derive", "unpaired" or None (an ordinary image dataset)."""
    given = [(flag, mode) for flag, mode, value in (("--pair-with", "name", opts.pair_with),
                                                    ("--pairs", "side-by-side", opts.pairs),
                                                    ("--derive", "derive", opts.derive),
                                                    ("--unpaired", "unpaired", opts.unpaired)) if value is not None]
    if len(given) > 1:
        raise PrepareError(f"{' and '.join(f for f, _ in given)} cannot be combined: choose one way to make the "
                           "second side.")
    if not given:
        return None
    if opts.pairs is not None and opts.pairs != "side-by-side":
        raise PrepareError(f"--pairs must be side-by-side (A on the left, B on the right), not {opts.pairs!r}.")
    flag = given[0][0]
    if opts.attributes is not None:
        raise PrepareError(f"--attributes describes single images and cannot be combined with {flag}.")
    if opts.labels == "folders" and flag != "--unpaired":  # unpaired: side A's classes (for DTN's classifier)
        raise PrepareError(f"--labels folders cannot be combined with {flag}: prepare the classes as an images dataset.")
    return given[0][1]


def prepare_pairs(src: str, out: Path, opts, mode: str, progress: bool, prepare_side):
    """The paired or unpaired preparation of `src` into `out` (see the module docstring). `prepare_side` is
    `prepare.prepare_dataset`, given by its caller: it prepares one side as an ordinary image set (passed in,
    not imported, so the two modules do not import each other)."""

    spec = derive_mod.parse_derive(opts.derive) if mode == "derive" else None
    base = _prepared_source(src) if mode == "derive" else None
    if base is not None:
        if opts.resolution not in (None, base.resolution):
            raise PrepareError(f"{src} is prepared at {base.resolution} px: leave out --resolution to derive at that "
                               "size, or derive from the original images.")
        opts = replace(opts, resolution=base.resolution)
    check_resolution(opts.resolution)
    opts.validate("images")
    if spec is not None:
        derive_mod.check_resolution(spec, opts.resolution)
    other = opts.pair_with if mode == "name" else opts.unpaired
    for path in (src, other) if mode in ("name", "unpaired") else (src,):
        _check_exists(path)  # before side A is prepared: a mistyped B must not cost its whole preparation
        if base is None and _prepared_source(path) is not None:
            raise PrepareError(f"{path} is already a prepared dataset: give the original images (only --derive "
                               "reads a prepared dataset).")
    if mode == "side-by-side":
        _side_by_side_source(src)  # refused before any scan
    kind = "unpaired" if mode == "unpaired" else "paired"
    settings = {"kind": kind, "pairing": mode, "source": _identity(src), **opts.output_settings("images")}
    if other is not None:
        settings["source_b"] = _identity(other)
    if spec is not None:
        settings["derive"] = spec.text
    digest = _sources_digest([src] if other is None else [src, other])
    previous = previous_manifest(out)
    check_writable(out)
    if reuse_or_clear(out, previous, settings, digest, opts.overwrite):
        try:
            PreparedDataset(out)
            remove_leftovers(out, (PARTIAL,))

            return reused_result(out, previous)
        except DatasetError as exc:
            print(f"{out} was prepared with these settings but is damaged, so it is prepared again. ({exc})",
                  file=sys.stderr, flush=True)
            clear_output(out)
    make_folder(out, out)
    remove_leftovers(out, tuple(name for name in OUTPUT_FILES if name != MANIFEST))
    work = out / PARTIAL
    plan = {"settings": settings, "files": digest}
    if _read_json(work / "plan.json") != plan:
        remove_leftovers(out, (PARTIAL,))  # other settings or a changed source: nothing in it is valid
    make_folder(work, out)
    write_json_atomic(work / "plan.json", plan)
    try:
        if mode == "name":
            parts = _pair_by_name(src, other, work, out, opts, progress, prepare_side)
        elif mode == "side-by-side":
            parts = _split_side_by_side(src, work, out, opts, progress)
        elif mode == "derive":
            parts = _derive_pairs(src, base, spec, work, out, opts, progress, prepare_side)
        else:
            parts = _unpaired(src, other, work, out, opts, progress, prepare_side)
    except KeyboardInterrupt:

        print(INTERRUPTED, file=sys.stderr, flush=True)
        raise
    return _finish(out, kind, mode, settings, digest, parts)


def _prepared_source(path: str) -> PreparedDataset | None:
    folder = Path(path).expanduser()
    if not (folder / MANIFEST).is_file():
        return None
    dataset = PreparedDataset(folder)
    if dataset.kind != "images":
        raise PrepareError(f"{path} is a {dataset.kind} dataset: pairs are derived from images.")
    return dataset


def _check_exists(src: str) -> None:
    from ganforge.data import fetch, synthetic

    if Path(src).expanduser().exists() or src == "digits" or fetch.parse_dataset_name(src) is not None:
        return
    if src in synthetic.MIXTURES:
        raise PrepareError(f"{src} is a point set; image-to-image pairs need images.")
    raise PrepareError(f"{src} not found: give a folder, an archive or a dataset name "
                       f"({', '.join(['digits', *fetch.DATASET_NAMES])}).")


def _identity(src: str) -> str:
    path = Path(src).expanduser()
    return f"path:{path.resolve()}" if path.exists() else f"dataset:{src}"


def _sources_digest(sources: list[str]) -> str:
    """One digest of every source's file list: a changed source makes the unfinished work stale."""

    digest = hashlib.sha256()
    for src in sources:
        path = Path(src).expanduser()
        if (path / MANIFEST).is_file():
            manifest = PreparedDataset(path).manifest
            digest.update(json.dumps([manifest.get("files_digest"), manifest.get("settings")]).encode())
        elif path.exists():
            digest.update(files_digest(open_source(path).scan()[0]).encode())
        else:
            digest.update(src.encode())  # a dataset name: its files are checked by their checksums
        digest.update(b"\0")
    return digest.hexdigest()


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _prepare_side(src: str, work: Path, side: str, opts, progress: bool, prepare_dataset) -> tuple[PreparedDataset, dict]:
    """One side as an ordinary image preparation in work/side (resumed or reused when run again)."""

    keep = ("resolution", "crop", "labels", "channels", "background", "min_size", "max_pixels", "workers", "mirror")
    if progress:
        print(f"Side {side.upper()}:", file=sys.stderr, flush=True)
    prepare_dataset(src, work / side, progress=progress, **{k: getattr(opts, k) for k in keep})
    return PreparedDataset(work / side), json.loads((work / side / REPORT).read_text(encoding="utf-8"))


def _copy_rows(array: np.ndarray, index: np.ndarray | None, target: Path) -> None:
    """array[index] (all rows when None) streamed into a .npy file."""
    rows = np.arange(len(array)) if index is None else np.asarray(index)
    with NpyStreamWriter(target, (len(rows), *array.shape[1:])) as writer:
        for start in range(0, len(rows), ROWS):
            writer.write(array[rows[start : start + ROWS]])


def _side_info(dataset: PreparedDataset, source: str, sha256=None) -> dict:
    """A side's entry in the manifest; `sha256` lists its rows' source hashes (its count)."""
    info = {"resolution": dataset.resolution, "channels": dataset.channels,
            "count": len(dataset) if sha256 is None else len(sha256), "source": source}
    if sha256 is not None:
        info["source_sha256"] = list(sha256)
    return info


def _tagged(skipped: list[dict], side: str) -> list[dict]:
    return [{**s, "side": side} for s in skipped]


def _stem_keys(names: list[str]) -> tuple[str, dict[str, str]]:
    """The folder every name shares (ignored: archives wrap their files in one) and name -> key."""
    split = [PurePosixPath(n).parts for n in names]
    top = split[0][0] if split and all(len(p) > 1 and p[0] == split[0][0] for p in split) else None
    keys = {}
    for name, parts in zip(names, split):
        rest = PurePosixPath(*(parts[1:] if top else parts))
        keys[name] = str(rest.with_suffix("")) if rest.suffix else str(rest)
    return top or "", keys


def _pair_by_name(src, other, work, out, opts, progress, prepare_side) -> dict:
    a_set, a_report = _prepare_side(src, work, "a", opts, progress, prepare_side)
    b_set, b_report = _prepare_side(other, work, "b", opts, progress, prepare_side)
    sides = {}
    for side, report in (("a", a_report), ("b", b_report)):
        names = [r["source"] for r in report["included"]] + [s["source"] for s in report["skipped"]]
        _, keys = _stem_keys(names)
        by_key: dict[str, list[dict]] = {}
        for r in report["included"]:
            by_key.setdefault(keys[r["source"]], []).append(r)
        skipped_by_key = {keys[s["source"]]: s for s in report["skipped"] if s["source"] in keys}
        sides[side] = (keys, by_key, skipped_by_key)
    skipped = _tagged(a_report["skipped"], "a") + _tagged(b_report["skipped"], "b")
    unique: dict[str, dict[str, dict]] = {"a": {}, "b": {}}
    for side, (_, by_key, _) in sides.items():
        for key, records in by_key.items():
            if len(records) == 1:
                unique[side][key] = records[0]
                continue
            names = " and ".join(r["source"] for r in records)
            skipped += [{"source": r["source"], "side": side, "reason": "ambiguous name",
                         "detail": f"{names} share the name {key}: rename one"} for r in records]
    for side, partner, folder in (("a", "b", other), ("b", "a", src)):
        for key, record in unique[side].items():
            if key in unique[partner]:
                continue
            gone = sides[partner][2].get(key)
            reason, detail = ("partner skipped", f"{gone['source']} in {folder} was skipped: {gone['reason']}") if gone \
                else ("no partner", f"no file named {key}.* in {folder}")
            skipped.append({"source": record["source"], "side": side, "reason": reason, "detail": detail})
    matched = sorted(set(unique["a"]) & set(unique["b"]))
    if not matched:
        raise PrepareError(f"No file of {src} has a partner of the same name in {other}: pairs are matched by "
                           "their path without the extension (a/cat.jpg with a/cat.png). "
                           f"Every file and its reason: {work / 'a' / REPORT} and {work / 'b' / REPORT}")
    index_a = [unique["a"][k]["index"] for k in matched]
    index_b = [unique["b"][k]["index"] for k in matched]
    _copy_rows(a_set.images, index_a, out / "a.npy")
    _copy_rows(b_set.images, index_b, out / "b.npy")
    a_sha, b_sha = a_set.manifest["source_sha256"], b_set.manifest["source_sha256"]
    return {
        "count": len(matched),
        "sides": {"a": _side_info(a_set, src, [a_sha[i] for i in index_a]),
                  "b": _side_info(b_set, other, [b_sha[i] for i in index_b])},
        "included": [{"index": n, "a": unique["a"][k]["source"], "b": unique["b"][k]["source"]}
                     for n, k in enumerate(matched)],
        "skipped": skipped,
        "files_found": a_set.manifest["files_found"] + b_set.manifest["files_found"],
    }


def _side_by_side_source(src: str):
    path = Path(src).expanduser()
    if not path.exists():
        raise PrepareError(f"{src} not found: --pairs side-by-side reads a folder or a .zip of AB images.")
    source = open_source(path)
    if not isinstance(source, (FolderSource, ZipSource)):
        raise PrepareError(f"--pairs side-by-side reads a folder or a .zip, not {path.name}: unpack it first.")
    return source


def _split_side_by_side(src, work, out, opts, progress) -> dict:
    source = _side_by_side_source(src)
    files, found_skipped = source.scan()
    resolution = int(opts.resolution)
    decode_opts = DecodeOptions(resolution=resolution, crop=opts.crop, background=opts.background_rgb(),
                                keep_alpha=str(opts.channels) == "4", min_size=opts.min_size,
                                max_pixels=opts.max_pixels)
    size = chunk_size(len(files), resolution)
    chunks = [files[i : i + size] for i in range(0, len(files), size)]
    todo = [i for i in range(len(chunks)) if not chunk_done(work, i)]
    with tqdm(total=len(files), initial=len(files) - sum(len(chunks[i]) for i in todo), unit="img",
              desc="splitting", disable=not progress, dynamic_ncols=True) as bar:
        for i in todo:
            _split_chunk(source, chunks[i], i, work, decode_opts)
            bar.update(len(chunks[i]))
    included, skipped, seen = [], [{"source": s.source, "side": "ab", "reason": s.reason, "detail": s.detail}
                                    for s in found_skipped], {}
    keep = []
    for i in range(len(chunks)):
        rows = []
        for record in json.loads((work / f"chunk-{i:06d}.json").read_text(encoding="utf-8")):
            if "reason" in record:
                skipped.append({"source": record["source"], "side": "ab", "reason": record["reason"],
                                "detail": record["detail"]})
            elif record["sha256"] in seen:
                skipped.append({"source": record["source"], "side": "ab", "reason": "duplicate",
                                "detail": f"same bytes as {seen[record['sha256']]}"})
            else:
                seen[record["sha256"]] = record["source"]
                rows.append(record["row"])
                included.append(record)
        keep.append(rows)
    if not included:
        raise PrepareError(f"No usable side-by-side image found in {src}: "
                           f"{', '.join(f'{n} {r}' for r, n in Counter(s['reason'] for s in skipped).most_common())}.")
    sides = {}
    for side in ("a", "b"):
        channels = settle_channels(opts.channels, [{"gray": r[f"gray_{side}"]} for r in included])
        shape = (len(included), resolution, resolution, channels)
        with NpyStreamWriter(out / f"{side}.npy", shape) as writer:
            for i, rows in enumerate(keep):
                if rows:
                    pixels = np.load(work / f"chunk-{i:06d}-{side}.npy", mmap_mode="r")[rows]
                    writer.write(_to_channels(pixels, channels))
        sides[side] = {"resolution": resolution, "channels": channels, "count": len(included), "source": src,
                       "source_sha256": [r["sha256"] for r in included]}
    return {"count": len(included), "sides": sides, "skipped": skipped,
            "included": [{"index": n, "a": r["source"] + " (left)", "b": r["source"] + " (right)"}
                         for n, r in enumerate(included)],
            "files_found": len(files) + len(found_skipped)}


def _split_chunk(source, files, index: int, work: Path, opts: DecodeOptions) -> None:
    check = replace(opts, resolution=4)  # decode_image only to skip a file with the usual reason
    halves = {"a": [], "b": []}
    records = []
    for f in files:
        record = {"source": f.name}
        try:
            check_file_size(f.size, opts)
            try:
                data = source.read(f)
            except OSError as exc:
                raise Skip("unreadable", exc.strerror or str(exc)) from None
            record["sha256"] = hashlib.sha256(data).hexdigest()
            decode_image(data, check)
            image = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
            width, height = image.size
            if width % 2 or width != 2 * height:
                why = f"its width {width} is odd" if width % 2 else f"{width}x{height} is not twice as wide as high"
                raise Skip("not side by side", f"{why}; an AB image holds A on the left and B on the right, "
                                               "two squares side by side")
            for side, box in (("a", (0, 0, height, height)), ("b", (height, 0, width, height))):
                pixels, gray, _ = fit_image(image.crop(box), opts)
                halves[side].append(pixels)
                record[f"gray_{side}"] = gray
            record["row"] = len(halves["a"]) - 1
        except Skip as skip:
            record = {"source": f.name, "reason": skip.reason, "detail": skip.detail}
        except Exception as exc:  # a decoder bug costs one file, never the preparation
            record = {"source": f.name, "reason": "corrupt", "detail": f"{type(exc).__name__}: {exc}"[:200]}
        records.append(record)
    empty = np.zeros((0, opts.resolution, opts.resolution, 4 if opts.keep_alpha else 3), np.uint8)
    for side, rows in halves.items():
        save_npy_atomic(work / f"chunk-{index:06d}-{side}.npy", np.stack(rows) if rows else empty)
    write_json_atomic(work / f"chunk-{index:06d}.json", records)  # last: marks the chunk done


def _derive_pairs(src, base, spec, work, out, opts, progress, prepare_side) -> dict:
    report = None
    if base is None:
        base, report = _prepare_side(src, work, "b", opts, progress, prepare_side)
    images = base.images  # (N, R, R, C) uint8, memory-mapped
    if spec.mode == "gray" and base.channels == 1:
        raise PrepareError(f"--derive gray needs colour images, but every image of {src} is grey: "
                           "a colouriser learns colour from them.")
    derived = work / "derive"
    plan = {"b": [base.manifest.get("files_digest"), base.manifest.get("settings"), len(base)], "derive": spec.text}
    if _read_json(derived / "plan.json") != plan:
        shutil.rmtree(derived, ignore_errors=True)
    make_folder(derived, out)
    write_json_atomic(derived / "plan.json", plan)
    centres = None
    if spec.mode == "labels":
        if not (derived / "centres.npy").is_file():
            save_npy_atomic(derived / "centres.npy", derive_mod.fit_label_centres(images, spec.k))
        centres = np.load(derived / "centres.npy")
    pieces = math.ceil(len(images) / ROWS)
    todo = [i for i in range(pieces) if not (derived / f"a-{i:06d}.npy").is_file()]
    with tqdm(total=pieces, initial=pieces - len(todo), unit="piece", desc=f"deriving {spec.text}",
              disable=not progress, dynamic_ncols=True) as bar:
        for i in todo:
            save_npy_atomic(derived / f"a-{i:06d}.npy", derive_mod.derive(spec, np.asarray(images[i * ROWS : (i + 1) * ROWS]), centres))
            bar.update(1)
    a_res, a_channels = spec.a_resolution(base.resolution), spec.a_channels(base.channels)
    with NpyStreamWriter(out / "a.npy", (len(images), a_res, a_res, a_channels)) as writer:
        for i in range(pieces):
            writer.write(np.load(derived / f"a-{i:06d}.npy"))
    sha = base.manifest.get("source_sha256")
    b_info = _side_info(base, src, sha)
    if base.labels is not None:
        save_npy_atomic(out / "labels.npy", np.asarray(base.labels, np.int64))
    if report is None:
        _copy_rows(images, None, out / "b.npy")  # a dataset of the user's: copied, never moved
    else:
        os.replace(base.path / "images.npy", out / "b.npy")  # last: the side's folder is spent from here
    a_info = {"resolution": a_res, "channels": a_channels, "count": len(images), "source": f"derived: {spec.text}"}
    derive_info = {"mode": spec.mode, "text": spec.text, "params": spec.params()}
    if centres is not None:
        derive_info["centres_lab"] = centres.astype(float).round(4).tolist()
        derive_info["colours_rgb"] = derive_mod.label_colours(centres).tolist()
    classes = base.class_names
    return {"count": len(images), "sides": {"a": a_info, "b": b_info}, "derive": derive_info,
            "classes": classes,
            "class_counts": None if base.labels is None else np.bincount(base.labels, minlength=len(classes)).tolist(),
            "included": [{"index": n, "b": r["source"]} for n, r in enumerate(report["included"])] if report else [],
            "skipped": _tagged(report["skipped"], "b") if report else [],
            "files_found": base.manifest.get("files_found", len(images))}


def _unpaired(src, other, work, out, opts, progress, prepare_side) -> dict:
    """Two sides as they are; classes (--labels folders, or a named dataset's) are side A's, in labels.npy."""
    a_set, a_report = _prepare_side(src, work, "a", opts, progress, prepare_side)
    b_opts = replace(opts, labels="none")  # B's classes are never used: B need not sit in class folders
    b_set, b_report = _prepare_side(other, work, "b", b_opts, progress, prepare_side)
    sides = {"a": _side_info(a_set, src, a_set.manifest["source_sha256"]),
             "b": _side_info(b_set, other, b_set.manifest["source_sha256"])}
    classes = {}
    if a_set.labels is not None:
        save_npy_atomic(out / "labels.npy", np.asarray(a_set.labels, np.int64))  # (N_A,)
        classes = {"classes": a_set.class_names,
                   "class_counts": np.bincount(a_set.labels, minlength=len(a_set.class_names)).tolist()}
    os.replace(a_set.path / "images.npy", out / "a.npy")
    os.replace(b_set.path / "images.npy", out / "b.npy")
    return {"count": len(a_set) + len(b_set), "sides": sides, **classes,
            "included": [{**r, "side": "a"} for r in a_report["included"]] + [{**r, "side": "b"} for r in b_report["included"]],
            "skipped": _tagged(a_report["skipped"], "a") + _tagged(b_report["skipped"], "b"),
            "files_found": a_set.manifest["files_found"] + b_set.manifest["files_found"]}


def _finish(out: Path, kind: str, mode: str, settings: dict, digest: str, parts: dict):

    skipped = sorted(parts["skipped"], key=lambda s: (s["side"], s["source"]))
    write_json_atomic(out / REPORT, {"source": settings["source"], "included": parts["included"], "skipped": skipped})
    by_reason = dict(Counter(s["reason"] for s in skipped))
    b = parts["sides"]["b"]
    manifest = {
        "format": FORMAT_NAME, "version": PAIRED_FORMAT_VERSION, "kind": kind, "ganforge_version": __version__,
        "pairing": mode, "resolution": b["resolution"], "channels": b["channels"], "count": parts["count"],
        "sides": parts["sides"], "derive": parts.get("derive"), "classes": parts.get("classes"),
        "class_counts": parts.get("class_counts"), "settings": settings, "files_digest": digest,
        "files_found": parts["files_found"], "skipped_by_reason": by_reason,
    }
    write_json_atomic(out / MANIFEST, manifest)  # last: the dataset is complete from here on
    shutil.rmtree(out / PARTIAL)
    return PrepareResult(out, kind, parts["count"], by_reason, b["channels"], parts.get("classes"))
