"""The metrics themselves: small pure functions from features (or their statistics) to numbers.

Each follows its paper and the reference code the literature uses:
- FID (Heusel et al. 2017): Frechet distance between Gaussians fitted to the two feature sets (the
  trace of the matrix square root by a symmetric eigendecomposition, see `frechet_distance`).
- KID (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y/d + 1)^3,
  averaged over random subsets (100 subsets of at most 1,000, as in StyleGAN2-ADA).
- Precision and recall (Kynkaanniemi et al. 2019): k-NN manifolds with k = 3.
- Density and coverage (Naeem et al. 2020): k = 5, the paper's default.
- Inception Score (Salimans et al. 2016): exp(E KL(p(y|x) || p(y))) over 10 splits, softmax over all
  1,008 logits as the original code does.
"""

from __future__ import annotations

import numpy as np
import torch

from ganforge.errors import GanforgeError


class TooFewSamplesError(GanforgeError, ValueError):
    """A score asked of fewer samples than its formula needs."""


class FeatureStats:
    """Streaming mean and covariance of features (float64), plus the first `keep` rows themselves.

    FID needs only the mean and covariance, so 50,000 samples cost 2048x2048 doubles (32 MB), not the
    features; KID, precision/recall and density/coverage use the kept rows. Inputs arrive in random
    order, so the first `keep` rows are a random subset.
    """

    def __init__(self, dim: int = 2048, keep: int = 10_000):
        self.count = 0
        self.sum = np.zeros(dim, np.float64)
        self.outer = np.zeros((dim, dim), np.float64)
        self.keep = keep
        self._kept: list[np.ndarray] = []
        self._kept_count = 0

    def add(self, features: np.ndarray) -> None:
        features = np.asarray(features)
        f64 = features.astype(np.float64)
        self.count += len(f64)
        self.sum += f64.sum(axis=0)
        self.outer += f64.T @ f64
        room = self.keep - self._kept_count
        if room > 0:
            self._kept.append(np.array(features[:room], dtype=np.float32))
            self._kept_count += len(self._kept[-1])

    @property
    def mean(self) -> np.ndarray:
        return self.sum / self.count

    @property
    def cov(self) -> np.ndarray:
        if self.count < 2:
            raise TooFewSamplesError(f"A covariance (FID) needs at least 2 samples, got {self.count}.")
        mu = self.mean
        return (self.outer - self.count * np.outer(mu, mu)) / (self.count - 1)

    @property
    def features(self) -> np.ndarray:
        return np.concatenate(self._kept) if self._kept else np.zeros((0, len(self.sum)), np.float32)

    def state(self) -> dict[str, np.ndarray]:
        return {"count": np.array(self.count), "sum": self.sum, "outer": self.outer, "features": self.features}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> "FeatureStats":
        stats = cls(dim=len(state["sum"]), keep=len(state["features"]))
        stats.count = int(state["count"])
        stats.sum = np.array(state["sum"], np.float64)
        stats.outer = np.array(state["outer"], np.float64)
        stats._kept = [np.array(state["features"], np.float32)]
        stats._kept_count = len(state["features"])
        return stats


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     factor1: np.ndarray | None = None) -> float:
    """||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2)).

    The reference code takes `scipy.linalg.sqrtm(S1 S2)` and keeps the real part of its trace. With
    any factor S1 = L L^T, the eigenvalues of S1 S2 are those of the symmetric matrix L^T S2 L, so the
    same trace is the sum of the square roots of that matrix's eigenvalues: the same number without the
    complex round-off of a non-symmetric square root, and much faster. L is `factor1` when given (the
    centred features over sqrt(n - 1), when there are fewer samples than dimensions), else the
    Cholesky factor of S1, else (S1 singular) its symmetric square root.
    """
    s1 = torch.from_numpy(np.asarray(sigma1, np.float64))
    s2 = torch.from_numpy(np.asarray(sigma2, np.float64))
    if factor1 is not None:
        factor = torch.from_numpy(np.asarray(factor1, np.float64))
    else:
        factor, info = torch.linalg.cholesky_ex(s1)
        if info.item() != 0:  # not positive definite: fewer samples than dimensions
            values, vectors = torch.linalg.eigh(s1)
            factor = (vectors * values.clamp(min=0).sqrt()) @ vectors.T  # tiny negative eigenvalues are round-off
    middle = factor.T @ s2 @ factor
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum().item()
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    if min(a.count, b.count) < 2:
        raise TooFewSamplesError(f"FID needs at least 2 samples on each side, got {a.count} and {b.count}.")
    factor = None
    if a.count == len(a.features) and a.count <= len(a.sum):  # every feature kept, and few of them
        centred = a.features.astype(np.float64) - a.mean
        factor = centred.T / np.sqrt(a.count - 1)  # (d, n): S1 = factor @ factor.T
    return frechet_distance(a.mean, a.cov, b.mean, b.cov, factor1=factor)


def kernel_inception_distance(real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation of the unbiased MMD^2 over `subsets` random subsets."""
    rng = np.random.default_rng(seed)
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    m = min(len(real), len(fake), subset_size)
    if m < 2:
        raise TooFewSamplesError(f"KID needs at least 2 samples on each side, got {len(real)} and {len(fake)}.")
    d = real.shape[1]
    values = np.empty(subsets)
    for i in range(subsets):
        x = fake[rng.choice(len(fake), m, replace=False)]
        y = real[rng.choice(len(real), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        values[i] = ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                     - 2 * kxy.mean())
    return float(values.mean()), float(values.std())


def _pairwise(a: torch.Tensor, b: torch.Tensor, block: int = 1024):
    """Yield (start, distances of a[start:start+block] to all of b), in float64 blocks."""
    for start in range(0, len(a), block):
        yield start, torch.cdist(a[start:start + block], b)


def knn_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row to its k-th nearest other row."""
    f = torch.from_numpy(np.asarray(features, np.float64))
    if len(f) <= k:
        raise TooFewSamplesError(f"k-NN radii with k={k} need more than {k} samples, got {len(f)}.")
    radii = torch.empty(len(f), dtype=torch.float64)
    for start, dist in _pairwise(f, f):
        # The k+1-th smallest, because each row's nearest neighbour in its own set is itself (distance 0).
        radii[start:start + len(dist)] = dist.kthvalue(k + 1, dim=1).values
    return radii.numpy()


def _inside_counts(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each point, how many balls (centre, radius) contain it; for each ball, whether any point does."""
    p = torch.from_numpy(np.asarray(points, np.float64))
    c = torch.from_numpy(np.asarray(centres, np.float64))
    r = torch.from_numpy(np.asarray(radii, np.float64))
    per_point = torch.zeros(len(p), dtype=torch.int64)
    ball_hit = torch.zeros(len(c), dtype=torch.bool)
    for start, dist in _pairwise(p, c):
        inside = dist <= r[None, :]
        per_point[start:start + len(dist)] = inside.sum(dim=1)
        ball_hit |= inside.any(dim=0)
    return per_point.numpy(), ball_hit.numpy()


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Precision: share of fakes inside the real manifold; recall: share of reals inside the fake one."""
    inside_real, _ = _inside_counts(fake, real, knn_radii(real, k))
    inside_fake, _ = _inside_counts(real, fake, knn_radii(fake, k))
    return float((inside_real > 0).mean()), float((inside_fake > 0).mean())


def density_coverage(real: np.ndarray, fake: np.ndarray, k: int = 5) -> tuple[float, float]:
    """Density: how many real neighbourhoods hold each fake, over k (can exceed 1); coverage: share of
    real neighbourhoods holding at least one fake."""
    per_fake, real_hit = _inside_counts(fake, real, knn_radii(real, k))
    return float(per_fake.sum() / (k * len(fake))), float(real_hit.mean())


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    logits = torch.from_numpy(np.asarray(logits, np.float64))
    if len(logits) < splits:
        raise TooFewSamplesError(f"The Inception Score over {splits} splits needs at least {splits} samples, "
                                 f"got {len(logits)}.")
    scores = []
    for part in torch.chunk(logits, splits):
        p = torch.softmax(part, dim=1)
        log_p = torch.log_softmax(part, dim=1)
        marginal = p.mean(dim=0, keepdim=True)
        kl = (p * (log_p - torch.log(marginal))).sum(dim=1).mean()
        scores.append(torch.exp(kl).item())
    return float(np.mean(scores)), float(np.std(scores))
