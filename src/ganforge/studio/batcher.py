"""Micro-batching: image requests that arrive together are generated in one batch.

Each request for (model, truncation, class) joins a queue and waits; one worker thread takes everything
queued for a key (up to `max_batch`) and makes it in one `Generator.generate` call, so while one batch is
being made the next fills up. At low load a request waits at most `wait_ms` for company. The images come
back as PNG bytes carrying the provenance mark and the signed manifest, as `ganforge sample` writes them.
"""

from __future__ import annotations

import asyncio
import io
import struct
import threading
import zlib
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL.PngImagePlugin import PngInfo

from ganforge.generator import Generator


_COLOUR_TYPES = {"L": 0, "RGB": 2, "RGBA": 6}


def png_bytes(image, metadata: dict[str, str]) -> bytes:
    """A PNG of `image` with `metadata` as text chunks. 8-bit grey, RGB and RGBA images are written directly
    (zlib level 1, no row filters): Pillow's writer costs 0.5 ms an image, a fifth of serving one."""
    colour = _COLOUR_TYPES.get(image.mode)
    if colour is None or any(not key.isascii() or not str(value).isascii() for key, value in metadata.items()):
        info = PngInfo()
        for key, value in metadata.items():
            info.add_text(key, str(value))
        buffer = io.BytesIO()
        image.save(buffer, "PNG", pnginfo=info, compress_level=1)
        return buffer.getvalue()
    pixels = np.asarray(image)
    height, width = pixels.shape[:2]
    rows = np.zeros((height, 1 + pixels[0].size), np.uint8)  # filter byte 0 (none) before each row
    rows[:, 1:] = pixels.reshape(height, -1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    parts = [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0))]
    parts += [chunk(b"tEXt", key.encode("latin-1") + b"\0" + str(value).encode("latin-1")) for key, value in metadata.items()]
    parts += [chunk(b"IDAT", zlib.compress(rows.tobytes(), 1)), chunk(b"IEND", b"")]
    return b"".join(parts)


class Batcher:
    """One worker makes the images; requests wait in per-key queues. When the worker is free it takes the
    longest queue whole (up to `max_batch`), so under load each batch is everything that arrived while the
    previous one was being made; when idle, a first request waits `wait_ms` for company."""

    def __init__(self, max_batch: int = 64, wait_ms: float = 2.0):
        self.max_batch, self.wait = max_batch, wait_ms / 1000
        self._pending: dict[tuple, list[tuple[int, asyncio.Future]]] = defaultdict(list)
        self._gens: dict[tuple, Generator] = {}
        self._busy = False
        self._timer: asyncio.TimerHandle | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ganforge-batch")  # one model run at a time
        self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ganforge-png")
        self._lock = threading.Lock()
        self.batches = 0  # counters for the load benchmark and the tests
        self.images = 0

    async def image(self, name: str, gen: Generator, seed: int, truncation: float = 1.0,
                    label: int | str | None = None) -> bytes:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        key = (name, id(gen), truncation, label)
        self._gens[key] = gen
        self._pending[key].append((seed, future))
        if not self._busy:
            if sum(len(q) for q in self._pending.values()) >= self.max_batch:
                self._start(loop)
            elif self._timer is None:
                self._timer = loop.call_later(self.wait, self._start, loop)
        return await future

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._busy:
            return
        waiting = [k for k, q in self._pending.items() if q]
        if not waiting:
            return
        key = max(waiting, key=lambda k: len(self._pending[k]))
        batch, self._pending[key] = self._pending[key][: self.max_batch], self._pending[key][self.max_batch:]
        self._busy = True
        gen = self._gens[key]
        job = loop.run_in_executor(self._worker, self._make, gen, key[2], key[3], [s for s, _ in batch])
        job.add_done_callback(lambda done: self._made(done, gen, batch, loop))

    def _made(self, done, gen, batch, loop) -> None:
        """The model is free for the next batch while this one is signed and encoded beside it."""
        self._busy = False
        if done.exception() is None:
            encoding = loop.run_in_executor(self._encoder, self._encode, gen, done.result())
            encoding.add_done_callback(lambda encoded: self._deliver(encoded, batch))
        else:
            self._deliver(done, batch)
        self._start(loop)  # whatever arrived meanwhile goes now: it has waited long enough

    @staticmethod
    def _deliver(done, batch) -> None:
        error = done.exception()
        for k, (_, future) in enumerate(batch):
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(done.result()[k])

    def _make(self, gen: Generator, truncation: float, label, seeds: list[int]) -> tuple[list[int], object]:
        x = gen.synthesize_seeds(seeds, truncation=truncation, label=label)  # the model only: the worker is
        with self._lock:                                                     # free for the next batch sooner
            self.batches += 1
            self.images += len(seeds)
        return seeds, x

    @staticmethod
    def _encode(gen: Generator, made: tuple) -> list[bytes]:
        seeds, x = made
        return [png_bytes(image, {"seed": seed, "software": "ganforge studio", **gen.signed(image, seed)})
                for seed, image in zip(seeds, gen.to_images(x, seeds))]  # marked, signed, encoded

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)
        self._encoder.shutdown(wait=False, cancel_futures=True)
