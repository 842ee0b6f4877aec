"""Jacobian off-diagonal index: exact values on linear maps, finite differences on a nonlinear one, the metric."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from lightning_gan.errors import ConfigError
from lightning_gan.interfaces import Generator
from lightning_gan.metrics.jacobian import (
    JODI,
    jacobian_offdiagonal_index,
    jacobian_offdiagonal_samples,
    offdiagonal_share,
    square_block_jacobians,
)


def _gaussian(*shape: int, seed: int) -> Tensor:
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _linear(matrix: Tensor):  # noqa: ANN202
    return lambda x: x @ matrix.T


def test_diagonal_linear_map_has_index_zero() -> None:
    matrix = torch.diag(torch.tensor([2.0, -0.5, 3.0], dtype=torch.float64))
    assert jacobian_offdiagonal_index(_linear(matrix), _gaussian(5, 3, seed=0)) == 0.0


@pytest.mark.parametrize("abcd", [(1.0, 2.0, 3.0, 4.0), (0.3, -1.0, 0.0, 2.0), (0.0, 1.0, 1.0, 0.0)])
def test_2x2_linear_map_exact_value(abcd: tuple[float, float, float, float]) -> None:
    a, b, c, d = abcd
    matrix = torch.tensor([[a, b], [c, d]], dtype=torch.float64)
    expected = (b**2 + c**2) / (a**2 + b**2 + c**2 + d**2)
    values = jacobian_offdiagonal_samples(_linear(matrix), _gaussian(4, 2, seed=1))
    torch.testing.assert_close(values, torch.full((4,), expected, dtype=torch.float64))
    assert jacobian_offdiagonal_index(_linear(matrix), _gaussian(4, 2, seed=1)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("shape", [(5, 3), (2, 4)])
def test_rectangular_map_uses_the_leading_square_block(shape: tuple[int, int]) -> None:
    matrix = _gaussian(*shape, seed=2)
    k = min(shape)
    block = matrix[:k, :k]
    expected = float((block.square().sum() - block.diagonal().square().sum()) / block.square().sum())
    assert jacobian_offdiagonal_index(_linear(matrix), _gaussian(3, shape[1], seed=3)) == pytest.approx(expected, rel=1e-12)
    blocks = square_block_jacobians(_linear(matrix), _gaussian(3, shape[1], seed=3))
    torch.testing.assert_close(blocks, block.expand(3, k, k))


def test_nonlinear_map_against_central_finite_differences() -> None:
    w1, w2 = _gaussian(6, 4, seed=4), _gaussian(5, 6, seed=5)

    def f(x: Tensor) -> Tensor:  # R^4 -> R^5
        return torch.tanh(x @ w1.T).square() @ w2.T + x[:, :1] * x[:, 1:2]

    inputs = _gaussian(6, 4, seed=6)
    h = 1e-6
    numeric = torch.stack([
        torch.stack([(f((x + h * e)[None]) - f((x - h * e)[None]))[0] / (2 * h) for e in torch.eye(4, dtype=torch.float64)], dim=1)
        for x in inputs
    ])  # [N, 5, 4]
    exact = square_block_jacobians(f, inputs)
    torch.testing.assert_close(exact, numeric[:, :4, :4], rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(jacobian_offdiagonal_samples(f, inputs), offdiagonal_share(numeric[:, :4, :4]),
                               rtol=1e-6, atol=1e-8)


def test_fallback_for_maps_vmap_cannot_batch_and_eval_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    matrix = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)

    def data_dependent(x: Tensor) -> Tensor:  # .item() cannot run under vmap
        return x @ matrix.T * (1.0 if float(x.abs().sum().item()) >= 0 else 0.0)

    calls = []
    loop = torch.autograd.functional.jacobian
    monkeypatch.setattr(torch.autograd.functional, "jacobian", lambda *a, **k: calls.append(1) or loop(*a, **k))
    assert jacobian_offdiagonal_index(data_dependent, _gaussian(3, 2, seed=7)) == pytest.approx(13 / 30, rel=1e-12)
    assert len(calls) == 3  # one sample at a time

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)).double()
    net[1].running_mean.normal_()
    net[1].running_var.uniform_(0.5, 2.0)
    net.train()
    inputs = _gaussian(4, 3, seed=8)
    values = jacobian_offdiagonal_samples(net, inputs)  # eval-mode BatchNorm: a fixed affine map
    assert net.training
    bn = net[1]
    effective = torch.diag(bn.weight / (bn.running_var + bn.eps).sqrt()) @ net[0].weight
    torch.testing.assert_close(values, offdiagonal_share(effective.detach().expand(4, 3, 3)))


def test_zero_jacobian_has_no_index() -> None:
    values = jacobian_offdiagonal_samples(lambda x: x * 0, _gaussian(2, 2, seed=9))
    assert torch.isnan(values).all()
    assert math.isnan(jacobian_offdiagonal_index(lambda x: x * 0, _gaussian(2, 2, seed=9)))


# -- the metric ------------------------------------------------------------------------------------------------------
class _StyleGenerator(Generator):
    """``w = tanh(M z) (+ E c)``, optionally repeated ``num_ws`` times; images [1, 4, 4]."""

    def __init__(self, m: Tensor, *, c_dim: int = 0, num_ws: int = 0) -> None:
        super().__init__(z_dim=m.shape[1], c_dim=c_dim, output_shape=(1, 4, 4))
        self.m = nn.Parameter(m)
        self.e = nn.Parameter(torch.ones(c_dim, m.shape[0], dtype=m.dtype))
        self.s = nn.Parameter(_gaussian(16, m.shape[0], seed=11).to(m.dtype))
        self.num_ws = num_ws

    def mapping(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        w = z @ self.m.T + (c @ self.e if self.c_dim else 0)
        return w.unsqueeze(1).repeat(1, self.num_ws, 1) if self.num_ws else w

    def synthesis(self, w: Tensor) -> Tensor:
        w = w[:, 0] if w.dim() == 3 else w
        return torch.tanh(w @ self.s.T).view(-1, *self.output_shape)

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        return self.synthesis(self.mapping(z, c))


@pytest.mark.parametrize("num_ws", [0, 4])
def test_metric_on_a_linear_mapping(num_ws: int) -> None:
    m = torch.tensor([[1.0, 2.0, 0.0], [3.0, 4.0, 0.0], [0.0, 0.0, 5.0]], dtype=torch.float64)
    expected = (4 + 9) / (1 + 4 + 9 + 16 + 25)
    generator = _StyleGenerator(m, c_dim=2, num_ws=num_ws)
    result = JODI(num_samples=8).compute(generator, None)
    assert list(result) == ["jodi/mapping"]
    assert result["jodi/mapping"] == pytest.approx(expected, rel=1e-12)


def test_metric_features_map_and_errors() -> None:
    generator = _StyleGenerator(_gaussian(3, 3, seed=12))
    extractor = nn.Sequential(nn.Flatten(), nn.Linear(16, 5)).double()
    result = JODI(map="features", extractor=extractor, num_samples=4).compute(generator, None)
    assert list(result) == ["jodi/features/Sequential"]
    assert 0 < result["jodi/features/Sequential"] < 1

    class Plain(Generator):
        def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
            return z

    with pytest.raises(ConfigError, match="mapping"):
        JODI().compute(Plain(z_dim=2, output_shape=(2,)), None)
    with pytest.raises(ValueError, match="map"):
        JODI(map="synthesis")  # type: ignore[arg-type]
    assert JODI(num_samples=8).config()["init_args"] == {"map": "mapping", "extractor": "shapes", "num_samples": 8,
                                                          "seed": 0, "batch_size": 64}
