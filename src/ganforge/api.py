"""`train_gan`: start a run or resume one — the Python face of `ganforge train` (and of the studio).

It sits above training and metrics: it builds the Trainer and attaches the periodic health check
(`metrics.monitor.HealthMonitor`) as a callback, so neither package imports the other's layer above.

A new run gets a numbered folder under runs_dir; a resumed run continues from its latest checkpoint
with its saved config. On resume only the budget and the device may change: anything else would
no longer be the same run. What a stopped run logged after that checkpoint is dropped, since it is
about to be done again. A process training in a run holds its lock (see `rundir.RunLock`).

The models, the data reader and every setting are built before the run folder is made, so a mistake
(a batch larger than the dataset, a width of 0) leaves no empty numbered folder behind.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ganforge.data.format import PreparedDataset
from ganforge.train import checkpoint as ckpt
from ganforge.train.config import ConfigError, TrainConfig, _apply, _nest, build_config
from ganforge.train.defaults import choose_defaults, fill_heuristics
from ganforge.files import is_disk_full
from ganforge.metrics.monitor import HealthMonitor
from ganforge.train.loop import Trainer, TrainingError, check_config, device_kind
from ganforge.train.rundir import RunLock, forget_after, new_run_dir

RESUMABLE_KEYS = {"kimg", "epochs", "minutes", "device", "tick_kimg", "keep_checkpoints", "eval_minutes", "patience"}


@dataclass
class TrainResult:
    run_dir: Path | None
    config: TrainConfig
    stopped_by: str  # "budget", "SIGINT", "SIGTERM", or "dry-run"
    images_seen: int = 0


def train_gan(data: str | os.PathLike | None = None, *, preset: str | None = None,
              overrides: dict[str, Any] | None = None, resume: str | os.PathLike | None = None,
              dry_run: bool = False, progress: bool = True) -> TrainResult:
    if resume is not None:
        return _resume(Path(resume), overrides or {}, dry_run, progress)
    if data is None:
        raise ConfigError("Give a prepared dataset to train on (ganforge train DATASET), or --resume RUN.")
    dataset = PreparedDataset(data)
    overrides = dict(overrides or {})
    explained = []
    if preset is None:  # chosen from the dataset, by measurement (see train/defaults.py)
        conditioned = overrides.get("conditional") != "no"
        choice = choose_defaults(dataset.kind, len(dataset), dataset.resolution if dataset.kind != "points" else None,
                                 device_kind(str(overrides.get("device", "auto"))),
                                 derive=(dataset.manifest.get("derive") or {}).get("mode", ""),
                                 same_channels=dataset.kind != "unpaired" or dataset.a.shape[-1] == dataset.b.shape[-1],
                                 attributes=conditioned and bool(getattr(dataset, "attribute_specs", None))
                                 and overrides.get("model.name", "dcgan") == "dcgan",  # the attribute head is DCGAN's
                                 classes=conditioned and dataset.num_classes > 0)
        preset, explained = choice.preset, [choice.why]
        overrides = {**choice.overrides, **overrides}  # what the user gave wins
    config = build_config(str(Path(data).resolve()), preset, overrides, kind=dataset.kind)
    heuristic = fill_heuristics(config, preset, overrides, dataset.resolution if dataset.kind == "images" else None)
    explained += [heuristic] if heuristic else []
    if progress and explained:
        print("Settings: " + "; ".join(explained) + ". Any key=value on the command line overrides them.",
              file=sys.stderr)
    if dry_run:
        check_config(config, dataset)  # what a real run would refuse, a dry run refuses too
        return TrainResult(None, config, "dry-run")
    description = f"{Path(data).resolve().name}-{config.model['name']}"
    trainer = _trainer(config, None, None, progress)
    run_dir, lock = _make_run_dir(Path(config.runs_dir), description, config.device)
    trainer.run_dir = run_dir
    try:
        stopped_by = _run(trainer)
    except BaseException:
        if trainer.dist.is_main and not ckpt.list_checkpoints(run_dir / "checkpoints"):  # nothing worth keeping yet
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        trainer.dist.close()
        if lock is not None:
            lock.release()
    return TrainResult(run_dir, config, stopped_by, trainer.images_seen)


def _make_run_dir(runs: Path, description: str, device: str) -> tuple[Path, RunLock | None]:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return new_run_dir(runs, description, lock=True)
    # under torchrun every rank must agree on the folder: rank 0 makes it (and holds its lock), the others
    # wait for its name
    import torch.distributed as dist

    from ganforge.train.distributed import Distributed

    Distributed.from_environment(device_kind(device))
    made = new_run_dir(runs, description, lock=True) if dist.get_rank() == 0 else (None, None)
    names = [str(made[0]) if made[0] else None]
    dist.broadcast_object_list(names, src=0)
    return Path(names[0]), made[1]


def _resume(run_dir: Path, overrides: dict[str, Any], dry_run: bool, progress: bool) -> TrainResult:
    config_file = run_dir / "config.yaml"
    if not config_file.exists():
        raise ConfigError(f"{run_dir} is not a ganforge run (no config.yaml). Give the run folder, e.g. runs/00003-...")
    lock = RunLock(run_dir).acquire() if int(os.environ.get("RANK", "0")) == 0 and not dry_run else None
    try:
        return _resume_locked(run_dir, overrides, dry_run, progress)
    finally:
        if lock is not None:
            lock.release()


def _resume_locked(run_dir: Path, overrides: dict[str, Any], dry_run: bool, progress: bool) -> TrainResult:
    config_file = run_dir / "config.yaml"
    found = ckpt.latest_loadable(run_dir / "checkpoints")
    if found is None:
        raise ConfigError(f"{run_dir} has no loadable checkpoint to resume from.")
    path, state = found
    config = TrainConfig()
    _apply(config, _saved_config(config_file, state), str(config_file))
    changed = set(overrides) - RESUMABLE_KEYS
    if changed:
        raise ConfigError(f"Resuming keeps the run's settings; {', '.join(sorted(changed))} cannot change "
                          f"(only {', '.join(sorted(RESUMABLE_KEYS))}). Start a new run to change them.")
    _apply(config, _nest(overrides), "overrides")
    config.validate()
    if dry_run:
        return TrainResult(run_dir, config, "dry-run", state["images_seen"])
    if not Path(config.data).exists():
        raise ConfigError(f"This run trained on {config.data}, which is no longer there. Put the prepared dataset "
                          "back at that path (or a link to it), then resume.")
    if progress:
        print(f"Resuming {run_dir} from {path.name} ({state['images_seen'] / 1000:.1f} kimg).")
    if config.kimg and state["images_seen"] >= config.kimg * 1000:
        print(f"note: this run has already seen {state['images_seen'] / 1000:g} kimg, which meets kimg={config.kimg:g}; "
              "nothing to train. Give a larger budget to continue, e.g. kimg="
              f"{max(2 * config.kimg, state['images_seen'] / 500):g}.", file=sys.stderr)
    trainer = _trainer(config, run_dir, state, progress)
    if trainer.dist.is_main:
        forget_after(run_dir, state["images_seen"])
    try:
        stopped_by = _run(trainer)
    finally:
        trainer.dist.close()
    return TrainResult(run_dir, config, stopped_by, trainer.images_seen)


def _trainer(config: TrainConfig, run_dir: Path | None, state: dict | None, progress: bool) -> Trainer:
    trainer = Trainer(config, run_dir, state=state, progress=progress)
    trainer.add_callback(HealthMonitor(trainer, config.eval_minutes, config.eval_images, config.patience))
    return trainer


def _saved_config(config_file: Path, state: dict) -> dict:
    """The run's settings from config.yaml; if that file is damaged, the copy every checkpoint holds."""
    try:
        saved = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        saved = exc
    if isinstance(saved, dict):
        return saved
    print(f"warning: {config_file} is damaged; using the settings saved in the checkpoint (config.yaml will be "
          "written again).", file=sys.stderr)
    return state["config"]


def _run(trainer: Trainer) -> str:
    """Train; a full disk becomes a sentence that says how to continue (not "run the same command again",
    which would start another run)."""
    try:
        return trainer.run()
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        found = ckpt.latest_loadable(trainer.run_dir / "checkpoints")
        full = f"The disk holding {trainer.run_dir} is full ({_free_mib(trainer.run_dir):.0f} MiB free), so training stopped"
        if found is None:
            raise TrainingError(f"{full} before its first checkpoint. Free some space, then start it again.") from exc
        raise TrainingError(f"{full}; its last checkpoint ({found[1]['images_seen'] / 1000:.1f} kimg) is intact. Free "
                            "some space (keep_checkpoints=1 keeps fewer files), then continue with: "
                            f"ganforge train --resume {trainer.run_dir}") from exc


def _free_mib(path: Path) -> float:
    return shutil.disk_usage(path).free / 2**20
