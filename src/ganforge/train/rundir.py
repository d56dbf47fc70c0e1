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
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from PIL import Image

_RUN = re.compile(r"^(\d{5})-")


def new_run_dir(runs: Path, description: str) -> Path:
    runs.mkdir(parents=True, exist_ok=True)
    numbers = [int(m.group(1)) for p in runs.iterdir() if (m := _RUN.match(p.name))]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", description).strip("-") or "run"
    path = runs / f"{max(numbers, default=-1) + 1:05d}-{safe}"
    path.mkdir()
    return path


class RunLog:
    """Scalars per tick, to log.jsonl and (when TensorBoard is installed) to TensorBoard."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "log.jsonl"
        self.tensorboard = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(run_dir))
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


def read_log(run_dir: Path) -> list[dict]:
    return read_jsonl(Path(run_dir) / "log.jsonl")


def read_jsonl(path: Path) -> list[dict]:
    """The records of a jsonl file (none when it is missing)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a crash: the rest of the log is still good
    return records


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
    frames[0].save(target, save_all=True, append_images=frames[1:], duration=durations, loop=0)
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
    figure.savefig(target)
    plt.close(figure)
    return target
