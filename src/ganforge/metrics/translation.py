"""Metrics of image-to-image models: PSNR, SSIM and L1 against held-out ground truth, FID/KID of the outputs
against the target domain, cycle error for two-way models, each beside a trivial baseline.

    psnr(outputs, truth, y_channel=True, border=4)    # uint8 (N, H, W, C) arrays: the SR literature's figure
    evaluate_translator("runs/00007/generator", "pairs-test")   # a flat dict, protocols named

Protocols (named beside every figure, as the super-resolution literature reports them):
- **PSNR** per image, averaged over images, peak 255. On the Y channel (`y_channel`) Y is ITU-R BT.601
  luma in studio range, as MATLAB's `rgb2ycbcr` (16 + 65.481 R + 128.553 G + 24.966 B, with R, G, B in
  [0, 1]), not rounded: the protocol of BasicSR and the SRGAN/ESRGAN tables. `border` pixels on each side
  are cropped first (the scale factor, for super-resolution).
- **SSIM** (Wang et al. 2004): Gaussian window sigma 1.5 (11x11), K1 0.01, K2 0.03, population
  covariances, data range 255 — scikit-image's `structural_similarity` with the settings its docs give
  for matching the paper's MATLAB code; averaged over channels then images.
- **L1**: mean absolute difference over pixels and channels, in [0, 1] units.
- **FID / KID**: ganforge's Inception protocol (`inception.PROTOCOL`) on the outputs against the target
  images of the same rows.

Baselines: bicubic upscaling (Pillow) for super-resolution, the grey input for colourisation, the
label map drawn in its colours for a label model, the untouched input otherwise — what a model must beat.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ganforge.errors import GanforgeError
from ganforge.metrics.sources import ImageSource

Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0  # per 0..255 channel value, MATLAB rgb2ycbcr
PSNR_Y = "psnr-y601-studio/border{border}/mean-of-images"
SSIM_Y = "ssim-gaussian1.5-k0.01-0.03-y601/border{border}/mean-of-images"


class TranslationMetricsError(GanforgeError, ValueError):
    pass


def y_channel(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, C) -> float64 (N, H, W, 1) BT.601 luma in 16..235; a grey image is its own luma."""
    images = np.asarray(images, np.float64)
    if images.shape[-1] < 3:
        return 16.0 + images[..., :1] * (219.0 / 255.0)
    return (16.0 + images[..., :3] @ Y_WEIGHTS)[..., None]


def _pair(x: np.ndarray, y: np.ndarray, y_only: bool, border: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape or x.ndim != 4:
        raise TranslationMetricsError(f"Images to compare must be two (N, H, W, C) arrays of one shape, got {x.shape} "
                                      f"and {y.shape}.")
    if border:
        if 2 * border >= min(x.shape[1:3]):
            raise TranslationMetricsError(f"border={border} crops all of a {x.shape[2]}x{x.shape[1]} image.")
        x, y = x[:, border:-border, border:-border], y[:, border:-border, border:-border]
    if y_only:
        return y_channel(x), y_channel(y)
    return x.astype(np.float64), y.astype(np.float64)


def psnr(x: np.ndarray, y: np.ndarray, *, y_channel: bool = False, border: int = 0) -> float:
    """Mean over images of 10 log10(255² / MSE), in dB (infinite for identical images)."""
    a, b = _pair(x, y, y_channel, border)
    mse = ((a - b) ** 2).reshape(len(a), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return float(np.mean(10 * np.log10(255.0**2 / mse)))


def ssim(x: np.ndarray, y: np.ndarray, *, y_channel: bool = False, border: int = 0) -> float:
    """Mean over images (and channels) of SSIM, 1 for identical images."""
    from skimage.metrics import structural_similarity

    a, b = _pair(x, y, y_channel, border)
    if min(a.shape[1:3]) < 7:
        raise TranslationMetricsError(f"SSIM needs images of at least 7x7 pixels after the border, got {a.shape[2]}x{a.shape[1]}.")
    values = [structural_similarity(p, q, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                    data_range=255.0, channel_axis=-1) for p, q in zip(a, b)]
    return float(np.mean(values))


def l1(x: np.ndarray, y: np.ndarray) -> float:
    a, b = _pair(x, y, False, 0)
    return float(np.abs(a - b).mean() / 255.0)


def array_source(images: np.ndarray, name: str) -> ImageSource:
    """uint8 (N, H, W, C) images in memory as a metrics source (batches in order; no caching)."""
    def batches(count: int, batch_size: int, seed: int):
        for start in range(0, min(count, len(images)), batch_size):
            yield np.ascontiguousarray(images[start : min(count, start + batch_size)])

    return ImageSource("folder", Path(name), len(images), batches)


def bicubic(images: np.ndarray, scale: int) -> np.ndarray:
    """uint8 (N, h, w, C) -> uint8 (N, h * scale, w * scale, C), Pillow's bicubic: the upscaling baseline."""
    out = []
    for image in images:
        picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        big = np.asarray(picture.resize((image.shape[1] * scale, image.shape[0] * scale), Image.Resampling.BICUBIC))
        out.append(big[..., None] if big.ndim == 2 else big)
    return np.stack(out)


def in_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """uint8 images in `channels` (grey repeated to colour, colour to BT.601 grey, alpha added opaque)."""
    have = images.shape[-1]
    if have == channels:
        return images
    if channels == 1:
        from ganforge.data.derive import luma

        return luma(images)[..., None]
    rgb = np.repeat(images[..., :1], 3, axis=-1) if have == 1 else images[..., :3]
    if channels == 4:
        return np.concatenate([rgb, np.full(rgb.shape[:-1] + (1,), 255, np.uint8)], axis=-1)
    return rgb


def translate_rows(translator, rows: np.ndarray, progress: bool = False) -> np.ndarray:
    """The translator on each input row (uint8 arrays), stacked."""
    from tqdm import tqdm

    step = 64
    with tqdm(total=len(rows), desc="translate", unit="image", disable=not progress) as bar:
        out = []
        for start in range(0, len(rows), step):
            out.append(translator.translate_batch(np.asarray(rows[start : start + step])))
            bar.update(len(out[-1]))
    return np.concatenate(out)


def baseline(translator, inputs: np.ndarray, target_shape: tuple) -> tuple[str, np.ndarray]:
    """The trivial answer a model must beat, and its name."""
    derive = ((translator.config.get("translation") or {}).get("derive") or {}).get("mode")
    if translator.input.kind == "labels":
        return "the label map in its colours", in_channels(np.stack([translator.draw_input(a) for a in inputs]),
                                                           target_shape[-1])
    if translator.scale > 1:
        return "bicubic upscaling", in_channels(bicubic(inputs, translator.scale), target_shape[-1])
    name = "the grey input" if derive == "gray" else "the untouched input"
    return name, in_channels(inputs, target_shape[-1])


def evaluate_translator(model: str | os.PathLike, data: str | os.PathLike, *, count: int = 1000,
                        fid: bool = True, kid: bool = True, direction: str | None = None, device: str = "auto",
                        inception: str | os.PathLike | None = None, extractor=None, progress: bool = True,
                        seed: int = 0, judge_data: str | os.PathLike | None = None, judge_steps: int = 1500) -> dict:
    """Metrics of an exported image-to-image model on the first `count` rows of a prepared dataset.

    Paired data: PSNR, SSIM, L1 of the outputs against side B (PSNR and SSIM on the Y channel with the
    scale's border cropped for super-resolution, on all channels otherwise), FID/KID against B, and the
    same for the baseline. Unpaired data: FID/KID against the target side and the cycle error
    (L1 of A against B->A(A->B(A))) when the model has both directions. With `judge_data` (a prepared
    dataset of the target domain with classes, e.g. MNIST) and classes for the inputs (a DTN set prepared
    with --labels), a judge classifier is trained on it (`metrics.judge`) and `class_preserved` is the
    share of outputs it reads as their input's class, beside the same share for the untouched inputs.
    Keys end in `_baseline` for the baseline; `protocol` names how each was measured."""
    from ganforge.data.format import PreparedDataset
    from ganforge.translator import Translator

    translator = Translator.from_pretrained(model, device=device, direction=direction)
    dataset = PreparedDataset(data)
    if dataset.kind not in ("paired", "unpaired"):
        raise TranslationMetricsError(f"{data} is a {dataset.kind} dataset: evaluating an image-to-image model needs "
                                      "pairs (prepare --pair-with / --derive) or an unpaired set (--unpaired), held "
                                      "out from training.")
    source, target = (dataset.a, dataset.b) if translator.direction == "a_to_b" else (dataset.b, dataset.a)
    n = min(count, len(source))
    if dataset.kind == "paired" and n < 1:
        raise TranslationMetricsError(f"{data} holds no pairs.")
    inputs = np.asarray(source[:n])
    outputs = translate_rows(translator, inputs, progress)
    truth = np.asarray(target[: (n if dataset.kind == "paired" else min(count, len(target)))])
    if outputs.shape[-1] != truth.shape[-1] or outputs.shape[1:3] != truth.shape[1:3]:
        raise TranslationMetricsError(f"The model makes {outputs.shape[2]}x{outputs.shape[1]}x{outputs.shape[-1]} images "
                                      f"from {data}, whose targets are {truth.shape[2]}x{truth.shape[1]}x{truth.shape[-1]}: "
                                      "evaluate it on a dataset prepared like its training data.")
    name, trivial = baseline(translator, inputs, truth.shape)
    results: dict = {"images": n, "baseline": name}
    sr = translator.scale > 1
    border = translator.scale if sr else 0
    for suffix, images in (("", outputs), ("_baseline", trivial)):
        if dataset.kind == "paired":
            results[f"psnr{suffix}"] = psnr(images, truth, y_channel=sr, border=border)
            results[f"ssim{suffix}"] = ssim(images, truth, y_channel=sr, border=border)
            results[f"l1{suffix}"] = l1(images, truth)
    if len(translator.directions) == 2:  # two-way: how much of the input survives there and back
        back = translator.turned()
        results["cycle_l1"] = l1(translate_rows(back, outputs), inputs) if translator.input.kind == "image" else None
    if judge_data is not None:
        results.update(_class_preservation(dataset, translator, inputs, outputs, judge_data, judge_steps, seed))
    if fid or kid:
        results.update(_distribution(outputs, trivial, truth, fid, kid, device, inception, extractor, progress, seed))
    results["protocol"] = _protocol(sr, border, fid or kid)
    return results


def _class_preservation(dataset, translator, inputs, outputs, judge_data, steps: int, seed: int) -> dict:
    from ganforge.data.format import PreparedDataset
    from ganforge.metrics.judge import train_judge

    labels = dataset.labels
    if labels is None or translator.direction != "a_to_b":
        raise TranslationMetricsError(f"Class preservation needs the classes of the inputs: prepare {dataset.path} "
                                      "with --labels (side A's class folders), and evaluate the A -> B direction.")
    reference = PreparedDataset(judge_data)
    if reference.kind != "images" or reference.labels is None:
        raise TranslationMetricsError(f"The judge learns from images of the target domain with their classes, and "
                                      f"{judge_data} is not such a dataset ({reference.kind}, "
                                      f"{'no' if reference.labels is None else 'with'} classes). Prepare one with "
                                      "--labels (e.g. ganforge prepare mnist OUT).")
    held = np.random.default_rng(seed).permutation(len(reference))
    test, train = held[: len(held) // 10], held[len(held) // 10 :]
    images = np.asarray(reference.images)
    judge = train_judge(images[np.sort(train)], reference.labels[np.sort(train)], steps=steps, seed=seed,
                        classes=max(int(reference.labels.max()), int(labels.max())) + 1)
    wanted = np.asarray(labels[: len(inputs)])
    return {"class_preserved": float((judge.classify(outputs) == wanted).mean()),
            "class_preserved_baseline": float((judge.classify(inputs) == wanted).mean()),
            "judge_accuracy": judge.accuracy(images[np.sort(test)], reference.labels[np.sort(test)])}


def _distribution(outputs, trivial, truth, fid, kid, device, inception, extractor, progress, seed) -> dict:
    from ganforge.metrics.evaluate import calculate_metrics

    found = {}
    for suffix, images in (("", outputs), ("_baseline", trivial)):
        values = calculate_metrics(array_source(images, "outputs"), array_source(truth, "targets"), fid=fid, kid=kid,
                                   count=len(images), reference_count=len(truth), device=device, inception=inception,
                                   extractor=extractor, log=False, progress=progress, seed=seed)
        for key, value in values.items():
            if key.startswith(("fid", "kid")) and not key.endswith("_std"):
                found[key[:3] + suffix] = value
    return found


def _protocol(sr: bool, border: int, distribution: bool) -> str:
    from ganforge.metrics.inception import PROTOCOL

    pixel = (f"{PSNR_Y.format(border=border)}; {SSIM_Y.format(border=border)}" if sr
             else "psnr-rgb/mean-of-images; ssim-gaussian1.5-k0.01-0.03-rgb/mean-of-images")
    return pixel + "; l1-01" + (f"; fid/kid {PROTOCOL} against the targets of the same rows" if distribution else "")
