"""The memorisation audit: is a generator copying its training images?

`audit_generator(generated, data, heldout=...)` -> `AuditResult`, and with `out=` the files
`audit.md`, `audit.json`, `closest-pairs.png` and `distances.png`. It measures three things:

1. Each generated image's nearest training image, in Inception pool3 features and in pixels (L2 on
   the uint8 images at the dataset's resolution, scaled to [0, 1]).
2. How those distances compare with the same distances for real images the generator never saw
   (held-out): a generator that copies puts its images closer to the training set than fresh real
   images are; near-duplicates are generated images closer than 99% of held-out ones.
3. The data-copying test of Meehan, Chaudhuri & Dasgupta (2020), "A Non-Parametric Test to Detect
   Data-Copying in Generative Models" (AISTATS): `data_copying_test`.

Why held-out real images, and where they come from: a generator's distances mean nothing alone (a
good one sits about as close to its training images as the data's own spacing), so both the
near-duplicate threshold and the test compare them with real images drawn independently of the
training reference set, which is what the test's null hypothesis needs. With `heldout` they are truly
unseen images (a test split). Without it a random part of the training data is held out and measured
against the rest. Those images are independent of the rest, so the comparison stays sound, but the
generator did see them: copies *of them* look fresh, so the audit then detects copying only of the
reference part. We prefer this split to train->train leave-one-out distances because it keeps the
held-out images out of the reference set, as the test assumes. The report says which was used.

The training side is a random sample of at most `reference_count` images (features kept in memory,
pixels streamed in chunks), so copies of training images outside that sample go unseen too; the
report gives the share covered.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ganforge.errors import GanforgeError
from ganforge.metrics.audit_rules import (  # noqa: F401  (re-exported)
    COPYING_Z,
    MIN_CELL_GENERATED,
    NEAR_PERCENTILE,
    NEAR_SHARE,
    PAIR_ROWS,
    UNDERFITTING_Z,
)
from ganforge.metrics.sources import ImageSource, open_source

PIXEL_CHUNK = 512  # training images per pixel-distance pass: bounds memory and repeated conversions
QUERY_BLOCK = 1024
MAX_HELD = 100_000  # generated and held-out images are held in memory with their pixels (and compared pairwise)


class AuditError(GanforgeError, ValueError):
    """Inputs the memorisation audit cannot compare."""


# --- the pure parts: nearest neighbours and the test ------------------------------------------------


def nearest(queries: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance from each query row to its nearest reference row, and that row's index."""
    ref = torch.from_numpy(np.asarray(reference, np.float64))
    q_all = np.asarray(queries, np.float64)
    distance, index = np.empty(len(q_all)), np.empty(len(q_all), np.int64)
    for start in range(0, len(q_all), QUERY_BLOCK):  # (block, len(reference)) at a time
        best = torch.cdist(torch.from_numpy(q_all[start:start + QUERY_BLOCK]), ref).min(dim=1)
        distance[start:start + len(best.values)] = best.values.numpy()
        index[start:start + len(best.values)] = best.indices.numpy()
    return distance, index


def mann_whitney_z(generated: np.ndarray, heldout: np.ndarray) -> float:
    """Z-scored Mann-Whitney U of generated vs held-out distances: < 0 when generated ones are smaller."""
    from scipy.stats import rankdata

    m, n = len(generated), len(heldout)
    ranks = rankdata(np.concatenate([generated, heldout]))  # ties share their mean rank
    u = ranks[:m].sum() - m * (m + 1) / 2  # pairs where the generated distance is larger, ties count 1/2
    # Normal approximation under H0, with the continuity correction of the authors' code (mean
    # m n / 2 - 1/2) and, as there, no tie correction.
    return float((u - (m * n / 2 - 0.5)) / math.sqrt(m * n * (m + n + 1) / 12))


@dataclass
class CopyingTest:
    """C_T and the cells it was averaged over."""

    c_t: float | None  # None when no cell had enough generated samples
    cells: list[dict]  # per cell: reference, heldout, generated counts, z (None if unused), used


def data_copying_test(reference: np.ndarray, heldout: np.ndarray, generated: np.ndarray, *, cells: int,
                      seed: int = 0) -> CopyingTest:
    """Meehan, Chaudhuri & Dasgupta (2020), Sec. 3-4, as in the authors' code (casey-meehan/data-copying).

    Feature space is cut into `cells` cells by k-means on the training (reference) features. In each
    cell pi, Z_U(pi) compares the distances from its generated and its held-out samples to their
    nearest training sample *of the same cell*. C_T is the average of Z_U over the cells holding more
    than 20 generated samples (tau = 20 / m), weighted by each cell's share of held-out samples.
    C_T << 0: generated samples sit closer to the training set than real ones (copying); >> 0: farther
    (underfitting). Averaging per cell keeps copying in one region from being hidden by underfitting
    in another.
    """
    from sklearn.cluster import KMeans

    kmeans = KMeans(n_clusters=cells, n_init=3, random_state=seed).fit(reference)
    ref_cell, held_cell, gen_cell = kmeans.labels_, kmeans.predict(heldout), kmeans.predict(generated)
    rows, z_sum, weight_sum = [], 0.0, 0.0
    for cell in range(cells):
        ref, held, gen = reference[ref_cell == cell], heldout[held_cell == cell], generated[gen_cell == cell]
        row = {"cell": cell, "reference": len(ref), "heldout": len(held), "generated": len(gen), "z": None,
               "used": bool(len(gen) > MIN_CELL_GENERATED and len(held) > 0 and len(ref) > 0)}
        if row["used"]:
            row["z"] = mann_whitney_z(nearest(gen, ref)[0], nearest(held, ref)[0])
            weight = len(held) / len(heldout)  # P_n(pi)
            z_sum, weight_sum = z_sum + weight * row["z"], weight_sum + weight
        rows.append(row)
    return CopyingTest(z_sum / weight_sum if weight_sum else None, rows)


def default_cells(generated: int, heldout: int) -> int:
    """About 50 generated and 50 held-out samples a cell, so most cells pass the 20-sample rule; at most 20."""
    return int(min(20, max(1, min(generated, heldout) // 50)))


# --- distances in one space --------------------------------------------------------------------------


@dataclass
class SpaceDistances:
    """Nearest-training-image distances in one space (features or pixels)."""

    space: str
    generated: np.ndarray  # (m,) each generated image to its nearest training image
    heldout: np.ndarray  # (n,) each held-out real image to its nearest training image
    nearest: np.ndarray  # (m,) reference position of each generated image's nearest training image

    @property
    def threshold(self) -> float:
        return float(np.percentile(self.heldout, NEAR_PERCENTILE))

    @property
    def near_duplicate_share(self) -> float:
        return float((self.generated < self.threshold).mean())

    def closest(self, k: int) -> np.ndarray:
        """Indices of the k generated images nearest the training set, nearest first."""
        return np.argsort(self.generated, kind="stable")[:k]

    def to_dict(self) -> dict:
        def quantiles(d: np.ndarray) -> dict:
            return {"min": float(d.min()), "p1": float(np.percentile(d, 1)), "p5": float(np.percentile(d, 5)),
                    "median": float(np.median(d)), "mean": float(d.mean())}

        return {"generated": quantiles(self.generated), "heldout": quantiles(self.heldout),
                "near_duplicate_threshold": self.threshold, "near_duplicate_share": self.near_duplicate_share,
                "median_ratio": float(np.median(self.generated) / max(np.median(self.heldout), 1e-12))}


class _PixelNearest:
    """Running nearest training image in pixel space for fixed query images, fed training chunks."""

    def __init__(self, queries: np.ndarray):
        self.queries = queries.reshape(len(queries), -1)  # uint8 (Q, H*W*C); floats made per block
        self.distance = np.full(len(queries), np.inf)
        self.index = np.zeros(len(queries), np.int64)
        self.seen = 0

    def add(self, chunk: np.ndarray) -> None:
        ref = torch.from_numpy(chunk.reshape(len(chunk), -1)).double() / 255
        for start in range(0, len(self.queries), QUERY_BLOCK):
            q = torch.from_numpy(self.queries[start:start + QUERY_BLOCK]).double() / 255
            best = torch.cdist(q, ref).min(dim=1)
            d, i = best.values.numpy(), best.indices.numpy() + self.seen
            part = slice(start, start + len(d))
            better = d < self.distance[part]
            self.distance[part] = np.where(better, d, self.distance[part])
            self.index[part] = np.where(better, i, self.index[part])
        self.seen += len(chunk)


# --- the result --------------------------------------------------------------------------------------


@dataclass
class AuditResult:
    verdict: str  # "copying", "underfitting" or "no evidence of copying"
    reasons: list[str]  # why, in sentences
    notes: list[str]  # what limits the conclusion
    test: CopyingTest
    feature: SpaceDistances
    pixel: SpaceDistances
    setup: dict  # sources, counts, seed, feature protocol
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = field(repr=False, default_factory=dict)  # space -> (gen, train)
    files: dict[str, str] = field(default_factory=dict)

    @property
    def c_t(self) -> float | None:
        return self.test.c_t

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "reasons": self.reasons, "notes": self.notes, "c_t": self.c_t,
                "thresholds": {"copying_z": COPYING_Z, "underfitting_z": UNDERFITTING_Z,
                               "near_duplicate_percentile": NEAR_PERCENTILE, "near_duplicate_share": NEAR_SHARE,
                               "min_cell_generated": MIN_CELL_GENERATED},
                "feature": self.feature.to_dict(), "pixel": self.pixel.to_dict(), "cells": self.test.cells,
                "setup": self.setup, "files": self.files}

    def summary(self) -> str:
        c_t = "n/a" if self.c_t is None else f"{self.c_t:.2f}"
        return (f"Verdict: {self.verdict} (C_T = {c_t}, near-duplicates {self.feature.near_duplicate_share:.1%} "
                f"in features, {self.pixel.near_duplicate_share:.1%} in pixels). " + " ".join(self.reasons))


def _normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2))


def judge(test: CopyingTest, feature: SpaceDistances, pixel: SpaceDistances) -> tuple[str, list[str]]:
    """The verdict and its reasons. Pixel distances inform but do not decide: L2 in pixels rewards
    blur and flat colour, so a smooth generator can sit close to smooth training images without copying."""
    reasons, copying = [], False
    share = feature.near_duplicate_share
    if test.c_t is not None and test.c_t < COPYING_Z:
        copying = True
        reasons.append(f"C_T = {test.c_t:.2f} < {COPYING_Z:g}: within the cells of feature space, generated images "
                       "lie significantly closer to their nearest training images than unseen real images do "
                       f"(this low by chance about once in {1 / _normal_cdf(COPYING_Z):.0f} audits).")
    if share > NEAR_SHARE:
        copying = True
        reasons.append(f"{share:.1%} of generated images are near-duplicates of training images: closer in "
                       f"features (< {feature.threshold:.4g}) than {100 - NEAR_PERCENTILE:g}% of held-out real images "
                       f"are; a generator that does not copy puts about {NEAR_PERCENTILE:g}% there, and "
                       f"above {NEAR_SHARE:.0%} counts as copying.")
    if copying:
        if pixel.near_duplicate_share > NEAR_SHARE:
            reasons.append(f"In pixels too, {pixel.near_duplicate_share:.1%} are that close: literal copies.")
        return "copying", reasons
    if test.c_t is not None and test.c_t > UNDERFITTING_Z:
        return "underfitting", [(f"C_T = {test.c_t:.2f} > {UNDERFITTING_Z:g}: generated images lie farther from the "
                                 "training images than unseen real images do; the generator has not reached the "
                                 "data, which is the opposite of copying.")]
    c_t = "could not be computed" if test.c_t is None else f"= {test.c_t:.2f}, within [{COPYING_Z:g}, {UNDERFITTING_Z:g}]"
    return "no evidence of copying", [(f"C_T {c_t}, and {share:.1%} near-duplicates in features "
                                       f"(at most {NEAR_SHARE:.0%} allowed; about {NEAR_PERCENTILE:g}% expected).")]


# --- reading the inputs ------------------------------------------------------------------------------


def _open(source: str | os.PathLike | ImageSource, role: str, real: bool, **kwargs) -> ImageSource:
    opened = source if isinstance(source, ImageSource) else open_source(source, **kwargs)
    if real and opened.available is None:
        raise AuditError(f"The {role} images, {opened.path}, come from a {opened.kind}; give real images there: "
                         "a prepared dataset or a folder of images.")
    return opened


def _conform(images: np.ndarray, shape: tuple[int, ...], role: str) -> np.ndarray:
    """Images as (B, *shape): channels converted only where nothing is lost (grey <-> RGB, opaque alpha)."""
    if images.shape[1:] == shape:
        return images
    if images.shape[1:3] != shape[:2]:
        raise AuditError(f"The {role} images are {images.shape[1]}x{images.shape[2]}, the training images "
                         f"{shape[0]}x{shape[1]}; pixel distances need one size: prepare them at that resolution "
                         f"(ganforge prepare FOLDER OUT --resolution {shape[0]}).")
    have, want = images.shape[3], shape[2]
    if have == 4 and (images[..., 3] == 255).all():
        return _conform(images[..., :3], shape, role)
    if have == 1 and want == 3:
        return np.repeat(images, 3, axis=3)
    if have == 3 and want == 1 and (images == images[..., :1]).all():
        return images[..., :1]
    raise AuditError(f"The {role} images have {have} channels, the training images {want}; convert them to "
                     "match (prepare both with ganforge prepare).")


def _regroup(batches: Iterable[np.ndarray], sizes: Iterator[int]) -> Iterator[np.ndarray]:
    """Re-cut a stream of same-shaped batches into pieces of the given sizes (the last may be short)."""
    pending, have, want = [], 0, next(sizes)
    for batch in batches:
        if pending and batch.shape[1:] != pending[0].shape[1:]:
            raise AuditError("The training images differ in size; prepare them first (ganforge prepare), "
                             "which brings them to one resolution.")
        pending.append(batch)
        have += len(batch)
        while have >= want > 0:
            joined = np.concatenate(pending)
            yield joined[:want]
            pending, have, want = [joined[want:]], have - want, next(sizes)
    if have:
        yield np.concatenate(pending)


def _collect(source: ImageSource, count: int, batch_size: int, seed: int, shape: tuple, role: str) -> np.ndarray:
    return np.concatenate([_conform(b, shape, role) for b in source.batches(count, batch_size, seed)])[:count]


def _images_at(source: ImageSource, total: int, batch_size: int, seed: int, positions: Iterable[int]) -> dict:
    """The images at these stream positions of `source.batches(total, ...)`, read again (cheap: no network)."""
    wanted, found, offset = {int(p) for p in positions}, {}, 0
    for batch in source.batches(total, batch_size, seed):
        for p in wanted & set(range(offset, offset + len(batch))):
            found[p] = batch[p - offset]
        offset += len(batch)
        if len(found) == len(wanted):
            break
    return found


def _feature_function(extractor, device, inception, batch_size, progress) -> tuple[Callable, str]:
    if extractor is None:
        from ganforge.metrics.evaluate import FeatureExtractor

        extractor = FeatureExtractor(device=device, inception=inception, batch_size=batch_size, progress=progress)
    if hasattr(extractor, "features"):
        from ganforge.metrics.inception import PROTOCOL

        return extractor.features, PROTOCOL
    if callable(extractor):
        return extractor, getattr(extractor, "__name__", "custom features")
    raise AuditError("extractor must be a FeatureExtractor or a function from uint8 (B, H, W, C) images to "
                     "(B, D) features.")


def _features(extract: Callable, images: np.ndarray, batch_size: int, bar: tqdm) -> np.ndarray:
    parts = []
    for start in range(0, len(images), batch_size):
        parts.append(np.asarray(extract(images[start:start + batch_size]), np.float32))
        bar.update(len(parts[-1]))
    return np.concatenate(parts)


# --- the audit ---------------------------------------------------------------------------------------


def audit_generator(generated: str | os.PathLike | ImageSource, data: str | os.PathLike | ImageSource | None = None,
                    *, heldout: str | os.PathLike | ImageSource | None = None, count: int = 1000,
                    heldout_count: int | None = None, reference_count: int = 10_000, cells: int | None = None,
                    pairs: int = 8, seed: int = 0, out: str | os.PathLike | None = None, extractor=None,
                    which: str = "best", device: str = "auto", inception: str | os.PathLike | None = None,
                    batch_size: int = 64, progress: bool = True) -> AuditResult:
    """Audit `generated` (a generator, run, dataset or image folder) for copies of `data`'s images.

    `data` defaults to the dataset the generator or run was trained on. `count` generated images are
    compared with `heldout_count` (default `count`) held-out real images: from `heldout` when given,
    else split off the training data (see the module docstring). Up to `reference_count` training
    images form the reference. `extractor` is a `FeatureExtractor` (built when None) or any function
    from uint8 (B, H, W, C) images to (B, D) features. With `out`, the report files are written there.
    """
    from ganforge.generator import check_output_folder, check_seed, choose_device

    for number, name in ((count, "count"), (heldout_count, "heldout_count"), (reference_count, "reference_count")):
        if number is not None and number < 2:
            raise AuditError(f"{name}={number}: the audit compares at least 2 images of each kind (1,000 generated "
                             "and held-out, 10,000 training are usual).")
    for number, name in ((count, "count"), (heldout_count, "heldout_count")):
        if number is not None and number > MAX_HELD:
            raise AuditError(f"{name}={number:,}: the audit holds its generated and held-out images in memory, at "
                             f"most {MAX_HELD:,} of each (1,000 are usual and enough for the test).")
    if batch_size < 1:
        raise AuditError(f"batch_size={batch_size}: use at least 1 (64 is usual; smaller needs less memory).")
    check_seed(seed, "audit seed")
    if out is not None:
        check_output_folder(out)  # now, not after minutes of features
    torch_device = choose_device(device)
    gen = _open(generated, "generated", False, which=which, device=torch_device)
    train = _open(data if data is not None else _recorded_training_data(gen), "training", True)
    held = _open(heldout, "held-out", True) if heldout is not None else None
    if held is not None and held.path.resolve() == train.path.resolve():
        raise AuditError(f"The held-out images, {held.path}, are the training images; give images the generator "
                         "never saw (a test split), or leave heldout out to hold out part of the training data.")
    m, n, n_split, n_ref = _sizes(gen, train, held, count, heldout_count or count, reference_count)
    cells = cells or min(default_cells(m, n), n_ref)
    if not 1 <= cells <= n_ref or pairs < 1:
        raise AuditError(f"cells={cells}, pairs={pairs}: choose 1 to {n_ref} cells (the training images compared) "
                         "and at least 1 pair.")
    extract, protocol = _feature_function(extractor, torch_device, inception, batch_size, progress)

    gen_images, held_images, chunks, shape = _read(gen, train, held, m, n, n_split, n_ref, batch_size, seed)
    m, n = len(gen_images), len(held_images)
    with tqdm(total=m + n + n_ref, unit="img", desc="Audit features", disable=not progress, dynamic_ncols=True) as bar:
        gen_f, held_f = _features(extract, gen_images, batch_size, bar), _features(extract, held_images, batch_size, bar)
        pixels = _PixelNearest(np.concatenate([gen_images, held_images]))
        ref_parts = []
        for chunk in chunks:  # the training images are never all in memory, only their features
            ref_parts.append(_features(extract, chunk, batch_size, bar))
            pixels.add(chunk)
    ref_f = np.concatenate(ref_parts)

    gen_d, gen_i = nearest(gen_f, ref_f)
    feature = SpaceDistances("feature", gen_d, nearest(held_f, ref_f)[0], gen_i)
    pixel = SpaceDistances("pixel", pixels.distance[:m], pixels.distance[m:], pixels.index[:m])
    test = data_copying_test(ref_f, held_f, gen_f, cells=cells, seed=seed)
    setup = {"generated": str(gen.path), "generated_kind": gen.kind, "checkpoint": gen.checkpoint,
             "training": str(train.path), "training_available": train.available, "reference": len(ref_f),
             "heldout": str(held.path) if held else f"{n} images split off the training data",
             "heldout_unseen": held is not None, "generated_count": m, "heldout_count": n, "cells": cells,
             "seed": seed, "features": protocol, "pixels": f"L2 on {shape[0]}x{shape[1]}x{shape[2]} images in [0, 1]"}
    pictured = _closest_pairs(train, (feature, pixel), gen_images, min(pairs, m), n_split, n_ref, batch_size, seed)
    result = AuditResult(*judge(test, feature, pixel), _notes(test, setup, n_split), test, feature, pixel, setup,
                         pictured)
    if out is not None:
        from ganforge.metrics.audit_report import write_report

        write_report(result, out)
    return result


def _read(gen: ImageSource, train: ImageSource, held: ImageSource | None, m: int, n: int, n_split: int, n_ref: int,
          batch_size: int, seed: int) -> tuple[np.ndarray, np.ndarray, Iterator[np.ndarray], tuple]:
    """Generated and held-out images (in memory), training chunks (streamed), and the training image shape.

    The training stream's first `n_split` images are the held-out ones when no held-out set is given.
    """
    sizes = itertools.chain([n_split] if n_split else [], itertools.repeat(PIXEL_CHUNK))
    stream = _regroup(train.batches(n_split + n_ref, batch_size, seed), sizes)
    first = next(stream)
    shape = first.shape[1:]  # (H, W, C) of the training images: everything is compared at this size
    if n_split:
        held_images, chunks = first, stream
    else:
        held_images, chunks = _collect(held, n, batch_size, seed + 2, shape, "held-out"), itertools.chain([first], stream)
    return _collect(gen, m, batch_size, seed + 1, shape, "generated"), held_images, chunks, shape


def _recorded_training_data(gen: ImageSource) -> Path:
    if gen.training_data is None:
        raise AuditError(f"{gen.path} is a {gen.kind}: say which training images to compare it with (--data DATASET).")
    if not gen.training_data.exists():
        raise AuditError(f"The training dataset recorded in {gen.path}, {gen.training_data}, is gone; pass it with "
                         "--data DATASET.")
    return gen.training_data


def _sizes(gen: ImageSource, train: ImageSource, held: ImageSource | None, count: int, heldout_count: int,
           reference_count: int) -> tuple[int, int, int, int]:
    """(generated, held-out, held-out split off the training data, training reference) image counts."""
    m = min(count, gen.available) if gen.available is not None else count
    if held is not None:
        n, n_split = min(heldout_count, held.available), 0
    else:  # keep at least 4/5 of the training data as reference, where copies can be seen
        n = n_split = min(heldout_count, train.available // 5)
    n_ref = min(reference_count, train.available - n_split)
    more_generated = "raise count" if gen.available is None else f"{gen.path} holds {gen.available}; give more images"
    more_heldout = ("give more held-out images" if held is not None else
                    f"a fifth of the {train.available} training images is held out; give held-out images "
                    "(--heldout), or more training images")
    for number, what, fix in ((m, "generated", more_generated), (n, "held-out", more_heldout),
                              (n_ref, "training", "raise reference_count or give more training images")):
        if number < 2:
            raise AuditError(f"The audit needs at least 2 {what} images and has {number}: {fix} "
                             "(1,000 generated and held-out, 10,000 training are usual).")
    return m, n, n_split, n_ref


def _notes(test: CopyingTest, setup: dict, n_split: int) -> list[str]:
    notes = []
    if n_split:
        notes.append(f"No held-out set was given: {n_split} training images were held out and measured against the "
                     "rest. The generator saw them, so copies of them look fresh; give unseen real images (a test "
                     "split) as held-out for a sharper test.")
    pool = setup["training_available"] - n_split
    if setup["reference"] < pool:
        notes.append(f"The training side is {setup['reference']} of {pool} training images, sampled with seed "
                     f"{setup['seed']}; copies of the others go unseen, so a generator copying everything would show "
                     f"about {setup['reference'] / pool:.0%} near-duplicates here.")
    unused = [c for c in test.cells if not c["used"]]
    if test.c_t is None:
        notes.append(f"No cell held more than {MIN_CELL_GENERATED} generated images, so C_T was not computed: audit "
                     f"more generated images (about {50 * setup['cells']}).")
    elif unused:
        notes.append(f"{len(unused)} of {len(test.cells)} cells held {MIN_CELL_GENERATED} or fewer generated images "
                     "(or no held-out one) and were left out of C_T, as the paper does.")
    local = [c["cell"] for c in test.cells if c["z"] is not None and c["z"] < COPYING_Z]
    if local and test.c_t >= COPYING_Z:  # the paper's point: copying can be local, hidden in the average
        notes.append(f"Cells {', '.join(map(str, local))} show local copying (Z < {COPYING_Z:g}) although the "
                     "average does not; look at the closest pairs.")
    return notes


def _closest_pairs(train: ImageSource, spaces: tuple[SpaceDistances, ...], gen_images: np.ndarray, k: int,
                   offset: int, n_ref: int, batch_size: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each space, the k generated images nearest the training set and their nearest training images
    (read again from the training stream, whose reference part starts at `offset`)."""
    picks = {s.space: s.closest(k) for s in spaces}
    positions = [offset + int(s.nearest[i]) for s in spaces for i in picks[s.space]]
    found = _images_at(train, offset + n_ref, batch_size, seed, positions)
    return {s.space: (gen_images[picks[s.space]], np.stack([found[offset + int(s.nearest[i])] for i in picks[s.space]]))
            for s in spaces}
