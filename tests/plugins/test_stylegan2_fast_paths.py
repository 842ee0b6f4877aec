"""StyleGAN2's CPU fast paths give the numbers of the formulas they replace.

Each speed-up of the training iteration (benchmarks/stylegan2_step.py) reorders arithmetic or memory only:
equalized-lr gains on the smaller operand of a linear layer, the transposed convolution's weight, the
convolutions' second derivatives (tests/unit/test_ops_conv.py), and the fused Adam of the default optimizer.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lightning_gan.module import _default_optimizer
from lightning_gan_stylegan2.layers import (
    LRELU_GAIN,
    EqualLinear,
    _transpose_weight,
    conv2d_resample,
    resample_filter,
)


@pytest.mark.parametrize("activation", ["linear", "lrelu"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch", [2, 64])  # 2 x 16 < 16 x 8 weights: the input takes the gain; 64 x 16 > 128: the weight
def test_equal_linear_formula_on_either_operand(activation: str, bias: bool, batch: int) -> None:
    """``act(x W^T lr_mul/sqrt(I) + b lr_mul) * gain`` and its weight gradient, whichever operand is scaled."""
    torch.manual_seed(0)
    layer = EqualLinear(in_features=16, out_features=8, bias=bias, bias_init=0.5, lr_mul=0.01,
                        activation=activation).double()
    x = torch.randn(batch, 16, dtype=torch.float64)
    y = layer(x)
    w_ref = layer.weight.detach().clone().requires_grad_(True)
    a = x @ (w_ref * (0.01 / math.sqrt(16))).t()
    if bias:
        a = a + layer.bias.detach() * 0.01
    ref = F.leaky_relu(a, 0.2) * LRELU_GAIN if activation == "lrelu" else a
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    grad_out = torch.randn_like(y)
    y.backward(grad_out)
    ref.backward(grad_out)
    torch.testing.assert_close(layer.weight.grad, w_ref.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True])
def test_transposed_weight_is_zero_insertion_then_correlation(groups: int, channels_last: bool) -> None:
    """``conv_transpose2d(x, T(w), stride 2)`` = zero insertion (length 2H - 1) + "same" correlation with ``w``,
    extended by k // 2 on both sides (grouped too); a channels_last weight gives a channels_last T(w)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 5, 5, generator=g, dtype=torch.float64)
    w = torch.randn(6, 4 // groups, 3, 3, generator=g, dtype=torch.float64)
    if channels_last:
        w = w.contiguous(memory_format=torch.channels_last)
    t = _transpose_weight(w, groups)
    assert t.shape == (4, 6 // groups, 3, 3)
    assert t.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    zeros = torch.zeros(2, 4, 9, 9, dtype=torch.float64)
    zeros[:, :, ::2, ::2] = x  # zero insertion: 2H - 1 samples
    ref = F.conv2d(zeros, w.contiguous(), padding=2, groups=groups)  # correlation, extended by k - 1 = 2
    torch.testing.assert_close(F.conv_transpose2d(x, t, stride=2, groups=groups), ref, rtol=0, atol=1e-12)


def test_upsampling_conv_with_channels_last_weight_matches_the_plain_one() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 5, 6, 6, generator=g, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    w = torch.randn(7, 5, 3, 3, generator=g, dtype=torch.float64)
    f = resample_filter().double()
    ref = conv2d_resample(x, w, f=f, up=2)
    torch.testing.assert_close(conv2d_resample(x, w.contiguous(memory_format=torch.channels_last), f=f, up=2), ref,
                               rtol=0, atol=1e-12)


def test_default_optimizer_is_fused_adam_with_the_formula() -> None:
    """One step of the default optimizer on CPU is fused and gives Adam's update by hand:
    ``m = (1 - b1) g``, ``v = (1 - b2) g^2``, ``p -= lr * m / (1 - b1) / (sqrt(v / (1 - b2)) + eps)``."""
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5, 3, dtype=torch.float64))
    p0 = p.detach().clone()
    p.grad = torch.randn(5, 3, dtype=torch.float64)
    opt = _default_optimizer([p])
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["fused"] is True
    lr, (b1, b2), eps = opt.defaults["lr"], opt.defaults["betas"], opt.defaults["eps"]
    assert (lr, b1, b2, eps) == (0.002, 0.0, 0.99, 1e-8)
    opt.step()
    g = p.grad
    m, v = (1 - b1) * g, (1 - b2) * g.square()
    expected = p0 - lr * (m / (1 - b1)) / ((v / (1 - b2)).sqrt() + eps)
    torch.testing.assert_close(p.detach(), expected, rtol=1e-12, atol=1e-14)
