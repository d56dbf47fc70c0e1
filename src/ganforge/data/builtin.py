"""The built-in dataset: scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels, 10 classes).

It ships inside an installed package, so `ganforge demo` needs no network. The digits come from the
UCI "Optical Recognition of Handwritten Digits" set (Alpaydin and Kaynak, 1998).
"""

from __future__ import annotations

import numpy as np


def load_digits():
    """The digits as an `ArrayDataset`: uint8 images (1797, 8, 8, 1), 0..16 scaled to 0..255."""
    from sklearn.datasets import load_digits as sklearn_digits

    from ganforge.data.fetch import ArrayDataset

    bunch = sklearn_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return ArrayDataset(
        name="digits",
        split="train",
        images=images,
        labels=bunch.target.astype(np.int64),
        class_names=[str(d) for d in range(10)],
        origin="scikit-learn (sklearn.datasets.load_digits)",
    )
