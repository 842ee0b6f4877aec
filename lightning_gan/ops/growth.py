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

Growable networks (``lightning_gan.interfaces.GrowableGenerator`` / ``GrowableDiscriminator``) call these
functions on their fade-in paths, and ``lightning_gan.testing.check_growable`` compares them with the same
functions, so "at alpha = 0 the grown network equals the previous stage" can be checked bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["downsample_average", "fade", "fade_resolutions", "upsample_nearest"]


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
