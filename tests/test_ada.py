"""ADA: the augmentation pipe (identity at p=0, exact blits, the paper's distributions, alpha untouched) and
the controller (direction, exact step size, clamping, resume, all_reduce)."""

from __future__ import annotations

import math

import pytest
import torch

from ganforge.errors import GanforgeError
from ganforge.train import ada
from ganforge.train.ada import COLOUR, GEOMETRIC, AdaController, AugmentError, AugmentPipe


def only(*names: str, p: float = 1.0, **multipliers: float) -> AugmentPipe:
    """A pipe with just `names` on (multiplier 1, or as given)."""
    on = {name: multipliers.get(name, 1.0) if name in names else 0.0 for name in GEOMETRIC + COLOUR}
    return AugmentPipe(**on, p=p)


def images(batch: int = 8, channels: int = 3, size: int = 16, seed: int = 0, width: int | None = None):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, channels, size, width or size, generator=g) * 2 - 1


def seeded(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- the pipe -------------------------------------------------------------------------------------------

def test_zero_strength_returns_the_input_exactly_and_draws_nothing():
    x = images()
    g = seeded()
    before = g.get_state()
    out = AugmentPipe(p=0.0)(x, generator=g)
    assert torch.equal(out, x)
    assert torch.equal(g.get_state(), before)


def test_full_strength_changes_every_image():
    x = images(batch=16)
    out = AugmentPipe(p=1.0)(x, generator=seeded())
    assert out.shape == x.shape
    assert ((out - x).abs().flatten(1).amax(dim=1) > 1e-3).all()


def test_gradient_reaches_the_input():
    x = images(batch=4).requires_grad_()
    out = AugmentPipe(p=1.0)(x, generator=seeded())
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_same_seed_same_output_other_seed_different_global_rng_untouched():
    x = images()
    pipe = AugmentPipe(p=0.7)
    torch.manual_seed(123)
    global_state = torch.get_rng_state()
    a, b = pipe(x, generator=seeded(5)), pipe(x, generator=seeded(5))
    assert torch.equal(torch.get_rng_state(), global_state)
    assert torch.equal(a, b)
    assert not torch.allclose(a, pipe(x, generator=seeded(6)))


def test_without_a_generator_the_global_rng_is_used():
    x = images()
    pipe = AugmentPipe(p=0.7)
    torch.manual_seed(9)
    a = pipe(x)
    torch.manual_seed(9)
    assert torch.equal(a, pipe(x))


def test_xflip_gives_the_input_or_its_mirror_and_both_happen():
    x = images(batch=32)
    out = only("xflip")(x, generator=seeded())
    same = (out - x).abs().flatten(1).amax(dim=1) < 1e-5
    mirrored = (out - x.flip(3)).abs().flatten(1).amax(dim=1) < 1e-5
    assert (same ^ mirrored).all()
    assert same.any() and mirrored.any()


def test_rotate90_gives_one_of_the_four_quarter_turns_and_all_happen():
    x = images(batch=64)
    out = only("rotate90")(x, generator=seeded())
    errors = torch.stack([(out - torch.rot90(x, k, dims=(2, 3))).abs().flatten(1).amax(dim=1) for k in range(4)])
    best = errors.min(dim=0)
    assert (best.values < 1e-4).all()
    assert set(best.indices.tolist()) == {0, 1, 2, 3}


def test_integer_translation_moves_content_by_whole_pixels_reflecting_at_the_border():
    size, reach = 16, round(ada.XINT_MAX * 16)  # at most 2 pixels
    x = images(batch=16, size=size)
    out = only("xint")(x, generator=seeded())

    def source(shift: int) -> torch.Tensor:  # out[.., y] = in[.., y - shift], mirrored about the image edge
        index = torch.arange(size) - shift
        return torch.where(index < 0, -index - 1, torch.where(index >= size, 2 * size - index - 1, index))

    shifts = []
    for i in range(x.shape[0]):
        matches = [(dy, dx) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)
                   if (out[i] - x[i][:, source(dy)][:, :, source(dx)]).abs().max() < 1e-5]
        assert len(matches) == 1, f"sample {i}: {matches}"
        shifts.append(matches[0])
    assert len(set(shifts)) > 3


def test_samples_without_a_geometric_transform_are_not_resampled(monkeypatch):
    calls = []
    real = ada.F.grid_sample
    monkeypatch.setattr(ada.F, "grid_sample", lambda *a, **k: calls.append(a[0].shape[0]) or real(*a, **k))
    x = images(batch=8)
    only("brightness", "contrast", "hue")(x, generator=seeded())
    assert calls == []  # colour alone never resamples
    out = only("xflip", p=0.5)(x, generator=seeded())
    assert len(calls) == 1 and 0 < calls[0] < 8
    untouched = (out == x).flatten(1).all(dim=1)
    assert untouched.sum() == 8 - calls[0]  # the others pass through bit for bit


def test_brightness_shifts_the_mean_and_keeps_differences():
    x = images(batch=16)
    out = only("brightness")(x, generator=seeded())
    shift = out - x
    per_sample = shift.flatten(1)
    assert (per_sample.amax(dim=1) - per_sample.amin(dim=1) < 1e-5).all()  # one offset per image
    assert (per_sample[:, 0].abs() > 0).all()
    assert torch.allclose(out.flatten(1).mean(1) - x.flatten(1).mean(1), per_sample[:, 0], atol=1e-5)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_channel_counts_keep_their_shape(channels):
    x = images(batch=4, channels=channels, size=8, width=12)
    out = AugmentPipe(p=1.0)(x, generator=seeded())
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_rgba_alpha_is_moved_by_geometry_but_never_recoloured():
    x = images(batch=8, channels=4)
    colour_only = AugmentPipe.from_spec("c", p=1.0)(x, generator=seeded())
    assert torch.equal(colour_only[:, 3], x[:, 3])
    assert not torch.allclose(colour_only[:, :3], x[:, :3])
    # geometry is drawn before colour, so with the same seed the full pipe warps alpha exactly as 'bg' does
    full = AugmentPipe.from_spec("bgc", p=1.0)(x, generator=seeded())
    geometry_only = AugmentPipe.from_spec("bg", p=1.0)(x, generator=seeded())
    assert torch.equal(full[:, 3], geometry_only[:, 3])
    assert not torch.equal(full[:, 3], x[:, 3])


def test_grey_images_get_only_brightness_and_contrast():
    x = images(batch=8, channels=1)
    assert torch.equal(only("lumaflip", "hue", "saturation")(x, generator=seeded()), x)
    out = only("brightness", "contrast")(x, generator=seeded())
    # an affine map of the one channel per image: out = a * x + b
    for i in range(8):
        a = (out[i] - out[i].mean()).flatten() @ (x[i] - x[i].mean()).flatten() / (x[i] - x[i].mean()).square().sum()
        assert torch.allclose(out[i], a * x[i] + (out[i].mean() - a * x[i].mean()), atol=1e-5)


def test_hue_and_lumaflip_act_around_the_luma_axis():
    grey = torch.tensor([1.0, 1.0, 1.0]) / math.sqrt(3)
    _, hue = only("hue").sample_transforms((256, 3, 8, 8), seeded())
    rotation = hue[:, :3, :3]
    assert torch.allclose(rotation @ grey, grey.expand(256, 3), atol=1e-6)
    assert torch.allclose(rotation @ rotation.transpose(1, 2), torch.eye(3).expand(256, 3, 3), atol=1e-5)
    _, flip = only("lumaflip").sample_transforms((256, 3, 8, 8), seeded())
    image_of_grey = flip[:, :3, :3] @ grey
    flipped = torch.allclose(image_of_grey, -grey.expand(256, 3), atol=1e-6)
    is_flipped = (image_of_grey + grey).abs().amax(dim=1) < 1e-6
    assert not flipped and 0.4 < is_flipped.float().mean() < 0.6


N = 20000


@pytest.mark.parametrize("name, read, expected", [
    ("scale", lambda G, C: torch.log(G[:, 0, 0]), 0.2 * math.log(2)),
    ("aniso", lambda G, C: torch.log(G[:, 0, 0]), 0.2 * math.log(2)),
    ("xfrac", lambda G, C: G[:, 0, 2] / 16, 0.125),
    ("brightness", lambda G, C: C[:, 0, 3], 0.2),
    ("contrast", lambda G, C: torch.log(C[:, 0, 0]), 0.5 * math.log(2)),
    ("saturation", lambda G, C: torch.log((C[:, 0, 0] - 1 / 3) * 1.5), 1.0 * math.log(2)),
])
def test_parameter_spread_matches_the_paper(name, read, expected):
    G, C = only(name).sample_transforms((N, 3, 16, 16), seeded())
    values = read(G, C)
    assert abs(values.mean()) < 0.05 * expected
    assert values.std().item() == pytest.approx(expected, rel=0.03)


def test_aniso_scales_x_and_y_inversely_and_scale_is_isotropic():
    G, _ = only("aniso").sample_transforms((64, 3, 16, 16), seeded())
    assert torch.allclose(G[:, 0, 0] * G[:, 1, 1], torch.ones(64), atol=1e-5)
    G, _ = only("scale").sample_transforms((64, 3, 16, 16), seeded())
    assert torch.equal(G[:, 0, 0], G[:, 1, 1]) and (G[:, 0, 0] != 1).all()


def test_probabilities_follow_p_and_the_multiplier():
    p = 0.5
    moved = lambda G: (G != torch.eye(3)).flatten(1).any(dim=1).float().mean().item()  # noqa: E731
    G, _ = only("rotate", p=p).sample_transforms((N, 3, 16, 16), seeded())
    assert moved(G) == pytest.approx(p, abs=0.02)  # two rotations of 1 - sqrt(1 - p) each: any = p
    angle = torch.atan2(G[:, 1, 0], G[:, 0, 0])
    assert angle.abs().max() > 0.99 * math.pi
    G, _ = only("xflip", p=p).sample_transforms((N, 3, 16, 16), seeded())
    assert moved(G) == pytest.approx(p / 2, abs=0.02)  # chosen with p, then a coin
    G, _ = only("scale", p=p, scale=0.5).sample_transforms((N, 3, 16, 16), seeded())
    assert moved(G) == pytest.approx(p * 0.5, abs=0.02)
    G, _ = only("xint", p=1.0).sample_transforms((N, 3, 16, 16), seeded())
    assert torch.equal(G[:, :2, 2], G[:, :2, 2].round()) and G[:, :2, 2].abs().max() == 2


def test_presets_and_bad_input():
    assert AugmentPipe.from_spec("bgc").multipliers == AugmentPipe().multipliers
    bg = AugmentPipe.from_spec("bg")
    assert all(bg.multipliers[n] == 0 for n in COLOUR) and all(bg.multipliers[n] == 1 for n in GEOMETRIC)
    with pytest.raises(AugmentError, match="use letters from 'bgc'"):
        AugmentPipe.from_spec("bgx")
    assert issubclass(AugmentError, GanforgeError)
    with pytest.raises(AugmentError, match="1 .grey., 3 .RGB. or 4"):
        AugmentPipe(p=0.5)(torch.zeros(2, 2, 8, 8))
    with pytest.raises(ValueError, match="B, C, H, W"):
        AugmentPipe(p=0.5)(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="p must be"):
        AugmentPipe(p=1.5)
    with pytest.raises(ValueError, match="hue must be"):
        AugmentPipe(hue=-1)


def test_p_is_a_float32_buffer_in_the_state_dict():
    pipe = AugmentPipe(p=0.25)
    state = pipe.state_dict()
    assert state["p"].dtype == torch.float32 and state["p"].shape == ()
    other = AugmentPipe()
    other.load_state_dict(state)
    assert float(other.p) == 0.25


# --- the controller -------------------------------------------------------------------------------------

def run(controller: AdaController, steps: int, sign: float, batch: int = 64) -> list:
    results = []
    for _ in range(steps):
        controller.accumulate(torch.tensor(sign * batch), batch)
        results.append(controller.step(batch))
    return results


def test_p_rises_against_a_d_that_always_says_real_by_the_exact_step():
    controller = AdaController(AugmentPipe(), target=0.6, interval=4, speed_kimg=500)
    results = run(controller, 40, +1.0)
    assert results[:3] == [None, None, None]
    reports = [r for r in results if r is not None]
    assert len(reports) == 10 and all(r["r_t"] == 1.0 for r in reports)
    step = 64 * 4 / 500_000
    assert [r["ada_p"] for r in reports] == pytest.approx([step * (n + 1) for n in range(10)], abs=1e-7)


def test_p_falls_to_zero_and_stays_against_a_d_that_always_says_fake():
    pipe = AugmentPipe(p=0.002)
    controller = AdaController(pipe, interval=4)
    reports = [r for r in run(controller, 40, -1.0) if r is not None]
    assert reports[0]["ada_p"] == pytest.approx(0.002 - 64 * 4 / 500_000, abs=1e-7)
    assert reports[-1]["ada_p"] == 0.0 and float(pipe.p) == 0.0


def test_p_is_clamped_at_one():
    controller = AdaController(AugmentPipe(p=0.9999), interval=1)
    run(controller, 3, +1.0)
    assert controller.p == 1.0


def test_fixed_p_never_moves_but_reports_r_t():
    controller = AdaController(AugmentPipe(p=0.3), target=None, interval=2)
    reports = [r for r in run(controller, 10, +1.0) if r is not None]
    assert len(reports) == 5 and all(r == {"ada_p": pytest.approx(0.3), "r_t": 1.0} for r in reports)


def test_mixed_signs_give_their_mean_as_r_t():
    controller = AdaController(AugmentPipe(), interval=2)
    controller.accumulate(torch.tensor(10.0), 16)
    assert controller.step(16) is None
    controller.accumulate(torch.tensor(-2.0), 16)
    assert controller.step(16)["r_t"] == pytest.approx(8 / 32)


def test_resume_mid_interval_continues_exactly():
    signs = [1, 1, -1, 1, 1, 1, -1, -1, 1, 1, 1, 1, 1, -1, 1, 1, 1, 1, 1, 1]
    whole = AdaController(AugmentPipe(p=0.1), interval=4, speed_kimg=1)
    first = AdaController(AugmentPipe(p=0.1), interval=4, speed_kimg=1)

    def feed(controller, sign):
        controller.accumulate(torch.tensor(float(sign * 7)), 8)
        return controller.step(8)

    expected = [feed(whole, s) for s in signs]
    got = [feed(first, s) for s in signs[:6]]  # stop two steps into an interval
    state = first.state_dict()
    assert state["count"] == 16 and state["steps"] == 6
    resumed = AdaController(AugmentPipe(), interval=4, speed_kimg=1)
    resumed.load_state_dict(state)
    got += [feed(resumed, s) for s in signs[6:]]
    assert got == expected
    assert resumed.state_dict() == whole.state_dict()
    with pytest.raises(ValueError, match="exactly the keys"):
        resumed.load_state_dict({"p": 0.5})


def test_all_reduce_is_called_and_its_sum_is_used():
    seen = []

    def three_fake_peers(totals):  # this process says "real"; three others each said "fake" on as many logits
        seen.append(totals.clone())
        sign_sum, count = totals
        return torch.stack([sign_sum - 3 * count, 4 * count])

    controller = AdaController(AugmentPipe(p=0.5), interval=2)
    run(controller, 1, +1.0, batch=8)
    controller.accumulate(torch.tensor(8.0), 8)
    report = controller.step(32, all_reduce=three_fake_peers)
    assert len(seen) == 1 and seen[0].tolist() == [16.0, 16.0]
    assert report["r_t"] == pytest.approx(-0.5)
    assert report["ada_p"] == pytest.approx(0.5 - 32 * 2 / 500_000, abs=1e-7)


def test_all_reduce_in_place_like_torch_distributed():
    def doubled_in_place(totals):  # two identical processes; returns None as dist.all_reduce does
        totals.mul_(2)

    controller = AdaController(AugmentPipe(), interval=1)
    controller.accumulate(torch.tensor(-4.0), 8)
    report = controller.step(16, all_reduce=doubled_in_place)
    assert report["r_t"] == pytest.approx(-0.5)


def test_an_interval_without_signs_is_an_error_not_a_silent_freeze():
    controller = AdaController(AugmentPipe(), interval=1)
    with pytest.raises(ValueError, match="call accumulate"):
        controller.step(16)
    with pytest.raises(ValueError, match="target"):
        AdaController(AugmentPipe(), target=1.5)
