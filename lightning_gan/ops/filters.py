"""FIR filters for resampling: binomial and Kaiser-windowed sinc design, normalization, buffers.

Conventions shared with :func:`lightning_gan.ops.upfirdn2d`:

- A 1-D filter ``[k]`` is *separable*: it is applied along x and then along y, which equals the
  2-D filter ``outer(f, f)``. A 2-D filter is ``[fh, fw]``.
- Filters are normalized to sum 1 (unit DC gain), so that a constant signal keeps its value under
  :func:`filter2d` and :func:`downsample2d`; :func:`upsample2d` multiplies the gain by ``up**2``
  itself to make up for the inserted zeros.
- Filter design is done in float64; :func:`setup_filter` returns float32 (``upfirdn2d`` casts the
  filter to the input's dtype on use).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["binomial_filter", "kaiser_atten", "kaiser_beta", "kaiser_lowpass", "register_filter", "setup_filter"]

FilterLike = Tensor | np.ndarray | Sequence[float] | Sequence[Sequence[float]]


def binomial_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> Tensor:
    """The 1-D filter ``taps / sum(taps)`` (float32), by default the binomial ``[1, 3, 3, 1] / 8``.

    ``[1, 3, 3, 1]`` is the 4-tap binomial (B-spline) low-pass of StyleGAN2: its frequency response
    ``cos(pi f)**3`` (f in cycles/sample) is 1 at DC and has a triple zero at Nyquist.
    """
    return setup_filter(taps, separable=True)


def setup_filter(f: FilterLike, *, normalize: bool = True, flip: bool = False, gain: float = 1.0,
                 separable: bool | None = None, device: torch.device | str | None = None) -> Tensor:
    """A float32 filter tensor ready for :func:`lightning_gan.ops.upfirdn2d`.

    Args:
        f: taps, 1-D ``[k]`` or 2-D ``[fh, fw]`` (list, numpy array or tensor).
        normalize: divide by the sum of the taps, so that the DC gain is 1 (for a separable 1-D
            filter both the taps and ``outer(f, f)`` then sum to 1); the sum must not be zero.
        flip: reverse the taps (along both axes for 2-D).
        gain: multiply the (normalized) 2-D filter by this; a separable 1-D result gets
            ``sqrt(gain)`` so that ``outer(f, f)`` carries ``gain`` (``gain`` must then be >= 0).
        separable: keep a 1-D filter 1-D (applied along both axes); ``False`` turns it into
            ``outer(f, f)``. Default: ``True`` for 1-D input. A 2-D input cannot be separable.
        device: where the result lives.
    """
    t = torch.as_tensor(np.asarray(f, dtype=np.float64) if not isinstance(f, Tensor) else f.detach())
    t = t.to(dtype=torch.float64, device="cpu")
    if t.ndim == 0:
        t = t[None]
    if t.ndim not in (1, 2) or t.numel() == 0:
        raise ValueError(f"a filter must be a non-empty 1-D or 2-D array of taps, got shape {tuple(t.shape)}")
    if separable is None:
        separable = t.ndim == 1
    if separable and t.ndim != 1:
        raise ValueError("separable=True needs a 1-D filter")
    if not torch.isfinite(t).all():
        raise ValueError("filter taps must be finite")
    if t.ndim == 1 and not separable:
        t = torch.outer(t, t)
    if normalize:  # a 1-D filter summing to 1 makes outer(f, f) sum to 1 too
        total = t.sum()
        if total.abs() < 1e-12:
            raise ValueError("cannot normalize a filter whose taps sum to zero (pass normalize=False)")
        t = t / total
    if flip:
        t = t.flip(list(range(t.ndim)))
    if separable:
        if gain < 0:
            raise ValueError(f"a separable filter needs gain >= 0 (it gets sqrt(gain) per axis), got {gain}")
        t = t * math.sqrt(gain)
    else:
        t = t * gain
    return t.to(dtype=torch.float32, device=device)


def kaiser_atten(numtaps: int, width: float) -> float:
    """Kaiser's estimate of the stop-band attenuation in dB of a ``numtaps`` filter.

    ``A = 2.285 * (numtaps - 1) * pi * width + 7.95``, with ``width`` the transition width as a fraction
    of the Nyquist frequency (1 = Nyquist), as in ``scipy.signal.kaiser_atten``.
    """
    return 2.285 * (numtaps - 1) * math.pi * width + 7.95


def kaiser_beta(atten: float) -> float:
    """Kaiser's window parameter ``beta`` for a stop-band attenuation ``atten`` in dB (positive).

    ``0.1102 (A - 8.7)`` for ``A > 50``; ``0.5842 (A - 21)**0.4 + 0.07886 (A - 21)`` for
    ``21 <= A <= 50``; 0 (a rectangular window) below 21.
    """
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def kaiser_lowpass(numtaps: int, cutoff: float, width: float, fs: float = 2.0) -> Tensor:
    """A linear-phase low-pass FIR filter: windowed sinc with a Kaiser window, unit DC gain (float64, 1-D).

    The same design as ``scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs)``:
    with ``nyq = fs / 2``, ``c = cutoff / nyq`` and ``m = n - (numtaps - 1) / 2`` for ``n = 0..numtaps-1``,
    ``h[n] = c * sinc(c * m) * w[n]`` (``sinc(t) = sin(pi t) / (pi t)``), where ``w`` is the symmetric
    Kaiser window ``I0(beta * sqrt(1 - (2 n / (numtaps - 1) - 1)**2)) / I0(beta)`` with
    ``beta = kaiser_beta(kaiser_atten(numtaps, width / nyq))``; finally ``h /= sum(h)``.

    Args:
        numtaps: number of taps (even or odd).
        cutoff: cutoff frequency (-6 dB point), in the units of ``fs``, ``0 < cutoff < fs / 2``.
        width: transition band width, in the units of ``fs``, > 0.
        fs: sampling rate; the default 2 measures frequencies as fractions of Nyquist.
    """
    if numtaps < 1 or int(numtaps) != numtaps:
        raise ValueError(f"numtaps must be a positive integer, got {numtaps}")
    nyq = fs / 2.0
    if not 0 < cutoff < nyq:
        raise ValueError(f"cutoff must lie strictly between 0 and fs/2 = {nyq}, got {cutoff}")
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    numtaps = int(numtaps)
    beta = kaiser_beta(kaiser_atten(numtaps, width / nyq))
    c = cutoff / nyq
    n = torch.arange(numtaps, dtype=torch.float64)
    m = n - (numtaps - 1) / 2.0
    h = c * torch.sinc(c * m)
    if numtaps > 1:
        r = (2.0 * n / (numtaps - 1) - 1.0).clamp(-1.0, 1.0)
        window = torch.special.i0(beta * torch.sqrt(1.0 - r * r)) / torch.special.i0(torch.tensor(beta, dtype=torch.float64))
        h = h * window
    return h / h.sum()


def register_filter(module: nn.Module, name: str, f: FilterLike | None, *, persistent: bool = False,
                    **setup_kwargs: object) -> None:
    """Store ``setup_filter(f, **setup_kwargs)`` on ``module`` as the buffer ``name`` (``None`` stays ``None``).

    A buffer follows ``module.to(device)`` and is copied by ``copy.deepcopy`` and by the EMA's buffer
    copy. By default it is *non-persistent*: it is not part of ``state_dict``, so checkpoints carry no
    constants and the constructor's filter is the one used after loading. ``persistent=True`` stores it
    in ``state_dict`` (then a checkpoint restores the filter it was trained with).
    """
    module.register_buffer(name, None if f is None else setup_filter(f, **setup_kwargs), persistent=persistent)
