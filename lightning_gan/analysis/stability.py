"""Stability of the linearized two-player game, and the spectral norms that set it.

Theory and papers: docs/theory.md#stability-of-the-linearized-game.

Near an equilibrium, simultaneous gradient descent-ascent on
``L(x, y) = alpha/2 |x|^2 + x^T S y - alpha/2 |y|^2`` (G descends on x, D ascends on y; alpha >= 0 is
the damping each player's own curvature or a regularizer provides, S the coupling between them) reads

    x <- x - eta (alpha x + S y),        y <- y - eta (alpha y - S^T x).

In the singular bases of S it splits into independent 2-D blocks, one per singular value s:

    [x; y] <- M [x; y],    M = (1 - eta alpha) I + eta s J,    J = [[0, -1], [1, 0]].

J is a rotation generator (J^T = -J, J^T J = I), so ``M^T M = r I`` with
``r = (1 - eta alpha)^2 + (eta s)^2``: every step multiplies the squared norm by exactly r. The block with
the largest singular value s_max is the slowest, so the game is stable iff ``r(s_max) < 1``, i.e.
``0 < eta < 2 alpha / (alpha^2 + s_max^2)``. With gradient noise of standard deviation sigma per
coordinate the iterates settle at a per-coordinate variance ``V_inf = eta^2 sigma^2 / (1 - r)``.

A network's s_max is bounded by the product of its layers' spectral norms, which
:func:`layer_spectral_norms` and :func:`jacobian_spectral_norm` measure.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_gan.analysis.orthogonality import conv_operator_norm

__all__ = [
    "LayerSpectralNorm",
    "LinearGameSimulation",
    "convergence_factor",
    "jacobian_spectral_norm",
    "lr_window",
    "lr_scale_for_target",
    "min_damping_for_target",
    "layer_spectral_norms",
    "max_stable_lr",
    "noise_floor",
    "power_iteration_norm",
    "simulate_linear_game",
]


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value}")


def _check_non_negative(**values: float) -> None:
    for name, value in values.items():
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a non-negative finite number, got {value}")


# -- closed forms ----------------------------------------------------------------------------------
def convergence_factor(eta: float, alpha: float, s_max: float) -> float:
    """Per-step contraction of the squared distance to equilibrium: ``r = (1 - eta alpha)^2 + (eta s_max)^2``.

    Stable iff r < 1. Args:
        eta: learning rate (> 0).
        alpha: damping (any real; alpha <= 0 is never stable).
        s_max: largest singular value of the coupling (>= 0).
    """
    _check_positive(eta=eta)
    _check_non_negative(s_max=s_max)
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha}")
    return (1.0 - eta * alpha) ** 2 + (eta * s_max) ** 2


def max_stable_lr(alpha: float, s_max: float) -> float:
    """Largest stable learning rate ``eta* = 2 alpha / (alpha^2 + s_max^2)``: r(eta) < 1 iff 0 < eta < eta*.

    The step minimizing r is half of it, ``alpha / (alpha^2 + s_max^2)``, where ``r = s^2 / (alpha^2 + s^2)``.

    Args:
        alpha: damping (> 0: without damping, r = 1 + (eta s)^2 >= 1 for every eta, no step is stable).
        s_max: largest singular value of the coupling (>= 0).
    """
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be positive: without damping no learning rate is stable, got {alpha}")
    _check_non_negative(s_max=s_max)
    return 2.0 * alpha / (alpha * alpha + s_max * s_max)


def noise_floor(eta: float, sigma: float, r: float) -> float:
    """Stationary per-coordinate variance ``V_inf = eta^2 sigma^2 / (1 - r)``; ``inf`` when r >= 1.

    For ``z <- M z + eta sigma xi`` with ``M^T M = r I`` and xi standard normal per coordinate, the
    covariance solves ``V = M V M^T + eta^2 sigma^2 I``, whose solution is ``V_inf I``.

    Args:
        eta: learning rate (> 0).
        sigma: standard deviation of the gradient noise per coordinate (>= 0).
        r: the convergence factor (>= 0), see :func:`convergence_factor`.
    """
    _check_positive(eta=eta)
    _check_non_negative(sigma=sigma, r=r)
    if r >= 1.0:
        return math.inf
    return (eta * sigma) ** 2 / (1.0 - r)


def lr_window(alpha: float, s_max: float, target: float) -> tuple[float, float] | None:
    """The steps whose convergence factor is at most ``target``: ``r(eta) <= target`` iff ``lo <= eta <= hi``.

    ``r(eta) = 1 - 2 eta alpha + eta^2 (alpha^2 + s^2)`` is a parabola in eta, so ``r = target`` at
    ``eta = (alpha -+ sqrt(alpha^2 - (alpha^2 + s^2)(1 - target))) / (alpha^2 + s^2)``. None when no step
    reaches the target: alpha <= 0, or ``s^2 / (alpha^2 + s^2)`` (the smallest r, at
    ``eta = alpha / (alpha^2 + s^2)``) is above it.

    Args:
        alpha: damping.
        s_max: largest singular value of the coupling (>= 0).
        target: the convergence factor to stay at or below, in (0, 1].
    """
    _check_non_negative(s_max=s_max)
    if not (math.isfinite(target) and 0 < target <= 1):
        raise ValueError(f"target must lie in (0, 1], got {target}")
    if not math.isfinite(alpha) or alpha <= 0:
        return None
    q = alpha * alpha + s_max * s_max
    disc = alpha * alpha - q * (1.0 - target)
    if disc < 0:
        return None
    root = math.sqrt(disc)
    return (alpha - root) / q, (alpha + root) / q


def lr_scale_for_target(lrs: Sequence[float], alpha: float, s_max: float, target: float) -> float | None:
    """The factor k <= 1 on every learning rate that keeps ``r(k eta_i) <= target`` for each network i.

    Each network's r is evaluated at its own learning rate with the common alpha and s_max. ``k = min(1, min_i
    hi_i / eta_i)`` with ``hi`` the upper end of :func:`lr_window`: the largest steps at or below the target,
    so ``r = target`` for the network that binds. k = 1 whenever every ``r(eta_i) <= target`` (nothing to
    change), and also when a step is below the window (r above the target only because the step is small:
    the game contracts, slowly; raising the user's learning rate is not this function's job). When no step
    reaches the target but alpha > 0, the step that minimizes r, ``alpha / (alpha^2 + s^2)``, takes the place
    of ``hi``. None when alpha <= 0: no learning rate makes the linear game contract.

    Args:
        lrs: each network's learning rate (> 0).
        alpha: damping.
        s_max: largest singular value of the coupling (>= 0).
        target: the convergence factor to stay at or below, in (0, 1].
    """
    for eta in lrs:
        _check_positive(eta=eta)
    window = lr_window(alpha, s_max, target)
    if window is None:
        if not math.isfinite(alpha) or alpha <= 0:
            return None
        hi = alpha / (alpha * alpha + s_max * s_max)
    else:
        hi = window[1]
    return min([1.0] + [hi / eta for eta in lrs])


def min_damping_for_target(lrs: Sequence[float], s_max: float, target: float) -> float | None:
    """The smallest alpha with ``r(eta_i) <= target`` for every learning rate eta_i, or None if none exists.

    For one step eta, ``(1 - eta alpha)^2 <= target - (eta s)^2`` gives
    ``alpha in [(1 - sqrt(target - (eta s)^2)) / eta, (1 + sqrt(target - (eta s)^2)) / eta]``; empty when
    ``(eta s)^2 > target`` (the coupling alone rotates too fast: only a smaller step helps). The answer is the
    largest lower end, if it is within every upper end.

    Args:
        lrs: each network's learning rate (> 0).
        s_max: largest singular value of the coupling (>= 0).
        target: the convergence factor to stay at or below, in (0, 1].
    """
    _check_non_negative(s_max=s_max)
    if not (math.isfinite(target) and 0 < target <= 1):
        raise ValueError(f"target must lie in (0, 1], got {target}")
    lows, highs = [], []
    for eta in lrs:
        _check_positive(eta=eta)
        slack = target - (eta * s_max) ** 2
        if slack < 0:
            return None
        lows.append((1.0 - math.sqrt(slack)) / eta)
        highs.append((1.0 + math.sqrt(slack)) / eta)
    alpha = max(lows)
    return alpha if alpha <= min(highs) else None


# -- simulation --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LinearGameSimulation:
    """What :func:`simulate_linear_game` measured, next to the closed forms it should match.

    Attributes:
        contraction: geometric mean over the steps of ``E|z_{t+1}|^2 / E|z_t|^2`` of the noiseless chains.
        stationary_variance: per-coordinate variance of the noisy chains after burn-in (mean of x^2 and
            y^2 over chains, both coordinates and the post-burn-in steps).
        predicted_contraction: ``r`` from :func:`convergence_factor`.
        predicted_variance: ``V_inf`` from :func:`noise_floor` (inf when r >= 1).
    """

    contraction: float
    stationary_variance: float
    predicted_contraction: float
    predicted_variance: float


def simulate_linear_game(eta: float, alpha: float, s: float, sigma: float, *, steps: int = 400,
                         num_chains: int = 2000, burn_in: int | None = None, seed: int = 0) -> LinearGameSimulation:
    """Simulate one 2-D block of the linearized game, noiseless and with gradient noise, over many chains.

    ``x_{t+1} = x_t - eta (alpha x_t + s y_t) + eta sigma xi_t``,
    ``y_{t+1} = y_t - eta (alpha y_t - s x_t) + eta sigma zeta_t``, xi and zeta i.i.d. N(0, 1): the
    iteration matrix is ``(1 - eta alpha) I + eta s J`` (see the module docstring), the noise adds variance
    ``(eta sigma)^2`` per coordinate per step.

    Contraction: the noiseless chains start at random points; each step's ratio of mean squared norms is
    recorded and the chains rescaled (so that neither overflow nor underflow limits ``steps``); the
    result is the ratios' geometric mean, which equals r for every step when the derivation holds.
    Stationary variance: the noisy chains start at 0, run ``burn_in`` steps (their variance is then
    ``V_inf (1 - r^burn_in)``), and the per-coordinate second moment is averaged over the rest.

    Args:
        eta: learning rate (> 0).
        alpha: damping.
        s: the coupling singular value of this block (>= 0).
        sigma: gradient-noise standard deviation per coordinate (>= 0).
        steps: number of steps (>= 2).
        num_chains: number of independent chains (>= 1), simulated together in float64.
        burn_in: steps discarded before measuring the variance; default ``steps // 2``; 0 <= burn_in < steps.
        seed: seed of the initial points and the noise.
    """
    r = convergence_factor(eta, alpha, s)
    _check_non_negative(sigma=sigma)
    if steps < 2 or num_chains < 1:
        raise ValueError(f"need steps >= 2 and num_chains >= 1, got steps={steps}, num_chains={num_chains}")
    burn_in = steps // 2 if burn_in is None else int(burn_in)
    if not 0 <= burn_in < steps:
        raise ValueError(f"burn_in must lie in [0, steps), got {burn_in} with steps={steps}")
    gen = torch.Generator().manual_seed(seed)
    a, b = 1.0 - eta * alpha, eta * s

    def step(z: Tensor) -> Tensor:  # [C, 2] -> [C, 2]
        x, y = z[:, 0], z[:, 1]
        return torch.stack([a * x - b * y, a * y + b * x], dim=1)

    clean = torch.randn(num_chains, 2, generator=gen, dtype=torch.float64)
    log_ratio = 0.0
    for _ in range(steps):
        before = clean.square().sum(1).mean()
        clean = step(clean)
        after = clean.square().sum(1).mean()
        log_ratio += math.log(float(after / before))
        clean = clean / after.sqrt()

    noisy = torch.zeros(num_chains, 2, dtype=torch.float64)
    second_moment, count = 0.0, 0
    for t in range(steps):
        noisy = step(noisy) + eta * sigma * torch.randn(num_chains, 2, generator=gen, dtype=torch.float64)
        if t >= burn_in:
            second_moment += float(noisy.square().mean())
            count += 1
    return LinearGameSimulation(contraction=math.exp(log_ratio / steps), stationary_variance=second_moment / count,
                                predicted_contraction=r, predicted_variance=noise_floor(eta, sigma, r) if sigma > 0
                                else 0.0)


# -- spectral norms ---------------------------------------------------------------------------------
def _unit_random(shape: Sequence[int], like: Tensor, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(tuple(shape), generator=gen, dtype=torch.float64).to(dtype=like.dtype, device=like.device)
    return v / v.norm()


def _check_iterations(iterations: int) -> None:
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive int, got {iterations!r}")


def power_iteration_norm(matrix: Tensor, *, iterations: int = 100, seed: int = 0) -> float:
    """Largest singular value of a matrix by power iteration on ``M^T M``: ``v <- M^T M v / |M^T M v|``.

    Returns ``|M v|`` after ``iterations`` steps; the error shrinks like ``(sigma_2 / sigma_1)^(2 k)``, so
    it is exact only to the extent the top two singular values are apart (the estimate never exceeds sigma_1).

    Args:
        matrix: [m, n], real floating.
        iterations: power-iteration steps (>= 1).
        seed: seed of the random start vector.
    """
    if matrix.dim() != 2 or not matrix.is_floating_point():
        raise ValueError(f"expected a real floating 2-D matrix, got {matrix.dtype} of shape {tuple(matrix.shape)}")
    _check_iterations(iterations)
    matrix = matrix.detach()
    v = _unit_random(matrix.shape[1:], matrix, seed)
    for _ in range(iterations):
        w = matrix.t() @ (matrix @ v)
        norm = w.norm()
        if norm == 0:
            return 0.0
        v = w / norm
    return float((matrix @ v).norm())


def jacobian_spectral_norm(fn: Callable[[Tensor], Tensor], x: Tensor, *, iterations: int = 50,
                           seed: int = 0) -> float:
    """Largest singular value of the Jacobian of ``fn`` at ``x``, by power iteration with autograd.

    The Jacobian is that of the whole map ``vec(x) -> vec(fn(x))``: a batch is one input. For a network
    that treats samples independently (no batch statistics) that Jacobian is block-diagonal, so its norm
    is the largest of the per-sample norms; pass one sample to get that sample's. Each iteration applies
    ``v <- J^T J v / |J^T J v|``: ``J^T u`` by a vector-Jacobian product (backward), ``J v`` by the
    double-backward trick (differentiate the linear map ``u -> J^T u`` again), so ``fn`` is evaluated once
    and needs no forward-mode support. Returns ``|J v|``; like any power iteration it approaches sigma_1
    from below at the rate ``(sigma_2 / sigma_1)^(2 k)``.

    Args:
        fn: a differentiable function of one tensor (put modules in eval mode, no dropout).
        x: the point [any shape], floating.
        iterations: power-iteration steps (>= 1).
        seed: seed of the random start vector.
    """
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating tensor, got {x.dtype}")
    _check_iterations(iterations)
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        y = fn(x)
        if not isinstance(y, Tensor) or not y.requires_grad:
            raise ValueError("fn(x) must be a tensor that depends differentiably on x")
        u0 = torch.zeros_like(y, requires_grad=True)
        (jt_u0,) = torch.autograd.grad(y, x, u0, create_graph=True)  # J^T u0, linear in u0

        def jvp(v: Tensor) -> Tensor:
            return torch.autograd.grad(jt_u0, u0, v, retain_graph=True)[0]

        def vjp(u: Tensor) -> Tensor:
            return torch.autograd.grad(y, x, u, retain_graph=True)[0]

        v = _unit_random(x.shape, x, seed)
        for _ in range(iterations):
            w = vjp(jvp(v))
            norm = w.norm()
            if norm == 0:
                return 0.0
            v = w / norm
        return float(jvp(v).norm())


class LayerSpectralNorm(NamedTuple):
    """One layer's largest singular value, as :func:`layer_spectral_norms` measured it.

    Attributes:
        name: the module's qualified name in the model.
        kind: "linear", "conv2d" or "conv_transpose2d".
        shape: the stored weight's shape.
        sigma_max: largest singular value of the linear map ``weight * gain`` (see ``method``).
        gain: the runtime multiplier ``weight_gain`` (equalized learning rate), 1.0 when absent.
        input_size: the (H, W) the conv was evaluated at, None for linear layers and unsized convs.
        method: "svd" (exact, linear); "power" (power iteration on the layer's own linear map: for convs the
            exact operator at ``input_size`` with its stride, padding and groups, up to convergence);
            "frequency" (exact norm of the stride-1 circular conv at ``input_size``; for other strides or
            paddings an approximation, see :func:`layer_spectral_norms`); "reshaped" (no input size: the norm
            of the [C_out, C_in k_h k_w] matrix that ``torch.nn.utils.spectral_norm`` normalizes, not an
            operator norm).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    sigma_max: float
    gain: float
    input_size: tuple[int, int] | None
    method: str


def _effective_weight(module: nn.Module) -> tuple[Tensor, float] | None:
    if isinstance(module, nn.Embedding):  # a lookup table, not a linear map of its input
        return None
    weight = getattr(module, "weight", None)
    if not isinstance(weight, Tensor) or weight.dim() not in (2, 4) or not weight.is_floating_point():
        return None
    gain = getattr(module, "weight_gain", 1.0)
    if not isinstance(gain, (int, float)) or isinstance(gain, bool):
        return None  # a gain we cannot read as one number: the effective weight is unknown
    return weight.detach(), float(gain)


def _record_input_sizes(module: nn.Module, names: Sequence[str], input_shape: Sequence[int],
                        extra_inputs: Sequence[Any]) -> dict[str, tuple[int, int]]:
    sizes: dict[str, tuple[int, int]] = {}
    handles = []
    for name, sub in module.named_modules():
        if name in names:
            def hook(_m: nn.Module, args: tuple, name: str = name) -> None:
                if args and isinstance(args[0], Tensor) and args[0].dim() >= 3:
                    sizes.setdefault(name, (int(args[0].shape[-2]), int(args[0].shape[-1])))
            handles.append(sub.register_forward_pre_hook(hook))
    param = next(module.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    x = torch.randn(tuple(input_shape), generator=torch.Generator().manual_seed(0)).to(dtype=dtype, device=device)
    try:
        with torch.no_grad():
            module(x, *extra_inputs)
    finally:
        for h in handles:
            h.remove()
    return sizes


def _conv2d_padding(module: nn.Conv2d) -> tuple[int, int, int, int]:
    """The (left, right, top, bottom) padding an nn.Conv2d applies, for ``F.pad``."""
    if isinstance(module.padding, str):
        if module.padding == "valid":
            return (0, 0, 0, 0)
        (top, bottom), (left, right) = [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2)
                                        for d, k in zip(module.dilation, module.kernel_size)]  # "same"
        return (left, right, top, bottom)
    ph, pw = module.padding
    return (pw, pw, ph, ph)


def _conv_linear_map(module: nn.Module, weight: Tensor) -> Callable[[Tensor], Tensor]:
    """The bias-free linear map of an nn.Conv2d / nn.ConvTranspose2d with its stride, padding, groups."""
    if isinstance(module, nn.ConvTranspose2d):
        return lambda v: F.conv_transpose2d(v, weight, None, module.stride, module.padding, module.output_padding,
                                            module.groups, module.dilation)
    assert isinstance(module, nn.Conv2d)
    pad = _conv2d_padding(module)
    mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
    return lambda v: F.conv2d(F.pad(v, pad, mode=mode), weight, None, module.stride, 0, module.dilation,
                              module.groups)


def _stride1_circular_norm(weight: Tensor, size: tuple[int, int], groups: int, dilation: tuple[int, int]) -> float:
    """Per-frequency norm of a (transposed) conv weight; both store one [out, in] block per group along dim 0."""
    if dilation != (1, 1):
        cout, cin, kh, kw = weight.shape
        dilated = weight.new_zeros(cout, cin, (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1)
        dilated[:, :, ::dilation[0], ::dilation[1]] = weight
        weight = dilated
    # A transposed conv is the adjoint of the conv with the same weight (same singular values); groups make
    # the operator block-diagonal, so its norm is the largest block's.
    return max(float(conv_operator_norm(w, size)) for w in weight.chunk(groups, 0))


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode inside, the original train/eval flags restored after (spectral-norm parametrizations and
    batch norms update buffers in training mode, even on reading ``weight``)."""
    flags = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield
    finally:
        for m, mode in flags.items():
            m.training = mode


def layer_spectral_norms(module: nn.Module, input_shape: Sequence[int] | Mapping[str, tuple[int, int]] | None = None,
                         *, extra_inputs: Sequence[Any] = (), iterations: int | None = None,
                         seed: int = 0) -> list[LayerSpectralNorm]:
    """Largest singular value of every linear or conv layer's weight map, in ``named_modules`` order.

    A layer is any module with a floating 2-D (linear, [out, in]) or 4-D (conv, [out, in, k, k]) ``weight``
    tensor, nn.Embedding excepted; an equalized-learning-rate layer's float ``weight_gain`` attribute
    (StyleGAN2 plugin's ``EqualLinear``/``EqualConv2d``/``ModulatedConv2d``) multiplies the weight. A
    spectral-norm parametrization is honoured because ``module.weight`` is then the normalized weight.
    Not included: biases, activation gains applied after the linear map (``EqualConv2d.act_gain``, lrelu's
    sqrt 2), styles and demodulation of modulated convs, and FIR up/down-sampling of plugin layers
    (``up``/``down`` attributes): for those the record is the norm of the plain stride-1 conv.

    Linear layers: exact ``sigma_1`` (``torch.linalg.svdvals``) when ``iterations`` is None, else
    :func:`power_iteration_norm`. Conv layers need their input map size, found by running
    ``module(x, *extra_inputs)`` on one random batch x of ``input_shape`` (eval mode, no grad; the
    train/eval flags are restored), or given as a mapping ``{layer name: (H, W)}`` (e.g. for a synthesis
    network, whose input is not a map):

    - ``iterations`` None: :func:`~lightning_gan.analysis.orthogonality.conv_operator_norm`, the max over
      frequencies of sigma_1 of the per-frequency matrices (groups: the max over groups; dilation: a
      zero-dilated kernel). Exact for stride 1 with circular padding. With zero padding the layer is a
      compression of a circular conv on a larger map, so its norm is at most the sup of sigma_1 over all
      frequencies, which the N x N grid approaches from below. A circular stride-s conv is a subsampling
      (norm 1) after the stride-1 one, so there the value bounds the layer's norm from above; a transposed
      conv is evaluated as the adjoint conv on its output grid, with the same bound.
    - ``iterations`` an int: for nn.Conv2d and nn.ConvTranspose2d, :func:`jacobian_spectral_norm` of the
      layer's own bias-free map (its stride, padding, padding mode, dilation and groups) at one input of
      ``(1, C_in, H, W)``, i.e. the exact operator norm of what the layer computes at that size, up to
      power-iteration convergence. Other 4-D-weight modules fall back to the per-frequency value.

    Convs without a known size get ``method="reshaped"`` (see :class:`LayerSpectralNorm`).

    Args:
        module: the model.
        input_shape: the shape of one input batch for ``module(x)``, or ``{name: (H, W)}``, or None.
        extra_inputs: further positional arguments of the forward, e.g. the one-hot conditions [N, c_dim]
            of a conditional discriminator.
        iterations: None for exact SVDs; an int for power iteration with that many steps.
        seed: seed of the power iterations' start vectors.
    """
    if iterations is not None:
        _check_iterations(iterations)
    with _eval_mode(module):
        return _collect_spectral_norms(module, input_shape, extra_inputs, iterations, seed)


def _collect_spectral_norms(module: nn.Module, input_shape: Sequence[int] | Mapping[str, tuple[int, int]] | None,
                            extra_inputs: Sequence[Any], iterations: int | None, seed: int) -> list[LayerSpectralNorm]:
    layers = [(name, sub, found) for name, sub in module.named_modules()
              if (found := _effective_weight(sub)) is not None]
    conv_names = [name for name, _, (w, _) in layers if w.dim() == 4]
    if input_shape is None:
        sizes: dict[str, tuple[int, int]] = {}
    elif isinstance(input_shape, Mapping):
        sizes = {name: (int(size[0]), int(size[1])) for name, size in input_shape.items()}
        unknown = sorted(set(sizes) - set(conv_names))
        if unknown:
            raise ValueError(f"input sizes given for unknown conv layers {unknown}; the conv layers are {conv_names}")
    else:
        if len(input_shape) < 2:  # (N, z_dim) for a generator, (N, C, H, W) for a discriminator
            raise ValueError(f"input_shape must be a batch shape like (N, C, H, W) or (N, z_dim), got {tuple(input_shape)}")
        sizes = _record_input_sizes(module, conv_names, input_shape, extra_inputs) if conv_names else {}

    records = []
    for name, sub, (weight, gain) in layers:
        eff = weight * gain
        if weight.dim() == 2:
            sigma = (float(torch.linalg.svdvals(eff)[0]) if iterations is None
                     else power_iteration_norm(eff, iterations=iterations, seed=seed))
            records.append(LayerSpectralNorm(name, "linear", tuple(weight.shape), sigma, gain, None,
                                             "svd" if iterations is None else "power"))
            continue
        transposed = isinstance(sub, nn.ConvTranspose2d)
        kind = "conv_transpose2d" if transposed else "conv2d"
        size = sizes.get(name)
        if size is None:
            sigma = float(torch.linalg.svdvals(eff.flatten(1))[0])
            records.append(LayerSpectralNorm(name, kind, tuple(weight.shape), sigma, gain, None, "reshaped"))
            continue
        if iterations is not None and isinstance(sub, (nn.Conv2d, nn.ConvTranspose2d)):
            in_channels = weight.shape[0] if transposed else weight.shape[1] * sub.groups
            x = torch.zeros(1, in_channels, *size, dtype=eff.dtype, device=eff.device)
            sigma = jacobian_spectral_norm(_conv_linear_map(sub, eff), x, iterations=iterations, seed=seed)
            method = "power"
        else:
            groups = int(getattr(sub, "groups", 1))
            dilation = getattr(sub, "dilation", (1, 1))
            dilation = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
            grid = size
            if transposed:  # the adjoint of a conv on the transposed conv's output grid
                in_channels = weight.shape[0]
                with torch.no_grad():
                    probe = _conv_linear_map(sub, eff)(eff.new_zeros(1, in_channels, *size))
                grid = (int(probe.shape[-2]), int(probe.shape[-1]))
            sigma = _stride1_circular_norm(eff, grid, groups, dilation)
            method = "frequency"
        records.append(LayerSpectralNorm(name, kind, tuple(weight.shape), sigma, gain, size, method))
    return records
