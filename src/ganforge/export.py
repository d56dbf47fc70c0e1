"""The exported generator: `config.json` + `model.safetensors`, rebuilt from the config alone.

Everything downstream (sampling, metrics, the server) reads this folder, never training checkpoints.
Nothing in it can run code when loaded. `config.json` records the SHA-256 of the other files, and
loading checks the weights against it, so a damaged or altered file is refused rather than producing
black images. Export never overwrites a file it did not write: into an existing folder it writes only
when that folder holds an earlier export, untouched since.
"""

from __future__ import annotations

import json
import numbers
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from ganforge import __version__
from ganforge.errors import GeneratorError
from ganforge.files import TMP_SUFFIX, file_sha256, write_bytes_atomic, write_text_atomic
from ganforge.models import MODELS, TRANSLATORS, create_generator
from ganforge.train.checkpoint import CheckpointError, run_checkpoint
from ganforge.train.rundir import read_metrics_log

FORMAT = "ganforge.generator"
VERSION = 3  # 2: config.json lists the other files' SHA-256 digests; 3: the task and the named components
WEIGHTS, CARD, CONFIG = "model.safetensors", "README.md", "config.json"


class ExportError(GeneratorError):
    pass


def export_generator(run: str | os.PathLike, out: str | os.PathLike | None = None, which: str = "best",
                     mark: bool = True) -> Path:
    """Write the run's EMA generator to `out` (default RUN/generator/): `config.json`, `model.safetensors`
    and a `README.md` model card. `which`: the best checkpoint (when an evaluation chose one) or the last.

    The model's identity (an id and a signing key, see `provenance.sign`) is the run's, the same for every
    export of it, and is registered on this machine. `mark=False`: its images carry no provenance mark (the owner's choice for a private
    model; `ganforge release --public` turns it back on)."""
    from ganforge.provenance.sign import register, run_identity

    run = Path(run)
    if not (run / "checkpoints").is_dir():
        raise ExportError(f"{run} has no checkpoint to export. Is it a ganforge run folder (runs/NNNNN-...)?")
    try:
        path, state = run_checkpoint(run, which)
    except CheckpointError as err:
        raise ExportError(str(err)) from None
    target = Path(out) if out else run / "generator"
    _check_target(target)
    target.mkdir(parents=True, exist_ok=True)
    weights = {k: v.contiguous() for k, v in state["G_ema"].items()}
    write_bytes_atomic(target / WEIGHTS, save(weights, metadata={"format": FORMAT}))
    model_config, name = state["model_config"], state["model_name"]
    module = create_generator(name, model_config)
    translator = name in TRANSLATORS
    config = {
        "format": FORMAT, "version": VERSION, "ganforge_version": __version__,
        "task": "image-to-image" if translator else task_of(model_config), "architecture": name,
        "class_name": (TRANSLATORS if translator else MODELS)[name].generator.__name__,
        "components": components_of(module),
        "config": model_config,
        "z_dim": model_config.get("z_dim"), "resolution": model_config.get("resolution"),
        "channels": model_config.get("channels"), "classes": state.get("classes"),
        "training": {"dataset": state["config"]["data"], "images_seen": state["images_seen"],
                     "checkpoint": path.name, "loss": state["config"]["loss"],
                     "data_summary": _data_summary(Path(state["config"]["data"]))},
        "metrics": _metrics_summary(run),
    }
    identity = run_identity(run)
    config["provenance"] = {"model_id": identity.model_id, "public_key": identity.public_key, "mark": bool(mark),
                            "public": False, "name": f"{run.name}/{target.name}",
                            "fingerprint": bool(state["config"].get("fingerprint", False))}
    if translator:
        config["translation"] = translation_of(module, model_config, Path(state["config"]["data"]))
    write_text_atomic(target / CARD, (translator_card if translator else model_card)(config, run))
    config["files"] = {name: file_sha256(target / name) for name in (WEIGHTS, CARD)}
    write_text_atomic(target / CONFIG, json.dumps(config, indent=1) + "\n")  # last: the export is complete
    register(identity.model_id, identity.public_key, config["provenance"]["name"], target, run=str(run.resolve()),
             fingerprint=config["provenance"]["fingerprint"])
    return target


def task_of(model_config: dict) -> str:
    """What the exported model does, in the words of the Hugging Face hub's task names where one fits."""
    if not model_config.get("resolution"):
        return "point-generation"
    return "class-conditional-image-generation" if model_config.get("num_classes") else "unconditional-image-generation"


def translation_of(module: torch.nn.Module, model_config: dict, data: Path) -> dict:
    """What an image-to-image model takes and gives, per direction: A's channels (or K label classes, with
    the colours a map is painted in), B's channels, the scale (super-resolution), the multiple an input's
    sides are padded to, and how A was made when the pairs were derived (`prepare --derive`)."""
    classes = model_config.get("input_classes") or 0
    a_side = {"kind": "labels", "classes": classes} if classes else {"kind": "image", "channels": model_config.get("in_channels")}
    b_side = {"kind": "image", "channels": model_config.get("channels")}
    directions = {"a_to_b": {"input": a_side, "output": b_side}}
    if "b_to_a" in getattr(module, "components", ()):
        directions["b_to_a"] = {"input": b_side, "output": a_side}
    derive = None
    try:
        derive = json.loads((data / "manifest.json").read_text(encoding="utf-8")).get("derive")
    except (OSError, ValueError):
        pass  # the dataset has moved since training: a labels model then takes index maps only
    if classes and derive and derive.get("colours_rgb"):
        a_side["colours_rgb"], a_side["centres_lab"] = derive["colours_rgb"], derive.get("centres_lab")
    return {"directions": directions, "scale": int(getattr(module, "scale", 1)),
            "size_multiple": int(getattr(module, "size_multiple", 1)),
            "fully_convolutional": bool(getattr(module, "fully_convolutional", True)), "derive": derive}


def components_of(generator: torch.nn.Module) -> dict:
    """The named parts of the generator and where their weights sit in model.safetensors (as diffusers'
    model index names a pipeline's parts): StyleGAN2's mapping and synthesis networks; one part otherwise."""
    names = getattr(generator, "components", ())
    if not names:
        return {"generator": {"class": type(generator).__name__, "prefix": "",
                              "parameters": sum(p.numel() for p in generator.parameters())}}
    return {name: {"class": type(getattr(generator, name)).__name__, "prefix": f"{name}.",
                   "parameters": sum(p.numel() for p in getattr(generator, name).parameters())} for name in names}


def _check_target(target: Path) -> None:
    """Refuse a folder holding anything ganforge did not write there: export must never destroy a user's file."""
    if not target.exists():
        return
    if not target.is_dir():
        raise ExportError(f"{target} exists and is not a folder. Choose another --out.")
    ours = {WEIGHTS, CARD, CONFIG}
    names = {p.name for p in target.iterdir()}
    names -= {n + TMP_SUFFIX for n in ours}  # left by an export that was killed: ganforge's own
    # written beside an export by `ganforge directions`; kept (they record the weights they were found for,
    # and are refused once those change, with the command to find them again)
    names -= {"directions.json", "directions.safetensors", "directions.png", "directions"}
    if not names:
        return
    foreign = sorted(names - ours)
    hint = " Choose a new or empty folder with --out; ganforge never overwrites files it did not write."
    if foreign:
        raise ExportError(f"{target} already holds files ganforge did not write ({', '.join(foreign[:3])}"
                          f"{', ...' if len(foreign) > 3 else ''}).{hint}")
    try:
        earlier = json.loads((target / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        earlier = None
    if not isinstance(earlier, dict) or earlier.get("format") != FORMAT or not isinstance(earlier.get("files"), dict):
        raise ExportError(f"{target} already holds {', '.join(sorted(names))}, which ganforge did not write "
                          f"(or which an older ganforge wrote without checksums).{hint}")
    for name in sorted(names - {CONFIG}):
        if earlier["files"].get(name) != file_sha256(target / name):
            raise ExportError(f"{target / name} was changed after it was exported; exporting again would "
                              f"overwrite those changes.{hint}")


def _data_summary(data: Path) -> dict | None:
    try:
        manifest = json.loads((data / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # the dataset has moved since training: the path alone is recorded
    return {"name": data.name, "images": manifest.get("count"), "resolution": manifest.get("resolution"),
            "channels": manifest.get("channels"), "classes": manifest.get("classes")}


def _metrics_summary(run: Path) -> dict:
    """The latest value of each metric in the run's metrics log, with when and how it was measured."""
    summary = {}
    for record in read_metrics_log(run):
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
        *_attribute_lines(config.get("config") or {}),
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


def translator_card(config: dict, run: Path | None = None) -> str:
    """A README.md for an exported image-to-image model: what it turns into what, from which data, how good."""
    training, data = config["training"], config["training"].get("data_summary") or {}
    translation = config["translation"]
    derive = (translation.get("derive") or {}).get("text")
    task = {"gray": "colourises grey images", "edges": "turns edge drawings into images",
            "sketch": "turns pencil sketches into images", "labels": "paints images from label maps",
            "downscale": f"upscales images {translation['scale']} times"}.get(derive and derive.split(":")[0],
                                                                              "translates images of side A into side B")
    both = " and back (B -> A)" if "b_to_a" in translation["directions"] else ""
    lines = [
        f"# Image-to-image model: {config['architecture']}", "",
        f"An image-to-image model trained with ganforge {config['ganforge_version']}: it {task}{both}. Use it with "
        "`ganforge translate this_folder INPUT... --out DIR` or `ganforge.Translator.from_pretrained(this_folder)`. "
        "The weights are a safetensors file: opening this folder cannot run code. Output is deterministic: no "
        "dropout and no batch statistics at inference.", "",
        "## Training data", "",
        f"- Dataset: `{data.get('name') or training['dataset']}`"
        + (f", {data['images']} pairs at {data['resolution']} px" if data else "")
        + (f", side A derived with `--derive {derive}`" if derive else ""),
        f"- Trained on {training['images_seen'] / 1000:.1f} thousand images shown, loss `{training['loss']}`, "
        f"checkpoint `{training['checkpoint']}`", "",
        "## Limitations and responsible use", "",
        "- It learned from its training pairs only: on very different images it invents plausible but wrong "
        "detail (colours, textures). Do not use its output as evidence of what an original looked like.",
        "- Measure it on held-out pairs with `ganforge eval this_folder --data PAIRS` before relying on it.", "",
    ]
    return "\n".join(lines)


def _attribute_lines(model_config: dict) -> list[str]:
    """The card's line on attribute conditioning: each attribute's kind and the values it saw in training."""
    described = []
    for spec in model_config.get("attributes") or ():
        if spec.get("kind") == "categorical":
            described.append(f"`{spec['name']}` ({' | '.join(map(str, spec.get('values') or ()))})")
        else:
            seen = f", {spec['low']:g} to {spec['high']:g} in training" if spec.get("low") is not None else ""
            described.append(f"`{spec['name']}` (a number{seen})")
    if not described:
        return []
    return [f"- Attributes (set them raw, e.g. `ganforge edit GEN --attribute NAME=START..STOP`): {', '.join(described)}"]


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild an exported generator from its config and weights."""
    return load_exported(path, device)[0]


def load_exported(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """The generator and its config.json, each checked: the format and version, the classes, the weights'
    digest, and that the weights fit the architecture."""
    path = Path(path)
    config = read_config(path)
    _verify_files(path, config)
    try:
        weights = load_file(str(path / WEIGHTS), device=str(device))
    except Exception as exc:
        raise ExportError(f"{path / WEIGHTS} is not a valid safetensors file ({exc}).") from None
    try:
        generator = create_generator(config["architecture"], config["config"])
        generator.load_state_dict(weights)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # a config and weights that do not belong together
        raise ExportError(f"{path} is damaged or was edited: its config.json and model.safetensors do not match "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0]}). Export the run again.") from None
    return generator.to(device).eval(), config


def read_config(path: Path) -> dict:
    """An export's config.json, refused when it is not ganforge's, from a newer ganforge, or has edited classes."""
    try:
        config = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path} is not an exported generator: config.json is missing or unreadable ({exc}).") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ExportError(f"{path / CONFIG} was not written by ganforge export.")
    _check_version(path, config)
    _check_classes(path, config)
    return config


def _check_version(path: Path, config: dict) -> None:
    """Refuse an export written by a newer ganforge (a format this one may misread)."""
    version = config.get("version")
    if isinstance(version, numbers.Real) and not isinstance(version, bool) and version > VERSION:
        raise ExportError(f"{path / 'config.json'} was made by a newer ganforge (export version {version}; this "
                          f"one reads up to {VERSION}): upgrade ganforge (pip install -U ganforge) to use it.")


def _check_classes(path: Path, config: dict) -> None:
    """config.json's "classes": null, or a list of strings, one per class of a conditional generator."""
    classes = config.get("classes")
    model = config.get("config") if isinstance(config.get("config"), dict) else {}
    count = model.get("num_classes", 0)
    if classes is None:
        return
    names_ok = isinstance(classes, list) and all(isinstance(c, str) for c in classes)
    if names_ok and (not count or len(classes) == count):
        return
    want = f"a list of {count} class names" if count else "a list of class names"
    got = f"a list of {len(classes)}" if isinstance(classes, list) and names_ok else f"{classes!r}"[:60]
    raise ExportError(f"{path / 'config.json'} was edited: its \"classes\" is {got}, not {want} (or null). "
                      "Export the run again (ganforge export RUN).")


def _verify_files(path: Path, config: dict) -> None:
    """Check the weights against the digest recorded at export (exports before version 2 have none)."""
    recorded = (config.get("files") or {}).get(WEIGHTS)
    if config.get("version", 1) >= 2 and recorded is None:
        raise ExportError(f"{path / CONFIG} lists no checksum for {WEIGHTS}: it was edited. Export the run again.")
    if recorded is None:
        return
    try:
        actual = file_sha256(path / WEIGHTS)
    except OSError as exc:
        raise ExportError(f"{path / WEIGHTS} cannot be read ({exc.strerror or exc}). Export the run again.") from None
    if actual != recorded:
        raise ExportError(f"{path / WEIGHTS} is damaged or was replaced: its SHA-256 does not match the one recorded "
                          f"in {CONFIG} at export. Export the run again, or copy the folder again from its source.")
