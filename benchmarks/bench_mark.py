"""The provenance mark under attack: detection and bit accuracy per attack, false positives on real images,
and what the mark costs in image quality.

1. Train (or take, with --generator-64 / --generator-256) a DCGAN at 64 px on Twemoji (composited on white)
   and at 256 px on the photos, export it, and sample --count images from it, marked and unmarked (the same
   seeds).
2. Attack each marked image with the list of Stable Signature's evaluation (Fernandez et al. 2023): none,
   crop to 50 % and 10 % of the area (centre, no resize), JPEG quality 80 and 50, resize to 50 %, brightness
   and contrast x1.5, rotation by 25 degrees. Report the detection rate (the right model id and seed read
   back) and the bit accuracy of the raw 160 bits.
3. False positives: read --real-count unmarked real images (CIFAR-10 at 32 px, and crops of the photos at
   64 and 256 px); target <= 0.1 %. Targets: >= 99 % detection unattacked and after JPEG 80.
4. Quality: PSNR of marked against unmarked, and FID of each against the training images (Inception,
   --fid-count images each).

    python benchmarks/bench_mark.py                       # about 25 minutes on 2 CPU cores
    python benchmarks/bench_mark.py --count 200 --no-fid  # a quick look
    python benchmarks/bench_mark.py --sizes 256 --kimg-256 10 --real-count 0   # one size again, longer
    python benchmarks/bench_mark.py --photos --no-fid --real-count 0          # photo crops as the images
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))

from ganforge.api import train_gan  # noqa: E402
from ganforge.data.prepare import prepare_dataset  # noqa: E402
from ganforge.export import export_generator  # noqa: E402
from ganforge.generator import Generator  # noqa: E402
from ganforge.provenance import mark  # noqa: E402

SHARED = ROOT.parent.parent / "shared" / "data"
OUT = ROOT / "out" / "mark"
MODEL_ID = "5eed1e55"


def jpeg(a: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(a).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def centre_crop(a: np.ndarray, share: float) -> np.ndarray:
    h, w = a.shape[:2]
    ch, cw = max(1, round(h * math.sqrt(share))), max(1, round(w * math.sqrt(share)))
    top, left = (h - ch) // 2, (w - cw) // 2
    return a[top:top + ch, left:left + cw]


def pil(a: np.ndarray, change) -> np.ndarray:
    return np.asarray(change(Image.fromarray(a)))


ATTACKS = {
    "none": lambda a: a,
    "crop 50%": lambda a: centre_crop(a, 0.5),
    "crop 10%": lambda a: centre_crop(a, 0.1),
    "JPEG 80": lambda a: jpeg(a, 80),
    "JPEG 50": lambda a: jpeg(a, 50),
    "resize 50%": lambda a: pil(a, lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.BICUBIC)),
    "brightness 1.5": lambda a: pil(a, lambda im: ImageEnhance.Brightness(im).enhance(1.5)),
    "contrast 1.5": lambda a: pil(a, lambda im: ImageEnhance.Contrast(im).enhance(1.5)),
    "rotate 25": lambda a: pil(a, lambda im: im.rotate(25, resample=Image.Resampling.BILINEAR)),
}


# --- data and generators -------------------------------------------------------------------------------


def twemoji_folder() -> Path:
    folder = OUT / "twemoji-white"
    if not folder.is_dir():
        raw = OUT / "twemoji-src"
        with tarfile.open(SHARED / "twemoji" / "twemoji-64.tar") as tar:
            tar.extractall(raw, filter="data")
        folder.mkdir(parents=True)
        for path in sorted(raw.rglob("*.png")):
            im = Image.open(path).convert("RGBA")
            white = Image.new("RGBA", im.size, (255, 255, 255, 255))
            white.alpha_composite(im)
            white.convert("RGB").save(folder / path.name)
    return folder


def photo_crops(size: int, count: int, seed: int) -> np.ndarray:
    """Random square crops of the photos (a quarter to the whole of the short side), resized to `size`."""
    rng = np.random.default_rng(seed)
    photos = [Image.open(p).convert("RGB") for p in sorted((SHARED / "photos").glob("*.jpg"))]
    out = []
    for k in range(count):
        im = photos[k % len(photos)]
        side = int(min(im.size) * rng.uniform(0.25, 1.0))
        left, top = rng.integers(0, im.width - side + 1), rng.integers(0, im.height - side + 1)
        out.append(np.asarray(im.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)))
    return np.stack(out)


def photo_folder(size: int) -> Path:
    folder = OUT / f"photo-crops-{size}"
    if not folder.is_dir():
        folder.mkdir(parents=True)
        for k, a in enumerate(photo_crops(size, 2000 if size <= 64 else 600, seed=size)):
            Image.fromarray(a).save(folder / f"{k:05d}.png")
    return folder


def generator(size: int, given: Path | None, kimg: float) -> Generator:
    if given is not None:
        return Generator.from_pretrained(given, device="cpu", mark=False)
    source = twemoji_folder() if size == 64 else photo_folder(size)
    data = OUT / f"data-{size}"
    if not (data / "manifest.json").is_file():
        prepare_dataset(str(source), data, resolution=size, progress=False)
    started = time.time()
    run = train_gan(data, preset="dcgan", overrides={"kimg": kimg, "runs_dir": str(OUT / "runs"), "eval_minutes": 0},
                    progress=False)
    print(f"trained a DCGAN at {size} px for {kimg:g} kimg in {time.time() - started:.0f} s: {run.run_dir}")
    return Generator.from_pretrained(export_generator(run.run_dir), device="cpu", mark=False)


# --- measuring -----------------------------------------------------------------------------------------


def unmarked_samples(gen: Generator, count: int) -> np.ndarray:
    from ganforge.data.reader import to_uint8_images

    x = gen.synthesize(gen.latents(range(count)), gen.labels_for(count, None, range(count)), batch_size=32)
    images = to_uint8_images(x)
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images[..., :3]


def attack_table(marked: np.ndarray, seeds: list[int]) -> dict:
    truth = np.stack([mark.codeword(MODEL_ID, s) for s in seeds])
    table = {}
    for name, attack in ATTACKS.items():
        started = time.time()
        readings = [mark.read(attack(a)[None])[0] for a in marked]
        found = np.mean([r.found and r.model_id == MODEL_ID and r.seed == s for r, s in zip(readings, seeds)])
        wrong = sum(r.found and (r.model_id != MODEL_ID or r.seed != s) for r, s in zip(readings, seeds))
        bits = np.mean([(r.bits == t).mean() for r, t in zip(readings, truth)])
        table[name] = {"detected": float(found), "bit_accuracy": float(bits), "misread": int(wrong)}
        print(f"  {name:15s} detected {found:7.1%}   bit accuracy {bits:6.1%}   misread {wrong}   "
              f"({(time.time() - started) / len(marked) * 1000:.1f} ms/image)", flush=True)
    return table


def false_positives(count: int) -> dict:
    root = OUT / "cifar10-src"
    if not root.is_dir():
        with tarfile.open(SHARED / "cifar10-jpeg" / "cifar10-jpeg-q75.tar.gz") as tar:
            tar.extractall(root, filter="data")
    files = sorted((root / "cifar10_jpeg" / "train").rglob("*.jpg"))
    photo_count = min(1000, count // 10)
    picks = np.random.default_rng(0).choice(len(files), count - photo_count, replace=False)
    sets = {"CIFAR-10 32 px": np.stack([np.asarray(Image.open(files[i]).convert("RGB")) for i in picks]),
            "photo crops 64 px": photo_crops(64, photo_count // 2, seed=1),
            "photo crops 256 px": photo_crops(256, photo_count - photo_count // 2, seed=2)}
    result, total, hits = {}, 0, 0
    for name, images in sets.items():
        found = sum(r.found for start in range(0, len(images), 256) for r in mark.read(images[start:start + 256]))
        result[name] = {"images": len(images), "false_positives": int(found)}
        total, hits = total + len(images), hits + found
        print(f"  {name:18s} {found} of {len(images):,} read as marked", flush=True)
    result["all"] = {"images": total, "false_positives": int(hits), "rate": hits / total}
    print(f"  false-positive rate {hits / total:.4%} of {total:,} (target <= 0.1 %)")
    return result


def fid_cost(size: int, unmarked: np.ndarray, marked: np.ndarray, count: int) -> dict:
    from ganforge.metrics.evaluate import FeatureExtractor
    from ganforge.metrics.inception import load_inception
    from ganforge.metrics.scores import FeatureStats, fid_from_stats

    extractor = FeatureExtractor(load_inception(SHARED / "inception" / "fid-inception-v3-pool3.pt"), progress=False)
    source = twemoji_folder() if size == 64 else photo_folder(size)
    files = sorted(source.glob("*.png"))
    picks = np.random.default_rng(3).choice(len(files), min(count, len(files)), replace=False)
    reference = np.stack([np.asarray(Image.open(files[i]).convert("RGB").resize((size, size), Image.Resampling.BICUBIC))
                          for i in picks])

    def stats(images):
        s = FeatureStats(keep=len(images))
        for i in range(0, len(images), 64):
            s.add(extractor.features(images[i:i + 64]))
        return s

    real = stats(reference)
    plain, marked_stats = stats(unmarked[:count]), stats(marked[:count])
    result = {"reference": len(reference), "generated": min(count, len(unmarked)),
              "fid_unmarked": fid_from_stats(real, plain), "fid_marked": fid_from_stats(real, marked_stats),
              "fid_marked_vs_unmarked": fid_from_stats(plain, marked_stats)}
    print(f"  FID against {len(reference)} training images: unmarked {result['fid_unmarked']:.2f}, marked "
          f"{result['fid_marked']:.2f} (marked against unmarked: {result['fid_marked_vs_unmarked']:.2f})", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="generated images per size")
    parser.add_argument("--real-count", type=int, default=10_000, help="unmarked real images for false positives")
    parser.add_argument("--fid-count", type=int, default=1000)
    parser.add_argument("--no-fid", action="store_true")
    parser.add_argument("--sizes", default="64,256")
    parser.add_argument("--generator-64", type=Path)
    parser.add_argument("--generator-256", type=Path)
    parser.add_argument("--kimg-64", type=float, default=20.0)
    parser.add_argument("--kimg-256", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--photos", action="store_true",
                        help="mark photo crops instead of generated images (what a well-trained generator's detail "
                             "looks like, where a short CPU run makes flat images)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    OUT.mkdir(parents=True, exist_ok=True)
    results = {"step": mark.STEP, "bits": mark.BITS}
    for size in map(int, args.sizes.split(",")):
        print(f"{size} px:")
        if args.photos:  # a stand-in for a well-trained generator: photo crops carry a photo's detail
            unmarked = photo_crops(size, args.count, seed=5 + size)
        else:
            gen = generator(size, getattr(args, f"generator_{size}"), getattr(args, f"kimg_{size}"))
            unmarked = unmarked_samples(gen, args.count)
        seeds = list(range(args.count))
        started = time.time()
        marked = mark.embed(unmarked, MODEL_ID, seeds)
        embed_ms = (time.time() - started) / len(marked) * 1000
        psnr = [10 * math.log10(255**2 / max(((m.astype(float) - u) ** 2).mean(), 1e-12)) for m, u in zip(marked, unmarked)]
        print(f"  marking: {embed_ms:.2f} ms/image; PSNR marked vs unmarked {np.mean(psnr):.2f} dB "
              f"(lowest {np.min(psnr):.2f})", flush=True)
        row = {"embed_ms": embed_ms, "psnr_mean": float(np.mean(psnr)), "psnr_min": float(np.min(psnr)),
               "attacks": attack_table(marked, seeds)}
        if not args.no_fid:
            row["fid"] = fid_cost(size, unmarked, marked, args.fid_count)
        picks = np.linspace(0, len(marked) - 1, 8).astype(int)
        diff = np.clip(128 + 8 * (marked[picks].astype(int) - unmarked[picks]), 0, 255).astype(np.uint8)
        sheet = np.concatenate([np.concatenate(list(x), axis=1) for x in (unmarked[picks], marked[picks], diff)], axis=0)
        picture = OUT / f"marked-{size}{'-photos' if args.photos else ''}.png"
        Image.fromarray(sheet).save(picture)
        print(f"  picture (unmarked, marked, difference x8): {picture}")
        results[f"{size}px" + ("-photos" if args.photos else "")] = row
    if args.real_count:
        print("false positives:")
        results["false_positives"] = false_positives(args.real_count)
    saved = OUT / "results.json"  # one file for every size measured so far
    earlier = json.loads(saved.read_text()) if saved.is_file() else {}
    saved.write_text(json.dumps({**earlier, **results}, indent=1))
    print(f"results: {OUT / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
