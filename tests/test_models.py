"""The model registry and every registered architecture: shapes, conditioning, config errors,
rebuild-from-config, bf16 autocast and channels_last. Tiny widths keep the whole file a few seconds."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from ganforge.errors import GanforgeError
from ganforge.models import (
    MODELS,
    ModelSpec,
    create_generator,
    create_models,
    model_config,
    register_model,
)
from ganforge.models.layers import ModelConfigError, count_parameters

# Per registered model: two data sizes to test, tiny widths, and wider widths for the size check.
# A new model must add a row here (test_every_model_has_test_settings fails until it does).
SETTINGS = {
    "dcgan": {
        "sizes": [{"resolution": 16}, {"resolution": 32}],
        "tiny": {"g_width": 8, "d_width": 8, "z_dim": 16},
        "wide": {"g_width": 16, "d_width": 16, "z_dim": 16},
    },
    "mlp": {
        "sizes": [{"dims": 2}, {"dims": 3}],
        "tiny": {"hidden": 16, "layers": 2},
        "wide": {"hidden": 32, "layers": 2},
    },
    "stylegan2": {
        "sizes": [{"resolution": 16}, {"resolution": 32}],
        "tiny": {"channel_base": 128, "channel_max": 8, "z_dim": 16, "w_dim": 16, "mapping_layers": 2},
        "wide": {"channel_base": 256, "channel_max": 16, "z_dim": 16, "w_dim": 16, "mapping_layers": 2},
        "bounded": False,  # linear output, as the paper: roughly [-1, 1], no tanh
    },
    "progan": {
        "sizes": [{"resolution": 16}, {"resolution": 32}],
        "tiny": {"channel_base": 64, "channel_max": 8, "z_dim": 16},
        "wide": {"channel_base": 128, "channel_max": 16, "z_dim": 16},
        "bounded": False,  # linear toRGB, as the paper
    },
}
# "classes" is class conditioning for a model with one built-in way (no `conditioning` field);
# models with a choice are tested under each named mode instead.
CONDITIONINGS = {
    "uncond": {"num_classes": 0},
    "cbn-projection": {"num_classes": 3, "conditioning": "cbn-projection"},
    "acgan": {"num_classes": 3, "conditioning": "acgan"},
    "projection+head": {"num_classes": 3, "conditioning": "cbn-projection", "class_head": True},
    "classes": {"num_classes": 3},
}


def takes(name: str, field: str) -> bool:
    return field in {f.name for f in dataclasses.fields(MODELS[name].config_class)}


def applies(name: str, cond: str) -> bool:
    """A conditioning applies to a model whose config has all its fields; "classes" only without a choice."""
    if cond == "classes":
        return not takes(name, "conditioning")
    return all(takes(name, field) for field in CONDITIONINGS[cond])


CASES = [(name, cond) for name in MODELS for cond in CONDITIONINGS if applies(name, cond)]
CONDITIONAL_CASES = [(name, cond) for name, cond in CASES if cond != "uncond"]
BATCH = 4


def build(name: str, cond: str, size: int = 0, **extra):
    fields = {**SETTINGS[name]["tiny"], **SETTINGS[name]["sizes"][size], **CONDITIONINGS[cond], **extra}
    return create_models(name, **fields)


def is_image_model(cfg) -> bool:
    return cfg.resolution > 0


def data_shape(cfg) -> tuple[int, ...]:
    return (cfg.channels, cfg.resolution, cfg.resolution) if is_image_model(cfg) else (cfg.dims,)


def inputs(cfg, batch: int = BATCH, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, cfg.z_dim, generator=gen)
    labels = torch.arange(batch) % cfg.num_classes if cfg.num_classes else None
    return z, labels


def test_every_model_has_test_settings():
    assert {"dcgan", "mlp"} <= set(MODELS)
    assert set(MODELS) <= set(SETTINGS), "add tiny test settings for each new model to SETTINGS"
    # Filtering CASES by config fields must keep every mode of the models that have a choice.
    for name in ("dcgan", "mlp"):
        assert {(name, "uncond"), (name, "cbn-projection"), (name, "acgan")} <= set(CASES)
        assert (name, "classes") not in CASES
    for name in MODELS:
        assert (name, "uncond") in CASES and any(n == name and c != "uncond" for n, c in CASES)


@pytest.mark.parametrize("size", [0, 1])
@pytest.mark.parametrize("name,cond", CASES)
def test_output_shapes(name, cond, size):
    cfg, G, D = build(name, cond, size)
    z, labels = inputs(cfg)
    x = G(z, labels)
    assert x.shape == (BATCH, *data_shape(cfg))
    assert G.z_dim == cfg.z_dim and G.config == cfg
    if is_image_model(cfg) and SETTINGS[name].get("bounded", True):
        assert x.min() >= -1 and x.max() <= 1
    logits, class_logits = D(x, labels)
    assert logits.shape == (BATCH,)
    if cond in ("acgan", "projection+head"):
        assert class_logits.shape == (BATCH, cfg.num_classes)
    else:
        assert class_logits is None


def test_dcgan_class_head_adds_class_logits_to_the_projection_model():
    fields = {"resolution": 16, "channels": 1, "g_width": 4, "d_width": 4, "z_dim": 8, "num_classes": 3}
    torch.manual_seed(0)
    _, G, D = create_models("dcgan", **fields)
    torch.manual_seed(0)
    _, G2, D2 = create_models("dcgan", **fields, class_head=True)
    z, labels = torch.randn(2, 8), torch.tensor([0, 2])
    assert torch.equal(G(z, labels), G2(z, labels))  # G is the projection model's, with the same draws
    x = torch.randn(2, 1, 16, 16)
    D.load_state_dict(D2.state_dict(), strict=False)
    assert D(x, labels)[1] is None
    logits, class_logits = D2(x, labels)
    assert torch.allclose(logits, D(x, labels)[0]) and class_logits.shape == (2, 3)
    assert not torch.allclose(D2(x, torch.tensor([1, 1]))[0], logits)  # the adversarial logit still reads the class
    with pytest.raises(ModelConfigError, match="class_head needs classes"):
        create_models("dcgan", **{**fields, "num_classes": 0}, class_head=True)


@pytest.mark.parametrize("resolution", [16, 32, 64, 128, 256])
def test_dcgan_every_resolution(resolution):
    _, G, D = create_models("dcgan", resolution=resolution, channels=1, g_width=4, d_width=4, z_dim=8)
    x = G(torch.randn(2, 8))
    assert x.shape == (2, 1, resolution, resolution)
    assert D(x)[0].shape == (2,)


def test_dcgan_defaults_match_the_paper_at_64px():
    cfg, G, D = create_models("dcgan")
    assert (cfg.resolution, cfg.channels, cfg.z_dim, cfg.spectral_norm) == (64, 3, 128, False)
    g_convs = [m.out_channels for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    d_convs = [m.out_channels for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert g_convs == [512, 256, 128, 64, 3]
    assert d_convs == [64, 128, 256, 512, 1]
    # No batch norm on D's first layer, as in the paper.
    assert not isinstance(D.features[1], nn.BatchNorm2d) and isinstance(D.features[3], nn.BatchNorm2d)
    conv = G.stem.weight
    assert abs(conv.mean().item()) < 0.005 and abs(conv.std().item() - 0.02) < 0.002


@pytest.mark.parametrize("name", [name for name in MODELS if takes(name, "spectral_norm")])
def test_spectral_norm_discriminator(name):
    cfg, G, D = build(name, "cbn-projection", spectral_norm=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    normalised = [m for m in D.modules() if hasattr(m, "parametrizations")]
    assert normalised, "spectral_norm=True should parametrise D's weights"
    z, labels = inputs(cfg)
    assert D(G(z, labels), labels)[0].shape == (BATCH,)


@pytest.mark.parametrize("name,cond", CONDITIONAL_CASES)
def test_labels_change_the_sample(name, cond):
    cfg, G, _ = build(name, cond)
    G.eval()
    z = torch.randn(1, cfg.z_dim).expand(cfg.num_classes, -1)
    x = G(z, torch.arange(cfg.num_classes))
    for k in range(1, cfg.num_classes):
        assert not torch.allclose(x[0], x[k]), f"class {k} gave the same sample as class 0"


@pytest.mark.parametrize("name,cond", CASES)
def test_wrong_labels_are_refused(name, cond):
    cfg, G, D = build(name, cond)
    z, labels = inputs(cfg)
    x = torch.zeros(BATCH, *data_shape(cfg))
    if cond == "uncond":
        bad = torch.zeros(BATCH, dtype=torch.long)
        for call in (lambda: G(z, bad), lambda: D(x, bad)):
            with pytest.raises(ValueError, match="unconditional"):
                call()
    else:
        for call in (lambda: G(z), lambda: D(x)):
            with pytest.raises(ValueError, match="needs labels"):
                call()
        with pytest.raises(ValueError, match="shape"):
            G(z, labels[:2])
        with pytest.raises(ValueError, match="integer"):
            D(x, labels.float())


@pytest.mark.parametrize(
    "name,fields,message",
    [
        ("dcgan", {"resolution": 48}, "power of two"),
        ("dcgan", {"resolution": 300}, "power of two between 16 and 256"),
        ("dcgan", {"resolution": 8}, "16, 32, 64, 128 or 256"),
        ("dcgan", {"channels": 2}, "1 \\(grey\\), 3 \\(RGB\\) or 4"),
        ("dcgan", {"conditioning": "concat"}, "conditioning must be one of"),
        ("dcgan", {"g_width": 2, "resolution": 256}, "g_width >= 4"),
        ("dcgan", {"z_dim": "128"}, "z_dim must be an integer"),
        ("dcgan", {"spectral_norm": 1}, "true or false"),
        ("dcgan", {"num_classes": -1}, "at least 0"),
        ("dcgan", {"widht": 64}, "Unknown field.*widht.*valid fields: resolution, channels"),
        ("mlp", {"dims": 0}, "dims must be at least 1"),
        ("mlp", {"resolution": 64}, "resolution must stay 0"),
        ("mlp", {"pack": 2, "num_classes": 3}, "set pack=1 or num_classes=0"),
        ("mlp", {"channels": 3}, "Unknown field.*channels.*valid fields: dims"),
    ],
)
def test_bad_configs_are_refused_with_a_reason(name, fields, message):
    with pytest.raises(ValueError, match=message) as caught:
        model_config(name, **fields)
    # Also a GanforgeError, so the CLI prints it as a sentence rather than a traceback.
    assert isinstance(caught.value, GanforgeError)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ValueError, match="known models: .*dcgan, .*mlp"):
        create_models("stylegan9")


def test_register_model_refuses_a_different_model_under_a_taken_name():
    spec = MODELS["mlp"]
    assert register_model(spec) is spec  # re-registering the same spec is harmless
    with pytest.raises(ValueError, match="already registered"):
        register_model(ModelSpec("mlp", spec.config_class, spec.generator, spec.generator))
    assert MODELS["mlp"] is spec


@pytest.mark.parametrize("name,cond", CASES)
def test_create_generator_from_config_dict_reproduces_outputs(name, cond):
    cfg, G, _ = build(name, cond)
    z, labels = inputs(cfg)
    G(z, labels)  # a train-mode pass moves BN running statistics away from their initial values
    G.eval()
    config_json = json.dumps(dataclasses.asdict(cfg))  # what an export writes to config.json
    G2 = create_generator(name, json.loads(config_json))
    G2.load_state_dict(G.state_dict())
    G2.eval()
    assert G2.config == cfg
    with torch.no_grad():
        assert torch.equal(G(z, labels), G2(z, labels))
    assert type(create_generator(name, cfg)) is type(G)
    with pytest.raises(ValueError, match="needs a dict"):
        create_generator(name, [1, 2])


@pytest.mark.parametrize("name,cond", CASES)
def test_bf16_autocast_forward_backward(name, cond):
    # acgan runs with spectral norm so the power iteration is exercised under autocast too.
    cfg, G, D = build(name, cond, **({"spectral_norm": True} if cond == "acgan" else {}))
    z, labels = inputs(cfg)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, class_logits = D(G(z, labels), labels)
        loss = nn.functional.softplus(-logits).mean()
        if class_logits is not None:
            loss = loss + nn.functional.cross_entropy(class_logits.float(), labels)
    loss.backward()
    for model in (G, D):
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name,cond", [case for case in CASES if case[0] == "dcgan"])
def test_channels_last(name, cond):
    cfg, G, D = build(name, cond)
    G.eval()
    D.eval()
    z, labels = inputs(cfg)
    with torch.no_grad():
        x = G(z, labels)
        expected = D(x, labels)[0]
        G.to(memory_format=torch.channels_last)
        D.to(memory_format=torch.channels_last)
        assert torch.allclose(G(z, labels), x, atol=1e-5)
        got = D(x.contiguous(memory_format=torch.channels_last), labels)[0]
    assert torch.allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_parameter_count_grows_with_width(name):
    small = [count_parameters(m) for m in build(name, "uncond")[1:]]
    wide = create_models(name, **{**SETTINGS[name]["wide"], **SETTINGS[name]["sizes"][0]})
    assert all(w > s for w, s in zip(map(count_parameters, wide[1:]), small))


def test_mlp_packing_groups_consecutive_points():
    _, _, D = create_models("mlp", hidden=16, layers=2, pack=4)
    x = torch.randn(12, 2)
    logits, _ = D(x)
    assert logits.shape == (3,)
    # Group 0 is rows 0..3: changing row 5 leaves its logit alone and changes group 1's.
    x2 = x.clone()
    x2[5] += 1.0
    logits2, _ = D(x2)
    assert logits2[0] == logits[0] and logits2[1] != logits[1]
    with pytest.raises(ValueError, match="multiple of 4"):
        D(torch.randn(10, 2))


# --- image-to-image models (TRANSLATORS): G(a) -> b, the interface export and translate read -----------
# A translator adds a row: its tiny config and an input size (A's side).
TRANSLATOR_SETTINGS = {
    "srresnet": {"fields": {"resolution": 16, "scale": 4, "width": 4, "blocks": 2, "d_width": 4, "d_dense": 8},
                 "side": 4},
}
TRANSLATOR_CASES = [name for name in TRANSLATOR_SETTINGS]


def build_translator(name: str):
    from ganforge.models import TRANSLATORS

    assert name in TRANSLATORS
    return create_models(name, **TRANSLATOR_SETTINGS[name]["fields"])


@pytest.mark.parametrize("name", TRANSLATOR_CASES)
def test_translator_interface_shapes_and_deterministic_eval(name):
    cfg, G, _ = build_translator(name)
    assert isinstance(G.scale, int) and isinstance(G.size_multiple, int) and G.size_multiple >= 1
    side = TRANSLATOR_SETTINGS[name]["side"]
    a = torch.rand(BATCH, cfg.in_channels, side, side) * 2 - 1
    G.eval()
    with torch.no_grad():
        b, again, alone = G(a), G(a), G(a[:1])
    assert b.shape == (BATCH, cfg.channels, side * G.scale, side * G.scale)
    assert b.min() >= -1 and b.max() <= 1
    assert torch.equal(b, again) and torch.allclose(alone, b[:1], atol=1e-6)


@pytest.mark.parametrize("name", TRANSLATOR_CASES)
def test_translator_rebuilt_from_its_config_json_gives_the_same_output(name):
    cfg, G, _ = build_translator(name)
    rebuilt = create_generator(name, json.loads(json.dumps(dataclasses.asdict(cfg))))
    rebuilt.load_state_dict(G.state_dict())
    side = TRANSLATOR_SETTINGS[name]["side"]
    a = torch.rand(2, cfg.in_channels, side, side) * 2 - 1
    G.eval(), rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(a), G(a))


@pytest.mark.parametrize("name", TRANSLATOR_CASES)
def test_translator_bf16_autocast_and_channels_last(name):
    cfg, G, _ = build_translator(name)
    side = TRANSLATOR_SETTINGS[name]["side"]
    a = torch.rand(2, cfg.in_channels, side, side) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        b = G(a)
    b.float().mean().backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in G.parameters())
    G.eval()
    with torch.no_grad():
        plain = G(a)
        G.to(memory_format=torch.channels_last)
        assert torch.allclose(G(a.contiguous(memory_format=torch.channels_last)), plain, atol=1e-5)


# Translators whose A is a label map (config.input_classes = K > 0): a long (B, H, W) input, the same checks.
LABEL_TRANSLATOR_SETTINGS = {
    "spade": {"fields": {"resolution": 16, "input_classes": 4, "width": 4, "hidden": 4, "d_width": 4, "d_layers": 2},
              "side": 16},
}


def label_map_input(name: str, batch: int, seed: int = 0):
    cfg, G, D = create_models(name, **LABEL_TRANSLATOR_SETTINGS[name]["fields"])
    side = LABEL_TRANSLATOR_SETTINGS[name]["side"]
    a = torch.randint(0, cfg.input_classes, (batch, side, side), generator=torch.Generator().manual_seed(seed))
    return cfg, G, D, a


@pytest.mark.parametrize("name", list(LABEL_TRANSLATOR_SETTINGS))
def test_label_map_translator_shapes_and_deterministic_eval(name):
    cfg, G, _, a = label_map_input(name, BATCH)
    assert isinstance(G.scale, int) and isinstance(G.size_multiple, int) and G.size_multiple >= 1
    assert a.shape[-1] % G.size_multiple == 0
    G(a)  # a training-mode pass moves any batch-norm statistics off their start
    G.eval()
    with torch.no_grad():
        b, again, alone = G(a), G(a), G(a[:1])
    side = LABEL_TRANSLATOR_SETTINGS[name]["side"]
    assert b.shape == (BATCH, cfg.channels, side * G.scale, side * G.scale)
    assert b.min() >= -1 and b.max() <= 1
    assert torch.equal(b, again) and torch.allclose(alone, b[:1], atol=1e-6)


@pytest.mark.parametrize("name", list(LABEL_TRANSLATOR_SETTINGS))
def test_label_map_translator_rebuilt_from_its_config_json_gives_the_same_output(name):
    cfg, G, _, a = label_map_input(name, 2)
    G(a)
    rebuilt = create_generator(name, json.loads(json.dumps(dataclasses.asdict(cfg))))
    rebuilt.load_state_dict(G.state_dict())
    G.eval(), rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(a), G(a))


@pytest.mark.parametrize("name", list(LABEL_TRANSLATOR_SETTINGS))
def test_label_map_translator_bf16_autocast_and_channels_last(name):
    cfg, G, D, a = label_map_input(name, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        b = G(a)
    b.float().mean().backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in G.parameters())
    G.eval()
    with torch.no_grad():
        plain = G(a)
        G.to(memory_format=torch.channels_last)
        assert torch.allclose(G(a), plain, atol=1e-5)
