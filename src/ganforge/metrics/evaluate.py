"""One call for every metric: `calculate_metrics(generated, reference, fid=True, kid=True, ...)` -> a flat dict.

Names carry the sample count, as StyleGAN2-ADA's do: `fid10k` is FID from 10,000 generated images
against the reference's statistics, `kid2k` KID from 2,000, `pr10k_precision`, `dc10k_coverage`,
`is10k`. The feature protocol is fixed (`inception.PROTOCOL`) and written beside every result.

Reference statistics are cached per images, protocol, count and seed in `<cache>/metrics/`, so a
second evaluation against the same dataset extracts only the generated side. When the generated
side is a run folder, the result is appended to `RUN/metrics.jsonl`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ganforge.errors import GanforgeError
from ganforge.metrics import scores
from ganforge.metrics.inception import PROTOCOL, FIDInceptionV3, load_inception, to_inception_input
from ganforge.metrics.inception_onnx import OnnxInception, choose_runtime, requested_runtime
from ganforge.metrics.sources import ImageSource, SourceError, open_source

METRICS = ("fid", "kid", "pr", "dc", "is")
METRICS_LOG = "metrics.jsonl"
# The fewest images on each side each formula can be computed from (a covariance needs 2, KID's unbiased
# MMD 2, precision/recall k + 1 = 4, density/coverage k + 1 = 6, the Inception Score one per split), and
# the counts results are usually given at: with fewer, values are biased and not comparable.
MINIMUM = {"fid": 2, "kid": 2, "pr": 4, "dc": 6, "is": 10}
USUAL = {"fid": "10,000 generated and 50,000 real", "kid": "10,000 on each side",
         "pr": "10,000 on each side", "dc": "10,000 on each side", "is": "50,000 generated"}
NAMES = {"fid": "FID", "kid": "KID", "pr": "Precision/recall", "dc": "Density/coverage", "is": "The Inception Score"}


class MetricsError(GanforgeError, ValueError):
    pass


def count_name(count: int) -> str:
    """10000 -> '10k', 2500 -> '2500'."""
    return f"{count // 1000}k" if count % 1000 == 0 and count >= 1000 else str(count)


class FeatureExtractor:
    """The Inception network on a device, turning image sources into `FeatureStats`.

    `network` is the PyTorch module (gradients, e.g. for projection, always go through it); features
    are computed by ONNX Runtime instead when `runtime` (see `inception_onnx`) picks it, built on first use.
    """

    def __init__(self, network: FIDInceptionV3 | None = None, *, device: str | torch.device = "cpu",
                 inception: str | os.PathLike | None = None, batch_size: int = 64, progress: bool = True,
                 runtime: str | None = None):
        self.device = torch.device(device)
        self.runtime = choose_runtime(runtime, self.device)
        self._onnx_asked = requested_runtime(runtime) == "onnxruntime"
        self.network = (network or load_inception(inception, progress=progress)).to(self.device)
        self.batch_size = batch_size
        self.progress = progress
        self._onnx: OnnxInception | None = None

    @property
    def runner(self):
        """What computes features: the module, or its ONNX Runtime session (exported on first use)."""
        if self.runtime == "torch":
            return self.network
        if self._onnx is None:
            try:
                self._onnx = OnnxInception(self.network)
            except Exception as err:  # an optional accelerator: when it cannot start, PyTorch computes the same
                if self._onnx_asked:
                    raise
                warnings.warn(f"ONNX Runtime could not run the Inception network ({type(err).__name__}: {err}); "
                              "computing features with PyTorch instead.", stacklevel=2)
                self.runtime = "torch"
                return self.network
        return self._onnx

    def release_memory(self) -> None:
        """Drop the ONNX Runtime sessions and the memory they keep between batches (about 0.5 GB); the
        next `features` call exports it again (a second or two). Training calls this after each
        evaluation, so that its periodic KID does not hold the memory for the rest of the run."""
        self._onnx = None

    def features(self, images: np.ndarray, logits: bool = False):
        return self._features(self._input(images), logits)

    def _input(self, images: np.ndarray) -> torch.Tensor:
        return to_inception_input(torch.from_numpy(np.array(images, copy=True))).to(self.device)

    @torch.inference_mode()
    def _features(self, x: torch.Tensor, logits: bool = False):
        if logits:
            f, y = self.runner(x, logits=True)
            return f.float().cpu().numpy(), y.float().cpu().numpy()
        return self.runner(x).float().cpu().numpy()

    def stats(self, source: ImageSource, count: int, *, keep: int, seed: int = 0, logits: bool = False,
              label: str = "") -> tuple[scores.FeatureStats, np.ndarray | None]:
        stats = scores.FeatureStats(keep=keep)
        all_logits = [] if logits else None
        _ = self.runner  # started now (or fallen back from), so that the bar names what runs
        with tqdm(total=count, unit="img", desc=f"Inception features{label}, {self.runtime}", disable=not self.progress,
                  dynamic_ncols=True) as bar:
            # the next batch is read (or generated) and resized while the network works on this one
            for x in _ahead(source.batches(count, self.batch_size, seed), self._input):
                out = self._features(x, logits)
                if logits:
                    out, y = out
                    all_logits.append(y)
                stats.add(out)
                bar.update(len(x))
        return stats, (np.concatenate(all_logits) if logits else None)


_END = object()


def _ahead(items: Iterator, prepare: Callable) -> Iterator:
    """`prepare(item)` for each of `items`, in order; the next one is taken and prepared in a
    background thread while the caller works on the current one. Its errors reach the caller when
    it asks for that item; a caller that stops early waits at most for the one in preparation."""
    items = iter(items)

    def take():
        item = next(items, _END)
        return item if item is _END else prepare(item)

    with ThreadPoolExecutor(1, thread_name_prefix="ganforge-prefetch") as pool:
        pending = pool.submit(take)
        while (ready := pending.result()) is not _END:
            pending = pool.submit(take)
            yield ready


def _cache_dir() -> Path:
    root = os.environ.get("GANFORGE_CACHE") or Path.home() / ".cache" / "ganforge"
    return Path(root).expanduser() / "metrics"


def reference_stats(extractor: FeatureExtractor, source: ImageSource, count: int, keep: int, seed: int = 0,
                    cache: bool = True) -> scores.FeatureStats:
    """Statistics of real images, from the cache when the same images, protocol, count and seed were seen."""
    count = min(count, source.available) if source.available is not None else count
    keep = min(keep, count)
    path = None
    if cache and source.digest:
        slug = PROTOCOL.replace("/", "-")
        path = _cache_dir() / f"{source.kind}-{source.digest}-{slug}-n{count}-seed{seed}.npz"
        if path.is_file():
            try:
                with np.load(path) as data:
                    stats = scores.FeatureStats.from_state(dict(data))
                if not _finite(stats):
                    print(f"warning: the cached reference statistics {path} hold NaN or infinite values (the file "
                          "is damaged); computing them again.", file=sys.stderr)
                elif len(stats.features) >= keep:
                    return stats
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                pass  # a damaged cache file is recomputed and replaced
    stats, _ = extractor.stats(source, count, keep=max(keep, 1), seed=seed, label=f" ({source.kind}, real)")
    if path is not None:
        _save_cache(path, stats)
    return stats


def _finite(stats: scores.FeatureStats) -> bool:
    """Whether cached statistics are whole numbers (a count) and finite values, as computed ones always are."""
    return (stats.count >= 0 and bool(np.isfinite(stats.sum).all()) and bool(np.isfinite(stats.outer).all())
            and bool(np.isfinite(stats.features).all()))


def _save_cache(path: Path, stats: scores.FeatureStats) -> None:
    """Keep the statistics for next time; a cache that cannot be written only costs that time again."""
    tmp = path.with_name(path.name + ".tmp.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, **stats.state())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        print(f"warning: the reference statistics could not be cached in {path.parent} ({err.strerror or err}); "
              "they will be computed again next time. Set GANFORGE_CACHE to a folder you can write to.",
              file=sys.stderr)


REFERENCE_COUNT = 50_000  # real images for FID's statistics by default (at most all of them)


def calculate_metrics(generated: str | os.PathLike | ImageSource, reference: str | os.PathLike | ImageSource | None = None,
                      *, fid: bool = True, kid: bool = True, pr: bool = False, dc: bool = False, isc: bool = False,
                      count: int = 10_000, reference_count: int | None = None, seed: int = 0, which: str = "best",
                      extractor: FeatureExtractor | None = None, device: str = "auto",
                      inception: str | os.PathLike | None = None, batch_size: int = 64, cache: bool = True,
                      log: bool = True, progress: bool = True, runtime: str | None = None) -> dict:
    """Metrics of `generated` (a generator, run, dataset or image folder) against `reference`.

    `reference` defaults to the dataset a generator or run was trained on. FID uses up to
    `reference_count` real images; KID, precision/recall and density/coverage compare `count`
    generated features with `count` real ones. `runtime` picks what runs the Inception network
    ("auto", "torch", "onnxruntime"; see `inception_onnx`): features are the same to float rounding.
    """
    from ganforge.generator import check_seed, choose_device

    chosen = [name for name, on in zip(METRICS, (fid, kid, pr, dc, isc)) if on]
    if not chosen:
        raise MetricsError(f"No metric chosen: ask for at least one of {', '.join(METRICS)}.")
    _check_count(chosen, count, "generated", f"count={count}")
    if batch_size < 1:
        raise MetricsError(f"batch_size={batch_size}: use at least 1 (64 is usual; smaller needs less memory).")
    if fid and reference_count is not None and reference_count < MINIMUM["fid"]:
        raise MetricsError(f"reference_count={reference_count}: FID needs at least {MINIMUM['fid']} real images "
                           f"({USUAL['fid']} are usual).")
    check_seed(seed, "metrics seed")
    torch_device = choose_device(device)
    gen = generated if isinstance(generated, ImageSource) else open_source(generated, which=which, device=torch_device)
    if reference is None:
        if gen.training_data is None:
            raise MetricsError(f"{gen.path} is a {gen.kind}: say what to compare it with (--data DATASET).")
        if not gen.training_data.exists():
            raise MetricsError(f"The training dataset recorded in {gen.path}, {gen.training_data}, is gone; "
                               "pass the reference with --data DATASET.")
        reference = gen.training_data
    ref = reference if isinstance(reference, ImageSource) else open_source(reference, which=which, device=torch_device)
    if gen.available is not None:
        count = min(count, gen.available)
        _check_count(chosen, count, "generated", f"{gen.path} holds {_images(gen.available)}")
    if reference_count is None:
        # 50,000 real images at most (all of a smaller set); a generator as the reference draws as many as `count`,
        # never 50,000 unasked
        reference_count = REFERENCE_COUNT if ref.available is not None else count
    if ref.available is not None:
        _check_count([m for m in chosen if m != "is"], ref.available, "real",
                     f"the reference {ref.path} holds {_images(ref.available)}")
    extractor = extractor or FeatureExtractor(device=torch_device, inception=inception, batch_size=batch_size,
                                              progress=progress, runtime=runtime)
    if isc and not extractor.network.has_logits:
        raise MetricsError("The Inception Score needs the classifier, which the TorchScript pool3 file lacks: "
                           "use pytorch-fid's full weights (--inception pt_inception-2015-12-05-6726825d.pth).")
    started = time.perf_counter()
    # FID and IS need only the running statistics (and logits) of the generated side: its features are kept
    # for KID, precision/recall and density/coverage alone, so an FID of a million images needs no 8 GB of rows
    keep = count if (kid or pr or dc) else 0
    fake, logits = extractor.stats(gen, count, keep=keep, seed=seed + 1, logits=isc, label=f" ({gen.kind})")
    real_count = reference_count if fid else count
    real = reference_stats(extractor, ref, max(real_count, count), keep=count, seed=seed, cache=cache)
    n = count_name(count)
    results: dict[str, float] = {}
    if fid:
        results[f"fid{n}"] = scores.fid_from_stats(real, fake)
    if kid:
        results[f"kid{n}"], results[f"kid{n}_std"] = scores.kernel_inception_distance(real.features, fake.features, seed=seed)
    if pr:
        results[f"pr{n}_precision"], results[f"pr{n}_recall"] = scores.precision_recall(real.features, fake.features)
    if dc:
        results[f"dc{n}_density"], results[f"dc{n}_coverage"] = scores.density_coverage(real.features, fake.features)
    if isc:
        results[f"is{n}"], results[f"is{n}_std"] = scores.inception_score(logits)
    record = {"time": time.time(), "metrics": results, "protocol": PROTOCOL, "generated": str(gen.path),
              "reference": str(ref.path), "reference_images": real.count, "images_seen": gen.images_seen,
              "checkpoint": gen.checkpoint, "seconds": round(time.perf_counter() - started, 1),
              "runtime": extractor.runtime}
    if log and gen.kind == "run":
        try:
            append_metrics(gen.path, record)
        except OSError as err:  # the numbers are still returned (and printed): only the run's record is missing
            print(f"warning: the results could not be added to {gen.path / METRICS_LOG} ({err.strerror or err}).",
                  file=sys.stderr)
    return {**results, "protocol": PROTOCOL, "reference_images": real.count}


def _images(count: int) -> str:
    return f"{count:,} image{'' if count == 1 else 's'}"


def _check_count(chosen: list[str], have: int, side: str, why: str) -> None:
    """Refuse, before any image is read, a count below what one of the chosen metrics needs."""
    for name in chosen:
        if have < MINIMUM[name]:
            raise MetricsError(f"{NAMES[name]} needs at least {MINIMUM[name]} {side} images ({why}). Give more: "
                               f"{USUAL[name]} are usual, and with fewer the value is biased.")


def append_metrics(run: Path, record: dict) -> None:
    with open(run / METRICS_LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def read_metrics(run: Path) -> list[dict]:
    from ganforge.train.rundir import read_metrics_log

    return read_metrics_log(Path(run))


__all__ = ["calculate_metrics", "FeatureExtractor", "reference_stats", "read_metrics", "SourceError", "METRICS"]
