"""Equivariance to sub-pixel translation, EQ-T in dB (Karras et al. 2021, "Alias-Free GANs").

A generator is translation equivariant when translating its input (its input grid of Fourier features,
in StyleGAN3) translates its output image: ``G(z; t) = T_t[G(z)]``. EQ-T is the peak signal-to-noise
ratio between the two sides,

    EQ-T = 10 log10( I_max^2 / MSE ),   MSE = E_{z, t, c, p}[ (G(z; t)_c(p) - T_t[G(z)]_c(p))^2 ],

with ``I_max = 2``, the dynamic range of images in [-1, 1] (as in the paper's Appendix), and the mean
squared error taken over every valid pixel ``p`` and channel ``c`` of every sample (one MSE over all
samples, then the logarithm; not a mean of per-sample PSNRs). Higher is better; a perfectly equivariant
generator gives +inf.

Generator contract (none of the built-in generators has it; those without it are skipped): a method

    forward_translated(z, c, translation) -> images [N, C, H, W]

with ``z`` [N, z_dim], ``c`` [N, c_dim] or None as for ``forward``, and ``translation`` [N, 2] the
``(x, y)`` shift of the content in output pixels (fractions allowed): content that ``forward(z, c)``
draws at column ``u`` and row ``v`` should appear at ``(u + x, v + y)``, i.e. ``x > 0`` moves it
right (towards larger column indices) and ``y > 0`` down (towards larger row indices).

Conventions of this implementation:

* ``t`` is uniform in ``[-max_shift, max_shift]^2`` in fractions of the image (width for x, height for
  y); ``max_shift = 1/8`` as in the paper.
* ``T_t`` is a Fourier phase shift (``fourier_translate``): exact for band-limited periodic images.
  The content that wraps around, a border of ``ceil(|t|) + margin`` pixels on the side the content moves
  away from (per axis), is masked out; ``margin`` also absorbs the ringing next to the wrap-around seam
  of images that are not periodic.
* The two passes see the same per-pixel noise (the global RNG is reseeded identically before each, and
  forked so that the caller's random state is untouched); the generator runs in eval mode without grad.
* Images are not quantized.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from lightning_gan.interfaces import Generator
from lightning_gan.metrics.base import (
    EvaluationContext,
    GeneratorMetric,
    _device_of,
    _eval_mode,
    balanced_labels,
    check_num_samples,
)

__all__ = [
    "EQT",
    "eqt_psnr",
    "fourier_translate",
    "psnr",
    "supports_translation",
    "translation_error",
    "translation_mask",
]

#: dynamic range of images in [-1, 1]
PEAK = 2.0


def supports_translation(generator: nn.Module) -> bool:
    """Whether ``generator`` implements ``forward_translated(z, c, translation)`` (see the module docstring)."""
    return callable(getattr(generator, "forward_translated", None))


def fourier_translate(images: Tensor, translation: Tensor) -> Tensor:
    """Images [N, C, H, W] translated by ``translation`` [N, 2] = (x, y) pixels, periodically, by FFT phase shift.

    ``out(v, u) = img(v - y, u - x)`` for the band-limited periodic interpolation of ``img``: multiplies
    the 2-D DFT by ``exp(-2 pi i (f_u x + f_v y))`` (``f`` in cycles per pixel, ``torch.fft.fftfreq``) and
    keeps the real part, so the Nyquist row/column of an even size gets the symmetric ``cos`` factor.
    Computed in float64; returned in the images' dtype.
    """
    if images.dim() != 4 or translation.shape != (images.shape[0], 2):
        raise ValueError(f"expected images [N, C, H, W] and translation [N, 2], got {tuple(images.shape)} and "
                         f"{tuple(translation.shape)}")
    h, w = images.shape[-2:]
    x = translation[:, 0].double().to(images.device).view(-1, 1, 1, 1)
    y = translation[:, 1].double().to(images.device).view(-1, 1, 1, 1)
    fu = torch.fft.fftfreq(w, dtype=torch.float64, device=images.device).view(1, 1, 1, w)
    fv = torch.fft.fftfreq(h, dtype=torch.float64, device=images.device).view(1, 1, h, 1)
    phase = torch.polar(torch.ones((), dtype=torch.float64, device=images.device), -2 * math.pi * (fu * x + fv * y))
    out = torch.fft.ifft2(torch.fft.fft2(images.double()) * phase).real
    return out.to(images.dtype)


def translation_mask(height: int, width: int, translation: Tensor, margin: int = 3) -> Tensor:
    """Valid pixels after translating by ``translation`` [N, 2], [N, 1, H, W] bool.

    Per axis, a shift ``s > 0`` invalidates the first ``ceil(s) + margin`` columns (rows), ``s < 0`` the
    last ``ceil(-s) + margin``, ``s = 0`` none: where content wrapped around (or new content entered).
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    translation = translation.detach().double().cpu()

    def valid(size: int, shift: Tensor) -> Tensor:  # [N, size]
        index = torch.arange(size, dtype=torch.float64).view(1, -1)
        cut = (shift.abs().ceil() + margin).view(-1, 1)
        keep = torch.ones(shift.shape[0], size, dtype=torch.bool)
        keep = torch.where((shift > 0).view(-1, 1), index >= cut, keep)
        return torch.where((shift < 0).view(-1, 1), index < size - cut, keep)

    cols, rows = valid(width, translation[:, 0]), valid(height, translation[:, 1])
    return (rows.unsqueeze(2) & cols.unsqueeze(1)).unsqueeze(1)


def psnr(mse: float, peak: float = PEAK) -> float:
    """``10 log10(peak^2 / mse)`` in dB; +inf for ``mse = 0``."""
    return math.inf if mse == 0 else 10.0 * math.log10(peak**2 / mse)


def translation_error(generator: Generator, z: Tensor, c: Tensor | None, translation: Tensor, *,
                      margin: int = 3, noise_seed: int = 0) -> tuple[float, int]:
    """``(sum of squared errors, number of values)`` of ``G(z; t)`` against ``T_t[G(z)]`` over valid pixels.

    Runs the generator as is (callers set eval mode and no_grad); the global RNG is reseeded with
    ``noise_seed`` before each of the two passes (same noise), not restored.
    """
    if not supports_translation(generator):
        raise TypeError(f"{type(generator).__name__} has no forward_translated(z, c, translation)")
    torch.manual_seed(noise_seed)
    reference = generator(z, c)
    torch.manual_seed(noise_seed)
    translated = generator.forward_translated(z, c, translation)
    if reference.dim() != 4 or translated.shape != reference.shape:
        raise ValueError(f"EQ-T needs images [N, C, H, W] of the same shape from forward and forward_translated, "
                         f"got {tuple(reference.shape)} and {tuple(translated.shape)}")
    if not (torch.isfinite(reference).all() and torch.isfinite(translated).all()):
        raise FloatingPointError("The generator produced non-finite values; EQ-T would be meaningless")
    expected = fourier_translate(reference.double(), translation)
    mask = translation_mask(reference.shape[2], reference.shape[3], translation, margin).to(reference.device)
    error = (translated.double() - expected).square() * mask
    return float(error.sum()), int(mask.sum()) * reference.shape[1]


def eqt_psnr(generator: Generator, num_samples: int, *, max_shift: float = 0.125, margin: int = 3, seed: int = 0,
             batch_size: int = 64, labels: Tensor | None = None) -> float:
    """EQ-T in dB over ``num_samples`` latents and translations (see the module docstring).

    Latents and translations are drawn all at once from a ``torch.Generator`` seeded with ``seed``;
    conditional generators get classes in equal shares unless ``labels`` [num_samples] are given.
    """
    if not supports_translation(generator):
        raise TypeError(f"{type(generator).__name__} has no forward_translated(z, c, translation)")
    if not 0 < max_shift <= 0.5:
        raise ValueError(f"max_shift must be in (0, 0.5] (a fraction of the image), got {max_shift}")
    shape = tuple(generator.output_shape)
    if len(shape) != 3:
        raise ValueError(f"EQ-T needs an image generator (output [C, H, W]), got output_shape {shape}")
    device = _device_of(generator)
    dtype = next((p.dtype for p in generator.parameters() if p.is_floating_point()), torch.get_default_dtype())
    rng = torch.Generator(device=device).manual_seed(seed)
    z = generator.sample_latents(num_samples, generator=rng, device=device).to(dtype)
    size = torch.tensor([shape[2], shape[1]], dtype=dtype, device=device)  # (W, H) for (x, y)
    translation = (torch.rand(num_samples, 2, generator=rng, device=device).to(dtype) * 2 - 1) * max_shift * size
    if labels is None:
        labels = balanced_labels(num_samples, generator.c_dim, device)
    noise_seeds = torch.randint(0, 2**31 - 1, (math.ceil(num_samples / batch_size),),
                                generator=torch.Generator().manual_seed(seed)).tolist()
    total, count = 0.0, 0
    devices = [device] if device.type == "cuda" else []
    with _eval_mode(generator), torch.no_grad(), torch.random.fork_rng(devices=devices):
        for b, start in enumerate(range(0, num_samples, batch_size)):
            sl = slice(start, start + batch_size)
            c = None if labels is None else nn.functional.one_hot(labels[sl].long().to(device), generator.c_dim).to(dtype)
            err, n = translation_error(generator, z[sl], c, translation[sl], margin=margin, noise_seed=noise_seeds[b])
            total, count = total + err, count + n
    if count == 0:
        raise ValueError(f"no valid pixels left: max_shift={max_shift} and margin={margin} mask the whole image")
    return psnr(total / count)


class EQT(GeneratorMetric):
    """EQ-T, translation equivariance in dB (``eqt``; higher is better); see the module docstring.

    Generators without ``forward_translated`` are skipped: ``compute`` returns ``{}`` and warns once.

    Args:
        num_samples: latents (each with its own translation).
        max_shift: largest translation per axis, as a fraction of the image size (1/8 in the paper).
        margin: pixels masked beyond the wrapped-around border.
        seed: seed of latents, translations and noise.
        batch_size: samples per forward pass.
    """

    def __init__(self, *, num_samples: int = 1000, max_shift: float = 0.125, margin: int = 3, seed: int = 0,
                 batch_size: int = 64) -> None:
        if not 0 < float(max_shift) <= 0.5:
            raise ValueError(f"EQT: max_shift must be in (0, 0.5] (a fraction of the image), got {max_shift}")
        if int(margin) < 0:
            raise ValueError(f"EQT: margin must be >= 0, got {margin}")
        if int(batch_size) < 1:
            raise ValueError(f"EQT: batch_size must be >= 1, got {batch_size}")
        self.num_samples = check_num_samples("EQT", num_samples, minimum=1)
        self.max_shift = float(max_shift)
        self.margin = int(margin)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self._warned = False

    def compute(self, generator: Generator, datamodule: Any, context: EvaluationContext | None = None) -> dict[str, float]:
        if not supports_translation(generator):
            if not self._warned:
                warnings.warn(f"EQ-T skipped: {type(generator).__name__} has no forward_translated(z, c, translation) "
                              f"(see lightning_gan.metrics.equivariance)", stacklevel=2)
                self._warned = True
            return {}
        return {"eqt": eqt_psnr(generator, self.num_samples, max_shift=self.max_shift, margin=self.margin,
                                seed=self.seed, batch_size=self.batch_size)}
