"""Provenance: the invisible mark survives what it must and is absent where it must be; signed metadata
holds until someone alters it; verify reads anything without crashing; the release gate refuses a
copying generator and passes a healthy one, with a model card whose every section has real values."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.api import train_gan
from ganforge.cli import main
from ganforge.data.prepare import prepare_dataset
from ganforge.errors import GanforgeError
from ganforge.export import export_generator
from ganforge.generator import Generator, write_samples
from ganforge.metrics.sources import open_source
from ganforge.provenance import mark, sign
from ganforge.release.build import ReleaseError, build_release, check_release
from ganforge.provenance.stamp import Stamp
from ganforge.release.verify import known_models, verify_image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TINY = {"model.g_width": 8, "model.d_width": 8, "model.z_dim": 16, "batch_size": 16, "tick_kimg": 0.032,
        "grid_size": 10, "precision": "fp32", "ema_kimg": 0.1, "kimg": 0.1}


def pooled(images: np.ndarray) -> np.ndarray:
    """A cheap stand-in for Inception features in the audit: 4x4 average pooling."""
    x = images.astype(np.float32) / 255
    b, h, w, c = x.shape
    return x.reshape(b, h // 4, 4, w // 4, 4, c).mean(axis=(2, 4)).reshape(b, -1)


def textures(count: int, size: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Smooth random pictures (blurred noise), uint8 (count, size, size, channels)."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(30, 225, size=(count, 8, 8, channels)).astype(np.float32)
    x = torch.nn.functional.interpolate(torch.from_numpy(small).permute(0, 3, 1, 2), size=(size, size), mode="bicubic")
    x = x + torch.from_numpy(rng.normal(0, 6, size=x.shape).astype(np.float32))
    return x.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def jpeg(a: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()  # JPEG has no transparency: an RGBA image goes as its RGB
    Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a[..., :3]).save(buffer, "JPEG", quality=quality)
    out = np.asarray(Image.open(buffer))
    return out[..., None] if out.ndim == 2 else out


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest


# --- the mark ---------------------------------------------------------------------------------------


def test_codeword_carries_id_and_seed_and_decodes_through_errors():
    bits = mark.codeword("1234abcd", 42)
    assert bits.shape == (mark.BITS,) and set(np.unique(bits)) <= {0, 1}
    assert not np.array_equal(bits, mark.codeword("1234abcd", 43))
    soft = 1.0 - 2 * bits.astype(np.float64)  # +1 for a 0 bit, as read() makes them
    rng = np.random.default_rng(0)
    flipped = rng.choice(mark.BITS, size=4, replace=False)  # 4 wrong bits: at most 4 wrong bytes of 5 correctable
    soft[flipped] *= -0.3
    assert mark._decode((soft < 0).astype(np.uint8), soft)[:2] == ("1234abcd", 42)
    assert mark.codeword("1234abcd", None).tolist() == mark.codeword("1234abcd", 2**40).tolist()  # not carried


@pytest.mark.parametrize("size,channels", [(64, 3), (32, 1), (48, 4), (256, 3)])
def test_marked_images_read_back_and_survive_jpeg(size, channels):
    images = textures(6, size, channels)
    marked = mark.embed(images, "00c0ffee", [0, 1, 7, 99, 2**31, None])
    if channels == 4:
        assert np.array_equal(marked[..., 3], images[..., 3])  # transparency untouched
    change = marked.astype(float) - images
    psnr = 10 * np.log10(255**2 / (change**2).mean())
    assert psnr > 33  # invisible at a glance; the benchmark reports the exact figure on real images
    # JPEG at quality 80 from 48 px up; a 32 px image's mark spans its highest frequencies, which JPEG cuts
    for attack in (lambda a: a, lambda a: jpeg(a, 80)) if size >= 48 else (lambda a: a,):
        readings = mark.read(np.stack([attack(a) for a in marked]))
        assert [(r.found, r.model_id) for r in readings] == [(True, "00c0ffee")] * 6
        assert [r.seed for r in readings] == [0, 1, 7, 99, 2**31, None]
        assert all(r.score > 0.5 and r.false_match_chance < 1e-6 for r in readings)


def test_unmarked_images_carry_no_mark():
    photos = [np.asarray(Image.open(p).convert("RGB").resize((64, 64))) for p in sorted((SHARED / "photos").glob("*.jpg"))[:20]]
    readings = mark.read(np.concatenate([textures(40, 64), np.stack(photos)]))
    assert not any(r.found for r in readings)
    assert max(abs(r.score) for r in readings) < mark.MIN_SCORE


def test_too_small_images_are_left_alone():
    tiny = textures(2, 8)
    assert not mark.fits(8, 8) and mark.fits(16, 16)
    assert np.array_equal(Stamp(None, "tiny").apply(tiny), tiny)
    with pytest.raises(mark.MarkError, match="too small"):
        mark.embed(tiny, "00000001", [1, 2])


# --- a trained model: marks, signatures, verify ------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("provenance")
    data = root / "digits-16"
    prepare_dataset("digits", data, resolution=16, workers=1, progress=False)
    trained = train_gan(data, preset="dcgan-small", overrides={**TINY, "conditional": "no",
                                                               "runs_dir": str(root / "runs")}, progress=False)
    export_generator(trained.run_dir)
    return trained.run_dir


@pytest.fixture(scope="module")
def samples(run, tmp_path_factory) -> tuple[Generator, Path]:
    gen = Generator.from_pretrained(run / "generator", device="cpu")
    out = tmp_path_factory.mktemp("samples")
    write_samples(gen, [3, 5, 8], out, progress=False)
    return gen, out


def test_every_export_has_an_identity_whose_key_stays_home(run):
    config = json.loads((run / "generator" / "config.json").read_text())
    identity = config["provenance"]
    assert len(identity["model_id"]) == 8 and identity["mark"] is True and identity["public"] is False
    key = sign.home() / "keys" / f"{identity['model_id']}.pem"
    assert key.is_file() and (key.stat().st_mode & 0o077) == 0  # readable by its owner only
    assert not any(p.suffix == ".pem" for p in (run / "generator").iterdir())  # the folder can be shared
    assert sign.registered()[identity["model_id"]]["public_key"] == identity["public_key"]


def test_samples_are_marked_signed_and_verified(samples):
    gen, out = samples
    for seed in (3, 5, 8):
        verdict = verify_image(out / f"seed{seed:06d}.png")
        assert verdict.marked and verdict.model_id == gen.stamp.model_id and verdict.seed == seed
        assert verdict.signature == "valid" and verdict.pixels_unchanged and verdict.ok
        assert verdict.model_name and "generator" in verdict.model_name
    # the same seed gives the same (marked) image again
    again = gen.sample([5])[0]
    assert np.array_equal(np.asarray(again), np.asarray(Image.open(out / "seed000005.png")))


def test_tampering_stripping_and_reencoding_are_told_apart(samples, tmp_path):
    gen, out = samples
    original = Image.open(out / "seed000003.png")
    manifest = json.loads(original.text[sign.MANIFEST_KEY])
    from PIL.PngImagePlugin import PngInfo

    forged = PngInfo()
    forged.add_text(sign.MANIFEST_KEY, json.dumps({**manifest, "seed": 4}))  # claims another seed
    forged.add_text(sign.SIGNATURE_KEY, original.text[sign.SIGNATURE_KEY])
    original.save(tmp_path / "forged.png", pnginfo=forged)
    verdict = verify_image(tmp_path / "forged.png")
    assert verdict.signature == "invalid" and not verdict.ok and verdict.seed == 3  # the mark still says 3

    original.save(tmp_path / "stripped.png")  # no text chunks
    stripped = verify_image(tmp_path / "stripped.png")
    assert stripped.marked and stripped.seed == 3 and stripped.signature == "absent" and stripped.ok

    edited = np.asarray(original).copy()
    edited[0, 0] ^= 1
    Image.fromarray(edited).save(tmp_path / "edited.png", pnginfo=_copy_text(original))
    changed = verify_image(tmp_path / "edited.png")
    assert changed.signature == "valid" and changed.pixels_unchanged is False


def _copy_text(image):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in image.text.items():
        info.add_text(key, value)
    return info


def test_verify_survives_damaged_strange_and_huge_files(samples, tmp_path):
    _, out = samples
    whole = (out / "seed000005.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "notes.png").write_text("not an image at all")
    Image.new("1", (20_000, 10_000)).save(tmp_path / "huge.png")  # 200 MP: over the decompression-bomb guard
    Image.new("RGB", (3000, 2000), (120, 130, 140)).save(tmp_path / "big.png")
    for name in ("cut.png", "notes.png", "huge.png"):
        verdict = verify_image(tmp_path / name)
        assert not verdict.readable and verdict.problem and not verdict.ok
    assert "too many" in verify_image(tmp_path / "huge.png").problem
    big = verify_image(tmp_path / "big.png")
    assert big.readable and not big.marked and big.signature == "absent"
    verdict = verify_image(tmp_path / "missing.png")
    assert not verdict.readable


def test_unknown_models_are_checked_against_a_release_folder(samples, tmp_path, monkeypatch):
    gen, out = samples
    monkeypatch.setenv("GANFORGE_HOME", str(tmp_path / "elsewhere"))  # another person's machine
    verdict = verify_image(out / "seed000008.png")
    assert verdict.marked and verdict.model_name is None and verdict.signature == "unchecked"
    models = known_models([gen.path])
    assert verify_image(out / "seed000008.png", models).signature == "valid"
    # without the owner's key, images are still marked, but not signed
    away = Generator.from_pretrained(gen.path, device="cpu")
    assert not away.stamp.identity.can_sign and sign.SIGNATURE_KEY not in away.signed(away.sample([1])[0])
    assert mark.read(np.asarray(away.sample([1])[0])[None, ..., None])[0].seed == 1


def test_verify_command_words_and_exit_status(samples, tmp_path, capsys):
    gen, out = samples
    assert main(["verify", str(out / "seed000003.png")]) == 0
    said = capsys.readouterr().out
    assert f"marked by model {gen.stamp.model_id}" in said and "seed 3" in said and "signature holds" in said
    Image.fromarray(textures(1, 32)[0]).save(tmp_path / "plain.png")
    assert main(["verify", str(tmp_path / "plain.png"), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)[0]["marked"] is False


def test_the_owner_can_switch_the_mark_off_for_a_private_model(samples, tmp_path):
    gen, _ = samples
    assert main(["sample", str(gen.path), "--seeds", "1", "--out", str(tmp_path), "--no-mark", "-q"]) == 0
    image = Image.open(tmp_path / "seed000001.png")
    assert sign.MANIFEST_KEY not in image.text
    assert not verify_image(tmp_path / "seed000001.png").marked
    unmarked = Generator(gen.module, gen.config, gen.path, mark=False).sample([1])[0]
    assert np.array_equal(np.asarray(image), np.asarray(unmarked))


# --- releases -----------------------------------------------------------------------------------------


AUDIT = {"audit_count": 100, "reference_count": 1000, "extractor": pooled, "device": "cpu", "progress": False}
SECTIONS = ["## Model details", "## Intended use", "## Out-of-scope use", "## Training data", "## Evaluation",
            "## Memorisation audit", "## Ethical considerations", "## Caveats and recommendations"]


def test_a_private_release_has_every_part_hashed_and_signed(run, tmp_path):
    release = build_release(run, tmp_path / "rel", name="digits v1", data_source="scikit-learn's digits",
                            data_licence="BSD-3-Clause", **AUDIT)
    folder = release.folder
    assert not release.public and release.verdict != "copying"
    assert (folder / "generator" / "model.safetensors").is_file() and (folder / "audit" / "audit.json").is_file()
    assert (folder / "audit" / "closest-pairs.png").is_file()  # private: the owner sees the pairs
    card = (folder / "README.md").read_text()
    for section in SECTIONS:
        assert section in card
    assert "digits v1" in card and "scikit-learn's digits" in card and "BSD-3-Clause" in card
    assert release.verdict in card and "1,797 images at 16 px" in card and "None" not in card
    record = json.loads((folder / "release.json").read_text())
    assert record["release_id"] == json.loads((run / "generator" / "config.json").read_text())["provenance"]["model_id"]
    assert len(record["data"]["sha256"]) == 64 and "generator/model.safetensors" in record["files"]
    assert check_release(folder) == []
    (folder / "metrics.json").write_text("{}\n ")
    assert check_release(folder) == ["metrics.json was changed after the release"]
    with pytest.raises(ReleaseError, match="not empty"):
        build_release(run, folder, **AUDIT)


def test_public_release_needs_a_licence_and_marks_always(run, tmp_path):
    with pytest.raises(ReleaseError, match="licence"):
        build_release(run, tmp_path / "nolicence", public=True, **AUDIT)
    assert not (tmp_path / "nolicence").exists()
    release = build_release(run, tmp_path / "pub", public=True, licence="CC-BY-4.0", **AUDIT)
    assert release.public and not (release.folder / "audit" / "closest-pairs.png").exists()  # training images
    gen = Generator.from_pretrained(release.folder / "generator", device="cpu")
    assert gen.stamp.public and gen.stamp.marking
    with pytest.raises(GanforgeError, match="public release"):
        Generator.from_pretrained(release.folder / "generator", device="cpu", mark=False)
    assert known_models()[release.model_id]["public"] is True


def test_the_gate_refuses_a_generator_that_copies_its_data(run, tmp_path):
    # Training data that holds the generator's own images (the very ones the audit draws): it copies them.
    source = open_source(run / "generator", device="cpu")
    copies = tmp_path / "copied"
    copies.mkdir()
    images = np.concatenate(list(source.batches(150, 64, 1)))  # the audit draws the generator's with seed + 1
    for k, image in enumerate(images):
        Image.fromarray(image[..., 0]).save(copies / f"{k:04d}.png")
    with pytest.raises(ReleaseError, match="copies its training images") as refused:
        build_release(run, tmp_path / "refused", public=True, licence="CC-BY-4.0", data=copies, **AUDIT)
    assert "closest-pairs.png" in str(refused.value) and "--override-audit" in str(refused.value)
    assert not (tmp_path / "refused").exists()
    release = build_release(run, tmp_path / "anyway", public=True, licence="CC-BY-4.0", data=copies,
                            override_audit="the images are my own and I want them public", **AUDIT)
    card = (release.folder / "README.md").read_text()
    assert release.verdict == "copying" and "the images are my own and I want them public" in card


def test_release_command(run, tmp_path, capsys):
    build_release(run, tmp_path / "first", **AUDIT)  # leaves RUN/audit for this checkpoint: reused, no Inception
    assert main(["release", str(run), "--out", str(tmp_path / "r"), "-q"]) == 0
    assert "private" in capsys.readouterr().out
    assert main(["release", str(run), "--out", str(tmp_path / "r2"), "--public"]) == 2
    assert "licence" in capsys.readouterr().err


# --- fingerprints -------------------------------------------------------------------------------------


def test_fingerprint_scores_tell_marked_training_images_from_others():
    from ganforge.provenance import fingerprint

    images = textures(40, 64)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    printed = fingerprint.fingerprint_batch(x, fingerprint.pattern_image("0000abcd", 64, 64))
    printed = ((printed + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    change = printed.astype(float) - images
    assert 2.5 < np.sqrt((change**2).mean()) < 3.5  # the pattern's strength, in 8-bit levels
    assert fingerprint.scores(printed, "0000abcd").min() > fingerprint.THRESHOLD
    assert np.abs(fingerprint.scores(images, "0000abcd")).max() < 4  # z of images without it: about N(0, 1)
    assert np.abs(fingerprint.scores(printed, "0000abce")).max() < 4  # another model's key finds nothing


def test_training_with_a_fingerprint_marks_what_d_sees_and_the_export(tmp_path):
    from ganforge.provenance import fingerprint
    from ganforge.provenance.sign import run_identity

    data = tmp_path / "digits"
    prepare_dataset("digits", data, resolution=16, workers=1, progress=False)
    trained = train_gan(data, preset="dcgan-small", progress=False,
                        overrides={**TINY, "kimg": 0.05, "fingerprint": True, "runs_dir": str(tmp_path / "runs")})
    identity = run_identity(trained.run_dir)
    config = json.loads((export_generator(trained.run_dir) / "config.json").read_text())
    assert config["provenance"]["model_id"] == identity.model_id and config["provenance"]["fingerprint"] is True
    # what the trainer fed D: the real images plus the run's pattern
    from ganforge.data.reader import BatchReader

    plain = BatchReader(data, 8, seed=0)
    printed = BatchReader(data, 8, seed=0)
    printed.fingerprint = fingerprint.pattern_image(identity.model_id, 16, 16)
    difference = (next(printed)[0] - next(plain)[0]) * 127.5
    assert 1.5 < difference.pow(2).mean().sqrt() < 3.5  # 3 levels RMS, less where the digits clip at black
    # an image with the fingerprint and no mark (the weights run without ganforge) is traced by it
    image = np.clip(np.full((16, 16), 128.0) + fingerprint.pattern_image(identity.model_id, 16, 16)[0, 0].numpy()
                    + np.random.default_rng(0).normal(0, 2, (16, 16)), 0, 255).round().astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "weights-only.png")
    verdict = verify_image(tmp_path / "weights-only.png")
    assert not verdict.marked and verdict.fingerprint == identity.model_id and verdict.ok
    assert verdict.fingerprint_z > fingerprint.THRESHOLD


def test_fingerprint_is_for_image_datasets_only(tmp_path):
    from ganforge.train.recipes.fields import model_fields

    class Points:
        kind, path, num_classes, labels = "points", Path("ring"), 0, None

    class Config:
        model, conditional, fingerprint = {"name": "mlp"}, "no", True

    with pytest.raises(GanforgeError, match="fingerprint=on"):
        model_fields(Config(), Points())
