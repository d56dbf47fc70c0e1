"""`ganforge demo`: the main job on the built-in digits, end to end, with no network.

For now it prepares the digits and draws them; once training lands it trains on them too.
"""

from __future__ import annotations

import os
from pathlib import Path

from ganforge.data.inspect import inspect_dataset
from ganforge.data.prepare import prepare_dataset


def run_demo(out: str | os.PathLike = "ganforge-demo", *, resolution: int = 32, progress: bool = True) -> Path:
    out = Path(out)
    print(f"ganforge demo: preparing the built-in handwritten digits (1,797 images) at {resolution} px")
    result = prepare_dataset("digits", out / f"digits-{resolution}", resolution=resolution, progress=progress)
    print(result.summary())
    inspection = inspect_dataset(result.path)
    print(inspection.summary())
    print(f"\nDone. Open {inspection.contact_sheet} to see the training images.")
    return result.path
