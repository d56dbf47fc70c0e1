"""The run directory: one numbered folder per run, holding everything to resume it or understand it.

    runs/00003-textiles-dcgan/
        config.yaml          the resolved configuration
        log.jsonl            one JSON object per tick (losses, images/s, kimg, time)
        events.out.tfevents  the same scalars for TensorBoard (tensorboard --logdir runs)
        reals.png            a grid of training images, to compare with
        grids/               a grid of samples from fixed seeds at each tick (kimg in the name)
        checkpoints/         full training state, the last few
        progress.gif         the grids as an animation: watching it learn
        losses.png           the losses against images seen
        .lock                held (with the holder's PID) while a process trains in the folder

Two processes never train in one run at once: `RunLock` takes an exclusive lock on `RUN/.lock`,
which the operating system releases when its holder exits however it exits, so a lock left by a
killed process is never mistaken for a live one. Numbering new runs takes a short lock on
`runs/.lock`, so two runs started at the same instant get different numbers.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import socket
import time
from pathlib import Path

from PIL import Image

from ganforge.errors import GanforgeError
from ganforge.files import is_disk_full, numbers_check, read_jsonl, rewrite_jsonl, save_image_atomic

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

_RUN = re.compile(r"^(\d{5})-")


class RunLockedError(GanforgeError):
    pass


def _lock_file(fd: int, blocking: bool) -> bool:
    """Lock an open file exclusively; False when another process holds it (non-blocking only)."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        else:
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_LOCK if blocking else msvcrt.LK_NBLCK, 1)
    except OSError:
        if blocking:
            raise
        return False
    return True


def _unlock_file(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


class RunLock:
    """Exclusive use of a run folder; `RUN/.lock` says who holds it (PID, host, since when)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _lock_file(fd, blocking=False):
            holder = os.read(fd, 512).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise RunLockedError(f"{self.path.parent} is in use: {holder} is training in it. Wait for that run to "
                                 "finish or stop it (Ctrl-C in its terminal, or kill its PID), then resume.")
        os.ftruncate(fd, 0)
        os.write(fd, f"ganforge PID {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        # The file stays (removing a lock file others may have opened lets two processes lock it at once);
        # emptied, it reads as free.
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
                _unlock_file(self.fd)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def new_run_dir(runs: Path, description: str, lock: bool = False) -> Path | tuple[Path, RunLock]:
    """Make the next numbered folder; with `lock`, also return its RunLock, taken before anyone can see it."""
    try:
        runs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if is_disk_full(exc):
            raise
        raise GanforgeError(f"Cannot make the runs folder {runs} ({exc.strerror or exc}). Choose a folder you can "
                            "write to with runs_dir=PATH.") from None
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", description).strip("-") or "run"
    fd = os.open(runs / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _lock_file(fd, blocking=True)  # numbering is short: wait for the other process
        numbers = [int(m.group(1)) for p in runs.iterdir() if (m := _RUN.match(p.name))]
        path = runs / f"{max(numbers, default=-1) + 1:05d}-{safe}"
        path.mkdir()
        run_lock = RunLock(path).acquire() if lock else None
    finally:
        with contextlib.suppress(OSError):
            _unlock_file(fd)
        os.close(fd)
    return (path, run_lock) if lock else path


class RunLog:
    """Scalars per tick, to log.jsonl and (when TensorBoard is installed) to TensorBoard."""

    def __init__(self, run_dir: Path, purge_after: int | None = None):
        """`purge_after`: on resume, the images_seen of the checkpoint; TensorBoard drops later events."""
        self.path = run_dir / "log.jsonl"
        self.tensorboard = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(run_dir), purge_step=None if purge_after is None else purge_after + 1)
        except ImportError:
            print("note: TensorBoard is not installed (pip install tensorboard); scalars go to log.jsonl only.")

    def write(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            step = int(record["images_seen"])
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("images_seen", "tick"):
                    self.tensorboard.add_scalar(key, value, step)
            self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


# log.jsonl: every value a number, except an event's name and message
LOG_CHECK = numbers_check(required=("images_seen",), text=("event", "message"))


def read_log(run_dir: Path) -> list[dict]:
    """The run's tick and event records; malformed lines are skipped with one warning."""
    return read_jsonl(Path(run_dir) / "log.jsonl", LOG_CHECK)


# metrics.jsonl: numbers, a mapping of metric values, and the strings that say how they were measured
METRICS_CHECK = numbers_check(text=("protocol", "generated", "reference", "checkpoint", "runtime", "source"),
                              nested=("metrics",))


def read_metrics_log(run_dir: Path) -> list[dict]:
    """The run's metrics records (`ganforge eval` and training's own); malformed lines skipped with a warning."""
    records = read_jsonl(Path(run_dir) / "metrics.jsonl", METRICS_CHECK)
    return [{**r, "metrics": r.get("metrics") or {}} for r in records]


def forget_after(run_dir: Path, images_seen: int) -> int:
    """On resume: drop what a stopped run logged after its last checkpoint, which is about to be redone
    (ticks and events in log.jsonl, training's own evaluations in metrics.jsonl). Returns the lines dropped."""
    def done(record: dict) -> bool:
        seen = record.get("images_seen")
        return not isinstance(seen, (int, float)) or seen <= images_seen

    dropped = rewrite_jsonl(Path(run_dir) / "log.jsonl", done)
    return dropped + rewrite_jsonl(Path(run_dir) / "metrics.jsonl",
                                   lambda r: r.get("source") != "training" or done(r))


def write_animation(run_dir: Path, max_frames: int = 100) -> Path | None:
    """All tick grids as a looping GIF (the last frame held longer)."""
    grids = sorted((run_dir / "grids").glob("grid-*.png"))
    if not grids:
        return None
    step = max(1, math.ceil(len(grids) / max_frames))
    chosen = grids[::step]
    if chosen[-1] != grids[-1]:
        chosen.append(grids[-1])
    frames = []
    for path in chosen:
        with Image.open(path) as frame:
            frames.append(frame.convert("RGB").resize((min(frame.width, 512), min(frame.height, 512))))
    target = run_dir / "progress.gif"
    durations = [300] * (len(frames) - 1) + [2000]
    save_image_atomic(frames[0], target, save_all=True, append_images=frames[1:], duration=durations, loop=0)
    return target


def write_loss_plot(run_dir: Path) -> Path | None:
    records = [r for r in read_log(run_dir) if "loss_G" in r]
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kimg = [r["images_seen"] / 1000 for r in records]
    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=100)
    for key, colour in (("loss_G", "tab:blue"), ("loss_D", "tab:red"), ("R1", "tab:green")):
        if key in records[-1]:
            axes.plot(kimg, [r.get(key, float("nan")) for r in records], label=key, color=colour)
    axes.set_xlabel("thousands of images shown (kimg)")
    axes.set_ylabel("loss (mean over each tick)")
    axes.set_title(run_dir.name)
    axes.grid(alpha=0.3)
    axes.legend()
    target = run_dir / "losses.png"
    figure.tight_layout()
    save_image_atomic(figure, target)
    plt.close(figure)
    return target


def write_augment_plot(run_dir: Path, target: float = 0.6) -> Path | None:
    """augmentation.png: ADA's strength p and D's overfitting heuristic r_t over training (when ADA ran)."""
    records = [r for r in read_log(run_dir) if "ada_p" in r]
    if not records:
        return None
    from matplotlib.figure import Figure

    kimg = [r["images_seen"] / 1000 for r in records]
    figure = Figure(figsize=(8, 4.5), dpi=100)
    p_axis, r_axis = figure.subplots(2, 1, sharex=True)
    p_axis.plot(kimg, [r["ada_p"] for r in records], color="tab:purple")
    p_axis.set_ylabel("augmentation p")
    p_axis.set_title(f"{run_dir.name}: adaptive augmentation")
    r_axis.plot(kimg, [r.get("r_t", float("nan")) for r in records], color="tab:orange", label="r_t = E[sign D(real)]")
    if target:
        r_axis.axhline(target, color="k", linestyle="--", linewidth=1, label=f"target {target:g}")
    r_axis.set_ylim(-1.05, 1.05)
    r_axis.set_xlabel("thousands of images shown (kimg)")
    r_axis.legend(loc="lower right")
    for axis in (p_axis, r_axis):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    target_path = run_dir / "augmentation.png"
    save_image_atomic(figure, target_path)
    return target_path
