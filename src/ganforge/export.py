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
from ganforge.train import checkpoint as ckpt

FORMAT = "ganforge.generator"


class ExportError(GanforgeError):
    pass


def export_generator(run: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write the run's EMA generator (latest checkpoint) to `out` (default RUN/generator/)."""
    run = Path(run)
    found = ckpt.latest_loadable(run / "checkpoints")
    if found is None:
        raise ExportError(f"{run} has no checkpoint to export. Is it a ganforge run folder (runs/NNNNN-...)?")
    path, state = found
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
                     "checkpoint": path.name, "loss": state["config"]["loss"]},
    }
    (target / "config.json").write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    return target


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
    generator = create_generator(config["architecture"], config["config"])
    generator.load_state_dict(weights)
    return generator.to(device).eval()
