"""Procedural labelled shapes: the embedded default image data, rendered on the fly, deterministic by index.

Each image shows one shape (``circle``, ``square``, ``triangle``, ``cross``, ``ring`` or ``star``) in a
bright random colour on a dark random background, with random size, position and rotation. Image ``i``
depends only on ``(seed, i)``: its factors come from a counter-based hash of ``(seed, i)`` (no sequential
random state), so any index can be rendered alone, in any batch, in any worker or DDP rank, and comes out
bit-identical.

Factors (see ``ShapeFactors``), in image coordinates: ``x`` to the right, ``y`` down, the image spanning
[-1, 1] on both axes (pixel ``j`` of ``R`` has its centre at ``(2j + 1)/R - 1``):

* ``size``: circumradius of the shape in half-image widths (every shape fits its circumscribed circle,
  so it lies fully inside the image); drawn uniformly from ``size_range``.
* ``position``: centre ``(x, y)``, uniform in ``[-(1 - size), 1 - size]`` per axis.
* ``rotation``: angle in radians (clockwise on screen), uniform over one period of the shape's symmetry
  (``2*pi/order``: square and cross 4, triangle 3, star 5); it has no effect on circles and rings.
* ``color`` / ``background``: ``[C]`` in [0, 1]; RGB from HSV (foreground value >= 0.7, background
  value <= 0.3), grey levels for one channel.

At rotation 0 the triangle and the star point up and the square and the cross are axis-aligned.
Rendering is vectorized over the batch: a signed distance per pixel in the shape's own frame, turned into
coverage by a one-pixel linear ramp (anti-aliasing), then a mix of the two colours. It runs on one
thread in cache-sized blocks (tens of thousands of 32x32 images per second on one CPU core, see
``benchmarks/shapes_throughput.py``); DataLoader workers scale it further.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from lightning_gan.data.base import GANDataModule, check_image_args

__all__ = [
    "SHAPES",
    "ShapeFactors",
    "ShapesDataModule",
    "ShapesDataset",
    "render_shapes",
    "shape_factors",
]

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "ring", "star")
"""Every shape class, in the default class order (labels index the datamodule's ``classes``)."""

_SYMMETRY_ORDER = {"circle": 1, "square": 4, "triangle": 3, "cross": 4, "ring": 1, "star": 5}

# Shape geometry at unit circumradius (every shape touches the unit circle).
_RING_INNER = 0.5                                          # inner radius of the ring
_CROSS_HALF_WIDTH = 0.25                                   # half width of each arm of the cross
_CROSS_HALF_LENGTH = math.sqrt(1.0 - _CROSS_HALF_WIDTH**2)  # arm corners on the unit circle
_STAR_INNER = math.sin(math.radians(18)) / math.sin(math.radians(54))  # regular pentagram, ~0.382


class ShapeFactors(NamedTuple):
    """The factors of variation of a batch of shape images (all tensors share the batch size N)."""

    label: Tensor       # [N] int64, index into the datamodule's ``classes``
    shape: Tensor       # [N] int64, index into ``SHAPES``
    size: Tensor        # [N] float32, circumradius in half-image widths
    position: Tensor    # [N, 2] float32, centre (x right, y down) in [-1, 1]
    rotation: Tensor    # [N] float32, radians, clockwise on screen
    color: Tensor       # [N, C] float32 in [0, 1], the shape
    background: Tensor  # [N, C] float32 in [0, 1]


# -- factors ------------------------------------------------------------------------------------------
_MASK64 = (1 << 64) - 1
_NUM_STREAMS = 11  # class, size, x, y, rotation, 3 x colour (h, s, v), 3 x background (h, s, v)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on a uint64 array (wrapping arithmetic, logical shifts)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _index_uniforms(indices: Sequence[int], seed: int, num: int) -> np.ndarray:
    """[N, num] float64 uniforms in [0, 1) that depend only on ``(seed, index)``: a counter-based hash."""
    key = _splitmix64(np.array([int(seed) & _MASK64], dtype=np.uint64))
    idx = np.array([int(i) & _MASK64 for i in indices], dtype=np.uint64).reshape(-1, 1)
    state = _splitmix64(key + idx)  # [N, 1]
    bits = _splitmix64(state + np.arange(num, dtype=np.uint64))  # [N, num]
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """[N] hue/saturation/value in [0, 1] to [N, 3] RGB."""
    out = []
    for n in (5.0, 3.0, 1.0):
        k = np.mod(n + h * 6.0, 6.0)
        out.append(v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0))
    return np.stack(out, axis=1)


def _check_classes(classes: Sequence[str] | None) -> tuple[str, ...]:
    if classes is None:
        return SHAPES
    if isinstance(classes, str):
        classes = [classes]
    names = tuple(str(c) for c in classes)
    if not names:
        raise ValueError(f"classes must name at least one shape of {list(SHAPES)}")
    unknown = [c for c in names if c not in SHAPES]
    if unknown:
        raise ValueError(f"Unknown shape class(es) {unknown}; available: {list(SHAPES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"classes must not repeat a shape, got {list(names)}")
    return names


def _check_proportions(proportions: Sequence[float] | None, num_classes: int) -> tuple[float, ...] | None:
    """Class shares normalized to sum 1, or None for equal shares."""
    if proportions is None:
        return None
    values = tuple(float(v) for v in proportions)
    if len(values) != num_classes:
        raise ValueError(f"class_proportions needs one share per class ({num_classes}), got {len(values)}: "
                         f"{list(values)}")
    if any(not math.isfinite(v) or v < 0 for v in values) or sum(values) <= 0:
        raise ValueError(f"class_proportions must be non-negative with a positive sum, got {list(values)}")
    total = sum(values)
    return tuple(v / total for v in values)


def _labels_from_uniforms(u: np.ndarray, num_classes: int, proportions: Sequence[float] | None) -> np.ndarray:
    """Class labels from uniforms in [0, 1): equal shares, or the inverse CDF of ``proportions``."""
    if proportions is None:
        return np.minimum((u * num_classes).astype(np.int64), num_classes - 1)
    edges = np.cumsum(np.asarray(proportions, dtype=np.float64))[:-1]
    return np.searchsorted(edges, u, side="right").astype(np.int64)


def _check_size_range(size_range: Sequence[float]) -> tuple[float, float]:
    lo, hi = (float(v) for v in size_range)
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"size_range must satisfy 0 < min <= max <= 1 (half-image widths), got {(lo, hi)}")
    return lo, hi


def shape_factors(
    indices: Sequence[int] | Tensor,
    *,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    channels: int = 3,
    size_range: tuple[float, float] = (0.35, 0.85),
    class_proportions: Sequence[float] | None = None,
) -> ShapeFactors:
    """The factors of images ``indices`` of the shapes data with these settings (see the module docstring).

    Args:
        indices: image indices (any non-negative integers; the epoch length does not matter).
        seed: seed of the data.
        classes: shape names the labels index (default: all of ``SHAPES``, in that order).
        channels: 1 (grey) or 3 (RGB): the number of colour components.
        size_range: (min, max) circumradius in half-image widths.
        class_proportions: each class's share of the images (normalized to sum 1); None: equal shares. The
            label of image ``i`` is the inverse CDF of these shares at its first uniform, so it still
            depends only on ``(seed, i)`` (None keeps the equal-share labelling of earlier versions).
    """
    names = _check_classes(classes)
    proportions = _check_proportions(class_proportions, len(names))
    lo, hi = _check_size_range(size_range)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if isinstance(indices, Tensor):
        indices = indices.tolist()
    indices = list(indices)
    u = _index_uniforms(indices, seed, _NUM_STREAMS)  # [N, 11]
    label = _labels_from_uniforms(u[:, 0], len(names), proportions)
    shape_of_label = np.array([SHAPES.index(c) for c in names], dtype=np.int64)
    order_of_label = np.array([_SYMMETRY_ORDER[c] for c in names], dtype=np.float64)
    size = lo + (hi - lo) * u[:, 1]
    position = (1.0 - size)[:, None] * (2.0 * u[:, 2:4] - 1.0)
    rotation = (2.0 * math.pi) * u[:, 4] / order_of_label[label]
    fg_v = 0.7 + 0.3 * u[:, 7]
    bg_v = 0.3 * u[:, 10]
    if channels == 3:
        color = _hsv_to_rgb(u[:, 5], 0.5 + 0.5 * u[:, 6], fg_v)
        background = _hsv_to_rgb(u[:, 8], u[:, 9], bg_v)
    else:
        color, background = fg_v[:, None], bg_v[:, None]
    return ShapeFactors(
        label=torch.from_numpy(label),
        shape=torch.from_numpy(shape_of_label[label]),
        size=torch.from_numpy(size).float(),
        position=torch.from_numpy(position).float(),
        rotation=torch.from_numpy(rotation).float(),
        color=torch.from_numpy(color).float(),
        background=torch.from_numpy(background).float(),
    )


# -- rendering ----------------------------------------------------------------------------------------
# Signed distances (negative inside) at unit circumradius, in the shape's own frame: ``qx`` to the
# right, ``qy`` down. Exact on and near the boundary, which is all the anti-aliasing ramp needs.
# Only correctly rounded elementwise operations (no transcendental functions, no fused multiply-add)
# touch per-pixel values, so a pixel does not depend on which batch or SIMD lane computed it.

def _sqrt(x: Tensor) -> Tensor:
    # NumPy's square root (exact, one thread): torch.sqrt takes a VML path that starts threads from
    # 2k elements on, and waiting for them costs more than the root itself on a busy CPU.
    return torch.from_numpy(np.sqrt(x.numpy()))


def _sdf_circle(qx: Tensor, qy: Tensor) -> Tensor:
    return _sqrt(qx * qx + qy * qy) - 1.0


def _sdf_ring(qx: Tensor, qy: Tensor) -> Tensor:
    mid, half = (1.0 + _RING_INNER) / 2, (1.0 - _RING_INNER) / 2
    return torch.abs(_sqrt(qx * qx + qy * qy) - mid) - half


def _sdf_square(qx: Tensor, qy: Tensor) -> Tensor:
    return torch.maximum(qx.abs(), qy.abs()) - math.sqrt(0.5)


def _sdf_triangle(qx: Tensor, qy: Tensor) -> Tensor:
    # Equilateral, a vertex up (-y); edge normals point down and 30 degrees above each side; inradius 1/2.
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    ax = qx.abs()
    return torch.maximum(qy, ax * c - qy * s) - 0.5


def _sdf_cross(qx: Tensor, qy: Tensor) -> Tensor:
    ax, ay = qx.abs(), qy.abs()
    w, length = _CROSS_HALF_WIDTH, _CROSS_HALF_LENGTH
    return torch.minimum(torch.maximum(ax - length, ay - w), torch.maximum(ax - w, ay - length))


def _sdf_star(qx: Tensor, qy: Tensor) -> Tensor:
    # Five points, one up. Fold the plane into the wedge between a tip (angle 0 from "up") and the
    # next inner vertex (36 degrees) by mirror reflections, then take the distance to that edge.
    a, b = -qy, qx.abs()  # a: towards the top tip; b >= 0: sideways. Angle now in [0, 180] degrees.
    for mirror_deg in (72.0, 36.0):  # reflect across the mirror line if beyond it, then fold b again
        nx, ny = math.cos(math.radians(mirror_deg + 90)), math.sin(math.radians(mirror_deg + 90))
        t = torch.clamp_min(a * nx + b * ny, 0.0)
        a, b = a - t * (2 * nx), b - t * (2 * ny)
        b = b.abs()
    # Edge from the tip A = (1, 0) to the inner vertex B = r (cos 36, sin 36); outward unit normal m.
    bx, by = _STAR_INNER * math.cos(math.radians(36)), _STAR_INNER * math.sin(math.radians(36))
    mx, my = by, 1.0 - bx
    norm = math.hypot(mx, my)
    return (a - 1.0) * (mx / norm) + b * (my / norm)


_BLOCK_ELEMENTS = 32768  # PyTorch's intra-op parallel grain size (at::internal::GRAIN_SIZE)

_SDF = {
    "circle": _sdf_circle,
    "square": _sdf_square,
    "triangle": _sdf_triangle,
    "cross": _sdf_cross,
    "ring": _sdf_ring,
    "star": _sdf_star,
}


def render_shapes(factors: ShapeFactors, *, resolution: int) -> Tensor:
    """Images [N, C, R, R] in [-1, 1] showing the shapes described by ``factors`` (``label`` is ignored).

    Args:
        factors: what to draw (``shape``, ``size``, ``position``, ``rotation``, ``color``, ``background``).
        resolution: side ``R`` of the square images in pixels.
    """
    n, channels = factors.color.shape
    out = torch.empty(n, channels, resolution, resolution)
    if n == 0:
        return out
    # Per-image constants in float64 (math.cos per image: no vectorized libm), then float32.
    grid = (torch.arange(resolution, dtype=torch.float64) * 2 + 1) / resolution - 1  # pixel centres
    size = factors.size.double()
    angle = factors.rotation.tolist()
    cos = (torch.tensor([math.cos(t) for t in angle], dtype=torch.float64) / size).float()[:, None]
    sin = (torch.tensor([math.sin(t) for t in angle], dtype=torch.float64) / size).float()[:, None]
    dx = (grid[None, :] - factors.position[:, 0:1].double()).float()  # [N, R] along x (columns)
    dy = (grid[None, :] - factors.position[:, 1:2].double()).float()  # [N, R] along y (rows)
    # Into the shape's frame (undo the clockwise-on-screen rotation, divide by the size), per axis:
    # qx = dx cos + dy sin, qy = dy cos - dx sin.
    dx_cos, dx_sin, dy_cos, dy_sin = dx * cos, dx * sin, dy * cos, dy * sin  # [N, R] each
    neg_ramp = -(size * (resolution / 2)).float()  # unit-frame distance -> pixels, negated
    bg = (factors.background.double() * 2 - 1).float()[:, :, None, None]  # [N, C, 1, 1], in [-1, 1]
    diff = ((factors.color.double() - factors.background.double()) * 2).float()[:, :, None, None]
    # Blocks of at most _BLOCK_ELEMENTS values (coverage of several images of one shape, or colour of
    # some rows of one image): the temporaries stay in cache and every op stays under PyTorch's
    # parallel grain size, so rendering never waits on intra-op threads (costly on small busy
    # machines); DataLoader workers are the way to parallelize.
    images_per_block = max(1, _BLOCK_ELEMENTS // (resolution * resolution))
    rows_per_block = min(resolution, max(1, _BLOCK_ELEMENTS // (channels * resolution)))
    shape_ids = factors.shape.tolist()
    for shape_id in sorted(set(shape_ids)):
        sdf = _SDF[SHAPES[shape_id]]
        members = [i for i, sid in enumerate(shape_ids) if sid == shape_id]
        for b0 in range(0, len(members), images_per_block):
            block = members[b0:b0 + images_per_block]
            idx = torch.tensor(block)
            xc, xs, yc, ys = dx_cos[idx], dx_sin[idx], dy_cos[idx], dy_sin[idx]  # [n, R]
            k = neg_ramp[idx][:, None, None]
            for r0 in range(0, resolution, rows_per_block):
                rows = slice(r0, r0 + rows_per_block)
                qx = xc[:, None, :] + ys[:, rows, None]  # [n, h, R]
                qy = yc[:, rows, None] - xs[:, None, :]  # [n, h, R]
                coverage = sdf(qx, qy).mul_(k).add_(0.5).clamp_(0.0, 1.0)  # [n, h, R]
                for j, i in enumerate(block):  # straight into the output
                    torch.mul(coverage[j], diff[i], out=out[i, :, rows]).add_(bg[i])  # [C, h, R]
    return out


# -- dataset and datamodule ---------------------------------------------------------------------------
class ShapesDataset(Dataset):
    """``num_samples`` shape images rendered on demand; ``__getitems__`` renders a whole batch at once.

    Args:
        num_samples: length of the dataset (images are defined for any index; this only sets an epoch).
        resolution: side of the square images, a power of two from 8 to 256.
        channels: 1 (grey) or 3 (RGB).
        classes: shape names the labels index (default: all of ``SHAPES``).
        size_range: (min, max) circumradius in half-image widths.
        seed: seed of the data: image ``i`` depends only on ``(seed, i)``.
        class_proportions: each class's share of the images; None: equal shares.
    """

    def __init__(self, *, num_samples: int = 50_000, resolution: int = 32, channels: int = 3,
                 classes: Sequence[str] | None = None, size_range: tuple[float, float] = (0.35, 0.85),
                 seed: int = 0, class_proportions: Sequence[float] | None = None) -> None:
        check_image_args(resolution, channels, num_samples)
        self.num_samples = int(num_samples)
        self.resolution = int(resolution)
        self.channels = int(channels)
        self.classes = _check_classes(classes)
        self.size_range = _check_size_range(size_range)
        self.seed = int(seed)
        self.class_proportions = _check_proportions(class_proportions, len(self.classes))
        self._labels: Tensor | None = None

    def __len__(self) -> int:
        return self.num_samples

    @property
    def labels(self) -> Tensor:
        """[num_samples] int64 label of every image (computed once, without rendering)."""
        if self._labels is None:
            u = _index_uniforms(range(self.num_samples), self.seed, 1)[:, 0]
            self._labels = torch.from_numpy(_labels_from_uniforms(u, len(self.classes), self.class_proportions))
        return self._labels

    def factors(self, indices: Sequence[int] | Tensor) -> ShapeFactors:
        """The factors of images ``indices`` (class label, shape, size, position, rotation, colours)."""
        return shape_factors(indices, seed=self.seed, classes=self.classes, channels=self.channels,
                             size_range=self.size_range, class_proportions=self.class_proportions)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        x, y = self.__getitems__([index])
        return x[0], y[0]

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """The batch ``(x [N, C, R, R] in [-1, 1], label [N] int64)``."""
        for i in indices:
            if not 0 <= i < self.num_samples:
                raise IndexError(f"index {i} out of range for {self.num_samples} shape images")
        f = self.factors(indices)
        return render_shapes(f, resolution=self.resolution), f.label



class ShapesDataModule(GANDataModule):
    """Procedural labelled shapes (see the module docstring), the default data of the image recipes."""

    supports_holdout = True

    def __init__(
        self,
        *,
        resolution: int = 32,
        channels: int = 3,
        classes: list[str] | None = None,
        size_range: tuple[float, float] = (0.35, 0.85),
        num_samples: int = 50_000,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        num_predict: int = 64,
        class_proportions: list[float] | None = None,
        balance_classes: bool = False,
        holdout: int = 0,
    ) -> None:
        """
        Args:
            resolution: side of the square images, a power of two from 8 to 256.
            channels: 1 (grey) or 3 (RGB).
            classes: shapes to draw, from circle, square, triangle, cross, ring, star (default all); labels index it.
            size_range: (min, max) circumradius of the shapes in half-image widths.
            num_samples: images per epoch.
            batch_size: samples per batch and process.
            num_workers: DataLoader workers (0 is usually enough: a batch is rendered in milliseconds).
            seed: seed of the images (image i depends only on (seed, i)) and of the shuffles.
            num_predict: how many samples ``predict`` generates.
            class_proportions: each class's share of the images, in the order of ``classes`` (normalized to sum
                1; e.g. ``[0.05, 0.19, 0.19, 0.19, 0.19, 0.19]`` for a 5% circle class); None: equal shares.
            balance_classes: training batches hold every class in equal shares (minority classes
                oversampled; ``lightning_gan.data.base.ClassBalancedSampler``).
            holdout: this many further images of the same distribution (data seed ``seed + 1``: none of them is a
                training image) in ``heldout_dataset``, for ``OverfittingMonitor``; 0: none.
        """
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed, num_predict=num_predict,
                         balance_classes=balance_classes, holdout=holdout)
        check_image_args(resolution, channels, num_samples)
        self.resolution = int(resolution)
        self.channels = int(channels)
        self.classes = _check_classes(classes)
        self.size_range = _check_size_range(size_range)
        self.num_samples = int(num_samples)
        self.class_proportions = _check_proportions(class_proportions, len(self.classes))
        self.data_shape = (self.channels, self.resolution, self.resolution)
        self.num_classes = len(self.classes)

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is None:
            args = dict(resolution=self.resolution, channels=self.channels, classes=self.classes,
                        size_range=self.size_range, class_proportions=self.class_proportions)
            self.train_dataset = ShapesDataset(num_samples=self.num_samples, seed=self.seed, **args)
            if self.holdout:
                self.heldout_dataset = ShapesDataset(num_samples=self.holdout, seed=self.seed + 1, **args)

    def factors(self, indices: Sequence[int] | Tensor) -> ShapeFactors:
        """The factors of training images ``indices`` (for probes and classifiers trained on the factors)."""
        return shape_factors(indices, seed=self.seed, classes=self.classes, channels=self.channels,
                             size_range=self.size_range, class_proportions=self.class_proportions)

    def default_metrics(self) -> list[Any]:
        """The shapes metrics (class coverage, reverse KL, Frechet distance of the shapes classifier)."""
        return ["shapes"]
