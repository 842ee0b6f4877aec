"""BigGAN's truncation trick by resampling: latent components outside [-t, t] are redrawn until inside.

Brock et al. 2019 sample ``z ~ N(0, I)`` and redraw every component whose magnitude exceeds the threshold
``t``; the result is the standard normal truncated to [-t, t] (each component independently), with density
``phi(x) / (2 Phi(t) - 1)`` on [-t, t]. Smaller ``t`` trades variety for fidelity. This is truncation in Z for
any generator whose prior is N(0, I); StyleGAN's ``psi`` (``w = w_avg + psi (w - w_avg)``) is a different knob
that acts in W (``lightning-gan generate --psi``).

``TruncatedGenerator`` wraps a generator so that everything that draws latents through
``generator.sample_latents`` (the metrics, ``GANModule.sample``) draws truncated ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from lightning_gan.interfaces import Generator

__all__ = ["TruncatedGenerator", "check_threshold", "truncated_normal"]


def check_threshold(threshold: float) -> float:
    """``threshold`` as a float if it is finite and > 0; a one-line ValueError otherwise."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold) \
            or threshold <= 0:
        raise ValueError(f"the truncation threshold must be a number > 0 (e.g. 0.5; larger = less truncation), "
                         f"got {threshold!r}")
    return float(threshold)


def truncated_normal(shape: Sequence[int] | torch.Size, threshold: float, *, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """Standard normal samples with every component resampled until ``|x| <= threshold``.

    Draws ``N(0, 1)`` and redraws, round after round, only the components still outside [-t, t], so the result
    has exactly the truncated normal distribution. The expected number of rounds grows as ``t`` shrinks (a
    component lands inside with probability ``2 Phi(t) - 1``: 0.38 at t = 0.5, 0.08 at t = 0.1); the draws
    follow ``generator``, so a seed gives the same latents every time.

    Args:
        shape: shape of the result, e.g. ``(n, z_dim)``.
        threshold: t > 0.
        generator: random number generator (on ``device``); None uses the global one.
        device: device of the result (default: ``generator``'s, else the default device).
        dtype: floating dtype of the result (default float32).
    """
    t = check_threshold(threshold)
    if device is None and generator is not None:
        device = generator.device
    z = torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
    outside = z.abs() > t
    while bool(outside.any()):
        z[outside] = torch.randn(int(outside.sum()), generator=generator, device=z.device, dtype=z.dtype)
        outside = z.abs() > t
    return z


class TruncatedGenerator(Generator):
    """A generator whose ``sample_latents`` draws truncated latents (``truncated_normal``); forward unchanged.

    Wrap the sampling generator before handing it to metrics or grids; the wrapped generator is a submodule, so
    ``.to``/``.eval``/parameters follow it. Only for generators with the standard normal prior.
    """

    def __init__(self, generator: Generator, threshold: float) -> None:
        """
        Args:
            generator: the generator to sample from.
            threshold: truncation threshold t > 0 for every latent component.
        """
        super().__init__(z_dim=generator.z_dim, c_dim=generator.c_dim, output_shape=generator.output_shape)
        self.generator = generator
        self.threshold = check_threshold(threshold)

    def sample_latents(self, n: int, *, generator: torch.Generator | None = None,
                       device: torch.device | str | None = None) -> Tensor:
        """Latents [n, z_dim] from N(0, I) truncated to [-threshold, threshold] by resampling."""
        return truncated_normal((n, self.z_dim), self.threshold, generator=generator, device=device)

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        return self.generator(z, c)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}"
