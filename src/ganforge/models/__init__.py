"""The model registry and factory: a name maps to a config dataclass and a generator/discriminator.

    cfg, G, D = create_models("dcgan", resolution=32, num_classes=10)
    G2 = create_generator("dcgan", dataclasses.asdict(cfg))   # e.g. from an exported config.json
    G2.load_state_dict(G.state_dict())

Every generator is `G(z, labels=None) -> samples` with `G.z_dim` and `G.config`; every
discriminator is `D(x, labels=None) -> (logits (B,), class_logits (B, K) or None)`. Conditional
models (num_classes > 0) need labels in both G and D; unconditional ones refuse them.
New architectures add a file with a config and the two modules, then call `register_model`.

Image-to-image models take an image, not a latent (`G(a) -> b`, `D(a, b) -> patch logits`), so they
live in their own registry, TRANSLATORS (`register_translator`), and every consumer of MODELS keeps its
`G(z, labels)`. `model_config`, `create_models` and `create_generator` find a name in either.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from torch import nn

from ganforge.models.cyclegan import CycleDiscriminators, CycleGANConfig, CycleGenerator
from ganforge.models.dcgan import DCGANConfig, DCGANDiscriminator, DCGANGenerator
from ganforge.models.dtn import DTNConfig, DTNDiscriminator, DTNGenerator
from ganforge.models.layers import ModelConfigError
from ganforge.models.mlp import MLPConfig, MLPDiscriminator, MLPGenerator
from ganforge.models.pix2pix import PatchDiscriminator, Pix2PixConfig, UNetGenerator
from ganforge.models.progan import ProGANConfig, ProGANDiscriminator, ProGANGenerator
from ganforge.models.spade import MultiscaleDiscriminator, SPADEConfig, SPADEGenerator
from ganforge.models.srresnet import SRDiscriminator, SRGenerator, SRResNetConfig
from ganforge.models.stylegan2 import StyleGAN2Config, StyleGAN2Discriminator, StyleGAN2Generator

__all__ = [
    "MODELS",
    "TRANSLATORS",
    "ModelConfigError",
    "ModelSpec",
    "create_generator",
    "create_models",
    "model_config",
    "register_model",
    "register_translator",
]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    config_class: type  # the architecture's @dataclass config
    generator: type  # nn.Module class taking (config)
    discriminator: type  # nn.Module class taking (config)


MODELS: dict[str, ModelSpec] = {}  # latent -> image (or points) generators
TRANSLATORS: dict[str, ModelSpec] = {}  # image -> image generators


def register_model(spec: ModelSpec, registry: dict[str, ModelSpec] | None = None) -> ModelSpec:
    """Add `spec` to MODELS; a second model under the same name is an error, never a silent swap."""
    registry = MODELS if registry is None else registry
    if not dataclasses.is_dataclass(spec.config_class):
        raise TypeError(f"model {spec.name!r}: config_class must be a dataclass, got {spec.config_class!r}.")
    other = TRANSLATORS if registry is MODELS else MODELS
    if (spec.name in registry and registry[spec.name] != spec) or spec.name in other:
        raise ValueError(f"a model named {spec.name!r} is already registered; pick another name.")
    registry[spec.name] = spec
    return spec


def register_translator(spec: ModelSpec) -> ModelSpec:
    """Add an image-to-image model (`G(a) -> b`, `D(a, b)`) to TRANSLATORS."""
    return register_model(spec, TRANSLATORS)


def _spec(name: str) -> ModelSpec:
    spec = MODELS.get(name) or TRANSLATORS.get(name)
    if spec is None:
        raise ModelConfigError(f"Unknown model {name!r}; known models: {', '.join(sorted({**MODELS, **TRANSLATORS}))}.")
    return spec


def model_config(name: str, **fields: Any) -> Any:
    """The validated config of model `name`; unknown fields are an error listing the valid ones."""
    spec = _spec(name)
    valid = [f.name for f in dataclasses.fields(spec.config_class)]
    unknown = sorted(set(fields) - set(valid))
    if unknown:
        raise ModelConfigError(
            f"Unknown field(s) {', '.join(unknown)} for model {name!r}; valid fields: {', '.join(valid)}."
        )
    return spec.config_class(**fields)  # validates in __post_init__


def create_models(name: str, **fields: Any) -> tuple[Any, nn.Module, nn.Module]:
    """(config, generator, discriminator) for model `name` built from `fields` over the defaults."""
    spec = _spec(name)
    config = model_config(name, **fields)
    return config, spec.generator(config), spec.discriminator(config)


def create_generator(name: str, config: dict[str, Any] | Any) -> nn.Module:
    """Rebuild the generator alone from its config (the dataclass or its `asdict`, e.g. read from JSON).

    The module is identical in structure to the trained one, so its exported state_dict loads.
    """
    spec = _spec(name)
    if isinstance(config, dict):
        config = model_config(name, **config)
    elif not isinstance(config, spec.config_class):
        raise ModelConfigError(
            f"create_generator({name!r}, ...) needs a dict or a {spec.config_class.__name__}, "
            f"got {type(config).__name__}."
        )
    return spec.generator(config)


register_model(ModelSpec("dcgan", DCGANConfig, DCGANGenerator, DCGANDiscriminator))
register_model(ModelSpec("mlp", MLPConfig, MLPGenerator, MLPDiscriminator))
register_model(ModelSpec("stylegan2", StyleGAN2Config, StyleGAN2Generator, StyleGAN2Discriminator))
register_model(ModelSpec("progan", ProGANConfig, ProGANGenerator, ProGANDiscriminator))
register_translator(ModelSpec("pix2pix", Pix2PixConfig, UNetGenerator, PatchDiscriminator))
register_translator(ModelSpec("spade", SPADEConfig, SPADEGenerator, MultiscaleDiscriminator))
register_translator(ModelSpec("cyclegan", CycleGANConfig, CycleGenerator, CycleDiscriminators))
register_translator(ModelSpec("dtn", DTNConfig, DTNGenerator, DTNDiscriminator))
register_translator(ModelSpec("srresnet", SRResNetConfig, SRGenerator, SRDiscriminator))
