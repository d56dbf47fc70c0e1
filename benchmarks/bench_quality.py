"""Time to quality: FID and KID after equal minutes of training, per candidate setting.

Each candidate trains from scratch with `train_gan` for --minutes of wall clock on one prepared
dataset (one after another, in this process, on this machine), then:
- FID of --count samples of the last checkpoint's EMA generator against --reference real images, and
  KID of --count samples against --count real images (ganforge's protocol);
- the memorisation verdict of `ganforge audit` (--count samples);
- for ADA runs, the augmentation strength p and r_t over training, plotted to OUT/ada-<set>.png.
`textbook` is the PyTorch-example DCGAN loop of bench_train.py (JPEG decoding in a DataLoader,
BCE, no EMA), trained in the same process for the same minutes.

Datasets (prepared under benchmarks/out/ on first use, from ../shared/data):
  twemoji      3,786 emoji at 64 px, RGBA           twemoji1k   a fixed 1,000-image subset of it
  cifar32      CIFAR-10 training split at 32 px      cifar64     the same at 64 px

    python benchmarks/bench_quality.py twemoji1k --minutes 30 --candidates dcgan auto stylegan2-noaug
    python benchmarks/bench_quality.py cifar32 --minutes 16 --candidates auto textbook
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "benchmarks" / "out"
CIFAR_SRC = OUT / "cifar10-jpeg-src" / "cifar10_jpeg" / "train"
os.environ.setdefault("GANFORGE_INCEPTION", str(SHARED / "inception" / "fid-inception-v3-pool3.pt"))

CANDIDATES = {
    "dcgan": ("dcgan", {}),  # the default before this benchmark: DCGAN-64 widths, no augmentation
    "auto": (None, {}),  # what `ganforge train FOLDER` picks now
    "stylegan2-ada": ("stylegan2", {"augment": "ada"}),
    "stylegan2-noaug": ("stylegan2", {"augment": ""}),
    "dcgan-diffaugment": ("dcgan-small", {}),  # narrower DCGAN with DiffAugment translation,cutout
    "dcgan-small-ada": ("dcgan-small", {"augment": "ada"}),
    "dcgan-small-noaug": ("dcgan-small", {"augment": ""}),
    "stylegan2-paper-widths": ("stylegan2-paper", {}),
    # SNGAN's recipe on the DCGAN networks: hinge loss, spectral norm in D, TTUR rates (Heusel et al. 2017)
    "dcgan-hinge-sn-ttur": ("dcgan", {"loss": "hinge", "model.spectral_norm": True, "lr_g": 1e-4, "lr_d": 4e-4,
                                      "beta1": 0.0, "beta2": 0.9}),
    # the same on the narrow networks, with ADA (the small-collection setting)
    "dcgan-small-hinge-sn-ttur-ada": ("dcgan-small", {"loss": "hinge", "model.spectral_norm": True, "lr_g": 1e-4,
                                                      "lr_d": 4e-4, "beta1": 0.0, "beta2": 0.9, "augment": "ada"}),
    # progressive growing (Karras et al. 2018) at the preset's CPU widths, each resolution fading in over 4 kimg
    # and training 4 kimg stably, against the same network trained at full size from the first image
    "progan": ("progan", {"grow_stable_kimg": 4, "grow_fade_kimg": 4}),
    "progan-fixed": ("progan", {"grow": False}),
}


def prepared(name: str) -> Path:
    from ganforge.data.prepare import prepare_dataset

    target = OUT / f"data-{name}"
    if (target / "manifest.json").exists():
        return target
    if name.startswith("twemoji"):
        source = OUT / "twemoji-src"
        if not source.exists():
            with tarfile.open(SHARED / "twemoji" / "twemoji-64.tar") as tar:
                tar.extractall(source, filter="data")
        if name == "twemoji1k":
            files = sorted(source.rglob("*.png"))
            picks = np.sort(np.random.default_rng(1000).choice(len(files), 1000, replace=False))
            subset = OUT / "twemoji1k-src"
            subset.mkdir(parents=True, exist_ok=True)
            for i in picks:
                link = subset / files[i].name
                if not link.exists():
                    link.symlink_to(files[i])
            source = subset
        prepare_dataset(source, target, resolution=64, channels="4", progress=True)
    else:
        if not CIFAR_SRC.exists():
            with tarfile.open(SHARED / "cifar10-jpeg" / "cifar10-jpeg-q75.tar.gz") as tar:
                tar.extractall(OUT / "cifar10-jpeg-src", filter="data")
        prepare_dataset(CIFAR_SRC, target, resolution=int(name[-2:]), progress=True)
    return target


def train(candidate: str, data: Path, minutes: float, runs: Path, seed: int) -> Path:
    from ganforge.api import train_gan

    preset, overrides = CANDIDATES[candidate]
    overrides = {**overrides, "minutes": minutes, "eval_minutes": 0, "seed": seed, "runs_dir": str(runs)}
    started = time.perf_counter()
    result = train_gan(data, preset=preset, overrides=overrides, progress=False)
    print(f"{candidate}: {result.images_seen:,} images in {(time.perf_counter() - started) / 60:.1f} min "
          f"({result.config.model['name']}, {result.run_dir.name})", flush=True)
    return result.run_dir


def score(generated, data: Path, count: int, reference: int) -> dict:
    """FID of `count` samples against `reference` real images, KID of `count` samples against `count` real ones."""
    from ganforge.metrics.evaluate import calculate_metrics

    return calculate_metrics(generated, data, fid=True, kid=True, count=count, reference_count=reference, which="last",
                             log=False, progress=False)


def audit(run: Path, data: Path, count: int) -> str:
    from ganforge.metrics.audit import audit_generator

    result = audit_generator(run, data, count=count, which="last", out=run / "audit", progress=False)
    return result.verdict


def textbook(data_name: str, minutes: float, count: int) -> dict:
    """The PyTorch-example loop of bench_train.py at this set's resolution, scored like the others."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_train import TextbookLoop

    loop = TextbookLoop(CIFAR_SRC, resolution=int(data_name[-2:]))
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < minutes * 60:
        images += loop.step()
    samples = loop.generate(count)
    loop.close()
    print(f"textbook: {images:,} images in {minutes:g} min", flush=True)
    return {"images": images, "samples": samples}


def ada_plot(runs: dict[str, Path], target: Path) -> None:
    from matplotlib.figure import Figure

    from ganforge.files import save_image_atomic
    from ganforge.train.rundir import read_log

    figure = Figure(figsize=(8, 3.2))
    p_axis, r_axis = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    for name, run in runs.items():
        rows = [r for r in read_log(run) if "r_t" in r]
        kimg = [r["kimg"] for r in rows]
        if any("ada_p" in r for r in rows):
            p_axis.plot(kimg, [r.get("ada_p", 0) for r in rows], label=name)
        r_axis.plot(kimg, [r["r_t"] for r in rows], label=name)
    r_axis.axhline(0.6, color="k", linestyle="--", linewidth=1)
    p_axis.set(xlabel="kimg", ylabel="ADA p", title="augmentation strength")
    r_axis.set(xlabel="kimg", ylabel="r_t = E[sign D(real)]", title="overfitting heuristic", ylim=(-1.05, 1.05))
    for axis in (p_axis, r_axis):
        axis.legend(fontsize=7)
    figure.tight_layout()
    save_image_atomic(figure, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=["twemoji", "twemoji1k", "cifar32", "cifar64"])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--candidates", nargs="+", default=["dcgan", "auto"], choices=[*CANDIDATES, "textbook"])
    parser.add_argument("--count", type=int, default=1000, help="samples for FID, KID and the audit")
    parser.add_argument("--reference", type=int, default=1000,
                        help="real images for FID (default 1,000: FID1k; twemoji1k has 994, so all of them)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-audit", action="store_true")
    parser.add_argument("--audit", nargs="*", help="audit only these candidates (the audit takes minutes each; "
                        "given alone, or left out: all of them)")
    parser.add_argument("--reuse", action="store_true", help="score runs this benchmark trained before, with the same "
                        "candidate, minutes and seed, instead of training them again")
    args = parser.parse_args()
    from ganforge.train.rundir import read_log

    print("$ python benchmarks/bench_quality.py " + shlex.join(sys.argv[1:]), flush=True)
    data = prepared(args.dataset)
    runs_dir = OUT / f"quality-{args.dataset}"
    results, runs = {}, {}
    for candidate in args.candidates:
        if candidate == "textbook":
            from PIL import Image

            made = textbook(args.dataset, args.minutes, args.count)
            folder = runs_dir / "textbook-samples"
            folder.mkdir(parents=True, exist_ok=True)
            for i, pixels in enumerate(made["samples"]):
                Image.fromarray(pixels).save(folder / f"{i:05d}.png")
            results[candidate] = {"images": made["images"], **score(folder, data, args.count, args.reference)}
            print(json.dumps({candidate: results[candidate]}), flush=True)
            continue
        done = runs_dir / "candidates.json"
        trained = json.loads(done.read_text()) if done.exists() else {}
        key = f"{candidate}@{args.minutes:g}min-seed{args.seed}"
        if args.reuse and key in trained:
            run = runs_dir / trained[key]
            print(f"{candidate}: reusing {run.name}", flush=True)
        else:
            run = train(candidate, data, args.minutes, runs_dir, args.seed)
            done.write_text(json.dumps({**trained, key: run.name}, indent=1))
        runs[candidate] = run
        log = [r for r in read_log(run) if "images_seen" in r]
        results[candidate] = {"run": run.name, "images": log[-1]["images_seen"] if log else 0, **score(run, data, args.count, args.reference)}
        if not args.no_audit and (not args.audit or candidate in args.audit):  # --audit alone: all of them
            results[candidate]["audit"] = audit(run, data, args.count)
        print(json.dumps({candidate: results[candidate]}), flush=True)
    if any(r for r in runs.values()):
        ada_plot(runs, OUT / f"ada-{args.dataset}.png")
    print(f"\n{args.dataset}, {args.minutes:g} minutes each, {args.count} samples:")
    print(f"{'candidate':<18}{'images':>10}{'FID':>9}{'KID':>9}  audit")
    for name, r in results.items():
        fid = next((v for k, v in r.items() if k.startswith("fid") and not k.endswith("_std")), float("nan"))
        kid = next((v for k, v in r.items() if k.startswith("kid") and not k.endswith("_std")), float("nan"))
        print(f"{name:<18}{r['images']:>10,}{fid:>9.1f}{kid:>9.4f}  {r.get('audit', '-')}")


if __name__ == "__main__":
    main()
