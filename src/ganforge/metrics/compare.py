"""`ganforge compare RUN ...`: one table and one picture of each metric against images seen and wall time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ganforge.errors import GanforgeError
from ganforge.files import save_image_atomic


def _train_seconds_at(run: Path, images_seen: int) -> float | None:
    from ganforge.train.rundir import read_log

    ticks = [(r["images_seen"], r["train_seconds"]) for r in read_log(run) if "train_seconds" in r]
    if not ticks:
        return None
    x, y = zip(*ticks)
    return float(np.interp(images_seen, x, y))


def run_points(run: Path) -> dict[str, list[tuple[int, float, float]]]:
    """metric name -> [(images seen, training seconds, value)], from the run's metrics.jsonl."""
    from ganforge.metrics.evaluate import read_metrics

    points: dict[str, list[tuple[int, float, float]]] = {}
    for record in read_metrics(run):
        seen = record.get("images_seen")
        if seen is None:
            continue
        seconds = record.get("train_seconds")
        if seconds is None:
            seconds = _train_seconds_at(run, seen)
        for name, value in record.get("metrics", {}).items():
            if name.endswith("_std") or value is None:
                continue
            points.setdefault(name, []).append((seen, seconds if seconds is not None else np.nan, float(value)))
    return points


def _lower_is_better(name: str) -> bool:
    return name.startswith(("fid", "kid"))


def compare_runs(runs: list[str | Path], out: str | Path | None = None) -> tuple[str, Path | None]:
    """The comparison table (Markdown) and the path of `compare.png` (None when no run has metrics)."""
    runs = [Path(r) for r in runs]
    target = Path(out) if out else Path("compare.png")
    if target.suffix.lower() not in (".png", ".jpg", ".jpeg", ".svg", ".pdf"):
        raise GanforgeError(f"--out {target}: name a picture file ending in .png, .jpg, .svg or .pdf.")
    if target.is_dir():
        raise GanforgeError(f"--out {target} is a folder: name a picture file in it, e.g. {target / 'compare.png'}.")
    for run in runs:
        if not (run / "log.jsonl").is_file():
            raise GanforgeError(f"{run} is not a run folder (no log.jsonl).")
    data = {run: run_points(run) for run in runs}
    # the metrics proper; the collapse signals logged beside them belong to `ganforge health`
    names = sorted({name for points in data.values() for name in points if name.startswith(("fid", "kid", "pr", "dc", "is"))})
    if not names:
        raise GanforgeError("None of these runs has metrics yet: evaluate them with `ganforge eval RUN` "
                            "(or train with eval_minutes=N).")
    header = ["run"] + [f"{n} best (kimg)" for n in names] + [f"{n} last" for n in names]
    rows = []
    for run, points in data.items():
        cells = [run.name]
        for name in names:
            series = points.get(name, [])
            if not series:
                cells.append("-")
                continue
            pick = min if _lower_is_better(name) else max
            seen, _, value = pick(series, key=lambda p: p[2])
            cells.append(f"{value:.4g} ({seen / 1000:.1f})")
        cells += [f"{points[n][-1][2]:.4g}" if points.get(n) else "-" for n in names]
        rows.append(cells)
    table = "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                      + ["| " + " | ".join(r) + " |" for r in rows])
    _plot(data, names, target)
    return table, target


def _plot(data: dict, names: list[str], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(names), 2, figsize=(11, 3.2 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        for run, points in data.items():
            series = sorted(points.get(name, []))
            if not series:
                continue
            seen, seconds, value = (np.array(v, float) for v in zip(*series))
            axes[row, 0].plot(seen / 1000, value, "o-", label=run.name)
            axes[row, 1].plot(seconds / 60, value, "o-", label=run.name)
        direction = "lower is better" if _lower_is_better(name) else "higher is better"
        axes[row, 0].set(title=f"{name} ({direction})", xlabel="kimg (images seen / 1000)")
        axes[row, 1].set(title=f"{name} against training time", xlabel="minutes of training")
        axes[row, 0].legend(fontsize=8)
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    save_image_atomic(fig, target, dpi=80)
    plt.close(fig)
