"""ganforge: train, evaluate, explore and share GANs from a folder of images.

The public Python API mirrors the command line. Names are imported lazily so that
`import ganforge` (and the CLI's start-up) stays fast and worker processes that only
decode images never import torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "prepare_dataset": "ganforge.data.prepare",
    "PrepareOptions": "ganforge.data.prepare",
    "PreparedDataset": "ganforge.data.format",
    "BatchReader": "ganforge.data.reader",
    "inspect_dataset": "ganforge.data.inspect",
    "fetch_dataset": "ganforge.data.fetch",
    "gaussian_mixture": "ganforge.data.synthetic",
    "create_models": "ganforge.models",
    "train_gan": "ganforge.api",
    "export_generator": "ganforge.export",
    "load_generator": "ganforge.export",
    "calculate_metrics": "ganforge.metrics.evaluate",
    "Generator": "ganforge.generator",
    "Translator": "ganforge.translator",
    "write_translations": "ganforge.translator",
    "evaluate_translator": "ganforge.metrics.translation",
    "load_inception": "ganforge.metrics.inception",
    "build_release": "ganforge.release.build",
    "verify_image": "ganforge.release.verify",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ganforge' has no attribute {name!r}")
