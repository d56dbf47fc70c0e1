"""Slider speed: one edited image from an exported generator, as the studio's sliders ask for it.

For each generator folder given: find directions (if it has none, into a temporary copy), then time
`Steer(gen).image(seed, {direction: strength})` for changing strengths (each call a new image, the
seed's code cached as a slider keeps it), and the same with a new seed each call. Prints the median and
the 90th percentile in milliseconds. Target (issue 14): <= 50 ms for a 64 px image on 2 CPU cores.

    python benchmarks/bench_steer.py /tmp/sg2gen /tmp/dcgangen --threads 2
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch


def timed(call, repeats: int) -> list[float]:
    call(0)  # warm-up: first-call allocations
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        call(i)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("generators", nargs="+", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from ganforge.generator import Generator
    from ganforge.directions import DIRECTIONS_JSON, Steer, find_directions

    for folder in args.generators:
        with tempfile.TemporaryDirectory() as tmp:
            if not (folder / DIRECTIONS_JSON).exists():
                folder = Path(shutil.copytree(folder, Path(tmp) / folder.name))
                find_directions(Generator.from_pretrained(folder, device="cpu"), count=5)
            gen = Generator.from_pretrained(folder, device="cpu")
            steer = Steer(gen)
            slide = timed(lambda i: steer.image(7, {1: -3 + 6 * (i % 50) / 49}), args.repeats)
            fresh = timed(lambda i: steer.image(1000 + i, {1: 1.0}), args.repeats)
            for name, times in (("same seed, moving slider", slide), ("new seed each call", fresh)):
                q90 = statistics.quantiles(times, n=10)[-1]
                print(f"{gen.config.get('architecture'):>10} {gen.resolution} px x {gen.channels}, {name:<26}"
                      f" median {statistics.median(times):6.1f} ms   p90 {q90:6.1f} ms   ({args.threads} threads)")


if __name__ == "__main__":
    main()
