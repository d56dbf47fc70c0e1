"""Periodic evaluation during training: KID on a small sample, collapse signals, the best checkpoint,
and early stopping. A callback the API layer (`ganforge.api.train_gan`) attaches to the Trainer, so the
training package never imports the metrics.

Every `eval_minutes` of training (and at the end), rank 0 draws `eval_images` samples from the EMA
generator and compares their Inception features with as many real images:
- `kid<N>`: KID, the quality figure (unbiased, so meaningful at a few hundred images);
- `distinct_neighbours`: the share of distinct real images that generated samples land on as nearest
  neighbours, divided by the same share for held-out real images. Near 1: samples spread like real
  data; well below 1 (say 0.5): many samples crowd onto the same few real images, the mark of collapse;
- `diversity`: mean pairwise feature distance of the samples over that of real images.
The best KID so far is kept as `checkpoints/best.pt`; after `patience` evaluations without a better
one, training stops early. Results go to `metrics.jsonl` like `ganforge eval`'s.

The Inception weights may be missing (offline, never downloaded): then evaluation is switched off
with one warning, and training goes on.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ganforge.errors import GanforgeError
from ganforge.metrics.scores import kernel_inception_distance


def neighbour_spread(reference: np.ndarray, probes: np.ndarray) -> float:
    """Share of distinct rows of `reference` that are the nearest neighbour of some probe."""
    distances = torch.cdist(torch.from_numpy(probes).double(), torch.from_numpy(reference).double())
    return len(torch.unique(distances.argmin(dim=1))) / len(probes)


def mean_pairwise_distance(features: np.ndarray) -> float:
    f = torch.from_numpy(features).double()
    d = torch.cdist(f, f)
    n = len(f)
    return float(d.sum() / (n * (n - 1)))


def collapse_signals(real: np.ndarray, fake: np.ndarray) -> dict[str, float]:
    """Spread and diversity of `fake` relative to `real` (both (N, D) features; real split in halves)."""
    half = len(real) // 2
    targets, probes = real[:half], real[half:2 * half]
    real_spread = neighbour_spread(targets, probes)
    fake_spread = neighbour_spread(targets, fake[:half])
    return {"distinct_neighbours": fake_spread / real_spread,
            "diversity": mean_pairwise_distance(fake) / mean_pairwise_distance(real)}


class HealthMonitor:
    """A Trainer callback (active on rank 0 only): decides when to evaluate, evaluates, keeps the best."""

    name = "health"

    def __init__(self, trainer, minutes: float, images: int, patience: int):
        self.trainer = trainer
        self.seconds = minutes * 60
        self.images = images
        self.patience = patience
        self.enabled = minutes > 0 and trainer.images and trainer.dist.is_main
        self.extractor = None
        self.reference = None
        self.load_state({})

    def state(self) -> dict:
        return {"best": self.best, "since_best": self.since_best, "last_at": self.last_at}

    def load_state(self, state: dict) -> None:
        self.best = state.get("best")  # [kid, images_seen] of the best evaluation so far
        self.since_best = state.get("since_best", 0)
        self.last_at = state.get("last_at", 0.0)  # train_seconds at the last evaluation

    def on_tick(self, trainer, log, final: bool) -> bool:
        """At the end of each tick: evaluate when due, and at the end of a run long enough to have been due
        at least once; True when patience has run out."""
        if self.due() or (final and self.enabled and trainer.train_seconds >= self.seconds):
            return self.evaluate(log)
        return False

    def due(self) -> bool:
        return self.enabled and self.trainer.train_seconds - self.last_at >= self.seconds

    def _prepare(self) -> bool:
        from ganforge.metrics.evaluate import FeatureExtractor, reference_stats
        from ganforge.metrics.sources import open_source

        try:
            self.extractor = FeatureExtractor(device=self.trainer.device, progress=False)
        except GanforgeError as err:
            print(f"\nwarning: periodic KID is off for this run: {err}")
            self.enabled = False
            return False
        # twice as many real images as samples: half to compare with, half as the held-out baseline
        source = open_source(self.trainer.config.data)
        self.reference = reference_stats(self.extractor, source, 2 * self.images, keep=2 * self.images,
                                         seed=self.trainer.config.seed).features
        return True

    @torch.no_grad()
    def evaluate(self, log) -> bool:
        """Evaluate now; returns True when patience has run out (training should stop)."""
        from ganforge.data.reader import to_uint8_images
        from ganforge.metrics.evaluate import append_metrics, count_name
        from ganforge.metrics.inception import PROTOCOL
        from ganforge.train import checkpoint as ckpt

        trainer = self.trainer
        self.last_at = trainer.train_seconds
        if self.extractor is None and not self._prepare():
            return False
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(trainer.config.seed + 1_000_006)  # the same latents each time
        features = []
        for start in range(0, self.images, 64):
            n = min(64, self.images - start)
            z = torch.randn(n, trainer.G.z_dim, generator=generator)
            labels = (torch.arange(start, start + n) % trainer.recipe.num_classes) if trainer.conditional else None
            features.append(self.extractor.features(to_uint8_images(trainer.sample(z, labels))))
        fake = np.concatenate(features)
        self.extractor.release_memory()
        real = self.reference[: self.images]
        kid, kid_std = kernel_inception_distance(real, fake, subsets=50, seed=trainer.config.seed)
        name = f"kid{count_name(self.images)}"
        results = {name: kid, f"{name}_std": kid_std, **collapse_signals(self.reference, fake)}
        improved = self.best is None or kid < self.best[0]
        if improved:
            self.best, self.since_best = [kid, trainer.images_seen], 0
            ckpt.save_best(trainer.state(), trainer.run_dir / "checkpoints")
        else:
            self.since_best += 1
        seconds = time.perf_counter() - started
        append_metrics(trainer.run_dir, {
            "time": time.time(), "metrics": results, "protocol": PROTOCOL, "generated": str(trainer.run_dir),
            "reference": trainer.config.data, "reference_images": len(self.reference), "images_seen": trainer.images_seen,
            "train_seconds": round(trainer.train_seconds, 1), "checkpoint": "best.pt" if improved else None,
            "seconds": round(seconds, 1), "source": "training"})
        log.write({"tick": trainer.tick, "images_seen": trainer.images_seen, "event": "eval", **results,
                   "best": improved, "eval_seconds": round(seconds, 1)})
        return bool(self.patience) and self.since_best >= self.patience
