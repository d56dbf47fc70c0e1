"""Which defaults give the best quality for the time spent? KID at equal wall clock, per setting.

Trains DCGAN-64 on the prepared CIFAR-10 JPEG set (see bench_prepare.py --keep) once per candidate
setting, each for the same number of minutes from the same seed, then computes KID x 1000 between
N images from the EMA generator and N real images (the protocol and KID of bench_train.py). For the
first candidate it also scores the raw generator, which shows what the EMA is worth.

    python benchmarks/bench_defaults.py [--minutes 5] [--kid-images 1000] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import numpy as np
import torch

from bench_train import PREPARED, WORK, inception_features, kid, load_network, real_features, trainer_generate
from ganforge.data.reader import to_uint8_images
from ganforge.train.config import build_config
from ganforge.train.loop import Trainer

CANDIDATES = {
    "default (nonsaturating)": {},
    "hinge": {"loss": "hinge"},
    "diffaugment": {"augment": "translation,cutout"},
    "hinge + spectral norm D": {"loss": "hinge", "model.spectral_norm": True},
}


def train_for(name: str, overrides: dict, minutes: float) -> Trainer:
    run_dir = WORK / ("defaults-" + "".join(c if c.isalnum() else "-" for c in name))
    run_dir.mkdir(parents=True, exist_ok=True)
    config = build_config(str(PREPARED), "dcgan", {"conditional": "no", "tick_kimg": 1000, **overrides})
    trainer = Trainer(config, run_dir, progress=False)
    start = time.perf_counter()
    while time.perf_counter() - start < minutes * 60:
        trainer._train_step()
    return trainer


@torch.no_grad()
def raw_generator_images(trainer: Trainer, count: int, seed: int = 123) -> np.ndarray:
    z = torch.randn(count, trainer.G.z_dim, generator=torch.Generator().manual_seed(seed))
    trainer.G.eval()
    images = np.concatenate([to_uint8_images(trainer.G(part)) for part in z.split(256)])
    trainer.G.train()
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0, help="training minutes per candidate")
    parser.add_argument("--kid-images", type=int, default=1000)
    parser.add_argument("--only", nargs="*", help="candidate names to run (default: all)")
    args = parser.parse_args()
    if not (PREPARED / "manifest.json").exists():
        sys.exit("Run python benchmarks/bench_prepare.py --keep first.")
    network = load_network()
    reals = real_features(network, args.kid_images)
    rows = []
    for k, (name, overrides) in enumerate(CANDIDATES.items()):
        if args.only and name not in args.only:
            continue
        trainer = train_for(name, overrides, args.minutes)
        score = kid(inception_features(network, trainer_generate(trainer, args.kid_images)), reals)[0]
        rows.append((name, trainer.images_seen, score))
        print(f"{name}: {trainer.images_seen:,} images, KID x 1000 = {score * 1000:.1f}", flush=True)
        if k == 0:
            raw = kid(inception_features(network, raw_generator_images(trainer, args.kid_images)), reals)[0]
            rows.append((f"{name}, raw G (no EMA)", trainer.images_seen, raw))
            print(f"  raw generator: KID x 1000 = {raw * 1000:.1f}", flush=True)
    print(f"\nKID x 1000 after {args.minutes:g} min each (lower is better), {args.kid_images} vs {args.kid_images}:")
    for name, images, score in rows:
        print(f"  {name:<38} {images:>8,} images  {score * 1000:8.1f}")
    print(f"command: {shlex.join(['python', *sys.argv])}")


if __name__ == "__main__":
    main()
