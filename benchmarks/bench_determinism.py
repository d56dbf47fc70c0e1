"""What does deterministic=true buy, and what does it cost? Two runs with the same seed, each way.

Trains the dcgan preset on the built-in digits at 32 px from seed 0 for --kimg thousand images, twice
with the default settings (every core) and twice with deterministic=true (deterministic kernels, one
thread on a CPU), and prints the largest difference between each pair's generator weights and the
seconds each run took. Without it, multi-threaded CPU kernels split their sums differently from run to
run, so the weights drift apart; with it they are identical to the bit, at the price of the cores left
idle. Nothing here is a test: the figures go into the notes.

    python benchmarks/bench_determinism.py [--kimg 1] [--threads 2]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

from ganforge.data.prepare import prepare_dataset
from ganforge.train.config import build_config
from ganforge.train.loop import Trainer


def train(data: Path, folder: Path, kimg: float, deterministic: bool) -> tuple[dict, float]:
    folder.mkdir(parents=True)
    config = build_config(str(data), "dcgan", {"kimg": kimg, "tick_kimg": kimg, "eval_minutes": 0, "grid_size": 4,
                                                "deterministic": deterministic})
    trainer = Trainer(config, folder, progress=False)
    start = time.perf_counter()
    trainer.run()
    return {k: v.clone() for k, v in trainer.G.state_dict().items()}, time.perf_counter() - start


def largest_difference(a: dict, b: dict) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].is_floating_point())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kimg", type=float, default=1.0, help="thousands of images per run")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads for the default runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        data = work / "digits-32"
        prepare_dataset("digits", data, resolution=32, workers=1, progress=False)
        results = {}
        for deterministic in (False, True):
            runs = [train(data, work / f"run-{deterministic}-{i}", args.kimg, deterministic) for i in range(2)]
            results[deterministic] = (largest_difference(runs[0][0], runs[1][0]), [r[1] for r in runs])
            print(f"deterministic={str(deterministic).lower()}: max |weight difference| "
                  f"{results[deterministic][0]:.3g}, seconds {results[deterministic][1][0]:.1f} and "
                  f"{results[deterministic][1][1]:.1f}", flush=True)
    default_time, deterministic_time = (min(results[k][1]) for k in (False, True))
    print(f"\ndcgan preset, 32 px digits, {args.kimg:g} kimg, {args.threads} thread(s) by default:")
    print(f"  default:            weights differ by up to {results[False][0]:.3g}; {default_time:.1f} s a run")
    print(f"  deterministic=true: weights differ by up to {results[True][0]:.3g}; {deterministic_time:.1f} s a run "
          f"({deterministic_time / default_time:.2f}x the time)")
    print(f"command: {shlex.join(['python', *sys.argv])}")


if __name__ == "__main__":
    main()
