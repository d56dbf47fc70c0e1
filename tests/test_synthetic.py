"""Tests for ganforge.data.synthetic: the 2-D Gaussian mixture benchmarks."""

from __future__ import annotations

import numpy as np
import pytest

from ganforge.data.synthetic import MIXTURES, gaussian_mixture, get_mixture, nearest_mode


def test_specs_match_the_pacgan_protocol():
    ring, grid = MIXTURES["ring8"], MIXTURES["grid25"]
    assert ring.modes.shape == (8, 2) and ring.modes.dtype == np.float64
    assert np.allclose(np.linalg.norm(ring.modes, axis=1), 1.0)
    assert np.allclose(ring.modes[0], [1.0, 0.0]) and np.allclose(ring.modes[2], [0.0, 1.0])
    assert ring.std == 0.01
    assert grid.modes.shape == (25, 2) and grid.std == 0.05
    assert sorted(map(tuple, grid.modes.tolist())) == [
        (float(x), float(y)) for x in range(-4, 5, 2) for y in range(-4, 5, 2)]


@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_shapes_and_dtypes(name):
    points, modes = gaussian_mixture(name, 1000, seed=3)
    assert points.shape == (1000, 2) and points.dtype == np.float32
    assert modes.shape == (1000,) and modes.dtype == np.int64
    assert modes.min() >= 0 and modes.max() < len(MIXTURES[name].modes)
    empty_points, empty_modes = gaussian_mixture(name, 0)
    assert empty_points.shape == (0, 2) and empty_modes.shape == (0,)


@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_reproducible_from_seed(name):
    a = gaussian_mixture(name, 500, seed=7)
    b = gaussian_mixture(name, 500, seed=7)
    c = gaussian_mixture(name, 500, seed=8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_modes_equally_likely_and_points_close(name):
    spec = MIXTURES[name]
    n = 50_000
    points, modes = gaussian_mixture(name, n, seed=0)
    counts = np.bincount(modes, minlength=len(spec.modes))
    assert counts.min() > 0  # every mode hit
    assert np.allclose(counts / n, 1 / len(spec.modes), atol=0.01)
    distance = np.linalg.norm(points - spec.modes[modes], axis=1)
    # In 2-D, P(distance <= 3 std) = 1 - exp(-4.5) = 0.9889.
    assert np.mean(distance <= 3 * spec.std) == pytest.approx(0.9889, abs=0.005)
    assert np.std(points - spec.modes[modes]) == pytest.approx(spec.std, rel=0.02)


@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_nearest_mode_recovers_the_mode(name):
    spec = MIXTURES[name]
    points, modes = gaussian_mixture(name, 20_000, seed=1)
    index, distance = nearest_mode(points, spec)
    assert index.dtype == np.int64 and distance.dtype == np.float64
    assert np.array_equal(index, modes)  # modes are far apart relative to std
    expected = np.linalg.norm(points.astype(np.float64) - spec.modes[modes], axis=1)
    assert np.allclose(distance, expected)
    assert np.array_equal(nearest_mode(points, name)[0], index)  # a name works too


def test_nearest_mode_on_a_far_point():
    index, distance = nearest_mode(np.array([[0.0, 0.0], [1.1, 0.0]]), "ring8")
    assert index[1] == 0 and distance[1] == pytest.approx(0.1)
    assert distance[0] == pytest.approx(1.0)


def test_nearest_mode_in_chunks(monkeypatch):
    from ganforge.data import synthetic

    points, modes = gaussian_mixture("grid25", 1000, seed=2)
    monkeypatch.setattr(synthetic, "_CHUNK", 7)  # several chunks and a ragged last one
    index, distance = nearest_mode(points, "grid25")
    assert np.array_equal(index, modes) and distance.shape == (1000,)


def test_bad_input_is_clear():
    with pytest.raises(ValueError, match="Unknown Gaussian mixture 'ring9'.*grid25, ring8"):
        gaussian_mixture("ring9", 10)
    with pytest.raises(ValueError, match="known mixtures"):
        get_mixture("spiral")
    with pytest.raises(ValueError, match="non-negative integer"):
        gaussian_mixture("ring8", -1)
    with pytest.raises(ValueError, match="non-negative integer"):
        gaussian_mixture("ring8", 10.5)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        nearest_mode(np.zeros((4, 3)), "ring8")
