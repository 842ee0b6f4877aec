"""Lag-1 autocorrelation of 2-D maps: an AR(1) fit testing the i.i.d. per-pixel noise assumption.

Theory and papers: docs/theory.md#per-pixel-noise-and-its-ar1-fit.

StyleGAN's per-pixel noise inputs are meant to be i.i.d.; textures and feature maps are not. An AR(1)
fit along rows or columns, ``phi_hat = sum x_t x_{t-1} / sum x_{t-1}^2`` after removing the mean, is ~0
for white noise and approaches 1 for smooth maps. :func:`ar1_field` makes the spatially correlated noise
the other way round (the same construction as the StyleGAN2 plugin's ``ar1_noise``, which the core does
not import).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

__all__ = ["ar1_field", "ar1_phi", "ar1_phi_standard_error"]

Demean = Literal["global", "map", "none"]


def _check_phi(phi: float) -> float:
    if not (isinstance(phi, (int, float)) and -1.0 < phi < 1.0):
        raise ValueError(f"the AR(1) coefficient phi must lie in (-1, 1), got {phi!r}")
    return float(phi)


def ar1_phi(x: Tensor, dim: int = -1, *, demean: Demean = "global") -> float:
    """Least-squares AR(1) coefficient along rows (``dim=-1``) or columns (``dim=-2``) of [..., H, W] maps.

    ``phi_hat = sum x_t x_{t-1} / sum x_{t-1}^2``, the sums running over every pair of neighbours along
    ``dim`` in every line of every map (leading dimensions are pooled), after removing the mean:

    - "global": one mean over the whole tensor (noise maps, whose mean is 0 by construction: the bias
      is negligible);
    - "map": the mean of each [H, W] map (feature maps with per-channel offsets, which would otherwise
      push phi_hat towards 1); this biases phi_hat downwards, for a separable AR(1) field by up to about
      ``(1 + phi)^2 / ((1 - phi) H W)`` (large maps; about 0.025 measured at phi = 0.9 on 32 x 32 maps);
    - "none": use ``x`` as it is.

    The sampling error is given by :func:`ar1_phi_standard_error`.

    Args:
        x: maps [..., H, W], floating, at least 2-D; sums run in float64.
        dim: -1 (along each row: horizontal neighbours) or -2 (along each column: vertical neighbours);
            the non-negative spellings of the last two dimensions are accepted too.
        demean: which mean to remove, see above.
    """
    if x.dim() < 2 or not x.is_floating_point():
        raise ValueError(f"expected floating maps [..., H, W], got {x.dtype} of shape {tuple(x.shape)}")
    if dim not in (-1, -2, x.dim() - 1, x.dim() - 2):
        raise ValueError(f"dim must be -1 (rows) or -2 (columns) of [..., H, W] maps, got {dim}")
    n = x.shape[dim]
    if n < 2:
        raise ValueError(f"need at least 2 samples along dim {dim}, got shape {tuple(x.shape)}")
    x = x.detach().double()
    if demean == "global":
        x = x - x.mean()
    elif demean == "map":
        x = x - x.mean(dim=(-2, -1), keepdim=True)
    elif demean != "none":
        raise ValueError(f"demean must be 'global', 'map' or 'none', got {demean!r}")
    now, prev = x.narrow(dim, 1, n - 1), x.narrow(dim, 0, n - 1)
    denominator = prev.square().sum()
    if denominator == 0:
        raise ValueError("the maps are constant after removing the mean: phi_hat is undefined")
    return float((now * prev).sum() / denominator)


def ar1_phi_standard_error(phi: float, num_pairs: int, *, phi_across: float | None = None) -> float:
    """Large-sample standard error of :func:`ar1_phi` from ``num_pairs`` neighbour pairs.

    ``sqrt( (1 - phi^2) / n * (1 + phi_across^2) / (1 - phi_across^2) )``. The first factor is the classical
    least-squares result for independent AR(1) lines (``phi_across = 0``). In a separable field
    (:func:`ar1_field`) neighbouring lines are correlated with ``phi_across`` (the coefficient in the other
    direction), their per-line estimates with ``phi_across^(2 |lag|)``, which inflates the variance by the
    second factor; for the same coefficient in both directions (the default) it is ``sqrt((1 + phi^2) / n)``.
    For i.i.d. noise it is ``1 / sqrt(n)``. ``num_pairs`` is ``prod(leading dims) * H * (W - 1)`` along rows
    (``* (H - 1) * W`` along columns).

    Args:
        phi: the true coefficient along the estimated direction, in (-1, 1).
        num_pairs: number of neighbour pairs (>= 1).
        phi_across: the coefficient across lines, in (-1, 1); None: equal to ``phi``.
    """
    phi = _check_phi(phi)
    across = phi if phi_across is None else _check_phi(phi_across)
    if num_pairs < 1:
        raise ValueError(f"num_pairs must be >= 1, got {num_pairs}")
    return math.sqrt((1.0 - phi * phi) * (1.0 + across * across) / ((1.0 - across * across) * num_pairs))


def _ar1_matrix(length: int, phi: float) -> Tensor:
    """``L`` [length, length] float64 with ``x = L e`` the stationary AR(1) of white ``e``.

    ``x_0 = e_0``, ``x_t = phi x_{t-1} + sqrt(1 - phi^2) e_t``: ``L[t, s] = phi^(t - s) c_s`` for s <= t,
    ``c_0 = 1``, ``c_s = sqrt(1 - phi^2)``; every ``x_t`` has variance 1 and ``corr(x_t, x_{t-k}) = phi^k``.
    """
    t = torch.arange(length, dtype=torch.float64)
    lag = t[:, None] - t[None, :]
    matrix = torch.where(lag >= 0, torch.tensor(phi, dtype=torch.float64) ** lag.clamp(min=0),
                         torch.zeros((), dtype=torch.float64))
    matrix[:, 1:] *= math.sqrt(1.0 - phi * phi)
    return matrix


def ar1_field(shape: Sequence[int], phi: float | tuple[float, float], *, generator: torch.Generator | None = None,
              dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """Stationary separable 2-D AR(1) fields of unit variance, [..., H, W].

    ``X = L_H E L_W^T`` for white ``E`` [..., H, W] (``L`` as in the plugin's ``ar1_matrix``): every row is a
    stationary AR(1) with the row coefficient, every column with the column coefficient, every pixel has
    variance 1 (the first sample is drawn from the stationary distribution, the innovations are scaled by
    ``sqrt(1 - phi^2)``), and ``corr(X[i, j], X[i + a, j + b]) = phi_col^|a| phi_row^|b|``. phi = 0 is
    i.i.d. N(0, 1) noise.

    Args:
        shape: [..., H, W], at least 2-D.
        phi: one coefficient for both directions, or ``(phi_row, phi_col)``: along rows (dim -1) and along
            columns (dim -2); each in (-1, 1).
        generator: random generator (on ``device``) for reproducible fields.
        dtype: output dtype (the field is built in float64).
        device: output device.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise ValueError(f"shape must be [..., H, W] with positive sizes, got {shape}")
    phi_row, phi_col = (phi, phi) if isinstance(phi, (int, float)) else tuple(phi)
    phi_row, phi_col = _check_phi(phi_row), _check_phi(phi_col)
    e = torch.randn(shape, generator=generator, dtype=torch.float64, device=device)
    left = _ar1_matrix(shape[-2], phi_col).to(e.device)  # mixes along H: the column direction
    right = _ar1_matrix(shape[-1], phi_row).to(e.device)  # mixes along W: the row direction
    return (left @ e @ right.t()).to(dtype)
