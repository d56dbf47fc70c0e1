"""Editing an attribute of a generated image: the same latent (so the same identity) at a row of values.

    gen = Generator.from_pretrained("runs/00007-mnist-dcgan/generator")
    name, start, stop = parse_attribute_edit("thickness=1..4")
    values = edit_values(gen, name, start, stop, steps=9)      # 1.0, 1.375, ... 4.0
    images = attribute_edit(gen, 7, name, values)               # nine PIL images, seed 7 throughout

The generator must have been trained on a dataset prepared with `--attributes`; its config.json lists
each attribute with its kind and statistics, so values are given raw (thickness 2.5, hair "blond"), as
in the attribute file. Attributes not edited stay at the training data's average unless `others` sets
them. Values outside the range seen in training are allowed: how far the generator follows is for the
eye (or a benchmark) to judge.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ganforge.errors import GeneratorError
from ganforge.generator import Generator, check_truncation
from ganforge.models.layers import AttributeSpec, check_attributes
from ganforge.models.sampling import synthesize

_EDIT = re.compile(r"^\s*([^=]+?)\s*=\s*(.+?)\s*(?:\.\.\s*(.+?)\s*)?$")
MAX_STEPS = 256


class AttributeEditError(GeneratorError):
    """An attribute edit the generator cannot make: no such attribute, a value of the wrong kind."""


def attribute_specs(gen: Generator) -> tuple[AttributeSpec, ...]:
    """The attributes `gen` is conditioned on, in the order its models take them (empty when none)."""
    return check_attributes("exported generator", gen.config["config"].get("attributes") or ())


def parse_attribute_edit(text: str) -> tuple[str, float | str, float | str]:
    """"thickness=1..4" -> ("thickness", 1.0, 4.0); "hair=black..blond" -> ("hair", "black", "blond");
    "thickness=2.5" (one value) -> ("thickness", 2.5, 2.5). Numbers become floats, anything else stays text."""
    match = _EDIT.match(text or "")
    if not match:
        raise AttributeEditError(f"--attribute {text!r} is not NAME=START..STOP: write for example thickness=1..4 "
                                 "(or hair=black..blond for a categorical attribute).")
    name, start, stop = match.group(1), match.group(2), match.group(3) or match.group(2)
    return name, _number_or_text(start), _number_or_text(stop)


def _number_or_text(text: str) -> float | str:
    try:
        value = float(text)
    except ValueError:
        return text
    if not math.isfinite(value):
        raise AttributeEditError(f"{text!r} is not a value an attribute can take: give a finite number.")
    return value


def _spec(gen: Generator, name: str) -> tuple[int, AttributeSpec]:
    specs = attribute_specs(gen)
    if not specs:
        raise AttributeEditError("This generator was not trained with attributes, so there is none to edit: "
                                 "prepare the dataset with --attributes FILE and train on it.")
    for index, spec in enumerate(specs):
        if spec.name == name:
            return index, spec
    raise AttributeEditError(f"Unknown attribute {name!r}; this generator's are: "
                             f"{', '.join(_describe(s) for s in specs)}.")


def _describe(spec: AttributeSpec) -> str:
    if spec.kind == "categorical":
        return f"{spec.name} ({' | '.join(spec.values)})"
    seen = f", {spec.low:g}..{spec.high:g} in training" if spec.low is not None and spec.high is not None else ""
    return f"{spec.name} (a number{seen})"


def _raw(spec: AttributeSpec, value) -> float:
    """A value as the model takes it: a continuous attribute's number, a categorical one's value index."""
    if spec.kind == "continuous":
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise AttributeEditError(f"{spec.name} is a number, not {value!r}: give values such as "
                                     f"{spec.name}={spec.mean - spec.std:.3g}..{spec.mean + spec.std:.3g}.")
        return float(value)
    for text in (value, _integral_text(value)):
        if text in spec.values:
            return float(spec.values.index(text))
    raise AttributeEditError(f"{spec.name} has no value {value!r}; its values are {', '.join(spec.values)}.")


def _integral_text(value) -> str | None:
    """3.0 -> "3", so a categorical value written as a number finds its name."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
        return str(int(value))
    return None


def edit_values(gen: Generator, name: str, start, stop, steps: int) -> list:
    """The values of a strip from `start` to `stop`: `steps` evenly spaced numbers for a continuous
    attribute; for a categorical one, each of its values from `start` to `stop` in the generator's order
    (then `steps` is not used)."""
    _, spec = _spec(gen, name)
    if spec.kind == "categorical":
        first, last = int(_raw(spec, start)), int(_raw(spec, stop))
        step = 1 if last >= first else -1
        return [spec.values[i] for i in range(first, last + step, step)]
    _raw(spec, start), _raw(spec, stop)
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or not 1 <= steps <= MAX_STEPS:
        raise AttributeEditError(f"--steps {steps!r}: use a whole number from 2 to {MAX_STEPS} (9 is usual).")
    if steps == 1 and start != stop:
        raise AttributeEditError(f"--steps 1 cannot go from {start:g} to {stop:g}: use at least 2 steps.")
    return [float(v) for v in np.linspace(float(start), float(stop), steps)]


def attribute_vectors(gen: Generator, name: str, values: Sequence, others: dict | None = None) -> torch.Tensor:
    """float (len(values), A) raw attributes: `name` at each of `values`, the others from `others` or (NaN)
    at the data's average."""
    index, _ = _spec(gen, name)
    specs = attribute_specs(gen)
    base = [math.nan] * len(specs)
    for other, value in (others or {}).items():
        if other == name:
            raise AttributeEditError(f"{name} is the attribute being edited; leave it out of the others.")
        j, spec = _spec(gen, other)
        base[j] = _raw(spec, value)
    rows = []
    for value in values:
        row = list(base)
        row[index] = _raw(specs[index], value)
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float32)


@torch.inference_mode()
def attribute_edit(gen: Generator, seed: int, name: str, values: Sequence, *, truncation: float = 1.0,
                   others: dict | None = None, label: int | str | None = None) -> list[Image.Image]:
    """One image per value of attribute `name`, all from seed `seed`'s latent: the identity stays while
    the attribute changes. `values` are raw (numbers, or a categorical attribute's value names); `others`
    sets other attributes by name (the rest stay at the data's average); `label` picks the class of a
    class-conditional generator (by default the seed's, as `sample` does)."""
    values = list(values)
    if not values:
        raise AttributeEditError("No values to edit through: give at least one (e.g. thickness=1..4).")
    if len(values) > MAX_STEPS:
        raise AttributeEditError(f"{len(values)} values make a strip too long to see: use at most {MAX_STEPS}.")
    check_truncation(truncation)
    attributes = attribute_vectors(gen, name, values, others)  # (S, A)
    z = gen.latents([seed]).expand(len(values), -1)  # (S, z_dim): the same latent in every image
    labels = gen.labels_for(len(values), label, seeds=[seed] * len(values))
    x = synthesize(gen.module, z, labels, truncation=truncation, attributes=attributes)  # (S, C, H, W)
    return gen.to_images(x, [seed] * len(values))  # edits of one seed carry that seed
