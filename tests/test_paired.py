"""Paired and unpaired prepared datasets: matching by name, side-by-side, derived pairs, the readers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.data import derive
from ganforge.data.format import PreparedDataset
from ganforge.data.inspect import inspect_dataset
from ganforge.data.output import PrepareError
from ganforge.data.pair_reader import PairedReader, UnpairedReader, make_reader
from ganforge.data.prepare import prepare_dataset
from ganforge.data.reader import BatchReader, BatchSizeError

QUIET = {"progress": False, "workers": 1}


def _colour_image(seed: int, size: int = 16) -> np.ndarray:
    """A distinct image per seed: a coloured square on another colour, with some noise."""
    rng = np.random.default_rng(seed)
    image = np.empty((size, size, 3), np.uint8)
    image[:] = rng.integers(0, 256, 3)
    lo, hi = size // 4, 3 * size // 4
    image[lo:hi, lo:hi] = rng.integers(0, 256, 3)
    return np.clip(image.astype(int) + rng.integers(-8, 9, image.shape), 0, 255).astype(np.uint8)


def _save(path, pixels) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


@pytest.fixture()
def two_folders(tmp_path):
    """A: colour photos; B: grey "drawings" of them. a/x3 and b/y have no partner; b/sub/x4.png is corrupt."""
    a, b = tmp_path / "A", tmp_path / "B"
    for i in range(5):
        photo = _colour_image(i)
        name = f"sub/x{i}" if i >= 4 else f"x{i}"
        _save(a / f"{name}.jpg" if i == 0 else a / f"{name}.png", photo)
        if i != 3:
            _save(b / f"{name}.png", np.asarray(Image.fromarray(photo).convert("L")))
    (b / "sub" / "x4.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    _save(b / "y.png", np.zeros((16, 16), np.uint8))
    return a, b


def test_pair_with_matches_by_name_and_reports_the_rest(two_folders, tmp_path):
    a, b = two_folders
    result = prepare_dataset(a, tmp_path / "out", resolution=16, pair_with=str(b), **QUIET)
    ds = PreparedDataset(tmp_path / "out")
    assert ds.kind == "paired" and len(ds) == 3 and result.included == 3
    assert ds.a.shape == (3, 16, 16, 3) and ds.b.shape == (3, 16, 16, 1)  # colour A, grey B
    report = json.loads((tmp_path / "out" / "prepare-report.json").read_text())
    pairs = {(p["a"], p["b"]) for p in report["included"]}
    assert pairs == {("x0.jpg", "x0.png"), ("x1.png", "x1.png"), ("x2.png", "x2.png")}
    reasons = {(s["side"], s["source"]): s["reason"] for s in report["skipped"]}
    assert reasons == {("a", "x3.png"): "no partner", ("b", "y.png"): "no partner",
                       ("b", "sub/x4.png"): "corrupt", ("a", "sub/x4.png"): "partner skipped"}
    # row i of A and row i of B come from the same picture
    for p in report["included"]:
        n = p["index"]
        grey = np.asarray(Image.open(b / p["b"]))
        assert np.array_equal(ds.b[n, :, :, 0], grey)
        if p["a"].endswith(".png"):
            assert np.array_equal(ds.a[n], np.asarray(Image.open(a / p["a"])))
    assert ds.manifest["skipped_by_reason"] == {"no partner": 2, "corrupt": 1, "partner skipped": 1}
    # the same command again is a no-op; another derive needs --overwrite
    again = prepare_dataset(a, tmp_path / "out", resolution=16, pair_with=str(b), **QUIET)
    assert again.reused
    with pytest.raises(PrepareError, match="--overwrite"):
        prepare_dataset(a, tmp_path / "out", resolution=16, unpaired=str(b), **QUIET)


def test_side_by_side_split_and_bad_shapes_skipped(tmp_path):
    src = tmp_path / "ab"
    lefts, rights = [_colour_image(i) for i in range(3)], [_colour_image(10 + i) for i in range(3)]
    for i in range(3):
        _save(src / f"{i}.png", np.concatenate([lefts[i], rights[i]], axis=1))  # 32 x 16
    _save(src / "odd.png", np.zeros((16, 33, 3), np.uint8))
    _save(src / "square.png", np.zeros((16, 16, 3), np.uint8))
    (src / "broken.png").write_bytes(b"not an image at all")
    prepare_dataset(src, tmp_path / "out", resolution=16, pairs="side-by-side", **QUIET)
    ds = PreparedDataset(tmp_path / "out")
    assert len(ds) == 3
    for i in range(3):
        assert np.array_equal(ds.a[i], lefts[i]) and np.array_equal(ds.b[i], rights[i])
    report = json.loads((tmp_path / "out" / "prepare-report.json").read_text())
    skipped = {s["source"]: (s["reason"], s["detail"]) for s in report["skipped"]}
    assert skipped["odd.png"][0] == "not side by side" and "odd" in skipped["odd.png"][1]
    assert skipped["square.png"][0] == "not side by side" and "16x16" in skipped["square.png"][1]
    assert skipped["broken.png"][0] == "not an image"


@pytest.fixture()
def photos(tmp_path):
    folder = tmp_path / "photos"
    for i in range(6):
        _save(folder / f"{i}.png", _colour_image(i, 32))
    return folder


def test_derive_gray_is_the_luminance(photos, tmp_path):
    prepare_dataset(photos, tmp_path / "out", resolution=32, derive="gray", **QUIET)
    ds = PreparedDataset(tmp_path / "out")
    assert ds.a.shape == (6, 32, 32, 1) and ds.b.shape == (6, 32, 32, 3)
    for i in range(6):
        expected = np.asarray(Image.fromarray(np.asarray(ds.b[i])).convert("L"))  # Pillow's ITU-R 601 luma
        assert np.abs(ds.a[i, :, :, 0].astype(int) - expected).max() <= 1
    assert ds.manifest["derive"]["mode"] == "gray"


def test_derive_edges_binary_and_on_the_square():
    image = np.full((1, 32, 32, 3), 40, np.uint8)
    image[0, 8:24, 8:24] = 220
    a = derive.derive(derive.parse_derive("edges"), image)
    assert a.shape == (1, 32, 32, 1) and set(np.unique(a)) == {0, 255}
    lines = a[0, :, :, 0] == 0
    assert lines[6:26, 6:26].sum() == lines.sum() > 0  # every edge pixel lies around the square's outline
    assert not lines[12:20, 12:20].any()  # none inside the flat area


def test_derive_sketch_is_darker_on_edges():
    image = np.full((1, 32, 32, 1), 128, np.uint8)
    image[0, 8:24, 8:24] = 230
    a = derive.derive(derive.parse_derive("sketch"), image)[0, :, :, 0].astype(int)
    edge_band = np.concatenate([a[6:10, 8:24].ravel(), a[22:26, 8:24].ravel()])
    flat = np.concatenate([a[13:19, 13:19].ravel(), a[0:3, :].ravel()])
    assert edge_band.min() < 64 and flat.min() > 200  # dark lines on white paper


def test_derive_downscale_shapes_and_constant(photos, tmp_path):
    prepare_dataset(photos, tmp_path / "out", resolution=32, derive="downscale:4", **QUIET)
    ds = PreparedDataset(tmp_path / "out")
    assert ds.a.shape == (6, 8, 8, 3) and ds.b.shape == (6, 32, 32, 3)
    assert ds.manifest["sides"]["a"]["resolution"] == 32 // 4
    constant = np.full((2, 32, 32, 3), 173, np.uint8)
    assert (derive.derive(derive.parse_derive("downscale:2"), constant) == 173).all()


def test_derive_labels_at_most_k_and_centres_reproduce_the_map(photos, tmp_path):
    prepare_dataset(photos, tmp_path / "out", resolution=32, derive="labels:4", **QUIET)
    ds = PreparedDataset(tmp_path / "out")
    a = np.asarray(ds.a)
    assert a.shape == (6, 32, 32, 1) and a.dtype == np.uint8
    assert len(np.unique(a)) <= 4 and a.max() < 4 and len(np.unique(a)) >= 2
    centres = np.asarray(ds.manifest["derive"]["centres_lab"], np.float32)
    assert centres.shape == (4, 3)
    again = derive.label_map(np.asarray(ds.b), centres)
    assert (again == a[..., 0]).mean() > 0.999  # the saved centres (rounded to 1e-4) redraw the map
    batch_a, batch_b = next(PairedReader(ds, 2, seed=1))
    assert batch_a.dtype == torch.long and batch_a.shape == (2, 32, 32) and batch_b.shape == (2, 3, 32, 32)


def test_derive_from_a_prepared_dataset_keeps_it(photos, tmp_path):
    prepare_dataset(photos, tmp_path / "images", resolution=32, **QUIET)
    prepare_dataset(tmp_path / "images", tmp_path / "out", derive="gray", **QUIET)
    ds, base = PreparedDataset(tmp_path / "out"), PreparedDataset(tmp_path / "images")
    assert np.array_equal(ds.b, base.images) and len(base) == 6  # B copied, the source untouched
    with pytest.raises(PrepareError, match="prepared at 32 px"):
        prepare_dataset(tmp_path / "images", tmp_path / "out2", resolution=16, derive="gray", **QUIET)


@pytest.mark.parametrize("mode, message", [
    ("blur", "is not a derive mode: use one of gray, edges, sketch"),
    ("labels:0", "between 2 and 256"),
    ("downscale:3", "does not divide the resolution 32"),
    ("downscale:x", "whole number of 2 or more"),
])
def test_derive_errors_are_one_sentence(photos, tmp_path, mode, message):
    with pytest.raises(PrepareError, match=message) as error:
        prepare_dataset(photos, tmp_path / "out", resolution=32, derive=mode, **QUIET)
    assert str(error.value).count(". ") == 0 and "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_combining_two_ways_and_a_missing_b_are_refused(photos, tmp_path):
    with pytest.raises(PrepareError, match="cannot be combined"):
        prepare_dataset(photos, tmp_path / "out", resolution=32, derive="gray", unpaired=str(photos), **QUIET)
    with pytest.raises(PrepareError, match="not found"):
        prepare_dataset(photos, tmp_path / "out", resolution=32, pair_with=str(tmp_path / "typo"), **QUIET)
    with pytest.raises(PrepareError, match="--pairs must be side-by-side"):
        prepare_dataset(photos, tmp_path / "out", resolution=32, pairs="top-bottom", **QUIET)
    assert not (tmp_path / "out").exists()


def test_derive_resumes_after_an_interruption(photos, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real = derive.derive
    calls = []

    def interrupted(spec, images, centres=None):
        calls.append(len(images))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(spec, images, centres)

    monkeypatch.setattr("ganforge.data.paired.ROWS", 4)  # two pieces for six images
    monkeypatch.setattr("ganforge.data.derive.derive", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(photos, out, resolution=32, derive="sketch", **QUIET)
    assert (out / ".partial" / "derive" / "a-000000.npy").is_file() and not (out / "manifest.json").exists()
    monkeypatch.setattr("ganforge.data.derive.derive", real)
    done = []
    monkeypatch.setattr("ganforge.data.derive.derive", lambda *a: done.append(1) or real(*a))
    prepare_dataset(photos, out, resolution=32, derive="sketch", **QUIET)
    assert done == [1]  # only the missing piece was derived again
    ds = PreparedDataset(out)
    assert np.array_equal(ds.a, real(derive.parse_derive("sketch"), np.asarray(ds.b)))
    assert not (out / ".partial").exists()


def test_paired_reader_flips_and_crops_both_sides_alike(tmp_path):
    src = tmp_path / "ab"
    for i in range(8):
        left = _colour_image(i)
        _save(src / f"{i}.png", np.concatenate([left, left], axis=1))  # A equals B: any misalignment shows
    prepare_dataset(src, tmp_path / "out", resolution=16, pairs="side-by-side", **QUIET)
    reader = PairedReader(tmp_path / "out", 4, flip=True, crop=12, seed=3)
    flipped = plain = 0
    for _ in range(6):
        a, b = next(reader)
        assert a.shape == b.shape == (4, 3, 12, 12)
        assert torch.equal(a, b)
    # and the flips happen: some batches differ from an unflipped, uncropped reader's
    for (a, _), (a0, _) in zip((next(PairedReader(tmp_path / "out", 8, flip=True, seed=s)) for s in range(4)),
                                (next(PairedReader(tmp_path / "out", 8, seed=s)) for s in range(4))):
        same = (a == a0).flatten(1).all(1)
        flipped += int((~same).sum())
        plain += int(same.sum())
        assert torch.equal(a[~same], a0[~same].flip(-1))
    assert flipped > 0 and plain > 0


def test_paired_reader_with_downscaled_a_crops_the_same_area(photos, tmp_path):
    prepare_dataset(photos, tmp_path / "out", resolution=32, derive="downscale:4", **QUIET)
    ds = PreparedDataset(tmp_path / "out")
    with pytest.raises(BatchSizeError, match="multiple of 4"):
        PairedReader(ds, 2, crop=10)
    reader = PairedReader(ds, 3, flip=True, crop=16, seed=5)
    for _ in range(4):
        a, b = next(reader)
        assert a.shape == (3, 3, 4, 4) and b.shape == (3, 3, 16, 16)
        # A is the downscaled B: the crops cover the same area when A matches B's area-average closely
        pooled = torch.nn.functional.avg_pool2d(b, 4)
        assert (a - pooled).abs().mean() < 0.1


def test_quarter_turns_turn_both_sides_alike_and_leave_other_draws_alone(photos, tmp_path):
    prepare_dataset(photos, tmp_path / "out", resolution=32, derive="downscale:4", **QUIET)
    ds = PreparedDataset(tmp_path / "out")
    turned, still = PairedReader(ds, 6, crop=16, seed=2, rotate=True), PairedReader(ds, 6, crop=16, seed=2)
    kinds = set()
    for _ in range(4):
        (a, b), (a0, b0) = next(turned), next(still)  # the same items and crops: turns are drawn last
        for k in range(6):
            found = [t for t in range(4) if torch.equal(b[k], b0[k].rot90(t, (1, 2)))]
            assert found, "B is B's own crop, turned"
            assert torch.equal(a[k], a0[k].rot90(found[0], (1, 2)))  # and A turned the same way
            kinds.add(found[0])
    assert len(kinds) >= 3
    images = photos_dataset(photos, tmp_path)
    with pytest.raises(BatchSizeError, match="rotate is for paired and unpaired"):
        make_reader(images, 2, rotate=True)
    from ganforge.api import train_gan

    with pytest.raises(Exception, match="upside down too: use flip=true"):
        train_gan(images.path, preset="dcgan-small", overrides={"rotate": True, "device": "cpu"}, progress=False)


def photos_dataset(photos, tmp_path):
    prepare_dataset(photos, tmp_path / "images", resolution=16, **QUIET)
    return PreparedDataset(tmp_path / "images")


def test_unpaired_counts_and_exact_resume(two_folders, tmp_path):
    a, b = two_folders
    prepare_dataset(a, tmp_path / "out", resolution=16, unpaired=str(b), channels="3", **QUIET)
    ds = PreparedDataset(tmp_path / "out")
    assert ds.kind == "unpaired" and len(ds.a) == 5 and len(ds.b) == 4  # each side its own count
    assert ds.manifest["sides"]["a"]["count"] == 5 and ds.manifest["skipped_by_reason"] == {"corrupt": 1}
    reader = UnpairedReader(ds, 1, flip=True, seed=7)
    for _ in range(5):
        next(reader)
    state = json.loads(json.dumps(reader.state_dict()))  # survives a checkpoint's JSON
    # each side its own order: B (4 images) is into its second epoch, A (5 images) ends its first
    assert state == {"a": {"seed": 7, "epoch": 0, "position": 5}, "b": {"seed": 7, "epoch": 1, "position": 1}}
    expected = [next(reader) for _ in range(7)]
    resumed = UnpairedReader(ds, 1, flip=True, seed=0)
    resumed.load_state_dict(state)
    for (ea, eb), (ra, rb) in zip(expected, (next(resumed) for _ in range(7)), strict=True):
        assert torch.equal(ea, ra) and torch.equal(eb, rb)
    assert resumed.state_dict() == reader.state_dict()


def test_readers_refuse_the_wrong_kind(two_folders, tmp_path):
    a, b = two_folders
    prepare_dataset(a, tmp_path / "out", resolution=16, pair_with=str(b), **QUIET)
    with pytest.raises(BatchSizeError, match="make_reader"):
        BatchReader(tmp_path / "out", 2)
    assert isinstance(make_reader(tmp_path / "out", 2), PairedReader)


def test_inspect_shows_kind_counts_and_a_beside_b(two_folders, tmp_path):
    a, b = two_folders
    prepare_dataset(a, tmp_path / "paired", resolution=16, pair_with=str(b), **QUIET)
    prepare_dataset(a, tmp_path / "unpaired", resolution=16, unpaired=str(b), **QUIET)
    paired = inspect_dataset(tmp_path / "paired")
    text = paired.summary()
    assert "paired" in text and "3 pairs" in text and "A: 3 images, 16x16, 3 channel" in text
    assert "B: 3 images, 16x16, 1 channel" in text and "no partner" in text
    sheet = np.asarray(Image.open(paired.contact_sheet))
    assert sheet.shape[1] > sheet.shape[0]  # pairs are drawn side by side: wider than high
    # the first tile's left half is an A (colour), its right half the B beside it (grey)
    scale = sheet.shape[1] // 67  # 2 columns of 16 + 1 + 16 px tiles, 1 px gaps, enlarged by a whole factor
    tile = sheet[scale : scale * 17, scale : scale * 34]
    left, right = tile[:, : 16 * scale], tile[:, 17 * scale :]
    assert np.ptp(left.astype(int), axis=-1).max() > 10 and np.ptp(right.astype(int), axis=-1).max() == 0
    unpaired = inspect_dataset(tmp_path / "unpaired").summary()
    assert "unpaired" in unpaired and "A: 5 images" in unpaired and "B: 4 images" in unpaired
