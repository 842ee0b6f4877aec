"""Truncation by resampling (BigGAN's truncation trick) and standing statistics, against their definitions."""

from __future__ import annotations

import pytest
import torch
from scipy import stats
from torch import Tensor, nn

from lightning_gan.callbacks.standing_stats import StandingStatistics
from lightning_gan.interfaces import Generator
from lightning_gan.ops.truncation import TruncatedGenerator, truncated_normal
from lightning_gan.utils.standing_stats import batch_norm_modules, standing_labels, standing_statistics


@pytest.mark.parametrize("t", [0.1, 0.5, 1.0, 2.0])
def test_never_above_threshold_and_truncated_normal_inside(t: float) -> None:
    z = truncated_normal((20_000,), t, generator=torch.Generator().manual_seed(0))
    assert float(z.abs().max()) <= t
    # the distribution inside is the normal's, renormalized: a KS test against the truncated normal CDF
    assert stats.kstest(z.double().numpy(), stats.truncnorm(-t, t).cdf).pvalue > 0.01
    if t <= 1.0:  # the test has the power to see the wrong method: clamping piles mass up at +-t
        clamped = torch.randn(20_000, generator=torch.Generator().manual_seed(0)).clamp(-t, t)
        assert stats.kstest(clamped.double().numpy(), stats.truncnorm(-t, t).cdf).pvalue < 1e-6


def test_seeded_shape_dtype_and_bad_thresholds() -> None:
    a = truncated_normal((64, 8), 0.5, generator=torch.Generator().manual_seed(3))
    b = truncated_normal((64, 8), 0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (64, 8) and a.dtype == torch.float32
    assert truncated_normal((4,), 1.0, dtype=torch.float64).dtype == torch.float64
    for bad in (0, -1.0, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match="truncation threshold must be a number > 0"):
            truncated_normal((4,), bad)


class _BNGenerator(Generator):
    """z [N, 3] (+ one-hot c [N, 2]) -> linear -> BatchNorm1d -> output [N, 4]."""

    def __init__(self, c_dim: int = 0) -> None:
        super().__init__(z_dim=3, c_dim=c_dim, output_shape=(4,))
        self.linear = nn.Linear(3 + c_dim, 4)
        self.bn = nn.BatchNorm1d(4)
        self.drop = nn.Dropout(0.5)  # must stay in eval mode while the statistics are re-estimated

    def pre_bn(self, z: Tensor, c: Tensor | None) -> Tensor:
        return self.linear(z if c is None else torch.cat([z, c], 1))

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        return self.drop(self.bn(self.pre_bn(z, c)))


@pytest.mark.parametrize(("c_dim", "truncation"), [(0, None), (2, 0.5)])
def test_standing_statistics_are_the_cumulative_mean_of_batch_statistics(c_dim: int, truncation: float | None) -> None:
    torch.manual_seed(0)
    g = _BNGenerator(c_dim)
    g.bn.running_mean.fill_(5.0)  # stale statistics from training
    g.bn.momentum = 0.3
    state = torch.get_rng_state()
    assert standing_statistics(g, num_batches=4, batch_size=16, seed=7, truncation=truncation) == 1
    assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched
    # by hand: the same draws, each batch's mean and unbiased variance, averaged over the batches
    rng = torch.Generator().manual_seed(7)
    labels = standing_labels(c_dim, 4, 16, generator=rng) if c_dim else None  # the classes first (equal shares)
    means, variances = [], []
    with torch.no_grad():
        for b in range(4):
            z = torch.randn(16, 3, generator=rng) if truncation is None else truncated_normal((16, 3), truncation, generator=rng)
            c = None
            if c_dim:
                c = nn.functional.one_hot(labels[b], c_dim).float()
            h = g.pre_bn(z, c)
            means.append(h.mean(0))
            variances.append(h.var(0, unbiased=True))
    torch.testing.assert_close(g.bn.running_mean, torch.stack(means).mean(0))
    torch.testing.assert_close(g.bn.running_var, torch.stack(variances).mean(0))
    assert g.bn.momentum == 0.3 and g.training and g.bn.training and g.drop.training  # modes and momentum restored


def test_modules_without_batch_norm_are_left_alone() -> None:
    g = TruncatedGenerator(_BNGenerator(), 1.0)
    g.generator.bn = nn.BatchNorm1d(4, track_running_stats=False)
    assert batch_norm_modules(g) == []
    assert standing_statistics(g, num_batches=2, batch_size=4) == 0


def test_truncated_generator_samples_truncated_latents() -> None:
    inner = _BNGenerator(c_dim=2).eval()
    g = TruncatedGenerator(inner, 0.25)
    z = g.sample_latents(500, generator=torch.Generator().manual_seed(1))
    assert z.shape == (500, 3) and float(z.abs().max()) <= 0.25 and float(z.abs().max()) > 0.2
    c = nn.functional.one_hot(torch.arange(500) % 2, 2).float()
    assert torch.equal(g(z, c), inner(z, c)) and (g.z_dim, g.c_dim, g.output_shape) == (3, 2, (4,))


def test_standing_statistics_callback_updates_the_sampling_generator() -> None:
    class Module:
        sampling_generator = _BNGenerator()

    callback = StandingStatistics(num_batches=2, batch_size=8, every_n_kimg=None)
    bn = Module.sampling_generator.bn
    assert callback.apply(Module()) == 1 and callback.updates == 1
    assert int(bn.num_batches_tracked) == 2 and not torch.equal(bn.running_var, torch.ones(4))
    with pytest.raises(ValueError, match="num_batches >= 1"):
        StandingStatistics(num_batches=0)
