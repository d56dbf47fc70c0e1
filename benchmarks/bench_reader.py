"""Batch reader throughput: random batches as float tensors in [-1, 1], with flips, at 64 px.

Reads the CIFAR-10 training set prepared by bench_prepare.py (run it with --keep first), or any
prepared dataset given as an argument. Target: >= 20,000 images/s at 64 px on 2 cores.

    python benchmarks/bench_reader.py [DATASET] [--batch 64] [--seconds 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from ganforge.data.reader import BatchReader

DEFAULT = Path(__file__).resolve().parent / "out" / "cifar10-train-64"


def measure(reader: BatchReader, seconds: float) -> float:
    for _ in range(20):  # warm the page cache and the allocator
        next(reader)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        images, _ = next(reader)
        count += images.shape[0]
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", nargs="?", default=str(DEFAULT))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    if not Path(args.dataset, "manifest.json").exists():
        sys.exit(f"{args.dataset} is not a prepared dataset: run benchmarks/bench_prepare.py --keep first.")
    print(f"torch threads: {torch.get_num_threads()}")
    for flip in (False, True):
        reader = BatchReader(args.dataset, args.batch, flip=flip, seed=0)
        rate = measure(reader, args.seconds)
        ds = reader.dataset
        print(f"{ds.resolution} px x {ds.channels} ch, batch {args.batch}, flip={flip!s:5}: {rate:>9,.0f} images/s")


if __name__ == "__main__":
    main()
