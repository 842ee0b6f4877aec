"""Procedural high-frequency textures: texture-heavy image data, rendered on the fly, deterministic by index.

The counterpart of ``shapes`` (structure-heavy: smooth shapes on flat backgrounds) for the spectral questions
of docs/theory.md#spectral-normalization-structure-and-texture: most of the energy of these images lies above
0.25 cycles per pixel (see ``lightning_gan.analysis.spectra.energy_split``). Each image mixes two random
colours, a bright one (HSV value >= 0.7) and a dark one (value <= 0.3), by a pattern ``t`` in [0, 1]:
``image = dark + (bright - dark) * t``, mapped to [-1, 1]. Patterns (``TEXTURES``), in pixel coordinates
``(x, y)`` of pixel centres:

* ``grating``: ``t = (1 + sin(2 pi f (x cos a + y sin a) + phase)) / 2``, frequency ``f`` uniform in
  ``frequency_range`` cycles per pixel (below 0.5: no aliasing), orientation ``a`` uniform in [0, pi).
* ``plaid``: the mean of two such gratings, the second turned by 45 to 135 degrees from the first.
* ``checkerboard``: squares of 1 or 2 pixels (all energy at (0.5, 0.5) cycles per pixel, or the fundamental
  at (0.25, 0.25) plus odd harmonics), at a random offset.
* ``noise``: ``t`` i.i.d. uniform per pixel (white: about 80 % of its energy lies above 0.25 cycles per pixel).

Image ``i`` depends only on ``(seed, i)``: its random numbers come from ``numpy.random.default_rng([seed, i])``
(no sequential state), so any index renders alone, in any batch, worker or DDP rank, bit-identically.
Labels index the datamodule's ``classes`` (the pattern kind).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from lightning_gan.data.base import GANDataModule, check_image_args

__all__ = ["TEXTURES", "TexturesDataModule", "TexturesDataset", "render_textures"]

TEXTURES: tuple[str, ...] = ("grating", "plaid", "checkerboard", "noise")
"""Every texture kind, in the default class order."""

_MASK64 = (1 << 64) - 1


def _check_classes(classes: Sequence[str] | None) -> tuple[str, ...]:
    if classes is None:
        return TEXTURES
    if isinstance(classes, str):
        classes = [classes]
    names = tuple(str(c) for c in classes)
    if not names:
        raise ValueError(f"classes must name at least one texture of {list(TEXTURES)}")
    unknown = [c for c in names if c not in TEXTURES]
    if unknown:
        raise ValueError(f"Unknown texture class(es) {unknown}; available: {list(TEXTURES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"classes must not repeat a texture, got {list(names)}")
    return names


def _check_frequency_range(frequency_range: Sequence[float]) -> tuple[float, float]:
    lo, hi = (float(v) for v in frequency_range)
    if not 0.0 < lo <= hi < 0.5:
        raise ValueError(f"frequency_range must satisfy 0 < min <= max < 0.5 cycles per pixel, got {(lo, hi)}")
    return lo, hi



def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (components in [0, 1]) to RGB [3]."""
    k = np.mod(np.array([5.0, 3.0, 1.0]) + h * 6.0, 6.0)
    return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _grating(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, frequency: tuple[float, float],
             angle: float | None = None) -> np.ndarray:
    f = rng.uniform(*frequency)
    a = rng.uniform(0.0, math.pi) if angle is None else angle
    phase = rng.uniform(0.0, 2.0 * math.pi)
    return 0.5 + 0.5 * np.sin(2.0 * math.pi * f * (xx * math.cos(a) + yy * math.sin(a)) + phase)


def render_textures(indices: Sequence[int] | Tensor, *, resolution: int, channels: int = 3, seed: int = 0,
                    classes: Sequence[str] | None = None,
                    frequency_range: tuple[float, float] = (0.25, 0.45)) -> tuple[Tensor, Tensor]:
    """``(images [N, C, R, R] float32 in [-1, 1], labels [N] int64)`` of texture images ``indices``.

    Args:
        indices: image indices (non-negative integers).
        resolution: side ``R`` in pixels.
        channels: 1 (grey) or 3 (RGB).
        seed: seed of the data; image ``i`` depends only on ``(seed, i)``.
        classes: texture kinds the labels index (default all of ``TEXTURES``), drawn with equal probability.
        frequency_range: (min, max) grating frequency in cycles per pixel.
    """
    names = _check_classes(classes)
    frequency = _check_frequency_range(frequency_range)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if isinstance(indices, Tensor):
        indices = indices.tolist()
    indices = [int(i) for i in indices]
    if any(i < 0 for i in indices):
        raise ValueError("texture indices must be non-negative")
    coords = np.arange(resolution, dtype=np.float64)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")  # [R, R], pixel units
    out = np.empty((len(indices), channels, resolution, resolution), dtype=np.float32)
    labels = np.empty(len(indices), dtype=np.int64)
    for n, index in enumerate(indices):
        rng = np.random.default_rng([int(seed) & _MASK64, index])
        label = int(rng.integers(len(names)))
        kind = names[label]
        if channels == 3:
            bright = _hsv_to_rgb(rng.uniform(), rng.uniform(0.3, 1.0), rng.uniform(0.7, 1.0))
            dark = _hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 1.0), rng.uniform(0.0, 0.3))
        else:
            bright, dark = np.array([rng.uniform(0.7, 1.0)]), np.array([rng.uniform(0.0, 0.3)])
        if kind == "grating":
            t = _grating(rng, xx, yy, frequency)
        elif kind == "plaid":
            a = rng.uniform(0.0, math.pi)
            t = 0.5 * (_grating(rng, xx, yy, frequency, a)
                       + _grating(rng, xx, yy, frequency, a + rng.uniform(math.pi / 4, 3 * math.pi / 4)))
        elif kind == "checkerboard":
            cell = int(rng.integers(1, 3))
            ox, oy = rng.integers(0, 2 * cell, size=2)
            t = (((xx + ox) // cell + (yy + oy) // cell) % 2).astype(np.float64)
        else:  # noise
            t = rng.random((resolution, resolution))
        image = dark[:, None, None] + (bright - dark)[:, None, None] * t[None]  # [C, R, R] in [0, 1]
        out[n] = image * 2.0 - 1.0
        labels[n] = label
    return torch.from_numpy(out), torch.from_numpy(labels)


class TexturesDataset(Dataset):
    """``num_samples`` texture images rendered on demand; ``__getitems__`` renders a whole batch at once.

    Args:
        num_samples: length of the dataset (images are defined for any index; this only sets an epoch).
        resolution: side of the square images, a power of two from 8 to 256.
        channels: 1 (grey) or 3 (RGB).
        classes: texture kinds the labels index (default all of ``TEXTURES``).
        frequency_range: (min, max) grating frequency in cycles per pixel.
        seed: seed of the data: image ``i`` depends only on ``(seed, i)``.
    """

    def __init__(self, *, num_samples: int = 50_000, resolution: int = 32, channels: int = 3,
                 classes: Sequence[str] | None = None, frequency_range: tuple[float, float] = (0.25, 0.45),
                 seed: int = 0) -> None:
        check_image_args(resolution, channels, num_samples)
        self.num_samples = int(num_samples)
        self.resolution = int(resolution)
        self.channels = int(channels)
        self.classes = _check_classes(classes)
        self.frequency_range = _check_frequency_range(frequency_range)
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        x, y = self.__getitems__([index])
        return x[0], y[0]

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """The batch ``(x [N, C, R, R] in [-1, 1], label [N] int64)``."""
        for i in indices:
            if not 0 <= i < self.num_samples:
                raise IndexError(f"index {i} out of range for {self.num_samples} texture images")
        return render_textures(indices, resolution=self.resolution, channels=self.channels, seed=self.seed,
                               classes=self.classes, frequency_range=self.frequency_range)


class TexturesDataModule(GANDataModule):
    """Procedural high-frequency textures (see the module docstring): the texture-heavy counterpart of shapes."""

    def __init__(
        self,
        *,
        resolution: int = 32,
        channels: int = 3,
        classes: list[str] | None = None,
        frequency_range: tuple[float, float] = (0.25, 0.45),
        num_samples: int = 50_000,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        num_predict: int = 64,
    ) -> None:
        """
        Args:
            resolution: side of the square images, a power of two from 8 to 256.
            channels: 1 (grey) or 3 (RGB).
            classes: texture kinds, from grating, plaid, checkerboard, noise (default all); labels index it.
            frequency_range: (min, max) grating frequency in cycles per pixel, below 0.5.
            num_samples: images per epoch.
            batch_size: samples per batch and process.
            num_workers: DataLoader workers.
            seed: seed of the images (image i depends only on (seed, i)) and of the shuffles.
            num_predict: how many samples ``predict`` generates.
        """
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed, num_predict=num_predict)
        check_image_args(resolution, channels, num_samples)
        self.resolution = int(resolution)
        self.channels = int(channels)
        self.classes = _check_classes(classes)
        self.frequency_range = _check_frequency_range(frequency_range)
        self.num_samples = int(num_samples)
        self.data_shape = (self.channels, self.resolution, self.resolution)
        self.num_classes = len(self.classes)

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is None:
            self.train_dataset = TexturesDataset(
                num_samples=self.num_samples, resolution=self.resolution, channels=self.channels,
                classes=self.classes, frequency_range=self.frequency_range, seed=self.seed,
            )

    def default_metrics(self) -> list[Any]:
        """No default metrics (the shapes classifier does not apply); compare spectra instead."""
        return []
