"""The batch reader: scaling, coverage, determinism, resume, flips, data-parallel slices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganforge.data.format import DatasetError, PreparedDataset
from ganforge.data.prepare import prepare_dataset
from ganforge.data.reader import BatchReader, to_uint8_images


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> PreparedDataset:
    out = tmp_path_factory.mktemp("digits") / "digits-16"
    prepare_dataset("digits", out, resolution=16, workers=1, progress=False)
    return PreparedDataset(out)


@pytest.fixture(scope="module")
def ring(tmp_path_factory) -> PreparedDataset:
    out = tmp_path_factory.mktemp("ring") / "ring8"
    prepare_dataset("ring8", out, count=1000, seed=3, progress=False)
    return PreparedDataset(out)


def test_batches_are_scaled_images_with_labels(digits):
    images, labels = next(BatchReader(digits, 32, seed=0))
    assert images.shape == (32, 1, 16, 16) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    assert images.min() == -1 and images.max() > 0.9  # black backgrounds and bright strokes
    assert labels.dtype == torch.int64 and labels.shape == (32,)


def test_whole_dataset_batch_round_trips_to_the_stored_pixels(digits):
    images, labels = next(BatchReader(digits, len(digits)))
    assert np.array_equal(to_uint8_images(images), np.asarray(digits.images))
    assert np.array_equal(labels.numpy(), digits.labels)


def test_an_epoch_visits_every_image_once(digits):
    reader = BatchReader(digits, 100, seed=1)
    per_epoch = len(digits) // 100
    seen = []
    for _ in range(per_epoch):
        reader_index = np.sort(reader._order[reader.position : reader.position + 100])
        images, _ = next(reader)
        assert np.array_equal(to_uint8_images(images), np.asarray(digits.images[reader_index]))
        seen.extend(reader_index.tolist())
    assert len(set(seen)) == len(seen) == per_epoch * 100
    next(reader)
    assert reader.epoch == 1  # the ragged end is dropped and a new permutation starts


def test_same_seed_same_batches_other_seed_other_batches(digits):
    a = [next(BatchReader(digits, 16, seed=7))[0] for _ in range(2)]
    assert torch.equal(a[0], a[1])
    assert not torch.equal(a[0], next(BatchReader(digits, 16, seed=8))[0])


def test_resume_from_state_dict_continues_exactly(digits):
    straight = BatchReader(digits, 64, flip=True, seed=5)
    expected = [next(straight) for _ in range(40)]  # crosses an epoch boundary (1797 // 64 = 28)
    first = BatchReader(digits, 64, flip=True, seed=5)
    for _ in range(25):
        next(first)
    state = first.state_dict()
    resumed = BatchReader(digits, 64, flip=True, seed=0)
    resumed.load_state_dict(state)
    for images, labels in expected[25:]:
        got_images, got_labels = next(resumed)
        assert torch.equal(got_images, images) and torch.equal(got_labels, labels)


def test_flip_mirrors_some_images_and_keeps_the_rest(digits):
    plain, _ = next(BatchReader(digits, 256, seed=2))
    flipped, _ = next(BatchReader(digits, 256, seed=2, flip=True))
    same = (flipped == plain).flatten(1).all(1)
    mirrored = (flipped == plain.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert 0.3 < float(mirrored.float().mean()) < 0.7  # about half, and symmetric digits count as both


def test_ranks_split_the_global_batch(digits):
    single = BatchReader(digits, 64, seed=4)
    ranks = [BatchReader(digits, 32, seed=4, rank=r, world_size=2) for r in range(2)]
    for _ in range(3):
        together = to_uint8_images(next(single)[0])
        parts = np.concatenate([to_uint8_images(next(r)[0]) for r in ranks])
        key = lambda a: sorted(x.tobytes() for x in a)  # noqa: E731
        assert key(together) == key(parts)


def test_batch_larger_than_dataset_is_a_clear_error(digits):
    with pytest.raises(ValueError, match="at most 1797"):
        BatchReader(digits, 5000)


def test_point_datasets_give_points(ring):
    points, modes = next(BatchReader(ring, 50, seed=0))
    assert points.shape == (50, 2) and points.dtype == torch.float32
    centres = torch.tensor(ring.manifest["modes"], dtype=torch.float32)[modes]
    assert float((points - centres).norm(dim=1).max()) < 6 * ring.manifest["std"]


def test_reading_a_folder_that_is_not_a_dataset_says_what_to_do(tmp_path):
    with pytest.raises(DatasetError, match="not a prepared dataset"):
        PreparedDataset(tmp_path)
    with pytest.raises(DatasetError, match="ganforge prepare"):
        PreparedDataset(tmp_path / "missing")


def test_a_tampered_image_file_is_detected(digits, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(digits.path, copy)
    np.save(copy / "images.npy", np.zeros((10, 16, 16, 1), np.uint8))
    with pytest.raises(DatasetError, match="changed after preparation"):
        PreparedDataset(copy)
