"""Super-resolution x4 (preset sr): the pixel-loss model and the GAN model against bicubic upscaling.

    flock /tmp/ganforge-bench.lock nice -n 5 .venv/bin/python benchmarks/bench_sr.py \
        [--sets photos,twemoji] [--pixel-kimg K] [--gan-kimg K] [--test-count 400] [--out benchmarks/out/sr]

Data, both sets split by file (fixed: every third file of the sorted list is held out), so no test crop
comes from a picture the models trained on:
- photos: ../shared/data/photos (42 JPEGs, longest side 1,600 px) halved first (antialiased: fewer JPEG
  artefacts, more detail per crop), then 64 px crops for B (A = B / 4 = 16 px, by `--derive downscale:4`:
  Pillow bicubic, antialiased). 200 random crops per training photo; 24 per held-out photo.
- twemoji: ../shared/data/twemoji, 64 px emoji as B (composited onto white, as prepare does), 16 px A.
At most `--test-count` (400) held-out images are measured, spread evenly over the held-out set.

Training: one run of preset sr per set (CPU sizes), a warm-up of L1 alone (the "pixel model" is the
checkpoint at its end), then the run resumed for the GAN period (the "GAN model"): 30 + 15 kimg on the
photos, 16 + 8 on Twemoji (`BUDGETS`; --pixel-kimg / --gan-kimg set both sets'). Budgets in images, so
contention on the machine changes time, not results.

Figures, on the held-out crops: PSNR and SSIM on the Y channel (BT.601 studio range) with 4 px (the scale)
cropped from each border, averaged over images (ganforge.metrics.translation's protocol, the SR
literature's; `ganforge eval` on a translator reports the same), for bicubic, the pixel model and the GAN
model; FID and KID (ganforge's Inception protocol) of each one's outputs against the held-out real crops
(few images: FID is biased upward, compare them with one another only). Pictures: OUT/<set>-compare.png, rows of bicubic | pixel | GAN | truth.

Figures with the preset's flips and quarter turns (2 threads; photos: 336 held-out crops, Twemoji: 400):

    set, budget (pixel + GAN kimg)    model    PSNR-Y     SSIM-Y   FID      KID
    photos, 60 + 15                   bicubic  39.55      0.888    156.75   0.0510
                                      pixel    41.13 (+1.58 dB)  0.908  140.29  0.0323
                                      GAN      39.40      0.890    140.98   0.0255
    photos, 60 + 30                   GAN      38.91      0.881    140.81   0.0234
    twemoji, 16 + 8                   bicubic  24.31      0.750    125.38   0.0477
                                      pixel    27.52 (+3.21 dB)  0.851   96.27  0.0205
                                      GAN      26.64      0.816    118.38   0.0408

    python benchmarks/bench_sr.py --sets photos --pixel-kimg 60 --gan-kimg 15 --out benchmarks/out/sr-flip-rotate
    python benchmarks/bench_sr.py --sets twemoji --out benchmarks/out/sr-twemoji

On the photos the GAN model has the lower KID (by three of its spreads) and an FID within a point of the
pixel model's; its picture is sharper, with some ringing beside strong edges. On the flat colours of
Twemoji the GAN period's added texture is a checkered grain, and both scores get worse: for emoji the
pixel model is the one to use.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import yaml
import torch
from PIL import Image

from ganforge.api import train_gan
from ganforge.data.derive import downscale
from ganforge.data.format import PreparedDataset
from ganforge.data.prepare import prepare_dataset
from ganforge.metrics import translation
from ganforge.metrics.evaluate import FeatureExtractor
from ganforge.metrics.inception import load_inception
from ganforge.metrics.scores import FeatureStats, fid_from_stats, kernel_inception_distance
from ganforge.models import create_generator
from ganforge.pictures import image_grid
from ganforge.train import checkpoint as ckpt

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SCALE, SIDE = 4, 64
TRAIN_CROPS, TEST_CROPS = 200, 24
# (pixel, GAN) kimg; on the photos 608 s + 359 s here, 2 cores shared with other work
BUDGETS = {"photos": (30.0, 15.0), "twemoji": (16.0, 8.0)}


# --- data ------------------------------------------------------------------------------------------


def split(files: list, key=str) -> tuple[list, list]:
    """Every third file (sorted by `key`) held out for testing, the rest for training."""
    files = sorted(files, key=key)
    return [f for i, f in enumerate(files) if i % 3 != 2], [f for i, f in enumerate(files) if i % 3 == 2]


def random_crops(image: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    ys, xs = rng.integers(0, height - SIDE + 1, count), rng.integers(0, width - SIDE + 1, count)
    return np.stack([image[y : y + SIDE, x : x + SIDE] for y, x in zip(ys, xs)])


def photo(path: Path) -> np.ndarray:
    picture = Image.open(path).convert("RGB")
    return np.asarray(picture.resize((picture.width // 2, picture.height // 2), Image.Resampling.LANCZOS))


def photo_crops(work: Path) -> tuple[Path, np.ndarray]:
    """(folder of training crops, uint8 (N, 64, 64, 3) test crops)."""
    train, test = split([p for p in (SHARED / "photos").iterdir() if p.suffix == ".jpg"])
    folder = work / "photos-train"
    if not folder.is_dir():
        folder.mkdir(parents=True)
        for k, path in enumerate(train):
            for j, crop in enumerate(random_crops(photo(path), TRAIN_CROPS, np.random.default_rng([1, k]))):
                Image.fromarray(crop).save(folder / f"{path.stem}-{j:03d}.png")
    held = np.concatenate([random_crops(photo(p), TEST_CROPS, np.random.default_rng([2, k])) for k, p in enumerate(test)])
    print(f"photos: {len(train)} training photos -> {len(list(folder.iterdir()))} crops; {len(test)} held out -> "
          f"{len(held)} test crops")
    return folder, held


def on_white(picture: Image.Image) -> np.ndarray:
    """uint8 (H, W, 3): transparency composited onto white, as `prepare` does for the training side."""
    white = Image.new("RGBA", picture.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, picture.convert("RGBA")).convert("RGB"))


def twemoji(work: Path) -> tuple[Path, np.ndarray]:
    with tarfile.open(SHARED / "twemoji" / "twemoji-64.tar") as tar:
        train, test = split([m for m in tar.getmembers() if m.name.endswith(".png")], key=lambda m: m.name)
        folder = work / "twemoji-train"
        if not folder.is_dir():
            folder.mkdir(parents=True)
            for m in train:
                (folder / Path(m.name).name).write_bytes(tar.extractfile(m).read())
        held = np.stack([on_white(Image.open(io.BytesIO(tar.extractfile(m).read()))) for m in test])
    print(f"twemoji: {len(train)} training emoji; {len(held)} held out")
    return folder, held


# --- training and measuring --------------------------------------------------------------------------


def train(prepared: Path, runs: Path, pixel_kimg: float, gan_kimg: float,
          settings: dict | None = None) -> dict[str, torch.nn.Module]:
    """The pixel model (end of the warm-up) and the GAN model (after gan_kimg more), from one run of preset sr
    (`settings`: more training settings for it, as `--set` gives them)."""
    overrides = {"device": "cpu", "kimg": pixel_kimg, "warmup_kimg": pixel_kimg, "runs_dir": str(runs),
                 "tick_kimg": 2, "keep_checkpoints": 100, **(settings or {})}
    models = {}
    started = time.perf_counter()
    run = train_gan(prepared, preset="sr", overrides=overrides, progress=False).run_dir
    models["pixel"] = generator_of(run)
    print(f"  pixel model: {pixel_kimg:g} kimg in {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    train_gan(resume=run, overrides={"kimg": pixel_kimg + gan_kimg}, progress=False)
    models["GAN"] = generator_of(run)
    print(f"  GAN model: {gan_kimg:g} kimg more in {time.perf_counter() - started:.0f} s ({run})")
    return models


def generator_of(run: Path) -> torch.nn.Module:
    state = ckpt.latest_loadable(run / "checkpoints")[1]
    G = create_generator(state["model_name"], state["model_config"])
    G.load_state_dict(state["G_ema"])
    return G.eval()


@torch.no_grad()
def upscale(G: torch.nn.Module, low: np.ndarray) -> np.ndarray:
    out = []
    for i in range(0, len(low), 64):
        a = torch.from_numpy(low[i : i + 64]).permute(0, 3, 1, 2).float() / 127.5 - 1  # (B, C, 16, 16)
        out.append(G(a).add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def over_white(images: np.ndarray) -> np.ndarray:
    if images.shape[-1] != 4:
        return images
    alpha = images[..., 3:].astype(np.float64) / 255
    return np.round(images[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)


def pixel_metrics(x: np.ndarray, truth: np.ndarray) -> tuple[float, float, str]:
    """PSNR and SSIM on Y with the scale cropped from each border (what `ganforge eval` reports)."""
    return (translation.psnr(x, truth, y_channel=True, border=SCALE),
            translation.ssim(x, truth, y_channel=True, border=SCALE), translation.PSNR_Y.format(border=SCALE))


def features(extractor: FeatureExtractor, images: np.ndarray) -> FeatureStats:
    stats = FeatureStats(keep=len(images))
    for i in range(0, len(images), 64):
        stats.add(extractor.features(images[i : i + 64]))
    return stats


def compare_picture(columns: list[np.ndarray], path: Path, rows: int = 8) -> None:
    picks = np.linspace(0, len(columns[0]) - 1, rows).astype(int)
    cells = np.stack([c[picks] for c in columns], axis=1).reshape(-1, *columns[0].shape[1:])
    image_grid(cells, columns=len(columns), min_width=1024).save(path)


def bench_set(name: str, folder: Path, held: np.ndarray, out: Path, args, extractor: FeatureExtractor) -> dict:
    prepared = out / f"{name}-pairs"
    prepare_dataset(folder, prepared, resolution=SIDE, derive=f"downscale:{SCALE}", progress=False, workers=1)
    print(f"  prepared {len(PreparedDataset(prepared))} pairs")
    pixel_kimg, gan_kimg = BUDGETS[name]
    settings = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.set)}
    models = train(prepared, out / f"{name}-runs", args.pixel_kimg or pixel_kimg, args.gan_kimg or gan_kimg, settings)
    low = np.stack([downscale(x, SCALE) for x in held])  # A exactly as prepare derives it
    # Pillow's bicubic (eval's baseline), then the two models
    outputs = {"bicubic": translation.bicubic(low, SCALE), **{k: upscale(G, low) for k, G in models.items()}}
    truth = over_white(held)
    real = features(extractor, truth)
    results = {}
    for key, images in outputs.items():
        shown = over_white(images)
        p, s, protocol = pixel_metrics(shown, truth)
        fake = features(extractor, shown)
        kid, kid_std = kernel_inception_distance(real.features, fake.features, subsets=100,
                                                 subset_size=len(held) // 2)  # halves: a spread to judge by
        results[key] = {"psnr_y": p, "ssim_y": s, "fid": fid_from_stats(real, fake), "kid": kid, "kid_std": kid_std}
        print(f"  {name:8s} {key:8s} PSNR-Y {p:6.2f} dB  SSIM-Y {s:.4f}  FID{len(held)} {results[key]['fid']:7.2f}  "
              f"KID {kid:.4f} ± {kid_std:.4f}")
    print(f"  protocol: {protocol}; FID/KID: inception-2015-12-05/bilinear299 on {len(held)} held-out crops")
    gain = results["pixel"]["psnr_y"] - results["bicubic"]["psnr_y"]
    print(f"  pixel model over bicubic: {gain:+.2f} dB PSNR-Y; GAN vs pixel FID {results['GAN']['fid']:.2f} vs "
          f"{results['pixel']['fid']:.2f}, KID {results['GAN']['kid']:.4f} vs {results['pixel']['kid']:.4f}")
    compare_picture([over_white(outputs[k]) for k in ("bicubic", "pixel", "GAN")] + [truth], out / f"{name}-compare.png")
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="photos,twemoji")
    parser.add_argument("--pixel-kimg", type=float, help="warm-up budget for every set (default: BUDGETS)")
    parser.add_argument("--gan-kimg", type=float, help="GAN budget for every set (default: BUDGETS)")
    parser.add_argument("--test-count", type=int, default=400, help="held-out images measured, at most (spread evenly)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a training setting for the runs, e.g. --set lr_ramp_down=0.5 (repeatable)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "sr")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    os.environ.setdefault("GANFORGE_INCEPTION", str(SHARED / "inception" / "fid-inception-v3-pool3.pt"))  # the feature loss
    args.out.mkdir(parents=True, exist_ok=True)
    extractor = FeatureExtractor(load_inception(SHARED / "inception" / "fid-inception-v3-pool3.pt"), progress=False)
    results = {}
    for name in args.sets.split(","):
        print(f"{name}:")
        folder, held = {"photos": photo_crops, "twemoji": twemoji}[name](args.out)
        held = held[np.unique(np.linspace(0, len(held) - 1, min(args.test_count, len(held))).astype(int))]
        results[name] = bench_set(name, folder, held, args.out, args, extractor)
        saved = args.out / "results.json"  # one file for every set measured so far
        earlier = json.loads(saved.read_text()) if saved.is_file() else {}
        saved.write_text(json.dumps({**earlier, name: results[name]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
