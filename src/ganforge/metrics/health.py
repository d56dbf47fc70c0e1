"""`ganforge health RUN`: read a run's logs and answer "stop, continue, or change this?" in plain words.

Signals, each with the threshold that trips it:
- the discriminator overpowering the generator: ADA's overfitting heuristic r_t = E[sign(D(real))]
  above 0.6 (Karras et al. 2020 keep it at 0.6) together with D telling real from fake over 90 % of
  the time, over the last quarter of training;
- vanishing gradients: the generator's gradient norm down to under 1 % of its early level;
- collapse: generated samples landing on under half as many distinct real neighbours as real images
  do, or their feature diversity under 60 % of the real images';
- oscillation without progress: no better KID over those evaluations while the generator's
  loss swings widely (its coefficient of variation over recent ticks above 0.5);
- divergence: the median loss magnitude over recent ticks above 1e3 (1e6 for wgan-gp): a working GAN's
  losses are of order 1 (a loss of 1e3 means logits of 1e3, far past any useful gradient), a WGAN
  critic's of order 100;
- a dead generator: its fixed-seed samples no longer differ (spread across samples under 0.01 of the
  [-1, 1] range) or nearly all their pixels are pinned at black or white (over 95 %);
- progress itself: KID still falling (continue) or no better KID for `patience` evaluations (the
  run's setting, else three): stop, and use the best checkpoint.
The report is `health.md` with `health.png` (four panels) beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ganforge.errors import GanforgeError
from ganforge.files import save_image_atomic, write_text_atomic


@dataclass
class Finding:
    kind: str  # "change", "stop", "continue" or "note"
    title: str
    detail: str


@dataclass
class Diagnosis:
    verdict: str  # "change", "stop" or "continue"
    findings: list[Finding] = field(default_factory=list)
    kid_name: str | None = None
    best: tuple[float, int] | None = None  # (KID, images seen)
    ticks: list[dict] = field(default_factory=list, repr=False)  # the log's tick records it was drawn from
    evals: list[dict] = field(default_factory=list, repr=False)  # and the metrics records

    def summary(self) -> str:
        words = {"change": "Change something: see below.", "stop": "Stop: it is no longer improving.",
                 "continue": "Continue: it is still improving, or too early to tell."}
        return words[self.verdict]


def _series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [(r["images_seen"], r[key]) for r in records if key in r and r.get(key) is not None]
    if not rows:
        return np.zeros(0), np.zeros(0)
    x, y = zip(*rows)
    return np.asarray(x, float), np.asarray(y, float)


def _kid_key(evals: list[dict]) -> str | None:
    keys = [k for r in evals for k in r.get("metrics", {}) if k.startswith("kid") and not k.endswith("_std")]
    return keys[-1] if keys else None


def diagnose(run: str | Path) -> Diagnosis:
    from ganforge.metrics.evaluate import read_metrics
    from ganforge.train.rundir import read_log

    run = Path(run)
    if not (run / "log.jsonl").is_file():
        raise GanforgeError(f"{run} has no log.jsonl: is it a ganforge run folder (runs/NNNNN-...)?")
    log = read_log(run)  # read once: a malformed line is warned about once
    ticks = [r for r in log if "loss_D" in r]
    evals = [r for r in read_metrics(run) if r.get("images_seen") is not None]
    findings: list[Finding] = []
    if len(ticks) < 4:
        return Diagnosis("continue", [Finding("note", "Too early to tell",
                                              f"Only {len(ticks)} ticks logged; train longer, then ask again.")],
                         ticks=ticks, evals=evals)
    recent = ticks[-max(len(ticks) // 4, 2):]
    early = ticks[: max(len(ticks) // 4, 2)]
    findings += _divergence(recent, run)
    findings += _dead_generator(recent)
    findings += _discriminator(recent)
    findings += _gradients(early, recent)
    findings += [Finding("note", "Training was unstable",
                         f"{sum(1 for r in log if r.get('event') == 'rollback')} rollback(s) after "
                         "non-finite losses.")] if any(r.get("event") == "rollback" for r in log) else []
    kid_name = _kid_key(evals)
    best = None
    if kid_name is None:
        findings.append(Finding("note", "No quality measurements yet",
                                "No KID was computed during training (eval_minutes=0, or the run was shorter than "
                                f"eval_minutes). Measure it now with `ganforge eval {run}`."))
    else:
        measured = [(r["images_seen"], r["metrics"][kid_name], r["metrics"]) for r in evals if kid_name in r["metrics"]]
        best_at = int(np.argmin([m[1] for m in measured]))
        best = (measured[best_at][1], measured[best_at][0])
        findings += _collapse(measured[-1][2])
        findings += _progress(measured, best_at, kid_name, recent, _patience(run))
    kinds = {f.kind for f in findings}
    verdict = "change" if "change" in kinds else "stop" if "stop" in kinds else "continue"
    return Diagnosis(verdict, findings, kid_name, best, ticks=ticks, evals=evals)


DIVERGED = {"wgan-gp": 1e6}  # median |loss| over recent ticks, by loss
DIVERGED_OTHERWISE = 1e3
DEAD_SPREAD = 0.01  # spread of the fixed-seed samples, in units of the [-1, 1] output range
DEAD_SATURATED = 0.95  # share of pixels at black or white


def _divergence(recent: list[dict], run: Path) -> list[Finding]:
    size = max((np.median([abs(r[k]) for r in recent if k in r] or [0.0]) for k in ("loss_G", "loss_D")), default=0.0)
    settings = _settings(run, ("lr_g", "lr_d", "loss"))
    if size > DIVERGED.get(settings.get("loss"), DIVERGED_OTHERWISE):
        rates = {k: v for k, v in settings.items() if k != "loss"}
        shown = ", ".join(f"{k}={v:g}" for k, v in rates.items() if isinstance(v, (int, float)))
        return [Finding("change", "Training has diverged",
                        f"The losses have grown to about {size:.2g}, where a working GAN's stay near 1. The learning "
                        f"rates are probably too high{f' ({shown})' if shown else ''}: start a new run with about "
                        "2e-4, or with an R1 penalty (r1_gamma=1). Later checkpoints of this run are not worth using.")]
    return []


def _dead_generator(recent: list[dict]) -> list[Finding]:
    spread = np.median([r["G_spread"] for r in recent if "G_spread" in r] or [np.nan])
    saturated = np.median([r["G_saturated"] for r in recent if "G_saturated" in r] or [np.nan])
    if spread < DEAD_SPREAD or saturated > DEAD_SATURATED:
        what = (f"{saturated:.0%} of the pixels of its samples are pinned at black or white" if saturated > DEAD_SATURATED
                else f"its samples no longer differ from one another (spread {spread:.3g})")
        return [Finding("change", "The generator is dead",
                        f"Lately {what}: it has stopped producing images. This does not recover; start a new run with "
                        "lower learning rates (about 2e-4), loss=hinge, or an R1 penalty (r1_gamma=1), and keep an "
                        "earlier checkpoint if one looked good (see grids/).")]
    return []


def _discriminator(recent: list[dict]) -> list[Finding]:
    r_t = np.mean([r["r_t"] for r in recent if "r_t" in r] or [np.nan])
    accuracy = np.mean([r["D_accuracy"] for r in recent if "D_accuracy" in r] or [np.nan])
    if r_t > 0.6 and accuracy > 0.9:
        return [Finding("change", "The discriminator is overpowering the generator",
                        f"Lately D calls {accuracy:.0%} of images correctly and r_t = E[sign(D(real))] is {r_t:.2f} "
                        "(above 0.6, ADA's sign of a discriminator memorising the training set). With a small "
                        "dataset, add augmentation (augment=color,translation,cutout); otherwise an R1 penalty "
                        "(r1_gamma=1) or a lower lr_d.")]
    return []


def _gradients(early: list[dict], recent: list[dict]) -> list[Finding]:
    before = np.median([r["grad_G"] for r in early if "grad_G" in r] or [np.nan])
    now = np.median([r["grad_G"] for r in recent if "grad_G" in r] or [np.nan])
    if before > 0 and now < 0.01 * before:
        return [Finding("change", "The generator's gradients have vanished",
                        f"Its gradient norm fell from {before:.3g} to {now:.3g}: D rejects every sample so "
                        "confidently that G learns nothing. The original minimax loss does this; use "
                        "loss=nonsaturating or loss=hinge, or lower lr_d.")]
    return []


def _collapse(latest: dict) -> list[Finding]:
    spread, diversity = latest.get("distinct_neighbours"), latest.get("diversity")
    if spread is not None and (spread < 0.5 or (diversity is not None and diversity < 0.6)):
        return [Finding("change", "The samples look collapsed",
                        f"Samples land on {spread:.0%} as many distinct real neighbours as real images do, and "
                        f"their diversity is {diversity:.0%} of the real images'. Few kinds of image are being "
                        "produced. Try PacGAN packing for D (model.pack=2 where the model has it), a lower "
                        "learning rate, or an R1 penalty (r1_gamma=1).")]
    return []


def _settings(run: Path, keys: tuple[str, ...]) -> dict:
    """Some of the run's settings from its config.yaml ({} when it cannot be read)."""
    import yaml

    try:
        config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    return {k: config[k] for k in keys if k in config} if isinstance(config, dict) else {}


def _patience(run: Path) -> int:
    """The run's own patience when it set one, else 3 evaluations."""
    value = _settings(run, ("patience",)).get("patience")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 3


def _progress(measured: list[tuple], best_at: int, kid_name: str, recent: list[dict], patience: int) -> list[Finding]:
    since_best = len(measured) - 1 - best_at
    best_kid, best_seen = measured[best_at][1], measured[best_at][0]
    losses = np.array([r["loss_G"] for r in recent if "loss_G" in r])
    swing = losses.std() / max(abs(losses.mean()), 1e-8) if len(losses) > 1 else 0.0
    if since_best >= patience and swing > 0.5:
        return [Finding("change", "Oscillating without progress",
                        f"No better {kid_name} in the last {since_best} evaluations while the generator's loss "
                        f"swings by {swing:.0%} of its mean. Lower both learning rates (lr_g, lr_d) by 2-4x, or "
                        f"stop and keep the best checkpoint ({best_kid:.4f} at {best_seen / 1000:.1f} kimg).")]
    if since_best >= patience:
        return [Finding("stop", "No longer improving",
                        f"The best {kid_name} ({best_kid:.4f}) was at {best_seen / 1000:.1f} kimg, {since_best} "
                        "evaluations ago. It is saved as checkpoints/best.pt: `ganforge eval RUN` and "
                        "`ganforge export` use it.")]
    if len(measured) >= 2 and since_best == 0:
        return [Finding("continue", "Still improving",
                        f"{kid_name} went from {measured[-2][1]:.4f} to {best_kid:.4f} at the latest evaluation.")]
    return [Finding("continue", "Keep watching",
                    f"Best {kid_name} so far {best_kid:.4f} at {best_seen / 1000:.1f} kimg; {len(measured)} evaluation(s).")]


def write_health_report(run: str | Path, out: str | Path | None = None) -> tuple[Diagnosis, Path]:
    """Diagnose the run and write health.md + health.png (into the run folder by default)."""
    run = Path(run)
    if not run.exists():
        raise GanforgeError(f"{run} does not exist: give a run folder, e.g. runs/00003-...")
    if not run.is_dir():
        raise GanforgeError(f"{run} is not a run folder: give the folder itself (runs/NNNNN-...), not a file in it.")
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise GanforgeError(f"--out {out} is a file: give a folder for health.md and health.png.")
    out = Path(out) if out else run
    diagnosis = diagnose(run)  # first: a mistyped run makes no folder
    out.mkdir(parents=True, exist_ok=True)
    picture = _plot(run, out / "health.png", diagnosis)
    lines = [f"# Health of {run.name}", "", f"**{diagnosis.summary()}**", ""]
    if diagnosis.best:
        lines += [f"Best {diagnosis.kid_name}: {diagnosis.best[0]:.4f} at {diagnosis.best[1] / 1000:.1f} kimg "
                  "(checkpoints/best.pt).", ""]
    for f in diagnosis.findings:
        lines += [f"## {f.title} ({f.kind})", "", f.detail, ""]
    if picture:
        lines += [f"![training health]({picture.name})", ""]
    lines += ["Thresholds: r_t > 0.6 with D accuracy > 90 % (overpowering); gradient norm under 1 % of its early "
              "level (vanishing); distinct neighbours under 50 % or diversity under 60 % of real data (collapse); "
              "no better KID for `patience` evaluations, else 3 (stop), with the G loss varying by over 50 % (oscillation).", ""]
    write_text_atomic(out / "health.md", "\n".join(lines))
    return diagnosis, out / "health.md"


def _plot(run: Path, target: Path, diagnosis: Diagnosis) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ticks = diagnosis.ticks
    if not ticks:
        return None
    evals = [{"images_seen": r["images_seen"], **r["metrics"]} for r in diagnosis.evals]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    ax = axes[0, 0]
    if diagnosis.kid_name:
        x, y = _series(evals, diagnosis.kid_name)
        ax.plot(x / 1000, y, "o-")
        if diagnosis.best:
            ax.plot(diagnosis.best[1] / 1000, diagnosis.best[0], "r*", markersize=14, label="best")
            ax.legend()
    ax.set_title(f"quality: {diagnosis.kid_name or 'no KID yet'} (lower is better)")
    ax = axes[0, 1]
    for key in ("D_accuracy", "r_t"):
        x, y = _series(ticks, key)
        ax.plot(x / 1000, y, label=key)
    ax.axhline(0.6, color="grey", linestyle="--", linewidth=1, label="r_t = 0.6")
    ax.set_title("discriminator: accuracy and r_t")
    ax.legend()
    ax = axes[1, 0]
    for key in ("loss_D", "loss_G"):
        x, y = _series(ticks, key)
        ax.plot(x / 1000, y, label=key)
    ax.set_title("losses")
    ax.legend()
    ax = axes[1, 1]
    x, y = _series(ticks, "grad_G")
    if len(y):
        ax.semilogy(x / 1000, np.maximum(y, 1e-12), label="G gradient norm")
    for key in ("distinct_neighbours", "diversity"):
        ex, ey = _series(evals, key)
        if len(ey):
            ax.plot(ex / 1000, ey, "o-", label=key)
    ax.set_title("gradients and collapse signals")
    ax.legend()
    for a in axes.flat:
        a.set_xlabel("kimg")
    fig.tight_layout()
    save_image_atomic(fig, target, dpi=80)
    plt.close(fig)
    return target
