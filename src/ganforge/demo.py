"""`ganforge demo`: the main job on the built-in digits, end to end, in a few minutes on a CPU.

Prepares scikit-learn's 1,797 handwritten digits at 32 px, trains a small class-conditional DCGAN
on them, exports the generator, and draws one row of samples per digit. No network needed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from ganforge.data.inspect import inspect_dataset
from ganforge.data.prepare import prepare_dataset
from ganforge.data.reader import to_uint8_images
from ganforge.export import export_generator, load_generator
from ganforge.pictures import image_grid
from ganforge.train.config import ConfigError
from ganforge.api import train_gan


def run_demo(out: str | os.PathLike = "ganforge-demo", *, resolution: int = 32, minutes: float = 3.0,
             kimg: float = 0.0, progress: bool = True) -> Path:
    out = Path(out)
    if not (math.isfinite(minutes) and math.isfinite(kimg)) or minutes < 0 or kimg < 0 or not (minutes or kimg):
        raise ConfigError(f"The demo needs a positive budget: --minutes (got {minutes:g}) or --kimg (got {kimg:g}).")
    if resolution not in (16, 32, 64, 128, 256):
        raise ConfigError(f"The demo's DCGAN makes 16, 32, 64, 128 or 256 px images, not {resolution}: "
                          "try --resolution 32.")
    print(f"ganforge demo 1/3: preparing the built-in handwritten digits (1,797 images) at {resolution} px")
    prepared = prepare_dataset("digits", out / f"digits-{resolution}", resolution=resolution, progress=progress)
    sheet = inspect_dataset(prepared.path).contact_sheet
    budget = f"{kimg:g} thousand images" if kimg else f"{minutes:g} minutes"
    print(f"ganforge demo 2/3: training a small conditional DCGAN for {budget} (Ctrl-C stops early and keeps it)")
    overrides = {"runs_dir": str(out / "runs"), **({"kimg": kimg} if kimg else {"minutes": minutes})}
    result = train_gan(prepared.path, preset="dcgan-small", overrides=overrides, progress=progress)
    print("ganforge demo 3/3: exporting the generator and drawing each digit")
    generator_dir = export_generator(result.run_dir)
    samples = out / "samples-by-digit.png"
    draw_by_class(generator_dir, samples)
    run = result.run_dir
    print(f"""
Done. Look at:
  {sheet}   the training images
  {run / 'progress.gif'}   the generator learning, tick by tick
  {samples}   new digits, one row per class
  {run / 'losses.png'}   the losses
The exported generator is {generator_dir} (config.json + model.safetensors).""")
    return run


def draw_by_class(generator_dir: Path, target: Path, per_class: int = 10, seed: int = 0) -> Path:
    generator = load_generator(generator_dir)
    classes = generator.config.num_classes or 1
    z = torch.randn(classes * per_class, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    labels = torch.arange(classes).repeat_interleave(per_class) if generator.config.num_classes else None
    with torch.no_grad():
        images = generator(z, labels)
    image_grid(to_uint8_images(images), columns=per_class).save(target)
    return target
