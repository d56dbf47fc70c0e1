"""Hostile use of train, export and the run folder: each case a user hit, with the clear answer it now gets.

Exported files and checkpoints carry digests, export never overwrites a user's files, a run folder has
one trainer at a time, logs with bad lines are read around them, numbers are read as people write them,
a diverged or dead generator is named, mistakes leave no empty run folder, resume forgets the rows a
killed run wrote after its checkpoint, and deterministic=true makes a resumed run bit-identical.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from ganforge.cli import explain_failure, main
from ganforge.errors import GanforgeError
from ganforge.data.prepare import prepare_dataset
from ganforge.export import ExportError, export_generator, load_generator
from ganforge.files import DiskFullError, file_sha256
from ganforge.metrics.compare import compare_runs
from ganforge.metrics.health import diagnose
from ganforge.train import checkpoint as ckpt
from ganforge.train.config import ConfigError, build_config, parse_overrides
from ganforge.train.loop import Trainer, TrainingError
from ganforge.train.rundir import RunLock, RunLockedError, new_run_dir, read_log
from ganforge.api import train_gan

TINY = {"model.g_width": 8, "model.d_width": 8, "model.z_dim": 16, "batch_size": 16,
        "tick_kimg": 0.032, "grid_size": 10, "precision": "fp32", "ema_kimg": 0.1, "eval_minutes": 0}


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory) -> Path:
    """A finished tiny run (three checkpoints), shared by the tests that only read it."""
    runs = tmp_path_factory.mktemp("runs")
    return train_gan(digits, preset="dcgan-small", overrides={**TINY, "kimg": 0.096, "runs_dir": str(runs)},
                     progress=False).run_dir


def damage(path: Path) -> None:
    """Overwrite 4 KB in the middle of a file, as a failing disk or a bad copy would."""
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.seek(size // 2)
        handle.write(os.urandom(4096))


# --- export ---------------------------------------------------------------------------------------


def test_export_refuses_a_folder_holding_the_users_files_and_leaves_them_untouched(trained, tmp_path, capsys):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "README.md").write_text("my notes")
    (target / "config.json").write_text('{"my": "settings"}')
    assert main(["export", str(trained), "--out", str(target)]) == 2
    assert "ganforge did not write" in capsys.readouterr().err
    assert (target / "README.md").read_text() == "my notes"
    assert (target / "config.json").read_text() == '{"my": "settings"}'
    assert sorted(p.name for p in target.iterdir()) == ["README.md", "config.json"]


def test_export_again_over_its_own_export_but_not_over_an_edited_model_card(trained, tmp_path):
    target = export_generator(trained, tmp_path / "gen")
    export_generator(trained, target)  # the same folder again: its own files, untouched since
    (target / "model.safetensors.tmp").write_bytes(b"left by a killed export")
    export_generator(trained, target)
    assert not (target / "model.safetensors.tmp").exists()
    (target / "README.md").write_text("# My model\nedited by hand\n")
    with pytest.raises(ExportError, match="changed after it was exported"):
        export_generator(trained, target)
    assert "edited by hand" in (target / "README.md").read_text()


def test_exported_files_are_readable_by_others(trained, tmp_path):
    old = os.umask(0o022)
    try:
        target = export_generator(trained, tmp_path / "gen")
    finally:
        os.umask(old)
    for name in ("model.safetensors", "config.json", "README.md"):
        assert stat.S_IMODE((target / name).stat().st_mode) == 0o644, name


def test_damaged_weights_are_refused_by_name(trained, tmp_path, capsys):
    target = export_generator(trained, tmp_path / "gen")
    config = json.loads((target / "config.json").read_text())
    assert config["files"]["model.safetensors"] == file_sha256(target / "model.safetensors")
    damage(target / "model.safetensors")
    with pytest.raises(ExportError, match="model.safetensors is damaged"):
        load_generator(target)
    assert main(["sample", str(target), "--count", "4", "--out", str(tmp_path / "samples")]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors is damaged" in err and "Traceback" not in err
    assert not list((tmp_path / "samples").glob("*.png")) if (tmp_path / "samples").exists() else True


def test_a_damaged_checkpoint_is_refused_and_resume_uses_the_one_before(trained, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    newest = ckpt.list_checkpoints(run / "checkpoints")[-1]
    damage(newest)
    with pytest.raises(ckpt.CheckpointError, match="damaged"):
        ckpt.load_checkpoint(newest)
    path, state = ckpt.latest_loadable(run / "checkpoints")
    assert path == ckpt.list_checkpoints(run / "checkpoints")[-2]
    assert all(torch.isfinite(v).all() for v in state["networks"]["G"].values() if v.is_floating_point())


def test_a_full_disk_while_saving_a_checkpoint_is_a_sentence_and_leaves_no_tmp(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    target = ckpt.checkpoint_path(folder, 64)
    (folder / (target.name + ".tmp")).symlink_to("/dev/full")  # every write fails with ENOSPC, as on a full disk
    with pytest.raises(DiskFullError, match="is full"):
        ckpt.save_checkpoint({"G": {"w": torch.zeros(100_000)}}, folder, 64, keep=3)
    assert not target.exists() and not os.path.lexists(folder / (target.name + ".tmp"))


def test_os_errors_become_one_sentence_with_what_to_do():
    message, status = explain_failure(OSError(errno.ENOSPC, "No space left on device", "/tmp/x/file.npy"))
    assert status == 1 and "is full" in message and "run the same command again" in message
    message, status = explain_failure(OSError("1000 requested and 24 written"))  # numpy's short write
    assert "is full" in message
    message, status = explain_failure(PermissionError(errno.EACCES, "Permission denied", "/srv/out"))
    assert status == 1 and "/srv/out" in message and "write to" in message
    message, status = explain_failure(ZeroDivisionError("division by zero"))
    assert status == 1 and "bug in ganforge" in message and "--debug" in message


# --- one trainer per run -------------------------------------------------------------------------------


def test_a_run_in_use_is_refused_naming_its_holder_and_a_stale_lock_is_taken(trained, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    holder = RunLock(run).acquire()
    try:
        with pytest.raises(RunLockedError, match=f"ganforge PID {os.getpid()}"):
            train_gan(resume=run, overrides={"kimg": 0.128}, progress=False)
    finally:
        holder.release()
    (run / ".lock").write_text("ganforge PID 999999 on elsewhere since long ago\n")  # its process is gone
    result = train_gan(resume=run, overrides={"kimg": 0.128}, progress=False)
    assert result.images_seen == 128


def test_runs_started_at_the_same_instant_get_different_numbers(tmp_path):
    made, errors = [], []
    start = threading.Barrier(8)

    def one(i: int) -> None:
        start.wait()
        try:
            made.append(new_run_dir(tmp_path / "runs", f"run{i}"))
        except Exception as exc:  # noqa: BLE001 - the test reports any failure
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(p.name[:5] for p in made) == [f"{i:05d}" for i in range(8)]


def _cli(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ganforge", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_second_trainer_on_a_running_run_is_refused_and_ctrl_c_exits_130(digits, tmp_path):
    first = _cli(["train", str(digits), "--preset", "dcgan-small", "-q", "minutes=5", "runs_dir=runs",
                  *[f"{k}={v}" for k, v in TINY.items()]], tmp_path)
    deadline = time.time() + 60
    while time.time() < deadline and not (list((tmp_path / "runs").glob("0*/checkpoints/checkpoint-*.pt"))):
        time.sleep(0.2)
    run = next((tmp_path / "runs").glob("0*"))
    second = subprocess.run([sys.executable, "-m", "ganforge", "train", "--resume", str(run)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    first.send_signal(signal.SIGINT)
    output, _ = first.communicate(timeout=60)
    assert second.returncode == 2 and f"ganforge PID {first.pid}" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr
    assert first.returncode == 130, output
    assert "Stopped by SIGINT" in output and "--resume" in output
    seen = [r["images_seen"] for r in read_log(run) if "loss_D" in r]
    assert seen == sorted(set(seen))  # one writer: no duplicated rows


# --- logs with bad lines -------------------------------------------------------------------------------


def test_health_and_compare_read_around_malformed_log_lines(trained, tmp_path, capsys):
    import shutil

    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(trained, a)
    shutil.copytree(trained, b)
    for run in (a, b):
        (run / "metrics.jsonl").write_text("".join(
            json.dumps({"images_seen": s, "source": "eval", "metrics": {"kid500": k}}) + "\n"
            for s, k in ((32, 0.3), (64, 0.2))))
    with open(a / "log.jsonl", "a") as log:
        log.write("null\n")
        log.write(json.dumps({"tick": 9, "images_seen": 999, "loss_D": "text", "loss_G": 1.0}) + "\n")
        log.write("[1, 2]\n{cut by a crash\n")
    with open(a / "metrics.jsonl", "a") as metrics:
        metrics.write("null\n" + json.dumps({"images_seen": 96, "metrics": {"kid500": "bad"}}) + "\n")
    capsys.readouterr()
    assert main(["health", str(a)]) == 0
    err = capsys.readouterr().err
    assert "skipped 4 malformed line(s)" in err and "line" in err
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "c.png")]) == 0
    out, err = capsys.readouterr()
    assert "skipped 2 malformed line(s)" in err and "| a | 0.2 (0.1) |" in out
    table, _ = compare_runs([a, b], tmp_path / "c2.png")
    assert "| b | 0.2 (0.1) |" in table


# --- settings ------------------------------------------------------------------------------------------


def test_numbers_are_read_as_people_write_them(digits):
    config = build_config(str(digits), None, parse_overrides(["lr_g=2e-4", "lr_d=1E-3", "kimg=1_000", "batch_size=32.0"]))
    assert (config.lr_g, config.lr_d, config.kimg, config.batch_size) == (2e-4, 1e-3, 1000.0, 32)
    assert isinstance(config.batch_size, int)


@pytest.mark.parametrize("override, message", [
    ("lr_g=1000000000.0", "outside \\(0, 1\\]"),
    ("lr_d=-1e-4", "outside \\(0, 1\\]"),
    ("beta1=1.5", "beta1 must be in"),
    ("kimg=.inf", "finite"),
    ("seed=-3", "cannot be negative"),
    ("batch_size=abc", "whole number"),
    ("device=gpu", "device must be"),
    ("grid_size=100000", "at most 1024"),
])
def test_settings_outside_sane_ranges_are_refused(digits, override, message):
    with pytest.raises(ConfigError, match=message):
        build_config(str(digits), None, parse_overrides([override]))


def test_an_unusual_learning_rate_is_warned_about(digits, capsys):
    build_config(str(digits), None, {"lr_g": 0.5})
    assert "lr_g=0.5 is far above" in capsys.readouterr().err


def test_mistakes_leave_no_empty_run_folder(digits, tmp_path, capsys):
    runs = tmp_path / "runs"
    base = ["train", str(digits), "--preset", "dcgan-small", "-q", f"runs_dir={runs}"]
    assert main([*base, "batch_size=100000"]) == 2
    assert "larger than the dataset" in capsys.readouterr().err
    assert main([*base, "model.g_width=0"]) == 2
    assert "g_width" in capsys.readouterr().err
    assert not runs.exists() or not list(runs.glob("0*"))


# --- health sees a diverged or dead generator -----------------------------------------------------------


def _run_with_ticks(folder: Path, ticks: list[dict], **config) -> Path:
    folder.mkdir(parents=True)
    rows = [{"tick": i, "images_seen": 1000 * (i + 1), **t} for i, t in enumerate(ticks)]
    (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "config.yaml").write_text("".join(f"{k}: {v}\n" for k, v in config.items()))
    return folder


HEALTHY = {"loss_D": 1.2, "loss_G": 0.9, "D_accuracy": 0.65, "r_t": 0.2, "grad_G": 3.0, "G_spread": 0.4, "G_saturated": 0.05}


def test_health_names_a_diverged_run(tmp_path):
    ticks = [HEALTHY] * 4 + [{**HEALTHY, "loss_D": 3e20, "loss_G": 1e21}] * 12
    diagnosis = diagnose(_run_with_ticks(tmp_path / "run", ticks, lr_g=1e9, lr_d=2e-4, loss="nonsaturating"))
    assert diagnosis.verdict == "change"
    diverged = next(f for f in diagnosis.findings if f.title == "Training has diverged")
    assert "lr_g=1e+09" in diverged.detail
    healthy = diagnose(_run_with_ticks(tmp_path / "fine", [HEALTHY] * 16, loss="nonsaturating"))
    assert "Training has diverged" not in {f.title for f in healthy.findings}


@pytest.mark.parametrize("dead", [{"G_spread": 0.0005}, {"G_saturated": 0.99}])
def test_health_names_a_dead_generator(tmp_path, dead):
    diagnosis = diagnose(_run_with_ticks(tmp_path / "run", [HEALTHY] * 4 + [{**HEALTHY, **dead}] * 12))
    assert diagnosis.verdict == "change"
    assert "The generator is dead" in {f.title for f in diagnosis.findings}


def test_training_logs_the_spread_of_its_samples(trained):
    ticks = [r for r in read_log(trained) if "loss_D" in r]
    assert ticks and all(0 < r["G_spread"] and 0 <= r["G_saturated"] <= 1 for r in ticks)


# --- resume ----------------------------------------------------------------------------------------------


def test_resume_forgets_what_a_killed_run_logged_after_its_checkpoint(trained, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    last = ckpt.latest_loadable(run / "checkpoints")[1]["images_seen"]
    with open(run / "log.jsonl", "a") as log:  # a tick logged, then killed before its checkpoint was renamed
        log.write(json.dumps({"tick": 99, "images_seen": last + 32, "loss_D": 1.0, "loss_G": 1.0}) + "\n")
        log.write('{"tick": 100, "images_se')  # and a line cut by the kill
    with open(run / "metrics.jsonl", "a") as metrics:
        metrics.write(json.dumps({"images_seen": last + 32, "source": "training", "metrics": {"kid16": 0.5}}) + "\n")
        metrics.write(json.dumps({"images_seen": last, "source": "eval", "metrics": {"fid16": 9.0}}) + "\n")
    train_gan(resume=run, overrides={"kimg": (last + 64) / 1000}, progress=False)
    seen = [r["images_seen"] for r in read_log(run) if "loss_D" in r]
    assert seen == sorted(set(seen)) and seen[-1] == last + 64
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["metrics"] for x in lines] == [{"fid16": 9.0}]  # a user's eval is kept


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_deterministic_resume_is_bit_identical_where_kernels_use_threads(digits, tmp_path, restore_threads):
    """A conditional G 512 channels wide at its first map, batches of 64, on 2 threads: the backward pass of
    its per-class gain and bias (an accumulating gather) splits its sums among the threads, and two
    identical steps were measured to differ in their last bits. deterministic=true must make a stopped and
    resumed run equal to an uninterrupted one, bit for bit."""
    torch.set_num_threads(2)
    settings = {**TINY, "model.g_width": 64, "model.d_width": 8, "batch_size": 64, "tick_kimg": 0.128,
                "deterministic": True}

    def trainer(name: str, kimg: float) -> Trainer:
        (tmp_path / name).mkdir()
        return Trainer(build_config(str(digits), "dcgan-small", {**settings, "kimg": kimg}), tmp_path / name,
                       progress=False)

    straight = trainer("straight", 0.512)
    assert straight.conditional
    straight.run()
    assert torch.get_num_threads() == 2  # the process's own setting is back after training
    trainer("stopped", 0.256).run()
    train_gan(resume=tmp_path / "stopped", overrides={"kimg": 0.512}, progress=False)
    resumed = ckpt.latest_loadable(tmp_path / "stopped" / "checkpoints")[1]
    assert resumed["images_seen"] == straight.images_seen
    for key, value in straight.G.state_dict().items():
        assert torch.equal(resumed["networks"]["G"][key], value), key
    for key, value in straight.D.state_dict().items():
        assert torch.equal(resumed["networks"]["D"][key], value), key


def test_trainer_refuses_a_batch_larger_than_the_dataset(digits, tmp_path):
    with pytest.raises(TrainingError, match="batch_size=4096 is larger than the dataset"):
        Trainer(build_config(str(digits), "dcgan-small", {**TINY, "batch_size": 4096}), None, progress=False)


def test_a_full_disk_while_training_says_how_to_continue(trained, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    last = ckpt.latest_loadable(run / "checkpoints")[1]["images_seen"]
    next_tmp = run / "checkpoints" / f"{ckpt.checkpoint_path(run, last + 32).name}.tmp"
    next_tmp.symlink_to("/dev/full")  # the next checkpoint's write fails with ENOSPC
    with pytest.raises(TrainingError, match=f"is full.*intact.*ganforge train --resume {run}"):
        train_gan(resume=run, overrides={"kimg": (last + 64) / 1000}, progress=False)
    assert not os.path.lexists(next_tmp)
    assert ckpt.latest_loadable(run / "checkpoints")[1]["images_seen"] == last


@pytest.fixture(scope="module")
def ring(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "ring8"
    prepare_dataset("ring8", out, count=512, progress=False)
    return out


@pytest.mark.parametrize("args, message", [
    (["{digits}", "--preset", "points"], "holds images, and model mlp makes 2-D points"),
    (["{ring}", "--preset", "dcgan"], "is a set of 2-D points, and model dcgan makes images"),
    (["{digits}", "kimg=1", "kimg=2"], "kimg is given twice"),
    (["{digits}", "tick_kimg=0.00001"], "tick_kimg must be at least 0.001"),
    (["{digits}", "runs_dir=/proc/ganforge-test/runs"], "Cannot make the runs folder"),
    (["{digits}", "--preset", "{bad_yaml}"], "is not valid YAML"),
    (["--resume", "{digits}"], "is not a ganforge run"),
])
def test_train_mistakes_are_one_sentence(digits, ring, tmp_path, capsys, args, message):
    bad_yaml = tmp_path / "mine.yaml"
    bad_yaml.write_text("loss: [hinge\n")
    filled = [a.format(digits=digits, ring=ring, bad_yaml=bad_yaml) for a in args]
    assert main(["train", *filled, "-q", f"runs_dir={tmp_path / 'runs'}"] if "runs_dir" not in args[-1]
                else ["train", *filled, "-q"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not list((tmp_path / "runs").glob("0*")) if (tmp_path / "runs").exists() else True


def test_yes_and_no_read_as_words_where_a_word_is_expected(digits):
    assert build_config(str(digits), None, parse_overrides(["conditional=yes"])).conditional == "yes"
    assert build_config(str(digits), None, parse_overrides(["conditional=no"])).conditional == "no"


def test_resume_survives_a_damaged_config_yaml_and_names_a_moved_dataset(trained, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "config.yaml").write_text("loss: [hinge\n")  # damaged
    result = train_gan(resume=run, overrides={"kimg": 0.128}, progress=False)
    assert result.images_seen == 128 and "using the settings saved in the checkpoint" in capsys.readouterr().err
    assert "loss: nonsaturating" in (run / "config.yaml").read_text()  # written again
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace(str(result.config.data), "/nowhere/data"))
    with pytest.raises(ConfigError, match="/nowhere/data, which is no longer there"):
        train_gan(resume=run, overrides={"kimg": 0.16}, progress=False)


@pytest.mark.parametrize("args, message", [
    (["demo", "--minutes", "-1"], "positive budget"),
    (["demo", "--resolution", "512"], "16, 32, 64, 128 or 256 px"),
    (["health", "{run}", "--out", "{file}"], "is a file"),
    (["compare", "{run}", "--out", "{file}"], "name a picture file"),
])
def test_other_commands_answer_mistakes_in_one_sentence(trained, tmp_path, capsys, args, message):
    (tmp_path / "afile").write_text("mine")
    filled = [a.format(run=trained, file=tmp_path / "afile") for a in args]
    if filled[0] == "demo":
        filled += ["--out", str(tmp_path / "demo")]
    assert main(filled) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert (tmp_path / "afile").read_text() == "mine" and not (tmp_path / "demo").exists()


def test_resume_continues_the_tick_count(trained, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    train_gan(resume=run, overrides={"kimg": 0.16}, progress=False)
    ticks = [r["tick"] for r in read_log(run) if "loss_D" in r or r["images_seen"] == 0]
    assert ticks == list(range(len(ticks))), ticks


def test_resume_after_the_dataset_was_prepared_again_at_another_size(digits, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(digits, data)
    run = train_gan(data, preset="dcgan-small", overrides={**TINY, "kimg": 0.032, "runs_dir": str(tmp_path / "runs")},
                    progress=False).run_dir
    prepare_dataset("digits", data, resolution=32, workers=1, progress=False, overwrite=True)
    with pytest.raises(TrainingError, match="resolution 16 -> 32.*prepared again"):
        train_gan(resume=run, overrides={"kimg": 0.064}, progress=False)


@pytest.mark.parametrize("override, message", [
    ("model.g_widht=8", "Unknown field"), ("model.g_width=0", "g_width"), ("batch_size=1e9", "larger than the dataset")])
def test_dry_run_refuses_what_a_real_run_refuses(digits, override, message):
    with pytest.raises(GanforgeError, match=message):
        train_gan(digits, overrides=parse_overrides([override]), dry_run=True, progress=False)


def test_health_of_a_mistyped_run_makes_no_folder(tmp_path, capsys):
    assert main(["health", str(tmp_path / "typo dir" / "sub")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "typo dir").exists()
