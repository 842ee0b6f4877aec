"""Line plots and heatmaps of analysis results (spectra, singular values, variance ratios), drawn with Pillow only.

matplotlib is not a dependency of lightning-gan, so the diagnostics draw their own figures, in the style of
``lightning_gan.utils.images.scatter_plot`` (white background, light grid, tab10 colours, title and legend
above the axes):

* ``line_plot`` draws named series ``{name: (x, y)}`` as coloured lines (with dots when a series has few
  points), optionally on a log10 y axis, with dashed reference lines (e.g. ``hlines=[1.0]`` for ratios or
  singular values that should stay at one, ``vlines=[0.25]`` for a cutoff frequency).
* ``heatmap`` draws a 2-D array (e.g. singular values per frequency ``(u, v)``) with the viridis colour map,
  axis ticks in index or ``extent`` coordinates, and a labelled colour bar.

Both return the RGB ``PIL.Image`` and write it as a PNG when ``path`` is given. Figures are drawn at twice the
requested size and downsampled (Lanczos), which antialiases lines and text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from lightning_gan.utils.images import PALETTE, _font, nice_ticks

__all__ = ["heatmap", "line_plot", "viridis"]

Color = tuple[int, int, int]
_SCALE = 2  # supersampling factor
_TEXT: Color = (20, 20, 20)
_AXIS: Color = (60, 60, 60)
_GRID: Color = (232, 232, 232)
_REFERENCE: Color = (120, 120, 120)
_MISSING: Color = (200, 200, 200)

# viridis at 9 evenly spaced points (matplotlib's table); linear interpolation in between.
_VIRIDIS = np.array([
    (68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141),
    (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37),
], dtype=np.float64)


def viridis(values: Any) -> np.ndarray:
    """Colours [..., 3] uint8 of ``values`` in [0, 1] (clipped) on the viridis map; NaN -> light grey."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    t = np.clip(np.where(finite, v, 0.0), 0.0, 1.0) * (len(_VIRIDIS) - 1)
    lo = np.minimum(np.floor(t).astype(np.int64), len(_VIRIDIS) - 2)
    frac = (t - lo)[..., None]
    rgb = _VIRIDIS[lo] * (1 - frac) + _VIRIDIS[lo + 1] * frac
    rgb[~finite] = _MISSING
    return np.rint(rgb).astype(np.uint8)


def _format_tick(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    text = f"{value:.{decimals}f}"
    return "0" if float(text) == 0 else text


def _format_power_of_ten(value: float) -> str:
    """1000 -> "1000", 1e-5 -> "1e-5", 2e-5 -> "2e-5": short labels for a log axis."""
    if value == 0:
        return "0"
    exponent = math.floor(math.log10(abs(value)) + 1e-9)
    mantissa = round(value / 10.0**exponent, 6)
    if -3 <= exponent <= 3:
        return f"{value:.{max(0, -exponent)}f}"
    return f"{mantissa:g}e{exponent}"


def _log_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    """Ticks for a log10 axis spanning log10 values [lo, hi]: decades, plus 2 and 5 times them on short spans."""
    first, last = math.ceil(lo - 1e-9), math.floor(hi + 1e-9)
    decades = last - first + 1
    if decades > 8:  # every k-th decade
        k = math.ceil(decades / 6)
        exps = [e for e in range(first, last + 1) if e % k == 0]
        return [float(e) for e in exps], [_format_power_of_ten(10.0**e) for e in exps]
    multiples = (1,) if decades >= 3 else (1, 2, 5)
    ticks: list[float] = []
    for e in range(math.floor(lo) - 1, math.ceil(hi) + 1):
        for m in multiples:
            t = math.log10(m) + e
            if lo - 1e-9 <= t <= hi + 1e-9:
                ticks.append(t)
    return ticks, [_format_power_of_ten(10.0**t) for t in ticks]


def _linear_ticks(lo: float, hi: float, target: int = 6) -> tuple[list[float], list[str]]:
    ticks = nice_ticks(lo, hi, target)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else (abs(ticks[0]) if ticks and ticks[0] else 1.0)
    return ticks, [_format_tick(t, step) for t in ticks]


def _vertical_text(text: str, font: Any, color: Color = _TEXT) -> Image.Image:
    """``text`` rotated by 90 degrees (reading bottom to top), on a white background."""
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left, top, right, bottom = probe.textbbox((0, 0), text, font=font)
    tile = Image.new("RGB", (right - left + 2, bottom - top + 2), (255, 255, 255))
    ImageDraw.Draw(tile).text((1 - left, 1 - top), text, fill=color, font=font)
    return tile.rotate(90, expand=True)


def _save(image: Image.Image, path: str | Path | None) -> Image.Image:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, format="PNG")
    return image


def _check_size(size: tuple[int, int], minimum: tuple[int, int]) -> tuple[int, int]:
    width, height = (int(v) for v in size)
    if width < minimum[0] or height < minimum[1]:
        raise ValueError(f"a figure needs at least {minimum[0]}x{minimum[1]} pixels, got {width}x{height}")
    return width, height


def _legend_rows(labels: Sequence[str], font: Any, width: int, swatch: int) -> list[list[tuple[int, str, int]]]:
    """Legend entries ``(series index, label, x offset)`` wrapped into rows no wider than ``width``."""
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    rows: list[list[tuple[int, str, int]]] = [[]]
    x = 0
    for i, label in enumerate(labels):
        w = swatch + int(probe.textlength(label, font=font)) + swatch
        if rows[-1] and x + w > width:
            rows.append([])
            x = 0
        rows[-1].append((i, label, x))
        x += w
    return rows if rows[0] else []


def line_plot(
    series: Mapping[str, tuple[Any, Any]],
    path: str | Path | None,
    xlabel: str,
    ylabel: str,
    title: str,
    logy: bool = False,
    *,
    size: tuple[int, int] = (640, 420),
    ylim: tuple[float, float] | None = None,
    hlines: Sequence[float] = (),
    vlines: Sequence[float] = (),
    colors: Sequence[Color] | None = None,
) -> Image.Image:
    """A line plot of ``series`` ``{name: (x, y)}`` (1-D, equal lengths), written to ``path`` as a PNG.

    Args:
        series: the lines, in legend order; each ``(x, y)`` of tensors, arrays or lists. Non-finite points (and,
            with ``logy``, non-positive ones) break the line instead of being drawn.
        path: where to write the PNG (parent folders are created); None only returns the picture.
        xlabel: x-axis label.
        ylabel: y-axis label (drawn vertically).
        title: the line above the legend.
        logy: log10 y axis, ticks at powers of ten (and 2 and 5 times them on short spans).
        size: ``(width, height)`` in pixels.
        ylim: fixed y range (data units) so that pictures of several runs compare; default: the data's range.
        hlines: y values of dashed grey reference lines (e.g. 1.0 for a ratio that should stay at one).
        vlines: x values of dashed grey reference lines (e.g. a cutoff frequency); outside the x range: not drawn.
        colors: one RGB colour per series; default the tab10 ``PALETTE`` in order.
    """
    width, height = _check_size(size, (240, 160))
    if not series:
        raise ValueError("line_plot needs at least one series")
    palette = list(colors) if colors is not None else list(PALETTE)
    curves: list[tuple[str, np.ndarray, np.ndarray]] = []
    for name, xy in series.items():
        if len(xy) != 2:
            raise ValueError(f"series {name!r} must be a pair (x, y)")
        x, y = (np.asarray(_numpy(v), dtype=np.float64).reshape(-1) for v in xy)
        if x.shape != y.shape:
            raise ValueError(f"series {name!r}: x has {x.size} values but y has {y.size}")
        if logy:
            with np.errstate(divide="ignore", invalid="ignore"):
                y = np.where(y > 0, np.log10(np.where(y > 0, y, 1.0)), np.nan)
        curves.append((str(name), x, y))

    # Data bounds (in log10 units for logy).
    xs = np.concatenate([c[1][np.isfinite(c[1]) & np.isfinite(c[2])] for c in curves])
    ys = np.concatenate([c[2][np.isfinite(c[1]) & np.isfinite(c[2])] for c in curves])
    refs = [math.log10(v) if logy else float(v) for v in hlines if (v > 0 or not logy) and math.isfinite(v)]
    xmin, xmax = (float(xs.min()), float(xs.max())) if xs.size else (0.0, 1.0)
    if xmax <= xmin:
        xmin, xmax = xmin - 0.5, xmax + 0.5
    if ylim is not None:
        ymin, ymax = (math.log10(v) if logy else float(v) for v in ylim)
    else:
        values = np.concatenate([ys, np.asarray(refs)]) if refs else ys
        ymin, ymax = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        pad = 0.05 * (ymax - ymin) if ymax > ymin else (0.5 if logy else max(abs(ymin) * 0.1, 0.5))
        ymin, ymax = ymin - pad, ymax + pad
    if not ymax > ymin:
        raise ValueError(f"ylim must be increasing, got {ylim}")

    s = _SCALE
    font, small = _font(15 * s), _font(12 * s)
    swatch = 22 * s
    left, right = 74 * s, (width - 16) * s
    legend = _legend_rows([c[0] for c in curves], small, right - left, swatch)
    top = (8 + 22 + 18 * len(legend) + 8) * s if title else (8 + 18 * len(legend) + 8) * s
    bottom = (height - 48) * s
    if bottom - top < 40 * s or right - left < 40 * s:
        raise ValueError(f"a line plot of size {size} with {len(legend)} legend rows leaves no room for the axes")

    def px(x: np.ndarray | float) -> np.ndarray:
        return left + (np.asarray(x, dtype=np.float64) - xmin) * ((right - left) / (xmax - xmin))

    def py(y: np.ndarray | float) -> np.ndarray:
        return bottom - (np.asarray(y, dtype=np.float64) - ymin) * ((bottom - top) / (ymax - ymin))

    image = Image.new("RGB", (width * s, height * s), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    xticks, xlabels = _linear_ticks(xmin, xmax)
    yticks, ylabels = _log_ticks(ymin, ymax) if logy else _linear_ticks(ymin, ymax)
    for t in xticks:
        draw.line([(float(px(t)), top), (float(px(t)), bottom)], fill=_GRID, width=s)
    for t in yticks:
        draw.line([(left, float(py(t))), (right, float(py(t)))], fill=_GRID, width=s)

    # Lines on a copy of the figure, then only the plot area pasted back: clipping for free.
    layer = image.copy()
    ldraw = ImageDraw.Draw(layer)
    for ref in refs:
        y = float(py(ref))
        for x0 in range(left, right, 12 * s):
            ldraw.line([(x0, y), (min(x0 + 6 * s, right), y)], fill=_REFERENCE, width=s)
    for ref in vlines:
        if math.isfinite(ref) and xmin <= ref <= xmax:
            x = float(px(ref))
            for y0 in range(top, bottom, 12 * s):
                ldraw.line([(x, y0), (x, min(y0 + 6 * s, bottom))], fill=_REFERENCE, width=s)
    for i, (_, x, y) in enumerate(curves):
        color = palette[i % len(palette)]
        ok = np.isfinite(x) & np.isfinite(y)
        pts = np.stack([px(np.where(ok, x, 0.0)), py(np.where(ok, y, 0.0))], axis=1)
        run: list[tuple[float, float]] = []
        for j in range(len(x) + 1):
            if j < len(x) and ok[j]:
                run.append((float(pts[j, 0]), float(pts[j, 1])))
                continue
            if len(run) > 1:
                ldraw.line(run, fill=color, width=2 * s, joint="curve")
            run = []
        if ok.sum() <= 40:
            r = 2.5 * s
            for cx, cy in pts[ok]:
                ldraw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color)
    image.paste(layer.crop((left, top, right + 1, bottom + 1)), (left, top))

    # Frame, ticks, tick labels, axis labels.
    draw.rectangle([left, top, right, bottom], outline=_AXIS, width=s)
    for t, label in zip(xticks, xlabels):
        x = float(px(t))
        draw.line([(x, bottom), (x, bottom + 5 * s)], fill=_AXIS, width=s)
        draw.text((x, bottom + 8 * s), label, fill=_TEXT, font=small, anchor="mt")
    for t, label in zip(yticks, ylabels):
        y = float(py(t))
        draw.line([(left - 5 * s, y), (left, y)], fill=_AXIS, width=s)
        draw.text((left - 8 * s, y), label, fill=_TEXT, font=small, anchor="rm")
    if xlabel:
        draw.text(((left + right) / 2, (height - 6) * s), xlabel, fill=_TEXT, font=small, anchor="md")
    if ylabel:
        label = _vertical_text(ylabel, small)
        image.paste(label, (4 * s, int((top + bottom) / 2 - label.height / 2)))

    # Header: title, then the legend rows.
    y = 8 * s
    if title:
        draw.text((left, y), title, fill=_TEXT, font=font)
        y += 22 * s
    for row in legend:
        for i, label, x_off in row:
            x = left + x_off
            color = palette[i % len(palette)]
            draw.line([(x, y + 8 * s), (x + 16 * s, y + 8 * s)], fill=color, width=3 * s)
            draw.text((x + swatch - 2 * s, y + 8 * s), label, fill=_TEXT, font=small, anchor="lm")
        y += 18 * s
    return _save(image.resize((width, height), Image.Resampling.LANCZOS), path)


def heatmap(
    array2d: Any,
    path: str | Path | None,
    title: str,
    colorbar_label: str,
    *,
    xlabel: str = "",
    ylabel: str = "",
    extent: tuple[float, float, float, float] | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    log: bool = False,
    size: tuple[int, int] = (560, 480),
) -> Image.Image:
    """A heatmap of ``array2d`` [rows, cols] with a colour bar, written to ``path`` as a PNG.

    Row 0 is drawn at the top. Cells are squares when the figure allows (nearest-neighbour scaling, so each
    value stays one flat colour). Colour = viridis of ``(v - vmin) / (vmax - vmin)`` (of log10 values with
    ``log``); NaN cells (and non-positive ones with ``log``) are light grey.

    Args:
        array2d: the values, a 2-D tensor, array or nested list.
        path: where to write the PNG (parent folders are created); None only returns the picture.
        title: the line above the map.
        colorbar_label: what the colours mean (drawn vertically beside the colour bar).
        xlabel: x-axis label.
        ylabel: y-axis label.
        extent: ``(left, right, bottom, top)`` data coordinates of the outer cell edges for the tick labels
            (as matplotlib's ``imshow`` with ``origin="upper"``); default the column and row indices.
        vmin: value at the bottom of the colour scale; default the smallest finite value.
        vmax: value at the top of the colour scale; default the largest finite value.
        log: colour by log10 of the values (the colour bar is labelled in the values themselves).
        size: ``(width, height)`` in pixels.
    """
    width, height = _check_size(size, (200, 160))
    a = np.asarray(_numpy(array2d), dtype=np.float64)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"heatmap needs a non-empty 2-D array, got shape {a.shape}")
    rows, cols = a.shape
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(a > 0, np.log10(np.where(a > 0, a, 1.0)), np.nan)
    finite = a[np.isfinite(a)]
    lo = (math.log10(vmin) if log else vmin) if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = (math.log10(vmax) if log else vmax) if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    if extent is None:
        extent = (-0.5, cols - 0.5, rows - 0.5, -0.5)
    x0, x1, y_bottom, y_top = (float(v) for v in extent)

    s = _SCALE
    font, small = _font(15 * s), _font(12 * s)
    header = (8 + 22 + 8) * s if title else 10 * s
    bar_w, bar_gap, bar_area = 16 * s, 14 * s, 96 * s
    left, bottom = 70 * s, (height - 46) * s
    avail_w, avail_h = width * s - left - bar_area - bar_gap - 8 * s, bottom - header
    if avail_w < 20 * s or avail_h < 20 * s:
        raise ValueError(f"a heatmap of size {size} leaves no room for the map")
    cell = min(avail_w / cols, avail_h / rows)
    map_w, map_h = max(1, round(cell * cols)), max(1, round(cell * rows))
    top = header
    right = left + map_w
    bottom = top + map_h

    image = Image.new("RGB", (width * s, height * s), (255, 255, 255))
    colours = viridis((a - lo) / (hi - lo))  # [rows, cols, 3]
    image.paste(Image.fromarray(colours, "RGB").resize((map_w, map_h), Image.Resampling.NEAREST), (left, top))
    draw = ImageDraw.Draw(image)
    draw.rectangle([left - s, top - s, right, bottom], outline=_AXIS, width=s)

    def tick_axis(lo_v: float, hi_v: float, p0: float, p1: float) -> list[tuple[float, str]]:
        a_lo, a_hi = min(lo_v, hi_v), max(lo_v, hi_v)
        ticks, labels = _linear_ticks(a_lo, a_hi, 6)
        return [(p0 + (t - lo_v) / (hi_v - lo_v) * (p1 - p0), lab) for t, lab in zip(ticks, labels)]

    for x, label in tick_axis(x0, x1, left, right):
        draw.line([(x, bottom), (x, bottom + 5 * s)], fill=_AXIS, width=s)
        draw.text((x, bottom + 8 * s), label, fill=_TEXT, font=small, anchor="mt")
    for y, label in tick_axis(y_top, y_bottom, top, bottom):
        draw.line([(left - 5 * s, y), (left, y)], fill=_AXIS, width=s)
        draw.text((left - 8 * s, y), label, fill=_TEXT, font=small, anchor="rm")
    if xlabel:
        draw.text(((left + right) / 2, bottom + 26 * s), xlabel, fill=_TEXT, font=small, anchor="mt")
    if ylabel:
        label = _vertical_text(ylabel, small)
        image.paste(label, (4 * s, int((top + bottom) / 2 - label.height / 2)))

    # Colour bar: a vertical gradient from lo (bottom) to hi (top), ticks in the values' own units.
    bx0 = right + bar_gap
    gradient = viridis(np.linspace(1.0, 0.0, map_h))[:, None, :].repeat(bar_w, axis=1)
    image.paste(Image.fromarray(np.ascontiguousarray(gradient), "RGB"), (bx0, top))
    draw.rectangle([bx0 - s, top - s, bx0 + bar_w, bottom], outline=_AXIS, width=s)
    bar_ticks = _log_ticks(lo, hi) if log else _linear_ticks(lo, hi, 5)
    label_right = bx0 + bar_w
    for t, label in zip(*bar_ticks):
        y = bottom - (t - lo) / (hi - lo) * (bottom - top)
        draw.line([(bx0 + bar_w, y), (bx0 + bar_w + 4 * s, y)], fill=_AXIS, width=s)
        draw.text((bx0 + bar_w + 7 * s, y), label, fill=_TEXT, font=small, anchor="lm")
        label_right = max(label_right, bx0 + bar_w + 7 * s + int(draw.textlength(label, font=small)))
    if colorbar_label:
        label = _vertical_text(colorbar_label, small)
        x = min(label_right + 6 * s, width * s - label.width - 2 * s)
        image.paste(label, (x, int((top + bottom) / 2 - label.height / 2)))
    if title:
        draw.text((left, 8 * s), title, fill=_TEXT, font=font)
    return _save(image.resize((width, height), Image.Resampling.LANCZOS), path)


def _numpy(value: Any) -> Any:
    """Tensors to NumPy (detached, on the CPU); anything else unchanged."""
    if hasattr(value, "detach"):
        return value.detach().cpu().double().numpy()
    return value
