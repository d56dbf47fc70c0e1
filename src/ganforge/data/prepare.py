"""`prepare_dataset`: any source to the prepared format, in parallel, resumable, accounting for every file.

The work is cut into chunks of files in a fixed order. Each worker decodes a chunk and writes its
pixels and per-file results into OUT/.partial/ (atomically), so an interrupted preparation resumes
by doing only the chunks that are missing. When every chunk is done, the chunks are streamed into
the final images.npy (duplicates dropped, channels settled), the report and, last, the manifest.
Nothing is ever written into the source.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import shutil
import signal
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageColor
from tqdm import tqdm

from ganforge import __version__
from ganforge.data.decode import CROP_MODES, DEFAULT_MAX_PIXELS, DecodeOptions, Skip, decode_image, fit_image
from ganforge.data.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    REPORT,
    NpyStreamWriter,
    read_manifest,
    save_npy_atomic,
    write_json_atomic,
)
from ganforge.data.sources import Skipped, SourceFile, TarSource, label_root, open_source
from ganforge.errors import GanforgeError

PARTIAL = ".partial"
_OUTPUTS = (MANIFEST, REPORT, "images.npy", "labels.npy", "points.npy", "contact-sheet.png", PARTIAL)


class PrepareError(GanforgeError):
    pass


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

    def validate(self, kind: str) -> None:
        if self.crop not in CROP_MODES:
            raise PrepareError(f"crop must be one of {', '.join(CROP_MODES)}, not {self.crop!r}.")
        if self.labels not in ("auto", "none", "folders"):
            raise PrepareError(f"labels must be auto, none or folders, not {self.labels!r}.")
        if str(self.channels) not in ("auto", "1", "3", "4"):
            raise PrepareError(f"channels must be auto, 1, 3 or 4, not {self.channels!r}.")
        self.background_rgb()
        if kind != "points":
            if self.resolution is None:
                raise PrepareError("--resolution is required for images, for example --resolution 64.")
            if not 4 <= int(self.resolution) <= 4096:
                raise PrepareError(f"resolution must be between 4 and 4096 pixels, not {self.resolution}.")
        if self.count < 1:
            raise PrepareError("count must be at least 1.")

    def background_rgb(self) -> tuple[int, int, int]:
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


@dataclass
class PrepareResult:
    path: Path
    kind: str
    included: int
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    channels: int | None = None
    classes: list[str] | None = None
    reused: bool = False

    @property
    def skipped(self) -> int:
        return sum(self.skipped_by_reason.values())

    def summary(self) -> str:
        if self.reused:
            head = f"{self.path} is already prepared with these settings: nothing to do."
        else:
            head = f"Prepared {self.included:,} {'points' if self.kind == 'points' else 'images'} into {self.path}"
        lines = [head]
        if self.kind != "points":
            lines.append(f"  included: {self.included:,}" + (f" in {len(self.classes)} classes" if self.classes else ""))
            lines.append(f"  skipped:  {self.skipped:,}")
            for reason, n in sorted(self.skipped_by_reason.items(), key=lambda kv: -kv[1]):
                lines.append(f"    {n:>8,}  {reason}")
            if self.skipped:
                lines.append(f"  Every file and the reason for each skip: {self.path / REPORT}")
        return "\n".join(lines)


def prepare_dataset(src: str | os.PathLike, out: str | os.PathLike, *, progress: bool = True, **options) -> PrepareResult:
    """Prepare `src` (a folder, a .zip/.tar(.gz), a dataset name, or a point set) into `out`.

    Options are the fields of `PrepareOptions`; an unknown one is an error.
    """
    try:
        opts = PrepareOptions(**options)
    except TypeError as exc:
        raise PrepareError(f"{exc}. Known options: {', '.join(PrepareOptions.__dataclass_fields__)}.") from None
    out = Path(out).expanduser()
    source = _resolve_source(str(src), out, opts)
    opts.validate(source.kind)
    settings = {"source": source.identity, **opts.output_settings(source.kind)}
    if _reuse_or_clear(out, settings, opts.overwrite):
        manifest = read_manifest(out)
        return PrepareResult(out, manifest["kind"], manifest["count"], manifest.get("skipped_by_reason", {}),
                             manifest.get("channels"), manifest.get("classes"), reused=True)
    out.mkdir(parents=True, exist_ok=True)
    if source.kind == "points":
        return _prepare_points(source, out, opts, settings)
    return _prepare_images(source, out, opts, settings, progress)


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
    if src.split(":")[0] == "digits":
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


def _reuse_or_clear(out: Path, settings: dict, overwrite: bool) -> bool:
    """True when `out` already holds this exact preparation. Clears an older one only on request."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise PrepareError(f"{out} exists and is not a folder. Choose another output.")
    manifest_file = out / MANIFEST
    if manifest_file.exists():
        old = json.loads(manifest_file.read_text(encoding="utf-8")).get("settings")
        if old == settings and not overwrite:
            return True
        if not overwrite:
            raise PrepareError(
                f"{out} already holds a dataset prepared with other settings ({old}). "
                "Use --overwrite to replace it, or choose another output folder."
            )
        for name in _OUTPUTS:
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        return False
    foreign = [p.name for p in out.iterdir() if p.name not in _OUTPUTS]
    if foreign:
        raise PrepareError(f"{out} is not empty and holds no prepared dataset ({', '.join(sorted(foreign)[:3])}, ...). Choose a new or empty folder.")
    return False


# --- images --------------------------------------------------------------------------------------


def _prepare_images(source, out: Path, opts: PrepareOptions, settings: dict, progress: bool) -> PrepareResult:
    files, skipped = source.scan()
    files, skipped, class_of = _assign_classes(source, files, skipped, opts)
    work = out / PARTIAL
    chunk_size = _chunk_size(len(files), int(opts.resolution))
    plan = {"settings": settings, "chunk_size": chunk_size, "files": _digest(files)}
    if (work / "plan.json").exists() and json.loads((work / "plan.json").read_text()) != plan:
        shutil.rmtree(work)  # the source or the settings changed since: the chunks are stale
    work.mkdir(exist_ok=True)
    write_json_atomic(work / "plan.json", plan)

    chunks = [files[i : i + chunk_size] for i in range(0, len(files), chunk_size)]
    todo = [i for i in range(len(chunks)) if not (work / f"chunk-{i:06d}.json").exists()]
    decode_opts = DecodeOptions(
        resolution=int(opts.resolution), crop=opts.crop, background=opts.background_rgb(),
        keep_alpha=str(opts.channels) == "4", min_size=opts.min_size, max_pixels=opts.max_pixels,
    )
    done_files = len(files) - sum(len(chunks[i]) for i in todo)
    with tqdm(total=len(files), initial=done_files, unit="img", desc="preparing", disable=not progress,
              dynamic_ncols=True, smoothing=0.1) as bar:
        if done_files and progress:
            bar.write(f"Resuming: {done_files:,} of {len(files):,} files were already done.")
        tasks = _tasks(source, chunks, todo, decode_opts, work)
        try:
            _run(tasks, _resolve_workers(opts.workers, len(todo)), lambda n: bar.update(n))
        except KeyboardInterrupt:
            bar.write("Interrupted. The finished part is kept: run the same command again to finish.")
            raise
    return _assemble(source, out, work, chunks, skipped, class_of, opts, settings)


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


def _chunk_size(n_files: int, resolution: int) -> int:
    # Fixed by the file count alone (not the worker count) so a resumed run cuts the same chunks.
    by_count = min(256, max(16, math.ceil(n_files / 64)))
    by_memory = max(1, (64 << 20) // (resolution * resolution * 4))
    return min(by_count, by_memory)


def _digest(files: list[SourceFile]) -> str:
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.name}\t{f.size}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _resolve_workers(requested: int, n_tasks: int) -> int:
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(requested or available, n_tasks))


def _tasks(source, chunks, todo, decode_opts, work) -> Iterator[tuple]:
    if isinstance(source, TarSource):
        yield from _tar_tasks(source, chunks, todo, decode_opts, work)
        return
    for i in todo:
        if source.kind == "dataset":  # chunks of an array dataset are contiguous rows
            first, last = int(chunks[i][0].locator), int(chunks[i][-1].locator)
            yield (i, chunks[i], source.dataset.images[first : last + 1], None, decode_opts, work)
        else:  # folder and zip sources are read by the workers themselves
            yield (i, chunks[i], None, source, decode_opts, work)


def _tar_tasks(source: TarSource, chunks, todo, decode_opts, work) -> Iterator[tuple]:
    wanted = {f.name for i in todo for f in chunks[i]}
    stream = source.iter_bytes(wanted)
    early: dict[str, list[bytes]] = {}
    for i in todo:
        payload = []
        for f in chunks[i]:
            data = early[f.name].pop(0) if early.get(f.name) else None
            while data is None:
                item = next(stream, None)
                if item is None:
                    break  # the archive ended early: the rest is reported unreadable
                if item[0] == f.name:
                    data = item[1]
                else:
                    early.setdefault(item[0], []).append(item[1])
            payload.append(data)
        yield (i, chunks[i], payload, None, decode_opts, work)


def _run(tasks: Iterator[tuple], workers: int, advance) -> None:
    if workers == 1:
        for task in tasks:
            advance(process_chunk(task))
        return
    context = multiprocessing.get_context("spawn")  # never fork a process that may hold torch threads
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
        running = set()
        try:
            for task in tasks:
                running.add(pool.submit(process_chunk, task))
                if len(running) >= 2 * workers:  # bounded: a tar's bytes are never all in memory
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        advance(future.result())
            for future in running:
                advance(future.result())
        except KeyboardInterrupt:
            pool.shutdown(wait=True, cancel_futures=True)  # let chunks in progress finish cleanly
            raise


def _worker_init() -> None:
    # Ctrl-C goes to the whole process group; the main process alone decides what to do.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def process_chunk(task: tuple) -> int:
    """Decode one chunk; write its pixels and per-file results into the work folder. Returns its size."""
    index, files, payload, reader, opts, work = task
    pixels, records = [], []
    for k, f in enumerate(files):
        record = {"source": f.name}
        try:
            if reader is None and isinstance(payload, np.ndarray):
                array = payload[k]
                record["sha256"] = hashlib.sha256(array.tobytes()).hexdigest()
                image = Image.fromarray(array[:, :, 0] if array.shape[-1] == 1 else array)
                result, gray = fit_image(image, opts)
            else:
                data = payload[k] if payload is not None else _read(reader, f)
                record["sha256"] = hashlib.sha256(data).hexdigest()
                result, gray = decode_image(data, opts)
            record.update(row=len(pixels), gray=gray)
            pixels.append(result)
        except Skip as skip:
            record.update(reason=skip.reason, detail=skip.detail)
        except MemoryError:
            record.update(reason="too large to decode", detail="ran out of memory while decoding")
        except Exception as exc:  # a decoder bug must cost one file, never the preparation
            record.update(reason="corrupt", detail=f"{type(exc).__name__}: {exc}"[:200])
        records.append(record)
    channels = 4 if opts.keep_alpha else 3
    stacked = np.stack(pixels) if pixels else np.zeros((0, opts.resolution, opts.resolution, channels), np.uint8)
    save_npy_atomic(work / f"chunk-{index:06d}.npy", stacked)
    write_json_atomic(work / f"chunk-{index:06d}.json", records)  # last: marks the chunk done
    return len(files)


def _read(reader, f: SourceFile) -> bytes:
    try:
        return reader.read(f)
    except OSError as exc:
        raise Skip("unreadable", exc.strerror or str(exc)) from None
    except Exception as exc:  # e.g. a damaged zip member
        raise Skip("unreadable", str(exc)[:200]) from None


def _assemble(source, out, work, chunks, skipped, class_of, opts, settings) -> PrepareResult:
    records = []
    for i in range(len(chunks)):
        records.append(json.loads((work / f"chunk-{i:06d}.json").read_text(encoding="utf-8")))
    first_seen: dict[str, str] = {}
    keep: list[list[int]] = []
    included = []
    skipped = [{"source": s.source, "reason": s.reason, "detail": s.detail} for s in skipped]
    for chunk_records in records:
        rows = []
        for rec in chunk_records:
            if "reason" in rec:
                skipped.append({"source": rec["source"], "reason": rec["reason"], "detail": rec["detail"]})
            elif rec["sha256"] in first_seen:
                skipped.append({"source": rec["source"], "reason": "duplicate",
                                "detail": f"same bytes as {first_seen[rec['sha256']]}"})
            else:
                first_seen[rec["sha256"]] = rec["source"]
                rows.append(rec["row"])
                included.append(rec)
        keep.append(rows)

    if not included:
        write_json_atomic(out / REPORT, {"source": settings["source"], "included": [],
                                         "skipped": sorted(skipped, key=lambda s: s["source"])})
        reasons = ", ".join(f"{n} {r}" for r, n in Counter(s["reason"] for s in skipped).most_common())
        raise PrepareError(
            f"No usable image found in {settings['source'].split(':', 1)[1]} "
            f"({reasons or 'the source is empty'}). Every file and its reason: {out / REPORT}"
        )
    classes, labels = _labels(source, included, class_of)
    channels = _channels(opts.channels, included)
    writer = NpyStreamWriter(out / "images.npy", (len(included), opts.resolution, opts.resolution, channels))
    for i, rows in enumerate(keep):
        if rows:
            writer.write(_to_channels(np.load(work / f"chunk-{i:06d}.npy", mmap_mode="r")[rows], channels))
    writer.close()
    if labels is not None:
        save_npy_atomic(out / "labels.npy", labels)

    report = {
        "source": settings["source"],
        "included": [{"source": r["source"], "index": n, "label": None if labels is None else int(labels[n]),
                      "class": None if labels is None else classes[labels[n]]} for n, r in enumerate(included)],
        "skipped": sorted(skipped, key=lambda s: s["source"]),
    }
    write_json_atomic(out / REPORT, report)
    by_reason = dict(Counter(s["reason"] for s in skipped))
    manifest = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "kind": "images", "ganforge_version": __version__,
        "resolution": int(opts.resolution), "channels": channels, "count": len(included),
        "classes": classes, "class_counts": None if labels is None else np.bincount(labels, minlength=len(classes)).tolist(),
        "settings": settings, "files_found": len(included) + len(skipped), "skipped_by_reason": by_reason,
        "source_sha256": [r["sha256"] for r in included],
    }
    write_json_atomic(out / MANIFEST, manifest)  # last: the dataset is complete from here on
    shutil.rmtree(work)
    return PrepareResult(out, "images", len(included), by_reason, channels, classes)


def _labels(source, included, class_of):
    if class_of == "dataset":
        labels = np.array([source.dataset.labels[int(r["source"].rsplit("/", 1)[1])] for r in included], np.int64)
        return list(source.dataset.class_names), labels
    if not callable(class_of):
        return None, None
    names = [class_of(r["source"]) for r in included]
    classes = sorted(set(names))
    lookup = {c: i for i, c in enumerate(classes)}
    return classes, np.array([lookup[n] for n in names], np.int64)


def _channels(requested, included) -> int:
    if str(requested) == "auto":
        return 1 if included and all(r["gray"] for r in included) else 3
    return int(requested)


def _to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    if channels == 1:
        if pixels.shape[-1] == 1:
            return pixels
        # ITU-R 601 luma, as Pillow's "L" conversion; exact for grey pixels (R = G = B)
        weights = np.array([299, 587, 114], np.uint32)
        luma = (pixels[..., :3].astype(np.uint32) @ weights + 500) // 1000
        return luma.astype(np.uint8)[..., None]
    return pixels[..., :channels]


# --- points --------------------------------------------------------------------------------------


def _prepare_points(source: _PointSource, out: Path, opts: PrepareOptions, settings: dict) -> PrepareResult:
    from ganforge.data.synthetic import MIXTURES, gaussian_mixture

    points, modes = gaussian_mixture(source.name, opts.count, seed=opts.seed)
    spec = MIXTURES[source.name]
    save_npy_atomic(out / "points.npy", points.astype(np.float32))
    save_npy_atomic(out / "labels.npy", modes.astype(np.int64))
    manifest = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "kind": "points", "ganforge_version": __version__,
        "count": len(points), "dims": 2, "mixture": source.name, "modes": np.asarray(spec.modes).tolist(),
        "std": spec.std, "classes": [f"mode {i}" for i in range(len(spec.modes))], "settings": settings,
    }
    write_json_atomic(out / MANIFEST, manifest)
    return PrepareResult(out, "points", len(points), classes=manifest["classes"])
