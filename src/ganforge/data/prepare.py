"""`prepare_dataset`: any source to the prepared format, accounting for every file, never touching the source.

The flow: resolve SRC (a folder, an archive, a dataset name, a point set), scan it, decide whether
OUT already holds this preparation (reuse), an unfinished one (resume) or another one (refuse
unless --overwrite), run the chunks that are missing (see `chunks`), then write labels, the
report and, last, the manifest.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
from collections import Counter
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import ImageColor
from tqdm import tqdm

from ganforge import __version__
from ganforge.data.attributes import finish, match_files, read_attribute_file
from ganforge.data.chunks import chunk_done, chunk_size, collect_records, run_chunks, settle_channels, write_images
from ganforge.data.decode import CROP_MODES, DEFAULT_MAX_PIXELS, DecodeOptions
from ganforge.data.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    REPORT,
    DatasetError,
    PreparedDataset,
    save_npy_atomic,
    write_json_atomic,
)
from ganforge.data.output import (
    OUTPUT_FILES,
    PARTIAL,
    PrepareError,
    check_writable,
    clear_output,
    ganforge_manifest,
    make_folder,
    mark_unfinished,
    previous_manifest,
    remove_leftovers,
    reuse_or_clear,
    unwritable_message,
)
from ganforge.data.results import (  # noqa: F401  (re-exported)
    INTERRUPTED,
    MAX_RESOLUTION,
    MIN_RESOLUTION,
    PrepareResult,
    check_resolution,
)
from ganforge.data.results import files_digest as _digest
from ganforge.data.results import reused_result as _reused
from ganforge.data.sources import Skipped, SourceFile, label_root, open_source



@dataclass
class PrepareOptions:
    resolution: int | None = None  # required for images
    crop: str = "center"  # center | pad | stretch
    labels: str = "auto"  # auto (a named dataset's classes, else none) | none | folders
    channels: str = "auto"  # auto (1 if every image is grey, else 3) | 1 | 3 | 4 (keeps transparency)
    background: str = "white"  # what transparency is composited onto: a colour name or #rrggbb
    min_size: int = 0  # skip images whose shorter side is below this
    max_pixels: int = DEFAULT_MAX_PIXELS  # skip images with more pixels (decompression bombs)
    workers: int = 0  # 0: every core
    overwrite: bool = False  # replace an earlier preparation with other settings
    count: int = 100_000  # point datasets: how many points
    seed: int = 0  # point datasets: sampling seed
    mirror: str | None = None  # named datasets: a local mirror folder (else $GANFORGE_MIRROR)
    attributes: str | None = None  # a CSV or JSON of file -> attributes (see data/attributes.py)
    # a second side, for image-to-image models (see data/paired.py); at most one of these
    pair_with: str | None = None  # B from another source, matched to SRC by file name
    pairs: str | None = None  # "side-by-side": each image of SRC is A (left) beside B (right)
    derive: str | None = None  # A derived from each image of SRC: gray, edges, sketch, downscale:F, labels:K
    unpaired: str | None = None  # B an independent set from another source

    def validate(self, kind: str) -> None:
        if self.crop not in CROP_MODES:
            raise PrepareError(f"crop must be one of {', '.join(CROP_MODES)}, not {self.crop!r}.")
        if self.labels not in ("auto", "none", "folders"):
            raise PrepareError(f"labels must be auto, none or folders, not {self.labels!r}.")
        if str(self.channels) not in ("auto", "1", "3", "4"):
            raise PrepareError(f"channels must be auto, 1, 3 or 4, not {self.channels!r}.")
        self.background_rgb()
        _check_whole("--workers", self.workers, 0, "0 (one per core) or more processes")
        if kind == "points":
            if self.attributes is not None:
                raise PrepareError("--attributes is for images; a point set has no files to describe.")
            _check_whole("--count", self.count, 1, "at least 1 point")
            _check_whole("--seed", self.seed, 0, "0 or more")
            return
        check_resolution(self.resolution)
        _check_whole("--min-size", self.min_size, 0, "0 (no minimum) or more pixels")
        _check_whole("--max-pixels", self.max_pixels, 1, "at least 1 pixel")

    def background_rgb(self) -> tuple[int, int, int]:
        if not isinstance(self.background, str):
            raise PrepareError(f"background must be a colour name or #rrggbb, not {self.background!r}.")
        try:
            return ImageColor.getrgb(self.background)[:3]
        except ValueError:
            raise PrepareError(
                f"background {self.background!r} is not a colour: use a name (white, black) or #rrggbb."
            ) from None

    def output_settings(self, kind: str) -> dict:
        """The options that change the output: a re-run with the same ones can resume or reuse it."""
        if kind == "points":
            return {"count": self.count, "seed": self.seed}
        keep = ("resolution", "crop", "labels", "channels", "background", "min_size", "max_pixels")
        return {k: (str(v) if k == "channels" else v) for k, v in asdict(self).items() if k in keep}


def _check_whole(flag: str, value, minimum: int, allowed: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise PrepareError(f"{flag} must be {allowed}, not {value!r}.")


def prepare_dataset(src: str | os.PathLike, out: str | os.PathLike, *, progress: bool = True, **options) -> PrepareResult:
    """Prepare `src` (a folder, a .zip/.tar(.gz), a dataset name, or a point set) into `out`.

    Options are the fields of `PrepareOptions`; an unknown one is an error.
    """
    try:
        opts = PrepareOptions(**options)
    except TypeError as exc:
        raise PrepareError(f"{exc}. Known options: {', '.join(PrepareOptions.__dataclass_fields__)}.") from None
    out = Path(out).expanduser()
    from ganforge.data.paired import pair_mode, prepare_pairs  # paired and unpaired kinds: their own flow

    mode = pair_mode(opts)
    if mode is not None:
        return prepare_pairs(str(src), out, opts, mode, progress, prepare_side=prepare_dataset)
    _refuse_wrong_source(str(src))  # before the options: a wrong source is the first thing to fix
    opts.validate(_kind_of(str(src)))  # before resolving: a named dataset may take minutes to load
    table = read_attribute_file(opts.attributes) if opts.attributes is not None else None  # before a long scan
    source = _resolve_source(str(src), out, opts)
    settings = {"source": source.identity, **opts.output_settings(source.kind)}
    if table is not None:
        settings["attributes"] = table.settings  # only when given: earlier preparations stay reusable
    previous = previous_manifest(out)
    check_writable(out)  # before the scan, which may take minutes on a large archive
    digest = None
    if source.kind != "points":
        if progress:
            print(f"Scanning {src} ...", file=sys.stderr, flush=True)
        files, skipped = source.scan()
        files, skipped, class_of = _assign_classes(source, files, skipped, opts)
        digest = _digest(files)
        # every file found counts as known, so a row for a file skipped as corrupt is no error
        attributes = None if table is None else (table, match_files(table, [f.name for f in files] + [s.source for s in skipped]))
    if reuse_or_clear(out, previous, settings, digest, opts.overwrite):
        damage = _damage(out)
        if damage is None:
            remove_leftovers(out, (PARTIAL,))  # a kill after the manifest was written, before the clean-up
            return _reused(out, previous)
        print(f"{out} was prepared with these settings but is damaged, so it is prepared again. ({damage})",
              file=sys.stderr, flush=True)
        clear_output(out)
    make_folder(out, out)
    remove_leftovers(out, tuple(name for name in OUTPUT_FILES if name != MANIFEST))
    try:
        if source.kind == "points":
            return _prepare_points(source, out, opts, settings)
        return _prepare_images(source, out, files, skipped, class_of, digest, opts, settings, progress, attributes)
    except PermissionError as exc:  # e.g. the folder was made read-only while preparing
        raise PrepareError(unwritable_message(out, Path(exc.filename or out).parent, exc)) from None


def _damage(out: Path) -> str | None:
    """Why a finished preparation cannot be read (a file truncated or replaced since), or None."""
    try:
        PreparedDataset(out)
    except DatasetError as exc:
        return str(exc)
    return None


# --- sources -------------------------------------------------------------------------------------


class _ArraySource:
    """A named dataset already in memory as uint8 arrays (MNIST, CIFAR-10, the built-in digits)."""

    kind = "dataset"

    def __init__(self, dataset):
        self.dataset = dataset
        self.identity = f"dataset:{dataset.name}:{dataset.split}"

    def scan(self) -> tuple[list[SourceFile], list[Skipped]]:
        prefix = f"{self.dataset.name}:{self.dataset.split}"
        pixels = self.dataset.images[0].nbytes
        return [SourceFile(f"{prefix}/{i:06d}", str(i), pixels) for i in range(len(self.dataset.images))], []


class _PointSource:
    kind = "points"

    def __init__(self, name: str):
        self.name = name
        self.identity = f"points:{name}"


def _kind_of(src: str) -> str:
    from ganforge.data.synthetic import MIXTURES

    return "points" if src in MIXTURES and not Path(src).expanduser().exists() else "images"


def _refuse_wrong_source(src: str) -> None:
    """Refuse a split of a source that has none, and a prepared dataset given as a source."""
    from ganforge.data.synthetic import MIXTURES

    path = Path(src).expanduser()
    if path.exists():
        if path.is_dir() and ganforge_manifest(path / MANIFEST) is not None:
            raise PrepareError(f"{src} is already a prepared dataset: train on it directly (ganforge train {src}), "
                               "or prepare from the original images.")
        return
    name, sep, split = src.partition(":")
    no_split = f"no {split} split" if split else "no splits"
    if sep and name == "digits":
        raise PrepareError(f"The built-in digits are one set of 1,797 images with {no_split}: use digits.")
    if sep and name in MIXTURES:
        raise PrepareError(f"{name} is a generated point set; it has {no_split}: use {name}.")


def _resolve_source(src: str, out: Path, opts: PrepareOptions):
    path = Path(src).expanduser()
    if path.exists():
        _check_not_nested(path.resolve(), out.resolve())
        source = open_source(path)
        source.identity = f"{source.kind}:{path.resolve()}"
        return source
    from ganforge.data import fetch, synthetic  # only named sources need them

    if src in synthetic.MIXTURES:
        return _PointSource(src)
    if src == "digits":
        from ganforge.data.builtin import load_digits

        return _ArraySource(load_digits())
    parsed = fetch.parse_dataset_name(src)
    if parsed is not None:
        return _ArraySource(fetch.fetch_dataset(parsed[0], parsed[1], mirror=opts.mirror))
    known = ", ".join(["digits", *fetch.DATASET_NAMES, *synthetic.MIXTURES])
    raise PrepareError(f"{src} not found: it is neither a folder, an archive, nor a dataset name ({known}).")


def _check_not_nested(src: Path, out: Path) -> None:
    if src.is_dir() and (out == src or src in out.parents):
        raise PrepareError(f"The output {out} is inside the source {src}; ganforge never writes into a source. Choose an output outside it.")
    if out in src.parents:
        raise PrepareError(f"The source {src} is inside the output {out}. Choose a separate output folder.")


# --- images --------------------------------------------------------------------------------------




def _prepare_images(source, out, files, skipped, class_of, digest, opts, settings, progress, attributes) -> PrepareResult:
    resolution = int(opts.resolution)
    work = out / PARTIAL
    size = chunk_size(len(files), resolution)
    # the decoded chunks do not depend on the attributes: a corrected attribute file reuses them
    plan = {"settings": {k: v for k, v in settings.items() if k != "attributes"}, "chunk_size": size, "files": digest}
    if _read_plan(work) != plan:
        remove_leftovers(out, (PARTIAL,))  # the source or the settings changed since: the chunks are stale
    make_folder(work, out)
    write_json_atomic(work / "plan.json", plan)

    chunks = [files[i : i + size] for i in range(0, len(files), size)]
    decode_opts = DecodeOptions(
        resolution=resolution, crop=opts.crop, background=opts.background_rgb(),
        keep_alpha=str(opts.channels) == "4", min_size=opts.min_size, max_pixels=opts.max_pixels,
    )
    try:
        _decode_chunks(source, chunks, work, decode_opts, opts.workers, progress)
        return _merge(source, out, chunks, skipped, class_of, digest, opts, settings, attributes)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr, flush=True)
        raise
    except BrokenProcessPool:
        raise PrepareError(
            "A worker process stopped abruptly (most often the system ran out of memory and killed it). "
            "The finished part is kept: run the same command again to go on, and if this happens again, "
            "add --workers 1 (fewer processes, less memory).") from None


def _read_plan(work: Path) -> dict | None:
    try:
        return json.loads((work / "plan.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # no plan, or one damaged: the chunks cannot be trusted


def _decode_chunks(source, chunks, work, decode_opts, workers, progress) -> None:
    todo = [i for i in range(len(chunks)) if not chunk_done(work, i)]
    n_files = sum(map(len, chunks))
    done_files = n_files - sum(len(chunks[i]) for i in todo)
    with tqdm(total=n_files, initial=done_files, unit="img", desc="preparing", disable=not progress,
              dynamic_ncols=True, smoothing=0.1) as bar:
        if done_files and progress:
            bar.write(f"Resuming: {done_files:,} of {n_files:,} files were already done.", file=sys.stderr)
        run_chunks(source, chunks, todo, decode_opts, work, workers, bar.update)


def _merge(source, out, chunks, skipped, class_of, digest, opts, settings, attributes) -> PrepareResult:
    """Chunks to images.npy, labels, attributes, the report and, last, the manifest."""
    work = out / PARTIAL
    resolution = int(opts.resolution)
    included, dropped, keep = collect_records(work, len(chunks))
    skipped = [{"source": s.source, "reason": s.reason, "detail": s.detail} for s in skipped] + dropped
    skipped.sort(key=lambda s: s["source"])
    if not included:
        write_json_atomic(out / REPORT, {"source": settings["source"], "included": [], "skipped": skipped})
        remove_leftovers(out, (PARTIAL,))  # nothing to resume: every file was looked at
        reasons = ", ".join(f"{n} {r}" for r, n in Counter(s["reason"] for s in skipped).most_common())
        raise PrepareError(f"No usable image found in {settings['source'].split(':', 1)[1]} "
                           f"({reasons or 'the source is empty'}). Every file and its reason: {out / REPORT}")
    classes, labels = _labels(source, included, class_of)
    # looked up by each included image's name: skipped and duplicate files leave no gap
    values, specs = finish(*attributes, [r["source"] for r in included]) if attributes else (None, None)
    channels = settle_channels(opts.channels, included)
    write_images(work, keep, out / "images.npy", resolution, channels)
    if labels is not None:
        save_npy_atomic(out / "labels.npy", labels)
    if values is not None:
        save_npy_atomic(out / "attributes.npy", values)
    report = {
        "source": settings["source"],
        "included": [{"source": r["source"], "index": n, "label": None if labels is None else int(labels[n]),
                      "class": None if labels is None else classes[labels[n]]} for n, r in enumerate(included)],
        "skipped": skipped,
    }
    write_json_atomic(out / REPORT, report)
    by_reason = dict(Counter(s["reason"] for s in skipped))
    manifest = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "kind": "images", "ganforge_version": __version__,
        "resolution": resolution, "channels": channels, "count": len(included), "classes": classes,
        "class_counts": None if labels is None else np.bincount(labels, minlength=len(classes)).tolist(),
        "settings": settings, "files_digest": digest, "files_found": len(included) + len(skipped),
        "skipped_by_reason": by_reason, "source_sha256": [r["sha256"] for r in included],
    }
    if specs is not None:
        manifest["attributes"] = specs
    write_json_atomic(out / MANIFEST, manifest)  # last: the dataset is complete from here on
    shutil.rmtree(work)
    warning = upsampling_warning([r.get("side") for r in included], resolution)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return PrepareResult(out, "images", len(included), by_reason, channels, classes)


def upsampling_warning(sides: list[int | None], resolution: int) -> str | None:
    """A sentence when most images are smaller than `resolution` and the power of two nearest their median
    side is smaller too: enlarging them adds no detail, and training at twice the side costs about four
    times as much. A small enlargement to the nearest power of two (MNIST's 28 px to 32) is no mistake."""
    known = sorted(s for s in sides if s)
    small = sum(s < resolution for s in known)
    if not known or small * 2 <= len(known):
        return None
    median = known[len(known) // 2]
    native = max(MIN_RESOLUTION, 1 << round(math.log2(median)))
    if native >= resolution:
        return None
    return (f"{small:,} of {len(known):,} images ({100 * small / len(known):.0f} %) are smaller than {resolution} px "
            f"(half are {median} px or less), so --resolution {resolution} enlarges them: that adds no detail and "
            f"makes training about {(resolution / native) ** 2:.0f}x slower. Their native size is --resolution {native}.")


def _labels(source, included: list[dict], class_of) -> tuple[list[str] | None, np.ndarray | None]:
    if class_of == "dataset":
        labels = np.array([source.dataset.labels[int(r["source"].rsplit("/", 1)[1])] for r in included], np.int64)
        return list(source.dataset.class_names), labels
    if not callable(class_of):
        return None, None
    names = [class_of(r["source"]) for r in included]
    classes = sorted(set(names))
    lookup = {c: i for i, c in enumerate(classes)}
    return classes, np.array([lookup[n] for n in names], np.int64)


def _assign_classes(source, files, skipped, opts):
    """Labels from top-level folders: files outside any class folder are skipped, not guessed."""
    mode = opts.labels
    if mode == "auto":
        mode = "dataset" if source.kind == "dataset" else "none"
    if mode == "folders" and source.kind == "dataset":
        mode = "dataset"
    if mode != "folders":
        return files, skipped, mode
    root = label_root([f.name for f in files]) if source.kind != "folder" else ""
    kept = []
    for f in files:
        rest = f.name[len(root):]
        if "/" in rest:
            kept.append(f)
        else:
            skipped.append(Skipped(f.name, "not in a class folder", "with labels=folders each image must sit in a class subfolder"))
    return kept, skipped, lambda name: name[len(root):].split("/", 1)[0]


# --- points --------------------------------------------------------------------------------------


def _prepare_points(source: _PointSource, out: Path, opts: PrepareOptions, settings: dict) -> PrepareResult:
    from ganforge.data.synthetic import MIXTURES, gaussian_mixture

    try:
        points, modes = gaussian_mixture(source.name, opts.count, seed=opts.seed)
    except MemoryError:
        with contextlib.suppress(OSError):
            out.rmdir()  # only if it is empty: made for this run
        raise PrepareError(f"{opts.count:,} points do not fit in memory (about {opts.count * 32 / 2**30:.1f} GiB "
                           "are needed): use a smaller --count, such as the default 100000.") from None
    spec = MIXTURES[source.name]
    mark_unfinished(out, {"settings": settings})
    save_npy_atomic(out / "points.npy", points.astype(np.float32))
    save_npy_atomic(out / "labels.npy", modes.astype(np.int64))
    manifest = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "kind": "points", "ganforge_version": __version__,
        "count": len(points), "dims": 2, "mixture": source.name, "modes": np.asarray(spec.modes).tolist(),
        "std": spec.std, "classes": [f"mode {i}" for i in range(len(spec.modes))], "settings": settings,
    }
    write_json_atomic(out / MANIFEST, manifest)
    shutil.rmtree(out / PARTIAL)
    return PrepareResult(out, "points", len(points), classes=manifest["classes"])
