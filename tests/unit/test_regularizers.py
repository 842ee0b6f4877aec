"""R1/R2/WGAN-GP against finite differences and closed forms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_gan.interfaces import Discriminator, Generator, PenaltyInputs
from lightning_gan.regularizers import R1, R2, GradientPenalty, input_gradient_sq_norm


class QuadraticD(Discriminator):
    """D(x) = sum(tanh(W x)) + 0.5 * x^T A x: a nonlinear map with an input gradient worth checking."""

    def __init__(self, dim: int = 3) -> None:
        super().__init__(input_shape=(dim,))
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(4, dim, generator=g, dtype=torch.float64))
        self.a = nn.Parameter(torch.randn(dim, dim, generator=g, dtype=torch.float64))

    def forward(self, x, c=None):
        return torch.tanh(x @ self.w.T).sum(1) + 0.5 * ((x @ self.a) * x).sum(1)


class LinearD(Discriminator):
    def __init__(self, w: torch.Tensor) -> None:
        super().__init__(input_shape=(w.numel(),))
        self.w = nn.Parameter(w.clone())

    def forward(self, x, c=None):
        return x.flatten(1) @ self.w


class ShiftG(Generator):
    def __init__(self, dim: int) -> None:
        super().__init__(z_dim=dim, output_shape=(dim,))
        self.b = nn.Parameter(torch.full((dim,), 3.0, dtype=torch.float64))

    def forward(self, z, c=None):
        return z.to(self.b.dtype) + self.b


def finite_difference_sq_norm(d: Discriminator, x: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    norms = []
    for xi in x:
        grad = []
        for k in range(xi.numel()):
            e = torch.zeros_like(xi)
            e[k] = h
            grad.append((d(xi[None] + e) - d(xi[None] - e)).item() / (2 * h))
        norms.append(sum(g * g for g in grad))
    return torch.tensor(norms, dtype=torch.float64)


def inputs(d, x, g=None):
    g = g or ShiftG(x.shape[1])
    return PenaltyInputs(generator=g, discriminator=d, real=x, real_c=None,
                         latent_sampler=lambda n: (torch.randn(n, x.shape[1], dtype=torch.float64), None))


def test_input_gradient_norm_matches_finite_differences() -> None:
    d = QuadraticD().double()
    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got = input_gradient_sq_norm(d, x, None).detach()
    assert torch.allclose(got, finite_difference_sq_norm(d, x), rtol=1e-6)


def test_r1_value_and_gradient_reach_the_discriminator() -> None:
    d = QuadraticD().float()
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(2))
    r1 = R1(gamma=4.0)
    value = r1(inputs(d, x))
    expected = 0.5 * 4.0 * finite_difference_sq_norm(d.double(), x.double()).mean()
    d.float()
    assert value.item() == pytest.approx(expected.item(), rel=1e-3)
    value.backward()
    assert d.w.grad is not None and d.w.grad.abs().sum() > 0


def test_r2_uses_generated_samples() -> None:
    w = torch.tensor([3.0, -4.0])
    d = LinearD(w)
    x = torch.zeros(4, 2)
    # linear D: ||grad|| = ||w|| = 5 everywhere, so R2 = gamma/2 * 25
    assert R2(gamma=2.0)(inputs(d, x, ShiftG(2).float())).item() == pytest.approx(25.0)


def test_gradient_penalty_closed_form_for_linear_critic() -> None:
    d = LinearD(torch.tensor([3.0, -4.0]))
    x = torch.randn(8, 2)
    gp = GradientPenalty(weight=10.0)
    # ||grad_x D|| = 5 at every interpolate: 10 * (5 - 1)^2 = 160
    assert gp(inputs(d, x, ShiftG(2).float())).item() == pytest.approx(160.0, rel=1e-5)
    assert GradientPenalty(weight=1.0, target=5.0)(inputs(d, x, ShiftG(2).float())).item() == pytest.approx(0.0, abs=1e-5)


def test_regularizer_config_round_trip() -> None:
    from lightning_gan import registry

    for reg in (R1(gamma=0.5, interval=16), R2(gamma=1.0), GradientPenalty(weight=5.0, target=0.5, interval=4)):
        again = registry.resolve("regularizers", reg.config())
        assert type(again) is type(reg) and again.config() == reg.config()
        assert again.interval == reg.interval
