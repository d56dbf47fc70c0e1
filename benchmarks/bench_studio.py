"""The studio under load: 10,000 image requests at concurrency 32 to 127.0.0.1, against the batched sampling
rate `bench_generate.py` measures for the same DCGAN-64 generator.

1. Export a DCGAN-64 generator (the default preset's, random weights: speed does not depend on them) into
   a fresh studio folder's models/.
2. Measure batched sampling in this process as bench_generate.py does (synthesize, batch 256).
3. Start `ganforge studio` in its own process and send --requests image requests (random seeds), --concurrency
   at a time, over keep-alive connections. Every answer must be a 200 PNG: errors are counted.
4. Measure batched sampling again (this machine's speed drifts by a third between minutes), and report
   images/s served, its share of the mean of the two batched rates (target >= 50 %), and latency
   p50/p90/p99.

    python benchmarks/bench_studio.py [--requests 10000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent / "src"))

from bench_generate import export_random_dcgan  # noqa: E402

from ganforge.generator import Generator  # noqa: E402


def batched_rate(folder: Path, batch: int = 256, rounds: int = 9) -> float:
    gen = Generator.from_pretrained(folder, device="cpu")
    z = gen.latents(range(batch))
    gen.synthesize(z[:8])
    rates = []
    for _ in range(rounds):
        started = time.perf_counter()
        gen.synthesize(z, batch_size=batch)
        rates.append(batch / (time.perf_counter() - started))
    return statistics.median(rates)


async def load(url: str, requests: int, concurrency: int) -> tuple[list[float], int, float]:
    """`requests` GETs of random seeds over `concurrency` keep-alive connections. A minimal HTTP/1.1 client
    on asyncio streams: a general client (httpx) costs a core of its own at these rates, and it shares
    the 2 cores with the server being measured."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    latencies, errors, left = [], 0, [requests]

    async def connection():
        nonlocal errors
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            while left[0] > 0:
                left[0] -= 1
                seed = random.randrange(2**32 - 1)
                started = time.perf_counter()
                writer.write(f"GET {parts.path}?seed={seed} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
                body = await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                errors += not (head.startswith(b"HTTP/1.1 200") and body[:4] == b"\x89PNG")
        except (OSError, asyncio.IncompleteReadError, StopIteration):
            errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*[connection() for _ in range(concurrency)])
    return latencies, errors, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        studio = Path(tmp) / "studio"
        model = studio / "models" / "dcgan64"
        model.mkdir(parents=True)
        export_random_dcgan(model)
        rate = batched_rate(model)
        print(f"batched sampling (bench_generate's measure, batch 256, {torch.get_num_threads()} threads): {rate:.0f} images/s")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([sys.executable, "-m", "ganforge", "studio", str(studio), "--port", str(port)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            print(server.stdout.readline().strip())  # "ganforge studio over ..."
            url = f"http://127.0.0.1:{port}/api/models/dcgan64/image.png"
            for _ in range(200):  # until it answers
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    time.sleep(0.1)
            asyncio.run(load(url, 200, args.concurrency))  # warm-up: the model loads on the first request
            latencies, errors, seconds = asyncio.run(load(url, args.requests, args.concurrency))
        finally:
            server.terminate()
            server.wait(timeout=10)
        after = batched_rate(model)  # this machine's speed drifts: measure the reference on both sides
        print(f"batched sampling again after the load: {after:.0f} images/s")
        rate = (rate + after) / 2
    served = args.requests / seconds
    ms = sorted(x * 1000 for x in latencies)
    pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    results = {"requests": args.requests, "concurrency": args.concurrency, "errors": errors, "seconds": seconds,
               "images_per_second": served, "batched_rate": rate, "share": served / rate,
               "latency_ms": {"p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99), "max": ms[-1]}}
    print(f"served {args.requests:,} images at concurrency {args.concurrency} in {seconds:.1f} s: {served:.0f} images/s = "
          f"{served / rate:.0%} of batched sampling (target >= 50 %); errors {errors}")
    print(f"latency: p50 {pick(0.5):.1f} ms, p90 {pick(0.9):.1f} ms, p99 {pick(0.99):.1f} ms, max {ms[-1]:.1f} ms")
    out = ROOT / "out" / "studio"
    out.mkdir(parents=True, exist_ok=True)
    (out / "load.json").write_text(json.dumps(results, indent=1))
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
