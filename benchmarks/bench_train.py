"""Training speed, peak memory and quality of ganforge's DCGAN against a textbook PyTorch loop.

DCGAN at 64 px, batch 64, on the CIFAR-10 JPEG training set (50,000 images). Two loops, measured
one after another in this process:
- textbook: written here, like the PyTorch DCGAN example: a Dataset that decodes each JPEG with PIL
  and resizes it to 64 px (bicubic), a DataLoader (2 workers, shuffled), fp32, contiguous tensors,
  Adam(2e-4, 0.5, 0.999), BCE-with-logits, the classic step (D on real and fake.detach(), then G
  on D(fake)). Same G and D as ganforge (`create_models("dcgan")`), no EMA, no augmentation.
- ganforge: `Trainer` on the prepared set with the dcgan preset, stepped with `_train_step()`
  (EMA included; no ticks, grids or checkpoints), at `precision=auto` (the default) and at the
  other choice (bf16 where auto means fp32, else fp32).

Measured: images/s after a short warm-up, the ratio ganforge / textbook, images/s of the data
pipelines alone (how much of the gap is data), and the peak memory of the process tree (main +
DataLoader workers, sampled every 50 ms) as RSS and as PSS: forked workers share pages with the
main process, so the RSS sum counts those pages more than once and PSS does not. With
--quality-minutes M, each loop also trains from scratch for M minutes of wall clock, and KID (x1000,
lower is better) is computed between N generated and N real training images. With
--precision-kimg K, ganforge trains K thousand images at fp32 and again at bf16 (the same seed, so
the same initial weights and data order) and KID compares the two at equal images seen.

Targets: ganforge >= 2x the textbook loop (which does about 62 images/s on the 2-core CPU), peak
memory <= 1.5 GB at 64 px, batch 64.

Needs benchmarks/out from `python benchmarks/bench_prepare.py --keep`. Then:

    python benchmarks/bench_train.py --seconds 60 [--quality-minutes 16] [--kid-images 1000]
    python benchmarks/bench_train.py --skip-speed --precision-kimg 20     # bf16 vs fp32 quality only
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import shlex
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import Self

import numpy as np
import torch
from PIL import Image
from torch import nn

from ganforge.data.reader import BatchReader, to_uint8_images
from ganforge.models import create_models
from ganforge.metrics.evaluate import FeatureExtractor
from ganforge.metrics.inception import load_inception
from ganforge.metrics.scores import kernel_inception_distance
from ganforge.train.config import build_config
from ganforge.train.loop import Trainer

OUT = Path(__file__).resolve().parent / "out"
JPEG_TRAIN = OUT / "cifar10-jpeg-src" / "cifar10_jpeg" / "train"
PREPARED = OUT / "cifar10-train-64"
WORK = OUT / "bench-train"
INCEPTION = Path(__file__).resolve().parents[2] / "shared" / "data" / "inception" / "fid-inception-v3-pool3.pt"
BATCH = 64


def tree_memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in bytes, summed over a process and its descendants. PSS counts a page shared by
    k processes as 1/k in each, so forked DataLoader workers are not counted twice."""
    rss = pss = 0
    pending = [pid]
    while pending:
        p = pending.pop()
        try:
            lines = Path(f"/proc/{p}/smaps_rollup").read_text().splitlines()[1:]  # after the header
            kib = {key: int(value.split()[0]) for key, value in (line.split(":", 1) for line in lines)}
            rss, pss = rss + kib["Rss"] * 1024, pss + kib["Pss"] * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return rss, pss


class PeakMemory:
    """Peak RSS and PSS of this process and its children while the `with` block runs."""

    def __init__(self, interval: float = 0.05):
        self.interval, self.peak, self.peak_pss, self._done = interval, 0, 0, threading.Event()

    def __enter__(self) -> Self:
        self.start = tree_memory(os.getpid())[0]
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.is_set():
            rss, pss = tree_memory(os.getpid())
            self.peak, self.peak_pss = max(self.peak, rss), max(self.peak_pss, pss)
            time.sleep(self.interval)

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


def release_memory() -> None:
    """Free what the previous loop left, so each loop's peak is its own (glibc keeps freed memory)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the start column shows what was left
        pass


def images_per_second(step, warmup: int, seconds: float) -> float:
    """`step()` returns the images it consumed; warm up, then count images for `seconds`."""
    for _ in range(warmup):
        step()
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        images += step()
    return images / (time.perf_counter() - start)


# --- the textbook loop -------------------------------------------------------------------------

class JpegFolder(torch.utils.data.Dataset):
    def __init__(self, root: Path, size: int = 64):
        self.files, self.size = sorted(root.rglob("*.jpg")), size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.files[index]) as image:
            image = image.convert("RGB").resize((self.size, self.size), Image.Resampling.BICUBIC)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32))  # (H, W, C) in 0..255
        return pixels.permute(2, 0, 1) / 127.5 - 1.0  # (C, H, W) in [-1, 1]


def endless(loader):
    while True:  # a new epoch (and new workers) each pass, as the textbook loop does
        yield from loader


class TextbookLoop:
    def __init__(self, root: Path, seed: int = 0, resolution: int = 64):
        torch.manual_seed(seed)
        loader = torch.utils.data.DataLoader(JpegFolder(root, resolution), batch_size=BATCH, shuffle=True,
                                             num_workers=2, drop_last=True)
        self.batches = endless(loader)
        _, self.G, self.D = create_models("dcgan", resolution=resolution, channels=3)
        self.opt_g = torch.optim.Adam(self.G.parameters(), 2e-4, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), 2e-4, betas=(0.5, 0.999))
        self.bce = nn.BCEWithLogitsLoss()
        self.ones, self.zeros = torch.ones(BATCH), torch.zeros(BATCH)

    def step(self) -> int:
        real = next(self.batches)  # (B, 3, 64, 64)
        fake = self.G(torch.randn(BATCH, self.G.z_dim))
        self.opt_d.zero_grad()
        loss_d = self.bce(self.D(real)[0], self.ones) + self.bce(self.D(fake.detach())[0], self.zeros)
        loss_d.backward()
        self.opt_d.step()
        self.opt_g.zero_grad()
        self.bce(self.D(fake)[0], self.ones).backward()
        self.opt_g.step()
        return BATCH

    @torch.no_grad()
    def generate(self, count: int, seed: int = 123) -> np.ndarray:
        # Sampled in train mode (batch statistics), like the PyTorch DCGAN example's sample grids.
        z = torch.randn(count, self.G.z_dim, generator=torch.Generator().manual_seed(seed))
        return np.concatenate([to_uint8_images(self.G(part)) for part in z.split(BATCH)])

    def close(self) -> None:
        self.batches.close()  # shuts the DataLoader's workers down


# --- the ganforge loop -------------------------------------------------------------------------

def make_trainer(precision: str) -> Trainer:
    overrides = {"conditional": "no", "tick_kimg": 1000, "precision": precision}
    run_dir = WORK / f"run-{precision}"
    run_dir.mkdir(parents=True, exist_ok=True)
    return Trainer(build_config(str(PREPARED), "dcgan", overrides), run_dir, progress=False)


def trainer_step(trainer: Trainer):
    def step() -> int:
        before = trainer.images_seen
        trainer._train_step()
        return trainer.images_seen - before
    return step


def trainer_generate(trainer: Trainer, count: int, seed: int = 123) -> np.ndarray:
    trainer.ema.recalibrate(trainer._recalibration_inputs)
    z = torch.randn(count, trainer.G.z_dim, generator=torch.Generator().manual_seed(seed))
    return to_uint8_images(trainer.sample(z, None))


# --- KID ---------------------------------------------------------------------------------------

def kid(features_a: np.ndarray, features_b: np.ndarray, subsets: int = 10, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """KID of generated features `features_a` against real `features_b` (ganforge.metrics' estimator)."""
    return kernel_inception_distance(features_b, features_a, subsets=subsets, subset_size=subset_size, seed=seed)


def load_network() -> FeatureExtractor:
    return FeatureExtractor(load_inception(INCEPTION), progress=False)


def inception_features(network: FeatureExtractor, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """uint8 (N, H, W, C) -> (N, 2048), by ganforge's fixed protocol (bilinear to 299, (x - 128) / 128)."""
    return np.concatenate([network.features(images[start:start + batch]) for start in range(0, len(images), batch)])


def real_features(network, count: int) -> np.ndarray:
    cache = WORK / f"kid-real-cifar10-train-64-inception-bilinear299-n{count}-seed0.npy"
    if cache.exists():
        return np.load(cache)
    images = BatchReader(str(PREPARED), 1).dataset.images
    picks = np.sort(np.random.default_rng(0).choice(len(images), count, replace=False))
    print(f"computing Inception features of {count} real images (cached in {cache.name}) ...")
    features = inception_features(network, np.asarray(images[picks]))
    np.save(cache, features)
    return features


# --- the benchmark -----------------------------------------------------------------------------

def measure_speed(args) -> list[dict]:
    rows, precisions = [], ["auto"]
    for precision in precisions:
        with PeakMemory() as memory:
            trainer = make_trainer(precision)
            rate = images_per_second(trainer_step(trainer), args.warmup, args.seconds)
        dtype = "fp32" if trainer.dtype is None else str(trainer.dtype).removeprefix("torch.")
        if precision == "auto":  # also the other choice, so both are visible
            precisions.append("bf16" if dtype == "fp32" else "fp32")
        rows.append({"loop": "ganforge", "precision": f"{precision} ({dtype})", "rate": rate,
                     "start": memory.start, "peak": memory.peak, "pss": memory.peak_pss})
        del trainer
        release_memory()
    with PeakMemory() as memory:
        textbook = TextbookLoop(JPEG_TRAIN)
        rate = images_per_second(textbook.step, args.warmup, args.seconds)
    textbook.close()
    rows.append({"loop": "textbook", "precision": "fp32", "rate": rate, "start": memory.start,
                 "peak": memory.peak, "pss": memory.peak_pss})
    del textbook
    release_memory()
    return rows


def measure_interleaved(args) -> list[tuple[float, float]]:
    """(ganforge, textbook) images/s in alternating rounds: noise on this shared machine then falls on
    both loops alike, and the median of the per-round ratios is the figure to quote."""
    trainer, textbook = make_trainer("auto"), TextbookLoop(JPEG_TRAIN)
    rounds = []
    for _ in range(args.rounds):
        ours = images_per_second(trainer_step(trainer), 2, args.round_seconds)
        theirs = images_per_second(textbook.step, 2, args.round_seconds)
        rounds.append((ours, theirs))
    textbook.close()
    del trainer, textbook
    release_memory()
    return rounds


def measure_data(args) -> tuple[float, float]:
    reader = BatchReader(str(PREPARED), BATCH)
    reader_rate = images_per_second(lambda: next(reader)[0].shape[0], args.warmup, args.data_seconds)
    textbook = TextbookLoop(JPEG_TRAIN)
    loader_rate = images_per_second(lambda: next(textbook.batches).shape[0], args.warmup, args.data_seconds)
    textbook.close()
    return reader_rate, loader_rate


def measure_quality(args) -> dict[str, tuple[float, float, int]]:
    """{loop: (KID mean, KID std, images trained)} after --quality-minutes of training each."""
    seconds = args.quality_minutes * 60
    results = {}
    network = load_network()
    reals = real_features(network, args.kid_images)
    for loop in ("ganforge", "textbook"):
        if loop == "ganforge":
            trainer = make_trainer("auto")
            step, generate = trainer_step(trainer), partial(trainer_generate, trainer)
        else:
            textbook = TextbookLoop(JPEG_TRAIN)
            step, generate = textbook.step, textbook.generate
        images, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            images += step()
        if loop == "textbook":
            textbook.close()
        print(f"{loop}: trained {args.quality_minutes:g} min, {images:,} images; "
              f"Inception features of {args.kid_images} samples ...")
        results[loop] = (*kid(inception_features(network, generate(args.kid_images)), reals), images)
    return results


def measure_precision_quality(args) -> dict[str, tuple[float, float, int, float]]:
    """{precision: (KID mean, KID std, images trained, images/s)} after --precision-kimg each."""
    network = load_network()
    reals = real_features(network, args.kid_images)
    results = {}
    for precision in ("fp32", "bf16"):
        trainer = make_trainer(precision)
        step, limit, start = trainer_step(trainer), int(args.precision_kimg * 1000), time.perf_counter()
        while trainer.images_seen < limit:
            step()
        rate = trainer.images_seen / (time.perf_counter() - start)
        print(f"{precision}: trained {trainer.images_seen:,} images at {rate:.1f} images/s; "
              f"Inception features of {args.kid_images} samples ...", flush=True)
        results[precision] = (*kid(inception_features(network, trainer_generate(trainer, args.kid_images)), reals),
                              trainer.images_seen, rate)
        del trainer
        release_memory()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="timed seconds per training loop")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before each timing")
    parser.add_argument("--rounds", type=int, default=4, help="alternating ganforge/textbook rounds (0: skip)")
    parser.add_argument("--round-seconds", type=float, default=20.0, help="timed seconds per loop per round")
    parser.add_argument("--data-seconds", type=float, default=10.0, help="timed seconds per data pipeline")
    parser.add_argument("--quality-minutes", type=float, default=0.0,
                        help="train each loop M minutes, then KID (0: skip)")
    parser.add_argument("--kid-images", type=int, default=1000, help="generated and real images for KID")
    parser.add_argument("--precision-kimg", type=float, default=0.0,
                        help="train ganforge K kimg at fp32 and at bf16, then KID of each (0: skip)")
    parser.add_argument("--skip-speed", action="store_true", help="only the quality parts")
    args = parser.parse_args()
    for path, what in ((JPEG_TRAIN, "the extracted CIFAR-10 JPEGs"), (PREPARED / "manifest.json", "the prepared set")):
        if not path.exists():
            sys.exit(f"{path} ({what}) not found: run `python benchmarks/bench_prepare.py --keep` first.")
    if (args.quality_minutes or args.precision_kimg) and not INCEPTION.exists():
        sys.exit(f"{INCEPTION} not found: the KID part needs ../shared/data beside the checkout.")
    if args.kid_images < 2:
        sys.exit("--kid-images must be at least 2 (KID's unbiased estimate needs two images per set).")
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")

    if args.skip_speed:
        report_precision_quality(args, measure_precision_quality(args) if args.precision_kimg else {})
        print(f"command: {shlex.join(['python', *sys.argv])}")
        return
    rows = measure_speed(args)
    rounds = measure_interleaved(args) if args.rounds else []
    reader_rate, loader_rate = measure_data(args)
    quality = measure_quality(args) if args.quality_minutes else {}
    by_precision = measure_precision_quality(args) if args.precision_kimg else {}

    textbook_rate = rows[-1]["rate"]
    mib = 2**20
    print(f"\nDCGAN 64 px, batch {BATCH}, CIFAR-10 JPEG train; "
          f"{args.seconds:g} s timed per loop after {args.warmup} steps")
    print(f"{'loop':>9} {'precision':>16} {'images/s':>9} {'x textbook':>11} {'start MiB':>10} "
          f"{'peak RSS MiB':>13} {'peak PSS MiB':>13}")
    for row in rows:
        print(f"{row['loop']:>9} {row['precision']:>16} {row['rate']:>9,.1f} {row['rate'] / textbook_rate:>11.2f} "
              f"{row['start'] / mib:>10,.0f} {row['peak'] / mib:>13,.0f} {row['pss'] / mib:>13,.0f}")
    if rounds:
        ratios = sorted(ours / theirs for ours, theirs in rounds)
        print(f"interleaved rounds of {args.round_seconds:g} s (ganforge / textbook images/s): "
              + ", ".join(f"{ours:.0f}/{theirs:.0f}" for ours, theirs in rounds)
              + f"; median ratio {ratios[len(ratios) // 2] if len(ratios) % 2 else sum(ratios[len(ratios) // 2 - 1:len(ratios) // 2 + 1]) / 2:.2f}x")
    print(f"data alone: ganforge reader {reader_rate:,.0f} images/s, textbook DataLoader {loader_rate:,.0f} images/s "
          f"({reader_rate / loader_rate:,.0f}x)")
    print(f"targets: ganforge (default precision) >= 2x textbook: {rows[0]['rate'] / textbook_rate:.2f}x; "
          f"peak <= 1,536 MiB: {rows[0]['peak'] / mib:,.0f} MiB")
    if quality:
        print(f"KID x 1000 (mean +- std over 10 subsets of min(1000, N)) after {args.quality_minutes:g} min each, "
              f"{args.kid_images} generated vs {args.kid_images} real (64 px, bilinear to 299):")
        for loop in ("ganforge", "textbook"):
            mean, std, images = quality[loop]
            spread = f"+- {std * 1000:.2f}" if args.kid_images > 1000 else "(N <= 1000: each subset is all N)"
            print(f"{loop:>9}: {mean * 1000:8.2f} {spread}   ({images:,} images trained)")
    report_precision_quality(args, by_precision)
    print(f"command: {shlex.join(['python', *sys.argv])}")


def report_precision_quality(args, results: dict) -> None:
    if not results:
        return
    print(f"KID x 1000 at equal images seen ({args.precision_kimg:g} kimg each, same seed), "
          f"{args.kid_images} generated vs {args.kid_images} real:")
    for precision, (mean, std, images, rate) in results.items():
        spread = f"+- {std * 1000:.2f}" if args.kid_images > 1000 else "(N <= 1000: each subset is all N)"
        print(f"{precision:>9}: {mean * 1000:8.2f} {spread}   ({images:,} images, {rate:.1f} images/s)")


if __name__ == "__main__":
    main()
