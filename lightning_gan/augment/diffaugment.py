"""DiffAugment: the same random differentiable colour, translation and cutout on every image D sees.

Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training". Every image, real or generated,
at every call (no probability, as in the paper), with the policies applied in the order given. The ranges are the
paper's, for images in [-1, 1] (the project's range, which is also the paper's); translation and cutout are
fractions of the image size:

- ``color``: brightness ``x + b``, ``b ~ U(-0.5, 0.5)`` per sample; saturation ``m + s (x - m)`` with ``m`` the
  pixel's mean over channels, ``s ~ U(0, 2)``; contrast ``m + c (x - m)`` with ``m`` the image's mean over
  channels and pixels, ``c ~ U(0.5, 1.5)`` (in that order). One-channel images: saturation is the identity
  (a pixel equals its channel mean), brightness and contrast apply.
- ``translation``: an integer shift of ``(tx, ty)`` pixels, each uniform in ``[-r, r]`` with ``r = round(S / 8)``
  of the side ``S``, the uncovered pixels set to 0.
- ``cutout``: a rectangle of half the image's height and width set to 0, centred on a pixel drawn uniformly
  from the image (so it may reach over the border and be clipped there).

The maths is in the pure functions below (``shift_brightness``, ``scale_saturation``, ``scale_contrast``,
``translate``, ``cut_out``); ``DiffAugment`` draws their parameters on the images' device from the generator
``forward`` is given (GANModule passes one per process), or from the global torch RNG.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lightning_gan.interfaces import Augmentation

__all__ = ["POLICIES", "DiffAugment", "cut_out", "scale_contrast", "scale_saturation", "shift_brightness",
           "translate"]

POLICIES = ("color", "translation", "cutout")
"""The paper's policies, in its order."""

TRANSLATION_RATIO = 1 / 8
"""Largest translation, as a fraction of the image side."""

CUTOUT_RATIO = 1 / 2
"""Side of the cut-out rectangle, as a fraction of the image side."""


def shift_brightness(images: Tensor, b: Tensor) -> Tensor:
    """``x + b`` per sample; ``images`` [N, C, H, W], ``b`` [N]."""
    return images + b.to(images.dtype)[:, None, None, None]


def scale_saturation(images: Tensor, s: Tensor) -> Tensor:
    """``m + s (x - m)`` with ``m`` [N, 1, H, W] the mean over channels; ``s`` [N]."""
    mean = images.mean(dim=1, keepdim=True)
    return mean + s.to(images.dtype)[:, None, None, None] * (images - mean)


def scale_contrast(images: Tensor, c: Tensor) -> Tensor:
    """``m + c (x - m)`` with ``m`` [N, 1, 1, 1] the mean over channels and pixels; ``c`` [N]."""
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return mean + c.to(images.dtype)[:, None, None, None] * (images - mean)


def translate(images: Tensor, shifts: Tensor) -> Tensor:
    """``out[i, j] = x[i - ty, j - tx]``, 0 where that falls outside the image; ``shifts`` [N, 2] int (tx, ty)."""
    n, c, h, w = images.shape
    shifts = shifts.to(device=images.device, dtype=torch.long)
    rows = torch.arange(h, device=images.device)[None, :, None] - shifts[:, 1, None, None]  # [N, H, 1]
    cols = torch.arange(w, device=images.device)[None, None, :] - shifts[:, 0, None, None]  # [N, 1, W]
    inside = ((rows >= 0) & (rows < h)) & ((cols >= 0) & (cols < w))  # [N, H, W]
    source = (rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)).reshape(n, 1, h * w).expand(n, c, h * w)
    moved = images.reshape(n, c, h * w).gather(2, source).reshape(n, c, h, w)
    return moved * inside[:, None].to(images.dtype)


def cut_out(images: Tensor, centres: Tensor, size: tuple[int, int]) -> Tensor:
    """Zero a rectangle of ``size`` = (height, width) per sample: rows ``cy - height // 2`` up to (excluding)
    ``cy - height // 2 + height``, columns likewise, clipped to the image; ``centres`` [N, 2] int (cx, cy)."""
    h, w = images.shape[-2:]
    centres = centres.to(device=images.device, dtype=torch.long)
    top = centres[:, 1, None] - size[0] // 2  # [N, 1]
    left = centres[:, 0, None] - size[1] // 2
    rows = torch.arange(h, device=images.device)[None, :]  # [1, H]
    cols = torch.arange(w, device=images.device)[None, :]
    in_rows = (rows >= top) & (rows < top + size[0])  # [N, H]
    in_cols = (cols >= left) & (cols < left + size[1])  # [N, W]
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])  # [N, H, W]
    return images * keep[:, None].to(images.dtype)


class DiffAugment(Augmentation):
    """DiffAugment's policies (``color``, ``translation``, ``cutout``, any subset) on every image, every call."""

    def __init__(self, *, policy: str | Sequence[str] = "color,translation,cutout") -> None:
        """
        Args:
            policy: the policies to apply, in this order: a comma-separated string or a list of names from
                ``color``, ``translation``, ``cutout``; empty = the identity.
        """
        super().__init__()
        names = policy.split(",") if isinstance(policy, str) else list(policy)
        if not all(isinstance(name, str) for name in names):
            raise ValueError(f"DiffAugment policy must be a comma-separated string or a list of names, got {policy!r}")
        names = [name.strip() for name in names if name.strip()]
        unknown = [name for name in names if name not in POLICIES]
        if unknown:
            raise ValueError(f"unknown DiffAugment policy {', '.join(map(repr, unknown))}; choose from "
                             f"{', '.join(POLICIES)} (comma-separated)")
        if len(set(names)) != len(names):
            raise ValueError(f"DiffAugment policy names a policy twice: {','.join(names)}")
        self.policies = tuple(names)
        self.policy = ",".join(names)

    def sample_parameters(self, n: int, height: int, width: int, *, device: torch.device | str | None = None,
                          generator: torch.Generator | None = None) -> dict[str, dict[str, Tensor]]:
        """One draw for ``n`` images on ``device`` from ``generator`` (the global RNG when None), policy by policy.

        Returns:
            ``{"color": {"brightness", "saturation", "contrast": [N]}, "translation": {"shifts": [N, 2]},
            "cutout": {"centres": [N, 2]}}``, the policies in use only.
        """

        def rand(*shape: int) -> Tensor:  # U[0, 1)
            return torch.rand(*shape, device=device, generator=generator)

        params: dict[str, dict[str, Tensor]] = {}
        for name in self.policies:
            if name == "color":
                params[name] = {"brightness": rand(n) - 0.5,
                                "saturation": rand(n) * 2,
                                "contrast": rand(n) + 0.5}
            elif name == "translation":
                reach = torch.tensor([int(width * TRANSLATION_RATIO + 0.5), int(height * TRANSLATION_RATIO + 0.5)],
                                     device=device)
                u = rand(n, 2)  # uniform integers in [-reach, reach]
                params[name] = {"shifts": torch.minimum((u * (2 * reach + 1)).long(), 2 * reach) - reach}
            else:
                u = rand(n, 2)  # a pixel of the image
                limit = torch.tensor([width, height], device=device)
                params[name] = {"centres": torch.minimum((u * limit).long(), limit - 1)}
        return params

    def apply(self, images: Tensor, params: dict[str, dict[str, Tensor]]) -> Tensor:
        """The policies with given parameters (``sample_parameters``), in order."""
        x = images
        h, w = images.shape[-2:]
        for name in self.policies:
            p = params[name]
            if name == "color":
                x = shift_brightness(x, p["brightness"])
                x = scale_saturation(x, p["saturation"])
                x = scale_contrast(x, p["contrast"])
            elif name == "translation":
                x = translate(x, p["shifts"])
            else:
                x = cut_out(x, p["centres"], (int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)))
        return x

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:  # [N, C, H, W]
        """The policies, drawn from ``generator`` (on the images' device; the global RNG when None)."""
        if images.dim() != 4:
            raise ValueError(f"DiffAugment takes images [N, C, H, W], got shape {list(images.shape)}")
        if not self.policies:
            return images
        n, _, h, w = images.shape
        return self.apply(images, self.sample_parameters(n, h, w, device=images.device, generator=generator))
