"""StyleGAN2 speed on this machine: training images/s and peak memory, an op-level profile against the
convolution rate the CPU reaches, and sampling speed from an exported generator.

- training: `Trainer` with the given preset (default `stylegan2`, the CPU widths) on a prepared
  dataset, stepped with `_train_step()` (every phase: Dmain, Dreg, Gmain, Greg, ADA) for --seconds
  after a warm-up; images/s and the process's peak RSS;
- profile: torch.profiler over --profile-steps steps, the ten ops with the most self time, and the
  convolution FLOP rate reached during training as a share of what a plain 3x3 convolution
  reaches here (measured in this run);
- sampling: the same generator exported and loaded as users load it (`Generator.from_pretrained`):
  batched images/s (batch 64) and the median time of one image.

    python benchmarks/bench_stylegan2.py DATA [--preset stylegan2] [--seconds 60] [--device auto]
"""

from __future__ import annotations

import argparse
import resource
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def conv_rate(device: torch.device, seconds: float = 5.0) -> float:
    """GFLOP/s of a forward+backward 3x3 convolution (batch 32, 48 channels, 32x32: the CPU preset's
    middle layers)."""
    x = torch.randn(32, 48, 32, 32, device=device, requires_grad=True).to(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(48, 48, 3, padding=1).to(device, memory_format=torch.channels_last)
    flops = 3 * 2 * 32 * 48 * 48 * 9 * 32 * 32  # forward, and backward for input and weight
    for _ in range(3):
        conv(x).sum().backward()
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        conv(x).sum().backward()
        runs += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return flops * runs / (time.perf_counter() - start) / 1e9


def train_speed(trainer, seconds: float) -> float:
    for _ in range(3):
        trainer._train_step()
    images, start = trainer.images_seen, time.perf_counter()
    while time.perf_counter() - start < seconds:
        trainer._train_step()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return (trainer.images_seen - images) / (time.perf_counter() - start)


def profile(trainer, steps: int, per_step_images: int) -> tuple[str, float]:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if trainer.device.type == "cuda" else [])
    with torch_profile(activities=activities, with_flops=True) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            trainer._train_step()
        elapsed = time.perf_counter() - start
    events = prof.key_averages()
    conv_flops = sum(e.flops for e in events if "conv" in e.key and e.flops)
    table = events.table(sort_by="self_cpu_time_total", row_limit=10, max_name_column_width=40)
    return table, conv_flops / elapsed / 1e9  # GFLOP/s of convolutions counted by the profiler (forward)


def sampling_speed(trainer) -> tuple[float, float]:
    from ganforge.export import export_generator
    from ganforge.generator import Generator
    from ganforge.train import checkpoint as ckpt

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        ckpt.save_checkpoint(trainer.state(), run / "checkpoints", trainer.images_seen, keep=1)
        gen = Generator.from_pretrained(export_generator(run), device=str(trainer.device))
    labels = gen.labels_for(64)
    z = gen.latents(range(64))
    gen.synthesize(z, labels)
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < 10:
        gen.synthesize(z, labels, batch_size=64)
        runs += 1
    batched = 64 * runs / (time.perf_counter() - start)
    one = []
    for seed in range(30):
        started = time.perf_counter()
        gen.synthesize(gen.latents([seed]), gen.labels_for(1))
        one.append(time.perf_counter() - started)
    return batched, statistics.median(one) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data")
    parser.add_argument("--preset", default="stylegan2")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--profile-steps", type=int, default=8)
    parser.add_argument("--device", default="auto")
    parser.add_argument("overrides", nargs="*", help="key=value settings")
    args = parser.parse_args()
    print("$ python benchmarks/bench_stylegan2.py " + shlex.join(sys.argv[1:]), flush=True)
    from ganforge.train.config import build_config, parse_overrides
    from ganforge.train.loop import Trainer

    overrides = {"eval_minutes": 0, "device": args.device, **parse_overrides(args.overrides)}
    config = build_config(args.data, args.preset, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, Path(tmp), progress=False)
        print(f"{args.preset} at {trainer.dataset.resolution} px x {trainer.dataset.channels}, batch "
              f"{config.batch_size}, {sum(p.numel() for p in trainer.G.parameters()):,} G and "
              f"{sum(p.numel() for p in trainer.D.parameters()):,} D parameters, on {trainer.device} "
              f"({torch.get_num_threads()} threads)", flush=True)
        rate = train_speed(trainer, args.seconds)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"training: {rate:.1f} images/s, peak memory {peak:,.0f} MiB (RSS)", flush=True)
        table, achieved = profile(trainer, args.profile_steps, config.batch_size)
        reference = conv_rate(trainer.device)
        print(table)
        # the profiler counts forward FLOPs; backward costs about twice as much again
        print(f"convolutions during training: {achieved:.1f} GFLOP/s forward (profiler), about {3 * achieved:.1f} with "
              f"backward; a plain 3x3 convolution (forward+backward) reaches {reference:.1f} GFLOP/s here: "
              f"{100 * 3 * achieved / reference:.0f} % of that rate", flush=True)
        batched, one = sampling_speed(trainer)
        print(f"sampling from the exported generator: {batched:.0f} images/s in batches of 64, one image "
              f"{one:.1f} ms (median of 30)")


if __name__ == "__main__":
    main()
