"""The resampling and fading of progressive growing: the exact maths the growable-network protocol promises.

Karras et al. 2018 (ProGAN, sec. 2 and fig. 2): when the networks double their resolution, the new
layers fade in smoothly. In the generator the old stage's image, doubled in size with nearest-neighbour
filtering ("2x"), and the new block's image are mixed with a weight ``alpha`` that rises from 0 to 1;
in the discriminator the input, halved with average pooling ("0.5x") and fed to the old input layer,
is mixed with the new block's output the same way. Real images shown to the discriminator during a
transition are interpolated between the two resolutions alike.

With ``r`` the new resolution, ``x`` an image [N, C, r, r] and ``0 <= alpha <= 1``:

- ``upsample_nearest``: ``y[..., i, j] = x[..., i // 2, j // 2]`` (doubles H and W).
- ``downsample_average``: ``y[..., i, j] = ((x[2i, 2j] + x[2i, 2j+1]) + (x[2i+1, 2j] + x[2i+1, 2j+1])) / 4``
  (halves H and W). The pairwise sum makes ``downsample_average(upsample_nearest(x)) == x`` exactly
  (``(y + y) + (y + y) = 4y`` and ``/ 4`` are exact in floating point); ``F.avg_pool2d`` equals it up to
  rounding only.
- ``fade(old, new, alpha) = old + alpha * (new - old)``, returning ``old`` itself at ``alpha = 0`` and
  ``new`` itself at ``alpha = 1``: at the ends the other branch contributes nothing, not even rounding.
- ``fade_resolutions(x, alpha) = fade(upsample_nearest(downsample_average(x)), x, alpha)``: real images
  at resolution ``r`` during the fade-in of stage ``r``.
- ``downsample_to(x, r)`` / ``upsample_to(x, R)``: the 2x steps repeated down to / up to a side length;
  ``real_images_at(x, r, alpha)``: full-resolution reals as D sees them at stage ``(r, alpha)``;
  ``at_full_resolution(G)``: a growing generator seen at its full size (for metrics and sample grids).

Growable networks (``lightning_gan.interfaces.GrowableGenerator`` / ``GrowableDiscriminator``) call these
functions on their fade-in paths, and ``lightning_gan.testing.check_growable`` compares them with the same
functions, so "at alpha = 0 the grown network equals the previous stage" can be checked bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_gan.interfaces import Generator

__all__ = ["FullResolutionGenerator", "at_full_resolution", "downsample_average", "downsample_to", "fade",
           "fade_resolutions", "real_images_at", "upsample_nearest", "upsample_to"]


def _check_image(x: Tensor, what: str) -> None:
    if x.dim() < 3:
        raise ValueError(f"{what} takes images [..., H, W] with at least 3 dimensions, got shape {list(x.shape)}")


def upsample_nearest(x: Tensor) -> Tensor:
    """Double height and width by repeating each pixel 2x2: [..., H, W] -> [..., 2H, 2W] (ProGAN's "2x")."""
    _check_image(x, "upsample_nearest")
    if x.dim() == 4:  # F.interpolate scales every dimension after the second and keeps channels_last
        return F.interpolate(x, scale_factor=2.0, mode="nearest")
    return x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)


def downsample_average(x: Tensor) -> Tensor:
    """Halve height and width by averaging each 2x2 block: [..., H, W] -> [..., H/2, W/2] (ProGAN's "0.5x").

    Summed in pairs, ``((a + b) + (c + d)) * 0.25``, so that it undoes ``upsample_nearest`` exactly.
    """
    _check_image(x, "downsample_average")
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        raise ValueError(f"downsample_average needs an even height and width, got {h}x{w}")
    top = x[..., 0::2, 0::2] + x[..., 0::2, 1::2]
    bottom = x[..., 1::2, 0::2] + x[..., 1::2, 1::2]
    return (top + bottom) * 0.25


def fade(old: Tensor, new: Tensor, alpha: float) -> Tensor:
    """``old + alpha * (new - old)``: ``old`` itself at ``alpha = 0``, ``new`` itself at ``alpha = 1``.

    Args:
        old: the previous stage's branch (e.g. its image upsampled), same shape as ``new``.
        new: the freshly added block's branch.
        alpha: the fade-in weight of the new branch, in [0, 1].
    """
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if old.shape != new.shape:
        raise ValueError(f"fade mixes tensors of one shape, got {list(old.shape)} and {list(new.shape)}")
    if alpha == 0.0:
        return old
    if alpha == 1.0:
        return new
    return torch.lerp(old, new, alpha)


def fade_resolutions(x: Tensor, alpha: float) -> Tensor:
    """Images [..., H, W] blended between half and full resolution: ``fade(up(down(x)), x, alpha)``.

    What the discriminator sees of the real images while the stage of resolution H fades in.
    """
    return fade(upsample_nearest(downsample_average(x)), x, alpha)


def _halvings(size: int, resolution: int, what: str) -> int:
    """How many times ``size`` halves to ``resolution`` (both powers-of-two multiples of each other)."""
    size, resolution = int(size), int(resolution)
    steps = 0
    while size > resolution and size % 2 == 0:
        size //= 2
        steps += 1
    if size != resolution:
        raise ValueError(f"{what}: {resolution} is not the side length halved a whole number of times")
    return steps


def downsample_to(x: Tensor, resolution: int) -> Tensor:
    """Square images [..., S, S] box-filtered to [..., r, r], ``S = r * 2**k``: ``downsample_average`` k times.

    Each output pixel is the mean of its ``2**k x 2**k`` block (the box filter, anti-aliased in that it averages
    every input pixel instead of picking one; ProGAN's lower resolutions are made the same way).
    """
    _check_image(x, "downsample_to")
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"downsample_to takes square images, got {x.shape[-2]}x{x.shape[-1]}")
    for _ in range(_halvings(x.shape[-1], resolution, f"downsample_to from {x.shape[-1]}")):
        x = downsample_average(x)
    return x


def upsample_to(x: Tensor, resolution: int) -> Tensor:
    """Square images [..., r, r] enlarged to [..., R, R], ``R = r * 2**k``, pixels repeated (``upsample_nearest``)."""
    _check_image(x, "upsample_to")
    for _ in range(_halvings(resolution, x.shape[-1], f"upsample_to {resolution}")):
        x = upsample_nearest(x)
    return x


def real_images_at(x: Tensor, resolution: int, alpha: float = 1.0) -> Tensor:
    """Full-resolution real images as the discriminator sees them at stage ``(resolution, alpha)``.

    ``downsample_to(x, resolution)``, and during a fade (``alpha < 1``) ``fade_resolutions`` of that: the
    paper's interpolation between the two resolutions, matching the generator's own fade.
    """
    x = downsample_to(x, resolution)
    return x if float(alpha) == 1.0 else fade_resolutions(x, alpha)


class FullResolutionGenerator(Generator):
    """A growable generator seen at its full resolution: its images enlarged by ``upsample_to`` (pixel repetition).

    What metrics and sample grids draw from while a run grows, so that they always get full-size images: at stage
    ``r`` the output is ``upsample_to(G(z, c), R)``, exactly what the grown generator makes at alpha 0 of every
    later stage. ``sample_latents`` and the condition are the wrapped generator's; it is a submodule, so
    ``.to``/``.eval``/parameters follow it.
    """

    def __init__(self, generator: Generator) -> None:
        """
        Args:
            generator: a growable generator (``full_output_shape`` and ``output_shape`` [C, r, r]).
        """
        super().__init__(z_dim=generator.z_dim, c_dim=generator.c_dim,
                         output_shape=tuple(generator.full_output_shape))
        self.generator = generator

    def sample_latents(self, n: int, *, generator: torch.Generator | None = None,
                       device: torch.device | str | None = None) -> Tensor:
        return self.generator.sample_latents(n, generator=generator, device=device)

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        return upsample_to(self.generator(z, c), self.output_shape[-1])


def at_full_resolution(generator: Generator) -> Generator:
    """``generator`` itself, or a ``FullResolutionGenerator`` view when it is growable and below its full size."""
    full = getattr(generator, "full_output_shape", None)
    if full is None or tuple(generator.output_shape) == tuple(full):
        return generator
    return FullResolutionGenerator(generator)
