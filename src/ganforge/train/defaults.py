"""What `ganforge train FOLDER` picks when no preset is given: the family, widths, rates, loss and
augmentation from the dataset's size and resolution, chosen by measurement (KID at equal CPU minutes,
`benchmarks/bench_quality.py`; the figures are in the issue notes and the README).

Every choice is an ordinary preset plus overrides, written into the run's config.yaml and explained in
one line when training starts; anything given on the command line wins over it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ganforge.train.config import load_preset


@dataclass(frozen=True)
class Choice:
    preset: str
    overrides: dict = field(default_factory=dict)
    why: str = ""


# Images with attributes (prepare --attributes), on a CPU: D also reads the attributes (StarGAN's auxiliary
# loss, weight 2) and, with classes, the class (AC-GAN's class head beside the projection discriminator), so
# an edit changes the attribute and keeps the class. MNIST with Morpho-MNIST thickness and slant, 120 kimg,
# hinge (benchmarks/bench_attributes.py, seeds 0, 1, 2): asked vs measured thickness correlation 0.918, 0.916,
# 0.930; 99.3-100 % of 900 edits read as the same class; the digits of a class 81-87 % as varied as MNIST's.
# At weight 1: 0.897, 0.917, 0.899. With AC-GAN's own D (conditioning=acgan: its real/fake logit blind to the
# class) G ignored z, one image per class (variety 4.3 against MNIST's 32.1). Neither term: 0.783 / 93.4 %.
ATTRIBUTE_OVERRIDES = {"attribute_weight": 2.0, "loss": "hinge"}
CLASS_OVERRIDES = {"model.class_head": True}


def choose_defaults(kind: str, count: int, resolution: int | None, device: str = "cpu", derive: str = "",
                    same_channels: bool = True, attributes: bool = False, classes: bool = False) -> Choice:
    """The preset (and overrides) for a dataset of `count` items of `kind` at `resolution` px, trained on a
    `device` of this kind ("cpu" or "cuda").

    Measured on a 2-core CPU, 1,000 emoji at 64 px, 5 minutes each (KID, lower is better): DCGAN at the
    paper's widths 0.290 (17 kimg), StyleGAN2 at CPU widths with ADA 0.377 (11 kimg) and without 0.431,
    the narrow DCGAN with ADA 0.231 (55 kimg); at 10 minutes 0.190 against DCGAN-64's 0.234
    (bench_quality.py; figures in the issue note). On a
    CPU the image rate decides; on a GPU StyleGAN2 shows enough images to be worth its cost.
    """
    if kind == "points":
        return Choice("points", {}, "2-D points: small MLPs (preset points)")
    if kind == "paired" and derive == "downscale":  # `derive`: the manifest's derive mode of a paired dataset
        return Choice("sr", {}, f"{count:,} pairs at {resolution} px whose A is B made smaller: super-resolution, an "
                                "SRResNet with L1 first, then a feature loss and a GAN (preset sr)")
    if kind == "paired":
        return Choice("pix2pix", {}, f"{count:,} pairs at {resolution} px: image-to-image translation A -> B, a U-Net "
                                     "with a PatchGAN discriminator and L1 (preset pix2pix)")
    if kind == "unpaired":  # identity losses compare an image with its translation: only for sides alike
        return Choice("cyclegan", {} if same_channels else {"identity_weight": 0.0},
                      f"two unpaired sets at {resolution} px: image-to-image translation A <-> B without pairs, two "
                      "ResNet generators with cycle losses (preset cyclegan"
                      f"{'' if same_channels else '; identity_weight=0, as the sides differ in channels'})")
    if kind != "images":
        from ganforge.train.recipes.fields import RecipeError

        raise RecipeError(f"A {kind} dataset has no default model: prepare images, pairs (prepare --pair-with or "
                          "--derive) or two unpaired sets (prepare A OUT --unpaired B).")
    collection = "a small collection" if count < 20_000 else "a large collection"
    if device == "cuda":
        return Choice("stylegan2-paper", {"augment": "ada"},
                      f"{count:,} images at {resolution} px, {collection}, on a GPU: StyleGAN2 at the paper's widths "
                      "with adaptive augmentation (preset stylegan2-paper)")
    if count >= 20_000:  # CIFAR-10 at 32 px, 5 minutes: FID1k 207 / KID 0.187 without augmentation, 231 / 0.218 with ADA
        choice = Choice("dcgan-small", {"augment": ""},
                        f"{count:,} images at {resolution} px, {collection}, on a CPU: a narrow DCGAN (the most images "
                        "per minute), no augmentation: D cannot memorise this many (preset dcgan-small, augment=none)")
    else:
        choice = Choice("dcgan-small", {"augment": "ada"},
                        f"{count:,} images at {resolution} px, {collection}, on a CPU: a narrow DCGAN (the most images "
                        "per minute) with adaptive augmentation so D cannot memorise the set (preset dcgan-small, "
                        "augment=ada)")
    return with_attributes(choice, attributes, classes)


def with_attributes(choice: Choice, attributes: bool, classes: bool) -> Choice:
    """`choice` for images with attributes (and classes): D also learns to read them and G to make them."""
    if not attributes:
        return choice
    extra = {**ATTRIBUTE_OVERRIDES, **(CLASS_OVERRIDES if classes else {})}
    why = ("; the images have attributes, so D also reads them" + (" and the class (AC-GAN's class head)" if classes else "")
           + f" and G makes what is asked ({', '.join(f'{k}={v}' for k, v in extra.items())})")
    return Choice(choice.preset, {**choice.overrides, **extra}, choice.why + why)


def paper_r1_gamma(resolution: int, batch_size: int) -> float:
    """The R1 weight heuristic of Karras et al. 2020 (appendix): 0.0002 · resolution² / batch size."""
    return 0.0002 * resolution**2 / batch_size


def fill_heuristics(config, preset: str, overrides: dict, resolution: int | None) -> str | None:
    """StyleGAN2's R1 weight from the paper's heuristic, unless the preset or the command line set one.
    Returns a sentence for the start-of-training line, or None."""
    if config.model.get("name") != "stylegan2" or not resolution:
        return None
    if "r1_gamma" in overrides or "r1_gamma" in load_preset(preset):
        return None
    config.r1_gamma = round(paper_r1_gamma(resolution, config.batch_size), 6)
    return f"R1 γ = {config.r1_gamma:g} (0.0002 · {resolution}² / batch {config.batch_size})"
