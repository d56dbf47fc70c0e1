"""Artificial fingerprints (Yu et al. 2021): does a generator trained with fingerprint=on make images that
carry its fingerprint, and what does it cost in FID against an unmarked run at equal time?

1. Twemoji at 64 px on white (3,786 emoji), prepared once.
2. Two DCGAN runs of the same budget (--kimg; equal images shown, so equal time on one machine): one with
   fingerprint=on, one without.
3. --count samples of each, read for the fingerprinted run's id without the provenance mark (the weights
   alone, as someone running them without ganforge would get): detection rate at z >= 5 and the mean z;
   the clean run's samples give the false-positive rate.
4. FID and KID of each run's samples against the training images (Inception, --fid-count each).

    python benchmarks/bench_fingerprint.py --kimg 40
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))
sys.path.insert(0, str(ROOT))

from bench_mark import OUT as MARK_OUT  # noqa: E402
from bench_mark import twemoji_folder, unmarked_samples  # noqa: E402

from ganforge.api import train_gan  # noqa: E402
from ganforge.data.prepare import prepare_dataset  # noqa: E402
from ganforge.export import export_generator  # noqa: E402
from ganforge.generator import Generator  # noqa: E402
from ganforge.provenance import fingerprint  # noqa: E402
from ganforge.provenance.sign import run_identity  # noqa: E402

OUT = ROOT / "out" / "fingerprint"


def fid_kid(extractor, real: np.ndarray, fake: np.ndarray) -> tuple[float, float]:
    from ganforge.metrics.scores import FeatureStats, fid_from_stats, kernel_inception_distance

    def features(images):
        return np.concatenate([extractor.features(images[i:i + 64]) for i in range(0, len(images), 64)])

    f_real, f_fake = features(real), features(fake)
    a, b = FeatureStats(keep=len(f_real)), FeatureStats(keep=len(f_fake))
    a.add(f_real)
    b.add(f_fake)
    kid = kernel_inception_distance(f_real, f_fake, subset_size=min(1000, len(f_real), len(f_fake)))
    return fid_from_stats(a, b), float(kid[0] if isinstance(kid, tuple) else kid)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kimg", type=float, default=40.0, help="budget of each run")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--fid-count", type=int, default=1000)
    parser.add_argument("--no-fid", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    OUT.mkdir(parents=True, exist_ok=True)
    data = MARK_OUT / "data-64"
    if not (data / "manifest.json").is_file():
        prepare_dataset(str(twemoji_folder()), data, resolution=64, progress=False)
    runs, samples = {}, {}
    for name, on in (("fingerprinted", True), ("plain", False)):
        started = time.time()
        run = train_gan(data, preset="dcgan", progress=False,
                        overrides={"kimg": args.kimg, "fingerprint": on, "runs_dir": str(OUT / "runs"), "eval_minutes": 0})
        seconds = time.time() - started
        gen = Generator.from_pretrained(export_generator(run.run_dir), device="cpu", mark=False)
        runs[name] = {"run": str(run.run_dir), "seconds": seconds, "model_id": run_identity(run.run_dir).model_id}
        samples[name] = unmarked_samples(gen, args.count)
        print(f"{name}: {args.kimg:g} kimg in {seconds:.0f} s ({run.run_dir.name}, model {runs[name]['model_id']})", flush=True)
    key = runs["fingerprinted"]["model_id"]
    results = {"kimg": args.kimg, "threshold": fingerprint.THRESHOLD, "strength": fingerprint.STRENGTH, "runs": runs}
    for name in runs:
        z = fingerprint.scores(samples[name], key)
        rate = float((z >= fingerprint.THRESHOLD).mean())
        results[name] = {"detected": rate, "z_mean": float(z.mean()), "z_median": float(np.median(z))}
        print(f"  {name:13s} samples read for {key}: z mean {z.mean():+.2f}, median {np.median(z):+.2f}; "
              f"{rate:.1%} at z >= {fingerprint.THRESHOLD:g}", flush=True)
    if not args.no_fid:
        from PIL import Image

        from ganforge.metrics.evaluate import FeatureExtractor
        from ganforge.metrics.inception import load_inception

        shared = ROOT.parent.parent / "shared" / "data"
        extractor = FeatureExtractor(load_inception(shared / "inception" / "fid-inception-v3-pool3.pt"), progress=False)
        files = sorted(twemoji_folder().glob("*.png"))
        picks = np.random.default_rng(3).choice(len(files), min(args.fid_count, len(files)), replace=False)
        real = np.stack([np.asarray(Image.open(files[i]).convert("RGB")) for i in picks])
        for name in runs:
            fid, kid = fid_kid(extractor, real, samples[name][: args.fid_count])
            results[name].update({"fid": fid, "kid": kid})
            print(f"  {name:13s} FID {fid:.2f}  KID {kid:.4f} (against {len(real)} training images)", flush=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=1))
    print(f"results: {OUT / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
