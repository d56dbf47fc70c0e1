"""The studio folder, and the only way a request names something in it.

    FOLDER/datasets/NAME/    prepared datasets (made from uploads)
    FOLDER/runs/NNNNN-.../   training runs (each exported into RUN/generator)
    FOLDER/models/NAME/      exported models brought in by hand
    FOLDER/uploads/          what people upload, before it is prepared
    FOLDER/studio.db         answers, lineage, jobs, model settings (SQLite by default)

A request never carries a path: it names a model, run or dataset, and that name must be one of the
folder's own listing, matched exactly (`resolve`). So no `..`, absolute path, link or odd character can
reach outside the folder.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
LISTING_SECONDS = 1.0


class NotFound(LookupError):
    """A name that is not in the studio folder (the app answers 404)."""


@dataclass(frozen=True)
class ModelEntry:
    name: str  # the run's name for a run's export, the folder's name under models/
    path: Path  # the exported folder
    config: dict

    @property
    def task(self) -> str:
        return self.config.get("task", "image-generation")

    @property
    def model_id(self) -> str | None:
        return (self.config.get("provenance") or {}).get("model_id")

    def summary(self) -> dict:
        training = self.config.get("training") or {}
        return {"name": self.name, "task": self.task, "architecture": self.config.get("architecture"),
                "resolution": self.config.get("resolution"), "channels": self.config.get("channels"),
                "classes": self.config.get("classes"), "model_id": self.model_id,
                "images_seen": training.get("images_seen"), "dataset": Path(str(training.get("dataset", ""))).name,
                "public_release": bool((self.config.get("provenance") or {}).get("public")),
                "input": self._input_side()}

    def _input_side(self) -> dict | None:
        """A translator's input: its kind, and for a label map the colours to paint it with."""
        side = ((self.config.get("translation") or {}).get("directions") or {}).get("a_to_b", {}).get("input")
        if not side:
            return None
        return {"kind": side.get("kind"), "classes": side.get("classes"), "colours": side.get("colours_rgb")}


class StudioFolder:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self._models: tuple[float, dict] | None = None
        for sub in ("datasets", "runs", "models", "uploads"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    # --- listings ------------------------------------------------------------------------------------

    def models(self) -> dict[str, ModelEntry]:
        """Every exported model in the folder, by name: runs' exports, then models/ (a name is unique).
        Read again at most once a second: a request names a model, and serving hundreds a second must
        not read every config.json each time."""
        now = time.monotonic()
        if self._models is None or now - self._models[0] > LISTING_SECONDS:
            self._models = (now, self._list_models())
        return self._models[1]

    def _list_models(self) -> dict[str, ModelEntry]:
        found: dict[str, ModelEntry] = {}
        candidates = [(run.name, run / "generator") for run in sorted(self.runs.iterdir()) if run.is_dir()]
        candidates += [(p.name, p) for p in sorted((self.root / "models").iterdir()) if p.is_dir()]
        for name, path in candidates:
            if not NAME.fullmatch(name) or name in found or path.is_symlink():
                continue
            try:
                config = json.loads((path / "config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # not exported (yet), or damaged: not offered
            if isinstance(config, dict) and (path / "model.safetensors").is_file():
                found[name] = ModelEntry(name, path, config)
        return found

    def run_names(self) -> list[str]:
        return [p.name for p in sorted(self.runs.iterdir()) if p.is_dir() and NAME.fullmatch(p.name)
                and (p / "config.yaml").is_file()]

    def dataset_names(self) -> list[str]:
        return [p.name for p in sorted(self.datasets.iterdir()) if p.is_dir() and NAME.fullmatch(p.name)
                and (p / "manifest.json").is_file()]

    # --- resolving names -----------------------------------------------------------------------------

    def model(self, name: str) -> ModelEntry:
        entry = self.models().get(name) if isinstance(name, str) and NAME.fullmatch(name) else None
        if entry is None:
            raise NotFound(name)
        return entry

    def run(self, name: str) -> Path:
        if not (isinstance(name, str) and NAME.fullmatch(name)) or name not in self.run_names():
            raise NotFound(name)
        return self.runs / name

    def dataset(self, name: str) -> Path:
        if not (isinstance(name, str) and NAME.fullmatch(name)) or name not in self.dataset_names():
            raise NotFound(name)
        return self.datasets / name

    def new_dataset_name(self, wanted: str) -> str:
        """A free dataset name from what the person called it: safe characters only, numbered if taken."""
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", wanted).strip("-._")[:60] or "dataset"
        name, k = base, 2
        while (self.datasets / name).exists():
            name, k = f"{base}-{k}", k + 1
        return name
