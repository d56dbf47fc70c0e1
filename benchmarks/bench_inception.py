"""Inception feature extraction: images/s of ganforge's FID network against the plain TorchScript file,
the difference in their features, and the memory of streamed statistics for 50k samples.

    python benchmarks/bench_inception.py [--batch 64] [--rounds 4]

Both networks get the same input: uint8 CIFAR-10-sized images resized to 299 by the fixed protocol.
Rounds alternate between the two so that this noisy machine's slow spells hit both alike; the
median of each is reported, and the ratio within each round.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ganforge.metrics.inception import FIDInceptionV3, InceptionFile, read_weights, to_inception_input
from ganforge.metrics.scores import FeatureStats

INCEPTION = Path(__file__).resolve().parents[2] / "shared" / "data" / "inception" / "fid-inception-v3-pool3.pt"


def images_per_second(network, x: torch.Tensor) -> float:
    with torch.inference_mode():
        started = time.perf_counter()
        network(x)
        return len(x) / (time.perf_counter() - started)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def streamed_memory(samples: int, keep: int = 10_000, batch: int = 500) -> float:
    """The process's peak RSS (MiB) after streaming `samples` random 2048-d features into FeatureStats."""
    stats = FeatureStats(keep=keep)
    rng = np.random.default_rng(0)
    for _ in range(samples // batch):
        stats.add(rng.random((batch, 2048), dtype=np.float32))
    assert stats.count == samples
    return peak_rss_mib()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    # memory first, before the networks raise the process's peak
    print(f"peak memory before streaming: {peak_rss_mib():.0f} MiB")
    for samples in (10_000, 50_000):  # bounded: the 50k run needs no more than the 10k one
        print(f"after streaming {samples} samples' statistics (10k features kept): peak {streamed_memory(samples):.0f} MiB")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        plain = torch.jit.load(str(INCEPTION), map_location="cpu").eval()
    ours = FIDInceptionV3(read_weights(InceptionFile(INCEPTION, "torchscript")))
    images = torch.randint(0, 256, (args.batch, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x = to_inception_input(images)
    with torch.inference_mode():
        expected, got = plain(x[:8]), ours(x[:8])
    rel = ((got - expected).norm() / expected.norm()).item()
    print(f"features: max |difference| {((got - expected).abs().max()).item():.2e}, relative (norm) {rel:.2e}")

    for network in (plain, ours):  # warm-up: oneDNN builds its kernels on first use
        images_per_second(network, x[:8])
    rates: dict[str, list[float]] = {"torchscript (plain path)": [], "ganforge": []}
    ratios = []
    for i in range(args.rounds):
        p, o = images_per_second(plain, x), images_per_second(ours, x)
        rates["torchscript (plain path)"].append(p)
        rates["ganforge"].append(o)
        ratios.append(o / p)
        print(f"round {i + 1}: torchscript {p:.1f} img/s, ganforge {o:.1f} img/s, ratio {o / p:.2f}", flush=True)
    for name, values in rates.items():
        print(f"{name:>26}: median {statistics.median(values):.1f} img/s (min {min(values):.1f}, max {max(values):.1f})")
    print(f"{'ratio':>26}: median {statistics.median(ratios):.2f}")
    flops = 11.42e9  # per 299x299 image, counted from the convolution shapes
    best = max(rates["ganforge"])
    print(f"ganforge at its best round: {best * flops / 1e9:.0f} GFLOP/s of convolutions")



if __name__ == "__main__":
    main()
