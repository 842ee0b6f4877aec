"""Upsample, pad, FIR-filter and downsample 2-D signals (``upfirdn2d``), in pure PyTorch.

Definition, per image channel and per axis (x = width, y = height; every step is done on both axes):

1. *up*: insert ``up - 1`` zeros after every sample: ``u[i * up] = x[i]``, length ``H * up``.
2. *pad*: add ``p0`` zeros before and ``p1`` after (a negative amount crops instead).
3. *FIR*: true convolution with the filter ``f`` times ``gain`` (``flip_filter=True``: correlation),
   keeping only the positions where the filter lies fully inside the padded signal:
   ``v[o] = gain * sum_k padded[o + k] * f[fh - 1 - k]``.
4. *down*: keep every ``down``-th sample starting with the first: ``y[o] = v[o * down]``.

Output height ``(H * up + py0 + py1 - fh) // down + 1`` (width likewise with x). A 1-D filter ``[k]``
is separable: it is applied along x and then along y with ``sqrt(gain)`` each, which equals the 2-D
filter ``outer(f, f)`` with ``gain``.

Implementation: the zero-inserted image is never materialized and outputs dropped by ``down`` are
never computed. Three paths give the same numbers (the tests check each against the definition):

- *depthwise convolution* with a 2-D kernel (a 2-D filter, or ``outer(f, f)`` for a short separable
  one): ``conv2d`` with ``stride=down`` without upsampling, ``conv_transpose2d`` with ``stride=up`` with
  it (the transposed convolution computes the polyphase sums). Symmetric padding goes into the
  convolution's ``padding`` argument, cropping is a view;
- *band matrices* (CPU, small images, separable filters): the whole 1-D up/pad/filter/down along an
  axis is a linear map ``y = x @ M`` with ``M[i, o] = g[i * up + p0 - o * down]`` (``g`` the taps in
  correlation order, zero outside them), so each axis is one GEMM, the fastest CPU primitive, even
  though most of ``M`` is zero;
- *two 1-D depthwise convolutions* (long separable filters: 2k instead of k^2 multiply-adds).

The choice depends on the sizes and the memory format only (``_separable_as_matmul``,
``_OUTER_MAX_TAPS``). The memory format of the input (e.g. channels_last) is kept (an NCHW input is
not converted: its depthwise transposed convolutions are slow on CPU, prefer channels_last models).
Everything is differentiable to any order (R1 and path-length penalties use ``create_graph=True``):
the derivative with respect to ``x`` is the adjoint ``upfirdn2d`` (``_UpFirDn2d``), so double backward
runs on these paths too (2-8x faster than the convolutions' generic double backward on CPU).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["downsample2d", "filter2d", "upfirdn2d", "upsample2d"]

# How a separable (1-D) filter runs, chosen per call from timings on 2 AVX2 cores (oneDNN; see
# benchmarks/upfirdn2d_speed.py): band-matrix GEMMs when the band matrices are small, otherwise one
# depthwise convolution with outer(f, f) for short filters (one pass over memory beats two 1-D
# passes), otherwise two 1-D depthwise convolutions (2k instead of k^2 multiply-adds per output).
# NCHW: oneDNN's depthwise (transposed) convolutions are slow; GEMMs win from 8x8 images up to
# 32x32 -> 64x64 upsampling, 64x64 -> 32x32 downsampling and 32x32 filtering; below 8x8 (input or
# output) the second pass's batch of tiny GEMMs costs more than a convolution.
_MATMUL_MAX_BAND_NCHW = 32 * 64  # len_in * len_out of each axis' band matrix
_MATMUL_MIN_SIZE_NCHW = 8
# channels_last: the depthwise kernels are fast; GEMMs still win for plain filtering (no resampling)
# up to 16x16.
_MATMUL_MAX_BAND_CHANNELS_LAST = 16 * 16
_OUTER_MAX_TAPS = 6


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    """(x, y) from an int or an (x, y) pair."""
    if isinstance(v, int):
        return v, v
    a, b = v
    return int(a), int(b)


def _padding(p: int | Sequence[int]) -> tuple[int, int, int, int]:
    """(x0, x1, y0, y1) from an int, (x, y) or (x0, x1, y0, y1)."""
    if isinstance(p, int):
        return p, p, p, p
    p = [int(v) for v in p]
    if len(p) == 2:
        return p[0], p[0], p[1], p[1]
    if len(p) != 4:
        raise ValueError(f"padding must be an int, (x, y) or (x0, x1, y0, y1), got {p}")
    return p[0], p[1], p[2], p[3]


def _crop(x: Tensor, x0: int, x1: int, y0: int, y1: int) -> Tensor:
    """Remove ``-v`` samples for every negative ``v`` (a view); positive values are ignored."""
    if min(x0, x1, y0, y1) >= 0:
        return x
    h, w = x.shape[-2:]
    return x[..., max(-y0, 0):h - max(-y1, 0), max(-x0, 0):w - max(-x1, 0)]


def _pad(x: Tensor, x0: int, x1: int, y0: int, y1: int) -> Tensor:
    """Zero-pad by the positive amounts and crop by the negative ones."""
    x = _crop(x, x0, x1, y0, y1)
    pads = [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)]
    if any(pads):
        x = F.pad(x, pads)  # keeps the memory format (also of a cropped view)
    return x


def _depthwise(w: Tensor, channels: int) -> Tensor:
    """[kh, kw] -> [channels, 1, kh, kw] (a stride-0 view; the convolution reads it as it is)."""
    return w[None, None].expand(channels, 1, *w.shape)


def _upfirdn2d_conv(x: Tensor, w: Tensor, upx: int, upy: int, downx: int, downy: int,
                    px0: int, px1: int, py0: int, py1: int) -> Tensor:
    """``upfirdn2d`` as one depthwise convolution with the kernel ``w`` [kh, kw] (gain included) in the
    order the primitive wants: correlation order (the filter flipped, for a true convolution) for
    ``conv2d`` when nothing is upsampled, convolution order for ``conv_transpose2d`` otherwise."""
    c = x.shape[1]
    kh, kw = w.shape
    if upx == 1 and upy == 1:
        # Trailing samples that no kept output reads are not padded (e.g. the adjoint of upsample2d
        # asks for (1, 2) where the strided convolution reads (1, 1)).
        n_y, n_x = x.shape[-2:]
        px1 = min(px1, ((n_x + px0 + px1 - kw) // downx) * downx + kw - n_x - px0)
        py1 = min(py1, ((n_y + py0 + py1 - kh) // downy) * downy + kh - n_y - py0)
        # Symmetric non-negative padding on an axis: the convolution's own zero padding.
        cx = px0 if px0 == px1 and px0 > 0 else 0
        cy = py0 if py0 == py1 and py0 > 0 else 0
        x = _pad(x, px0 - cx, px1 - cx, py0 - cy, py1 - cy)
        return F.conv2d(x, _depthwise(w, c), stride=(downy, downx), padding=(cy, cx), groups=c)
    # Transposed convolution, no padding: t[m] = sum_i x[i] w[m - i * up], length (H - 1) * up + k,
    # and the definition's output is t shifted: y[o] = t[o + k - 1 - p0] (zero outside t), i.e. t padded
    # by (p0 - k + 1) before and (up + p1 - k) after. Its ``padding`` crops both ends symmetrically.
    ax0, ax1 = px0 - kw + 1, upx + px1 - kw
    ay0, ay1 = py0 - kh + 1, upy + py1 - kh
    cx = max(0, min(-ax0, -ax1, kw - 1))
    cy = max(0, min(-ay0, -ay1, kh - 1))
    y = F.conv_transpose2d(x, _depthwise(w, c), stride=(upy, upx), padding=(cy, cx), groups=c)
    y = _pad(y, ax0 + cx, ax1 + cx, ay0 + cy, ay1 + cy)
    if downx > 1 or downy > 1:
        y = y[:, :, ::downy, ::downx]
    return y


@functools.lru_cache(maxsize=256)
def _band_index(n_in: int, up: int, down: int, p0: int, p1: int, k: int, device: torch.device) -> Tensor:
    """[n_in, n_out] tap index ``i * up + p0 - o * down`` into the correlation-order filter, or ``k``
    (pointing at an appended zero) where the tap falls outside the filter."""
    n_out = (n_in * up + p0 + p1 - k) // down + 1
    idx = torch.arange(n_in)[:, None] * up + p0 - torch.arange(n_out)[None, :] * down
    idx = torch.where((idx >= 0) & (idx < k), idx, k)
    return idx.to(device)


def _band_matrix(g: Tensor, n_in: int, up: int, down: int, p0: int, p1: int) -> Tensor:
    """``M`` [n_in, n_out] with ``y = x @ M`` = 1-D upfirdn of ``x`` with the correlation-order taps ``g``."""
    idx = _band_index(n_in, up, down, p0, p1, g.shape[0], g.device)
    return torch.cat([g, g.new_zeros(1)])[idx]


def _channels_last(x: Tensor) -> bool:
    """Channels innermost in memory (``x.permute(0, 2, 3, 1)`` is contiguous)."""
    return x.shape[1] > 1 and x.stride(1) == 1 and x.permute(0, 2, 3, 1).is_contiguous()


def _separable_as_matmul(x: Tensor, up: tuple[int, int], down: tuple[int, int], out_hw: tuple[int, int]) -> bool:
    """Whether a separable filter runs as band-matrix GEMMs rather than convolutions (CPU only)."""
    if x.device.type != "cpu":
        return False
    (h, w), (out_h, out_w) = x.shape[2:], out_hw
    band = max(h * out_h, w * out_w)  # elements of the larger band matrix
    if _channels_last(x):
        return up == down == (1, 1) and band <= _MATMUL_MAX_BAND_CHANNELS_LAST
    return band <= _MATMUL_MAX_BAND_NCHW and min(h, w, out_h, out_w) >= _MATMUL_MIN_SIZE_NCHW


def _upfirdn1d_matmul(x: Tensor, g: Tensor, axis: int, up: int, down: int, p0: int, p1: int) -> Tensor:
    """One separable pass along ``axis`` (3 = x, 2 = y) as a GEMM with the band matrix of the taps ``g``
    (correlation order)."""
    n_in = x.shape[axis]
    m = _band_matrix(g, n_in, up, down, p0, p1)  # [n_in, n_out]
    if not _channels_last(x):
        return x @ m if axis == 3 else m.t() @ x  # one GEMM over N*C*H rows / a batch of N*C GEMMs
    xl = x.permute(0, 2, 3, 1)  # [N, H, W, C], contiguous
    if axis == 3:
        y = m.t() @ xl  # a batch of N*H: [W', W] @ [W, C]
    else:
        n, h, w, c = xl.shape
        y = (m.t() @ xl.reshape(n, h, w * c)).reshape(n, m.shape[1], w, c)  # a batch of N: [H', H] @ [H, W*C]
    return y.permute(0, 3, 1, 2)


def _upfirdn1d_conv(x: Tensor, g: Tensor, axis: int, up: int, down: int, p0: int, p1: int) -> Tensor:
    """One separable pass along ``axis`` (3 = x, 2 = y) as a depthwise (transposed) convolution with the
    taps ``g`` (correlation order)."""
    if up > 1:
        g = g.flip([0])  # the transposed convolution wants convolution order
    if axis == 3:
        return _upfirdn2d_conv(x, g[None, :], up, 1, down, 1, p0, p1, 0, 0)
    return _upfirdn2d_conv(x, g[:, None], 1, up, 1, down, 0, 0, p0, p1)


def _upfirdn2d_dense(x: Tensor, f: Tensor | None, upx: int, upy: int, downx: int, downy: int,
                     px0: int, px1: int, py0: int, py1: int, flip_filter: bool, gain: float) -> Tensor:
    """The definition step by step (zero insertion, padding, full convolution, subsampling)."""
    n, c, h, w = x.shape
    if upx > 1 or upy > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(n, c, h * upy, w * upx)
    x = _pad(x, px0, px1, py0, py1)
    if f is not None:
        f = f.to(device=x.device, dtype=x.dtype)
        if f.ndim == 1:
            f = torch.outer(f, f)
        if not flip_filter:
            f = f.flip([0, 1])
        x = F.conv2d(x, _depthwise(f * gain, c), groups=c)
    elif gain != 1:
        x = x * gain
    if downx > 1 or downy > 1:
        x = x[:, :, ::downy, ::downx]
    return x


def upfirdn2d(x: Tensor, f: Tensor | None, up: int | Sequence[int] = 1, down: int | Sequence[int] = 1,
              padding: int | Sequence[int] = 0, flip_filter: bool = False, gain: float = 1.0) -> Tensor:
    """Upsample by zero insertion, pad, FIR-filter, downsample (see the module docstring for the definition).

    Args:
        x: images [N, C, H, W] (any memory format; channels_last is kept).
        f: filter, 2-D [fh, fw], 1-D [k] (separable: along x, then along y), or ``None`` (identity, 1x1).
            Cast to ``x``'s dtype and device.
        up: upsampling factor, int or (x, y).
        down: downsampling factor, int or (x, y).
        padding: int, (x, y) or (x0, x1, y0, y1), applied after upsampling; negative values crop.
        flip_filter: correlate with ``f`` instead of convolving (the same for symmetric filters).
        gain: multiplies the filter (a 1-D filter gets ``sqrt(gain)`` per axis).

    Returns:
        [N, C, (H * upy + py0 + py1 - fh) // downy + 1, (W * upx + px0 + px1 - fw) // downx + 1].
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects x of shape [N, C, H, W], got {tuple(x.shape)}")
    upx, upy = _pair(up)
    downx, downy = _pair(down)
    px0, px1, py0, py1 = _padding(padding)
    if min(upx, upy, downx, downy) < 1:
        raise ValueError(f"up and down must be >= 1, got up={up}, down={down}")
    fw, fh = _filter_size(f)
    h, w = x.shape[-2:]
    out_h = (h * upy + py0 + py1 - fh) // downy + 1
    out_w = (w * upx + px0 + px1 - fw) // downx + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"upfirdn2d: empty output ({out_h}x{out_w}) for input {h}x{w}, filter {fh}x{fw}, "
                         f"up={up}, down={down}, padding={padding}")
    if f is not None:
        if f.ndim not in (1, 2):
            raise ValueError(f"the filter must be 1-D (separable) or 2-D [fh, fw], got shape {tuple(f.shape)}")
        f = f.to(device=x.device, dtype=x.dtype)
    config = (upx, upy, downx, downy, px0, px1, py0, py1, bool(flip_filter), float(gain))
    if f is not None and not f.requires_grad and x.requires_grad and torch.is_grad_enabled():
        return _UpFirDn2d.apply(x, f, config)
    return _upfirdn2d(x, f, *config)


class _UpFirDn2d(torch.autograd.Function):
    """``upfirdn2d`` whose derivative is again ``upfirdn2d`` (its adjoint), to any order, so that
    backward and double backward (R1, path length) run on the fast forward paths instead of the
    convolutions' generic (and on CPU slow, worst for depthwise kernels) derivatives.

    Per axis, ``y[o] = sum_i x[i] g[i * up + p0 - o * down]``; the adjoint
    ``dx[i] = sum_o dy[o] g[i * up + p0 - o * down]`` is ``upfirdn2d(dy, f)`` with ``up`` and ``down``
    swapped, the filter flipped, padding ``(k - 1 - p0, k - 1 - p1 + L - out * down)`` where
    ``L = H * up + p0 + p1 - k + 1`` is the filtered length before subsampling, and the same gain.
    Used when ``x`` needs a gradient and the filter does not (a learned filter takes plain autograd).
    """

    @staticmethod
    def forward(ctx, x: Tensor, f: Tensor, config: tuple) -> Tensor:
        ctx.save_for_backward(f)
        ctx.config = config
        ctx.in_hw = tuple(x.shape[-2:])
        # The result may be a view (a crop, a permuted GEMM output) of a tensor made here; detached it is
        # an ordinary output that callers may modify in place.
        return _upfirdn2d(x, f, *config).detach()

    @staticmethod
    def backward(ctx, dy: Tensor) -> tuple[Tensor, None, None]:
        (f,) = ctx.saved_tensors
        upx, upy, downx, downy, px0, px1, py0, py1, flip_filter, gain = ctx.config
        h, w = ctx.in_hw
        fw, fh = _filter_size(f)
        out_h, out_w = dy.shape[-2:]
        len_w, len_h = w * upx + px0 + px1 - fw + 1, h * upy + py0 + py1 - fh + 1
        adjoint = (downx, downy, upx, upy,
                   fw - 1 - px0, fw - 1 - px1 + len_w - out_w * downx,
                   fh - 1 - py0, fh - 1 - py1 + len_h - out_h * downy,
                   not flip_filter, gain)
        return _UpFirDn2d.apply(dy, f, adjoint), None, None


def _upfirdn2d(x: Tensor, f: Tensor | None, upx: int, upy: int, downx: int, downy: int,
               px0: int, px1: int, py0: int, py1: int, flip_filter: bool, gain: float) -> Tensor:
    """``upfirdn2d`` after argument checks: picks the implementation (see the module docstring)."""
    if f is None:
        if upx > 1 or upy > 1:
            return _upfirdn2d_dense(x, None, upx, upy, downx, downy, px0, px1, py0, py1, flip_filter, gain)
        x = _pad(x, px0, px1, py0, py1)
        if downx > 1 or downy > 1:
            x = x[:, :, ::downy, ::downx]
        return x * gain if gain != 1 else x
    if f.ndim == 1:
        h, w = x.shape[-2:]
        k = f.shape[0]
        out_hw = ((h * upy + py0 + py1 - k) // downy + 1, (w * upx + px0 + px1 - k) // downx + 1)
        as_matmul = _separable_as_matmul(x, (upx, upy), (downx, downy), out_hw)
        if as_matmul or k > _OUTER_MAX_TAPS:  # two 1-D passes, x then y
            gx = gy = math.sqrt(abs(gain))
            gx = math.copysign(gx, gain)
            g = f if flip_filter else f.flip([0])  # correlation order
            upfirdn1d = _upfirdn1d_matmul if as_matmul else _upfirdn1d_conv
            x = upfirdn1d(x, g * gx if gx != 1 else g, 3, upx, downx, px0, px1)
            return upfirdn1d(x, g * gy if gy != 1 else g, 2, upy, downy, py0, py1)
        f = torch.outer(f, f)  # [fh, fw]
    # conv2d correlates, so a true convolution needs the flipped filter; conv_transpose2d convolves.
    if flip_filter != (upx == 1 and upy == 1):
        f = f.flip([0, 1])
    return _upfirdn2d_conv(x, f * gain if gain != 1 else f, upx, upy, downx, downy, px0, px1, py0, py1)


def _filter_size(f: Tensor | None) -> tuple[int, int]:
    """(fw, fh)."""
    if f is None:
        return 1, 1
    return (f.shape[-1], f.shape[0]) if f.ndim == 2 else (f.shape[0], f.shape[0])


def filter2d(x: Tensor, f: Tensor, padding: int | Sequence[int] = 0, flip_filter: bool = False, gain: float = 1.0) -> Tensor:
    """FIR-filter ``x`` keeping its size (plus ``padding``): the filter is centered, an even-size filter
    ``fw`` is padded by ``fw // 2`` before and ``(fw - 1) // 2`` after (x; y likewise)."""
    fw, fh = _filter_size(f)
    px0, px1, py0, py1 = _padding(padding)
    p = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain)


def upsample2d(x: Tensor, f: Tensor, up: int | Sequence[int] = 2, padding: int | Sequence[int] = 0,
               flip_filter: bool = False, gain: float = 1.0) -> Tensor:
    """Upsample by ``up`` (zero insertion + low-pass ``f``); output [N, C, H*up, W*up] (plus ``padding``).

    The filter gain is multiplied by ``upx * upy`` so that a constant signal keeps its value with a
    filter normalized to sum 1 (and at least ``up`` taps long). Padding before/after on x:
    ``(fw + upx - 1) // 2`` and ``(fw - upx) // 2`` (y likewise). With pixel centres at integer + 1/2,
    output sample ``o`` shows the input at ``(o + 1/2) / up - 1/2 - s`` with ``s = ((fw + up) % 2) / (2 up)``:
    the grids are aligned (``s = 0``) when ``fw + up`` is even (``[1, 3, 3, 1]`` with ``up=2``), else
    shifted by half an output pixel.
    """
    upx, upy = _pair(up)
    fw, fh = _filter_size(f)
    px0, px1, py0, py1 = _padding(padding)
    p = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2, py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    return upfirdn2d(x, f, up=(upx, upy), padding=p, flip_filter=flip_filter, gain=gain * upx * upy)


def downsample2d(x: Tensor, f: Tensor, down: int | Sequence[int] = 2, padding: int | Sequence[int] = 0,
                 flip_filter: bool = False, gain: float = 1.0) -> Tensor:
    """Low-pass ``f`` then keep every ``down``-th sample; output [N, C, H/down, W/down] (plus ``padding``).

    Padding before/after on x: ``(fw - downx + 1) // 2`` and ``(fw - downx) // 2`` (y likewise). Output
    sample ``o`` is centred on input position ``down * o + (down - 1) / 2`` (aligned pixel grids) when
    ``fw - down`` is even; otherwise half an input pixel earlier (e.g. an odd filter with ``down=2``).
    """
    downx, downy = _pair(down)
    fw, fh = _filter_size(f)
    px0, px1, py0, py1 = _padding(padding)
    p = [px0 + (fw - downx + 1) // 2, px1 + (fw - downx) // 2, py0 + (fh - downy + 1) // 2, py1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=(downx, downy), padding=p, flip_filter=flip_filter, gain=gain)
