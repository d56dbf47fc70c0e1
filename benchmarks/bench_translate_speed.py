"""Image-to-image speed on this machine: training and `translate` images per second at 64 and 256 px, and
the peak memory of translating one 2,000 x 2,000 picture through a fully convolutional model, tiled and whole.

For each preset (pix2pix, cyclegan, sr), pairs are derived from crops of ../shared/data/photos (gray for
pix2pix, downscale:4 for sr; for cyclegan grey crops against colour crops, unpaired); a short run of the
preset measures training images/s (the loop's own `images_per_second`, after the first tick, which holds
start-up); the run is exported and `Translator.translate_array` is timed on held images. Memory: a child
process translates a 2,000 x 2,000 picture (500 x 500 for sr x4, to 2,000 x 2,000) and reports its peak
resident memory (VmHWM) above what it held before.

    python benchmarks/bench_translate_speed.py --threads 2            # all presets, 64 and 256 px
    python benchmarks/bench_translate_speed.py --presets pix2pix --sizes 64
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"
DERIVE = {"pix2pix": "gray", "sr": "downscale:4", "spade": "labels:8"}


def crops(out: Path, size: int, count: int, grey: bool = False, seed: int = 0) -> Path:
    """`count` random square crops of the photos, `size` px, as PNG files."""
    rng = np.random.default_rng(seed)
    files = sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    out.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        with Image.open(files[i % len(files)]) as opened:
            picture = opened.convert("RGB")
            picture.thumbnail((1024, 1024))
        side = int(rng.integers(size, max(size + 1, min(picture.size))))
        x, y = (int(rng.integers(0, picture.size[k] - side + 1)) for k in (0, 1))
        piece = picture.crop((x, y, x + side, y + side)).resize((size, size), Image.Resampling.LANCZOS)
        (piece.convert("L") if grey else piece).save(out / f"{i:04d}.png")
    return out


def dataset(preset: str, size: int, work: Path) -> Path:
    from ganforge.data.prepare import prepare_dataset

    data = work / f"{preset}-{size}"
    quiet = {"progress": False, "workers": 1}
    if preset == "cyclegan":
        prepare_dataset(crops(work / f"grey-{size}", size, 64, grey=True, seed=1), data, resolution=size,
                        unpaired=str(crops(work / f"colour-{size}", size, 64, seed=2)), **quiet)
    else:
        prepare_dataset(crops(work / f"photos-{size}", size, 64), data, resolution=size, derive=DERIVE[preset], **quiet)
    return data


def training_rate(preset: str, data: Path, size: int, work: Path) -> tuple[float, Path]:
    from ganforge.api import train_gan
    from ganforge.export import export_generator

    batch = 8 if size <= 64 else 2
    tick = batch * (6 if size <= 64 else 3) / 1000
    run = train_gan(data, preset=preset, progress=False,
                    overrides={"kimg": 3 * tick, "tick_kimg": tick, "batch_size": batch, "device": "cpu",
                               "runs_dir": str(work / "runs"), "eval_minutes": 0,
                               **({"identity_weight": 0} if preset == "cyclegan" else {})}).run_dir  # grey A, colour B
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    rates = [r["images_per_second"] for r in records if "images_per_second" in r][1:]  # the first tick holds start-up
    return float(np.median(rates)), export_generator(run)


def translate_rate(folder: Path, data: Path, count: int = 16) -> tuple[float, float]:
    from ganforge.data.format import PreparedDataset
    from ganforge.translator import Translator

    tr = Translator.from_pretrained(folder, device="cpu")
    ds = PreparedDataset(data)
    rows = np.stack([np.asarray(ds.a[i % len(ds.a)]) for i in range(count)])
    tr.translate_array(rows[0])  # warm-up
    start = time.perf_counter()
    for a in rows:
        tr.translate_array(a)
    one = count / (time.perf_counter() - start)
    tr.translate_batch(rows[:2])
    start = time.perf_counter()
    tr.translate_batch(rows)
    return one, count / (time.perf_counter() - start)


CHILD = r"""
import sys, numpy as np, torch
torch.set_num_threads(int(sys.argv[4]))
from ganforge.translator import Translator
def hwm():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) / 1024
tr = Translator.from_pretrained(sys.argv[1], device='cpu')
side = int(sys.argv[2]) // tr.scale
shape = (side, side) if tr.input.kind == 'labels' else (side, side, tr.input.channels)
a = np.random.default_rng(0).integers(0, tr.input.classes or 256, shape).astype(np.uint8)
before = hwm()
tile = None if sys.argv[3] == 'whole' else int(sys.argv[3])
out = tr.translate_array(a, tile=tile)
print(out.shape[0], out.shape[1], round(hwm() - before), round(before))
"""


def peak_memory(folder: Path, side: int, tile: str, threads: int) -> str:
    done = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(side), tile, str(threads)],
                          capture_output=True, text=True)
    if done.returncode:
        return f"failed ({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode})"
    height, width, extra, base = done.stdout.split()
    return f"{width}x{height} output, +{extra} MiB peak (process held {base} MiB before)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="pix2pix,cyclegan,sr")
    parser.add_argument("--sizes", default="64,256")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for preset in args.presets.split(","):
            for size in map(int, args.sizes.split(",")):
                data = dataset(preset, size, work)
                train, folder = training_rate(preset, data, size, work)
                one, batched = translate_rate(folder, data)
                print(f"{preset:>9} {size:>4} px: train {train:7.1f} img/s, translate {one:7.1f} img/s one by one, "
                      f"{batched:7.1f} img/s in batches of 16", flush=True)
            for tile in ("512", "whole"):
                print(f"{preset:>9} 2000 px {tile:>5}: {peak_memory(folder, 2000, tile, args.threads)}", flush=True)


if __name__ == "__main__":
    main()
