"""Pieces every architecture shares: the config error, config and input checks, class-conditional
layers (conditional batch norm, the projection term), attribute conditioning (the attributes' description,
their encoding, an attribute-driven affine and projection), the spectral-norm helper and DCGAN weight init.

Nothing here knows a particular architecture; `dcgan.py` and `mlp.py` build from these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganforge.errors import GanforgeError

CONDITIONING_MODES = ("cbn-projection", "acgan")


class ModelConfigError(GanforgeError, ValueError):
    """A model config or a model input the user can fix.

    A ValueError, so callers may catch the standard type, and a GanforgeError, so the CLI prints the
    message as a sentence instead of a traceback.
    """


# ---------------------------------------------------------------------------------------------
# Config checks: each raises ModelConfigError with a sentence that says what to change.


def check_int(model: str, field: str, value: object, low: int, high: int | None = None) -> None:
    """`value` must be an int in [low, high]; bools and floats are refused, not rounded."""
    # bool is a subclass of int, so `True` would otherwise pass as 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ModelConfigError(
            f"{model} config: {field} must be an integer, got {value!r} ({type(value).__name__})."
        )
    if value < low or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ModelConfigError(f"{model} config: {field} must be {bounds}, got {value}.")


def check_channels(model: str, channels: object) -> None:
    check_int(model, "channels", channels, 1)
    if channels not in (1, 3, 4):
        raise ModelConfigError(f"{model} config: channels must be 1 (grey), 3 (RGB) or 4 (RGBA), got {channels!r}.")


def check_resolution(model: str, resolution: object, allowed: tuple[int, ...]) -> None:
    """One of `allowed` (powers of two, ascending)."""
    check_int(model, "resolution", resolution, 1)
    if resolution not in allowed:
        raise ModelConfigError(
            f"{model} config: resolution must be a power of two between {allowed[0]} and {allowed[-1]} "
            f"({', '.join(map(str, allowed))}), got {resolution}; resize the dataset to one of these."
        )


def check_bool(model: str, field: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ModelConfigError(
            f"{model} config: {field} must be true or false, got {value!r} ({type(value).__name__})."
        )


def check_conditioning(model: str, conditioning: object) -> None:
    if conditioning not in CONDITIONING_MODES:
        raise ModelConfigError(
            f"{model} config: conditioning must be one of {', '.join(map(repr, CONDITIONING_MODES))}, "
            f"got {conditioning!r}."
        )


# ---------------------------------------------------------------------------------------------
# Input checks: plain Python on shapes, so they cost no device sync and trace under torch.compile.


def check_labels(who: str, labels: torch.Tensor | None, batch: int, num_classes: int) -> None:
    """Conditional models need (B,) integer labels; unconditional ones must not be given any."""
    if num_classes == 0:
        if labels is not None:
            raise ModelConfigError(
                f"{who} is unconditional (num_classes=0) but was given labels; drop the labels "
                f"or build the model with num_classes > 0."
            )
        return
    if labels is None:
        raise ModelConfigError(
            f"{who} is conditional (num_classes={num_classes}) and needs labels: pass an int64 "
            f"tensor of shape ({batch},) with values in 0..{num_classes - 1}."
        )
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ModelConfigError(f"{who}: labels must be an integer tensor, got dtype {labels.dtype}.")
    if tuple(labels.shape) != (batch,):
        raise ModelConfigError(
            f"{who}: labels must have shape ({batch},) to match the batch, got {tuple(labels.shape)}."
        )


# ---------------------------------------------------------------------------------------------
# Class-conditional layers.


class ClassAffine(nn.Module):
    """A per-class gain and bias on channel dim 1: `x * gain[y] + bias[y]`.

    The affine half of conditional batch norm; the MLP uses it alone because it has no batch norm.
    Gains start at N(1, 0.02) like DCGAN's BN weights, so classes differ (slightly) from step 0.
    """

    def __init__(self, num_classes: int, features: int):
        super().__init__()
        # Plain parameters indexed by label, not nn.Embedding, so generic weight init leaves them be.
        self.gain = nn.Parameter(torch.empty(num_classes, features))  # (K, C)
        self.bias = nn.Parameter(torch.empty(num_classes, features))  # (K, C)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.gain, 1.0, 0.02)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        gain, bias = self.gain[labels], self.bias[labels]  # (B, C) each
        # Broadcast over any trailing spatial dims: (B, C) -> (B, C, 1, 1) for feature maps.
        shape = gain.shape + (1,) * (x.dim() - 2)
        return x * gain.reshape(shape) + bias.reshape(shape)


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose affine gain and bias are chosen by the class label (de Vries et al. 2017;
    used in the generator of Miyato & Koyama 2018)."""

    def __init__(self, num_classes: int, channels: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.affine = ClassAffine(num_classes, channels)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.affine(self.norm(x), labels)  # (B, C, H, W)


class ProjectionHead(nn.Module):
    """The class term of the projection discriminator (Miyato & Koyama 2018): <embed(y), phi(x)>.

    Added to the unconditional logit, so D's output stays one logit per sample.
    """

    def __init__(self, num_classes: int, features: int):
        super().__init__()
        self.embed = nn.Embedding(num_classes, features)
        # Same scale as the DCGAN head's weights, so the class term does not dominate at step 0.
        nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (self.embed(labels) * features).sum(dim=1)  # (B, F) . (B, F) -> (B,)


# ---------------------------------------------------------------------------------------------
# Attribute conditioning: models take raw values (B, A), e.g. thickness 2.5 or a categorical value's
# index, and encode them themselves from their config, so an exported generator needs no dataset.

ATTRIBUTE_KINDS = ("continuous", "categorical")


@dataclass(frozen=True)
class AttributeSpec:
    """One attribute a model is conditioned on, as the prepared dataset described it."""

    name: str
    kind: str  # "continuous": standardised by mean and std; "categorical": one-hot over `values`
    mean: float = 0.0
    std: float = 1.0
    values: tuple[str, ...] = ()
    low: float | None = None  # the range seen in training (continuous): what edits should stay near
    high: float | None = None

    @property
    def width(self) -> int:
        """Columns of the encoded vector: one for a continuous attribute, one per value otherwise."""
        return 1 if self.kind == "continuous" else len(self.values)


def check_attributes(model: str, attributes: object) -> tuple[AttributeSpec, ...]:
    """The config's `attributes` as AttributeSpecs (from specs, or dicts as read from config.json)."""
    if not isinstance(attributes, (tuple, list)):
        raise ModelConfigError(f"{model} config: attributes must be a list of attribute descriptions, "
                               f"got {type(attributes).__name__}.")
    specs, names = [], set()
    for item in attributes:
        if isinstance(item, dict):
            try:
                item = AttributeSpec(**{**item, "values": tuple(item.get("values") or ())})
            except TypeError as exc:
                raise ModelConfigError(f"{model} config: an attribute description has unknown fields ({exc}).") from None
        if not isinstance(item, AttributeSpec) or not isinstance(item.name, str) or not item.name:
            raise ModelConfigError(f"{model} config: each attribute needs a name and a kind, got {item!r}.")
        if item.kind not in ATTRIBUTE_KINDS:
            raise ModelConfigError(f"{model} config: attribute {item.name} has kind {item.kind!r}, not "
                                   f"{' or '.join(ATTRIBUTE_KINDS)}.")
        if item.name in names:
            raise ModelConfigError(f"{model} config: two attributes are named {item.name!r}.")
        if item.kind == "continuous" and not (_finite(item.mean) and _finite(item.std) and item.std > 0):
            raise ModelConfigError(f"{model} config: attribute {item.name} needs a finite mean and a positive std.")
        if item.kind == "categorical" and (len(item.values) < 2 or not all(isinstance(v, str) for v in item.values)):
            raise ModelConfigError(f"{model} config: attribute {item.name} needs a list of at least two values.")
        names.add(item.name)
        specs.append(item)
    return tuple(specs)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def attribute_width(specs: tuple[AttributeSpec, ...]) -> int:
    return sum(spec.width for spec in specs)


class AttributeEncoder(nn.Module):
    """Raw attributes (B, A) -> the vector models see (B, width): standardised continuous values, one-hot
    categories. Left out (None), every attribute is at the data's average: continuous ones at their mean,
    categorical ones an even mix of their values; a NaN value puts that one attribute of that image at its
    average (how an edit leaves the others alone). No parameters: the statistics come from the config."""

    def __init__(self, specs: tuple[AttributeSpec, ...]):
        super().__init__()
        self.specs = specs
        self.width = attribute_width(specs)
        mean = [s.mean for s in specs]
        std = [s.std if s.kind == "continuous" else 1.0 for s in specs]
        average = [v for s in specs for v in ([0.0] if s.kind == "continuous" else [1.0 / len(s.values)] * len(s.values))]
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)  # (A,)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)  # (A,)
        self.register_buffer("average", torch.tensor(average, dtype=torch.float32), persistent=False)  # (width,)

    def forward(self, attributes: torch.Tensor | None, batch: int, who: str) -> torch.Tensor:
        if attributes is None:
            return self.average.unsqueeze(0).expand(batch, -1)  # (B, width)
        if tuple(attributes.shape) != (batch, len(self.specs)) or not attributes.dtype.is_floating_point:
            raise ModelConfigError(
                f"{who}: attributes must be a float tensor of shape ({batch}, {len(self.specs)}) "
                f"({', '.join(s.name for s in self.specs)}), got {tuple(attributes.shape)} {attributes.dtype}.")
        x = attributes.float()
        unset = torch.isnan(x)  # (B, A)
        x = x.nan_to_num(0.0)
        parts = []
        for a, spec in enumerate(self.specs):
            if spec.kind == "continuous":
                value = ((x[:, a] - self.mean[a]) / self.std[a]).unsqueeze(1)  # (B, 1)
                parts.append(value.masked_fill(unset[:, a, None], 0.0))
            else:
                one_hot = F.one_hot(x[:, a].round().long(), len(spec.values)).float()  # (B, K)
                parts.append(one_hot.masked_fill(unset[:, a, None], 1.0 / len(spec.values)))
        return torch.cat(parts, dim=1)  # (B, width)


def refuse_attributes(who: str, attributes: torch.Tensor | None) -> None:
    if attributes is not None:
        raise ModelConfigError(f"{who} is not conditioned on attributes (its config lists none) but was given "
                               "some; leave them out, or train on a dataset prepared with --attributes.")


class AttributeAffine(nn.Module):
    """A gain and bias per channel computed from the encoded attributes: `x * (1 + g(a)) + b(a)`, applied
    after a generator's batch norm so every resolution sees the attributes (conditional batch norm with a
    linear map in place of the class table)."""

    def __init__(self, width: int, channels: int):
        super().__init__()
        self.gain = nn.Linear(width, channels, bias=False)
        self.bias = nn.Linear(width, channels, bias=False)

    def forward(self, x: torch.Tensor, encoded: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], x.shape[1]) + (1,) * (x.dim() - 2)
        gain = self.gain(encoded.to(x.dtype)).reshape(shape)  # (B, C, 1, 1)
        return x * (1 + gain) + self.bias(encoded.to(x.dtype)).reshape(shape)


class AttributeProjection(nn.Module):
    """The attributes' term of a projection discriminator: <W a, phi(x)>, linear in the encoded attributes
    (for one-hot categories it is Miyato & Koyama's class embedding)."""

    def __init__(self, width: int, features: int):
        super().__init__()
        self.embed = nn.Linear(width, features, bias=False)

    def forward(self, features: torch.Tensor, encoded: torch.Tensor) -> torch.Tensor:
        return (self.embed(encoded.to(features.dtype)) * features).sum(dim=1)  # (B,)


class AttributeRegressor(nn.Module):
    """D's attribute head (StarGAN's auxiliary classifier, Choi et al. 2018, with regression for continuous
    attributes): pooled features (B, F) -> a prediction (B, width) in the encoder's layout, a standardised
    value per continuous attribute and logits per categorical one. Trained on reals by D, it teaches G to
    make what it was asked for (`attribute_loss` on its fakes)."""

    def __init__(self, width: int, features: int):
        super().__init__()
        self.predict = nn.Linear(features, width)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.predict(features)  # (B, width)


def attribute_loss(encoder: AttributeEncoder, predicted: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
    """Mean over attributes of: the squared error of the standardised value (continuous) or the cross-entropy
    of the value's index (categorical), over the images where the attribute is set (NaN: left out)."""
    target = encoder(attributes, len(attributes), "attribute loss")  # (B, width), standardised / one-hot
    unset = torch.isnan(attributes)  # (B, A)
    predicted, losses, at = predicted.float(), [], 0
    for a, spec in enumerate(encoder.specs):
        keep = ~unset[:, a]
        if spec.kind == "continuous":
            error = (predicted[:, at] - target[:, at]) ** 2  # (B,)
            at += 1
        else:
            k = len(spec.values)
            error = F.cross_entropy(predicted[:, at : at + k], target[:, at : at + k].argmax(1), reduction="none")
            at += k
        losses.append((error * keep).sum() / keep.sum().clamp(min=1))
    return torch.stack(losses).mean()


# ---------------------------------------------------------------------------------------------
# Weight init and spectral norm.


def init_dcgan_weights(model: nn.Module) -> None:
    """Radford et al. 2016: conv and linear weights N(0, 0.02), BN weights N(1, 0.02), biases 0.

    Call before `add_spectral_norm`: afterwards `.weight` is computed, not a leaf to initialise.
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(module.weight, 0.0, 0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d) and module.affine:
            nn.init.normal_(module.weight, 1.0, 0.02)
            nn.init.zeros_(module.bias)


def add_spectral_norm(model: nn.Module) -> nn.Module:
    """Wrap every conv, linear and embedding weight of `model` in spectral norm (Miyato et al. 2018).

    Uses torch's parametrization, so the state_dict stores `weight.parametrizations.weight.original`
    plus the power-iteration vectors, and a rebuilt model with the same config loads it.
    """
    targets = [
        m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding))
    ]
    for module in targets:
        spectral_norm(module)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
