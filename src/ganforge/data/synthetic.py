"""2-D Gaussian mixtures: the mode-collapse benchmarks of PacGAN (Lin et al., 2018) and VEEGAN.

`gaussian_mixture("ring8", n)` draws points and the mode each came from; `nearest_mode` assigns
points (e.g. a generator's samples) to modes, so a metric can count a sample as high quality when it
lies within 3 standard deviations of its nearest mode, and count the modes that were hit.

Parameters follow the PacGAN authors' code (github.com/fjxmlzn/PacGAN,
synthetic_data_experiments/*/config.py), which agrees with the paper's text:
- ring8: 8 modes evenly spaced on the unit circle, std 0.01 (variance 1e-4). Note: this is radius
  1 and std 0.01, not the radius 2, std 0.02 ring of the unrolled-GAN / VEEGAN papers.
- grid25: 25 modes on {-4, -2, 0, 2, 4}^2, std 0.05 (variance 0.0025).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MixtureSpec:
    """An equal-weight mixture of isotropic 2-D Gaussians."""

    name: str
    modes: np.ndarray  # (K, 2) float64 mode centres
    std: float  # per-coordinate standard deviation, the same for every mode


def _ring(count: int, radius: float) -> np.ndarray:
    angles = 2 * np.pi * np.arange(count) / count
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _grid(values: list[float]) -> np.ndarray:
    xs, ys = np.meshgrid(values, values, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)


MIXTURES: dict[str, MixtureSpec] = {
    "ring8": MixtureSpec("ring8", _ring(8, radius=1.0), std=0.01),
    "grid25": MixtureSpec("grid25", _grid([-4.0, -2.0, 0.0, 2.0, 4.0]), std=0.05),
}


_CHUNK = 65536  # points per step in nearest_mode


def get_mixture(name: str) -> MixtureSpec:
    """The registered mixture called `name`, or a ValueError listing the known ones."""
    try:
        return MIXTURES[name]
    except KeyError:
        raise ValueError(f"Unknown Gaussian mixture {name!r}; known mixtures: "
                         f"{', '.join(sorted(MIXTURES))}.") from None


def gaussian_mixture(name: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Draw `n` points from mixture `name`; return (points float32 (n, 2), mode index int64 (n,)).

    Every mode has probability 1/K. The same (name, n, seed) always gives the same points.
    """
    spec = get_mixture(name)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer number of points, got {n!r}.")
    rng = np.random.default_rng(seed)
    modes = rng.integers(0, len(spec.modes), size=n, dtype=np.int64)
    points = spec.modes[modes] + spec.std * rng.standard_normal((n, 2))
    return points.astype(np.float32), modes


def nearest_mode(points: np.ndarray, spec: MixtureSpec | str) -> tuple[np.ndarray, np.ndarray]:
    """For each point (N, 2), the index of the nearest mode centre (int64) and its distance (float64).

    Divide the distance by `spec.std` to get it in standard deviations. For the "high quality =
    within 3 std" rule note that in 2-D the distance is Rayleigh-distributed: only 1 - exp(-4.5),
    about 98.9%, of true samples lie within 3 std of their mode, not the 1-D 99.7%.
    """
    if isinstance(spec, str):
        spec = get_mixture(spec)
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {points.shape}.")
    index = np.empty(len(points), np.int64)
    distance = np.empty(len(points), np.float64)
    for start in range(0, len(points), _CHUNK):  # chunks bound the (chunk, K, 2) temporary
        chunk = points[start:start + _CHUNK]
        d = np.linalg.norm(chunk[:, None, :] - spec.modes[None, :, :], axis=2)  # (chunk, K)
        index[start:start + _CHUNK] = d.argmin(axis=1)
        distance[start:start + _CHUNK] = d[np.arange(len(chunk)), index[start:start + _CHUNK]]
    return index, distance
