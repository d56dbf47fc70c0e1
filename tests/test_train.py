"""Training: every objective steps, resume is exact, signals save, NaNs roll back, export round-trips."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ganforge.data.prepare import prepare_dataset
from ganforge.export import ExportError, load_generator
from ganforge.files import file_sha256
from ganforge.train import checkpoint as ckpt
from ganforge.train.config import ConfigError, build_config
from ganforge.train.loop import Trainer, TrainingError
from ganforge.train.rundir import read_log
from ganforge.api import train_gan

TINY = {"model.g_width": 8, "model.d_width": 8, "model.z_dim": 16, "batch_size": 16,
        "tick_kimg": 0.032, "grid_size": 10, "precision": "fp32", "ema_kimg": 0.1}


@pytest.fixture(scope="module")
def ring(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "ring8"
    prepare_dataset("ring8", out, count=4096, progress=False)
    return out


def make_trainer(data, run_dir, **overrides) -> Trainer:
    config = build_config(str(data), "dcgan-small", {**TINY, **overrides})
    run_dir.mkdir(parents=True, exist_ok=True)
    return Trainer(config, run_dir, progress=False)


def losses(run_dir: Path) -> list[tuple]:
    return [(r["images_seen"], r.get("loss_D"), r.get("loss_G"), r.get("R1"))
            for r in read_log(run_dir) if "loss_D" in r]


@pytest.mark.parametrize("overrides", [
    {"loss": "nonsaturating"},
    {"loss": "minimax"},
    {"loss": "hinge"},
    {"loss": "wgan-gp", "d_steps": 2},
    {"loss": "lsgan"},
    {"r1_gamma": 1.0, "r1_every": 2},
    {"model.conditioning": "acgan"},
    {"conditional": "no", "model.spectral_norm": True, "augment": "color,translation,cutout", "flip": True},
    {"precision": "bf16"},
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_two_steps_with_each_objective(digits, tmp_path, overrides):
    trainer = make_trainer(digits, tmp_path / "run", kimg=0.032, **overrides)
    before = [p.detach().clone() for p in trainer.G.parameters()]
    assert trainer.run() == "budget"
    assert trainer.images_seen >= 32
    records = losses(tmp_path / "run")
    assert records and all(v is None or torch.isfinite(torch.tensor(v)) for r in records for v in r[1:])
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.G.parameters(), strict=True))
    assert ckpt.list_checkpoints(tmp_path / "run" / "checkpoints")


def test_minimax_generator_loss_is_log_one_minus_d(digits, tmp_path):
    """Goodfellow et al. (2014) as written: G minimises E log(1 - D(G(z))), which is <= 0."""
    trainer = make_trainer(digits, tmp_path / "run", kimg=0.064, loss="minimax")
    trainer.run()
    assert all(r[2] <= 0 for r in losses(tmp_path / "run"))


def test_run_directory_holds_what_a_user_reads(digits, tmp_path):
    trainer = make_trainer(digits, tmp_path / "run", kimg=0.096)
    trainer.run()
    run = tmp_path / "run"
    for name in ("config.yaml", "log.jsonl", "reals.png", "progress.gif", "losses.png"):
        assert (run / name).exists(), name
    assert len(list((run / "grids").glob("grid-*.png"))) == 4  # the start and three ticks
    assert list(run.glob("events.out.tfevents.*"))  # TensorBoard scalars
    assert len(ckpt.list_checkpoints(run / "checkpoints")) == 3  # keep_checkpoints


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(digits, tmp_path):
    settings = {"augment": "color,translation,cutout", "flip": True, "r1_gamma": 1.0, "r1_every": 2}
    straight = make_trainer(digits, tmp_path / "straight", kimg=0.16, **settings)
    straight.run()
    first = make_trainer(digits, tmp_path / "stopped", kimg=0.064, **settings)
    first.run()
    result = train_gan(resume=tmp_path / "stopped", overrides={"kimg": 0.16}, progress=False)
    assert result.images_seen == straight.images_seen
    assert losses(tmp_path / "stopped") == losses(tmp_path / "straight")
    resumed = ckpt.latest_loadable(tmp_path / "stopped" / "checkpoints")[1]
    for key, value in straight.G.state_dict().items():
        assert torch.equal(resumed["networks"]["G"][key], value), key
    for key, value in straight.ema.state_dict().items():  # batch-norm statistics included
        assert torch.equal(resumed["G_ema"][key], value), f"G_ema.{key}"
    grids = sorted(p.name for p in (tmp_path / "straight" / "grids").iterdir())
    assert grids == sorted(p.name for p in (tmp_path / "stopped" / "grids").iterdir())


def test_lr_ramp_down_falls_linearly_to_zero_over_the_end_of_the_budget(digits, tmp_path):
    trainer = make_trainer(digits, tmp_path / "run", kimg=0.16, lr_ramp_down=0.5, lr_g=1e-3, lr_d=2e-3)
    for seen, factor in ((0, 1.0), (80, 1.0), (120, 0.5), (144, 0.2), (160, 0.0)):
        trainer.images_seen = seen
        assert trainer.lr_factor() == pytest.approx(factor)
    trainer.images_seen = 0
    trainer.run()
    # the last step started at 144 of 160 images: 0.2 of each base rate
    assert trainer.optimizers["G"].param_groups[0]["lr"] == pytest.approx(0.2e-3)
    assert trainer.optimizers["D"].param_groups[0]["lr"] == pytest.approx(0.4e-3)
    with pytest.raises(ConfigError, match="lr_ramp_down"):
        build_config(str(digits), None, {"lr_ramp_down": 2})


def test_resume_refuses_to_change_the_run(digits, tmp_path):
    make_trainer(digits, tmp_path / "run", kimg=0.032).run()
    with pytest.raises(ConfigError, match="loss cannot change"):
        train_gan(resume=tmp_path / "run", overrides={"loss": "hinge"}, progress=False)


def test_injected_nan_rolls_back_and_training_goes_on(digits, tmp_path):
    trainer = make_trainer(digits, tmp_path / "run", kimg=0.128)
    trainer.inject_nan_at_steps = {3}
    assert trainer.run() == "budget"
    events = [r for r in read_log(tmp_path / "run") if r.get("event") == "rollback"]
    assert len(events) == 1 and "rolled back" in events[0]["message"]
    assert trainer.images_seen >= 128 and trainer.rollbacks == 1
    assert all(torch.isfinite(p).all() for p in trainer.G.parameters())


def test_repeated_nans_stop_with_advice(digits, tmp_path):
    trainer = make_trainer(digits, tmp_path / "run", kimg=1, max_rollbacks=2)
    trainer.inject_nan_at_steps = set(range(1, 1000))
    with pytest.raises(TrainingError, match="lower learning rates"):
        trainer.run()


def run_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ganforge", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for_ticks(run_dir_parent: Path, ticks: int, timeout: float = 60) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        runs = list(run_dir_parent.glob("0*"))
        if runs and len(read_log(runs[0])) >= ticks:
            return runs[0]
        time.sleep(0.2)
    raise AssertionError("training did not reach its ticks in time")


def cli_training_args(data: Path) -> list[str]:
    return ["train", str(data), "--preset", "dcgan-small", "-q", "minutes=5", "runs_dir=runs",
            *[f"{k}={v}" for k, v in TINY.items()]]


def test_sigterm_saves_a_checkpoint_and_exits(digits, tmp_path):
    process = run_cli(cli_training_args(digits), tmp_path)
    run = wait_for_ticks(tmp_path / "runs", 2)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 143, output  # unfinished: `train && export` must not go on
    assert "Stopped by SIGTERM" in output and "ganforge train --resume" in output
    path, state = ckpt.latest_loadable(run / "checkpoints")
    assert state["images_seen"] == read_log(run)[-1]["images_seen"]  # saved at the stop, not a tick ago
    result = train_gan(resume=run, overrides={"kimg": state["images_seen"] / 1000 + 0.032}, progress=False)
    assert result.stopped_by == "budget" and result.images_seen > state["images_seen"]


def test_kill_9_leaves_a_loadable_latest_checkpoint(digits, tmp_path):
    process = run_cli(cli_training_args(digits), tmp_path)
    run = wait_for_ticks(tmp_path / "runs", 3)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    path, state = ckpt.latest_loadable(run / "checkpoints")
    assert path == ckpt.list_checkpoints(run / "checkpoints")[-1]
    assert state["images_seen"] > 0


def test_export_round_trip_gives_identical_images(digits, tmp_path):
    trainer = make_trainer(digits, tmp_path / "run", kimg=0.064)
    trainer.run()
    from ganforge.export import export_generator

    folder = export_generator(tmp_path / "run")
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "dcgan" and config["classes"] == [str(d) for d in range(10)]
    generator = load_generator(folder)
    z, labels = torch.randn(6, generator.z_dim), torch.tensor([0, 1, 2, 7, 8, 9])
    with torch.no_grad():
        expected = trainer.ema.module(z, labels)
        got = generator(z, labels)
    assert got.shape == (6, 1, 16, 16)
    assert torch.equal(got, expected)


def test_loading_refuses_a_pickle_renamed_to_safetensors(digits, tmp_path):
    make_trainer(digits, tmp_path / "run", kimg=0.032).run()
    from ganforge.export import export_generator

    folder = export_generator(tmp_path / "run")
    torch.save({"weights": torch.zeros(3)}, folder / "model.safetensors")  # a pickle in disguise
    with pytest.raises(ExportError, match="damaged or was replaced"):
        load_generator(folder)
    config = json.loads((folder / "config.json").read_text())
    config["files"]["model.safetensors"] = file_sha256(folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(config))  # even with its checksum recorded, it is not loaded
    with pytest.raises(ExportError, match="not a valid safetensors file"):
        load_generator(folder)


def test_points_train_with_the_mlp_preset(ring, tmp_path):
    result = train_gan(ring, overrides={"kimg": 2.048, "tick_kimg": 1.024, "runs_dir": str(tmp_path / "runs")},
                       progress=False)
    assert result.config.model["name"] == "mlp"
    assert (result.run_dir / "grids" / "grid-0000002.048kimg.png").exists()


def test_config_errors_say_what_to_do(digits, tmp_path):
    with pytest.raises(ConfigError, match="Did you mean 'batch_size'"):
        build_config(str(digits), None, {"batchsize": 8})
    with pytest.raises(ConfigError, match="loss must be one of"):
        build_config(str(digits), None, {"loss": "magic"})
    with pytest.raises(ConfigError, match="Unknown preset"):
        build_config(str(digits), "nope")
    with pytest.raises(ValueError, match="unknown_field"):
        make_trainer(digits, tmp_path / "run", **{"model.unknown_field": 3})
