"""Training configuration: a dataclass, a YAML preset on top, `key=value` overrides on top of that.

Unknown keys are an error (with the closest known key suggested). Numbers are read as people write
them (`lr_g=2e-4`, which YAML alone would read as text), and values far outside what trains are
refused with the usual range, or warned about when merely unusual. The model's own fields live under
`model.` (e.g. `model.g_width=32`) and are checked by the model's config class. Resolution,
channels and classes come from the prepared dataset, so a preset works for any dataset.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ganforge.errors import GanforgeError

LOSSES = ("nonsaturating", "minimax", "hinge", "wgan-gp", "lsgan")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


_DEVICE = re.compile(r"auto|cpu|mps|(cuda|xpu)(:\d+)?")


class ConfigError(GanforgeError):
    pass


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


@dataclass
class TrainConfig:
    data: str = ""  # a prepared dataset folder
    preset: str = ""  # the preset this config started from (recorded, not read again)
    model: dict = field(default_factory=lambda: {"name": "dcgan"})  # "name" + the architecture's fields
    recipe: str = "auto"  # the model family's training recipe: auto (by model name) | classic | stylegan2 | progressive | pix2pix
    conditional: str = "auto"  # auto: use the dataset's labels when it has them | yes | no
    loss: str = "nonsaturating"  # nonsaturating | minimax (Goodfellow 2014, as written) | hinge | wgan-gp | lsgan
    batch_size: int = 64  # global: split across processes under torchrun
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    lr_ramp_down: float = 0.0  # learning rates fall linearly to zero over this last fraction of the budget; 0 = constant
    beta1: float = 0.5
    beta2: float = 0.999
    d_steps: int = 1  # discriminator steps per generator step (5 is usual for wgan-gp)
    reuse_fakes: bool = True  # G learns from the fakes D just saw (one G forward per step); false: fresh ones
    gp_weight: float = 10.0  # wgan-gp gradient penalty weight
    drift_weight: float = 0.001  # progressive, wgan-gp: the paper's ε E[D(x)²] on real logits, so they do not drift
    r1_gamma: float = 0.0  # R1 penalty weight on real images; 0 = off
    r1_every: int = 16  # lazy regularisation: apply R1 every N steps, scaled by N
    acgan_weight: float = 1.0  # class loss weight for model.conditioning=acgan
    acgan_d_fakes: bool = False  # D's class head also learns the fakes' asked classes, as Odena et al.; off: reals
    # only, as StarGAN, so G cannot teach D a class code of its own (asked 0, G drew an 8 that D read as 0)
    attribute_weight: float = 0.0  # with attributes (prepare --attributes): D also predicts them and G is trained to match (StarGAN's auxiliary loss); 0 = off
    ema_kimg: float = 10.0  # half-life of the generator's moving average, in thousands of images
    ema_rampup: float = 0.05  # early on, the half-life is at most this fraction of images seen
    augment: str = ""  # "ada" (adaptive, Karras et al. 2020) or a DiffAugment policy: any of color,translation,cutout
    ada_target: float = 0.6  # ADA raises p while E[sign(D(real))] is above this; 0 = keep p fixed at ada_p
    ada_p: float = 0.0  # ADA's starting (or, with ada_target=0, fixed) augmentation probability
    ada_interval: int = 4  # steps between adjustments of p
    ada_kimg: float = 100.0  # p can go from 0 to 1 in this many thousand images (the paper's 500 suits GPU-length runs)
    ada_spec: str = "bgc"  # which ADA transforms: b(lit), g(eometric), c(olour) groups
    style_mixing: float = 0.9  # stylegan2: share of batches whose later layers take w from a second latent
    pl_weight: float = 2.0  # stylegan2: path-length regularisation weight; 0 = off
    pl_every: int = 4  # stylegan2: path-length regularisation every N steps (lazy)
    pl_decay: float = 0.01  # stylegan2: decay of the path lengths' running mean
    grow: bool = True  # progressive: grow from 4x4 to full size; false: train fully grown from the start
    grow_stable_kimg: float = 600.0  # progressive: thousands of images at each resolution once faded in (the paper's 600)
    grow_fade_kimg: float = 600.0  # progressive: thousands of images over which each new resolution fades in
    grow_batch: str = ""  # progressive: batch size by resolution, e.g. "4:128,8:128,16:64"; others use batch_size
    l1_weight: float = 100.0  # pix2pix: weight of the L1 distance between G(A) and B beside the GAN loss (the paper's 100)
    fm_weight: float = 10.0  # spade: weight of the discriminator feature-matching loss (pix2pixHD's and SPADE's 10)
    cycle_weight: float = 10.0  # cyclegan: weight of the cycle losses |G_BA(G_AB(A)) - A| and |G_AB(G_BA(B)) - B| (the paper's 10)
    identity_weight: float = 0.5  # cyclegan: identity losses |G_AB(B) - B|, |G_BA(A) - A| weigh this x cycle_weight (0.5 as the reference)
    pool_size: int = 50  # cyclegan: each D sees fakes from a history of this many generated images (the paper's 50); 0 = no pool
    const_weight: float = 15.0  # dtn: weight of L_CONST, the distance between f(A) and f(G(A)) (the paper's digits alpha 15)
    tid_weight: float = 15.0  # dtn: weight of L_TID, the distance between G(B) and B (the paper's digits beta 15)
    tv_weight: float = 0.0  # dtn: weight of the total variation of G(A) (the paper's gamma, 0 for digits)
    class_weight: float = 0.0  # dtn: weight of the cross-entropy between the frozen classifier's reading of G(A) and its reading of A (0 = the paper's losses only)
    classifier_steps: int = 1000  # dtn: Adam steps that train the classifier of side A (whose encoder is G's frozen f)
    classifier_target_rounds: int = 0  # dtn: rounds of self-training after the classifier learns A: each reads side B with the classifier, keeps the surest readings of each class as labels and trains on A and those B images alike, so its readings and f's features hold for B's style too (B's own labels are never used)
    classifier_jitter: bool = False  # dtn: the classifier learns from A's images randomly turned, sheared, scaled, moved, thinned and thickened, so f reads the class more than the style
    warmup_kimg: float = 0.0  # sr: thousands of images of pixel loss (L1) alone before D and the GAN terms join (ESRGAN's PSNR pre-training)
    pixel_weight: float = 0.01  # sr, GAN period: weight of the L1 pixel loss (ESRGAN's 1e-2)
    feature_weight: float = 1.0  # sr, GAN period: weight of the Inception feature loss (the perceptual term); 0 = off
    adversarial_weight: float = 0.005  # sr, GAN period: weight of the relativistic average GAN loss (ESRGAN's 5e-3)
    fingerprint: bool = False  # mark every real image D sees with the run's keyed pattern, so the generator's own images carry it (Yu et al. 2021's artificial fingerprints)
    flip: bool = False  # random horizontal flips of real images (of both sides of a pair alike)
    rotate: bool = False  # image-to-image: random quarter turns of both sides of a pair alike (the SR papers' augmentation)
    crop: int = 0  # image-to-image: train on random square crops of this many B pixels, the same area of A (pix2pix's random jitter: prepare at 286 px, crop=256); 0 = whole images
    kimg: float = 0.0  # budget in thousands of images shown to D; 0 = no limit of this kind
    epochs: float = 0.0  # budget in passes over the dataset
    minutes: float = 0.0  # budget in wall-clock minutes
    tick_kimg: float = 4.0  # progress report, sample grid and checkpoint every this many kimg
    keep_checkpoints: int = 3  # the last N are kept
    grid_size: int = 64  # samples in each progress grid, from fixed seeds
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 or fp16 on GPUs, fp32 on CPUs: measured faster) | fp32 | bf16 | fp16
    channels_last: bool = True
    runs_dir: str = "runs"
    max_rollbacks: int = 3  # non-finite losses: roll back this many times, then stop
    eval_minutes: float = 10.0  # KID and collapse signals every this many minutes of training; 0 = off
    eval_images: int = 500  # samples (and twice as many real images) per evaluation
    patience: int = 0  # stop after this many evaluations without a better KID; 0 = never stop early
    deterministic: bool = False  # bit-identical runs and resumes: deterministic kernels on one thread (slower)

    def validate(self) -> None:
        _one_of("loss", self.loss, LOSSES)
        _one_of("precision", self.precision, PRECISIONS)
        _one_of("conditional", self.conditional, ("auto", "yes", "no"))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name} must be a finite number, not {value}.")
        for name in ("batch_size", "d_steps", "r1_every", "keep_checkpoints", "grid_size", "eval_images", "ada_interval",
                     "pl_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}.")
        for name in ("lr_g", "lr_d"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ConfigError(f"{name}={value!r} is outside (0, 1]: Adam diverges at such rates. GANs train "
                                  f"with about 1e-4 to 1e-3 (2e-4 is a good start).")
            if value > 0.01:
                warn(f"{name}={value:g} is far above the usual 1e-4 to 1e-3; expect training to diverge. "
                     "`ganforge health RUN` will say so if it does.")
        if not self.tick_kimg >= 0.001:
            raise ConfigError(f"tick_kimg must be at least 0.001 (one image), not {self.tick_kimg}.")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1) (Adam's moment decay), not {getattr(self, name)}.")
        if not 0 <= self.lr_ramp_down <= 1:
            raise ConfigError(f"lr_ramp_down is a fraction of the budget between 0 and 1, not {self.lr_ramp_down}.")
        non_negative = ("kimg", "epochs", "minutes", "r1_gamma", "gp_weight", "acgan_weight", "ema_kimg", "ema_rampup",
                        "eval_minutes", "patience", "max_rollbacks", "seed", "drift_weight", "grow_stable_kimg", "attribute_weight",
                        "grow_fade_kimg", "l1_weight")
        if self.fm_weight < 0:
            raise ConfigError(f"fm_weight cannot be negative (10 is the SPADE paper's; 0 switches feature matching "
                              f"off), not {self.fm_weight}.")
        negative = [f"{n}={getattr(self, n)}" for n in non_negative if getattr(self, n) < 0]
        if negative:
            raise ConfigError(f"{', '.join(negative)}: cannot be negative.")
        cyclegan = [f"{n}={getattr(self, n)}" for n in ("cycle_weight", "identity_weight", "pool_size") if getattr(self, n) < 0]
        if cyclegan:
            raise ConfigError(f"{', '.join(cyclegan)}: cannot be negative.")
        dtn = [f"{n}={getattr(self, n)}" for n in ("const_weight", "tid_weight", "tv_weight", "class_weight") if getattr(self, n) < 0]
        if dtn:
            raise ConfigError(f"{', '.join(dtn)}: cannot be negative (0 switches a term off).")
        if self.classifier_target_rounds < 0:
            raise ConfigError(f"classifier_target_rounds cannot be negative (0: the classifier learns side A only), "
                              f"not {self.classifier_target_rounds}.")
        if self.classifier_steps < 1:
            raise ConfigError(f"classifier_steps must be at least 1 (DTN trains its classifier of side A first), "
                              f"not {self.classifier_steps}.")
        sr_weights = [f"{n}={getattr(self, n)}" for n in ("warmup_kimg", "pixel_weight", "feature_weight", "adversarial_weight")
                      if getattr(self, n) < 0]
        if sr_weights:
            raise ConfigError(f"{', '.join(sr_weights)}: cannot be negative (0 switches a term off).")
        if self.crop < 0:
            raise ConfigError(f"crop={self.crop}: give a crop side in pixels, or 0 for whole images.")
        if self.seed >= 2**63:
            raise ConfigError(f"seed must be below 2**63, not {self.seed}.")
        if self.grid_size > 1024:
            raise ConfigError(f"grid_size={self.grid_size}: a progress grid holds at most 1024 samples (64 is usual).")
        if self.eval_minutes and self.eval_images < 8:
            raise ConfigError(f"eval_images={self.eval_images}: the periodic KID needs at least 8 samples "
                              "(500 is the default), or eval_minutes=0 to switch it off.")
        if not _DEVICE.fullmatch(self.device):
            raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps, not {self.device!r}.")
        policies = [p for p in self.augment.split(",") if p]
        unknown = set(policies) - {"color", "translation", "cutout"}
        if unknown and self.augment != "ada":
            raise ConfigError(f"augment: unknown policy {sorted(unknown)}; use ada, or any of color,translation,cutout.")
        for name in ("ada_p", "ada_target", "style_mixing", "pl_decay"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be between 0 and 1, not {getattr(self, name)}.")
        if self.ada_kimg <= 0:
            raise ConfigError(f"ada_kimg must be above 0 (500 is the paper's), not {self.ada_kimg}.")
        if self.pl_weight < 0:
            raise ConfigError(f"pl_weight cannot be negative (2 is the paper's; 0 switches it off), not {self.pl_weight}.")
        if not re.fullmatch(r"[bgc]+", self.ada_spec):
            raise ConfigError(f"ada_spec is made of the letters b, g and c (bgc is the paper's), not {self.ada_spec!r}.")
        parse_batch_schedule(self.grow_batch)
        if not isinstance(self.model, dict) or "name" not in self.model:
            raise ConfigError("model must be a mapping with a name, e.g. model.name=dcgan.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_batch_schedule(text: str) -> dict[int, int]:
    """grow_batch "4:128,8:64" -> {4: 128, 8: 64}: the batch size at each listed resolution."""
    schedule: dict[int, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        res, sep, batch = item.partition(":")
        if not (sep and res.strip().isdigit() and batch.strip().isdigit()):
            raise ConfigError(f"grow_batch: {item!r} is not resolution:batch (for example grow_batch=4:128,8:128,16:64).")
        res, batch = int(res), int(batch)
        if res < 4 or res & (res - 1):
            raise ConfigError(f"grow_batch: {res} is not a resolution of a growing network (4, 8, 16, ...).")
        if batch < 1:
            raise ConfigError(f"grow_batch: the batch size at {res} px must be at least 1, not {batch}.")
        if res in schedule:
            raise ConfigError(f"grow_batch gives {res} px twice ({schedule[res]} and {batch}): keep one.")
        schedule[res] = batch
    return schedule


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("ganforge.train.presets").iterdir() if p.name.endswith(".yaml"))


def load_preset(name_or_path: str) -> dict[str, Any]:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        text = path.read_text(encoding="utf-8")
    else:
        if name_or_path not in preset_names():
            raise ConfigError(f"Unknown preset {name_or_path!r}; the presets are {', '.join(preset_names())}, "
                              "or give a path to a .yaml file.")
        text = (resources.files("ganforge.train.presets") / f"{name_or_path}.yaml").read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"Preset {name_or_path} is not valid YAML ({str(exc).splitlines()[0]}). Fix it, or "
                          "start from a built-in preset: ganforge train DATA --preset dcgan --dry-run > mine.yaml") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Preset {name_or_path} must be a mapping of keys to values.")
    return data


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """["loss=hinge", "model.g_width=32"] -> {"loss": "hinge", "model.g_width": 32} (values read as YAML)."""
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"Override {item!r} is not of the form key=value (for example loss=hinge).")
        if key in result:
            raise ConfigError(f"{key} is given twice ({key}={result[key]!r} and {item}): keep one.")
        try:
            result[key] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            result[key] = value  # not YAML (e.g. an unbalanced bracket): the text as written
    return result


def build_config(data: str, preset: str | None = None, overrides: dict[str, Any] | None = None,
                 *, kind: str = "images") -> TrainConfig:
    """Defaults, then the preset (by default the one for the dataset's kind), then the overrides."""
    preset = preset or ("points" if kind == "points" else "dcgan")
    config = TrainConfig(data=str(data), preset=preset)
    _apply(config, load_preset(preset), f"preset {preset}")
    _apply(config, _nest(overrides or {}), "overrides")
    config.validate()
    return config


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        head, dot, rest = key.partition(".")
        if dot and head == "model":
            nested.setdefault("model", {})[rest] = value
        elif dot:
            raise ConfigError(f"Unknown key {key!r}: only model.<field> keys have a dot.")
        else:
            nested[key] = value
    return nested


def _apply(config: TrainConfig, values: dict[str, Any], where: str) -> None:
    known = {f.name: f for f in dataclasses.fields(config)}
    for key, value in values.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else f" Known keys: {', '.join(known)}."
            raise ConfigError(f"Unknown key {key!r} in {where}.{hint}")
        if key == "model":
            if not isinstance(value, dict):
                raise ConfigError(f"model in {where} must be a mapping (model.name=..., model.g_width=...).")
            if "name" in value and value["name"] != config.model.get("name"):
                config.model = {}  # another architecture: the old one's fields do not apply
            config.model = {**config.model, **value}
            continue
        default = getattr(config, key)
        setattr(config, key, _coerce(key, value, default))


def _coerce(key: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, not {value!r}.")
    if isinstance(default, (int, float)) and isinstance(value, str):
        value = _number(value)  # "2e-4", "1E3", "1_000": YAML 1.1 leaves these as text
    if isinstance(default, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(default, int) and isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(default, str) and isinstance(value, bool):
        return "yes" if value else "no"  # YAML 1.1 reads yes/no/on/off as booleans
    if isinstance(default, str) and isinstance(value, (str, int, float)):
        return str(value)
    kind = {str: "text", int: "whole number", float: "number"}[type(default)]
    raise ConfigError(f"{key} must be a {kind} (like {default!r}), not {value!r}.")


def _number(text: str) -> Any:
    try:
        return int(text.replace("_", ""))
    except ValueError:
        pass
    try:
        return float(text.replace("_", ""))
    except ValueError:
        return text


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {value!r}.")


def dump_yaml(config: TrainConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
