"""Inception feature extraction: images/s of ganforge's FID network, run by PyTorch and by ONNX Runtime
(the default on CPU when `ganforge[fast]` is installed; also as one session whose two threads split
every layer), against the plain TorchScript file; the difference in their features; and the memory
of streamed statistics for 50k samples.

    python benchmarks/bench_inception.py [--batch 64] [--rounds 6]

Every network gets the same input: uint8 CIFAR-10-sized images resized to 299 by the fixed protocol.
Each runs two whole batches first (this machine's first batches run slow, whichever network runs
them). Rounds then alternate between the networks so that the machine's slow spells hit all alike;
the median of each is reported, and the ratios within each round.
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
from ganforge.metrics.inception_onnx import INSTALL_HINT, OnnxInception, installed
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
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    # memory first, before the networks raise the process's peak
    print(f"peak memory before streaming: {peak_rss_mib():.0f} MiB")
    for samples in (10_000, 50_000):  # bounded: the 50k run needs no more than the 10k one
        print(f"after streaming {samples} samples' statistics (10k features kept): peak {streamed_memory(samples):.0f} MiB")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        plain = torch.jit.load(str(INCEPTION), map_location="cpu").eval()
    ours = FIDInceptionV3(read_weights(InceptionFile(INCEPTION, "torchscript")))
    networks = {"torchscript (plain path)": plain, "ganforge, PyTorch": ours}
    if installed():
        networks["ganforge, ONNX Runtime"] = OnnxInception(ours)  # two sessions, one thread each on 2 cores
        networks["ONNX Runtime, one session"] = OnnxInception(ours, workers=1, chunk=16)  # every layer on 2 threads
    else:
        print(f"ONNX Runtime is not installed ({INSTALL_HINT}): only the PyTorch paths are measured")
    images = torch.randint(0, 256, (args.batch, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x = to_inception_input(images)
    with torch.inference_mode():
        expected = plain(x[:8])
        for name, network in list(networks.items())[1:]:
            got = network(x[:8])
            rel = ((got - expected).norm() / expected.norm()).item()
            print(f"{name} features against the original: max |difference| {((got - expected).abs().max()).item():.2e}, "
                  f"relative (norm) {rel:.2e}")

    for network in networks.values():  # warm-up: two whole batches each
        for _ in range(2):
            images_per_second(network, x)
    rates: dict[str, list[float]] = {name: [] for name in networks}
    ratios: dict[str, list[float]] = {name: [] for name in list(networks)[1:]}
    for i in range(args.rounds):
        for name, network in networks.items():
            rates[name].append(images_per_second(network, x))
        for name in ratios:
            ratios[name].append(rates[name][-1] / rates["torchscript (plain path)"][-1])
        print(f"round {i + 1}: " + ", ".join(f"{name} {r[-1]:.1f}" for name, r in rates.items()) + " img/s", flush=True)
    for name, values in rates.items():
        print(f"{name:>28}: median {statistics.median(values):.1f} img/s (min {min(values):.1f}, max {max(values):.1f})")
    for name, values in ratios.items():
        print(f"{name:>28}: median {statistics.median(values):.2f}x the plain path")
    flops = 11.42e9  # per 299x299 image, counted from the convolution shapes
    for name in ratios:
        print(f"{name} at its best round: {max(rates[name]) * flops / 1e9:.0f} GFLOP/s of convolutions")



if __name__ == "__main__":
    main()
