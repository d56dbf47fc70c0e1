"""Derived pairs: an A image computed from each B image, so an image-to-image task needs no second set.

`--derive MODE` makes A from B (the prepared images):

    gray          A = luma of B (ITU-R 601, as everywhere else in ganforge), 1 channel: colourisation
    edges         A = Canny edges of B's luma (scikit-image), black lines on white, 1 channel
    sketch        A = an XDoG pencil drawing of B's luma (Winnemöller et al. 2012), 1 channel
    downscale:F   A = B shrunk F times, bicubic with antialiasing (Pillow): super-resolution
    labels:K      A = each pixel's nearest of K colour centres in CIE Lab, 1 channel uint8 0..K-1;
                  the centres are fitted once by k-means on a seeded sample of the dataset's pixels
                  and saved in the manifest, so the same map can be drawn for any new image

Every mode is a pure function of B (and, for labels, of the saved centres): deterministic, so a
resumed preparation derives exactly what an uninterrupted one would.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ganforge.colours import BT601
from ganforge.data.output import PrepareError

MODES = ("gray", "edges", "sketch", "downscale:F", "labels:K")
MAX_LABELS = 256  # A is uint8

# XDoG parameters, on intensities in [0, 1] (Winnemöller, Kyprianidis and Olsen 2012, eq. 5 and 6):
# S = (1 + p) G_sigma(I) - p G_{k sigma}(I), then T(S) = 1 if S >= eps else 1 + tanh(phi (S - eps)).
# On flat areas S = I, so anything lighter than eps stays white; across an edge the sharpened
# difference of Gaussians goes strongly negative on the dark side, which draws the line.
XDOG = {"sigma": 0.8, "k": 1.6, "p": 20.0, "epsilon": 0.1, "phi": 10.0}
CANNY_SIGMA = 1.0
LABEL_SAMPLE_IMAGES = 512  # k-means is fitted on the pixels of at most this many images ...
LABEL_SAMPLE_PIXELS = 100_000  # ... of which at most this many pixels
LUMA = np.array([round(1000 * w) for w in BT601], np.uint32)  # in thousandths, as Pillow's "L" rounds them


@dataclass(frozen=True)
class DeriveSpec:
    mode: str  # gray | edges | sketch | downscale | labels
    factor: int = 1  # downscale
    k: int = 0  # labels

    @property
    def text(self) -> str:
        return {"downscale": f"downscale:{self.factor}", "labels": f"labels:{self.k}"}.get(self.mode, self.mode)

    def a_resolution(self, resolution: int) -> int:
        return resolution // self.factor

    def a_channels(self, b_channels: int) -> int:
        return b_channels if self.mode == "downscale" else 1

    def params(self) -> dict:
        """What the manifest records about how A was made."""
        if self.mode == "sketch":
            return dict(XDOG)
        if self.mode == "edges":
            return {"sigma": CANNY_SIGMA, "lines": "black on white"}
        if self.mode == "downscale":
            return {"factor": self.factor, "filter": "bicubic, antialiased (Pillow)"}
        if self.mode == "labels":
            return {"k": self.k, "colour_space": "CIE Lab (scikit-image rgb2lab, D65)", "seed": 0}
        return {"luma": "ITU-R 601: (299 R + 587 G + 114 B) / 1000, rounded"}


def parse_derive(text: str) -> DeriveSpec:
    """`--derive TEXT` as a spec, or a PrepareError naming the modes."""
    name, _, arg = str(text).partition(":")
    if name in ("gray", "edges", "sketch") and not arg:
        return DeriveSpec(name)
    if name in ("downscale", "labels") and arg:
        try:
            value = int(arg)
        except ValueError:
            value = None
        if name == "downscale" and (value is None or value < 2):
            raise PrepareError(f"--derive {text}: the downscale factor must be a whole number of 2 or more, "
                               "for example downscale:4.")
        if name == "labels" and (value is None or not 2 <= value <= MAX_LABELS):
            raise PrepareError(f"--derive {text}: the number of label colours must be between 2 and {MAX_LABELS}, "
                               "for example labels:8.")
        return DeriveSpec(name, factor=value if name == "downscale" else 1, k=value if name == "labels" else 0)
    raise PrepareError(f"--derive {text} is not a derive mode: use one of {', '.join(MODES)} "
                       "(for example --derive downscale:4).")


def check_resolution(spec: DeriveSpec, resolution: int) -> None:
    if spec.mode != "downscale":
        return
    if resolution % spec.factor or resolution // spec.factor < 1:
        factors = [f for f in (2, 4, 8) if resolution % f == 0 and resolution // f >= 1]
        raise PrepareError(f"--derive downscale:{spec.factor} does not divide the resolution {resolution}: "
                           f"use a factor that does, such as {', '.join(map(str, factors[:-1])) + ' or ' if len(factors) > 1 else ''}"
                           f"{factors[-1] if factors else 2}.")


def _skimage(what: str):
    try:
        import skimage.color
        import skimage.feature
    except ImportError:
        raise PrepareError(f"--derive {what} needs scikit-image: install it with pip install scikit-image.") from None
    return skimage


def luma(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, C) -> uint8 (N, H, W): grey stays as it is, colour becomes ITU-R 601 luma."""
    if images.shape[-1] < 3:
        return np.ascontiguousarray(images[..., 0])
    return ((images[..., :3].astype(np.uint32) @ LUMA + 500) // 1000).astype(np.uint8)


def _rgb(images: np.ndarray) -> np.ndarray:
    return np.repeat(images[..., :1], 3, axis=-1) if images.shape[-1] < 3 else images[..., :3]


def derive(spec: DeriveSpec, images: np.ndarray, centres: np.ndarray | None = None) -> np.ndarray:
    """A for B: uint8 (N, R, R, C) -> uint8 (N, R / factor, R / factor, C_A)."""
    if spec.mode == "gray":
        return luma(images)[..., None]
    if spec.mode == "edges":
        return np.stack([edges(g) for g in luma(images)])[..., None]
    if spec.mode == "sketch":
        return np.stack([sketch(g) for g in luma(images)])[..., None]
    if spec.mode == "downscale":
        return np.stack([downscale(image, spec.factor) for image in images])
    if centres is None:
        raise ValueError("labels need the fitted centres")
    return label_map(images, centres)[..., None]


def edges(gray: np.ndarray) -> np.ndarray:
    """uint8 (H, W) -> uint8 (H, W): 0 on Canny edges, 255 elsewhere."""
    found = _skimage("edges").feature.canny(gray.astype(np.float64) / 255.0, sigma=CANNY_SIGMA)
    return np.where(found, 0, 255).astype(np.uint8)


def sketch(gray: np.ndarray, sigma: float = XDOG["sigma"], k: float = XDOG["k"], p: float = XDOG["p"],
           epsilon: float = XDOG["epsilon"], phi: float = XDOG["phi"]) -> np.ndarray:
    """uint8 (H, W) -> uint8 (H, W): the XDoG drawing, dark lines on white."""
    from scipy.ndimage import gaussian_filter

    intensity = gray.astype(np.float64) / 255.0
    sharpened = (1 + p) * gaussian_filter(intensity, sigma) - p * gaussian_filter(intensity, k * sigma)
    drawn = np.where(sharpened >= epsilon, 1.0, 1.0 + np.tanh(phi * (sharpened - epsilon)))
    return np.round(np.clip(drawn, 0, 1) * 255).astype(np.uint8)


def downscale(image: np.ndarray, factor: int) -> np.ndarray:
    """uint8 (H, W, C) -> uint8 (H / factor, W / factor, C), Pillow's bicubic (antialiased when shrinking)."""
    height, width, channels = image.shape
    size = (width // factor, height // factor)
    if channels == 1:
        return np.asarray(Image.fromarray(image[..., 0]).resize(size, Image.Resampling.BICUBIC))[..., None]
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))


def to_lab(images: np.ndarray) -> np.ndarray:
    """uint8 (..., C) -> float32 (..., 3) CIE Lab."""
    skimage = _skimage("labels")
    return skimage.color.rgb2lab(_rgb(images).astype(np.float64) / 255.0).astype(np.float32)


def fit_label_centres(images: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """K centres float32 (K, 3) in Lab, by k-means on a seeded sample of the pixels of `images` (N, H, W, C).

    Sorted by lightness, so label 0 is the darkest colour: the order is stable and means something."""
    from scipy.cluster.vq import kmeans2

    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(len(images), size=min(len(images), LABEL_SAMPLE_IMAGES), replace=False))
    pixels = to_lab(np.asarray(images[picks])).reshape(-1, 3).astype(np.float64)
    if len(pixels) > LABEL_SAMPLE_PIXELS:
        pixels = pixels[np.sort(rng.choice(len(pixels), size=LABEL_SAMPLE_PIXELS, replace=False))]
    with warnings.catch_warnings():  # fewer distinct colours than K leaves some clusters empty: allowed
        warnings.simplefilter("ignore")
        centres, _ = kmeans2(pixels, k, iter=20, minit="++", seed=seed, missing="warn")
    return centres[np.argsort(centres[:, 0], kind="stable")].astype(np.float32)


def label_map(images: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, C) -> uint8 (N, H, W): the index of each pixel's nearest centre in Lab."""
    lab = to_lab(images)  # (N, H, W, 3)
    distances = ((lab[..., None, :] - centres.astype(np.float32)) ** 2).sum(-1)  # (N, H, W, K)
    return distances.argmin(-1).astype(np.uint8)


def label_colours(centres: np.ndarray) -> np.ndarray:
    """The centres as uint8 RGB (K, 3): how a label map is drawn."""
    rgb = _skimage("labels").color.lab2rgb(centres.astype(np.float64)[None])[0]
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)
