"""StyleGAN2's layers, written from the papers (Karras et al. 2019, 2020, 2020 "limited data").

The maths lives in small pure functions that the layer classes call:

* ``bias_act``: ``act(x + b) * gain``, clamped to ``[-clamp, clamp]``; leaky ReLU (slope 0.2) has gain
  sqrt(2) so that unit-variance inputs keep (about) unit second moment.
* ``conv2d_resample``: a "same" k x k correlation, optionally with a factor-2 upsampling before it
  (zero insertion + the FIR low-pass, computed as a stride-2 transposed conv followed by the filter) or a
  factor-2 downsampling after it (the filter followed by a stride-2 conv), the paper's anti-aliased
  resampling. On an unbounded (zero-extended) grid ``conv2d_resample(x, w, up=2) ==
  conv2d(upsample2d(x, f), w)`` and ``conv2d_resample(x, w, down=2) == downsample2d(conv2d(x, w), f)``;
  only the borders differ, by where the zero padding enters. The filtering is ``lightning_gan.ops``'
  ``upfirdn2d``, whose derivatives (also second ones, for R1 and path length) are again upfirdn2d calls.
* ``modulated_conv2d``: styles ``s`` [N, I] scale the weight's input channels, ``w'_oik = s_i w_oik``,
  and demodulation divides each output channel by ``sqrt(sum_{i,k} w'_oik^2 + 1e-8)`` with ``w`` the stored
  (unit-variance) weight: the equalized-lr gain 1/sqrt(fan-in) cancels in the quotient and does not scale the
  epsilon (``ModulatedConv2d`` carries the gain on the styles and passes ``eps * gain^2``). Two equal
  evaluations: ``fused`` materializes the per-sample weights [N, O, I, k, k] and runs one grouped
  convolution; ``plain`` scales the input activations by ``s``, convolves with the shared weight and
  scales the outputs by the demodulation coefficients ``d = rsqrt(s^2 @ sum_k(w^2)^T + eps)``, which
  never builds per-sample weights (cheaper on CPU, see docs/theory.md#modulation-and-demodulation).
* ``ar1_noise``: spatially correlated noise, a separable AR(1) process with stationary unit variance.
* ``minibatch_stddev``: the minibatch standard deviation feature of the discriminator.

Equalized learning rate (Karras et al. 2018): weights are stored ~ N(0, 1) / lr_mul and multiplied at
run time by ``lr_mul / sqrt(fan_in)``; biases are stored as ``bias_init / lr_mul`` and multiplied by
``lr_mul``. Feature maps may be channels_last (faster convolutions on CPU); every op here keeps the layout.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_gan.ops import binomial_filter, conv2d, conv_transpose2d, downsample2d, upfirdn2d, upsample2d

__all__ = [
    "DEMOD_EPS",
    "LRELU_GAIN",
    "LRELU_SLOPE",
    "Activation",
    "EqualConv2d",
    "EqualLinear",
    "FusedMode",
    "MinibatchStdDev",
    "ModulatedConv2d",
    "NoiseInjection",
    "NoiseMode",
    "NoiseStrength",
    "ToRGB",
    "ar1_matrix",
    "ar1_noise",
    "bias_act",
    "conv2d_resample",
    "demodulation_coefficients",
    "minibatch_stddev",
    "modulated_conv2d",
    "normalize_2nd_moment",
    "resample_filter",
]

Activation = Literal["linear", "lrelu"]
NoiseMode = Literal["random", "const", "none"]
FusedMode = Literal["auto", "fused", "plain"]
NoiseStrength = Literal["layer", "channel"]
_ACTIVATIONS = ("linear", "lrelu")
NOISE_MODES = ("random", "const", "none")
FUSED_MODES = ("auto", "fused", "plain")
NOISE_STRENGTHS = ("layer", "channel")
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
DEMOD_EPS = 1e-8


# -- pure functions ------------------------------------------------------------------------------
def resample_filter() -> Tensor:
    """The anti-aliasing low-pass of the paper: binomial ``[1, 3, 3, 1] / 8``, 1-D (applied along both axes)."""
    return binomial_filter((1, 3, 3, 1))


def normalize_2nd_moment(x: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """``x / sqrt(mean(x^2 over dim) + eps)``: every vector gets unit second moment."""
    return x * (x.square().mean(dim, keepdim=True) + eps).rsqrt()


def _activation_gain(activation: str) -> float:
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
    return LRELU_GAIN if activation == "lrelu" else 1.0


def bias_act(x: Tensor, b: Tensor | None = None, *, activation: Activation = "linear", gain: float = 1.0,
             clamp: float | None = None) -> Tensor:
    """``act(x + b) * gain`` clamped to ``[-clamp, clamp]``; ``b`` [C] broadcasts over dim 1 of ``x``.

    ``gain`` is the total output gain (include sqrt(2) for lrelu yourself). Because leaky ReLU is positively
    homogeneous, ``lrelu(a) * g == lrelu(a * g)`` for g > 0: the gain is applied together with the bias.
    """
    fresh = False  # whether x is a tensor made here (so the activation may work in place)
    if b is not None:
        b = b.to(x.dtype).view(1, -1, *([1] * (x.dim() - 2)))
        x = torch.add(b * gain, x, alpha=gain) if gain != 1 else x + b
        fresh = True
    elif gain != 1:
        x = x * gain
        fresh = True
    if activation == "lrelu":
        x = F.leaky_relu_(x, LRELU_SLOPE) if fresh else F.leaky_relu(x, LRELU_SLOPE)
    elif activation != "linear":
        raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def _transpose_weight(weight: Tensor, groups: int) -> Tensor:
    """[O, I/g, k, k] correlation weight -> [I, O/g, k, k] flipped, for ``conv_transpose2d``.

    The flip of a transposed view, in the weight's own memory format.
    """
    o, ig, kh, kw = weight.shape
    if groups == 1:
        w = weight.transpose(0, 1)
    else:
        w = weight.reshape(groups, o // groups, ig, kh, kw).transpose(1, 2).reshape(groups * ig, o // groups, kh, kw)
    fmt = torch.channels_last if _is_channels_last(weight) else torch.contiguous_format
    return w.flip([2, 3]).contiguous(memory_format=fmt)


def conv2d_resample(x: Tensor, weight: Tensor, *, f: Tensor | None = None, up: int = 1, down: int = 1,
                    groups: int = 1, bias: Tensor | None = None) -> Tensor:
    """"Same"-size correlation with ``weight`` [O, I/groups, k, k] (k odd), with anti-aliased resampling.

    ``up=2``: zero insertion + low-pass ``f`` (gain 4) before the convolution, computed as a stride-2
    transposed convolution followed by the filter. ``down=2``: the filter then a stride-2 convolution.
    ``f`` is a normalized even-length 1-D FIR filter (``resample_filter()``); ``x``: [N, I, H, W] ->
    [N, O, H * up / down, W * up / down]. ``bias`` [O] is added last.
    """
    k = weight.shape[-1]
    if weight.shape[-2] != k or k % 2 == 0:
        raise ValueError(f"conv2d_resample needs a square odd kernel, got {tuple(weight.shape[-2:])}")
    p = k // 2
    if up not in (1, 2) or down not in (1, 2) or (up == 2 and down == 2):
        raise ValueError(f"conv2d_resample supports up=2 or down=2 (or neither), got up={up}, down={down}")
    if up == 1 and down == 1:
        return conv2d(x, weight, bias, padding=p, groups=groups)
    if f is None:
        raise ValueError("resampling needs the FIR filter f")
    fw = f.shape[-1]
    if up == 2:
        if k == 1 and groups == 1:  # a 1x1 conv commutes with the filter: run it where it is cheaper
            if weight.shape[0] <= weight.shape[1]:
                x = upsample2d(conv2d(x, weight), f)
            else:
                x = conv2d(upsample2d(x, f), weight)
        else:
            # conv_transpose2d = zero insertion (length 2H-1) + "same" conv, extended by p on both sides
            x = conv_transpose2d(x, _transpose_weight(weight, groups), stride=2, groups=groups)
            pad0, pad1 = (fw + 1) // 2 - p, fw // 2 - p
            x = upfirdn2d(x, f, padding=[pad0, pad1, pad0, pad1], gain=4.0)
        return x if bias is None else x + bias.to(x.dtype).view(1, -1, 1, 1)
    # down == 2
    if k == 1:
        return conv2d(downsample2d(x, f), weight, bias, groups=groups)
    pad0, pad1 = (fw - 1) // 2 + p, (fw - 2) // 2 + p
    x = upfirdn2d(x, f, padding=[pad0, pad1, pad0, pad1])
    return conv2d(x, weight, bias, stride=2, groups=groups)


def demodulation_coefficients(weight: Tensor, styles: Tensor, eps: float = DEMOD_EPS) -> Tensor:
    """``d_no = 1 / sqrt(sum_{i,k} (s_ni w_oik)^2 + eps)`` = ``rsqrt(s^2 @ sum_k(w^2)^T + eps)``, [N, O]."""
    wsq = weight.square().sum([2, 3])  # [O, I]
    return (styles.square() @ wsq.t() + eps).rsqrt()


def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, *, demodulate: bool = True, up: int = 1,
                     f: Tensor | None = None, fused: bool = False, eps: float = DEMOD_EPS) -> Tensor:
    """Modulated (and demodulated) convolution of ``x`` [N, I, H, W] with ``weight`` [O, I, k, k].

    ``w'_noik = s_ni * w_oik``; with ``demodulate`` each output channel is divided by
    ``sqrt(sum_{i,k} w'_noik^2 + eps)``. ``fused`` runs one grouped convolution with per-sample weights,
    otherwise the plain path scales activations instead; both give the same result.
    """
    y, scale = _modulated_conv2d_unscaled(x, weight, styles, demodulate=demodulate, up=up, f=f, fused=fused,
                                          eps=eps)
    return y if scale is None else y * scale.to(y.dtype)[:, :, None, None]


def _modulated_conv2d_unscaled(x: Tensor, weight: Tensor, styles: Tensor, *, demodulate: bool, up: int,
                               f: Tensor | None, fused: bool, eps: float = DEMOD_EPS) -> tuple[Tensor, Tensor | None]:
    """``(y, d)`` with ``modulated_conv2d(...) == y * d[:, :, None, None]``; ``d`` is None when already applied.

    The plain path leaves the per-(sample, channel) demodulation to the caller, which folds it into its
    bias/noise/activation pass (no extra pass over the output).
    """
    n, i = styles.shape
    o, _, kh, kw = weight.shape
    if fused:
        w = weight.unsqueeze(0) * styles.to(weight.dtype)[:, None, :, None, None]  # [N, O, I, k, k]
        if demodulate:
            w = w * (w.square().sum([2, 3, 4]) + eps).rsqrt()[:, :, None, None, None]
        w = w.to(x.dtype)
        if kh == 1 and kw == 1 and up == 1:  # a batched matmul, in whichever layout x is stored
            if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
                y = torch.bmm(x.permute(0, 2, 3, 1).reshape(n, -1, i), w.reshape(n, o, i).transpose(1, 2))
                return y.view(n, x.shape[2], x.shape[3], o).permute(0, 3, 1, 2), None
            y = torch.bmm(w.reshape(n, o, i), x.reshape(n, i, -1))
            return y.view(n, o, x.shape[2], x.shape[3]), None
        y = conv2d_resample(x.reshape(1, n * i, *x.shape[2:]), w.reshape(n * o, i, kh, kw), f=f, up=up, groups=n)
        return y.reshape(n, o, *y.shape[2:]), None
    y = conv2d_resample(x * styles.to(x.dtype)[:, :, None, None], weight.to(x.dtype), f=f, up=up)
    return y, (demodulation_coefficients(weight, styles, eps) if demodulate else None)


def ar1_matrix(length: int, phi: float, *, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> Tensor:
    """Lower-triangular ``L`` [length, length] with ``x = L e`` the stationary AR(1) of white noise ``e``.

    ``x_0 = e_0``, ``x_t = phi x_{t-1} + sqrt(1 - phi^2) e_t``: ``L[t, s] = phi^(t-s) c_s`` for s <= t
    with ``c_0 = 1``, ``c_s = sqrt(1 - phi^2)``; every ``x_t`` has unit variance, ``corr(x_t, x_{t-1}) = phi``.
    """
    if not -1.0 < phi < 1.0:
        raise ValueError(f"the AR(1) coefficient phi must lie in (-1, 1), got {phi}")
    t = torch.arange(length, dtype=torch.float64)
    lag = t[:, None] - t[None, :]
    L = torch.where(lag >= 0, torch.tensor(float(phi), dtype=torch.float64) ** lag.clamp(min=0),
                    torch.zeros((), dtype=torch.float64))
    L[:, 1:] *= math.sqrt(1.0 - phi * phi)
    return L.to(dtype=dtype, device=device)


def ar1_noise(n: int, height: int, width: int, phi: float = 0.0, *, generator: torch.Generator | None = None,
              dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """Noise maps [n, 1, height, width] with unit variance; ``phi != 0``: separable AR(1) along rows and columns.

    ``X = L_h E L_w^T`` for white ``E``: each row and each column is a stationary AR(1) with coefficient
    ``phi``; ``phi = 0`` is StyleGAN's i.i.d. per-pixel noise.
    """
    e = torch.randn(n, 1, height, width, generator=generator, dtype=dtype, device=device)
    if phi == 0:
        return e
    lh = ar1_matrix(height, phi, dtype=dtype, device=e.device)
    lw = ar1_matrix(width, phi, dtype=dtype, device=e.device)
    return lh @ e @ lw.t()


def minibatch_stddev(x: Tensor, group_size: int = 4, num_channels: int = 1) -> Tensor:
    """``x`` [N, C, H, W] with ``num_channels`` feature maps appended: the standard deviation over groups.

    Samples ``n`` and ``n + N/G`` (and so on) form a group of size G (the largest divisor of N that is at
    most ``group_size``). Per group and per channel slice ``C/num_channels``: the standard deviation of
    each feature over the group, averaged over the slice's features and pixels, is broadcast to [H, W].
    """
    n, c, h, w = x.shape
    g = min(group_size, n)
    while n % g:
        g -= 1
    f = num_channels
    if c % f:
        raise ValueError(f"minibatch_stddev: {c} channels do not split into {f} groups")
    y = x.reshape(g, n // g, f, c // f, h, w)
    if y.dtype in (torch.float16, torch.bfloat16):
        y = y.float()
    y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt()  # [N/G, F, C/F, H, W]
    y = y.mean([2, 3, 4]).to(x.dtype)  # [N/G, F]
    y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)  # [N, F, H, W]
    return torch.cat([x, y.to(memory_format=torch.channels_last) if _is_channels_last(x) else y], dim=1)


def _is_channels_last(x: Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


# -- layers --------------------------------------------------------------------------------------
class EqualLinear(nn.Module):
    """Fully connected layer with equalized learning rate: ``act(x W^T * lr_mul/sqrt(I) + b * lr_mul) * gain``."""

    def __init__(self, *, in_features: int, out_features: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: Activation = "linear") -> None:
        """
        Args:
            in_features: input size I.
            out_features: output size O.
            bias: learn a bias.
            bias_init: initial value of the (effective) bias; 1 for style affines.
            lr_mul: learning-rate multiplier (0.01 in the mapping network).
            activation: "linear" or "lrelu" (leaky ReLU 0.2 with gain sqrt(2)).
        """
        super().__init__()
        _activation_gain(activation)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.lr_mul, self.activation, self.bias_init = float(lr_mul), activation, float(bias_init)
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)  # [O, I]
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init) / lr_mul)) if bias else None
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.bias_gain = lr_mul

    def forward(self, x: Tensor) -> Tensor:  # [N, I] -> [N, O]
        # The gain (times sqrt(2) for lrelu: lrelu(a) g = lrelu(a g)) multiplies whichever operand is smaller:
        # (x g) W^T = x (W g)^T, and a batch of a few latents is far smaller than a 512 x 512 weight.
        gain = self.weight_gain * (LRELU_GAIN if self.activation == "lrelu" else 1.0)
        if x.dtype == self.weight.dtype and x.numel() < self.weight.numel():
            x, w = x * gain, self.weight
        else:
            w = (self.weight * gain).to(x.dtype)
        bias_gain = self.bias_gain * (LRELU_GAIN if self.activation == "lrelu" else 1.0)
        b = None if self.bias is None else (self.bias * bias_gain).to(x.dtype)
        if self.activation == "linear":
            if b is None:
                return F.linear(x, w)
            return torch.addmm(b.unsqueeze(0), x, w.t()) if x.dim() == 2 else F.linear(x, w, b)
        return F.leaky_relu_(F.linear(x, w, b), LRELU_SLOPE)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"lr_mul={self.lr_mul}, activation={self.activation!r}")


class EqualConv2d(nn.Module):
    """Convolution with equalized learning rate, optional anti-aliased up/down-sampling by 2, bias and activation.

    ``clamp(act(conv2d_resample(x, W / sqrt(I k^2)) + b) * gain, +-conv_clamp)`` with ``gain`` the activation's
    (sqrt(2) for lrelu) times ``gain``.
    """

    def __init__(self, *, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: Activation = "linear", up: int = 1, down: int = 1, gain: float = 1.0,
                 conv_clamp: float | None = None) -> None:
        """
        Args:
            in_channels: input channels I.
            out_channels: output channels O.
            kernel_size: k (odd).
            bias: learn a bias (initialized to 0).
            activation: "linear" or "lrelu".
            up: 2 upsamples before the convolution (transposed conv + FIR filter).
            down: 2 downsamples after it (FIR filter + stride-2 conv).
            gain: extra output gain (e.g. sqrt(1/2) on both branches of a residual block).
            conv_clamp: clamp the output to [-conv_clamp, conv_clamp]; None = no clamp.
        """
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = int(in_channels), int(out_channels), int(kernel_size)
        self.activation, self.up, self.down, self.gain, self.conv_clamp = activation, up, down, float(gain), conv_clamp
        self.act_gain = _activation_gain(activation) * self.gain
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.register_buffer("resample_filter", resample_filter() if up > 1 or down > 1 else None, persistent=False)

    def forward(self, x: Tensor) -> Tensor:  # [N, I, H, W] -> [N, O, H * up / down, W * up / down]
        # The output gain is folded into the weight and bias (lrelu(a) g = lrelu(a g) for g > 0): the bias
        # is added by the convolution itself and the activation runs in place, one pass over the output.
        w = (self.weight * (self.weight_gain * self.act_gain)).to(x.dtype)
        b = None if self.bias is None else (self.bias * self.act_gain).to(x.dtype)
        x = conv2d_resample(x, w, f=self.resample_filter, up=self.up, down=self.down, bias=b)
        if self.activation == "lrelu":
            x = F.leaky_relu_(x, LRELU_SLOPE)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, kernel_size={self.kernel_size}, "
                f"bias={self.bias is not None}, activation={self.activation!r}, up={self.up}, down={self.down}, "
                f"gain={self.gain:.4g}, conv_clamp={self.conv_clamp}")


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution: styles ``s = affine(w)`` (bias init 1) scale the weight's input channels.

    ``forward(x, w)`` = ``modulated_conv2d(x, W, affine(w), up=up)`` with demodulation (the stored weight W,
    whose gain 1/sqrt(I k^2) cancels) and ``modulated_conv2d(x, W / sqrt(I k^2), affine(w), demodulate=False)``
    without; ``fused`` picks
    the evaluation: "fused" (grouped conv with per-sample weights), "plain" (scale activations) or "auto"
    (fused only for 1x1 convs whose per-sample weights [O, I] are smaller than a map, e.g. ToRGB, where it is
    one batched matmul; plain otherwise, which is faster on CPU and keeps channels_last).
    """

    def __init__(self, *, in_channels: int, out_channels: int, kernel_size: int, w_dim: int,
                 demodulate: bool = True, up: int = 1, fused: FusedMode = "auto") -> None:
        """
        Args:
            in_channels: input channels I.
            out_channels: output channels O.
            kernel_size: k (odd).
            w_dim: size of the intermediate latent w that the styles are computed from.
            demodulate: divide each output channel by the norm of its modulated weights.
            up: 2 upsamples by 2 before the convolution (transposed conv + FIR filter).
            fused: "auto", "fused" or "plain" evaluation (equal results).
        """
        super().__init__()
        if fused not in FUSED_MODES:
            raise ValueError(f"fused must be one of {FUSED_MODES}, got {fused!r}")
        self.in_channels, self.out_channels, self.kernel_size = int(in_channels), int(out_channels), int(kernel_size)
        self.w_dim, self.demodulate, self.up, self.fused = int(w_dim), bool(demodulate), int(up), fused
        self.affine = EqualLinear(in_features=w_dim, out_features=in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))  # [O, I, k, k]
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.register_buffer("resample_filter", resample_filter() if up > 1 else None, persistent=False)

    def use_fused(self, x: Tensor, fused: FusedMode | None = None) -> bool:
        """Whether ``forward`` on ``x`` takes the fused path."""
        mode = fused or self.fused
        if mode == "auto":  # per-sample weights only where they are a small batched matmul (ToRGB)
            return self.kernel_size == 1 and self.up == 1 and self.out_channels <= x.shape[2] * x.shape[3]
        return mode == "fused"

    def forward_unscaled(self, x: Tensor, w: Tensor, fused: FusedMode | None = None) -> tuple[Tensor, Tensor | None]:
        """``(y, d)``: the output is ``y * d[:, :, None, None]`` (``d`` [N, O]; None when already applied)."""
        styles = self.affine(w) * self.weight_gain  # [N, I]; the weight gain rides on the styles
        # sum (g s w)^2 + g^2 eps = g^2 (sum (s w)^2 + eps): the epsilon of the formula on the stored weight's scale
        return _modulated_conv2d_unscaled(x, self.weight, styles, demodulate=self.demodulate, up=self.up,
                                          f=self.resample_filter, fused=self.use_fused(x, fused),
                                          eps=DEMOD_EPS * self.weight_gain ** 2)

    def forward(self, x: Tensor, w: Tensor, fused: FusedMode | None = None) -> Tensor:
        y, d = self.forward_unscaled(x, w, fused)
        return y if d is None else y * d.to(y.dtype)[:, :, None, None]

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, kernel_size={self.kernel_size}, "
                f"w_dim={self.w_dim}, demodulate={self.demodulate}, up={self.up}, fused={self.fused!r}")


class NoiseInjection(nn.Module):
    """Per-pixel noise maps [N, 1, R, R], added to every channel times a learned strength (init 0).

    The strength is one scalar per layer (StyleGAN2, ``strength="layer"``) or one per channel
    (StyleGAN1's wording, ``strength="channel"``). A state dict whose strength has the other shape (e.g. a
    checkpoint written before the scalar became the default) is loaded as it is: the layer adopts the saved
    shape, so old checkpoints keep their per-channel strengths and behave as they were trained.

    Modes: "random" draws fresh maps from torch's global RNG; "const" uses a fixed map drawn at
    construction (a buffer, saved with the weights); "none" adds nothing. ``phi != 0`` makes the maps
    spatially correlated (separable AR(1), see ``ar1_noise``).
    """

    def __init__(self, *, channels: int, resolution: int, phi: float = 0.0, strength: NoiseStrength = "layer") -> None:
        """
        Args:
            channels: channels C of the feature map the noise is added to.
            resolution: side R of the noise maps.
            phi: AR(1) coefficient of the spatial correlation; 0 = i.i.d. per-pixel noise.
            strength: "layer" (one scalar, StyleGAN2) or "channel" (one per channel, [C]).
        """
        super().__init__()
        if strength not in NOISE_STRENGTHS:
            raise ValueError(f"noise strength must be one of {NOISE_STRENGTHS}, got {strength!r}")
        self.channels, self.resolution, self.phi = int(channels), int(resolution), float(phi)
        self.strength = nn.Parameter(torch.zeros(channels) if strength == "channel" else torch.zeros(()))  # [C] or []
        self.register_buffer("noise_const", ar1_noise(1, resolution, resolution, self.phi))  # [1, 1, R, R]

    @property
    def strength_mode(self) -> NoiseStrength:
        """"layer" (a scalar strength) or "channel" (one per channel)."""
        return "channel" if self.strength.dim() == 1 else "layer"

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:  # noqa: ANN001 (torch's hook signature)
        saved = state_dict.get(prefix + "strength")
        if saved is not None and saved.dim() != self.strength.dim() and saved.numel() in (1, self.channels):
            # the other strength mode: adopt the saved shape (before any optimizer holds the parameter)
            self.strength = nn.Parameter(torch.zeros(saved.shape, dtype=self.strength.dtype,
                                                     device=self.strength.device),
                                         requires_grad=self.strength.requires_grad)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def noise(self, n: int, mode: NoiseMode, like: Tensor) -> Tensor | None:
        """The noise maps [n, 1, R, R] (or [1, 1, R, R] for "const") for ``mode``; None for "none"."""
        if mode == "random":
            return ar1_noise(n, self.resolution, self.resolution, self.phi, dtype=like.dtype, device=like.device)
        if mode == "const":
            return self.noise_const.to(like.dtype)
        if mode == "none":
            return None
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {mode!r}")

    def forward(self, x: Tensor, mode: NoiseMode = "random") -> Tensor:
        noise = self.noise(x.shape[0], mode, x)
        if noise is None:
            return x
        return torch.addcmul(x, noise, self.strength.to(x.dtype).view(1, -1, 1, 1))

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, resolution={self.resolution}, phi={self.phi}, "
                f"strength={self.strength_mode!r}")


class ToRGB(nn.Module):
    """Modulated 1x1 convolution to image channels, without demodulation, plus a bias; linear output."""

    def __init__(self, *, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None,
                 fused: FusedMode = "auto") -> None:
        """
        Args:
            in_channels: feature channels.
            out_channels: image channels.
            w_dim: size of w.
            conv_clamp: clamp the output to [-conv_clamp, conv_clamp]; None = no clamp.
            fused: evaluation of the modulated convolution ("auto" uses a batched matmul).
        """
        super().__init__()
        self.conv_clamp = conv_clamp
        self.conv = ModulatedConv2d(in_channels=in_channels, out_channels=out_channels, kernel_size=1, w_dim=w_dim,
                                    demodulate=False, fused=fused)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:  # [N, I, H, W], [N, w_dim] -> [N, O, H, W]
        y = self.conv(x, w)
        return bias_act(y, self.bias, clamp=self.conv_clamp)

    def extra_repr(self) -> str:
        return f"conv_clamp={self.conv_clamp}"


class MinibatchStdDev(nn.Module):
    """Appends ``num_channels`` minibatch standard deviation maps (see ``minibatch_stddev``)."""

    def __init__(self, *, group_size: int = 4, num_channels: int = 1) -> None:
        """
        Args:
            group_size: samples per group (the largest divisor of the batch not above it is used).
            num_channels: number of appended feature maps (the channels are split into this many slices).
        """
        super().__init__()
        if group_size < 1 or num_channels < 1:
            raise ValueError(f"group_size and num_channels must be >= 1, got {group_size}, {num_channels}")
        self.group_size, self.num_channels = int(group_size), int(num_channels)

    def forward(self, x: Tensor) -> Tensor:  # [N, C, H, W] -> [N, C + num_channels, H, W]
        return minibatch_stddev(x, self.group_size, self.num_channels)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"
