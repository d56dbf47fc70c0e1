"""A network's config fields for a run: the preset's `model.*`, with what the dataset dictates filled in."""

from __future__ import annotations

import dataclasses

from ganforge.errors import GanforgeError
from ganforge.models import MODELS


class RecipeError(GanforgeError):
    pass


def model_fields(config, dataset) -> dict:
    """The model's config fields: the preset's, with resolution, channels, dims and classes from the data."""
    fields = dict(config.model)
    # point sets carry their mixture component as a label; by default that stays unused
    auto = dataset.num_classes > 0 and dataset.kind == "images"
    use_labels = {"auto": auto, "yes": True, "no": False}[config.conditional]
    if use_labels and dataset.labels is None:
        raise RecipeError(f"conditional=yes, but {dataset.path} has no labels. Prepare it with --labels folders.")
    spec = MODELS.get(fields.get("name"))
    if spec is not None:
        takes = {f.name for f in dataclasses.fields(spec.config_class)}
        if dataset.kind == "points" and "dims" not in takes:
            raise RecipeError(f"{dataset.path} is a set of 2-D points, and model {spec.name} makes images: use "
                              "--preset points (or model.name=mlp).")
        if dataset.kind == "images" and "channels" not in takes:
            raise RecipeError(f"{dataset.path} holds images, and model {spec.name} makes 2-D points: use "
                              "--preset dcgan or stylegan2.")
    if getattr(config, "fingerprint", False) and dataset.kind != "images":
        raise RecipeError(f"fingerprint=on marks the real images a GAN learns from; {dataset.path} is a {dataset.kind} "
                          "dataset. Image-to-image models mark what they make instead (ganforge translate does).")
    crop = getattr(config, "crop", 0)
    if crop and dataset.kind not in ("paired", "unpaired"):
        raise RecipeError(f"crop={crop} is for image-to-image training (paired or unpaired datasets); {dataset.path} "
                          f"is a {dataset.kind} dataset: prepare it at the size to train at instead.")
    if getattr(config, "rotate", False) and dataset.kind not in ("paired", "unpaired"):
        raise RecipeError(f"rotate=true turns image-to-image training pairs; {dataset.path} is a {dataset.kind} "
                          "dataset, whose images would be learnt upside down too: use flip=true instead.")
    if crop and crop > dataset.resolution:  # (a point set has no resolution: crop=0 there, checked above)
        raise RecipeError(f"crop={crop} is larger than the dataset's {dataset.resolution} px images: use a smaller crop.")
    if dataset.kind == "points":
        fields.setdefault("dims", 2)
    else:
        # a network trained on crops is built for the crop's size (fully convolutional ones still take any size)
        for key, value in (("resolution", crop or dataset.resolution), ("channels", dataset.channels)):
            if fields.get(key, value) != value:
                raise RecipeError(f"model.{key}={fields[key]} does not match the dataset ({value}); "
                                  f"leave it out, or prepare the dataset at another {key}.")
            fields[key] = value
    fields["num_classes"] = dataset.num_classes if use_labels else 0
    return fields


def refuse_unused(family: str, config, classes: bool = False) -> None:
    """Refuse the image-GAN settings an image-to-image recipe has no use for (and classes where it takes none),
    naming each one set."""
    unused = {"augment": config.augment != "", "r1_gamma": config.r1_gamma > 0, "d_steps": config.d_steps != 1,
              "reuse_fakes": not config.reuse_fakes}
    if classes:
        unused["conditional"] = config.conditional == "yes"
    given = [name for name, set_ in unused.items() if set_]
    if given:
        defaults = "no augmentation, no R1, one D step, G learns from D's fakes" + (", no classes" if classes else "")
        raise RecipeError(f"{family} does not use {', '.join(given)}: leave {'it' if len(given) == 1 else 'them'} at "
                          f"the default ({defaults}).")
