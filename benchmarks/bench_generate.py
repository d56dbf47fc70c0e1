"""Sampling speed of an exported DCGAN-64 generator: images/s in batches, and the latency of one image.

    python benchmarks/bench_generate.py [--batch 256] [--rounds 5]

The generator is the default `dcgan` preset's at 64 px, RGB (random weights: speed does not depend on
them), exported and loaded back with `Generator.from_pretrained` as a user would. Targets on 2 CPU
cores: at least 500 images/s in batches, one image in at most 20 ms.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from ganforge.export import FORMAT
from ganforge.generator import Generator
from ganforge.models import create_models


def export_random_dcgan(folder: Path) -> Path:
    import json

    config, G, _ = create_models("dcgan", resolution=64, channels=3)
    save_file({k: v.contiguous() for k, v in G.state_dict().items()}, str(folder / "model.safetensors"))
    from dataclasses import asdict

    model = asdict(config)
    (folder / "config.json").write_text(json.dumps({"format": FORMAT, "architecture": "dcgan", "config": model,
                                                    "classes": None}))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gen = Generator.from_pretrained(export_random_dcgan(Path(tmp)), device="cpu")
    params = sum(p.numel() for p in gen.module.parameters())
    print(f"DCGAN-64 generator: {params / 1e6:.1f} M parameters, torch threads {torch.get_num_threads()}")
    z = gen.latents(range(args.batch))
    gen.synthesize(z[:8])  # warm-up
    rates = []
    for i in range(args.rounds):
        started = time.perf_counter()
        gen.synthesize(z, batch_size=args.batch)
        rates.append(args.batch / (time.perf_counter() - started))
    print(f"batched ({args.batch}): median {statistics.median(rates):.0f} images/s "
          f"(rounds: {', '.join(f'{r:.0f}' for r in rates)}); target >= 500")
    one = gen.latents([7])
    for _ in range(5):
        gen.synthesize(one)
    latencies = []
    for _ in range(50):
        started = time.perf_counter()
        gen.sample([7])  # latent, generation and conversion to a PIL image, as a server would do
        latencies.append((time.perf_counter() - started) * 1000)
    print(f"one image (seed to PIL): median {statistics.median(latencies):.1f} ms, "
          f"90th percentile {sorted(latencies)[44]:.1f} ms; target <= 20 ms")


if __name__ == "__main__":
    main()
