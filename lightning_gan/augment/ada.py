"""Adaptive discriminator augmentation (ADA): the "bgc" pipeline and the controller that sets its strength p.

Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data" (StyleGAN2-ADA), sec. 3 and
Appendix B. Every image D sees, real or generated, passes the same random pipeline; each transform is applied
to each image independently with probability ``p`` (times the transform's multiplier, 1 by default, 0 = off).
The groups and their parameter distributions, for images in [-1, 1] (the paper's range; translations are
fractions of the image size):

- *blit* (exact, no resampling): ``xflip`` left-right mirror; ``rotate90`` by ``k`` x 90 degrees, ``k`` uniform
  in {0, 1, 2, 3}; ``xint`` integer translation by ``round(t W)``, ``round(t' H)`` pixels,
  ``t, t' ~ U(-xint_max, xint_max)`` (0.125), the uncovered pixels mirrored from the image.
- *geometric* (one resampling for all of them, ``transforms.apply_geometric``): ``scale`` isotropic,
  ``s = 2^N(0, scale_std^2)`` (lognormal with log-std ``0.2 ln 2``); ``rotate`` a pre-rotation and a
  post-rotation, each with probability ``1 - sqrt(1 - p)`` (so that some rotation happens with probability
  ``p``), angles uniform in ``[-pi, pi] * rotate_max``; ``aniso`` x scaled by ``a = 2^N(0, aniso_std^2)``,
  y by ``1 / a``; ``xfrac`` translation by ``N(0, xfrac_std^2)`` (0.125) times W and H. Combined into one
  3x3 matrix per sample (``transforms.geometric_matrix``, the paper's order) and applied by reflection padding,
  2x upsampling with a low-pass FIR, a bilinear warp, low-pass and 2x downsampling.
- *colour* (one 4x4 matrix per sample, ``transforms.colour_matrix``): ``brightness`` adds
  ``N(0, brightness_std^2)`` (0.2); ``contrast`` multiplies by ``2^N(0, contrast_std^2)`` (0.5);
  ``lumaflip`` mirrors colours along the grey axis, with probability ``p`` and then a fair coin; ``hue``
  rotates about the grey axis by an angle uniform in ``[-pi, pi] * hue_max``; ``saturation`` scales the
  colour's part orthogonal to grey by ``2^N(0, saturation_std^2)`` (1). One-channel images get brightness,
  contrast and luma flip (negation); hue and saturation, which leave grey unchanged, are skipped.

The groups run in that order (blit, geometric, colour). A sample that no transform of a group touches leaves
that group bit-exact (at ``p = 0`` the whole pipeline is the identity). Where the images live decides how:
on the CPU, reading which samples were drawn costs nothing, so a group that no sample needs is skipped and the
resampling runs on the drawn samples only; on an accelerator every group that is on runs on the whole batch
and ``torch.where`` keeps the untouched samples, so that ``forward`` never waits for the device (a ``p`` known
on the host to be 0, ``fixed_p=0``, skips everything on any device).

Resampling filter: a 12-tap (``filter_taps``) Kaiser-windowed sinc low-pass (``lightning_gan.ops.kaiser_lowpass``),
cutoff at the input's Nyquist frequency (half band of the 2x rate) and transition width half the band, used
both to upsample and to downsample. The paper uses the 12-tap symlet-6 wavelet filter; a wavelet filter is
designed for perfect reconstruction, not for stop-band attenuation, whereas the Kaiser design states both edges:
content up to half the Nyquist frequency (0.25 cycles/pixel) passes each filter within 0.5 %, and its spectral
replicas at the 2x rate (0.75 cycles/pixel of the input and above) are attenuated by about 46 dB, at the same
length and so the same cost. The input's top octave (0.25-0.5 cycles/pixel) is softened (-6 dB per filter at the
Nyquist frequency), as by the paper's filter.

The controller (sec. 3.3): D's logits on augmented reals arrive through ``observe``; every ``interval``
iterations (4) ``update`` computes ``r_t = E[sign(D(T(x_real)))]`` over the reals observed in those iterations
on all processes and moves ``p <- clip(p + sign(r_t - target) * N / (ada_kimg * 1000), 0, MAX_P)`` with ``N``
the real images of those iterations (all processes), ``target`` 0.6 and ``ada_kimg`` 500: p can go from 0 to 1
in ``ada_kimg`` thousand images. ``fixed_p`` replaces the controller by a constant (``r_t`` is still measured).
All of its state lives in float32/int64 buffers (``p``, ``rt``, the accumulators), the same on every process,
since each iteration's (sign sum, count) is summed over processes before it is added, and saved with the module
for an exact resume; ``observe`` and ``update`` are tensor operations only (no host sync).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lightning_gan.augment.transforms import (
    apply_blit,
    apply_colour,
    apply_geometric,
    apply_selected,
    colour_matrix,
    geometric_matrix,
)
from lightning_gan.interfaces import Augmentation
from lightning_gan.ops import kaiser_lowpass, register_filter

__all__ = ["ADA", "MAX_P", "ADAParameters"]

MAX_P = 1.0 - 1e-6
"""The controller keeps ``p`` strictly below 1 (at most this): at ``p < 1`` the augmentations do not leak."""

BLIT = ("xflip", "rotate90", "xint")
GEOMETRIC = ("scale", "rotate", "aniso", "xfrac")
COLOUR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
_STRENGTHS = ("xint_max", "scale_std", "rotate_max", "aniso_std", "xfrac_std", "brightness_std", "contrast_std",
              "hue_max", "saturation_std")


@dataclass
class ADAParameters:
    """One draw of the pipeline for a batch of N images; a group that is off is None.

    Attributes:
        xflip: [N] bool, mirror left-right.
        rotations: [N] int64, number of 90-degree turns.
        shifts: [N, 2] int64, integer translation (tx, ty) in pixels.
        blit: [N] bool, samples that any blit touches.
        geometric: [N, 3, 3] forward matrices (pixel coordinates, ``transforms.geometric_matrix``).
        geometric_selected: [N] bool, samples whose geometric matrix is not the identity.
        colour: [N, 4, 4] colour matrices (``transforms.colour_matrix``).
        colour_selected: [N] bool, samples whose colour matrix is not the identity.
    """

    xflip: Tensor | None = None
    rotations: Tensor | None = None
    shifts: Tensor | None = None
    blit: Tensor | None = None
    geometric: Tensor | None = None
    geometric_selected: Tensor | None = None
    colour: Tensor | None = None
    colour_selected: Tensor | None = None


class ADA(Augmentation):
    """StyleGAN2-ADA's "bgc" augmentation pipeline with its adaptive probability p (see the module docstring).

    The transform multipliers (``xflip`` ... ``saturation``) scale p per transform: 1 = on, 0 = off (never
    drawn), other values as in the paper's pipeline (the probability is ``min(p * multiplier, 1)``).
    """

    p: Tensor
    rt: Tensor
    updates: Tensor
    sign_sum: Tensor
    count: Tensor
    images_seen: Tensor
    up_filter: Tensor
    down_filter: Tensor

    def __init__(self, *, initial_p: float = 0.0, fixed_p: float | None = None, target: float = 0.6,
                 interval: int = 4, ada_kimg: float = 500.0,
                 xflip: float = 1.0, rotate90: float = 1.0, xint: float = 1.0,
                 scale: float = 1.0, rotate: float = 1.0, aniso: float = 1.0, xfrac: float = 1.0,
                 brightness: float = 1.0, contrast: float = 1.0, lumaflip: float = 1.0, hue: float = 1.0,
                 saturation: float = 1.0,
                 xint_max: float = 0.125, scale_std: float = 0.2, rotate_max: float = 1.0, aniso_std: float = 0.2,
                 xfrac_std: float = 0.125, brightness_std: float = 0.2, contrast_std: float = 0.5,
                 hue_max: float = 1.0, saturation_std: float = 1.0, filter_taps: int = 12) -> None:
        """
        Args:
            initial_p: p at the start (0 = no augmentation until the controller raises it); in [0, MAX_P].
            fixed_p: a constant p in [0, 1] that turns the controller off; None = adaptive.
            target: the controller's target for ``r_t = E[sign(D(T(x_real)))]``, in (0, 1) (0.6).
            interval: adjust p every ``interval`` iterations (4).
            ada_kimg: thousands of real images over which p can move from 0 to 1 (500).
            xflip: multiplier of p for the left-right flip.
            rotate90: multiplier of p for the 90-degree rotations (square images only).
            xint: multiplier of p for the integer translation.
            scale: multiplier of p for the isotropic scaling.
            rotate: multiplier of p for the arbitrary rotations (pre and post, ``1 - sqrt(1 - p)`` each).
            aniso: multiplier of p for the anisotropic scaling.
            xfrac: multiplier of p for the fractional translation.
            brightness: multiplier of p for the brightness offset.
            contrast: multiplier of p for the contrast factor.
            lumaflip: multiplier of p for the luma flip (then a fair coin).
            hue: multiplier of p for the hue rotation (RGB only).
            saturation: multiplier of p for the saturation factor (RGB only).
            xint_max: largest integer translation as a fraction of the image size (0.125).
            scale_std: standard deviation of log2 of the isotropic scale (0.2).
            rotate_max: largest rotation angle as a fraction of pi (1 = any angle).
            aniso_std: standard deviation of log2 of the anisotropic scale (0.2).
            xfrac_std: standard deviation of the fractional translation as a fraction of the size (0.125).
            brightness_std: standard deviation of the brightness offset, in the [-1, 1] image range (0.2).
            contrast_std: standard deviation of log2 of the contrast factor (0.5).
            hue_max: largest hue rotation as a fraction of pi (1 = any angle).
            saturation_std: standard deviation of log2 of the saturation factor (1).
            filter_taps: length of the Kaiser low-pass used to upsample and downsample (even, >= 4; 12).
        """
        super().__init__()
        _check_p("initial_p", initial_p, MAX_P)
        if fixed_p is not None:
            _check_p("fixed_p", fixed_p, 1.0)
        if not 0.0 < target < 1.0:
            raise ValueError(f"ADA target must lie strictly between 0 and 1 (the paper uses 0.6), got {target!r}")
        if isinstance(interval, bool) or int(interval) != interval or interval < 1:
            raise ValueError(f"ADA interval must be an integer number of iterations >= 1 (4), got {interval!r}")
        if not ada_kimg > 0:
            raise ValueError(f"ADA ada_kimg must be positive (500), got {ada_kimg!r}")
        if isinstance(filter_taps, bool) or int(filter_taps) != filter_taps or filter_taps < 4 or filter_taps % 2:
            raise ValueError(f"ADA filter_taps must be an even integer >= 4 (12), got {filter_taps!r}")
        self.initial_p = float(initial_p)
        self.fixed_p = None if fixed_p is None else float(fixed_p)
        self.target = float(target)
        self.interval = int(interval)
        self.ada_kimg = float(ada_kimg)
        values = dict(xflip=xflip, rotate90=rotate90, xint=xint, scale=scale, rotate=rotate, aniso=aniso,
                      xfrac=xfrac, brightness=brightness, contrast=contrast, lumaflip=lumaflip, hue=hue,
                      saturation=saturation, xint_max=xint_max, scale_std=scale_std, rotate_max=rotate_max,
                      aniso_std=aniso_std, xfrac_std=xfrac_std, brightness_std=brightness_std,
                      contrast_std=contrast_std, hue_max=hue_max, saturation_std=saturation_std)
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"ADA {name} must be a number >= 0 (0 switches it off), got {value!r}")
            setattr(self, name, float(value))
        self.filter_taps = int(filter_taps)
        # Half band at the 2x rate (the input's Nyquist frequency), transition width half the band: passes
        # <= 0.25 cycles/pixel of the input, stops its replicas from 0.75 (see the module docstring).
        lowpass = kaiser_lowpass(self.filter_taps, cutoff=0.5, width=0.5)
        register_filter(self, "up_filter", lowpass)
        register_filter(self, "down_filter", lowpass)
        initial = self.initial_p if self.fixed_p is None else self.fixed_p
        self.register_buffer("p", torch.tensor(initial, dtype=torch.float32))
        self.register_buffer("rt", torch.tensor(0.0, dtype=torch.float32))  # r_t of the last adjustment (0 before)
        self.register_buffer("updates", torch.tensor(0, dtype=torch.int64))  # calls of update so far
        # Sums since the last adjustment, over all processes.
        self.register_buffer("sign_sum", torch.tensor(0.0, dtype=torch.float32))
        self.register_buffer("count", torch.tensor(0.0, dtype=torch.float32))
        self.register_buffer("images_seen", torch.tensor(0, dtype=torch.int64))
        # This process's (sign sum, count) of the current iteration, reduced and cleared by update().
        self.register_buffer("pending", torch.zeros(2, dtype=torch.float32), persistent=False)

    # -- the pipeline ---------------------------------------------------------------------------------
    def _on(self, names: tuple[str, ...]) -> bool:
        return any(getattr(self, name) > 0 for name in names)

    def sample_parameters(self, n: int, height: int, width: int, channels: int, *,
                          p: float | Tensor | None = None, device: torch.device | str | None = None,
                          generator: torch.Generator | None = None) -> ADAParameters:
        """Draw the transforms of ``n`` images on ``device`` from ``generator`` (the global RNG when None).

        Args:
            n: batch size.
            height: image height.
            width: image width.
            channels: image channels (hue and saturation are drawn for 3 only).
            p: the probability; default the current one (``fixed_p`` or the controller's ``p``).
            device: where to draw (the images' device).
            generator: a ``torch.Generator`` on ``device``, or None for the global RNG.
        """
        p = self._probability() if p is None else p
        p = torch.as_tensor(p, dtype=torch.float32, device=device)
        # The matrices in float32 even under autocast (which would build them in float16/bfloat16).
        kind = p.device.type
        with torch.autocast(kind, enabled=False) if kind in ("cpu", "cuda") else contextlib.nullcontext():
            return self._sample(n, height, width, channels, p, generator)

    def _sample(self, n: int, height: int, width: int, channels: int, p: Tensor,
                generator: torch.Generator | None) -> ADAParameters:
        device = p.device

        def rand(*shape: int) -> Tensor:  # U[0, 1)
            return torch.rand(*shape, device=device, generator=generator)

        def randn(*shape: int) -> Tensor:  # N(0, 1)
            return torch.randn(*shape, device=device, generator=generator)

        def gate(probability: Tensor) -> Tensor:  # [N] bool: the transform fires
            return rand(n) < probability

        def chance(multiplier: float) -> Tensor:  # a transform's probability, min(p * multiplier, 1)
            return (p * multiplier).clamp(max=1.0)

        def uniform(scale: float) -> Tensor:  # [N] ~ U(-scale, scale)
            return (rand(n) * 2 - 1) * scale

        def lognormal(std: float) -> Tensor:  # [N] ~ 2^N(0, std^2)
            return torch.exp2(randn(n) * std)

        zeros = torch.zeros(n, device=device)
        ones = torch.ones(n, device=device)
        none = torch.zeros(n, dtype=torch.bool, device=device)
        size = torch.tensor([width, height], dtype=torch.float32, device=device)
        out = ADAParameters()
        if self._on(BLIT):
            flips = gate(chance(self.xflip)) if self.xflip > 0 else none
            rotations = torch.zeros(n, dtype=torch.long, device=device)
            if self.rotate90 > 0:
                turns = torch.randint(0, 4, (n,), device=device, generator=generator)
                rotations = torch.where(gate(chance(self.rotate90)), turns, 0)
            shifts = torch.zeros(n, 2, dtype=torch.long, device=device)
            if self.xint > 0:
                moves = gate(chance(self.xint))
                t = (rand(n, 2) * 2 - 1) * self.xint_max * size  # pixels
                shifts = torch.where(moves[:, None], torch.round(t), 0).long()
            out.xflip, out.rotations, out.shifts = flips, rotations, shifts
            out.blit = flips | (rotations != 0) | (shifts != 0).any(1)
        if self._on(GEOMETRIC):
            scaled = gate(chance(self.scale)) if self.scale > 0 else none
            scale = torch.where(scaled, lognormal(self.scale_std), ones)
            # Two rotations of probability 1 - sqrt(1 - P) each: some rotation with probability P.
            p_rot = 1 - torch.sqrt(1 - chance(self.rotate))
            pre_on = gate(p_rot) if self.rotate > 0 else none
            pre = torch.where(pre_on, uniform(math.pi * self.rotate_max), zeros)
            stretched = gate(chance(self.aniso)) if self.aniso > 0 else none
            aniso = torch.where(stretched, lognormal(self.aniso_std), ones)
            post_on = gate(p_rot) if self.rotate > 0 else none
            post = torch.where(post_on, uniform(math.pi * self.rotate_max), zeros)
            shifted = gate(chance(self.xfrac)) if self.xfrac > 0 else none
            translation = torch.where(shifted[:, None], randn(n, 2) * self.xfrac_std * size, 0)
            out.geometric = geometric_matrix(scale=scale, pre_angle=pre, aniso=aniso, post_angle=post,
                                             translation=translation)
            out.geometric_selected = scaled | pre_on | stretched | post_on | shifted
        if self._on(COLOUR):
            rgb = channels == 3
            lit = gate(chance(self.brightness)) if self.brightness > 0 else none
            brightness = torch.where(lit, randn(n) * self.brightness_std, zeros)
            contrasted = gate(chance(self.contrast)) if self.contrast > 0 else none
            contrast = torch.where(contrasted, lognormal(self.contrast_std), ones)
            flipped = none
            if self.lumaflip > 0:  # with probability p, then a fair coin
                flipped = gate(chance(self.lumaflip)) & (rand(n) < 0.5)
            turned = gate(chance(self.hue)) if self.hue > 0 and rgb else none
            hue = torch.where(turned, uniform(math.pi * self.hue_max), zeros)
            saturated = gate(chance(self.saturation)) if self.saturation > 0 and rgb else none
            saturation = torch.where(saturated, lognormal(self.saturation_std), ones)
            out.colour = colour_matrix(brightness=brightness, contrast=contrast, lumaflip=flipped.float(), hue=hue,
                                       saturation=saturation)
            out.colour_selected = lit | contrasted | flipped | turned | saturated
        return out

    def apply(self, images: Tensor, params: ADAParameters) -> Tensor:
        """The pipeline with given parameters: blit, geometric, colour (``transforms``' functions).

        Args:
            images: [N, C, H, W].
            params: a draw for these images (``sample_parameters``).
        """
        subset = images.device.type == "cpu"  # see the module docstring
        x = images
        if params.blit is not None:
            rotations = params.rotations if self.rotate90 > 0 else None
            x = apply_selected(x, params.blit, lambda y, rows: apply_blit(
                y, xflip=params.xflip[rows], rotations=None if rotations is None else rotations[rows],
                shifts=params.shifts[rows]), subset=subset)
        if params.geometric is not None:
            x = apply_selected(x, params.geometric_selected, lambda y, rows: apply_geometric(
                y, params.geometric[rows], up_filter=self.up_filter, down_filter=self.down_filter), subset=subset)
        if params.colour is not None:
            x = apply_selected(x, params.colour_selected, lambda y, rows: apply_colour(y, params.colour[rows]),
                               subset=subset)
        return x

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:  # [N, C, H, W]
        """The pipeline at the current p, drawn from ``generator`` (on the images' device; global RNG if None)."""
        if images.dim() != 4:
            raise ValueError(f"ADA takes images [N, C, H, W], got shape {list(images.shape)}")
        n, c, h, w = images.shape
        if self.rotate90 > 0 and h != w:
            raise ValueError(f"ADA's 90-degree rotations need square images, got {h}x{w}; pass rotate90=0")
        if self._on(GEOMETRIC) and min(h, w) < 2:
            raise ValueError(f"ADA's geometric transforms need images of at least 2x2 pixels, got {h}x{w}; "
                             f"pass scale=rotate=aniso=xfrac=0")
        if self._on(COLOUR) and c not in (1, 3):
            raise ValueError(f"ADA's colour transforms need 1 or 3 channels, got {c}; "
                             f"pass brightness=contrast=lumaflip=hue=saturation=0")
        p = self._probability()
        if isinstance(p, float) and p == 0.0:
            return images
        params = self.sample_parameters(n, h, w, c, p=p, device=images.device, generator=generator)
        return self.apply(images, params)

    def _probability(self) -> float | Tensor:
        """``fixed_p`` (a host number) or the controller's ``p`` buffer."""
        return self.p if self.fixed_p is None else self.fixed_p

    # -- the controller -----------------------------------------------------------------------------
    def observe(self, real_logits: Tensor) -> None:
        """Add the signs of D's logits on augmented reals of one D step to this iteration's sums."""
        logits = real_logits.detach()
        self.pending[0] += torch.sign(logits).float().sum()
        self.pending[1] += logits.numel()

    def update(self, *, images: int, reduce: Callable[[Tensor], Tensor]) -> None:
        """End of an iteration: sum its (sign sum, count) over processes; every ``interval`` calls, move p.

        Args:
            images: real images of this iteration over all processes.
            reduce: sums a tensor over processes (the identity on one process).
        """
        totals = reduce(self.pending.clone())  # [2]: sign sum, count over processes
        self.pending.zero_()
        self.sign_sum += totals[0]
        self.count += totals[1]
        self.images_seen += int(images)
        self.updates += 1
        due = (torch.remainder(self.updates, self.interval) == 0) & (self.count > 0)
        rt = self.sign_sum / self.count.clamp(min=1.0)
        step = self.images_seen.float() / (self.ada_kimg * 1000.0)
        if self.fixed_p is None:
            moved = (self.p + torch.sign(rt - self.target) * step).clamp(0.0, MAX_P)
            self.p.copy_(torch.where(due, moved, self.p))
        self.rt.copy_(torch.where(due, rt, self.rt))
        restart = torch.remainder(self.updates, self.interval) == 0
        self.sign_sum.masked_fill_(restart, 0.0)
        self.count.masked_fill_(restart, 0.0)
        self.images_seen.masked_fill_(restart, 0)

    def summary(self) -> dict[str, Tensor]:
        """``{"p": the current probability, "rt": r_t of the last adjustment (0 before the first)}``."""
        return {"p": self.p.detach().clone(), "rt": self.rt.detach().clone()}

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, local_metadata: dict[str, Any],
                              strict: bool, missing_keys: list[str], unexpected_keys: list[str],
                              error_msgs: list[str]) -> None:
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if self.fixed_p is not None:  # a constant p wins over a checkpoint's adaptive one
            self.p.fill_(self.fixed_p)


def _check_p(name: str, value: float, top: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= top:
        bound = "1" if top == 1.0 else "1 (exclusive)"
        raise ValueError(f"ADA {name} must be a probability between 0 and {bound}, got {value!r}")
