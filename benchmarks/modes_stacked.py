"""Stacked MNIST (1,000 modes) for bench_modes.py, on the PacGAN / VEEGAN protocol.

Each image is three random MNIST training digits stacked as its R, G and B channels, so there are
10^3 = 1,000 modes. The 28x28 digits are zero-padded (black, MNIST's background) to 32x32, because
ganforge's DCGAN needs a power-of-two side; the classifier sees the central 28x28 again.
Following the authors' code (fjxmlzn/PacGAN, stacked_MNIST_experiments/VEEGAN_experiment):
128,000 training images (`num_training_sample`), 26,000 generated samples (`num_test_sample`), each
channel classified by an MNIST CNN, modes = distinct (R, G, B) digit triples seen, and
KL = KL(p || uniform) over the 1,000 triples (their `KLD(p, q)` with p the generated distribution).
They stack digits from MNIST train + test (70,000); we stack training digits only and keep the test
set to measure the classifier.

PacGAN packs D by concatenating m images along the channel axis (D's first conv takes 3m channels).
ganforge's DCGAN discriminator has no packing option, so this file registers `dcgan-pac`, a DCGAN
whose discriminator does exactly that, through the public `register_model` (the generator is
ganforge's DCGAN generator unchanged). `model.pack=1` gives plain DCGAN.
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ganforge.data.fetch import fetch_dataset
from ganforge.data.format import FORMAT_NAME, FORMAT_VERSION, MANIFEST, save_npy_atomic, write_json_atomic
from ganforge.export import export_generator, load_generator
from ganforge.models import MODELS, ModelSpec, register_model
from ganforge.models.dcgan import DCGANConfig, DCGANDiscriminator, DCGANGenerator
from ganforge.models.layers import ModelConfigError, check_int, init_dcgan_weights
from ganforge.api import train_gan

MIRROR = Path(__file__).resolve().parents[2] / "shared" / "data"
TRAINING_IMAGES = 128_000  # PacGAN: num_training_sample
SIDE = 32  # 28x28 digits zero-padded by 2 px on each side
PAD = (SIDE - 28) // 2
CLASSIFIER_EPOCHS = 3

# GAN settings on top of the dcgan-small preset. PacDCGAN3 (packing 3), as in the published row.
# The model name changes, so the preset's model fields are given again (a new name starts afresh).
STACKED_SETTINGS: dict[str, object] = {
    "model.name": "dcgan-pac", "model.pack": 3, "model.g_width": 32, "model.d_width": 32,
    "batch_size": 96,  # 32 packs of 3 per D step
    "augment": "",  # PacGAN used none; translation would also move digits off the classifier's crop
    "tick_kimg": 20,
    "eval_minutes": 0,  # no periodic KID: its Inception passes would eat the budget, and this table has its own metric
}

PUBLISHED = [("DCGAN", "99", "3.4"), ("PacDCGAN3", "1000", "0.06")]  # PacGAN Table 3 (VEEGAN setup)
TARGET_MODES, TARGET_KL = 990, 0.1


# --- a DCGAN with PacGAN's packed discriminator ------------------------------------------------


@dataclass(frozen=True)
class PacDCGANConfig(DCGANConfig):
    pack: int = 1  # PacGAN: images D judges together, stacked along the channel axis

    def validate(self) -> None:
        super().validate()
        check_int("dcgan-pac", "pack", self.pack, 1)
        if self.pack > 1 and (self.num_classes > 0 or self.spectral_norm):
            raise ModelConfigError("dcgan-pac config: packing combines with neither class conditioning "
                                   "nor spectral_norm here; set pack=1.")


class PacDCGANDiscriminator(DCGANDiscriminator):
    """DCGAN's D whose first conv takes `pack` images at once: (B, C, R, R) -> (B // pack,) logits."""

    def __init__(self, config: PacDCGANConfig):
        super().__init__(config)
        first = self.features[0]  # no batch norm after it, so it keeps its bias
        self.features[0] = nn.Conv2d(config.channels * config.pack, first.out_channels, 4, 2, 1)
        init_dcgan_weights(self.features[0])

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None):
        cfg = self.config
        if x.dim() != 4 or tuple(x.shape[1:]) != (cfg.channels, cfg.resolution, cfg.resolution):
            raise ModelConfigError(f"dcgan-pac discriminator: got images of shape {tuple(x.shape)}.")
        if x.shape[0] % cfg.pack:
            raise ModelConfigError(f"dcgan-pac discriminator: batch {x.shape[0]} is not a multiple of "
                                   f"pack={cfg.pack}.")
        # consecutive images [0..m-1], [m..2m-1], ... become one input of m * C channels
        packed = x.reshape(x.shape[0] // cfg.pack, cfg.pack * cfg.channels, *x.shape[2:])
        return self.to_logit(self.features(packed)).flatten(), None  # (B // pack,)


def register_pac_dcgan() -> None:
    if "dcgan-pac" not in MODELS:
        register_model(ModelSpec("dcgan-pac", PacDCGANConfig, DCGANGenerator, PacDCGANDiscriminator))


# --- the data set ------------------------------------------------------------------------------


def pad_digits(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> (N, 32, 32), zero borders."""
    return np.pad(images, ((0, 0), (PAD, PAD), (PAD, PAD)))


def prepare_stacked(out: Path, mnist, count: int = TRAINING_IMAGES, seed: int = 0) -> Path:
    """Write Stacked MNIST in ganforge's prepared format (docs/prepared-format.md) under `out`.

    The digit triple of each image goes to `stacked-digits.npy` beside it (not part of the format,
    and deliberately not `labels.npy`: that would make training class-conditional).
    """
    target = out / f"stacked-mnist-{count}-seed{seed}"
    if (target / MANIFEST).exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(mnist.images), size=(count, 3))  # (N, 3) MNIST indices
    digits = pad_digits(mnist.images[..., 0])  # (60000, 32, 32)
    images = np.stack([digits[picks[:, c]] for c in range(3)], axis=-1)  # (N, 32, 32, 3) uint8
    save_npy_atomic(target / "images.npy", images)
    save_npy_atomic(target / "stacked-digits.npy", mnist.labels[picks].astype(np.int64))
    manifest = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "kind": "images", "resolution": SIDE,
        "channels": 3, "count": count, "classes": None, "class_counts": None,
        "settings": {"source": "stacked-mnist:mnist:train", "resolution": SIDE, "crop": "pad",
                     "stack": "3 random training digits as R, G, B", "seed": seed},
        "files_found": count, "skipped_by_reason": {},
        "source_sha256": [hashlib.sha256(p.tobytes()).hexdigest() for p in picks],
    }
    write_json_atomic(target / MANIFEST, manifest)  # last: its presence means the folder is complete
    return target


# --- the MNIST classifier ----------------------------------------------------------------------


class DigitClassifier(nn.Module):
    """A small LeNet-style CNN: uint8-scaled (B, 1, 28, 28) in [0, 1] -> (B, 10) logits."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc1 = nn.Linear(64 * 7 * 7, 256)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, 32, 14, 14)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, 64, 7, 7)
        x = F.dropout(F.relu(self.fc1(x.flatten(1))), 0.3, self.training)  # (B, 256)
        return self.fc2(x)


def _as_input(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(images, np.float32)).div_(255.0).unsqueeze(1)  # (B, 1, 28, 28)


def _shift(batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Random shifts of up to 2 px: makes the classifier tolerant of slightly misplaced GAN digits."""
    dy, dx = rng.integers(-2, 3, size=2)
    return torch.roll(batch, shifts=(int(dy), int(dx)), dims=(2, 3))


def train_classifier(folder: Path, train, test) -> tuple[DigitClassifier, float]:
    """Train (or load the cached) classifier; return it and its MNIST test accuracy."""
    path = folder / "mnist-classifier.safetensors"
    model = DigitClassifier()
    if path.exists():
        model.load_state_dict(load_file(str(path)))
    else:
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        optimizer = torch.optim.Adam(model.parameters(), 1e-3)
        x, y = train.images[..., 0], torch.from_numpy(train.labels)
        steps_per_epoch = math.ceil(len(x) / 128)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-3, total_steps=CLASSIFIER_EPOCHS * steps_per_epoch)
        model.train()
        for epoch in range(CLASSIFIER_EPOCHS):
            order = rng.permutation(len(x))
            for start in range(0, len(x), 128):
                index = np.sort(order[start:start + 128])
                loss = F.cross_entropy(model(_shift(_as_input(x[index]), rng)), y[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
            print(f"  classifier epoch {epoch + 1}/{CLASSIFIER_EPOCHS}: loss {loss.item():.4f}", flush=True)
        folder.mkdir(parents=True, exist_ok=True)
        save_file(model.state_dict(), str(path))
    model.eval()
    predicted = classify_digits(model, test.images[..., 0])
    return model, float((predicted == test.labels).mean())


@torch.no_grad()
def classify_digits(model: DigitClassifier, digits: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> int64 (N,) predicted digits."""
    return np.concatenate([model(_as_input(digits[i:i + 1000])).argmax(1).numpy()
                           for i in range(0, len(digits), 1000)])


# --- the metric --------------------------------------------------------------------------------


@dataclass
class StackedScore:
    modes: int  # distinct digit triples among the samples
    kl: float  # KL(sample distribution over the 1,000 triples || uniform)
    samples: int


def stacked_score(model: DigitClassifier, images: np.ndarray) -> StackedScore:
    """images: uint8 (N, 32, 32, 3) -> PacGAN's modes and KL, classifying each channel."""
    crop = images[:, PAD:PAD + 28, PAD:PAD + 28, :]  # (N, 28, 28, 3)
    digits = np.stack([classify_digits(model, np.ascontiguousarray(crop[..., c])) for c in range(3)], 1)
    triples = digits @ np.array([100, 10, 1])  # (N,) in 0..999
    counts = np.bincount(triples, minlength=1000)
    p = counts[counts > 0] / len(triples)
    return StackedScore(int((counts > 0).sum()), float(np.sum(p * np.log(p * 1000))), len(triples))


@torch.no_grad()
@torch.inference_mode()
def sample_uint8(generator: nn.Module, count: int, seed: int) -> np.ndarray:
    z = torch.randn(count, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    out = []
    for start in range(0, count, 500):
        x = generator(z[start:start + 500])  # (b, 3, 32, 32) in [-1, 1]
        out.append(x.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


# --- the benchmark part ------------------------------------------------------------------------


def run_stacked(out: Path, *, minutes: float, samples: int, extra: dict, seeds: list[int]) -> list[str]:
    """Build the data and classifier, train the GAN for `minutes`, and return the table's lines."""
    register_pac_dcgan()
    folder = out / "stacked"
    print("\nStacked MNIST: MNIST from", MIRROR, flush=True)
    train = fetch_dataset("mnist", "train", mirror=MIRROR, progress=False)
    test = fetch_dataset("mnist", "test", mirror=MIRROR, progress=False)
    started = time.process_time()
    classifier, accuracy = train_classifier(folder, train, test)
    print(f"  classifier: {100 * accuracy:.2f}% on the MNIST test set "
          f"({(time.process_time() - started) / 60:.1f} CPU-min incl. any training)", flush=True)
    data = prepare_stacked(folder, train)
    real = np.load(data / "images.npy", mmap_mode="r")
    picks = np.sort(np.random.default_rng(1).choice(len(real), min(samples, len(real)), replace=False))
    real_score = stacked_score(classifier, np.asarray(real[picks]))
    print(f"  real data ({real_score.samples:,} images): {real_score.modes} modes, KL {real_score.kl:.3f}")

    overrides = {**STACKED_SETTINGS, "minutes": minutes, "device": "cpu", "runs_dir": str(folder / "runs"),
                 **extra}
    rows = []
    for seed in seeds:
        cpu, wall = time.process_time(), time.perf_counter()
        result = train_gan(data, preset="dcgan-small", overrides={**overrides, "seed": seed},
                           progress=sys.stderr.isatty())
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        generator = load_generator(export_generator(result.run_dir))
        score = stacked_score(classifier, sample_uint8(generator, samples, 20_000 + seed))
        print(f"  seed {seed}: {score.modes} modes, KL {score.kl:.3f}, {result.images_seen / 1000:.0f} kimg, "
              f"{cpu / 60:.1f} CPU-min, {wall / 60:.1f} wall-min; run {result.run_dir}", flush=True)
        rows.append((seed, score, result.images_seen / 1000, cpu / 60, wall / 60))

    pack = overrides.get("model.pack", 1)
    lines = ["", f"Stacked MNIST (1,000 modes): {samples:,} samples from the exported EMA generator, "
             f"digits padded 28->32 px; classifier {100 * accuracy:.2f}% on MNIST test",
             "  GAN: dcgan-small preset + " + " ".join(f"{k}={v}" for k, v in overrides.items()
                                                       if k not in ("device", "runs_dir")),
             f"{'run':<22} {'modes':>6} {'KL':>7} {'kimg':>7} {'CPU min':>8} {'wall min':>8}",
             f"{'real data':<22} {real_score.modes:>6} {real_score.kl:>7.3f}"]
    for seed, score, kimg, cpu_min, wall_min in rows:
        lines.append(f"{f'ours pack={pack}, seed {seed}':<22} {score.modes:>6} {score.kl:>7.3f} {kimg:>7.0f} "
                     f"{cpu_min:>8.1f} {wall_min:>8.1f}")
    for name, modes, kl in PUBLISHED:
        lines.append(f"{'published ' + name:<22} {modes:>6} {kl:>7}")
    met = all(s.modes >= TARGET_MODES and s.kl <= TARGET_KL for _, s, *_ in rows)
    lines.append(f"{'target':<22} {'>=' + str(TARGET_MODES):>6} {'<=' + str(TARGET_KL):>7}   "
                 f"{'MET' if met else 'NOT MET'}")
    return lines
