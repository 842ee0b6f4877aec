"""Per-frequency singular values of a convolution layer: its operator norm and its orthogonality deviation.

With circular padding a stride-1 convolution on N x N maps is diagonal in the 2-D Fourier basis: at
frequency (u, v) it multiplies the input's channel vector by the C_out x C_in matrix

    H(u, v) = sum_{a, b} W[:, :, a, b] * exp(-2 pi i (u a + v b) / N)

(the 2-D DFT of the kernel zero-padded to N x N). So the layer's singular values are exactly the
union over the N^2 frequencies of the singular values of H(u, v), which costs N^2 small SVDs instead of
one SVD of a (C_out N^2) x (C_in N^2) matrix (Sedghi, Gupta & Long 2019).

Convolution vs cross-correlation: ``torch.nn.functional.conv2d`` computes a cross-correlation,
``y[p] = sum_a W[a] x[p + a - pad]``, whose transfer matrix at (u, v) is ``conj(H(u, v))`` times the
phase ``exp(-2 pi i (u pad_h + v pad_w) / N)``; a true convolution has ``H(u, v)`` itself. Complex
conjugation and a unit phase leave singular values unchanged, so the values returned here are those of
the layer at (u, v) under either convention, for any padding offset.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["conv_frequency_singular_values", "conv_operator_norm", "orthogonality_deviation"]


def _map_size(n: int | tuple[int, int]) -> tuple[int, int]:
    size = (n, n) if isinstance(n, int) else tuple(n)
    if len(size) != 2 or not all(isinstance(s, int) and s >= 1 for s in size):
        raise ValueError(f"the map size must be a positive int N or a pair (H, W) of them, got {n!r}")
    return size  # type: ignore[return-value]


def _fold_kernel(weight: Tensor, h: int, w: int) -> Tensor:
    """The kernel zero-padded to (H, W), its taps beyond the map added modulo (H, W): [C_out, C_in, H, W]."""
    kh, kw = weight.shape[-2:]
    ph, pw = -(-kh // h) * h, -(-kw // w) * w  # round up to multiples of the map size
    padded = F.pad(weight, (0, pw - kw, 0, ph - kh))
    return padded.reshape(*weight.shape[:2], ph // h, h, pw // w, w).sum(dim=(2, 4))


def conv_frequency_singular_values(weight: Tensor, n: int | tuple[int, int]) -> Tensor:
    """Singular values of the circular stride-1 convolution with ``weight`` on N x N maps, per frequency.

    ``sigma_j(u, v)``, j = 1..min(C_out, C_in), are the singular values of ``H(u, v) = fft2(W, s=(N, N))``
    [C_out, C_in] (see the module docstring for why cross-correlation gives the same values).

    Args:
        weight: the kernel [C_out, C_in, k_h, k_w] (a real floating tensor; gradients flow through).
        n: the map size N (or (H, W) for rectangular maps). A kernel larger than the map wraps around it,
            as a circular convolution does: taps k apart in the kernel land on the same pixel and add up.

    Returns:
        [H, W, min(C_out, C_in)] singular values, descending along the last dimension, in the weight's
        real dtype.
    """
    if weight.dim() != 4:
        raise ValueError(f"a conv weight must be 4-D [C_out, C_in, k_h, k_w], got shape {tuple(weight.shape)}")
    if not weight.is_floating_point():
        raise ValueError(f"the conv weight must be a real floating tensor, got {weight.dtype}")
    h, w = _map_size(n)
    transfer = torch.fft.fft2(_fold_kernel(weight, h, w))  # [C_out, C_in, H, W], complex
    return torch.linalg.svdvals(transfer.permute(2, 3, 0, 1))  # [H, W, min(C_out, C_in)]


def conv_operator_norm(weight: Tensor, n: int | tuple[int, int]) -> Tensor:
    """Operator (spectral) norm of the circular stride-1 convolution on N x N maps: ``max_{u,v} sigma_1(u, v)``.

    Args:
        weight: the kernel [C_out, C_in, k_h, k_w].
        n: the map size N (or (H, W)).

    Returns:
        A 0-dim tensor (differentiable w.r.t. ``weight``).
    """
    return conv_frequency_singular_values(weight, n)[..., 0].amax()


def orthogonality_deviation(weight: Tensor, n: int | tuple[int, int]) -> Tensor:
    """How far a conv layer is from orthogonal, as the RMS distance of its singular values from 1.

    ``D = sqrt( 1/(F S) * sum_{u,v} sum_j (sigma_j(u, v) - 1)^2 )`` with F = N^2 frequencies (H W for
    rectangular maps) and S = min(C_out, C_in) singular values per frequency. D = 0 exactly when every
    H(u, v) has orthonormal rows or columns, i.e. the circular layer is an isometry (C_out >= C_in) or a
    co-isometry (C_out <= C_in); a kernel ``c * identity`` gives D = ||c| - 1|.

    Args:
        weight: the kernel [C_out, C_in, k_h, k_w].
        n: the map size N (or (H, W)).

    Returns:
        A 0-dim tensor (differentiable w.r.t. ``weight``, so it can serve as a penalty).
    """
    sigma = conv_frequency_singular_values(weight, n)  # [H, W, S]
    return (sigma - 1.0).square().mean().sqrt()
