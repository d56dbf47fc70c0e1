"""The exported generator: `config.json` + `model.safetensors`, rebuilt from the config alone.

Everything downstream (sampling, metrics, the server) reads this folder, never training checkpoints.
Nothing in it can run code when loaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ganforge import __version__
from ganforge.errors import GanforgeError
from ganforge.models import create_generator

FORMAT = "ganforge.generator"


class ExportError(GanforgeError):
    pass


def export_generator(run: str | os.PathLike, out: str | os.PathLike | None = None, which: str = "best") -> Path:
    """Write the run's EMA generator to `out` (default RUN/generator/): `config.json`, `model.safetensors`
    and a `README.md` model card. `which`: the best checkpoint (when an evaluation chose one) or the last."""
    from ganforge.metrics.sources import SourceError, run_checkpoint

    run = Path(run)
    if not (run / "checkpoints").is_dir():
        raise ExportError(f"{run} has no checkpoint to export. Is it a ganforge run folder (runs/NNNNN-...)?")
    try:
        path, state = run_checkpoint(run, which)
    except SourceError as err:
        raise ExportError(str(err)) from None
    target = Path(out) if out else run / "generator"
    target.mkdir(parents=True, exist_ok=True)
    weights = {k: v.contiguous() for k, v in state["G_ema"].items()}
    save_file(weights, str(target / "model.safetensors"), metadata={"format": FORMAT})
    model_config = state["model_config"]
    config = {
        "format": FORMAT, "version": 1, "ganforge_version": __version__,
        "architecture": state["model_name"], "config": model_config,
        "z_dim": model_config.get("z_dim"), "resolution": model_config.get("resolution"),
        "channels": model_config.get("channels"), "classes": state.get("classes"),
        "training": {"dataset": state["config"]["data"], "images_seen": state["images_seen"],
                     "checkpoint": path.name, "loss": state["config"]["loss"],
                     "data_summary": _data_summary(Path(state["config"]["data"]))},
        "metrics": _metrics_summary(run),
    }
    (target / "config.json").write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    (target / "README.md").write_text(model_card(config, run), encoding="utf-8")
    return target


def _data_summary(data: Path) -> dict | None:
    try:
        manifest = json.loads((data / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # the dataset has moved since training: the path alone is recorded
    return {"name": data.name, "images": manifest.get("count"), "resolution": manifest.get("resolution"),
            "channels": manifest.get("channels"), "classes": manifest.get("classes")}


def _metrics_summary(run: Path) -> dict:
    """The latest value of each metric in the run's metrics log, with when and how it was measured."""
    from ganforge.metrics.evaluate import read_metrics

    summary = {}
    for record in read_metrics(run):
        for name, value in record.get("metrics", {}).items():
            summary[name] = {"value": value, "images_seen": record.get("images_seen"),
                             "protocol": record.get("protocol"), "reference": record.get("reference")}
    return summary


def model_card(config: dict, run: Path | None = None) -> str:
    """A README.md for the exported folder: what it is, what it learned from, how good, what not to do."""
    training, data = config["training"], config["training"].get("data_summary") or {}
    classes = config.get("classes")
    lines = [
        f"# Generator: {config['architecture']} at {config['resolution']} px", "",
        f"A GAN generator trained with ganforge {config['ganforge_version']}. Load it with "
        "`ganforge.Generator.from_pretrained(this_folder)` or use it with `ganforge sample this_folder`. The "
        "weights are a safetensors file: opening this folder cannot run code.", "",
        "## Training data", "",
        f"- Dataset: `{data.get('name') or training['dataset']}`"
        + (f", {data['images']} images at {data['resolution']} px, {data['channels']} channel(s)" if data else ""),
        f"- Classes: {', '.join(map(str, classes))}" if classes else "- Unconditional (no classes)",
        f"- Trained on {training['images_seen'] / 1000:.1f} thousand images shown, loss `{training['loss']}`, "
        f"checkpoint `{training['checkpoint']}`", "",
        "## Metrics", "",
    ]
    metrics = config.get("metrics") or {}
    shown = {k: v for k, v in metrics.items() if k.startswith(("fid", "kid", "pr", "dc", "is")) and not k.endswith("_std")}
    if shown:
        lines += ["| metric | value | at kimg | protocol |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['value']:.4g} | {(v['images_seen'] or 0) / 1000:.1f} | {v['protocol']} |" for k, v in shown.items()]
    else:
        lines += ["Not measured. Run `ganforge eval` on the run before exporting to record FID and KID here."]
    lines += [
        "", "## Intended use", "",
        "Making new images in the style of the training data, exploring its latent space (interpolation, "
        "breeding), and research on generative models.", "",
        "## Limitations and responsible use", "",
        "- It can only make images like its training data, with that data's gaps and biases.",
        "- A GAN can memorise training images. Before sharing, check with `ganforge audit RUN --data DATASET` "
        "that it does not reproduce them, especially for private or copyrighted collections.",
        "- Generated images are not photographs of anything real; label them as generated when you share them.",
        "",
    ]
    return "\n".join(lines)


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild an exported generator from its config and weights."""
    path = Path(path)
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path} is not an exported generator: config.json is missing or unreadable ({exc}).") from None
    if config.get("format") != FORMAT:
        raise ExportError(f"{path / 'config.json'} was not written by ganforge export.")
    try:
        weights = load_file(str(path / "model.safetensors"), device=str(device))
    except Exception as exc:
        raise ExportError(f"{path / 'model.safetensors'} is not a valid safetensors file ({exc}).") from None
    try:
        generator = create_generator(config["architecture"], config["config"])
        generator.load_state_dict(weights)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # a config and weights that do not belong together
        raise ExportError(f"{path} is damaged or was edited: its config.json and model.safetensors do not match "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0]}). Export the run again.") from None
    return generator.to(device).eval()
