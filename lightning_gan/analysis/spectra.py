"""Power spectra of images: radially averaged spectra, the structure/texture energy split, and spectral gaps.

Units and conventions (every function here shares them):

* Frequencies are in **cycles per pixel**: ``f = sqrt(fx^2 + fy^2)`` with ``fx, fy`` from ``numpy.fft.fftfreq``
  (``k / W`` and ``k / H`` for integer ``k``), so the axes' Nyquist frequency is 0.5 and the corners of the
  frequency plane reach ``0.5 * sqrt(2)``. For an ``N x N`` image, ``f * N`` is the frequency in cycles per
  image.
* The power of one image channel ``x`` [H, W] is ``P(fx, fy) = |FFT2(x - mean(x))|^2 / (H W)``, averaged
  over images and channels. By Parseval, ``sum_{fx, fy} P = sum_pixels (x - mean)^2``: the mean power per
  frequency is the pixel variance, so white noise of variance ``s^2`` has a flat spectrum at ``s^2``.
* Rings: frequency ``(fx, fy)`` belongs to ring ``r = round(f * M)``, ``M = min(H, W)`` (for square images
  the integer radius in cycles per image), so a sinusoid with an integer number of cycles per image along
  each axis puts all its power in one ring. Ring 0 is the DC term, which the mean subtraction zeroes; the
  radial spectrum leaves it out.
* Window: none by default, which keeps Parseval exact and integer-cycle sinusoids in one ring. The FFT
  treats an image as periodic, so the jump between opposite borders adds power along the axes at all
  frequencies; ``window=True`` multiplies every image by a 2-D periodic Hann window scaled to unit mean square
  (``mean(w^2) = 1``, which keeps the level of white noise) to suppress that leakage, at the price of
  spreading each peak over about +-2 neighbouring frequencies. Compare real and generated images with the
  same setting.

Structure vs texture (docs/theory.md#spectral-normalization-structure-and-texture): ``energy_split`` gives the share
of the non-DC energy at frequencies at or below a cutoff (default 0.25 cycles/pixel, half the Nyquist
frequency: shapes, layout, smooth shading = "structure") and above it (edges, fine patterns, noise =
"texture"). ``spectral_gap`` measures how far a generator's radial spectrum lies from the data's, in decades.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from lightning_gan.analysis.plots import line_plot

__all__ = [
    "DEFAULT_CUTOFF",
    "LOG_FLOOR",
    "energy_split",
    "hann_window_2d",
    "plot_spectra",
    "power_spectrum_2d",
    "radial_frequency",
    "radial_power_spectrum",
    "ring_index",
    "spectral_gap",
]

DEFAULT_CUTOFF = 0.25
"""Structure/texture boundary in cycles per pixel: half the Nyquist frequency."""

LOG_FLOOR = 1e-12
"""Powers are clamped to at least this before ``log10`` in ``spectral_gap`` (an all-zero bin is 12+ decades off)."""

_CHUNK = 256  # images per FFT batch (bounds the complex temporaries)

Spectrum = tuple[Tensor, Tensor]  # (frequency [B], power [B])


def _as_images(images: Tensor | np.ndarray, name: str = "images") -> Tensor:
    x = torch.as_tensor(images)
    if x.dim() != 4:
        raise ValueError(f"{name} must be [N, C, H, W], got shape {tuple(x.shape)}")
    if min(x.shape) == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    if x.shape[2] < 2 or x.shape[3] < 2:
        raise ValueError(f"{name} must be at least 2x2 pixels, got {x.shape[2]}x{x.shape[3]}")
    if x.is_complex():
        raise ValueError(f"{name} must be real, got {x.dtype}")
    return x


def hann_window_2d(height: int, width: int, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """The separable periodic Hann window [H, W] scaled to unit mean square: ``w = h_H h_W^T / sqrt(mean(.^2))``."""
    w = torch.outer(torch.hann_window(height, periodic=True, dtype=dtype),
                    torch.hann_window(width, periodic=True, dtype=dtype))
    return w / w.square().mean().sqrt()


def power_spectrum_2d(images: Tensor | np.ndarray, *, window: bool = False) -> Tensor:
    """The mean power spectrum [H, W] (float64, unshifted: index ``[ky, kx]`` as ``torch.fft.fft2``) of ``images``.

    ``P = mean_{n, c} |FFT2(w * (x_nc - mean(x_nc)))|^2 / (H W)`` with ``w = 1`` or, with ``window``, the unit
    mean-square Hann window (``hann_window_2d``). Without a window ``P.sum() == mean_{n,c} sum_pixels
    (x_nc - mean)^2`` exactly (Parseval) and ``P.mean()`` is the mean per-image, per-channel pixel variance.

    Args:
        images: [N, C, H, W], any real dtype and value range.
        window: apply the Hann window (suppresses leakage from the wrap-around jump at the borders).
    """
    x = _as_images(images)
    n, c, h, w = x.shape
    taper = hann_window_2d(h, w, dtype=torch.float64).to(x.device) if window else None
    total = torch.zeros(h, w, dtype=torch.float64, device=x.device)
    flat = x.reshape(n * c, h, w)
    for start in range(0, n * c, _CHUNK):
        chunk = flat[start:start + _CHUNK].to(torch.float64)  # [B, H, W]
        chunk = chunk - chunk.mean(dim=(1, 2), keepdim=True)
        if taper is not None:
            chunk = chunk * taper
        total += torch.fft.fft2(chunk).abs().square().sum(0)
    return (total / (n * c * h * w)).cpu()


def radial_frequency(height: int, width: int) -> Tensor:
    """``f = sqrt(fx^2 + fy^2)`` [H, W] in cycles per pixel, laid out as ``torch.fft.fft2`` output (float64)."""
    fy = torch.fft.fftfreq(height, dtype=torch.float64)
    fx = torch.fft.fftfreq(width, dtype=torch.float64)
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def ring_index(height: int, width: int) -> Tensor:
    """The ring ``r = round(f * min(H, W))`` [H, W] (int64) of each frequency of an ``H x W`` FFT.

    For square images ``r`` is the radius in cycles per image rounded to an integer; ring 0 is the DC term
    alone, rings up to ``min(H, W) // 2`` reach the axes' Nyquist frequency, larger ones the corners.
    """
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be >= 1, got {height}x{width}")
    return torch.round(radial_frequency(height, width) * min(height, width)).long()


def _radial_from_2d(power: Tensor, num_bins: int | None) -> Spectrum:
    h, w = power.shape
    m = min(h, w)
    rings = ring_index(h, w)
    max_ring = int(rings.max())
    bins = m // 2 if num_bins is None else int(num_bins)
    if not 1 <= bins <= max_ring:
        raise ValueError(f"num_bins must be between 1 and {max_ring} for {h}x{w} images "
                         f"(rings 1..{m // 2} reach Nyquist along the axes, more reach the corners), got {num_bins}")
    sums = torch.bincount(rings.flatten(), weights=power.flatten(), minlength=max_ring + 1)
    counts = torch.bincount(rings.flatten(), minlength=max_ring + 1)
    power_r = sums[1:bins + 1] / counts[1:bins + 1]
    frequency = torch.arange(1, bins + 1, dtype=torch.float64) / m
    return frequency, power_r


def radial_power_spectrum(images: Tensor | np.ndarray, num_bins: int | None = None, *,
                          window: bool = False) -> Spectrum:
    """``(frequency [B], power [B])``: the radially averaged power spectrum of ``images`` (float64, on the CPU).

    ``power[r - 1] = mean { P(fx, fy) : round(f * M) = r }`` for rings ``r = 1..B`` with ``P`` from
    ``power_spectrum_2d`` (mean over images and channels) and ``M = min(H, W)``; ``frequency[r - 1] = r / M``
    cycles per pixel. Being a mean per frequency (not a sum per ring), white noise of variance ``s^2`` gives
    ``power == s^2`` in every ring, and a ring's energy is its power times the number of frequencies in it
    (``torch.bincount(ring_index(H, W).flatten())``). The DC ring (0, removed with the mean) is left out.

    Args:
        images: [N, C, H, W], any real dtype and value range (the per-image, per-channel mean is subtracted).
        num_bins: number of rings B, from 1; default ``M // 2`` (up to 0.5 cycles/pixel, the axes' Nyquist
            frequency); up to ``ring_index(H, W).max()`` includes the corners of the frequency plane.
        window: apply the unit mean-square Hann window first (see the module docstring).
    """
    return _radial_from_2d(power_spectrum_2d(images, window=window), num_bins)


def energy_split(images_or_spectrum: Tensor | np.ndarray, cutoff: float = DEFAULT_CUTOFF, *,
                 window: bool = False) -> dict[str, float]:
    """``{"low": E_low / E, "high": E_high / E}``: the structure (low-frequency) vs texture (high-frequency) shares.

    ``E_low = sum {P(fx, fy) : 0 < f <= cutoff}``, ``E_high = sum {P : f > cutoff}`` (the corners included),
    ``E = E_low + E_high`` (the DC term excluded), ``f = sqrt(fx^2 + fy^2)`` in cycles per pixel. The shares
    sum to one; for constant images (``E = 0``) both are NaN. A smooth shape on a flat background is mostly
    "low" (structure); gratings above the cutoff, a one-pixel checkerboard (all at (0.5, 0.5)) or white noise
    (about 80 % of the frequency plane lies above 0.25) are mostly "high" (texture).

    Args:
        images_or_spectrum: images [N, C, H, W], or a 2-D power spectrum [H, W] from ``power_spectrum_2d``
            (unshifted layout).
        cutoff: boundary in cycles per pixel, in (0, 0.5 * sqrt(2)).
        window: apply the Hann window (images only).
    """
    if not 0.0 < cutoff < 0.5 * math.sqrt(2.0):
        raise ValueError(f"cutoff must be in (0, {0.5 * math.sqrt(2.0):.4f}) cycles per pixel, got {cutoff}")
    x = torch.as_tensor(images_or_spectrum)
    if x.dim() == 4:
        power = power_spectrum_2d(x, window=window)
    elif x.dim() == 2:
        if min(x.shape) == 0:
            raise ValueError(f"the power spectrum is empty: shape {tuple(x.shape)}")
        if window:
            raise ValueError("window applies to images; this is already a power spectrum")
        power = x.to(torch.float64).cpu()
    else:
        raise ValueError(f"energy_split takes images [N, C, H, W] or a power spectrum [H, W], "
                         f"got shape {tuple(x.shape)}")
    f = radial_frequency(*power.shape)
    low = float(power[(f > 0) & (f <= cutoff)].sum())
    high = float(power[f > cutoff].sum())
    total = low + high
    if not total > 0:
        return {"low": math.nan, "high": math.nan}
    return {"low": low / total, "high": high / total}


def _as_spectrum(x: Any, name: str, num_bins: int | None, window: bool) -> Spectrum:
    if isinstance(x, (tuple, list)):
        if len(x) != 2:
            raise ValueError(f"{name} must be images [N, C, H, W] or a spectrum (frequency, power)")
        freq, power = (torch.as_tensor(v, dtype=torch.float64).reshape(-1) for v in x)
        if freq.numel() == 0 or freq.shape != power.shape:
            raise ValueError(f"{name}: frequency and power must be non-empty and equally long, "
                             f"got {freq.numel()} and {power.numel()}")
        return freq, power
    return radial_power_spectrum(_as_images(x, name), num_bins, window=window)


def spectral_gap(real: Tensor | np.ndarray | Spectrum, fake: Tensor | np.ndarray | Spectrum, *,
                 num_bins: int | None = None, window: bool = False) -> float:
    """Mean absolute difference of the log10 radial spectra, in decades (0 for identical spectra).

    ``gap = (1/B) sum_r |log10 max(P_fake(r), floor) - log10 max(P_real(r), floor)|`` over the rings
    ``r = 1..B`` of ``radial_power_spectrum`` (DC excluded), ``floor = LOG_FLOOR``. Every ring weighs the same,
    so the many high-frequency rings count as much as the few low ones would in a sum over frequencies:
    the figure is sensitive to texture as well as structure. A gap of 0.3 means the generated power is off
    by a factor of about 2 (10^0.3) on average.

    Args:
        real: real images [N, C, H, W] or their spectrum ``(frequency, power)``.
        fake: generated images or their spectrum, on the same frequencies (same image size).
        num_bins: rings to compare (images only; see ``radial_power_spectrum``).
        window: apply the Hann window (images only).
    """
    freq_r, power_r = _as_spectrum(real, "real", num_bins, window)
    freq_f, power_f = _as_spectrum(fake, "fake", num_bins, window)
    if freq_r.shape != freq_f.shape or not torch.allclose(freq_r, freq_f, rtol=1e-9, atol=1e-12):
        raise ValueError(f"real and fake spectra are on different frequencies ({freq_r.numel()} vs {freq_f.numel()} "
                         f"bins): compare images of the same size with the same num_bins")
    log_r = power_r.clamp_min(LOG_FLOOR).log10()
    log_f = power_f.clamp_min(LOG_FLOOR).log10()
    return float((log_f - log_r).abs().mean())


def plot_spectra(curves: Mapping[str, Spectrum], path: str | Path | None, *,
                 title: str = "Radially averaged power spectra", cutoff: float | None = DEFAULT_CUTOFF,
                 size: tuple[int, int] = (640, 420)) -> Image.Image:
    """A PNG of log10 power vs frequency, one line per ``{name: (frequency, power)}`` (e.g. "real", "generated").

    The x axis is in cycles per pixel (0.5 is the axes' Nyquist frequency), the y axis logarithmic; a dashed
    vertical line marks ``cutoff``, the structure/texture boundary of ``energy_split``.

    Args:
        curves: the spectra ``(frequency, power)``, in legend order (e.g. from ``radial_power_spectrum``), or
            images [N, C, H, W], whose radial spectrum is computed.
        path: where to write the PNG; None only returns the picture.
        title: the title line.
        cutoff: where to draw the dashed structure/texture line (cycles per pixel); None for none.
        size: ``(width, height)`` in pixels.
    """
    if not curves:
        raise ValueError("plot_spectra needs at least one spectrum")
    series = {name: _as_spectrum(c, name, None, False) for name, c in curves.items()}
    xlabel = "spatial frequency (cycles/pixel)"
    if cutoff is not None:
        xlabel += f"; dashed: structure | texture at {cutoff:g}"
    return line_plot(series, path, xlabel, "power |FFT|^2 / (H W)", title, logy=True, size=size,
                     vlines=() if cutoff is None else (cutoff,))
