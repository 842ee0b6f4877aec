"""estimate_game (Hessian-vector power iteration) against known couplings, known quadratics and dense Hessians;
the closed forms the StabilityController acts on."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_gan.analysis import (
    convergence_factor,
    estimate_game,
    lr_scale_for_target,
    lr_window,
    min_damping_for_target,
)
from lightning_gan.testing.tiny import TinyArchitecture


def matrix_with_singular_values(m: int, n: int, values: list[float], seed: int = 0) -> torch.Tensor:
    """[m, n] float64 ``U diag(values) V^T`` with random orthonormal U, V."""
    gen = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(m, m, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    k = len(values)
    return u[:, :k] @ torch.diag(torch.tensor(values, dtype=torch.float64)) @ v[:, :k].T


def players(m: int, n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(m, generator=gen, dtype=torch.float64).requires_grad_(True),
            torch.randn(n, generator=gen, dtype=torch.float64).requires_grad_(True))


def test_recovers_s_max_of_a_bilinear_game() -> None:
    S = matrix_with_singular_values(6, 5, [2.5, 1.2, 0.7, 0.3])
    x, y = players(6, 5)
    value = x @ S @ y  # G minimizes V, D maximizes it
    est = estimate_game(value, -value, [x], [y], iterations=40)
    assert abs(est.s_max - 2.5) < 1e-3
    U, sv, Vh = torch.linalg.svd(S)
    assert abs(sv[0].item() - 2.5) < 1e-12
    # u is G's (x's) top singular direction, v D's, up to sign
    assert abs(abs(torch.dot(est.u, U[:, 0]).item()) - 1) < 1e-6
    assert abs(abs(torch.dot(est.v, Vh[0]).item()) - 1) < 1e-6
    assert est.products == 2 * 40 + 1 + 2  # the power iteration, the last C u, two Rayleigh quotients


def test_recovers_alpha_of_a_known_quadratic() -> None:
    """L_G = x^T S y + x^T A x / 2, L_D = -x^T S y + y^T B y / 2: alpha_G = u^T A u, alpha_D = v^T B v along the
    top singular pair of S, alpha their mean."""
    S = matrix_with_singular_values(6, 5, [2.5, 1.2, 0.7, 0.3])
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    b = torch.randn(5, 5, generator=gen, dtype=torch.float64)
    A, B = a @ a.T / 6 + 0.2 * torch.eye(6, dtype=torch.float64), b @ b.T / 5 + 0.4 * torch.eye(5, dtype=torch.float64)
    x, y = players(6, 5)
    loss_g = x @ S @ y + 0.5 * x @ A @ x
    loss_d = -(x @ S @ y) + 0.5 * y @ B @ y
    est = estimate_game(loss_g, loss_d, [x], [y], iterations=40)
    U, _, Vh = torch.linalg.svd(S)
    want_g, want_d = float(U[:, 0] @ A @ U[:, 0]), float(Vh[0] @ B @ Vh[0])
    assert abs(est.alpha_g - want_g) < 1e-3 and abs(est.alpha_d - want_d) < 1e-3
    assert abs(est.alpha - 0.5 * (want_g + want_d)) < 1e-3
    assert abs(want_g - want_d) > 0.05  # a real test of which block goes with which vector


def test_isotropic_damping_of_the_linear_game() -> None:
    """The analysis module's game: alpha/2 |x|^2 + x^T S y for G, alpha/2 |y|^2 - x^T S y for D."""
    S = matrix_with_singular_values(4, 4, [3.0, 1.0, 0.5, 0.2], seed=5)
    x, y = players(4, 4)
    alpha = 0.7
    est = estimate_game(0.5 * alpha * x @ x + x @ S @ y, 0.5 * alpha * y @ y - x @ S @ y, [x], [y], iterations=30)
    assert abs(est.s_max - 3.0) < 1e-3 and abs(est.alpha - alpha) < 1e-3


def test_preconditioned_terms_and_diagonals_against_dense_algebra() -> None:
    S = matrix_with_singular_values(5, 4, [2.0, 1.1, 0.6, 0.1], seed=7)
    gen = torch.Generator().manual_seed(8)
    pg = torch.rand(5, generator=gen, dtype=torch.float64) + 0.5
    pd = torch.rand(4, generator=gen, dtype=torch.float64) + 0.5
    wd = torch.rand(4, generator=gen, dtype=torch.float64)
    x, y = players(5, 4)
    term = (y ** 4).sum() / 12  # Hessian diag(y^2)
    est = estimate_game(x @ S @ y, -(x @ S @ y), [x], [y], iterations=60, precondition_g=pg, precondition_d=pd,
                        diagonal_d=wd, d_terms={"quartic": (term, 3.0)})
    # the preconditioned coupling C' = P_D^1/2 C P_G^1/2 with C = d2 L_D / dy dx = -S^T
    C = torch.diag(pd.sqrt()) @ (-S.T) @ torch.diag(pg.sqrt())
    U, sv, Vh = torch.linalg.svd(C)
    assert abs(est.s_max - sv[0].item()) < 1e-6
    v = U[:, 0]  # C's left singular vector lives in D's space
    curvature = torch.diag(pd.sqrt()) @ torch.diag(y.detach() ** 2) @ torch.diag(pd.sqrt())
    assert abs(est.terms["quartic"] - float(v @ curvature @ v)) < 1e-6
    assert abs(est.alpha_d - (3.0 * float(v @ curvature @ v) + float(v @ (wd * v)))) < 1e-6
    assert abs(est.alpha_g) < 1e-12  # no curvature of G's own


def test_networks_against_the_dense_mixed_hessian() -> None:
    """On tiny MLP players, s_max and alpha from Hessian-vector products equal those of the full Hessian."""
    torch.manual_seed(0)
    pair = TinyArchitecture(data_dim=2, hidden=6).build()
    G, D = pair.generator.double(), pair.discriminator.double()
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(16, 2, generator=gen, dtype=torch.float64)
    z = torch.randn(16, G.z_dim, generator=gen, dtype=torch.float64)
    g_params, d_params = list(G.parameters()), list(D.parameters())
    ng = sum(p.numel() for p in g_params)

    def split(flat: torch.Tensor, params: list) -> list[torch.Tensor]:
        out, i = [], 0
        for p in params:
            out.append(flat[i:i + p.numel()].view_as(p))
            i += p.numel()
        return out

    def losses(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tg, td = split(theta[:ng], g_params), split(theta[ng:], d_params)
        fake = torch.func.functional_call(G, dict(zip([n for n, _ in G.named_parameters()], tg)), (z,))
        d_names = [n for n, _ in D.named_parameters()]
        real_logits = torch.func.functional_call(D, dict(zip(d_names, td)), (real,))
        fake_logits = torch.func.functional_call(D, dict(zip(d_names, td)), (fake,))
        loss_d = torch.nn.functional.softplus(-real_logits).mean() + torch.nn.functional.softplus(fake_logits).mean()
        return torch.nn.functional.softplus(-fake_logits).mean(), loss_d

    theta = torch.cat([p.detach().reshape(-1) for p in (*g_params, *d_params)])
    hess_d = torch.autograd.functional.hessian(lambda t: losses(t)[1], theta)
    hess_g = torch.autograd.functional.hessian(lambda t: losses(t)[0], theta)
    C = hess_d[ng:, :ng]  # d2 L_D / d theta_D d theta_G
    U, sv, Vh = torch.linalg.svd(C)
    assert sv[0] - sv[1] > 0.05 * sv[0]  # a gap: the power iteration converges
    want_alpha = 0.5 * (float(Vh[0] @ hess_g[:ng, :ng] @ Vh[0]) + float(U[:, 0] @ hess_d[ng:, ng:] @ U[:, 0]))

    fake = G(z)
    fake_logits, real_logits = D(fake), D(real)
    loss_g = torch.nn.functional.softplus(-fake_logits).mean()
    loss_d = torch.nn.functional.softplus(-real_logits).mean() + torch.nn.functional.softplus(fake_logits).mean()
    est = estimate_game(loss_g, loss_d, g_params, d_params, iterations=200)
    assert abs(est.s_max - sv[0].item()) < 1e-3 * sv[0].item()
    assert abs(est.alpha - want_alpha) < 1e-3 * max(1.0, abs(want_alpha))


def test_warm_start_needs_fewer_iterations() -> None:
    S = matrix_with_singular_values(30, 30, [1.0, 0.95] + [0.5] * 10, seed=2)
    x, y = players(30, 30)
    cold = estimate_game(x @ S @ y, -(x @ S @ y), [x], [y], iterations=2)
    converged = estimate_game(x @ S @ y, -(x @ S @ y), [x], [y], iterations=400)
    warm = estimate_game(x @ S @ y, -(x @ S @ y), [x], [y], iterations=2, u0=converged.u)
    assert abs(warm.s_max - 1.0) < 1e-6 < abs(cold.s_max - 1.0)


def test_bad_arguments_are_one_clear_error() -> None:
    x, y = players(3, 3)
    with pytest.raises(ValueError, match="iterations"):
        estimate_game(x @ y, -(x @ y), [x], [y], iterations=0)
    with pytest.raises(ValueError, match="u0 has 2 entries"):
        estimate_game(x @ y, -(x @ y), [x], [y], u0=torch.ones(2))
    with pytest.raises(ValueError, match="require grad"):
        estimate_game(x @ y, -(x @ y), [x], [y.detach()])


@pytest.mark.parametrize("alpha,s,target", [(1.0, 3.0, 0.98), (0.5, 0.2, 0.9), (2.0, 10.0, 0.99)])
def test_lr_window_ends_have_r_equal_to_target(alpha, s, target) -> None:
    lo, hi = lr_window(alpha, s, target)
    assert convergence_factor(lo, alpha, s) == pytest.approx(target, abs=1e-12)
    assert convergence_factor(hi, alpha, s) == pytest.approx(target, abs=1e-12)
    assert convergence_factor(0.5 * (lo + hi), alpha, s) < target


def test_lr_scale_for_target() -> None:
    alpha, s, target = 1.0, 3.0, 0.98
    _, hi = lr_window(alpha, s, target)
    # a divergent step is scaled to the window's upper end; the other network's smaller step is scaled alike
    k = lr_scale_for_target([2 * hi, hi], alpha, s, target)
    assert k == pytest.approx(0.5, abs=1e-12)
    assert convergence_factor(k * 2 * hi, alpha, s) == pytest.approx(target, abs=1e-12)
    assert lr_scale_for_target([0.9 * hi], alpha, s, target) == 1.0  # already below the target: unchanged
    assert lr_scale_for_target([1e-6], alpha, s, target) == 1.0  # a small, stable step: left alone
    assert lr_scale_for_target([1.0], 0.0, s, target) is None  # undamped: nothing helps
    # no step reaches the target: the step that minimizes r
    k = lr_scale_for_target([1.0], 0.1, 3.0, 0.98)
    assert k == pytest.approx(0.1 / (0.01 + 9.0), rel=1e-12)


def test_min_damping_for_target() -> None:
    lrs, s, target = [0.1, 0.05], 3.0, 0.95
    alpha = min_damping_for_target(lrs, s, target)
    assert max(convergence_factor(lr, alpha, s) for lr in lrs) == pytest.approx(target, abs=1e-12)
    assert max(convergence_factor(lr, 0.99 * alpha, s) for lr in lrs) > target
    assert min_damping_for_target([0.5], 3.0, 0.98) is None  # (eta s)^2 = 2.25 > target
    assert math.isclose(min_damping_for_target([0.1], 0.0, 0.81), (1 - 0.9) / 0.1)
