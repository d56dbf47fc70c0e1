"""A judge: a small CNN classifier trained for one evaluation, to read the class of generated or translated
images — class preservation of a domain translator (DTN: is a printed 7 still read as a 7 in MNIST's style?).

    judge = train_judge(images, labels, steps=1500)   # uint8 (N, H, W[, C]) with their classes
    judge.accuracy(test_images, test_labels)          # report it: a judge is only as good as this
    judge.classify(translated)                        # (N,) class indices

Images are read in grey at 32 x 32 (bilinear), in [-1, 1]: two 3x3 conv + max-pool stages (16, 32
channels), a 64-unit hidden layer. Adam at 1e-3 on batches of 128 drawn by a seeded generator, so the
same data and seed give the same judge.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SIDE = 32


class Judge(nn.Module):
    def __init__(self, classes: int):
        super().__init__()
        self.classes = classes
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 16, 16, 16)
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 8, 8)
            nn.Flatten(), nn.Linear(32 * 64, 64), nn.ReLU(), nn.Linear(64, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 32, 32) in [-1, 1] -> (B, classes)
        return self.net(x)

    @torch.no_grad()
    def classify(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        self.eval()
        x = judge_input(images)
        return torch.cat([self(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]).numpy()

    def accuracy(self, images: np.ndarray, labels: np.ndarray) -> float:
        return float((self.classify(images) == np.asarray(labels)).mean())


def judge_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) or (N, H, W, C) -> float (N, 1, 32, 32) in [-1, 1] (colour to BT.601 grey)."""
    images = np.asarray(images)
    if images.ndim == 4:
        from ganforge.data.derive import luma

        images = luma(images)
    x = torch.from_numpy(images.astype(np.float32) / 127.5 - 1).unsqueeze(1)
    return F.interpolate(x, size=(SIDE, SIDE), mode="bilinear", align_corners=False) if x.shape[-1] != SIDE else x


def train_judge(images: np.ndarray, labels: np.ndarray, steps: int = 1500, seed: int = 0,
                classes: int | None = None) -> Judge:
    labels = np.asarray(labels, np.int64)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    judge = Judge(classes or int(labels.max()) + 1)
    optimizer = torch.optim.Adam(judge.parameters(), 1e-3)
    x, y = judge_input(images), torch.from_numpy(labels)
    for _ in range(steps):
        index = torch.randint(0, len(x), (min(128, len(x)),), generator=generator)
        loss = F.cross_entropy(judge(x[index]), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return judge.eval()
