"""The training loop: devices, precision, processes, EMA, ticks, checkpoints. It knows no model.

The run's recipe (`train/recipes`) supplies the networks, their optimiser groups, the phases of a step
and their losses; the loop runs the phases, counts images shown to D, and every tick (tick_kimg) logs
the mean statistics, draws a grid from fixed seeds and writes a checkpoint holding everything (the
recipe's own state too). A recipe may also plan each step (`step_plan`: the batch size to draw, optimiser
groups to restart), as a growing network does when its resolution changes. A recipe without latents (image to
image) draws its own pictures: `preview(module) -> (picture, samples)` for each tick's grid, `preview_reals()`
for reals.png and `sample_inputs(count, generator)` for the averaged generator's batch-norm recalibration.
The reader is the one for the dataset's kind (`make_reader`). A non-finite loss rolls back to
the last checkpoint. Ctrl-C or SIGTERM finish the current step, save, and exit; `--resume` continues exactly.

Every random draw of training (latents, augmentation, noise) comes from the trainer's own
`torch.Generator`, saved in each checkpoint; the global RNG is never used, so work done between steps
(periodic KID, a callback) cannot change what training does.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ganforge.data.format import PreparedDataset
from ganforge.data.pair_reader import make_reader
from ganforge.data.reader import to_uint8_images
from ganforge.device import deterministic_kernels, device_kind, pick_device, pick_precision
from ganforge.errors import GanforgeError
from ganforge.files import save_image_atomic, write_text_atomic
from ganforge.models.sampling import synthesize
from ganforge.pictures import image_grid, points_plot
from ganforge.train import checkpoint as ckpt
from ganforge.train.config import TrainConfig, dump_yaml
from ganforge.train.distributed import Distributed
from ganforge.train.ema import GeneratorEMA
from ganforge.train.recipes import RecipeError, create_recipe, model_fields
from ganforge.train.rundir import RunLog, write_animation, write_augment_plot, write_loss_plot

DEFAULT_MINUTES = 60.0


class TrainingError(GanforgeError):
    pass


__all__ = ["Trainer", "TrainingError", "check_config", "deterministic_kernels", "device_kind", "model_fields", "pick_device",
           "pick_precision"]


def _largest_power_of_two(n: int) -> int:
    return 1 << (max(n, 1).bit_length() - 1)


def _adam(parameters: list, lr: float, betas, device: torch.device) -> torch.optim.Adam:
    # The fused kernel measured 2.6 ms per step for DCGAN-64's G and D on this CPU, against 18 ms;
    # the result is the same Adam. Older torch builds without it for this device use the default.
    try:
        return torch.optim.Adam(parameters, lr, betas=betas, fused=device.type in ("cpu", "cuda"))
    except (RuntimeError, TypeError):
        return torch.optim.Adam(parameters, lr, betas=betas)


def _grad_norm(parameters: list[torch.nn.Parameter]) -> torch.Tensor:
    grads = [p.grad.detach().float() for p in parameters if p.grad is not None]
    return torch.stack(torch._foreach_norm(grads)).norm() if grads else torch.zeros(())


class Trainer:
    def __init__(self, config: TrainConfig, run_dir: Path | None, *, state: dict | None = None, progress: bool = True):
        """`run_dir` may be set after construction (before `run`), once everything built without error.
        Callbacks (`add_callback`) are attached after construction, by the API layer."""
        self.config = config
        self.run_dir = run_dir
        self.progress = progress
        self.dataset = PreparedDataset(config.data)
        self.dist = Distributed.from_environment(device_kind(config.device))
        self.device = pick_device(config.device, self.dist.local_rank)
        self.dtype = pick_precision(config.precision, self.device)
        if config.batch_size % self.dist.world_size:
            raise TrainingError(f"batch_size {config.batch_size} must divide evenly among {self.dist.world_size} processes.")
        self.local_batch = config.batch_size // self.dist.world_size
        self.rng = torch.Generator(device=self.device).manual_seed(config.seed)

        with torch.random.fork_rng(devices=[]):  # weights are initialised from the seed, the caller's RNG left alone
            torch.manual_seed(config.seed)
            try:
                self.recipe = create_recipe(config, self.dataset, self.device, self.rng)
            except RecipeError as err:
                raise TrainingError(str(err)) from None
        self.networks = self.recipe.networks
        self.model_config = self.recipe.model_config
        self.G = self.networks[self.recipe.ema_role]
        self.D = self.networks.get("D")
        self.images = self.dataset.kind == "images"
        memory_format = torch.channels_last if (config.channels_last and self.images) else torch.preserve_format
        for network in self.networks.values():
            network.to(self.device, memory_format=memory_format)
            self.dist.sync_from_main(network, parameters=True)
        self.ema = GeneratorEMA(self.G, config.ema_kimg, config.ema_rampup)
        # listed once: walking the module tree for each requires_grad_ call cost ~0.5 ms a step, more
        # than a small model's whole forward pass
        self._parameters = {role: list(network.parameters()) for role, network in self.networks.items()}
        self.groups = self.recipe.optimizer_groups()
        self._group_parameters = {name: [p for role in group.roles for p in self._parameters[role]]
                                  for name, group in self.groups.items()}
        self.optimizers = {name: _adam(self._group_parameters[name], group.effective_lr, group.effective_betas, self.device)
                           for name, group in self.groups.items()}
        fp16 = self.dtype == torch.float16
        self.scalers = {name: torch.amp.GradScaler(self.device.type, enabled=fp16) for name in self.groups}
        check_batch(config, self.dataset)
        pairs_only = {"crop": config.crop} if config.crop else {}  # image-to-image only (model_fields refuses others)
        pairs_only.update({"rotate": True} if config.rotate else {})
        self.reader = make_reader(self.dataset, self.local_batch, flip=config.flip, seed=config.seed,
                                  device=self.device, rank=self.dist.rank, world_size=self.dist.world_size, **pairs_only)
        self.conditional = self.recipe.num_classes > 0
        self.phases = self.recipe.phases()

        self.step = self.images_seen = self.tick = self.rollbacks = 0
        self.resumed_at: int | None = None  # images_seen of the checkpoint this trainer started from
        self._last_checkpoint_at = -1
        self.train_seconds = 0.0
        self.stop_signal: str | None = None
        self.inject_nan_at_steps: set[int] = set()  # for tests of the rollback path
        # Grids and BN recalibration draw from their own generator, re-seeded at each use, so they
        # never disturb training's random stream and look the same after a resume.
        self._fixed = torch.Generator().manual_seed(config.seed + 1_000_003)
        grid_size, self.grid_labels, self.grid_columns = config.grid_size, None, None
        if self.conditional:  # one column per class (when they fit), as many rows as the grid allows
            classes = self.recipe.num_classes
            self.grid_columns = classes if classes <= 16 else None
            grid_size = max(classes, grid_size // classes * classes) if self.grid_columns else grid_size
            self.grid_labels = torch.arange(grid_size) % classes
        self.grid_z = torch.randn(grid_size, self.G.z_dim, generator=self._fixed)
        self.early_stop = False
        self.callbacks: list = []
        self._callback_states: dict = {}
        self._reset_stats()
        if state is not None:
            self.load_state(state)

    def add_callback(self, callback) -> None:
        """Attach an object with `name`, `on_tick(trainer, log, final) -> bool` (True: stop early), `state()`
        and `load_state(dict)`; its state is saved in checkpoints and restored when resuming."""
        callback.load_state(self._callback_states.get(callback.name, {}))
        self.callbacks.append(callback)

    # --- state ---------------------------------------------------------------------------------

    def state(self) -> dict:
        return {
            "networks": {role: network.state_dict() for role, network in self.networks.items()},
            "G_ema": self.ema.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "scalers": {name: scaler.state_dict() for name, scaler in self.scalers.items()},
            "recipe_name": self.recipe.name, "recipe": self.recipe.state_dict(),
            "step": self.step, "images_seen": self.images_seen, "tick": self.tick, "rollbacks": self.rollbacks,
            "train_seconds": self.train_seconds, "reader": self.reader.state_dict(),
            "rng": self.rng.get_state(), "config": self.config.to_dict(), "model_name": self.recipe.model_name,
            "model_config": dataclasses.asdict(self.model_config),
            "classes": self.dataset.class_names if self.conditional else None,
            "callbacks": {**self._callback_states, **{cb.name: cb.state() for cb in self.callbacks}},
        }

    def load_state(self, state: dict) -> None:
        state = _upgrade_state(state)
        try:
            for role, network in self.networks.items():
                network.load_state_dict(state["networks"][role])
            self.ema.load_state_dict(state["G_ema"])
        except (RuntimeError, KeyError):  # shapes that no longer fit: the run's inputs were changed
            saved = state.get("model_config", {})
            now = dataclasses.asdict(self.model_config)
            changed = [f"{k} {saved[k]!r} -> {now[k]!r}" for k in now if k in saved and saved[k] != now[k]]
            raise TrainingError(
                "This checkpoint no longer fits the run's model"
                + (f" ({'; '.join(changed)})" if changed else "")
                + ": the dataset was prepared again with other settings, or config.yaml was edited. Put them back "
                "as they were to resume, or start a new run.") from None
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
            if state["scalers"].get(name):
                self.scalers[name].load_state_dict(state["scalers"][name])
        # a checkpoint is written at the end of tick N, before the counter moves on: continue with N + 1
        self.step, self.images_seen, self.tick = state["step"], state["images_seen"], state["tick"] + 1
        self.rollbacks, self.train_seconds = state["rollbacks"], state["train_seconds"]
        self.reader.load_state_dict(state["reader"])
        if isinstance(state.get("rng"), torch.Tensor):
            self.rng.set_state(state["rng"])
        self.recipe.load_state_dict(state.get("recipe", {}))
        self._callback_states = dict(state.get("callbacks", {}))
        for callback in self.callbacks:
            callback.load_state(self._callback_states.get(callback.name, {}))
        self.resumed_at = self.images_seen

    # --- the loop ------------------------------------------------------------------------------

    def budget(self) -> tuple[int | None, float | None]:
        """(images, seconds): stop at whichever comes first; None means no limit of that kind."""
        cfg = self.config
        limits = [int(cfg.kimg * 1000)] if cfg.kimg else []
        if cfg.epochs:
            limits.append(int(cfg.epochs * len(self.dataset)))
        minutes = cfg.minutes or (None if limits else DEFAULT_MINUTES)
        return (min(limits) if limits else None), (minutes * 60 if minutes else None)

    def run(self) -> str:
        """Train until the budget is spent or a stop signal arrives; returns why it stopped."""
        with deterministic_kernels(self.config.deterministic, self.device):
            return self._run()

    def _fingerprint_reals(self) -> None:
        """From now on the real images carry the run's fingerprint, keyed by its model id (made by the main
        process, read by the others)."""
        from ganforge.provenance.fingerprint import pattern_image
        from ganforge.provenance.sign import run_identity

        if self.dist.is_main:
            run_identity(self.run_dir)
        self.dist.barrier()
        height, width = self.dataset.images.shape[1:3]
        self.reader.fingerprint = pattern_image(run_identity(self.run_dir).model_id, height, width)

    def _run(self) -> str:
        images_limit, seconds_limit = self.budget()
        main = self.dist.is_main
        if main and self.progress and not (self.config.kimg or self.config.epochs or self.config.minutes):
            print(f"No budget given (kimg=, epochs= or minutes=): training for {DEFAULT_MINUTES:g} minutes. "
                  "Ctrl-C stops and saves at any time.")
        log = RunLog(self.run_dir, purge_after=self.resumed_at) if main else None
        if self.config.fingerprint:
            self._fingerprint_reals()
        if main:
            write_text_atomic(self.run_dir / "config.yaml", dump_yaml(self.config))
            if self.images_seen == 0:
                self._save_reals()
        if self.images_seen == 0:
            self._end_tick(log, time.perf_counter())  # grid and checkpoint of the untrained start
        previous = {}
        if threading.current_thread() is threading.main_thread():  # Python allows handlers only there
            previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        total = images_limit if images_limit else None
        bar = tqdm(total=total, initial=min(self.images_seen, total or self.images_seen), unit="img",
                   unit_scale=True, desc="training", disable=not (self.progress and main), dynamic_ncols=True)
        reason = "budget"
        try:
            next_tick = self._next_tick_at()
            tick_start = time.perf_counter()
            while True:
                if images_limit is not None and self.images_seen >= images_limit:
                    break
                if seconds_limit is not None and self.train_seconds >= seconds_limit:
                    break
                started = time.perf_counter()
                before = self.images_seen
                self._train_step()
                self.train_seconds += time.perf_counter() - started
                bar.update(self.images_seen - before)
                if self.images_seen >= next_tick:
                    self._end_tick(log, tick_start, bar)
                    next_tick, tick_start = self._next_tick_at(), time.perf_counter()
                    bar.n = min(self.images_seen, total or self.images_seen)  # a rollback moves back
                if self.dist.any(bool(self.stop_signal), self.device):  # every rank stops at the same step
                    reason = self.stop_signal or "SIGTERM"
                    break
                if self.early_stop:
                    reason = "patience"
                    break
            if self.images_seen != self._last_checkpoint_at:
                self._end_tick(log, tick_start, bar, final=reason == "budget")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            bar.close()
            if log is not None:
                log.close()
        if main:
            write_animation(self.run_dir)
            write_loss_plot(self.run_dir)
            write_augment_plot(self.run_dir, self.config.ada_target)
        return reason

    def _on_signal(self, signum, frame) -> None:
        if self.stop_signal:  # a second Ctrl-C: stop right now (the last checkpoint is intact)
            raise KeyboardInterrupt
        self.stop_signal = signal.Signals(signum).name
        if self.dist.is_main:
            print(f"\n{self.stop_signal}: finishing this step, then saving a checkpoint (press Ctrl-C again to quit at once).")

    def _next_tick_at(self) -> int:
        size = int(self.config.tick_kimg * 1000)
        return (self.images_seen // size + 1) * size

    def _autocast(self, enabled: bool = True):
        if self.dtype is None or not enabled:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _latents(self, batch_size: int) -> torch.Tensor:
        # drawn for the global batch and sliced, so N processes see what one process would
        z = torch.randn(batch_size, self.G.z_dim, device=self.device, generator=self.rng)
        local = batch_size // self.dist.world_size
        start = self.dist.rank * local
        return z[start : start + local]

    def _plan_step(self) -> int:
        """The global batch size of the step about to run. A recipe with `step_plan(step, images_seen) ->
        (batch_size, groups)` chooses it (a growing network's batch follows its resolution) and names the
        optimiser groups whose state (moments, step counts) starts afresh; others get config.batch_size."""
        plan = getattr(self.recipe, "step_plan", None)
        if plan is None:
            return self.config.batch_size
        batch_size, restart = plan(self.step, self.images_seen)
        if batch_size % self.dist.world_size:
            raise TrainingError(f"The recipe's batch size {batch_size} at {self.images_seen} images must divide evenly "
                                f"among {self.dist.world_size} processes.")
        for name in restart:
            self.optimizers[name].state.clear()
        self.reader.batch_size = batch_size // self.dist.world_size
        return batch_size

    def lr_factor(self) -> float:
        """Learning-rate multiplier: 1, then falling linearly to 0 over the last `lr_ramp_down` of the budget.

        Progress is measured in images when the budget has an image limit (so a resumed run follows the
        same schedule), else in training seconds."""
        ramp = self.config.lr_ramp_down
        if not ramp:
            return 1.0
        images_limit, seconds_limit = self.budget()
        done = self.images_seen / images_limit if images_limit else self.train_seconds / seconds_limit
        return min(1.0, max(0.0, (1.0 - done) / ramp))

    def _set_learning_rates(self) -> None:
        factor = self.lr_factor()
        for name, group in self.groups.items():
            for params in self.optimizers[name].param_groups:
                params["lr"] = group.effective_lr * factor

    def _require_grad(self, names: set[str]) -> None:
        """Gradients for the named networks' parameters only (the cached lists: see `_parameters`)."""
        for name, parameters in self._parameters.items():
            for p in parameters:
                p.requires_grad_(name in names)

    def _train_step(self) -> None:
        if self.config.lr_ramp_down:
            self._set_learning_rates()
        batch_size = self._plan_step()
        data = None
        for phase in self.phases:
            if self.step % phase.interval or self.images_seen < phase.start_kimg * 1000:
                continue
            group, parameters = self.groups[phase.optimizer], self._group_parameters[phase.optimizer]
            optimizer, scaler = self.optimizers[phase.optimizer], self.scalers[phase.optimizer]
            self._require_grad({*group.roles, *phase.graph})
            for _ in range(phase.repeats):
                if phase.draws or data is None:
                    data = next(self.reader)
                    self.images_seen += batch_size
                batch = self.recipe.make_batch(phase, data, self._latents(batch_size))
                with self._autocast(enabled=not phase.fp32):  # penalties in fp32
                    loss, stats = self.recipe.loss(phase, batch)
                if self.step in self.inject_nan_at_steps:
                    self.inject_nan_at_steps.discard(self.step)
                    loss = loss * float("nan")
                for p in parameters:  # optimizer.zero_grad(set_to_none=True), without its overhead
                    p.grad = None
                scaler.scale(loss).backward()
                for role in group.roles:
                    self.dist.average_gradients(self.networks[role])
                if phase.grad_norm:  # vanishing gradients show here first
                    scale = scaler.get_scale() if scaler.is_enabled() else 1.0
                    stats = {**stats, phase.grad_norm: _grad_norm(parameters) / scale}
                scaler.step(optimizer)
                scaler.update()
                self._accumulate(stats)
        self._require_grad(set(self._parameters))
        for network in self.networks.values():
            self.dist.sync_from_main(network)
        self._accumulate(self.recipe.after_step(self.step, self.images_seen, self.dist.all_reduce_sum))
        self.ema.update(self.G, batch_size, self.images_seen)
        self.step += 1

    def _reset_stats(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}
        self._tick_images_start = self.images_seen

    def _accumulate(self, stats: dict[str, torch.Tensor]) -> None:
        for key, value in stats.items():
            self._sums[key] = self._sums.get(key, 0) + value.float()
            self._counts[key] = self._counts.get(key, 0) + 1

    def _end_tick(self, log: RunLog | None, tick_start: float, bar=None, final: bool = False) -> None:
        means = {k: float(v) / self._counts[k] for k, v in self._sums.items()}
        weights_ok = all(torch.isfinite(p).all() for ps in self._parameters.values() for p in ps)
        if self.dist.any(not weights_ok or not all(math.isfinite(v) for v in means.values()), self.device):
            self._roll_back(means, log)
            return
        elapsed = max(time.perf_counter() - tick_start, 1e-9)
        record = {"tick": self.tick, "images_seen": self.images_seen, "kimg": self.images_seen / 1000,
                  "step": self.step, "train_seconds": round(self.train_seconds, 3),
                  "images_per_second": (self.images_seen - self._tick_images_start) / elapsed, **means,
                  **self.recipe.tick_values()}
        self._fixed.manual_seed(self.config.seed + 1_000_004)
        self.ema.recalibrate(self._recalibration_inputs)
        if self.dist.is_main:
            record.update(self._save_grid())
            log.write(record)
            ckpt.save_checkpoint(self.state(), self.run_dir / "checkpoints", self.images_seen, self.config.keep_checkpoints)
            if bar is not None and means:
                bar.set_postfix({k: f"{v:.3g}" for k, v in means.items() if k in ("loss_G", "loss_D", "R1")}
                                | {"img/s": f"{record['images_per_second']:.0f}"})
        stop = False
        for callback in self.callbacks:
            stop = bool(callback.on_tick(self, log, final)) or stop
        self.early_stop = self.dist.any(stop, self.device)
        self.dist.barrier()
        self._last_checkpoint_at = self.images_seen
        self.tick += 1
        self._reset_stats()

    def _roll_back(self, means: dict, log: RunLog | None) -> None:
        self.rollbacks += 1
        found = ckpt.latest_loadable(self.run_dir / "checkpoints")
        if self.rollbacks > self.config.max_rollbacks or found is None:
            raise TrainingError(
                f"Training produced non-finite values {self.rollbacks} times (last tick's means: {means}). "
                "Try lower learning rates (lr_g, lr_d), an R1 penalty (r1_gamma=1), loss=hinge, or precision=fp32.")
        path, state = found
        rollbacks = self.rollbacks
        self.load_state(state)
        self.rollbacks = rollbacks
        self.rng.manual_seed(self.config.seed + 7919 * rollbacks)  # take another path than the one that failed
        message = f"non-finite loss or weights: rolled back to {path.name} (rollback {rollbacks} of at most {self.config.max_rollbacks})"
        if self.dist.is_main:
            print(f"\nwarning: {message}")
            log.write({"tick": self.tick, "images_seen": self.images_seen, "event": "rollback", "message": message})
        self._reset_stats()

    # --- pictures ------------------------------------------------------------------------------

    def _recalibration_inputs(self) -> tuple:
        own = getattr(self.recipe, "sample_inputs", None)
        if own is not None:  # a generator that takes more than latents
            return own(self.local_batch, self._fixed)
        z = torch.randn(self.local_batch, self.G.z_dim, generator=self._fixed).to(self.device)
        if not self.conditional:
            return (z,)
        labels = torch.randint(0, self.recipe.num_classes, (self.local_batch,), generator=self._fixed)
        return z, labels.to(self.device)

    def sample(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The averaged generator's samples, through the same path as `ganforge sample` (float32, on the CPU)."""
        return synthesize(self.ema.module, z, labels)

    def _save_grid(self) -> dict[str, float]:
        """Draw this tick's grid; returns what it shows of the generator's health (see `_output_signals`)."""
        folder = self.run_dir / "grids"
        folder.mkdir(exist_ok=True)
        target = folder / f"grid-{self.images_seen / 1000:011.3f}kimg.png"  # sortable, exact kimg
        preview = getattr(self.recipe, "preview", None)
        if preview is not None:  # the recipe's own picture (pix2pix: A | G(A) | B for fixed pairs)
            grid, samples = preview(self.ema.module)
            save_image_atomic(grid, target)
            return _output_signals(samples, True)
        if self.images:
            samples = self.sample(self.grid_z, self.grid_labels)
            grid = image_grid(to_uint8_images(samples), columns=self.grid_columns)
        else:
            self._fixed.manual_seed(self.config.seed + 1_000_005)  # the same points at every tick
            z = torch.randn(2000, self.G.z_dim, generator=self._fixed)
            labels = None if not self.conditional else torch.randint(0, self.recipe.num_classes, (2000,), generator=self._fixed)
            reference = np.asarray(self.dataset.points[: 2000])
            samples = self.sample(z, labels)
            grid = points_plot(samples.numpy(), reference)
        save_image_atomic(grid, target)
        return _output_signals(samples, self.images)

    def _save_reals(self) -> None:
        rng = np.random.default_rng(self.config.seed)
        reals = getattr(self.recipe, "preview_reals", None)
        if reals is not None:
            save_image_atomic(reals(), self.run_dir / "reals.png")
        elif self.images:
            picks = np.sort(rng.choice(len(self.dataset), min(self.config.grid_size, len(self.dataset)), replace=False))
            save_image_atomic(image_grid(np.asarray(self.dataset.images[picks])), self.run_dir / "reals.png")
        else:
            save_image_atomic(points_plot(np.asarray(self.dataset.points[:2000])), self.run_dir / "reals.png")


def _output_signals(samples: torch.Tensor, images: bool) -> dict[str, float]:
    """How much the fixed-seed samples differ from one another (`G_spread`: the per-pixel or per-coordinate
    standard deviation across samples, averaged) and, for images, the share of pixels pinned at black or
    white (`G_saturated`). A dead generator shows as a spread near 0 or saturation near 1."""
    finite = torch.nan_to_num(samples.float(), nan=0.0, posinf=1.0, neginf=-1.0)
    signals = {"G_spread": float(finite.std(dim=0).mean()) if len(finite) > 1 else 0.0}
    if images:
        signals["G_saturated"] = float((finite.abs() > 0.99).float().mean())
    return signals


def check_batch(config: TrainConfig, dataset: PreparedDataset) -> None:
    if config.batch_size > len(dataset):
        raise TrainingError(f"batch_size={config.batch_size} is larger than the dataset ({len(dataset)} items): "
                            f"use batch_size={_largest_power_of_two(len(dataset))} or less.")


def check_config(config: TrainConfig, dataset: PreparedDataset) -> None:
    """What building a Trainer would refuse, without building one (for --dry-run): the recipe, the model's
    fields for this dataset, and the batch size."""
    from ganforge.models import model_config
    from ganforge.train.recipes import recipe_name

    try:
        recipe_name(config)
        fields = model_fields(config, dataset)
    except RecipeError as err:
        raise TrainingError(str(err)) from None
    model_config(fields.pop("name"), **fields)
    check_batch(config, dataset)


def _upgrade_state(state: dict) -> dict:
    """A checkpoint written before recipes (G, D, optimizer_G, ...) in today's layout."""
    if "networks" in state:
        return state
    state = dict(state)
    state["networks"] = {"G": state.pop("G"), "D": state.pop("D")}
    state["optimizers"] = {k: state.pop(f"optimizer_{k}") for k in ("G", "D")}
    state["scalers"] = {k: state.pop(f"scaler_{k}") for k in ("G", "D")}
    state["callbacks"] = {"health": state.pop("health", {})}
    state["rng"] = None  # it held the global streams; this trainer draws from its own
    return state
