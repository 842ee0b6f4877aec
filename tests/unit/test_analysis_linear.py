"""lightning_gan.analysis (stability, orthogonality, autocorrelation, gradient flow) against closed forms and
brute-force references: explicit operator matrices, exact Jacobians, hand-derived gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_gan.analysis import (
    ar1_field,
    ar1_phi,
    ar1_phi_standard_error,
    conv_frequency_singular_values,
    conv_operator_norm,
    convergence_factor,
    discriminator_gradient_flow,
    jacobian_spectral_norm,
    layer_spectral_norms,
    max_stable_lr,
    noise_floor,
    orthogonality_deviation,
    power_iteration_norm,
    simulate_linear_game,
)
from lightning_gan.interfaces import Discriminator
from lightning_gan.losses import HingeLoss, NonSaturatingLoss

DT = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _dense(fn, in_shape: tuple[int, ...]) -> Tensor:
    """The matrix [out, in] of a linear map, column by column from the basis inputs."""
    basis = torch.eye(math.prod(in_shape), dtype=DT).reshape(-1, *in_shape)
    with torch.no_grad():
        return torch.stack([fn(b.unsqueeze(0)).flatten() for b in basis], dim=1)


def _without_bias(layer: nn.Module):
    """The linear part of an affine layer: ``x -> layer(x) - layer(0)``."""
    return lambda x: layer(x) - layer(torch.zeros_like(x))


def _circular_conv(weight: Tensor):
    kh, kw = weight.shape[-2:]
    pad = ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2)  # any offset: singular values ignore the phase
    return lambda x: F.conv2d(F.pad(x, pad, mode="circular"), weight)


# -- stability: closed forms -----------------------------------------------------------------------
def test_closed_forms_agree_with_each_other() -> None:
    """r(eta*) = 1 exactly, r < 1 strictly inside (0, eta*), r > 1 beyond; V_inf = inf once unstable."""
    alpha, s = 0.5, 1.0
    eta_star = max_stable_lr(alpha, s)
    assert eta_star == pytest.approx(2 * 0.5 / (0.25 + 1.0))
    assert convergence_factor(eta_star, alpha, s) == pytest.approx(1.0, abs=1e-12)
    assert convergence_factor(0.5 * eta_star, alpha, s) == pytest.approx(s**2 / (alpha**2 + s**2))  # the minimum
    assert convergence_factor(0.99 * eta_star, alpha, s) < 1 < convergence_factor(1.01 * eta_star, alpha, s)
    assert noise_floor(0.3, 2.0, 0.8125) == pytest.approx(0.09 * 4.0 / 0.1875)
    assert noise_floor(0.3, 2.0, 1.0) == math.inf
    with pytest.raises(ValueError, match="damping"):
        max_stable_lr(0.0, 1.0)
    with pytest.raises(ValueError, match="eta"):
        convergence_factor(-0.1, 0.5, 1.0)
    with pytest.raises(ValueError, match="s_max"):
        convergence_factor(0.1, 0.5, -1.0)


@pytest.mark.parametrize(("eta", "alpha", "s"), [(0.3, 0.5, 1.0), (0.7, 0.5, 1.0)])
def test_simulated_game_contracts_by_r_and_settles_at_the_noise_floor(eta: float, alpha: float, s: float) -> None:
    """2000 chains x 400 steps in float64: the noiseless contraction equals r (to rounding: the iteration
    matrix scales every squared norm by exactly r), the post-burn-in per-coordinate variance is within 10% of
    V_inf = eta^2 sigma^2 / (1 - r). r = 0.8125 and 0.9125 (eta close to eta* = 0.8)."""
    sim = simulate_linear_game(eta, alpha, s, sigma=1.5, steps=400, num_chains=2000, seed=0)
    r = convergence_factor(eta, alpha, s)
    assert sim.predicted_contraction == r
    assert sim.contraction == pytest.approx(r, rel=1e-9)
    assert sim.predicted_variance == pytest.approx(noise_floor(eta, 1.5, r))
    assert sim.stationary_variance == pytest.approx(sim.predicted_variance, rel=0.10)


def test_simulated_game_diverges_beyond_the_largest_stable_step() -> None:
    eta = 1.1 * max_stable_lr(0.5, 1.0)
    sim = simulate_linear_game(eta, 0.5, 1.0, sigma=0.0, steps=50, num_chains=10)
    assert sim.contraction == pytest.approx(convergence_factor(eta, 0.5, 1.0), rel=1e-9)
    assert sim.contraction > 1 and sim.predicted_variance == 0.0
    with pytest.raises(ValueError, match="burn_in"):
        simulate_linear_game(0.3, 0.5, 1.0, 1.0, steps=10, burn_in=10)


# -- stability: spectral norms -----------------------------------------------------------------------
def test_power_iteration_matches_the_exact_largest_singular_value() -> None:
    u, _ = torch.linalg.qr(torch.randn(7, 5, generator=_gen(0), dtype=DT))
    v, _ = torch.linalg.qr(torch.randn(5, 5, generator=_gen(1), dtype=DT))
    known = u @ torch.diag(torch.tensor([3.0, 2.0, 1.0, 0.5, 0.1], dtype=DT)) @ v.t()
    assert power_iteration_norm(known, iterations=100) == pytest.approx(3.0, rel=1e-12)
    random = torch.randn(6, 9, generator=_gen(2), dtype=DT)
    exact = float(torch.linalg.matrix_norm(random, ord=2))
    assert power_iteration_norm(random, iterations=500) == pytest.approx(exact, rel=1e-8)
    with pytest.raises(ValueError, match="2-D"):
        power_iteration_norm(torch.randn(2, 3, 4))


def test_jacobian_spectral_norm_matches_the_exact_jacobian_svd() -> None:
    """A 4 -> 6 -> 3 tanh MLP: power iteration (vjp + double-backward jvp) vs the SVD of the autograd
    Jacobian; a batch of two inputs is one input, whose Jacobian is block-diagonal: the larger block's norm."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).to(DT)
    x = torch.randn(2, 4, generator=_gen(3), dtype=DT)
    per_sample = [float(torch.linalg.matrix_norm(torch.autograd.functional.jacobian(mlp, xi), ord=2)) for xi in x]
    assert jacobian_spectral_norm(mlp, x[0], iterations=200) == pytest.approx(per_sample[0], rel=1e-8)
    assert jacobian_spectral_norm(mlp, x, iterations=200) == pytest.approx(max(per_sample), rel=1e-8)
    with pytest.raises(ValueError, match="floating"):
        jacobian_spectral_norm(mlp, torch.ones(4, dtype=torch.long))


class _EqualLinearLike(nn.Module):
    """The attribute names of the StyleGAN2 plugin's EqualLinear: ``weight`` times a float ``weight_gain``."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(5, 4, generator=_gen(4), dtype=DT))
        self.weight_gain = 1 / math.sqrt(4)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.weight_gain)


def test_layer_spectral_norms_of_linear_and_equalized_layers() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 4), _EqualLinearLike()).to(DT)
    records = layer_spectral_norms(model)
    assert [(r.name, r.kind, r.shape, r.method) for r in records] == [
        ("0", "linear", (6, 4), "svd"), ("2", "linear", (4, 6), "svd"), ("3", "linear", (5, 4), "svd")]
    for record, layer, width in zip(records, [model[0], model[2], model[3]], [4, 6, 4]):
        exact = float(torch.linalg.matrix_norm(_dense(_without_bias(layer), (width,)), ord=2))
        assert record.sigma_max == pytest.approx(exact, rel=1e-10)
    assert records[2].gain == 0.5
    powered = layer_spectral_norms(model, iterations=300)
    assert [r.sigma_max for r in powered] == pytest.approx([r.sigma_max for r in records], rel=1e-6)


def test_layer_spectral_norms_of_conv_layers_against_their_dense_operators() -> None:
    """Every number below is checked against the SVD of the layer's explicit matrix at its input size.

    Circular stride-1 conv (per-frequency, exact); zero-padded stride-2 conv and stride-2 transposed conv
    (power iteration on the layer's own map: exact); the per-frequency value of a circular stride-2 conv is
    an upper bound; without an input size the reshaped-kernel norm is reported."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"),
                          nn.Conv2d(4, 5, 4, stride=2, padding=1),
                          nn.ConvTranspose2d(5, 2, 4, stride=2, padding=1)).to(DT)
    exact = [float(torch.linalg.matrix_norm(_dense(_without_bias(m), shape), ord=2))
             for m, shape in zip(model, [(3, 6, 6), (4, 6, 6), (5, 3, 3)])]
    freq = layer_spectral_norms(model, (1, 3, 6, 6))
    assert [(r.kind, r.input_size, r.method) for r in freq] == [
        ("conv2d", (6, 6), "frequency"), ("conv2d", (6, 6), "frequency"), ("conv_transpose2d", (3, 3), "frequency")]
    assert freq[0].sigma_max == pytest.approx(exact[0], rel=1e-10)
    circular_strided = nn.Conv2d(4, 5, 4, stride=2, padding=1, padding_mode="circular").to(DT)
    (bound,) = layer_spectral_norms(circular_strided, (1, 4, 6, 6))
    (strided,) = layer_spectral_norms(circular_strided, (1, 4, 6, 6), iterations=300)
    strided_exact = float(torch.linalg.matrix_norm(_dense(_without_bias(circular_strided), (4, 6, 6)), ord=2))
    assert strided.sigma_max == pytest.approx(strided_exact, rel=1e-6)
    assert bound.sigma_max >= strided_exact  # a subsampling after the stride-1 circular conv
    power = layer_spectral_norms(model, (1, 3, 6, 6), iterations=300)
    assert [r.method for r in power] == ["power"] * 3
    assert [r.sigma_max for r in power] == pytest.approx(exact, rel=1e-6)
    unsized = layer_spectral_norms(model)
    assert unsized[1].method == "reshaped" and unsized[1].input_size is None
    reshaped = float(torch.linalg.matrix_norm(model[1].weight.detach().flatten(1), ord=2))
    assert unsized[1].sigma_max == pytest.approx(reshaped)
    assert layer_spectral_norms(model, {"0": (6, 6)})[0].sigma_max == pytest.approx(exact[0], rel=1e-10)
    with pytest.raises(ValueError, match="unknown conv layers"):
        layer_spectral_norms(model, {"5": (6, 6)})


# -- orthogonality -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("c_in", "c_out", "k", "size"), [(3, 4, 3, (6, 6)), (4, 2, 3, (5, 6)), (2, 3, 2, (4, 4)),
                                                           (2, 2, 5, (2, 3))])
def test_frequency_singular_values_equal_the_full_operator_svd(c_in: int, c_out: int, k: int,
                                                               size: tuple[int, int]) -> None:
    """The union of the per-frequency singular values equals the spectrum of the explicit
    (C_out H W) x (C_in H W) matrix of F.conv2d with circular padding (odd, even and rectangular cases, and
    a kernel larger than the map, whose taps wrap around)."""
    weight = torch.randn(c_out, c_in, k, k, generator=_gen(5), dtype=DT)
    per_frequency = conv_frequency_singular_values(weight, size)
    assert per_frequency.shape == (*size, min(c_in, c_out))
    full = torch.linalg.svdvals(_dense(_circular_conv(weight), (c_in, *size)))[: per_frequency.numel()]
    torch.testing.assert_close(per_frequency.flatten().sort(descending=True).values, full, rtol=1e-10, atol=1e-10)
    assert float(conv_operator_norm(weight, size)) == pytest.approx(float(full[0]), rel=1e-12)
    deviation = math.sqrt(float((full - 1).square().mean()))
    assert float(orthogonality_deviation(weight, size)) == pytest.approx(deviation, rel=1e-12)


def test_orthogonality_deviation_of_orthogonal_and_scaled_identity_kernels() -> None:
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=_gen(6), dtype=DT))
    assert float(orthogonality_deviation(q[:, :, None, None], 5)) == pytest.approx(0.0, abs=1e-12)
    semi = q[:, :3, None, None]  # [4, 3, 1, 1], orthonormal columns: an isometry
    assert float(orthogonality_deviation(semi, 5)) == pytest.approx(0.0, abs=1e-12)
    identity = torch.zeros(3, 3, 3, 3, dtype=DT)
    identity[range(3), range(3), 1, 1] = 1.0
    for c in (0.5, -2.0):
        assert float(orthogonality_deviation(c * identity, 6)) == pytest.approx(abs(abs(c) - 1), rel=1e-12)
        assert float(conv_operator_norm(c * identity, 6)) == pytest.approx(abs(c), rel=1e-12)


def test_orthogonality_rejects_bad_weights() -> None:
    with pytest.raises(ValueError, match="4-D"):
        conv_frequency_singular_values(torch.randn(3, 3), 4)
    with pytest.raises(ValueError, match="map size"):
        orthogonality_deviation(torch.randn(2, 2, 3, 3), 0)


# -- autocorrelation ---------------------------------------------------------------------------------
@pytest.mark.parametrize("phi", [0.0, 0.3, 0.6, 0.9])
def test_ar1_phi_recovers_the_coefficient_of_synthetic_fields(phi: float) -> None:
    """16 maps of 64 x 64: n = 16 * 64 * 63 = 64512 neighbour pairs per direction, standard error
    sqrt((1 + phi^2) / n) <= 0.0053; both directions within 4 standard errors. Unit variance within 5%."""
    x = ar1_field((16, 64, 64), phi, generator=_gen(7), dtype=DT)
    tolerance = 4 * ar1_phi_standard_error(phi, 16 * 64 * 63)
    assert abs(ar1_phi(x, -1) - phi) < tolerance
    assert abs(ar1_phi(x, -2) - phi) < tolerance
    assert abs(float(x.var()) - 1.0) < 0.05


def test_ar1_phi_of_iid_noise_and_of_direction_specific_fields() -> None:
    noise = torch.randn(8, 3, 32, 32, generator=_gen(8), dtype=DT) + 5.0  # mean removed by the estimator
    assert abs(ar1_phi(noise, -1)) < 4 / math.sqrt(8 * 3 * 32 * 31)
    rows_only = ar1_field((16, 64, 64), (0.8, 0.0), generator=_gen(9), dtype=DT)
    assert abs(ar1_phi(rows_only, -1) - 0.8) < 4 * ar1_phi_standard_error(0.8, 16 * 64 * 63, phi_across=0.0)
    # dim 1 == -2 here; the columns' pairs are correlated along the rows: 2.1x the i.i.d. standard error
    assert abs(ar1_phi(rows_only, 1)) < 4 * ar1_phi_standard_error(0.0, 16 * 63 * 64, phi_across=0.8)


def test_ar1_phi_standard_error_matches_the_spread_over_replicates() -> None:
    """200 replicate fields of 4 x 16 x 16 (960 pairs) at phi = 0.6: the empirical standard deviation of
    phi_hat within 25% of sqrt((1 + phi^2) / n) = 0.0378 (sampling error of a standard deviation from 200
    replicates: 5%)."""
    fields = ar1_field((200, 4, 16, 16), 0.6, generator=_gen(10), dtype=DT)
    estimates = torch.tensor([ar1_phi(f, -1, demean="none") for f in fields], dtype=DT)
    predicted = ar1_phi_standard_error(0.6, 4 * 16 * 15)
    assert float(estimates.std()) == pytest.approx(predicted, rel=0.25)


def test_ar1_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"\(-1, 1\)"):
        ar1_field((4, 4), 1.0)
    with pytest.raises(ValueError, match="dim"):
        ar1_phi(torch.randn(2, 4, 4), 0)
    with pytest.raises(ValueError, match="H, W"):
        ar1_phi(torch.randn(5), -1)
    with pytest.raises(ValueError, match="constant"):
        ar1_phi(torch.ones(3, 4, 4), -1)
    with pytest.raises(ValueError, match="demean"):
        ar1_phi(torch.randn(3, 4, 4), -1, demean="rows")  # type: ignore[arg-type]


# -- gradient flow -----------------------------------------------------------------------------------
class _LinearDiscriminator(Discriminator):
    """D(x) = w . x + b."""

    def __init__(self, dim: int) -> None:
        super().__init__(input_shape=(dim,))
        self.linear = nn.Linear(dim, 1).to(DT)

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        return self.linear(x).squeeze(1)


def _linear_setup() -> tuple[_LinearDiscriminator, Tensor, Tensor]:
    torch.manual_seed(0)
    d = _LinearDiscriminator(5)
    real = 1.5 * torch.randn(16, 5, generator=_gen(11), dtype=DT)
    fake = 1.5 * torch.randn(12, 5, generator=_gen(12), dtype=DT)
    return d, real, fake


@pytest.mark.parametrize("loss_name", ["non_saturating", "hinge"])
@pytest.mark.parametrize("gamma", [0.0, 3.0])
def test_gradient_flow_of_a_linear_discriminator_matches_the_formulas(loss_name: str, gamma: float) -> None:
    """NS: dL/dw = mean(-sigmoid(-D(x_r)) x_r) + mean(sigmoid(D(x_f)) x_f) (the same weights, without x,
    for b). Hinge (margin 1): dL/dw = mean(-1[D(x_r) < 1] x_r) + mean(1[D(x_f) > -1] x_f). R1 of a linear D is
    gamma/2 |w|^2 (grad_x D = w for every sample): gradient gamma w, nothing on b."""
    d, real, fake = _linear_setup()
    w, b = d.linear.weight[0].detach(), d.linear.bias.detach()
    d_real, d_fake = real @ w + b, fake @ w + b
    if loss_name == "non_saturating":
        coef_real, coef_fake = -torch.sigmoid(-d_real), torch.sigmoid(d_fake)
    else:
        coef_real, coef_fake = -(d_real < 1).to(DT), (d_fake > -1).to(DT)
        assert 0 < int((d_real < 1).sum()) < 16  # the hinge is active on some samples only
    grad_w = (coef_real[:, None] * real).mean(0) + (coef_fake[:, None] * fake).mean(0)
    grad_b = coef_real.mean() + coef_fake.mean()
    (record,) = discriminator_gradient_flow(d, real, fake, loss_name, r1_gamma=gamma)
    assert record.name == "linear" and record.num_params == 6
    adversarial = math.sqrt(float(grad_w.square().sum() + grad_b.square()))
    assert record.adversarial_grad_norm == pytest.approx(adversarial, rel=1e-12)
    assert record.r1_grad_norm == pytest.approx(gamma * float(w.norm()), rel=1e-12, abs=1e-15)
    total = math.sqrt(float((grad_w + gamma * w).square().sum() + grad_b.square()))
    assert record.grad_norm == pytest.approx(total, rel=1e-12)


def test_gradient_flow_splits_a_deeper_discriminator_by_layer() -> None:
    """A two-layer MLP D: the per-layer norms equal those of ``.grad`` after a plain backward of the same
    objective (and the parameters' ``.grad`` stay untouched by the measurement)."""

    class MLP(Discriminator):
        def __init__(self) -> None:
            super().__init__(input_shape=(3,))
            self.net = nn.Sequential(nn.Linear(3, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1)).to(DT)

        def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
            return self.net(x).squeeze(1)

    torch.manual_seed(0)
    d = MLP()
    real = torch.randn(10, 3, generator=_gen(13), dtype=DT)
    fake = torch.randn(10, 3, generator=_gen(14), dtype=DT)
    records = discriminator_gradient_flow(d, real, fake, HingeLoss(), r1_gamma=2.0)
    assert all(p.grad is None for p in d.parameters())
    x = real.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(d(x).sum(), x, create_graph=True)
    objective = HingeLoss().discriminator_loss(d(real), d(fake)) + 1.0 * gx.square().sum(1).mean()
    objective.backward()
    expected = [math.sqrt(sum(float(p.grad.square().sum()) for p in layer.parameters()))
                for layer in (d.net[0], d.net[2])]
    assert [r.name for r in records] == ["net.0", "net.2"]
    assert [r.grad_norm for r in records] == pytest.approx(expected, rel=1e-10)
    assert records[0].r1_grad_norm > 0
    with pytest.raises(ValueError, match="r1_gamma"):
        discriminator_gradient_flow(d, real, fake, NonSaturatingLoss(), r1_gamma=-1.0)
    with pytest.raises(ValueError, match="sample shape"):
        discriminator_gradient_flow(d, real, fake[:, :2], NonSaturatingLoss())
