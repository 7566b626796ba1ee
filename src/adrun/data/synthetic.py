"""Procedural textures with anomalous blobs and their exact pixel masks: any size, any channel count, no files.

Normal images are oriented sinusoidal gratings (random phase, small orientation and period jitter, per-channel tint,
mild noise); an anomaly is a disc of a flat, bright colour pasted on the grating, and its mask is that disc. The
training split holds `n_train` normals and a quarter as many anomalies (which the one-class protocol filters out); the
test split holds `n_test` images, half of them anomalous.
"""

import math

import torch

from adrun.data.base import AnomalyDataModule, Split


def gratings(n: int, size: int, channels: int, generator: torch.Generator) -> torch.Tensor:
    """n normal textures, float [n, C, size, size] in [0, 1]."""
    coords = torch.linspace(0, 1, size)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    angle = math.pi / 4 + 0.15 * torch.randn(n, 1, 1, generator=generator)
    period = 0.2 + 0.02 * torch.randn(n, 1, 1, generator=generator)
    phase = 2 * math.pi * torch.rand(n, 1, 1, generator=generator)
    wave = torch.sin(2 * math.pi * (x * angle.cos() + y * angle.sin()) / period + phase)
    tint = 0.8 + 0.2 * torch.rand(n, channels, 1, 1, generator=generator)
    noise = 0.05 * torch.randn(n, channels, size, size, generator=generator)
    return ((0.5 + 0.3 * wave.unsqueeze(1)) * tint + noise).clamp(0, 1)


def blobs(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """n disc masks, float [n, 1, size, size], radius 1/10–1/5 of the side, fully inside the image."""
    radius = size * (0.1 + 0.1 * torch.rand(n, 1, 1, generator=generator))
    cy, cx = (radius + (size - 2 * radius) * torch.rand(n, 1, 1, generator=generator) for _ in range(2))
    pos = torch.arange(size, dtype=torch.float32) + 0.5
    dist2 = (pos.view(1, size, 1) - cy) ** 2 + (pos.view(1, 1, size) - cx) ** 2
    return (dist2 <= radius**2).float().unsqueeze(1)


class Synthetic(AnomalyDataModule):
    classes = ("texture", "blob")
    has_masks = True
    peer_classes = False

    def __init__(self, n_train: int = 48, n_test: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.n_train, self.n_test = n_train, n_test

    def load_split(self, train: bool) -> Split:
        generator = torch.Generator().manual_seed(self.seed * 2 + int(train))
        n_normal, n_blob = (
            (self.n_train, self.n_train // 4) if train else (self.n_test - self.n_test // 2, self.n_test // 2)
        )
        n, size = n_normal + n_blob, self.image_size
        images = gratings(n, size, self.channels, generator)
        masks = torch.zeros(n, 1, size, size)
        masks[n_normal:] = blobs(n_blob, size, generator)
        colour = 0.9 + 0.1 * torch.rand(n, self.channels, 1, 1, generator=generator)
        images = images * (1 - masks) + colour * masks
        targets = (masks.flatten(1).amax(1) > 0).long()
        split = "train" if train else "test"
        return Split(
            (images * 255).round().to(torch.uint8),
            targets,
            [f"synthetic/{split}/{i}" for i in range(n)],
            masks.to(torch.uint8),
        )
