"""ProGAN's layers, written from the paper (Karras et al. 2018, "Progressive Growing of GANs", sec. 3-4).

The maths lives in small pure functions that the layer classes call:

* ``pixel_norm`` (sec. 4.2): ``b_xy = a_xy / sqrt(1/C * sum_j (a_xy^j)^2 + eps)``, eps = 1e-8: the feature
  vector at every pixel is scaled to unit second moment over its C channels. The generator applies it
  after every 3x3 convolution (and to the latent vector, which puts it on the sphere of radius sqrt(dim)).
* ``he_constant`` and equalized learning rate (sec. 4.1): weights are stored ``~ N(0, 1)`` and multiplied
  at run time by He's constant ``c = gain / sqrt(fan_in)`` (``gain = sqrt(2)`` before a leaky ReLU, 1 before
  a linear output), so every weight sees the same dynamic range and Adam's step, which is invariant to the
  scale of a parameter, has the same relative effect in every layer. Biases start at 0 and are not scaled.
* ``minibatch_stddev`` (sec. 3): the standard deviation of every feature at every pixel over a group of
  samples, averaged over features and pixels into one number per group, appended to each sample of the
  group as one constant feature map. Training batches must be multiples of the group size (the discriminator
  says so to ``ProgressiveGrowing``, which refuses a schedule whose batches are not); a batch the group does
  not divide (a short last batch, a small evaluation batch) uses a smaller group, said once in the log.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

__all__ = [
    "LRELU_SLOPE",
    "Activation",
    "EqualizedConv2d",
    "EqualizedLinear",
    "MinibatchStdDev",
    "PixelNorm",
    "group_size_for",
    "he_constant",
    "minibatch_stddev",
    "pixel_norm",
]

Activation = Literal["linear", "lrelu"]
_ACTIVATIONS = ("linear", "lrelu")
LRELU_SLOPE = 0.2
PIXEL_NORM_EPS = 1e-8
MBSTD_EPS = 1e-8


# -- pure functions ------------------------------------------------------------------------------
def pixel_norm(x: Tensor, eps: float = PIXEL_NORM_EPS) -> Tensor:
    """``x / sqrt(mean_j x_j^2 + eps)`` over the channel dimension 1: [N, C, ...] -> [N, C, ...]."""
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)


def he_constant(fan_in: int, gain: float = math.sqrt(2.0)) -> float:
    """He's initializer constant ``gain / sqrt(fan_in)``: the run-time weight scale of equalized learning rate."""
    if fan_in < 1:
        raise ValueError(f"fan_in must be >= 1, got {fan_in}")
    return gain / math.sqrt(fan_in)


def group_size_for(n: int, group_size: int) -> int:
    """The group size used on a batch of ``n``: the largest divisor of ``n`` that is <= ``group_size``.

    ``group_size`` 0 means the whole batch (the paper's formulation). A batch whose size the requested group
    does not divide (a last, short batch) gets the next smaller group that does, rather than an error.
    """
    if group_size < 0:
        raise ValueError(f"group_size must be >= 0 (0 = the whole batch), got {group_size}")
    if n < 1:
        raise ValueError(f"minibatch standard deviation needs at least one sample, got a batch of {n}")
    g = n if group_size == 0 else min(group_size, n)
    while n % g:
        g -= 1
    return g


def minibatch_stddev(x: Tensor, group_size: int = 4, eps: float = MBSTD_EPS) -> Tensor:
    """x [N, C, H, W] -> [N, C + 1, H, W]: appends each sample's group statistic as a constant feature map.

    With the batch split into consecutive groups of ``G = group_size_for(N, group_size)`` samples (sample
    ``n`` in group ``n // G``), the statistic of a group is
    ``s = mean_{c, h, w} sqrt(var_g(x[g, c, h, w]) + eps)``, the variance over the G samples of the group
    taken with divisor G (the population variance).
    """
    n, c, h, w = x.shape
    g = group_size_for(n, group_size)
    y = x.reshape(n // g, g, c, h, w)  # [M, G, C, H, W], M groups
    if y.dtype in (torch.float16, torch.bfloat16):
        y = y.float()  # the statistic in float32 at least
    std = (y.var(dim=1, unbiased=False) + eps).sqrt()  # [M, C, H, W]
    s = std.mean(dim=(1, 2, 3)).to(x.dtype)  # [M]
    feature = s.repeat_interleave(g).view(n, 1, 1, 1).expand(n, 1, h, w)  # [N, 1, H, W]
    return torch.cat([x, feature], dim=1)


# -- layers --------------------------------------------------------------------------------------
class PixelNorm(nn.Module):
    """Pixelwise feature vector normalization: ``x / sqrt(mean over channels of x^2 + 1e-8)``."""

    def forward(self, x: Tensor) -> Tensor:  # [N, C, ...] -> [N, C, ...]
        return pixel_norm(x)


class MinibatchStdDev(nn.Module):
    """Appends the minibatch standard deviation feature map: [N, C, H, W] -> [N, C + 1, H, W]."""

    def __init__(self, *, group_size: int = 4) -> None:
        """
        Args:
            group_size: samples per group (4 in the paper's code, 0 = the whole batch as in sec. 3); a batch
                it does not divide uses the largest divisor of the batch size below it (logged once).
        """
        super().__init__()
        group_size_for(1, group_size)  # validates
        self.group_size = int(group_size)
        self._told_smaller_group = False

    def batch_size_problem(self, batch_size: int) -> str | None:
        """None when groups of ``group_size`` divide a batch of ``batch_size``, else why they do not."""
        if self.group_size == 0 or batch_size % self.group_size == 0:
            return None
        return (f"its minibatch standard deviation groups of {self.group_size} do not divide a batch of "
                f"{batch_size} (they would shrink to {group_size_for(batch_size, self.group_size)}); use a "
                f"multiple of {self.group_size} or an mbstd_group that divides the batch")

    def forward(self, x: Tensor) -> Tensor:
        if not self._told_smaller_group and self.batch_size_problem(x.shape[0]) is not None:
            self._told_smaller_group = True
            rank_zero_info(f"MinibatchStdDev: a batch of {x.shape[0]} uses groups of "
                           f"{group_size_for(x.shape[0], self.group_size)} instead of {self.group_size} (said once)")
        return minibatch_stddev(x, self.group_size)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"


def _act(x: Tensor, activation: Activation) -> Tensor:
    return F.leaky_relu(x, LRELU_SLOPE) if activation == "lrelu" else x


def _check_activation(activation: str) -> None:
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")


class EqualizedConv2d(nn.Module):
    """A "same" k x k convolution with equalized learning rate: ``act(conv(x, w * c) + b)``, ``c = gain / sqrt(I k^2)``.

    The weight is stored ~ N(0, 1) and scaled by He's constant ``c`` at every call (``equalized=True``), or
    initialized ~ N(0, c^2) and used as is (``equalized=False``, the ablation of sec. 4.1).
    """

    def __init__(self, *, in_channels: int, out_channels: int, kernel_size: int, gain: float = math.sqrt(2.0),
                 activation: Activation = "lrelu", equalized: bool = True) -> None:
        """
        Args:
            in_channels: input channels I.
            out_channels: output channels O.
            kernel_size: k (odd), padded to keep the size.
            gain: numerator of He's constant: sqrt(2) before a leaky ReLU, 1 before a linear output.
            activation: "lrelu" (slope 0.2) or "linear".
            equalized: scale at run time (equalized learning rate) instead of at initialization.
        """
        super().__init__()
        _check_activation(activation)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1, got {kernel_size}")
        self.in_channels, self.out_channels, self.kernel_size = int(in_channels), int(out_channels), int(kernel_size)
        self.activation, self.equalized = activation, bool(equalized)
        c = he_constant(in_channels * kernel_size ** 2, gain)
        self.scale = c if equalized else 1.0
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size)
                                   * (1.0 if equalized else c))  # [O, I, k, k]
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: Tensor) -> Tensor:  # [N, I, H, W] -> [N, O, H, W]
        w = self.weight * self.scale if self.scale != 1.0 else self.weight
        return _act(F.conv2d(x, w.to(x.dtype), self.bias.to(x.dtype), padding=self.kernel_size // 2),
                    self.activation)

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, kernel_size={self.kernel_size}, "
                f"activation={self.activation!r}, scale={self.scale:.4g}")


class EqualizedLinear(nn.Module):
    """A fully connected layer with equalized learning rate: ``act(x @ (w * c)^T + b)``, ``c = gain / sqrt(I)``."""

    def __init__(self, *, in_features: int, out_features: int, gain: float = math.sqrt(2.0),
                 activation: Activation = "lrelu", bias: bool = True, equalized: bool = True) -> None:
        """
        Args:
            in_features: input size I.
            out_features: output size O.
            gain: numerator of He's constant: sqrt(2) before a leaky ReLU, 1 before a linear output.
            activation: "lrelu" (slope 0.2) or "linear".
            bias: add a learned bias (initialized to 0).
            equalized: scale at run time (equalized learning rate) instead of at initialization.
        """
        super().__init__()
        _check_activation(activation)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.activation, self.equalized = activation, bool(equalized)
        c = he_constant(in_features, gain)
        self.scale = c if equalized else 1.0
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * (1.0 if equalized else c))  # [O, I]
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:  # [N, I] -> [N, O]
        w = self.weight * self.scale if self.scale != 1.0 else self.weight
        b = None if self.bias is None else self.bias.to(x.dtype)
        return _act(F.linear(x, w.to(x.dtype), b), self.activation)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"activation={self.activation!r}, bias={self.bias is not None}, scale={self.scale:.4g}")
