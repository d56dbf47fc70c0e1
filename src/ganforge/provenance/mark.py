"""The invisible provenance mark: a model id and a seed hidden in an image's brightness, read back by
`ganforge verify` even after JPEG compression or resizing.

Why not a library: invisible-watermark (the DWT-DCT marker Stable Diffusion ships) refuses images under
256 x 256 px, and ganforge makes 16-64 px images; its decoder also has no notion of "no mark here",
so every image would decode to some bits. This module does both jobs on any image size.

How it works. The luminance is area-averaged to at most 32 x 32 px and taken to the DCT domain; a fixed
band of low-to-middle frequencies (what JPEG and resizing keep) is split, with a public key, into 160
groups of coefficients. Each group carries one bit by spread-transform dither modulation (STDM, Chen &
Wornell 2001): the group's projection on a keyed +-1 direction is moved to the nearest point of one of
two interleaved lattices. The change is spread back over the full-size image equally in R, G and B, so
colours do not shift. The 160 bits are a Reed-Solomon codeword (reedsolo: 6 parity bytes, which correct
3 wrong bytes or 6 unreliable ones) of 12 payload bytes (model id 4, seed 8) and a CRC-16.

Reading finds a mark only when the codeword decodes, its CRC holds, and the soft bits agree with the
decoded codeword far beyond chance (`MIN_SCORE`): an unmarked image passes all three with a probability
far below 1e-6 (measured on 10,000 real images in benchmarks/bench_mark.py). Because brightening or
raising contrast scales every coefficient, reading also tries a few scales.

The key is public: anyone with ganforge can read a mark, and so could erase or forge one. The mark says
where an image came from when nobody has tampered with it; the signed PNG metadata (`sign.py`) is what
proves it.
"""

from __future__ import annotations

import binascii
import functools
import math
import struct
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from reedsolo import ReedSolomonError, RSCodec

from ganforge.colours import BT601
from ganforge.errors import GanforgeError

CANON = 32  # the luminance is analysed at up to 32 x 32 px: coarse enough to survive JPEG and resizing
PAYLOAD_BYTES, CRC_BYTES, PARITY_BYTES = 8, 2, 10
CODE_BYTES = PAYLOAD_BYTES + CRC_BYTES + PARITY_BYTES
BITS = 8 * CODE_BYTES  # 160
BAND_TOP, BAND_SUM = 0.8, 1.0
STEP = 30.0  # lattice step of each bit's projection, in 8-bit luminance units: the strength of the mark
MIN_SCORE = 0.4  # soft agreement a found mark must reach; chance gives 0 +- 0.06
MIN_SCORE_ERASED = 0.6  # ... when more than half the parity went to erasures (chance then gives about 0.35)
SCALES = (1.0, 1.5, 1 / 1.5, 1.25, 0.8, 2.0, 0.5)  # brightness/contrast changes reading tries
NO_SEED = 0xFFFF_FFFF  # the seed field of an image made from no single seed (a bred child), or a seed too big for 32 bits
_KEY = 0x6761_6E66_6F72_6765  # "ganforge": the public key of the layout
_RS = RSCodec(PARITY_BYTES)
_LUMA = BT601


class MarkError(GanforgeError, ValueError):
    pass


def fits(height: int, width: int) -> bool:
    """Whether an image this size can carry a mark (13 x 13 px or more)."""
    ch, cw = _grid(height, width)
    return ch * cw - 1 >= BITS


@dataclass(frozen=True)
class Reading:
    """What reading an image found. `score`: agreement of its soft bits with the decoded codeword, 1 for an
    untouched mark, about 0 for an unmarked image. `bits`: the 160 hard bits read at scale 1."""

    found: bool
    model_id: str | None = None
    seed: int | None = None  # None: no mark, or an image made from no single seed
    score: float = 0.0
    scale: float = 1.0
    bits: np.ndarray | None = None

    @property
    def false_match_chance(self) -> float:
        """How likely an unmarked image is to score this high (one-sided Gaussian tail of chance agreement,
        times the CRC's 1 in 65,536 and the scales tried)."""
        if not self.found:
            return 1.0
        z = self.score * math.sqrt(BITS / 0.5)  # chance soft agreement: mean 0, variance 0.5 / BITS
        return min(1.0, 0.5 * math.erfc(z / math.sqrt(2)) * len(SCALES) / 65536)


# --- the payload -------------------------------------------------------------------------------------


def codeword(model_id: str, seed: int | None) -> np.ndarray:
    """The 160 bits (uint8 0/1) that carry `model_id` (8 hex digits) and `seed` (0..2**63-1, or None)."""
    ident = int(model_id, 16)
    if not 0 <= ident < 1 << 32:
        raise ValueError(f"model id {model_id!r}: 8 hex digits")
    field = NO_SEED if seed is None or not 0 <= int(seed) < NO_SEED else int(seed)
    payload = struct.pack(">II", ident, field)
    message = payload + struct.pack(">H", binascii.crc_hqx(payload, 0))
    return np.unpackbits(np.frombuffer(bytes(_RS.encode(message)), dtype=np.uint8))


def _decode(bits: np.ndarray, soft: np.ndarray) -> tuple[str, int | None, float] | None:
    """Model id, seed and score from one image's hard and soft bits, or None. Tries plain decoding, then
    with more and more of the least reliable bytes erased (Reed-Solomon corrects twice as many erased bytes
    as wrong ones); a decode with many erasures must agree better with the soft bits to count, because
    any word decodes once every parity byte is spent on erasures."""
    data = bytearray(np.packbits(bits).tobytes())
    order = np.argsort(np.abs(soft).reshape(CODE_BYTES, 8).min(1)).tolist()
    for erased in range(0, PARITY_BYTES + 1, 2):
        try:
            message = bytes(_RS.decode(data, erase_pos=order[:erased] or None)[0])
        except ReedSolomonError:
            continue
        payload, crc = message[:PAYLOAD_BYTES], message[PAYLOAD_BYTES:]
        if struct.unpack(">H", crc)[0] != binascii.crc_hqx(payload, 0):
            continue
        fixed = np.unpackbits(np.frombuffer(bytes(_RS.encode(message)), dtype=np.uint8)).astype(np.float64)
        score = float(np.mean(soft * (1 - 2 * fixed)))
        if score < (MIN_SCORE if erased <= PARITY_BYTES // 2 else MIN_SCORE_ERASED):
            continue
        ident, field = struct.unpack(">II", payload)
        return f"{ident:08x}", None if field == NO_SEED else field, score
    return None


# --- the layout: which coefficients carry which bit ----------------------------------------------------


@functools.lru_cache(maxsize=32)
def _layout(ch: int, cw: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """For an analysis grid of ch x cw: the DCT matrices, each bit's coefficient indices (BITS, L) into the
    flattened grid, its unit +-1 direction (BITS, L) and its lattice dither (BITS,)."""
    u, v = np.meshgrid(np.arange(ch), np.arange(cw), indexing="ij")
    # Low to middle frequencies: not the mean, not the top ones (JPEG's quantiser and resampling take those).
    top_u, top_v = max(2, int(ch * BAND_TOP)), max(2, int(cw * BAND_TOP))
    band = (u + v >= 2) & (u < top_u) & (v < top_v) & (u / top_u + v / top_v <= BAND_SUM)
    if band.sum() < BITS:  # under about 24 px: every frequency but the mean, less robust but still a mark
        band = u + v >= 1
    index = np.flatnonzero(band.ravel())
    if index.size < BITS:
        raise MarkError(f"a {ch} x {cw} px image is too small to carry a mark (it needs {BITS} DCT coefficients, "
                        f"about 13 x 13 px)")
    rng = np.random.default_rng([_KEY, ch, cw])
    per_bit = index.size // BITS
    groups = rng.permutation(index)[: per_bit * BITS].reshape(BITS, per_bit)
    signs = rng.choice([-1.0, 1.0], size=groups.shape) / math.sqrt(per_bit)
    dither = rng.uniform(0, STEP, size=BITS)
    return (_dct_matrix(ch), _dct_matrix(cw), torch.from_numpy(groups), torch.from_numpy(signs).float(),
            torch.from_numpy(dither).float())


def _dct_matrix(n: int) -> torch.Tensor:
    """The orthonormal DCT-II matrix: coefficients = D @ signal."""
    k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    d = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return torch.from_numpy(d).float()


def _grid(h: int, w: int) -> tuple[int, int]:
    return min(CANON, h), min(CANON, w)


# --- reading and writing -----------------------------------------------------------------------------


def _luma(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luminance of (B, C, H, W) float 0..255 (grey: the channel; RGB(A): BT.601 weights)."""
    if x.shape[1] < 3:
        return x[:, :1]
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return _LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b


def _projections(luma: torch.Tensor) -> torch.Tensor:
    """(B, BITS) projections of each bit's coefficients on its direction."""
    h, w = luma.shape[-2:]
    ch, cw = _grid(h, w)
    dh, dw, groups, signs, _ = _layout(ch, cw)
    small = F.interpolate(luma, size=(ch, cw), mode="area") if (ch, cw) != (h, w) else luma
    coeffs = (dh @ small[:, 0] @ dw.T).flatten(1)  # (B, ch*cw)
    return (coeffs[:, groups] * signs).sum(-1)


def _spread(delta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, 1, H, W) luminance change that moves each bit's projection by `delta` (B, BITS)."""
    ch, cw = _grid(h, w)
    dh, dw, groups, signs, _ = _layout(ch, cw)
    coeffs = torch.zeros(delta.shape[0], ch * cw)
    coeffs.scatter_add_(1, groups.flatten().expand(delta.shape[0], -1), (delta[..., None] * signs).flatten(1))
    change = (dh.T @ coeffs.view(-1, ch, cw) @ dw)[:, None]
    if (ch, cw) != (h, w):
        change = F.interpolate(change, size=(h, w), mode="bicubic", align_corners=False)
    return change


def embed(images: np.ndarray, model_id: str, seeds: list[int | None], rounds: int = 4) -> np.ndarray:
    """`images` (B, H, W, C) uint8 with C 1, 3 or 4, marked: each carrying `model_id` and its seed. Alpha is
    left alone. A few rounds of correcting after rounding and clipping put every projection on its lattice."""
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError("embed takes a (B, H, W, C) uint8 array")
    h, w = images.shape[1:3]
    _, _, _, _, dither = _layout(*_grid(h, w))
    bits = torch.from_numpy(np.stack([codeword(model_id, s) for s in seeds])).float()  # (B, BITS)
    original = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    colour = original[:, :3] if original.shape[1] >= 3 else original[:, :1]
    offset = dither + bits * (STEP / 2)
    x = _projections(_luma(colour))
    target = offset + STEP * torch.round((x - offset) / STEP)
    marked = colour
    for _ in range(rounds):
        delta = target - _projections(_luma(marked))
        marked = (marked + _spread(delta, h, w)).clamp(0, 255).round()
    out = images.copy()
    out[..., : marked.shape[1]] = marked.permute(0, 2, 3, 1).to(torch.uint8).numpy()
    return out


def read(images: np.ndarray) -> list[Reading]:
    """What mark each image (B, H, W, C) uint8 carries, if any."""
    if images.ndim != 4:
        raise ValueError("read takes a (B, H, W, C) array")
    h, w = images.shape[1:3]
    _, _, _, _, dither = _layout(*_grid(h, w))
    x = _projections(_luma(torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2).float()))
    readings = []
    for row in x:
        best = None
        for scale in SCALES:
            soft = torch.cos(2 * math.pi * (row / scale - dither) / STEP).numpy().astype(np.float64)  # +1: bit 0
            decoded = _decode((soft < 0).astype(np.uint8), soft)
            if decoded is not None and (best is None or decoded[2] > best.score):
                best = Reading(True, decoded[0], decoded[1], decoded[2], scale)
            if best is not None and best.score > 0.9:
                break
        bits = (torch.cos(2 * math.pi * (row - dither) / STEP).numpy() < 0).astype(np.uint8)
        readings.append(Reading(False, bits=bits) if best is None else
                        Reading(best.found, best.model_id, best.seed, best.score, best.scale, bits))
    return readings
