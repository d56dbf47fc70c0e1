"""Recipes: each loss against a hand computation with stub networks, the optimiser correction, the
phases of each family, the one-way imports, and resumes that equal uninterrupted runs."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch
from resuming import assert_same_checkpoints
from torch import nn

from ganforge.data.format import PreparedDataset
from ganforge.train import checkpoint as ckpt
from ganforge.train.config import build_config
from ganforge.train.loop import Trainer
from ganforge.train.recipes import OptimizerGroup, create_recipe
from ganforge.train.recipes.base import Batch, Phase
from ganforge.train.recipes.classic import d_loss, g_loss
from ganforge.train.defaults import paper_r1_gamma

TINY = {"model.g_width": 8, "model.d_width": 8, "model.z_dim": 16, "batch_size": 16,
        "tick_kimg": 0.032, "grid_size": 10, "precision": "fp32", "ema_kimg": 0.1}
SG2 = {"model.name": "stylegan2", "model.z_dim": 16, "model.w_dim": 16, "model.mapping_layers": 2,
       "model.channel_base": 128, "model.channel_max": 8, "batch_size": 8, "tick_kimg": 0.016, "grid_size": 4,
       "precision": "fp32", "ema_kimg": 0.1, "eval_minutes": 0, "r1_every": 2, "pl_every": 2}


def sp(x: float) -> float:  # softplus by hand
    return math.log1p(math.exp(x))


REAL, FAKE = [1.0, -2.0], [0.5, 3.0]


@pytest.mark.parametrize("kind, d_expected, g_expected", [
    ("nonsaturating", (sp(-1) + sp(2)) / 2 + (sp(0.5) + sp(3)) / 2, (sp(-0.5) + sp(-3)) / 2),
    ("minimax", (sp(-1) + sp(2)) / 2 + (sp(0.5) + sp(3)) / 2, -(sp(0.5) + sp(3)) / 2),
    ("hinge", (0 + 3) / 2 + (1.5 + 4) / 2, -(0.5 + 3) / 2),
    ("lsgan", 0.5 * (0 + 9) / 2 + 0.5 * (0.25 + 9) / 2, 0.5 * (0.25 + 4) / 2),
    ("wgan-gp", (0.5 + 3) / 2 - (1 - 2) / 2, -(0.5 + 3) / 2),
])
def test_each_loss_equals_the_hand_computation(kind, d_expected, g_expected):
    real, fake = torch.tensor(REAL, dtype=torch.float64), torch.tensor(FAKE, dtype=torch.float64)
    assert float(d_loss(kind, real, fake)) == pytest.approx(d_expected, rel=1e-12)
    assert float(g_loss(kind, fake)) == pytest.approx(g_expected, rel=1e-12)


class LinearD(nn.Module):
    """D(x) = sum(w * x) + b: its input gradient is w everywhere."""

    def __init__(self, shape):
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-1, 1, math.prod(shape)).reshape(shape) * 0.1)
        self.b = nn.Parameter(torch.tensor(0.25))
        self.config = None

    def forward(self, x, labels=None):
        return (x * self.w).flatten(1).sum(1) + self.b, None


class QuadraticD(LinearD):
    """D(x) = sum(w * x²): its input gradient is 2 w x."""

    def forward(self, x, labels=None):
        return (x.square() * self.w).flatten(1).sum(1), None


class ConstantG(nn.Module):
    def __init__(self, image):
        super().__init__()
        self.image = nn.Parameter(image.clone())
        self.z_dim = 4

    def forward(self, z, labels=None):
        return self.image.expand(z.shape[0], *self.image.shape) + 0 * z.sum()


def classic(digits, **overrides):
    config = build_config(str(digits), "dcgan-small", {**TINY, "augment": "", **overrides})
    return create_recipe(config, PreparedDataset(digits), torch.device("cpu"), torch.Generator().manual_seed(0))


def test_classic_dmain_and_gmain_with_stub_networks(digits):
    recipe = classic(digits, loss="hinge")
    shape = (1, 16, 16)
    recipe.networks["D"] = D = LinearD(shape)
    recipe.networks["G"] = ConstantG(torch.full(shape, 0.5))
    real = torch.stack([torch.full(shape, -0.5), torch.full(shape, 1.0)])
    batch = Batch(real, None, torch.zeros(2, 4))
    loss, stats = recipe.loss(Phase("Dmain", "D"), batch)
    w_sum, b = float(D.w.detach().sum()), 0.25
    real_logits = [-0.5 * w_sum + b, 1.0 * w_sum + b]
    fake_logit = 0.5 * w_sum + b
    expected = sum(max(0, 1 - r) for r in real_logits) / 2 + max(0, 1 + fake_logit)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)
    assert float(stats["r_t"]) == pytest.approx(sum(math.copysign(1, r) for r in real_logits) / 2)
    g, _ = recipe.loss(Phase("Gmain", "G"), batch)  # the fakes of Dmain are reused
    assert float(g.detach()) == pytest.approx(-fake_logit, rel=1e-6)


class ClassD(LinearD):
    """LinearD with a class head of three classes: logits (0, 1, 2) times the image's mean."""

    def forward(self, x, labels=None):
        return super().forward(x)[0], x.flatten(1).mean(1, keepdim=True) * torch.tensor([0.0, 1.0, 2.0])


def ce(logits: list[float], label: int) -> float:  # cross-entropy by hand
    return math.log(sum(math.exp(v) for v in logits)) - logits[label]


@pytest.mark.parametrize("model", [{"model.conditioning": "acgan"}, {"model.class_head": True}],
                         ids=["acgan", "projection with a class head"])
@pytest.mark.parametrize("d_fakes", [False, True], ids=["D's class head on reals (default)", "and on fakes (Odena)"])
def test_acgan_class_terms_with_stub_networks(digits, d_fakes, model):
    recipe = classic(digits, loss="hinge", acgan_weight=2.0, acgan_d_fakes=d_fakes, **model)
    shape = (1, 16, 16)
    recipe.networks["D"] = D = ClassD(shape)
    recipe.networks["G"] = ConstantG(torch.full(shape, 0.5))
    real = torch.stack([torch.full(shape, -0.5), torch.full(shape, 1.0)])
    batch = Batch(real, torch.tensor([0, 2]), torch.zeros(2, 4))  # the fakes are asked for the same classes
    loss, _ = recipe.loss(Phase("Dmain", "D"), batch)
    w_sum, b = float(D.w.detach().sum()), 0.25
    real_logits, fake_logit = [-0.5 * w_sum + b, 1.0 * w_sum + b], 0.5 * w_sum + b
    hinge = sum(max(0, 1 - r) for r in real_logits) / 2 + max(0, 1 + fake_logit)
    real_class = (ce([0, -0.5, -1.0], 0) + ce([0, 1.0, 2.0], 2)) / 2
    fake_class = (ce([0, 0.5, 1.0], 0) + ce([0, 0.5, 1.0], 2)) / 2
    expected = hinge + 2.0 * (real_class + (fake_class if d_fakes else 0.0))
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)
    g, _ = recipe.loss(Phase("Gmain", "G"), batch)  # G is always taught to make the asked class
    assert float(g.detach()) == pytest.approx(-fake_logit + 2.0 * fake_class, rel=1e-6)


def test_r1_and_gradient_penalty_with_stub_networks(digits):
    shape = (1, 16, 16)
    recipe = classic(digits, r1_gamma=3.0, r1_every=4)
    recipe.networks["D"] = D = QuadraticD(shape)
    real = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    loss, stats = recipe.loss(Phase("Dreg", "D", 4), Batch(real, None, None))
    by_hand = (2 * D.w.detach() * real).square().flatten(1).sum(1).mean()  # ||2 w x||², averaged
    assert float(stats["R1"]) == pytest.approx(float(by_hand), rel=1e-5)
    assert float(loss.detach()) == pytest.approx(float(by_hand) * 3.0 / 2 * 4, rel=1e-5)  # γ/2, times the interval

    recipe = classic(digits, loss="wgan-gp", gp_weight=10.0)
    recipe.networks["D"] = D = LinearD(shape)
    recipe.networks["G"] = ConstantG(torch.zeros(shape))
    batch = Batch(real, None, torch.zeros(2, 4))
    loss, _ = recipe.loss(Phase("Dmain", "D"), batch)
    logits_real = (real * D.w).flatten(1).sum(1) + 0.25
    penalty = (float(D.w.detach().norm()) - 1) ** 2  # a linear D's gradient is w at every mixed point
    assert float(loss.detach()) == pytest.approx(0.25 - float(logits_real.detach().mean()) + 10 * penalty, rel=1e-5)


def test_lazy_regularisation_corrects_the_rate_and_betas():
    group = OptimizerGroup(("D",), 0.002, (0.0, 0.99), reg_interval=16)
    c = 16 / 17
    assert group.effective_lr == pytest.approx(0.002 * c)
    assert group.effective_betas == pytest.approx((0.0, 0.99**c))
    assert OptimizerGroup(("G",), 0.002, (0.5, 0.9)).effective_lr == 0.002


def test_stylegan2_phases_and_optimisers(digits, tmp_path):
    config = build_config(str(digits), None, {**SG2, "lr_g": 0.0025, "lr_d": 0.0025, "beta1": 0.0, "beta2": 0.99,
                                              "r1_gamma": 0.5, "r1_every": 16, "pl_every": 4})
    trainer = Trainer(config, tmp_path, progress=False)
    assert [(p.name, p.interval) for p in trainer.phases] == [("Dmain", 1), ("Dreg", 16), ("Gmain", 1), ("Greg", 4)]
    d = trainer.optimizers["D"].param_groups[0]
    g = trainer.optimizers["G"].param_groups[0]
    assert d["lr"] == pytest.approx(0.0025 * 16 / 17) and d["betas"][1] == pytest.approx(0.99 ** (16 / 17))
    assert g["lr"] == pytest.approx(0.0025 * 4 / 5) and g["betas"][1] == pytest.approx(0.99 ** (4 / 5))
    assert paper_r1_gamma(64, 32) == pytest.approx(0.0002 * 64 * 64 / 32)


class StubStyleG(nn.Module):
    """mapping: w = z A (broadcast to 2 layers); synthesis: image = reshape(sum over layers of w B)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.A = nn.Parameter(torch.randn(4, 4, generator=g))
        self.B = nn.Parameter(torch.randn(4, 16 * 16, generator=g) * 0.1)
        self.z_dim, self.num_ws = 4, 2
        self.register_buffer("w_avg", torch.zeros(4))

    def mapping(self, z, labels=None, update_w_avg_beta=None, **_):
        return (z @ self.A).unsqueeze(1).repeat(1, self.num_ws, 1)

    def synthesis(self, ws, noise_mode="const", generator=None):
        return (ws.sum(1) @ self.B).reshape(-1, 1, 16, 16)


def test_path_length_penalty_with_a_stub_generator(digits):
    config = build_config(str(digits), None, {**SG2, "style_mixing": 0.0, "pl_decay": 0.01, "pl_weight": 2.0})
    rng = torch.Generator().manual_seed(5)
    recipe = create_recipe(config, PreparedDataset(digits), torch.device("cpu"), rng)
    recipe.networks["G"] = G = StubStyleG()
    z = torch.randn(8, 4, generator=torch.Generator().manual_seed(6))
    state = rng.get_state()
    loss, stats = recipe.loss(Phase("Greg", "G", 4), Batch(None, None, z))
    # by hand: the image is linear in each layer's w, so J_w^T y = (B y) for both layers, whatever w is
    rng.set_state(state)
    noise = torch.randn((4, 1, 16, 16), generator=rng) / 16  # half the batch; divided by sqrt(H W)
    per_layer = noise.flatten(1) @ G.B.detach().T  # (4, w_dim)
    lengths = (per_layer.square().sum(1) * 2 / 2).sqrt()  # sum over w_dim, mean over the 2 layers
    mean = 0.01 * float(lengths.mean())  # the running mean starts at 0
    penalty = float((lengths - mean).square().mean())
    assert float(stats["path_length"]) == pytest.approx(float(lengths.mean()), rel=1e-5)
    assert float(recipe.pl_mean) == pytest.approx(mean, rel=1e-5)
    assert float(loss.detach()) == pytest.approx(penalty * 2.0 * 4, rel=1e-5)


# --- one-way imports -------------------------------------------------------------------------------

LAYERS = Path(__file__).parent.parent / "src" / "ganforge"


def runtime_nodes(tree: ast.AST):
    """Every node that can run: all of them but the bodies of `if TYPE_CHECKING:` (names for type hints)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            yield from (n for child in node.orelse for n in [child, *runtime_nodes(child)])
            continue
        yield node
        yield from runtime_nodes(node)


def import_graph() -> dict[str, set[str]]:
    """Every import in the package (module-level and inside functions), between modules."""
    modules = {}
    for path in LAYERS.rglob("*.py"):
        parts = path.relative_to(LAYERS.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name and t != "ganforge"}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else module


def test_no_import_cycle_between_modules_or_packages():
    graph = import_graph()
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        packages.setdefault(package_of(module), set()).update(
            package_of(t) for t in targets if package_of(t) != package_of(module))
    for targets in list(packages.values()):
        for t in targets:
            packages.setdefault(t, set())
    cycle = find_cycle(packages)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_training_never_imports_metrics_or_export():
    graph = import_graph()
    for module, targets in graph.items():
        if module.startswith("ganforge.train"):
            assert not {t for t in targets if t.startswith(("ganforge.metrics", "ganforge.export", "ganforge.api"))}, module


# --- resumes ---------------------------------------------------------------------------------------


def networks_of(run: Path) -> dict:
    return ckpt.latest_loadable(run / "checkpoints")[1]


def assert_same_state(a: dict, b: dict) -> None:
    assert_same_checkpoints(a, b)
    assert a["recipe"].keys() == b["recipe"].keys()
    for key, value in a["recipe"].items():
        assert str(value) == str(b["recipe"][key]), key


@pytest.mark.parametrize("overrides", [
    {**TINY, "augment": "ada", "ada_kimg": 1.0, "ada_interval": 1, "ada_p": 0.5},
    {**SG2, "augment": "ada", "ada_kimg": 1.0, "ada_interval": 1, "ada_p": 0.5, "r1_gamma": 0.1},
], ids=["classic-ada", "stylegan2-ada"])
def test_resume_keeps_augmentation_strength_path_length_and_data_order(digits, tmp_path, overrides):
    from ganforge.api import train_gan

    base = {**overrides, "eval_minutes": 0}
    preset = "dcgan-small" if "model.name" not in overrides else None
    straight = train_gan(digits, preset=preset, overrides={**base, "kimg": 0.096, "runs_dir": str(tmp_path / "a")},
                         progress=False).run_dir
    stopped = train_gan(digits, preset=preset, overrides={**base, "kimg": 0.048, "runs_dir": str(tmp_path / "b")},
                        progress=False).run_dir
    train_gan(resume=stopped, overrides={"kimg": 0.096}, progress=False)
    a, b = networks_of(straight), networks_of(stopped)
    assert a["images_seen"] == b["images_seen"] == 96
    # ADA ran at every step (its own tests check how p moves) and the resumed run continued its count and p
    assert a["recipe"]["ada"]["steps"] == 96 // overrides["batch_size"]
    assert (straight / "augmentation.png").stat().st_size > 1000  # the p and r_t plot
    assert_same_state(a, b)
    if "pl_mean" in a["recipe"]:
        assert float(a["recipe"]["pl_mean"]) > 0


def test_resume_with_periodic_kid_equals_an_uninterrupted_run(digits, tmp_path):
    """Evaluations fall at other steps in a stopped run; they must not change what training draws."""
    from ganforge.api import train_gan

    base = {**TINY, "augment": "translation,cutout", "eval_minutes": 1e-6, "eval_images": 16}
    straight = train_gan(digits, preset="dcgan-small", overrides={**base, "kimg": 0.128, "runs_dir": str(tmp_path / "a")},
                         progress=False).run_dir
    plain = train_gan(digits, preset="dcgan-small", overrides={**base, "eval_minutes": 0, "kimg": 0.128,
                                                               "runs_dir": str(tmp_path / "c")}, progress=False).run_dir
    stopped = train_gan(digits, preset="dcgan-small", overrides={**base, "kimg": 0.064, "runs_dir": str(tmp_path / "b")},
                        progress=False).run_dir
    train_gan(resume=stopped, overrides={"kimg": 0.128}, progress=False)
    a, b, c = networks_of(straight), networks_of(stopped), networks_of(plain)
    assert_same_state(a, b)
    assert_same_state(a, c)  # evaluating at all changes nothing in training


def test_defaults_are_chosen_from_the_data_explained_and_overridable(digits, capsys):
    from ganforge.api import train_gan
    from ganforge.train.defaults import choose_defaults

    chosen = train_gan(digits, dry_run=True, progress=True, overrides={"device": "cpu"}).config
    assert chosen.preset == "dcgan-small" and chosen.augment == "ada"
    assert "small collection" in capsys.readouterr().err
    mine = train_gan(digits, overrides={"augment": "", "device": "cpu"}, dry_run=True, progress=False).config
    assert mine.augment == ""  # the command line wins
    on_gpu = choose_defaults("images", 3786, 64, "cuda")
    assert on_gpu.preset == "stylegan2-paper" and on_gpu.overrides["augment"] == "ada"
    assert choose_defaults("points", 4096, None).preset == "points"
    assert choose_defaults("images", 50_000, 32, "cpu").overrides["augment"] == ""  # measured better on CIFAR-10


def test_stylegan2_r1_weight_follows_the_paper_unless_given(digits, capsys):
    from ganforge.api import train_gan

    config = train_gan(digits, preset="stylegan2", dry_run=True, progress=True).config
    assert config.r1_gamma == pytest.approx(paper_r1_gamma(16, config.batch_size))
    assert "R1" in capsys.readouterr().err
    assert train_gan(digits, preset="stylegan2", overrides={"r1_gamma": 0.5}, dry_run=True,
                     progress=False).config.r1_gamma == 0.5
