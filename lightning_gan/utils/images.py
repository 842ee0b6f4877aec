"""Pictures of generator output, drawn with PIL only: image grids and 2-D scatter plots.

* ``to_uint8`` maps generator output in [-1, 1] to bytes (round half up: -1 -> 0, 0 -> 128, 1 -> 255).
* ``make_grid_image`` tiles [N, C, H, W] images (C = 1 or 3) into one picture, ``nrow`` images per row.
* ``scatter_plot`` draws sets of 2-D points (real data in grey, samples in colour) in an axes box with
  ticks, optional mode centres (crosses) and circles around them (e.g. the 3-sigma "high quality"
  region of the PacGAN protocol), a title line and a legend. ``data_to_pixel`` is its coordinate map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

__all__ = [
    "PALETTE",
    "PointSet",
    "data_to_pixel",
    "make_grid_image",
    "nice_ticks",
    "plot_box",
    "scatter_plot",
    "square_bounds",
    "to_uint8",
]

Color = tuple[int, int, int]
Bounds = tuple[float, float, float, float]  # (xmin, xmax, ymin, ymax) in data coordinates
Box = tuple[int, int, int, int]  # (left, top, right, bottom) of the plot area in pixels, right/bottom inclusive

# Matplotlib's "tab10": distinguishable, colour-blind tolerable.
PALETTE: tuple[Color, ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)
REAL_COLOR: Color = (200, 200, 200)
MODE_COLOR: Color = (30, 30, 30)
REGION_COLOR: Color = (214, 39, 40)
_GRID_COLOR: Color = (236, 236, 236)
_TEXT_COLOR: Color = (20, 20, 20)


# -- images ---------------------------------------------------------------------------------------
def to_uint8(x: Tensor) -> Tensor:
    """Float images in [-1, 1] to uint8 in [0, 255]: ``floor((x + 1) * 127.5 + 0.5)``, clamped.

    So -1 -> 0, 0 -> 128 (127.5 rounds half up), 1 -> 255; values outside [-1, 1] saturate, NaN -> 128.
    uint8 input is returned unchanged.
    """
    if x.dtype == torch.uint8:
        return x
    x = torch.nan_to_num(x.detach().float(), nan=0.0, posinf=1.0, neginf=-1.0)
    return torch.floor((x + 1.0) * 127.5 + 0.5).clamp_(0, 255).to(torch.uint8)


def make_grid_image(images: Tensor, nrow: int | None = None, *, padding: int = 2, pad_value: int = 0) -> Image.Image:
    """Tile ``images`` [N, C, H, W] (C = 1 or 3; float in [-1, 1] or uint8) into one PIL image.

    ``nrow`` is the number of images per row (torchvision's meaning; default ``ceil(sqrt(N))``). Image
    ``i`` has its top-left pixel at ``x = padding + (i % nrow) * (W + padding)``,
    ``y = padding + (i // nrow) * (H + padding)``; padding and empty cells are ``pad_value``.
    One channel gives a greyscale ("L") image, three an "RGB" one.
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be [N, C, H, W] with C = 1 or 3, got {tuple(images.shape)}")
    n, c, h, w = images.shape
    if n == 0:
        raise ValueError("cannot make a grid of zero images")
    nrow = min(nrow or math.ceil(math.sqrt(n)), n)
    if nrow < 1 or padding < 0:
        raise ValueError(f"nrow must be >= 1 and padding >= 0, got nrow={nrow}, padding={padding}")
    rows = math.ceil(n / nrow)
    pixels = to_uint8(images.cpu()).permute(0, 2, 3, 1).numpy()  # [N, H, W, C]
    grid = np.full((padding + rows * (h + padding), padding + nrow * (w + padding), c), pad_value, dtype=np.uint8)
    for i in range(n):
        y = padding + (i // nrow) * (h + padding)
        x = padding + (i % nrow) * (w + padding)
        grid[y:y + h, x:x + w] = pixels[i]
    return Image.fromarray(grid[..., 0] if c == 1 else grid, mode="L" if c == 1 else "RGB")


# -- scatter plots ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PointSet:
    """One set of 2-D points in a ``scatter_plot``.

    Args:
        points: the points, [N, 2] (tensor or array).
        color: RGB colour of the markers.
        label: legend entry ("" for none); the number of points is appended.
        radius: marker radius in pixels (0 = single pixels).
    """

    points: Any
    color: Color
    label: str = ""
    radius: float = 1.5


_HEADER = 50  # title line + legend line
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_BOTTOM = 58, 18, 36


def plot_box(size: tuple[int, int]) -> Box:
    """The square plot area ``(left, top, right, bottom)`` that ``scatter_plot`` uses in a picture of ``size``."""
    width, height = size
    side = min(width - _MARGIN_LEFT - _MARGIN_RIGHT, height - _HEADER - _MARGIN_BOTTOM) - 1
    if side < 16:
        raise ValueError(f"a scatter plot of size {size} leaves no room for the plot area")
    return _MARGIN_LEFT, _HEADER, _MARGIN_LEFT + side, _HEADER + side


def data_to_pixel(points: Any, bounds: Bounds, box: Box) -> np.ndarray:
    """Data coordinates [N, 2] to pixel coordinates [N, 2] (float, x right, y down) of the plot ``box``.

    ``(xmin, ymin)`` maps to the bottom-left corner ``(left, bottom)``, ``(xmax, ymax)`` to ``(right, top)``.
    """
    xmin, xmax, ymin, ymax = bounds
    left, top, right, bottom = box
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    px = left + (p[:, 0] - xmin) * ((right - left) / (xmax - xmin))
    py = bottom - (p[:, 1] - ymin) * ((bottom - top) / (ymax - ymin))
    return np.stack([px, py], axis=1)


def square_bounds(points: Any, *, margin: float = 0.08) -> Bounds:
    """Equal-aspect bounds around ``points`` [N, 2] with ``margin`` (a fraction of the range) on each side."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    p = p[np.isfinite(p).all(axis=1)]
    if len(p) == 0:
        return (-1.0, 1.0, -1.0, 1.0)
    lo, hi = p.min(axis=0), p.max(axis=0)
    centre = (lo + hi) / 2
    half = max(float((hi - lo).max()) / 2, 1e-6) * (1 + 2 * margin)
    return (centre[0] - half, centre[0] + half, centre[1] - half, centre[1] + half)


def nice_ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    """About ``target`` round tick values (steps of 1, 2 or 5 times a power of ten) within [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return []
    raw = (hi - lo) / max(target, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw * 0.999)
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    return [round(k * step, 12) for k in range(first, last + 1)]


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    for name in ("DejaVuSans.ttf", "Arial.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 ships a scalable default font
    except TypeError:
        return ImageFont.load_default()


def _tick_label(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    text = f"{value:.{decimals}f}"
    return "0" if float(text) == 0 else text


def _rasterize(canvas: np.ndarray, pixels: np.ndarray, color: Color, radius: float, box: Box) -> int:
    """Stamp round markers at ``pixels`` [N, 2] into ``canvas`` [H, W, 3]; returns how many fell outside ``box``."""
    left, top, right, bottom = box
    finite = np.isfinite(pixels).all(axis=1)
    centre = np.rint(pixels[finite]).astype(np.int64)
    inside = (centre[:, 0] >= left) & (centre[:, 0] <= right) & (centre[:, 1] >= top) & (centre[:, 1] <= bottom)
    outside = int((~finite).sum() + (~inside).sum())
    centre = centre[inside]
    r = int(math.floor(radius))
    offsets = [(dx, dy) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dx * dx + dy * dy <= radius * radius]
    for dx, dy in offsets:
        x = np.clip(centre[:, 0] + dx, left, right)
        y = np.clip(centre[:, 1] + dy, top, bottom)
        canvas[y, x] = color
    return outside


def scatter_plot(
    point_sets: Sequence[PointSet],
    *,
    bounds: Bounds | None = None,
    size: tuple[int, int] = (640, 650),
    modes: Any = None,
    mode_radius: float | None = None,
    mode_radius_label: str = "3 sigma",
    title: str = "",
) -> Image.Image:
    """A 2-D scatter plot of ``point_sets`` (drawn in order, later sets on top) as an RGB PIL image.

    Args:
        point_sets: the sets of points, e.g. real data in ``REAL_COLOR`` first, then samples.
        bounds: ``(xmin, xmax, ymin, ymax)``; default: equal-aspect bounds around the modes, or else
            the first set. Keep them fixed across pictures of one run so that they compare.
        size: ``(width, height)`` in pixels; the plot area is the square ``plot_box(size)``.
        modes: mode centres [K, 2], drawn as small crosses (visible where no sample covers them).
        mode_radius: radius (data units) of a circle drawn around each mode, e.g. ``3 * sigma``.
        mode_radius_label: legend text of those circles.
        title: the first line above the plot (e.g. ``"kimg 12.0 | modes 24/25 | HQ 93.0%"``).
    """
    box = plot_box(size)
    left, top, right, bottom = box
    mode_points = None if modes is None else np.asarray(
        modes.detach().cpu() if isinstance(modes, Tensor) else modes, dtype=np.float64).reshape(-1, 2)
    if bounds is None:
        if mode_points is not None and len(mode_points):
            pad = np.array([[mode_radius or 0.0] * 2])
            bounds = square_bounds(np.concatenate([mode_points - pad, mode_points + pad]), margin=0.12)
        elif point_sets:
            bounds = square_bounds(_as_array(point_sets[0].points))
        else:
            bounds = (-1.0, 1.0, -1.0, 1.0)
    xmin, xmax, ymin, ymax = bounds

    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font, small = _font(15), _font(12)
    xticks, yticks = nice_ticks(xmin, xmax), nice_ticks(ymin, ymax)
    xpix = data_to_pixel(np.stack([xticks, np.full(len(xticks), ymin)], 1), bounds, box)[:, 0] if xticks else []
    ypix = data_to_pixel(np.stack([np.full(len(yticks), xmin), yticks], 1), bounds, box)[:, 1] if yticks else []
    for x in xpix:
        draw.line([(round(x), top), (round(x), bottom)], fill=_GRID_COLOR)
    for y in ypix:
        draw.line([(left, round(y)), (right, round(y))], fill=_GRID_COLOR)

    # Points: vectorised stamping (thousands of markers cost milliseconds).
    canvas = np.asarray(image).copy()
    outside: list[int] = []
    for i, ps in enumerate(point_sets):
        if i == len(point_sets) - 1 and mode_points is not None:
            canvas = _draw_modes(canvas, mode_points, bounds, box)
        outside.append(_rasterize(canvas, data_to_pixel(_as_array(ps.points), bounds, box), ps.color, ps.radius, box))
    if not point_sets and mode_points is not None:
        canvas = _draw_modes(canvas, mode_points, bounds, box)
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)

    if mode_points is not None and mode_radius:
        centres = data_to_pixel(mode_points, bounds, box)
        rx = mode_radius * (right - left) / (xmax - xmin)
        ry = mode_radius * (bottom - top) / (ymax - ymin)
        for cx, cy in centres:
            draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], outline=REGION_COLOR, width=1)

    # Axes frame, ticks and labels.
    draw.rectangle([left - 1, top - 1, right + 1, bottom + 1], outline=(60, 60, 60), width=1)
    xstep = xticks[1] - xticks[0] if len(xticks) > 1 else 1.0
    ystep = yticks[1] - yticks[0] if len(yticks) > 1 else 1.0
    for value, x in zip(xticks, xpix):
        draw.line([(round(x), bottom + 2), (round(x), bottom + 6)], fill=(60, 60, 60))
        draw.text((round(x), bottom + 9), _tick_label(value, xstep), fill=_TEXT_COLOR, font=small, anchor="mt")
    for value, y in zip(yticks, ypix):
        draw.line([(left - 6, round(y)), (left - 2, round(y))], fill=(60, 60, 60))
        draw.text((left - 9, round(y)), _tick_label(value, ystep), fill=_TEXT_COLOR, font=small, anchor="rm")

    # Header: title, then the legend.
    if title:
        draw.text((left, 6), title, fill=_TEXT_COLOR, font=font)
    x = left
    y = 30
    for ps, n_out in zip(point_sets, outside):
        if not ps.label:
            continue
        n = len(_as_array(ps.points))
        text = f"{ps.label} ({n}" + (f", {n_out} outside)" if n_out else ")")
        draw.ellipse([x, y + 3, x + 8, y + 11], fill=ps.color)
        draw.text((x + 12, y), text, fill=_TEXT_COLOR, font=small)
        x += 12 + int(draw.textlength(text, font=small)) + 16
    if mode_points is not None:
        draw.line([(x, y + 7), (x + 8, y + 7)], fill=MODE_COLOR)
        draw.line([(x + 4, y + 3), (x + 4, y + 11)], fill=MODE_COLOR)
        draw.text((x + 12, y), f"mode ({len(mode_points)})", fill=_TEXT_COLOR, font=small)
        x += 12 + int(draw.textlength(f"mode ({len(mode_points)})", font=small)) + 16
        if mode_radius:
            draw.ellipse([x, y + 2, x + 10, y + 12], outline=REGION_COLOR)
            draw.text((x + 14, y), mode_radius_label, fill=_TEXT_COLOR, font=small)
    return image


def _draw_modes(canvas: np.ndarray, modes: np.ndarray, bounds: Bounds, box: Box) -> np.ndarray:
    """Small crosses at the mode centres, under the last (generated) point set."""
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for cx, cy in np.rint(data_to_pixel(modes, bounds, box)):
        draw.line([(cx - 3, cy), (cx + 3, cy)], fill=MODE_COLOR)
        draw.line([(cx, cy - 3), (cx, cy + 3)], fill=MODE_COLOR)
    return np.asarray(image).copy()


def _as_array(points: Any) -> np.ndarray:
    if isinstance(points, Tensor):
        points = points.detach().float().cpu().numpy()
    return np.asarray(points, dtype=np.float64).reshape(-1, 2)
