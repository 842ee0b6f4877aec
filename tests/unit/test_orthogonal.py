"""Orthogonal regularization (BigGAN eq. 3) against hand-computed values and its analytic gradient."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import make_trainer
from lightning_gan import registry
from lightning_gan.data.toy2d import Toy2DDataModule
from lightning_gan.interfaces import PenaltyInputs
from lightning_gan.module import GANModule
from lightning_gan.regularizers import OrthogonalRegularization, orthogonal_penalty, regularized_weights
from lightning_gan.testing.conformance import check_regularizer
from lightning_gan.testing.tiny import TinyArchitecture


def _orthogonal(m: int, n: int, seed: int = 0) -> torch.Tensor:
    """An m x n matrix with orthonormal rows (m <= n) or columns (m > n)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(max(m, n), min(m, n), generator=g, dtype=torch.float64))
    return q.T.contiguous() if m <= n else q


@pytest.mark.parametrize("shape", [(4, 4), (3, 7), (7, 3)])
@pytest.mark.parametrize("mode", ["off_diagonal", "full"])
def test_zero_for_an_orthogonal_matrix(shape, mode) -> None:
    w = _orthogonal(*shape)
    assert orthogonal_penalty(w, mode=mode).item() == pytest.approx(0.0, abs=1e-10)
    if mode == "off_diagonal":  # orthogonal but not normalized: only the full form sees the scale
        assert orthogonal_penalty(3.0 * w, mode=mode).item() == pytest.approx(0.0, abs=1e-9)
        assert orthogonal_penalty(3.0 * w, mode="full").item() == pytest.approx(min(shape) * 8.0**2)


def test_zero_for_a_conv_whose_reshaped_weight_is_orthogonal() -> None:
    conv = nn.Conv2d(3, 4, 3)  # [4, 3, 3, 3] -> 4 x 27, orthonormal rows
    with torch.no_grad():
        conv.weight.copy_(_orthogonal(4, 27).float().reshape(4, 3, 3, 3))
    reg = OrthogonalRegularization(beta=1.0, mode="full")
    assert reg.penalty(nn.Sequential(conv)).item() == pytest.approx(0.0, abs=1e-9)


def test_hand_computed_value() -> None:
    # W = [[1, 2], [3, 4]]: W W^T = [[5, 11], [11, 25]]. Off-diagonal: 2 * 11^2 = 242.
    # Full: (5-1)^2 + (25-1)^2 + 2 * 11^2 = 16 + 576 + 242 = 834.
    w = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert orthogonal_penalty(w).item() == pytest.approx(242.0)
    assert orthogonal_penalty(w, mode="full").item() == pytest.approx(834.0)
    # A 3 x 2 (tall) matrix uses W^T W: columns (1,0,1), (1,1,0): Gram [[2, 1], [1, 2]].
    tall = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    assert orthogonal_penalty(tall).item() == pytest.approx(2.0)
    assert orthogonal_penalty(tall, mode="full").item() == pytest.approx(4.0)
    # beta and the sum over matrices: a net of both.
    net = nn.Sequential(nn.Linear(2, 2, bias=True), nn.Linear(2, 3, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(w)
        net[1].weight.copy_(tall)
    assert OrthogonalRegularization(beta=1e-4).penalty(net).item() == pytest.approx(1e-4 * 244.0)


@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (4, 4)])
@pytest.mark.parametrize("mode", ["off_diagonal", "full"])
def test_gradient_matches_the_analytic_formula(shape, mode) -> None:
    """dR/dW = 4 beta (G * M) W for G = W W^T (wide), 4 beta W (G * M) for G = W^T W (tall); G - I for full."""
    beta = 0.3
    w = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    (grad,) = torch.autograd.grad(beta * orthogonal_penalty(w, mode=mode).double(), w)
    with torch.no_grad():
        wide = shape[0] <= shape[1]
        gram = w @ w.T if wide else w.T @ w
        eye = torch.eye(gram.shape[0], dtype=gram.dtype)
        residual = gram - eye if mode == "full" else gram * (1 - eye)
        expected = 4 * beta * (residual @ w if wide else w @ residual)
    # the penalty runs in float32: compare at float32 precision
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-5)


class _Marked(nn.Linear):
    is_embedding = True


def test_embeddings_biases_and_excluded_names_are_skipped() -> None:
    net = nn.ModuleDict({"embed": nn.Embedding(5, 4), "marked": _Marked(5, 4), "fc": nn.Linear(4, 3),
                         "head": nn.Linear(3, 1)})
    names = [n for n, _ in regularized_weights(net)]
    assert names == ["fc.weight", "head.weight"]
    assert [n for n, _ in regularized_weights(net, exclude=["head.*"])] == ["fc.weight"]


def test_spectral_norm_regularizes_the_parameter_the_optimizer_updates() -> None:
    lin = nn.utils.parametrizations.spectral_norm(nn.Linear(3, 2))
    net = nn.Sequential(lin)
    [(name, param)] = list(regularized_weights(net))
    assert name == "0.parametrizations.weight.original"
    assert param is lin.parametrizations.weight.original
    value = OrthogonalRegularization(beta=1.0).penalty(net)
    value.backward()
    assert lin.parametrizations.weight.original.grad is not None
    assert value.item() == pytest.approx(orthogonal_penalty(param.detach()).item())


def test_network_option_and_registry() -> None:
    pair = TinyArchitecture(hidden=4).build()
    inputs = PenaltyInputs(generator=pair.generator, discriminator=pair.discriminator, real=torch.zeros(2, 2),
                           real_c=None, latent_sampler=lambda k: (torch.zeros(k, 2), None))
    for network, net in (("generator", pair.generator), ("discriminator", pair.discriminator)):
        reg = registry.resolve("regularizers", {"class_path": "orthogonal", "init_args": {"network": network}})
        assert reg.network == network and reg.beta == 1e-4
        expected = 1e-4 * sum(orthogonal_penalty(p) for _, p in regularized_weights(net))
        assert reg(inputs).item() == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="network must be"):
        OrthogonalRegularization(network="both")
    check_regularizer("orthogonal")
    check_regularizer({"class_path": "orthogonal", "init_args": {"network": "discriminator", "mode": "full"}})


@pytest.mark.parametrize("interval", [1, 2])
def test_runs_through_a_tiny_fit(tmp_path, interval) -> None:
    reg = OrthogonalRegularization(beta=1e-2, interval=interval)
    module = GANModule(architecture=TinyArchitecture(), metrics=[], ema_kimg=None, regularizers=[reg])
    make_trainer(tmp_path).fit(module, Toy2DDataModule(num_samples=80, batch_size=20))
    assert module.iteration == 4
    phases = module.schedule.table(2)
    assert phases[0] == (("Dmain", "Gmain") if interval == 1 else ("Dmain", "Gmain", "Greg"))
    assert all(torch.isfinite(p).all() for p in module.generator.parameters())


def test_a_network_without_weight_matrices_gives_a_differentiable_zero() -> None:
    net = nn.Sequential(nn.Embedding(3, 2), nn.LayerNorm(2))
    value = OrthogonalRegularization().penalty(net)
    assert value.item() == 0.0
    value.backward()  # a lazy phase with only this penalty backpropagates it
