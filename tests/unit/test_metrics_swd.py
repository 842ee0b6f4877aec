"""The multi-scale sliced Wasserstein distance against its definition: exact 1-D distances, closed forms, pyramid."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from lightning_gan.data.base import TensorPairDataset
from lightning_gan.errors import ConfigError
from lightning_gan.interfaces import Generator
from lightning_gan.metrics.selection import headline, metric_name, setup_metrics
from lightning_gan.metrics.swd import (
    SWD,
    laplacian_pyramid,
    pyramid_descriptors,
    pyramid_resolutions,
    random_directions,
    sliced_wasserstein,
    swd_per_level,
    wasserstein_1d,
)
from lightning_gan.metrics.swd import _up as upsample


def brute_force_w1(a: list[float], b: list[float]) -> float:
    """W1 of two equal-size samples as an optimal assignment (the definition, no sorting)."""
    cost = [[abs(x - y) for y in b] for x in a]
    rows, cols = linear_sum_assignment(cost)
    return sum(cost[i][j] for i, j in zip(rows, cols)) / len(a)


def test_w1_equals_the_optimal_assignment() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(40, 3, generator=g, dtype=torch.float64), torch.rand(40, 3, generator=g, dtype=torch.float64) * 3
    got = wasserstein_1d(a, b)
    for p in range(3):
        assert got[p].item() == pytest.approx(brute_force_w1(a[:, p].tolist(), b[:, p].tolist()), rel=1e-12)


def test_w1_of_unequal_sizes_equals_that_of_replicated_equal_sizes() -> None:
    # 6 values vs 4: repeating each sample of a 4 times and of b 6 times keeps both distributions, sizes 24 = 24
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(6, 2, generator=g, dtype=torch.float64), torch.randn(4, 2, generator=g, dtype=torch.float64) + 0.5
    expected = wasserstein_1d(a.repeat_interleave(4, dim=0), b.repeat_interleave(6, dim=0))  # the N = M path
    assert torch.allclose(wasserstein_1d(a, b), expected, rtol=1e-12, atol=0)
    # and a case by hand: {0} vs {0, 1}: half the mass moves by 1
    assert wasserstein_1d(torch.tensor([0.0]), torch.tensor([0.0, 1.0])).item() == pytest.approx(0.5)


def test_sliced_wasserstein_matches_a_projection_by_projection_brute_force() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(12, 5, generator=g, dtype=torch.float64)
    y = torch.randn(12, 5, generator=g, dtype=torch.float64) * 2 + 1
    directions = random_directions(5, 7, seed=3)
    expected = sum(brute_force_w1((x @ d).tolist(), (y @ d).tolist()) for d in directions.t()) / 7
    assert sliced_wasserstein(x, y, directions, chunk=3) == pytest.approx(expected, rel=1e-12)


def test_sliced_wasserstein_is_zero_for_identical_sets_symmetric_and_order_free() -> None:
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(50, 6, generator=g), torch.randn(60, 6, generator=g) + 0.3
    directions = random_directions(6, 32, seed=0)
    assert sliced_wasserstein(x, x.clone(), directions) == 0.0
    d = sliced_wasserstein(x, y, directions)
    assert d > 0
    assert sliced_wasserstein(y, x, directions) == pytest.approx(d, rel=1e-6)
    shuffled = sliced_wasserstein(x[torch.randperm(50, generator=g)], y[torch.randperm(60, generator=g)], directions)
    assert shuffled == pytest.approx(d, rel=1e-6)


def test_a_shift_by_d_gives_d_times_the_mean_projected_length() -> None:
    # Projected on theta, y = x + d v is x theta shifted by d <v, theta>: W1 = d |<v, theta>| for every theta.
    g = torch.Generator().manual_seed(5)
    x = torch.randn(300, 4, generator=g, dtype=torch.float64)
    v = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64)
    directions = random_directions(4, 64, seed=1)
    closed = (v @ directions).abs().mean().item()
    for d in (0.1, 0.5, 2.0):
        assert sliced_wasserstein(x, x + d * v, directions) == pytest.approx(d * closed, rel=1e-9)


def test_random_directions_are_uniform_on_the_sphere() -> None:
    # E |<v, theta>| = |v| Gamma(n/2) / (sqrt(pi) Gamma((n+1)/2)) for theta uniform on the unit sphere of R^n
    n = 5
    directions = random_directions(n, 40_000, seed=0)
    assert torch.allclose(directions.norm(dim=0), torch.ones(40_000, dtype=torch.float64))
    expected = math.gamma(n / 2) / (math.sqrt(math.pi) * math.gamma((n + 1) / 2))
    assert directions[0].abs().mean().item() == pytest.approx(expected, rel=0.02)


def test_laplacian_pyramid_levels_and_exact_reconstruction() -> None:
    assert pyramid_resolutions(32, 32) == [(32, 32), (16, 16)]
    assert pyramid_resolutions(256, 256) == [(256, 256), (128, 128), (64, 64), (32, 32), (16, 16)]
    assert pyramid_resolutions(8, 8) == [(8, 8)]
    assert pyramid_resolutions(48, 64) == [(48, 64), (24, 32)]
    images = torch.rand(3, 2, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    levels = laplacian_pyramid(images)
    assert [tuple(lv.shape[-2:]) for lv in levels] == [(64, 64), (32, 32), (16, 16)]
    rebuilt = levels[-1]
    for level in reversed(levels[:-1]):
        rebuilt = level + upsample(rebuilt)
    assert torch.allclose(rebuilt, images, atol=1e-5)
    flat = laplacian_pyramid(torch.full((1, 1, 32, 32), 0.25))  # a constant: no band-pass content, same low-pass
    assert flat[0].abs().max() < 1e-6 and torch.allclose(flat[1], torch.full_like(flat[1], 0.25))


def test_descriptors_are_7x7_neighbourhoods_at_seeded_positions_independent_of_batching() -> None:
    images = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    whole = pyramid_descriptors([images], 6, per_image=5, seed=9)
    split = pyramid_descriptors([images[:2], images[2:]], 6, per_image=5, seed=9)
    assert [tuple(d.shape) for d in whole] == [(30, 147), (30, 147)]
    assert all(torch.equal(a, b) for a, b in zip(whole, split))
    # every full-resolution descriptor is some 7x7 window of its image's band-pass level
    band = laplacian_pyramid(images)[0]
    windows = band.unfold(2, 7, 1).unfold(3, 7, 1).permute(0, 2, 3, 1, 4, 5).reshape(6, -1, 147)
    for i in range(6):
        for row in whole[0][5 * i:5 * i + 5]:
            assert (windows[i] - row).abs().amax(dim=1).min() < 1e-6


def test_multiscale_swd_zero_symmetric_and_sensitive_to_a_colour_cast() -> None:
    g = torch.Generator().manual_seed(3)
    a = torch.rand(16, 3, 32, 32, generator=g) * 2 - 1
    b = torch.rand(16, 3, 32, 32, generator=g) * 2 - 1
    da, db = pyramid_descriptors([a], 16, per_image=8), pyramid_descriptors([b], 16, per_image=8)
    assert swd_per_level(da, [d.clone() for d in da], channels=3, num_projections=16) == [0.0, 0.0]
    ab = swd_per_level(da, db, channels=3, num_projections=16)
    assert ab == pytest.approx(swd_per_level(db, da, channels=3, num_projections=16), rel=1e-5)
    # a brightness shift lives in the low-pass level only; pooled statistics see it, per-set ones cannot
    shifted = pyramid_descriptors([a + 0.3], 16, per_image=8)
    pooled = swd_per_level(da, shifted, channels=3, num_projections=16)
    separate = swd_per_level(da, shifted, channels=3, num_projections=16, normalize="separate")
    assert pooled[0] < 1e-5 and pooled[1] > 0.1
    assert separate[1] < 1e-5
    larger = swd_per_level(da, pyramid_descriptors([a + 0.6], 16, per_image=8), channels=3, num_projections=16)
    assert larger[1] > pooled[1]


class _Images(Generator):
    """A stand-in generator: smooth images (z as 4x4 pixels, upsampled bilinearly), or plain noise."""

    def __init__(self, noise: bool = False) -> None:
        super().__init__(z_dim=16, output_shape=(1, 16, 16))
        self.noise = noise
        self.gain = nn.Parameter(torch.tensor(0.5))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if self.noise:
            return torch.rand(z.shape[0], 1, 16, 16) * 2 - 1
        small = torch.tanh(self.gain * z).view(-1, 1, 4, 4)
        return nn.functional.interpolate(small, size=(16, 16), mode="bilinear", align_corners=False)


class _Data:
    def __init__(self, images: torch.Tensor) -> None:
        self.train_dataset = TensorPairDataset(images, torch.zeros(len(images), dtype=torch.long))
        self.data_shape = tuple(images.shape[1:])


def test_swd_metric_scores_a_generator_like_the_data_better_than_noise() -> None:
    real = _Images()
    with torch.no_grad():
        data = _Data(real(torch.randn(200, 16, generator=torch.Generator().manual_seed(7))))
    metric = SWD(num_samples=200, descriptors_per_image=8, num_projections=32)
    metric.setup(data)
    like = metric.compute(real, data)
    noise = metric.compute(_Images(noise=True), data)
    assert set(like) == {"swd", "swd/16"} and like["swd"] == like["swd/16"]
    assert 0 < like["swd"] < noise["swd"] / 3
    assert metric.compute(real, data) == like  # seeded: the same number again
    assert headline(metric) == ("swd", "min") and metric_name(metric) == "swd"


def test_swd_refuses_data_that_is_not_images_in_one_line() -> None:
    class Points:
        data_shape = (2,)

        def default_metrics(self) -> list[str]:
            return ["coverage"]

    with pytest.raises(ConfigError) as info:
        setup_metrics([SWD()], Points(), pinned_by="--model.metrics")
    message = str(info.value)
    assert "\n" not in message and "'swd'" in message and "--model.metrics=null" in message and "coverage" in message
