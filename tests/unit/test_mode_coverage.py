"""Mode coverage (PacGAN/VEEGAN protocol) on samples with a known answer."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_gan.data.toy2d import Toy2DDataModule, mixture_modes
from lightning_gan.metrics import mode_coverage


def test_grid_and_ring_modes() -> None:
    grid = mixture_modes("grid", 25)
    assert sorted(set(grid[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    ring = mixture_modes("ring", 8)
    assert torch.allclose(ring.norm(dim=1), torch.ones(8))
    dm = Toy2DDataModule(kind="ring")
    assert (dm.num_modes, dm.sigma) == (8, 0.01)
    with pytest.raises(ValueError, match="square number"):
        mixture_modes("grid", 24)


def test_known_answer() -> None:
    modes = mixture_modes("grid", 25)
    sigma = 0.05
    # 10 samples exactly on mode 0, 30 on mode 1 (0.1 away: within 3 sigma), 10 far from any mode
    on0 = modes[0].repeat(10, 1)
    on1 = (modes[1] + torch.tensor([0.1, 0.0])).repeat(30, 1)
    far = torch.tensor([[1.0, 1.0]]).repeat(10, 1)  # 1.41 from the nearest mode: low quality
    result = mode_coverage(torch.cat([on0, on1, far]), modes, sigma)
    assert result.modes == 2
    assert result.high_quality == pytest.approx(40 / 50)
    p = [10 / 40, 30 / 40]
    assert result.reverse_kl == pytest.approx(sum(pi * math.log(25 * pi) for pi in p))
    assert result.histogram[0] == 10 and result.histogram[1] == 30 and sum(result.histogram) == 40


def test_perfect_generator_covers_everything() -> None:
    dm = Toy2DDataModule(num_samples=2500, seed=3)
    dm.setup()
    result = mode_coverage(dm.train_dataset.x, dm.modes, dm.sigma)
    assert result.modes == 25
    # the 3-sigma disc of an isotropic 2-D Gaussian holds 1 - exp(-9/2) = 98.89%; binomial sd 0.2% at n=2500
    assert result.high_quality == pytest.approx(1 - math.exp(-4.5), abs=0.007)
    assert result.reverse_kl < 0.02


def test_all_low_quality_gives_infinite_kl() -> None:
    modes = mixture_modes("ring", 8)
    result = mode_coverage(torch.zeros(5, 2), modes, 0.01)
    assert result.modes == 0 and result.high_quality == 0.0 and math.isinf(result.reverse_kl)
