"""Pieces every architecture shares: the config error, config and input checks, class-conditional
layers (conditional batch norm, the projection term), the spectral-norm helper and DCGAN weight init.

Nothing here knows a particular architecture; `dcgan.py` and `mlp.py` build from these.
"""

from __future__ import annotations

import torch
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
