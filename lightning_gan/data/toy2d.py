"""Mixtures of 2-D Gaussians from the PacGAN / VEEGAN mode-collapse protocol.

* ``grid``: 25 Gaussians at {-4, -2, 0, 2, 4}^2 with sigma 0.05 (``num_modes`` must be a square;
  ``spacing`` sets the distance between neighbours).
* ``ring``: 8 Gaussians evenly on a circle of radius 1 with sigma 0.01.

The training set (``num_samples`` points, 100k as in PacGAN) is drawn once from ``seed``; the label of
a point is the index of its mode. Mode coverage (``metrics.ModeCoverage``) is the default metric.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor

from lightning_gan.data.base import GANDataModule, TensorPairDataset

__all__ = ["Toy2DDataModule", "mixture_modes", "sample_mixture"]


def mixture_modes(kind: Literal["grid", "ring"], num_modes: int, *, spacing: float = 2.0, radius: float = 1.0) -> Tensor:
    """Mode centres [K, 2]: a centred square grid with ``spacing``, or a ring of ``radius``."""
    if num_modes < 1:
        raise ValueError(f"num_modes must be >= 1, got {num_modes}")
    if kind == "grid":
        side = math.isqrt(num_modes)
        if side * side != num_modes:
            raise ValueError(f"a grid needs a square number of modes (4, 9, 25, ...), got {num_modes}")
        axis = (torch.arange(side, dtype=torch.float64) - (side - 1) / 2) * spacing
        gx, gy = torch.meshgrid(axis, axis, indexing="ij")
        return torch.stack([gx.flatten(), gy.flatten()], dim=1).float()
    if kind == "ring":
        angle = torch.arange(num_modes, dtype=torch.float64) * (2 * math.pi / num_modes)
        return (radius * torch.stack([angle.cos(), angle.sin()], dim=1)).float()
    raise ValueError(f"kind must be 'grid' or 'ring', got {kind!r}")


def sample_mixture(modes: Tensor, sigma: float, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` points [n, D] from the equal-weight mixture and their mode indices [n]."""
    labels = torch.randint(len(modes), (n,), generator=generator)
    points = modes[labels] + sigma * torch.randn(n, modes.shape[1], generator=generator)
    return points, labels


class Toy2DDataModule(GANDataModule):
    """The 2-D mixtures of Gaussians (``grid`` or ``ring``), deterministic by seed."""

    data_shape = (2,)

    def __init__(
        self,
        *,
        kind: Literal["grid", "ring"] = "grid",
        num_modes: int | None = None,
        sigma: float | None = None,
        spacing: float = 2.0,
        radius: float = 1.0,
        num_samples: int = 100_000,
        batch_size: int = 500,
        num_workers: int = 0,
        seed: int = 0,
        num_predict: int = 2500,
    ) -> None:
        """
        Args:
            kind: ``grid`` (PacGAN's 2D-grid) or ``ring`` (2D-ring).
            num_modes: number of Gaussians (default 25 for grid, 8 for ring).
            sigma: standard deviation of each Gaussian (default 0.05 for grid, 0.01 for ring).
            spacing: distance between neighbouring grid modes.
            radius: radius of the ring.
            num_samples: size of the fixed training set.
            batch_size: samples per batch and process.
            num_workers: DataLoader workers (0 is fastest for in-memory points).
            seed: seed of the training set and of the shuffles.
            num_predict: how many samples ``predict`` generates.
        """
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed, num_predict=num_predict)
        defaults = {"grid": (25, 0.05), "ring": (8, 0.01)}
        if kind not in defaults:
            raise ValueError(f"kind must be 'grid' or 'ring', got {kind!r}")
        self.kind = kind
        self.num_modes = int(num_modes if num_modes is not None else defaults[kind][0])
        self.sigma = float(sigma if sigma is not None else defaults[kind][1])
        if self.sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {self.sigma}")
        self.spacing = float(spacing)
        self.radius = float(radius)
        self.num_samples = int(num_samples)
        self.modes = mixture_modes(self.kind, self.num_modes, spacing=self.spacing, radius=self.radius)  # [K, 2]
        self.num_classes = 0  # unconditional by default; labels (mode indices) are still provided

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is None:
            rng = torch.Generator().manual_seed(self.seed)
            x, y = sample_mixture(self.modes, self.sigma, self.num_samples, rng)
            self.train_dataset = TensorPairDataset(x, y)

    def default_metrics(self) -> list[Any]:
        from lightning_gan.metrics import ModeCoverage

        return [ModeCoverage()]
