"""The maths of ADA's augmentations as pure functions: pixel blitting, geometric warps, colour matrices.

Each function takes its parameters explicitly (one value per sample); ``ADA`` draws them and calls these.
Images are [N, C, H, W], in [-1, 1] by the project's convention (the colour transforms act around 0, the
mid-grey of that range).

Coordinates (geometric transforms): pixel units with the origin at the image centre, x to the right and y
downwards; pixel (i, j) (row i, column j) has its centre at ``(j + 1/2 - W/2, i + 1/2 - H/2)``. A matrix
``G`` [N, 3, 3] maps input to output coordinates in homogeneous form, and the output image is
``out(q) = in(G^-1 q)``. Outside the image the input is continued by reflection about its border pixels'
centres (``torch.nn.functional.pad(mode="reflect")``: the border pixel is not repeated), periodically, so
that no hard edge or constant band tells D where an image was shifted or turned.

Resampling without aliasing (Karras et al. 2020, "Training Generative Adversarial Networks with Limited
Data", Appendix B): ``apply_geometric`` upsamples 2x (zero insertion + low-pass FIR), samples the warped
image on a 2x grid with bilinear interpolation (``grid_sample`` at the inverse matrix), low-pass filters and
downsamples 2x. Bilinear interpolation at the original rate (``warp_bilinear``) leaks the spectral replicas of
the image (at ``1 - f`` cycles/pixel for content at ``f``) back into the band; at the 2x rate they lie where
the low-pass filters remove them.

Colour (homogeneous [r, g, b, 1], a 4x4 matrix per sample, applied as ``out = M [r, g, b, 1]^T``) with the
luma axis ``v = [1, 1, 1] / sqrt(3)``:

- brightness ``b``: add ``b`` to every channel;
- contrast ``c``: multiply by ``c``;
- luma flip ``i`` in {0, 1}: ``I - 2 i v v^T`` (mirror along the grey axis: a grey ``a`` becomes ``-a``);
- hue rotation ``theta``: rotation about ``v``, ``cos(theta) I + sin(theta) [v]_x + (1 - cos(theta)) v v^T``
  (``[v]_x`` the cross-product matrix; ``theta = 2 pi / 3`` maps (r, g, b) to (b, r, g));
- saturation ``s``: ``v v^T + s (I - v v^T)`` (scales the part of a colour orthogonal to grey);

combined in that order, ``M = S(s) H(theta) L(i) C(c) B(b)``. One-channel images are treated as the grey
colour ``(x, x, x)``, transformed and averaged back to one channel: brightness, contrast and luma flip
(negation) apply; hue and saturation leave grey unchanged (``ADA`` does not draw them for one channel).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_gan.ops import upfirdn2d, upsample2d

__all__ = [
    "affine_inverse",
    "apply_blit",
    "apply_colour",
    "apply_geometric",
    "apply_selected",
    "brightness_matrix",
    "colour_matrix",
    "contrast_matrix",
    "downsampling_operator",
    "geometric_matrix",
    "hue_matrix",
    "lumaflip_matrix",
    "reflect_index",
    "rotation_matrix",
    "saturation_matrix",
    "scaling_matrix",
    "translation_matrix",
    "upsampling_operator",
    "warp_bilinear",
]

def _check_images(images: Tensor, who: str) -> None:
    if images.dim() != 4:
        raise ValueError(f"{who} takes images [N, C, H, W], got shape {list(images.shape)}")


def apply_selected(images: Tensor, selected: Tensor, transform: Callable[[Tensor, Tensor | slice], Tensor], *,
                   subset: bool) -> Tensor:
    """``transform`` applied to the samples where ``selected`` [N] (bool) is true; the others returned bit-exact.

    Args:
        images: [N, C, H, W].
        selected: [N] bool, which samples the transform changes.
        transform: ``transform(x, rows)`` transforms the images ``x`` [M, C, H, W], which are ``images[rows]``,
            with the parameters of those rows (``rows`` is an index tensor or ``slice(None)``); each output
            sample depends only on its own input sample.
        subset: run ``transform`` only on the selected samples (reading ``selected`` on the host, which costs
            nothing on the CPU) and return ``images`` itself when none is selected; otherwise run it on the
            whole batch and pick per sample with ``torch.where`` (no device sync: for accelerators).
    """
    everything = slice(None)
    if not subset:
        changed = transform(images, everything).to(images.dtype)
        return torch.where(selected[:, None, None, None], changed, images)
    index = selected.nonzero().flatten()
    if index.numel() == 0:
        return images
    if index.numel() == images.shape[0]:
        return transform(images, everything).to(images.dtype)
    return images.index_copy(0, index, transform(images[index], index).to(images.dtype))


# -- pixel blitting -----------------------------------------------------------------------------------
def reflect_index(index: Tensor, size: int) -> Tensor:
    """Integer indices folded onto ``0..size-1`` by reflection about the end samples, periodic in ``2 (size - 1)``.

    ``reflect_index(-k) = k`` and ``reflect_index(size - 1 + k) = size - 1 - k`` (the end sample is not repeated,
    as ``F.pad(mode="reflect")``, but any distance works). ``size = 1`` maps everything to 0.
    """
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    m = torch.remainder(index, period)
    return torch.where(m < size, m, period - m)


def apply_blit(images: Tensor, *, xflip: Tensor | None = None, rotations: Tensor | None = None,
               shifts: Tensor | None = None) -> Tensor:
    """ADA's pixel blitting, exact (every output pixel is an input pixel): x-flip, then 90-degree rotations,
    then integer translation.

    ``out = translate(rot90(flip(x), k), t)`` per sample, with ``flip`` = ``torch.flip(x, dims=[-1])`` where
    ``xflip``, ``rot90`` = ``torch.rot90(x, k, dims=(-2, -1))`` and ``translate(x, (tx, ty))[i, j] =
    x[reflect(i - ty), reflect(j - tx)]`` (``reflect_index``: mirrored about the border pixels).

    Args:
        images: [N, C, H, W]; square when ``rotations`` is given.
        xflip: [N] bool, mirror left-right; None = no sample.
        rotations: [N] int in 0..3, the number of 90-degree turns (``torch.rot90``'s direction); None = none.
        shifts: [N, 2] int, ``(tx, ty)`` in pixels (right, down); None = no shift.
    """
    _check_images(images, "apply_blit")
    n, c, h, w = images.shape
    device = images.device
    rows = torch.arange(h, device=device)[None, :, None].expand(n, h, w)  # [N, H, W] output row
    cols = torch.arange(w, device=device)[None, None, :].expand(n, h, w)  # [N, H, W] output column
    # Walk back from each output pixel to its source: the inverse of the last transform first.
    if shifts is not None:
        shifts = shifts.to(device=device, dtype=torch.long)
        rows = reflect_index(rows - shifts[:, 1, None, None], h)
        cols = reflect_index(cols - shifts[:, 0, None, None], w)
    if rotations is not None:
        if h != w:
            raise ValueError(f"90-degree rotations need square images, got {h}x{w}")
        k = torch.remainder(rotations.to(device=device, dtype=torch.long), 4)[:, None, None]  # [N, 1, 1]
        # rot90(y, k)[a, b] = y[b, n-1-a] (k = 1), y[n-1-a, n-1-b] (k = 2), y[n-1-b, a] (k = 3).
        last = h - 1
        rows, cols = (
            torch.where(k == 0, rows, torch.where(k == 1, cols, torch.where(k == 2, last - rows, last - cols))),
            torch.where(k == 0, cols, torch.where(k == 1, last - rows, torch.where(k == 2, last - cols, rows))),
        )
    if xflip is not None:
        cols = torch.where(xflip.to(device=device, dtype=torch.bool)[:, None, None], w - 1 - cols, cols)
    source = (rows * w + cols).reshape(n, 1, h * w).expand(n, c, h * w)  # [N, C, H*W]
    return images.reshape(n, c, h * w).gather(2, source).reshape(n, c, h, w)


# -- geometric transforms -----------------------------------------------------------------------------
def _matrix(entries: list[list[Tensor | float]], like: Tensor) -> Tensor:
    """[N, 3, 3] from a 3x3 nested list of [N] tensors and numbers."""
    rows = [torch.stack([torch.as_tensor(e, dtype=like.dtype, device=like.device).expand_as(like) for e in row], -1)
            for row in entries]
    return torch.stack(rows, -2)


def translation_matrix(tx: Tensor, ty: Tensor) -> Tensor:
    """[N, 3, 3]: ``(x, y) -> (x + tx, y + ty)``."""
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx)


def scaling_matrix(sx: Tensor, sy: Tensor) -> Tensor:
    """[N, 3, 3]: ``(x, y) -> (sx x, sy y)`` about the image centre."""
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx)


def rotation_matrix(angle: Tensor) -> Tensor:
    """[N, 3, 3]: ``(x, y) -> (cos a x - sin a y, sin a x + cos a y)`` about the centre (clockwise on screen,
    since y points down)."""
    c, s = torch.cos(angle), torch.sin(angle)
    return _matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], angle)


def geometric_matrix(*, scale: Tensor, pre_angle: Tensor, aniso: Tensor, post_angle: Tensor,
                     translation: Tensor) -> Tensor:
    """ADA's general geometric transform [N, 3, 3] in pixel coordinates (see the module docstring), applied in
    the paper's order: isotropic scaling, pre-rotation, anisotropic scaling, post-rotation, translation.

    ``G = T(t) R(post) diag(a, 1/a) R(pre) diag(s, s)``.

    Args:
        scale: [N] isotropic scale ``s`` (> 0).
        pre_angle: [N] angle of the first rotation in radians.
        aniso: [N] anisotropic scale ``a``: x is scaled by ``a``, y by ``1 / a``.
        post_angle: [N] angle of the second rotation in radians.
        translation: [N, 2] ``(tx, ty)`` in pixels.
    """
    g = scaling_matrix(scale, scale)
    g = rotation_matrix(pre_angle) @ g
    g = scaling_matrix(aniso, 1 / aniso) @ g
    g = rotation_matrix(post_angle) @ g
    return translation_matrix(translation[:, 0], translation[:, 1]) @ g


def affine_inverse(matrices: Tensor) -> Tensor:
    """``G^-1`` [N, 3, 3] of affine matrices ``G = [[A, t], [0, 1]]``: ``[[A^-1, -A^-1 t], [0, 1]]``, with the 2x2
    inverse in closed form (no solver, which on an accelerator would wait for its singularity check)."""
    a, b, c, d = matrices[:, 0, 0], matrices[:, 0, 1], matrices[:, 1, 0], matrices[:, 1, 1]
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    tx, ty = matrices[:, 0, 2], matrices[:, 1, 2]
    return _matrix([[ia, ib, -(ia * tx + ib * ty)], [ic, id_, -(ic * tx + id_ * ty)], [0, 0, 1]], a)


def _source_grid(matrices: Tensor, height: int, width: int, xs: Tensor, ys: Tensor) -> tuple[Tensor, Tensor]:
    """Input coordinates (from the top-left image corner, in pixels) ``G^-1 q`` of output points ``q`` given by
    their coordinates from the top-left corner ``xs`` [Wo] and ``ys`` [Ho]; each [N, Ho, Wo]."""
    inv = affine_inverse(matrices.to(torch.float64)).to(xs.dtype)  # [N, 3, 3]
    qx = (xs - width / 2)[None, None, :]  # [1, 1, Wo] centred
    qy = (ys - height / 2)[None, :, None]  # [1, Ho, 1]
    u = inv[:, 0, 0, None, None] * qx + inv[:, 0, 1, None, None] * qy + inv[:, 0, 2, None, None] + width / 2
    v = inv[:, 1, 0, None, None] * qx + inv[:, 1, 1, None, None] * qy + inv[:, 1, 2, None, None] + height / 2
    return u, v


def warp_bilinear(images: Tensor, matrices: Tensor) -> Tensor:
    """``out(q) = in(G^-1 q)`` by plain bilinear interpolation at the original rate: the aliasing baseline.

    One ``grid_sample`` (bilinear, reflection about the border pixels' centres) at the output pixel centres,
    without the 2x up/down-sampling of ``apply_geometric``: cheaper, and it folds the image's spectral
    replicas back into the band (what ``apply_geometric`` avoids). Kept for comparisons (tests, benchmarks).

    Args:
        images: [N, C, H, W], at least 2x2.
        matrices: [N, 3, 3] forward matrices ``G`` (pixel coordinates, see the module docstring).
    """
    _check_images(images, "warp_bilinear")
    h, w = images.shape[-2:]
    dtype = images.dtype if images.dtype == torch.float64 else torch.float32
    xs = torch.arange(w, device=images.device, dtype=dtype) + 0.5
    ys = torch.arange(h, device=images.device, dtype=dtype) + 0.5
    u, v = _source_grid(matrices.to(images.device), h, w, xs, ys)
    # align_corners=True: -1 and 1 are the first and last pixel centres (0.5 and W - 0.5), and reflection
    # mirrors about them.
    grid = torch.stack([(u - 0.5) / (w - 1) * 2 - 1, (v - 0.5) / (h - 1) * 2 - 1], -1)  # [N, H, W, 2]
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="reflection",
                         align_corners=True)


def apply_geometric(images: Tensor, matrices: Tensor, *, up_filter: Tensor, down_filter: Tensor) -> Tensor:
    """``out(q) = in(G^-1 q)`` in one resampling that does not alias (Karras et al. 2020, Appendix B).

    1. Reflection padding, 2x upsampling (zero insertion + ``up_filter``, ``upsample2d``) and a crop to the 2x
       samples between the border pixels' centres, ``[1/2, W - 1/2]``: the upsampled image of the reflected
       input, which is itself mirror-symmetric about those two lines (``upsampling_operator``).
    2. The warp on a 2x grid (samples at ``1/4 + k/2`` pixels, with ``(len(down_filter) - 2) / 2`` extra
       samples past each border for the next step): ``grid_sample`` (bilinear) at ``G^-1 q``, with reflection
       about the crop's borders, which continues the upsampled image exactly as the reflected input would
       (any margin the matrix needs, no data-dependent padding).
    3. ``down_filter`` and 2x downsampling (``upfirdn2d``, no padding, ``downsampling_operator``): [N, C, H, W],
       output pixel ``o`` centred on ``o + 1/2``.

    Steps 1 and 3 are separable and linear: each runs as two matrix products with its per-axis operator (built
    once per size from ``upsample2d`` / ``upfirdn2d`` themselves), the fastest primitive on the CPU for 12-tap
    filters at these sizes. Both filters are 1-D, of even length (so that the 2x grid lines up with the pixel
    centres) and of unit DC gain. Any invertible ``G`` works, however far it reaches outside the image.

    Args:
        images: [N, C, H, W], at least 2x2.
        matrices: [N, 3, 3] forward matrices ``G`` (pixel coordinates, see the module docstring).
        up_filter: [k] low-pass for the 2x upsampling (cutoff at the input's Nyquist frequency).
        down_filter: [k] low-pass before the 2x downsampling.
    """
    _check_images(images, "apply_geometric")
    h, w = images.shape[-2:]
    if h < 2 or w < 2:
        raise ValueError(f"apply_geometric needs images of at least 2x2 pixels, got {h}x{w}")
    ku, kd = up_filter.shape[-1], down_filter.shape[-1]
    if up_filter.dim() != 1 or down_filter.dim() != 1 or ku % 2 or kd % 2:
        raise ValueError(f"apply_geometric takes 1-D filters of even length, got shapes {list(up_filter.shape)} "
                         f"and {list(down_filter.shape)}")
    dtype = images.dtype if images.dtype == torch.float64 else torch.float32
    # 1. [N, C, 2H - 2, 2W - 2]
    up_filter = up_filter.to(images.device, dtype)
    down_filter = down_filter.to(images.device, dtype)
    up = _separable(images, upsampling_operator(h, up_filter).to(images.dtype),
                    upsampling_operator(w, up_filter).to(images.dtype))
    # 2. The 2x output grid: sample k at 1/4 + (k - e)/2, k = 0 .. 2W + 2e - 1, with e extra samples per side.
    e = (kd - 2) // 2
    xs = (torch.arange(2 * w + 2 * e, device=images.device, dtype=dtype) - e) / 2 + 0.25
    ys = (torch.arange(2 * h + 2 * e, device=images.device, dtype=dtype) - e) / 2 + 0.25
    u, v = _source_grid(matrices.to(images.device), h, w, xs, ys)
    # align_corners=False: -1 and 1 are the outer borders of the crop, 1/2 and W - 1/2.
    grid = torch.stack([(u - 0.5) / (w - 1) * 2 - 1, (v - 0.5) / (h - 1) * 2 - 1], -1)  # [N, 2H+2e, 2W+2e, 2]
    warped = F.grid_sample(up, grid.to(up.dtype), mode="bilinear", padding_mode="reflection", align_corners=False)
    # 3. [N, C, H, W]
    return _separable(warped, downsampling_operator(h, down_filter).to(warped.dtype),
                      downsampling_operator(w, down_filter).to(warped.dtype))


def _separable(x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``rows @ x @ cols^T`` per image and channel: [N, C, H, W] -> [N, C, Ho, Wo] with ``rows`` [Ho, H] and
    ``cols`` [Wo, W]."""
    return torch.matmul(rows, torch.matmul(x, cols.t()))


def upsampling_operator(size: int, up_filter: Tensor) -> Tensor:
    """Step 1 of ``apply_geometric`` along one axis as a matrix [2 size - 2, size] (the filter's device and dtype).

    Column ``j`` is ``upsample2d`` (along this axis only, ``up_filter``) of the unit impulse at ``j``, reflected
    about the end samples (``reflect_index``) far enough for the filter, cropped to the ``2 size - 2`` upsampled
    samples at ``1/4 + 1/2 + k/2``, ``k = 0 .. 2 size - 3`` (pixel units from the first pixel's outer edge).
    Built with tensor operations only (no host read of the filter), cheap next to the warp it serves.
    """
    m = up_filter.shape[-1] // 4 + 1  # reflected samples per side: the filter reaches k / 4 input samples
    impulses = torch.eye(size, dtype=up_filter.dtype, device=up_filter.device)[:, None, None, :]  # [size, 1, 1, size]
    padded = impulses.index_select(3, reflect_index(torch.arange(-m, size + m, device=up_filter.device), size))
    # upsample2d's sample o of the padded signal lies at (o + 1/2) / 2 - m; keep o = 2m + 1 .. 2 size + 2m - 2,
    # the 2 size - 2 samples in [1/2, size - 1/2] (2m + 1 cropped at each end by negative padding).
    up = upsample2d(padded, up_filter[None, :], up=(2, 1), padding=(-(2 * m + 1), -(2 * m + 1), 0, 0))
    return up.reshape(size, 2 * size - 2).t()  # [2 size - 2, size]


def downsampling_operator(size: int, down_filter: Tensor) -> Tensor:
    """Step 3 of ``apply_geometric`` along one axis as a matrix [size, 2 size + 2e], ``e = (len(f) - 2) / 2`` (the
    filter's device and dtype): column ``j`` is ``upfirdn2d(impulse_j, down_filter, down=2)`` along this axis."""
    long = 2 * size + down_filter.shape[-1] - 2
    impulses = torch.eye(long, dtype=down_filter.dtype, device=down_filter.device)[:, None, None, :]
    down = upfirdn2d(impulses, down_filter[None, :], down=(2, 1))  # [long, 1, 1, size]
    return down.reshape(long, size).t()  # [size, long]


# -- colour -----------------------------------------------------------------------------------------
def _colour(entries: Tensor) -> Tensor:
    """[N, 4, 4] homogeneous colour matrices from 3x3 parts [N, 3, 3]."""
    out = torch.zeros(*entries.shape[:-2], 4, 4, dtype=entries.dtype, device=entries.device)
    out[..., :3, :3] = entries
    out[..., 3, 3] = 1
    return out


def _eye(like: Tensor) -> Tensor:
    return torch.eye(3, dtype=like.dtype, device=like.device).expand(like.shape[0], 3, 3)


def _luma(like: Tensor) -> Tensor:
    """[3, 3] ``v v^T`` (all entries 1/3)."""
    return torch.full((3, 3), 1 / 3, dtype=like.dtype, device=like.device)


def brightness_matrix(b: Tensor) -> Tensor:
    """[N, 4, 4]: ``(r, g, b) -> (r + b, g + b, b + b)``."""
    out = _colour(_eye(b))
    out[:, :3, 3] = b[:, None]
    return out


def contrast_matrix(c: Tensor) -> Tensor:
    """[N, 4, 4]: ``(r, g, b) -> c (r, g, b)``."""
    return _colour(_eye(c) * c[:, None, None])


def lumaflip_matrix(i: Tensor) -> Tensor:
    """[N, 4, 4]: ``I - 2 i v v^T`` with ``i`` in {0, 1} (1 mirrors colours along the grey axis)."""
    return _colour(_eye(i) - 2 * i[:, None, None] * _luma(i))


def hue_matrix(theta: Tensor) -> Tensor:
    """[N, 4, 4]: rotation by ``theta`` about the grey axis, ``cos I + sin [v]_x + (1 - cos) v v^T``."""
    cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    cross = torch.tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]], dtype=theta.dtype,
                         device=theta.device) / math.sqrt(3)  # [v]_x
    return _colour(cos * _eye(theta) + sin * cross + (1 - cos) * _luma(theta))


def saturation_matrix(s: Tensor) -> Tensor:
    """[N, 4, 4]: ``v v^T + s (I - v v^T)``."""
    luma = _luma(s)
    return _colour(luma + s[:, None, None] * (_eye(s) - luma))


def colour_matrix(*, brightness: Tensor, contrast: Tensor, lumaflip: Tensor, hue: Tensor,
                  saturation: Tensor) -> Tensor:
    """ADA's colour transform [N, 4, 4]: ``S(saturation) H(hue) L(lumaflip) C(contrast) B(brightness)``.

    Args:
        brightness: [N] added to every channel (0 = none).
        contrast: [N] factor (1 = none).
        lumaflip: [N] 0 or 1 (0 = none).
        hue: [N] rotation angle about the grey axis in radians (0 = none).
        saturation: [N] factor of the part orthogonal to grey (1 = none).
    """
    m = contrast_matrix(contrast) @ brightness_matrix(brightness)
    m = lumaflip_matrix(lumaflip) @ m
    m = hue_matrix(hue) @ m
    return saturation_matrix(saturation) @ m


def apply_colour(images: Tensor, matrices: Tensor) -> Tensor:
    """``out = M [r, g, b, 1]^T`` per pixel for 3 channels; for 1 channel the grey ``(x, x, x)`` is transformed and
    averaged back, ``out = (1/3) 1^T (M_3x3 1 x + M_t)``.

    Args:
        images: [N, C, H, W] with C = 3 (RGB) or 1 (grey).
        matrices: [N, 4, 4] colour matrices.
    """
    _check_images(images, "apply_colour")
    m = matrices.to(device=images.device, dtype=images.dtype)
    channels = images.shape[1]
    if channels == 3:
        return torch.einsum("nij,njhw->nihw", m[:, :3, :3], images) + m[:, :3, 3, None, None]
    if channels == 1:
        gain = m[:, :3, :3].sum((1, 2)) / 3  # [N]
        offset = m[:, :3, 3].sum(1) / 3  # [N]
        return images * gain[:, None, None, None] + offset[:, None, None, None]
    raise ValueError(f"colour transforms need 1 (grey) or 3 (RGB) channels, got {channels}; switch them off "
                     f"(brightness=contrast=lumaflip=hue=saturation=0) for other images")
