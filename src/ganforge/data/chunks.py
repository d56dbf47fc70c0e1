"""The chunked, parallel half of preparation: decode chunks of files in worker processes, then merge.

A chunk is a fixed run of files. Its worker writes OUT/.partial/chunk-NNNNNN.npy (pixels) and then
chunk-NNNNNN.json (one record per file), each atomically; the .json marks the chunk done, so an
interrupted preparation redoes nothing that finished. Merging drops byte-identical duplicates
(the first in file order stays) and streams the pixels into images.npy with flat memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np
from PIL import Image

from ganforge.data import decode
from ganforge.data.decode import DecodeOptions, Skip, decode_image, fit_image
from ganforge.data.format import NpyStreamWriter, save_npy_atomic, write_json_atomic
from ganforge.data.sources import SourceFile, TarSource

Task = tuple  # (index, files, payload, reader, DecodeOptions, work folder): plain, so it pickles


def chunk_size(n_files: int, resolution: int) -> int:
    # Fixed by the file count alone (not the worker count) so a resumed run cuts the same chunks.
    by_count = min(256, max(16, math.ceil(n_files / 64)))
    by_memory = max(1, (64 << 20) // (resolution * resolution * 4))
    return min(by_count, by_memory)


def chunk_done(work: Path, index: int) -> bool:
    return (work / f"chunk-{index:06d}.json").exists()


def run_chunks(source, chunks: list[list[SourceFile]], todo: list[int], opts: DecodeOptions, work: Path,
               workers: int, advance: Callable[[int], None]) -> None:
    """Process the chunks numbered in `todo`, calling `advance(n_files)` as each one finishes."""
    tasks = _tar_tasks(source, chunks, todo, opts, work) if isinstance(source, TarSource) else \
        _tasks(source, chunks, todo, opts, work)
    workers = max(1, min(workers or _available_cores(), len(todo)))
    if workers == 1:
        for task in tasks:
            advance(process_chunk(task))
        return
    context = multiprocessing.get_context("spawn")  # never fork a process that may hold torch threads
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_ignore_sigint) as pool:
        running = set()
        try:
            for task in tasks:
                with _sigint_deferred():  # submit starts the workers: they must be born deaf to Ctrl-C
                    running.add(pool.submit(process_chunk, task))
                if len(running) >= 2 * workers:  # bounded: a tar's bytes are never all in memory
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        advance(future.result())
            for future in running:
                advance(future.result())
        except BaseException:  # Ctrl-C, a full disk, a worker killed: start no more chunks
            pool.shutdown(wait=True, cancel_futures=True)  # and let chunks in progress finish cleanly
            raise


def _available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _ignore_sigint() -> None:
    # Ctrl-C reaches the whole process group; the main process alone decides what to do.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold back Ctrl-C while this thread starts worker processes, and raise it once they are started.

    Two things are needed. SIGINT is blocked in this thread: a worker inherits the mask through fork
    and exec, so a Ctrl-C that reaches it while it is still importing (before `_ignore_sigint` runs)
    cannot kill it and break the pool; setting SIG_IGN then discards the pending signal. And the
    Python handler only notes the signal meanwhile: the kernel may hand it to another thread of this
    process (the pool's manager thread), whose note would otherwise raise KeyboardInterrupt here
    between starting a worker and sending it its start-up data, and that worker would die of an
    EOFError with a traceback."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks (and no process groups)
        yield
        return
    caught = []
    previous_handler = None
    if threading.current_thread() is threading.main_thread():
        previous_handler = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)
            if caught and callable(previous_handler):
                previous_handler(signal.SIGINT, None)  # Python's default raises KeyboardInterrupt
            elif caught and previous_handler == signal.SIG_DFL:
                raise KeyboardInterrupt


def _tasks(source, chunks, todo, opts, work) -> Iterator[Task]:
    for i in todo:
        if source.kind == "dataset":  # chunks of an array dataset are contiguous rows
            first, last = int(chunks[i][0].locator), int(chunks[i][-1].locator)
            yield (i, chunks[i], source.dataset.images[first : last + 1], None, opts, work)
        else:  # folder and zip sources are read by the workers themselves
            yield (i, chunks[i], None, source, opts, work)


def _tar_tasks(source: TarSource, chunks, todo, opts, work) -> Iterator[Task]:
    """Stream the archive once, handing each chunk its members' bytes (None: the archive ended)."""
    wanted = {f.name for i in todo for f in chunks[i] if _may_read(f, opts)}
    stream = source.iter_bytes(wanted)
    early: dict[str, list[bytes]] = {}
    for i in todo:
        payload = []
        for f in chunks[i]:
            data = early[f.name].pop(0) if early.get(f.name) else None
            while data is None and f.name in wanted:
                item = next(stream, None)
                if item is None:
                    break
                if item[0] == f.name:
                    data = item[1]
                else:
                    early.setdefault(item[0], []).append(item[1])
            payload.append(data)
        yield (i, chunks[i], payload, None, opts, work)


def _may_read(f: SourceFile, opts: DecodeOptions) -> bool:
    try:
        decode.check_file_size(f.size, opts)
    except Skip:
        return False  # never read into memory: process_chunk reports it
    return True


def process_chunk(task: Task) -> int:
    """Decode one chunk; write its pixels and per-file records into the work folder. Returns its size."""
    index, files, payload, reader, opts, work = task
    pixels, records = [], []
    for k, f in enumerate(files):
        record = {"source": f.name}
        try:
            if isinstance(payload, np.ndarray):
                array = payload[k]
                record["sha256"] = hashlib.sha256(array.tobytes()).hexdigest()
                result, gray, side = fit_image(Image.fromarray(array[:, :, 0] if array.shape[-1] == 1 else array), opts)
            else:
                decode.check_file_size(f.size, opts)
                data = payload[k] if payload is not None else _read(reader, f)
                if data is None:
                    raise Skip("unreadable", "the archive ended before this file could be read")
                record["sha256"] = hashlib.sha256(data).hexdigest()
                result, gray, side = decode_image(data, opts)
            record.update(row=len(pixels), gray=gray, side=side)
            pixels.append(result)
        except Skip as skip:
            record.update(reason=skip.reason, detail=skip.detail)
        except MemoryError:
            record.update(reason="too large to decode", detail="ran out of memory while decoding")
        except Exception as exc:  # a decoder bug must cost one file, never the preparation
            record.update(reason="corrupt", detail=f"{type(exc).__name__}: {exc}"[:200])
        records.append(record)
    channels = 4 if opts.keep_alpha else 3
    empty = np.zeros((0, opts.resolution, opts.resolution, channels), np.uint8)
    save_npy_atomic(work / f"chunk-{index:06d}.npy", np.stack(pixels) if pixels else empty)
    write_json_atomic(work / f"chunk-{index:06d}.json", records)  # last: marks the chunk done
    return len(files)


def _read(reader, f: SourceFile) -> bytes:
    try:
        return reader.read(f)
    except OSError as exc:
        raise Skip("unreadable", exc.strerror or str(exc)) from None
    except Exception as exc:  # e.g. a damaged zip member
        raise Skip("unreadable", str(exc)[:200]) from None


def collect_records(work: Path, n_chunks: int) -> tuple[list[dict], list[dict], list[list[int]]]:
    """(included records, skipped records, rows to keep per chunk), duplicates moved to skipped."""
    first_seen: dict[str, str] = {}
    included, skipped, keep = [], [], []
    for i in range(n_chunks):
        rows = []
        for rec in json.loads((work / f"chunk-{i:06d}.json").read_text(encoding="utf-8")):
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
    return included, skipped, keep


def settle_channels(requested: str, included: list[dict]) -> int:
    if str(requested) == "auto":
        return 1 if included and all(r["gray"] for r in included) else 3
    return int(requested)


def write_images(work: Path, keep: list[list[int]], target: Path, resolution: int, channels: int) -> None:
    """Stream the kept rows of every chunk into one (N, R, R, C) uint8 .npy file."""
    with NpyStreamWriter(target, (sum(map(len, keep)), resolution, resolution, channels)) as writer:
        for i, rows in enumerate(keep):
            if rows:
                writer.write(_to_channels(np.load(work / f"chunk-{i:06d}.npy", mmap_mode="r")[rows], channels))


def _to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    if channels == 1:
        # ITU-R 601 luma, as Pillow's "L" conversion; exact for grey pixels (R = G = B)
        weights = np.array([299, 587, 114], np.uint32)
        luma = (pixels[..., :3].astype(np.uint32) @ weights + 500) // 1000
        return luma.astype(np.uint8)[..., None]
    return pixels[..., :channels]
