"""Orthogonal regularization (BigGAN eq. 3) against hand-computed values and its analytic gradient."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Callback
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


@pytest.mark.parametrize("shape", [(4, 4), (3, 7)])
@pytest.mark.parametrize("mode", ["off_diagonal", "full"])
def test_zero_for_orthonormal_rows(shape, mode) -> None:
    w = _orthogonal(*shape)
    assert orthogonal_penalty(w, mode=mode).item() == pytest.approx(0.0, abs=1e-10)
    if mode == "off_diagonal":  # orthogonal but not normalized: only the full form sees the scale
        assert orthogonal_penalty(3.0 * w, mode=mode).item() == pytest.approx(0.0, abs=1e-9)
        assert orthogonal_penalty(3.0 * w, mode="full").item() == pytest.approx(shape[0] * 8.0**2)


def test_a_tall_matrix_uses_w_w_transposed_unless_asked_for_the_smaller_side() -> None:
    # 7 x 3 with orthonormal columns: W W^T = P, the projection on a 3-D subspace of R^7 (rank 3, trace 3).
    # ||P - I||^2 = ||I - P||^2 = tr(I - P) = 7 - 3; off-diagonal: ||P||^2 - sum P_ii^2 = 3 - sum P_ii^2.
    w = _orthogonal(7, 3)
    p = w @ w.T
    assert orthogonal_penalty(w, mode="full").item() == pytest.approx(4.0, rel=1e-12)
    assert orthogonal_penalty(w).item() == pytest.approx(3.0 - p.diagonal().square().sum().item(), rel=1e-12)
    for mode in ("off_diagonal", "full"):  # W^T W = I: the departure vanishes on it
        assert orthogonal_penalty(w, mode=mode, gram="smaller").item() == pytest.approx(0.0, abs=1e-10)


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
    # A 3 x 2 (tall) matrix, rows (1, 1), (0, 1), (1, 0): W W^T = [[2, 1, 1], [1, 1, 0], [1, 0, 1]].
    # Off-diagonal: 2 * (1 + 1 + 0) = 4. Full: (2-1)^2 + 0 + 0 + 4 = 5.
    tall = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    assert orthogonal_penalty(tall).item() == pytest.approx(4.0)
    assert orthogonal_penalty(tall, mode="full").item() == pytest.approx(5.0)
    # gram="smaller": the columns (1, 0, 1), (1, 1, 0), W^T W = [[2, 1], [1, 2]]: 2 and 1 + 1 + 2 = 4.
    assert orthogonal_penalty(tall, gram="smaller").item() == pytest.approx(2.0)
    assert orthogonal_penalty(tall, mode="full", gram="smaller").item() == pytest.approx(4.0)
    # (beta / 2) and the sum over matrices: a net of both.
    net = nn.Sequential(nn.Linear(2, 2, bias=True), nn.Linear(2, 3, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(w)
        net[1].weight.copy_(tall)
    assert OrthogonalRegularization(beta=1e-4).penalty(net).item() == pytest.approx(0.5e-4 * 246.0)
    assert OrthogonalRegularization(beta=1e-4, gram="smaller").penalty(net).item() == pytest.approx(0.5e-4 * 244.0)


def _weights_net() -> nn.Module:
    """A wide conv (8 x 27), a tall conv (40 x 8) and a linear layer (5 x 3, tall), float64, seeded."""
    torch.manual_seed(3)
    net = nn.ModuleDict({"wide": nn.Conv2d(3, 8, 3), "tall": nn.Conv2d(2, 40, 2), "fc": nn.Linear(3, 5)})
    return net.double()


@pytest.mark.parametrize("mode", ["off_diagonal", "full"])
def test_gradient_is_the_biggan_reference_update(mode) -> None:
    """dR/dW = 2 beta (W W^T * (1 - I)) W (2 beta (W W^T - I) W for full) on [out, in k k], tall or wide."""
    beta = 0.3
    net = _weights_net()
    OrthogonalRegularization(beta=beta, mode=mode).penalty(net).backward()
    for name in ("wide", "tall", "fc"):
        weight = net[name].weight
        w = weight.detach().reshape(weight.shape[0], -1)  # [out, in k k]
        eye = torch.eye(w.shape[0], dtype=w.dtype)
        gram = w @ w.T
        residual = gram - eye if mode == "full" else gram * (1 - eye)
        expected = (2 * beta * residual @ w).reshape(weight.shape)
        torch.testing.assert_close(weight.grad, expected, rtol=1e-10, atol=1e-12)
        assert net[name].bias.grad is None


@pytest.mark.parametrize("mode", ["off_diagonal", "full"])
def test_gradient_of_the_smaller_side_option(mode) -> None:
    """gram="smaller": 2 beta W (W^T W * (1 - I)) on tall matrices, the reference update on wide ones."""
    beta = 0.3
    net = _weights_net()
    OrthogonalRegularization(beta=beta, mode=mode, gram="smaller").penalty(net).backward()
    for name in ("wide", "tall", "fc"):
        weight = net[name].weight
        w = weight.detach().reshape(weight.shape[0], -1)
        wide = w.shape[0] <= w.shape[1]
        gram = w @ w.T if wide else w.T @ w
        eye = torch.eye(gram.shape[0], dtype=w.dtype)
        residual = gram - eye if mode == "full" else gram * (1 - eye)
        expected = (2 * beta * (residual @ w if wide else w @ residual)).reshape(weight.shape)
        torch.testing.assert_close(weight.grad, expected, rtol=1e-10, atol=1e-12)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        OrthogonalRegularization(mode="diagonal")
    with pytest.raises(ValueError, match="gram must be one of"):
        OrthogonalRegularization(gram="columns")


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
    assert value.item() == pytest.approx(0.5 * orthogonal_penalty(param.detach()).item())


def test_network_option_and_registry() -> None:
    pair = TinyArchitecture(hidden=4).build()
    inputs = PenaltyInputs(generator=pair.generator, discriminator=pair.discriminator, real=torch.zeros(2, 2),
                           real_c=None, latent_sampler=lambda k: (torch.zeros(k, 2), None))
    for network, net in (("generator", pair.generator), ("discriminator", pair.discriminator)):
        reg = registry.resolve("regularizers", {"class_path": "orthogonal", "init_args": {"network": network}})
        assert reg.network == network and reg.beta == 1e-4
        expected = 0.5e-4 * sum(orthogonal_penalty(p) for _, p in regularized_weights(net))
        assert reg(inputs).item() == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="network must be"):
        OrthogonalRegularization(network="both")
    check_regularizer("orthogonal")
    check_regularizer({"class_path": "orthogonal", "init_args": {"network": "discriminator", "mode": "full"}})


class _PenaltyProbe(Callback):
    """Per iteration: the logged ``penalty/OrthogonalRegularization`` and the formula on G's weights at each G step.

    A G optimizer step pre-hook sees the weights the step's loss was computed on (backward changes no weight), so
    ``(beta / 2) sum_W ||W W^T * (1 - I)||^2`` there is what the regularizer should have returned in that phase.
    """

    def __init__(self, reg: OrthogonalRegularization) -> None:
        self.reg = reg
        self.expected: dict[int, list[float]] = {}
        self.logged: dict[int, float] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        def before_g_step(optimizer, args, kwargs) -> None:
            weights = [p.detach() for _, p in regularized_weights(pl_module.generator)]
            value = 0.5 * self.reg.beta * sum(orthogonal_penalty(w).item() for w in weights)
            self.expected.setdefault(pl_module.iteration, []).append(value)
        trainer.optimizers[1].register_step_pre_hook(before_g_step)  # [d_opt, g_opt]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        value = trainer.callback_metrics.get("penalty/OrthogonalRegularization")
        if value is not None:
            self.logged[pl_module.iteration - 1] = float(value)


def _off_diagonal_mass(generator: nn.Module) -> float:
    return sum(orthogonal_penalty(p.detach()).item() for _, p in regularized_weights(generator))


def _fit(tmp_path, regularizers, callbacks=()) -> GANModule:
    torch.manual_seed(0)  # the same initial weights for every run
    module = GANModule(architecture=TinyArchitecture(), metrics=[], ema_kimg=None, regularizers=regularizers,
                       log_every_n_iterations=1)
    make_trainer(tmp_path, callbacks=list(callbacks)).fit(module, Toy2DDataModule(num_samples=200, batch_size=20))
    return module


@pytest.mark.parametrize("interval", [1, 2])
def test_a_tiny_fit_logs_the_penalty_and_lowers_the_off_diagonal_mass(tmp_path, interval) -> None:
    beta = 1.0
    reg = OrthogonalRegularization(beta=beta, interval=interval)
    probe = _PenaltyProbe(reg)
    module = _fit(tmp_path, [reg], [probe])
    assert module.iteration == 10
    phases = module.schedule.table(2)
    assert phases[0] == (("Dmain", "Gmain") if interval == 1 else ("Dmain", "Gmain", "Greg"))
    # The regularized G phase of an iteration is its last G step (Gmain, or Greg when lazy); only iterations
    # that ran it log the penalty (the value before the phase's gain).
    ran = [i for i in range(10) if i % interval == 0]
    assert set(ran) <= set(probe.logged)
    for i in ran:
        assert probe.logged[i] == pytest.approx(probe.expected[i][-1], rel=1e-5)
    assert probe.logged[0] > 0.0
    assert all(torch.isfinite(p).all() for p in module.generator.parameters())
    # The effect: against the same seed without the regularizer, less off-diagonal Gram mass.
    with_reg = _off_diagonal_mass(module.generator)
    without = _off_diagonal_mass(_fit(tmp_path, []).generator)
    assert with_reg < 0.9 * without


def test_a_network_without_weight_matrices_gives_a_differentiable_zero() -> None:
    net = nn.Sequential(nn.Embedding(3, 2), nn.LayerNorm(2))
    value = OrthogonalRegularization().penalty(net)
    assert value.item() == 0.0
    value.backward()  # a lazy phase with only this penalty backpropagates it
