"""Micro-batching: image requests that arrive together are generated in one batch.

Each request for (model, truncation, class) joins a queue and waits; one worker thread takes everything
queued for a key (up to `max_batch`) and makes it in one `Generator.generate` call, so while one batch is
being made the next fills up. At low load a request waits at most `wait_ms` for company. The images come
back as PNG bytes carrying the provenance mark and the signed manifest, as `ganforge sample` writes them.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from PIL.PngImagePlugin import PngInfo

from ganforge.generator import Generator


def png_bytes(image, metadata: dict[str, str]) -> bytes:
    info = PngInfo()
    for key, value in metadata.items():
        info.add_text(key, str(value))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", pnginfo=info, compress_level=1)  # fast: the network is not the bottleneck here
    return buffer.getvalue()


class Batcher:
    def __init__(self, max_batch: int = 64, wait_ms: float = 3.0):
        self.max_batch, self.wait = max_batch, wait_ms / 1000
        self._pending: dict[tuple, list[tuple[int, asyncio.Future]]] = defaultdict(list)
        self._scheduled: set[tuple] = set()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ganforge-batch")  # one model run at a time
        self._lock = threading.Lock()
        self.batches = 0  # counters for the load benchmark
        self.images = 0

    async def image(self, name: str, gen: Generator, seed: int, truncation: float = 1.0,
                    label: int | str | None = None) -> bytes:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        key = (name, id(gen), truncation, label)
        self._pending[key].append((seed, future))
        if len(self._pending[key]) >= self.max_batch:
            self._flush(key, gen, loop)
        elif key not in self._scheduled:
            self._scheduled.add(key)
            loop.call_later(self.wait, self._flush, key, gen, loop)
        return await future

    def _flush(self, key: tuple, gen: Generator, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled.discard(key)
        batch, self._pending[key] = self._pending[key][: self.max_batch], self._pending[key][self.max_batch:]
        if self._pending[key] and key not in self._scheduled:
            self._scheduled.add(key)
            loop.call_later(self.wait, self._flush, key, gen, loop)
        if not batch:
            return
        job = loop.run_in_executor(self._worker, self._make, gen, key[2], key[3], [s for s, _ in batch])
        job.add_done_callback(lambda done: self._deliver(done, batch))

    def _make(self, gen: Generator, truncation: float, label, seeds: list[int]) -> list[bytes]:
        made = [png_bytes(image, {"seed": seed, "software": "ganforge studio", **gen.signed(image, seed)})
                for seed, _, image in gen.generate(seeds, truncation=truncation, label=label, batch_size=len(seeds))]
        with self._lock:
            self.batches += 1
            self.images += len(made)
        return made

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

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)
