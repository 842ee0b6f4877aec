"""Multi-scale sliced Wasserstein distance (SWD): a quality metric for any images that needs no download.

Karras et al. 2018 ("Progressive Growing of GANs", appendix D.1) compare the local image statistics of
real and generated images level by level of a Laplacian pyramid:

1. Each image (quantized to 8 bits, as every metric here) is decomposed into a Laplacian pyramid: the
   Gaussian levels ``G_0`` (the image), ``G_{l+1} = down(blur(G_l))`` with the binomial 5-tap filter
   ``[1, 4, 6, 4, 1] / 16``, the band-pass levels ``L_l = G_l - up(G_{l+1})`` (zero insertion, then the
   same filter with gain 4), down to ``min_resolution`` (16 pixels, as in the paper), whose Gaussian level
   is the last (low-pass) level. A 32x32 image has the levels 32 and 16, a 256x256 image 256 ... 16.
2. From every level of every image, ``descriptors_per_image`` 7x7 neighbourhoods are drawn at random
   positions: descriptors of ``7 * 7 * C`` values. The positions come from the metric's seed and depend
   only on the image's index, so real image ``i`` and generated image ``i`` are cut at the same places.
3. Each channel of the descriptors is normalized to zero mean and unit standard deviation. By default
   (``normalize="pooled"``) the statistics are those of both sets together, so a colour cast or a loss of
   contrast in the generated images still counts; ``normalize="separate"`` normalizes each set by its own
   statistics, as the paper's released evaluation does, which makes the distance blind to a per-channel
   shift or scale of a level.
4. The sliced Wasserstein distance of the two descriptor sets ``X`` [N, D] and ``Y`` [M, D] is the mean,
   over ``num_projections`` random unit directions ``theta`` (fixed by the seed), of the exact 1-D
   Wasserstein-1 distance of the projections: ``SWD = mean_theta W1(X theta, Y theta)`` with
   ``W1(a, b) = integral |F_a(t) - F_b(t)| dt`` (for N = M: ``mean_i |a_(i) - b_(i)|`` of the sorted values).

Reported: ``swd`` (the average over levels; lower is better) and ``swd/<resolution>`` per level. The paper
prints the values times 1000 and uses 16384 images per set; the defaults here (2048 images, 16
descriptors each, 256 projections) take seconds on a CPU, so compare numbers only with the same settings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_gan.interfaces import Generator
from lightning_gan.metrics.base import EvaluationContext, GeneratorMetric, check_num_samples, iter_generated, iter_real, quantize

__all__ = [
    "SWD",
    "NEIGHBOURHOOD",
    "laplacian_pyramid",
    "pyramid_descriptors",
    "pyramid_resolutions",
    "random_directions",
    "sliced_wasserstein",
    "swd_per_level",
    "wasserstein_1d",
]

NEIGHBOURHOOD = 7  # side of the descriptors' square neighbourhoods
_BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)


def pyramid_resolutions(height: int, width: int, min_resolution: int = 16) -> list[tuple[int, int]]:
    """The (height, width) of every level: halved while both sides are even and the half stays >= ``min_resolution``."""
    if min(height, width) < NEIGHBOURHOOD:
        raise ValueError(f"SWD needs images of at least {NEIGHBOURHOOD}x{NEIGHBOURHOOD} pixels, got {height}x{width}")
    sizes = [(height, width)]
    while height % 2 == 0 and width % 2 == 0 and min(height, width) // 2 >= max(min_resolution, NEIGHBOURHOOD):
        height, width = height // 2, width // 2
        sizes.append((height, width))
    return sizes


def _blur(x: Tensor, gain: float = 1.0) -> Tensor:
    """Separable binomial [1, 4, 6, 4, 1] / 16 filter per channel, reflect padding."""
    c = x.shape[1]
    k = torch.tensor(_BINOMIAL, dtype=x.dtype, device=x.device)
    k = k / k.sum() * math.sqrt(gain)
    pad = len(_BINOMIAL) // 2
    mode = "reflect" if min(x.shape[-2:]) > pad else "replicate"
    x = F.pad(x, (pad, pad, pad, pad), mode=mode)
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _down(x: Tensor) -> Tensor:
    return _blur(x)[..., ::2, ::2]


def _up(x: Tensor) -> Tensor:
    n, c, h, w = x.shape
    up = x.new_zeros(n, c, 2 * h, 2 * w)
    up[..., ::2, ::2] = x
    return _blur(up, gain=4.0)


def laplacian_pyramid(images: Tensor, min_resolution: int = 16) -> list[Tensor]:
    """Band-pass levels from the full resolution down, then the low-pass level (``pyramid_resolutions``).

    Summing the levels back (``G_k = L_k + up(G_{k+1})``, from the coarsest) gives the images exactly.
    """
    if images.dim() != 4:
        raise ValueError(f"laplacian_pyramid takes images [N, C, H, W], got {tuple(images.shape)}")
    sizes = pyramid_resolutions(images.shape[-2], images.shape[-1], min_resolution)
    levels = []
    current = images.float()
    for _ in sizes[1:]:
        smaller = _down(current)
        levels.append(current - _up(smaller))
        current = smaller
    levels.append(current)
    return levels


def _positions(num_images: int, per_image: int, height: int, width: int, seed: int) -> tuple[Tensor, Tensor]:
    """Top-left corners (rows, columns) [num_images, per_image] of the neighbourhoods of one level."""
    rng = torch.Generator().manual_seed(seed)
    rows = torch.randint(height - NEIGHBOURHOOD + 1, (num_images, per_image), generator=rng)
    cols = torch.randint(width - NEIGHBOURHOOD + 1, (num_images, per_image), generator=rng)
    return rows, cols


def pyramid_descriptors(batches: Iterable[Tensor], num_images: int, *, per_image: int = 64, seed: int = 0,
                        min_resolution: int = 16) -> list[Tensor]:
    """The 7x7 descriptors of every pyramid level: one CPU tensor [num_images * per_image, C * 49] per level.

    Args:
        batches: images [n, C, H, W] (any range; the metric passes quantized images in [-1, 1]), in order.
        num_images: how many images ``batches`` yields at most (the positions are drawn for all at once,
            so they do not depend on the batch size).
        per_image: neighbourhoods drawn per image and level.
        seed: seed of the positions (level ``l`` uses ``seed + l``).
        min_resolution: size of the last (low-pass) level.
    """
    if per_image < 1:
        raise ValueError(f"per_image must be >= 1, got {per_image}")
    out: list[list[Tensor]] = []
    positions: list[tuple[Tensor, Tensor]] = []
    start = 0
    for images in batches:
        levels = laplacian_pyramid(images, min_resolution)
        if not positions:
            positions = [_positions(num_images, per_image, lv.shape[-2], lv.shape[-1], seed + i) for i, lv in enumerate(levels)]
            out = [[] for _ in levels]
        n = images.shape[0]
        if start + n > num_images:
            raise ValueError(f"the batches hold more than num_images = {num_images} images")
        for i, level in enumerate(levels):
            rows, cols = (p[start:start + n].to(level.device) for p in positions[i])
            patches = level.unfold(2, NEIGHBOURHOOD, 1).unfold(3, NEIGHBOURHOOD, 1)  # [n, C, H-6, W-6, 7, 7] (a view)
            index = torch.arange(n, device=level.device).unsqueeze(1).expand_as(rows)
            desc = patches[index.reshape(-1), :, rows.reshape(-1), cols.reshape(-1)]  # [n * per_image, C, 7, 7]
            out[i].append(desc.reshape(desc.shape[0], -1).cpu())
        start += n
    if start == 0:
        raise ValueError("pyramid_descriptors got no images")
    return [torch.cat(parts) for parts in out]


def random_directions(dim: int, count: int, *, seed: int = 0) -> Tensor:
    """``count`` unit vectors drawn uniformly on the sphere of R^dim, as the columns of a [dim, count] tensor."""
    rng = torch.Generator().manual_seed(seed)
    directions = torch.randn(dim, count, generator=rng, dtype=torch.float64)
    return directions / directions.norm(dim=0, keepdim=True)


def _w1_rows(a: Tensor, b: Tensor) -> Tensor:
    """``wasserstein_1d`` of each row of ``a`` [P, N] and ``b`` [P, M] (rows: contiguous, fast to sort)."""
    n, m = a.shape[1], b.shape[1]
    if n == 0 or m == 0:
        raise ValueError("wasserstein_1d needs at least one value in each set")
    if n == m:
        return (a.sort(dim=1).values - b.sort(dim=1).values).abs().mean(dim=1)
    values, order = torch.cat([a, b], dim=1).sort(dim=1)
    steps = torch.cat([torch.full((n,), 1.0 / n, dtype=torch.float64, device=a.device),
                       torch.full((m,), -1.0 / m, dtype=torch.float64, device=a.device)])
    cdf_gap = steps[order].cumsum(dim=1)[:, :-1]  # F_a - F_b right after each sorted value
    return (cdf_gap.abs() * values.diff(dim=1).double()).sum(dim=1).to(a.dtype)


def wasserstein_1d(a: Tensor, b: Tensor) -> Tensor:
    """Exact Wasserstein-1 distance between the empirical distributions of each column of ``a`` [N, P] and ``b`` [M, P].

    ``W1 = integral |F_a(t) - F_b(t)| dt``: between consecutive sorted values of both sets the two CDFs are
    constant, so the integral is a finite sum. For N = M it equals ``mean_i |a_(i) - b_(i)|``.
    """
    if a.dim() == 1:
        a, b = a.unsqueeze(1), b.unsqueeze(1)
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"wasserstein_1d takes [N, P] and [M, P], got {tuple(a.shape)} and {tuple(b.shape)}")
    return _w1_rows(a.t().contiguous(), b.t().contiguous())


def sliced_wasserstein(x: Tensor, y: Tensor, directions: Tensor, *, chunk: int = 64) -> float:
    """Mean over the columns ``theta`` of ``directions`` [D, P] of ``W1(x theta, y theta)`` for ``x`` [N, D], ``y`` [M, D]."""
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1] or directions.shape[0] != x.shape[1]:
        raise ValueError(f"sliced_wasserstein takes x [N, D], y [M, D] and directions [D, P], got "
                         f"{tuple(x.shape)}, {tuple(y.shape)} and {tuple(directions.shape)}")
    total = 0.0
    for start in range(0, directions.shape[1], chunk):
        theta_t = directions[:, start:start + chunk].t().to(x.device, x.dtype)  # [p, D]
        total += float(_w1_rows(theta_t @ x.t(), theta_t @ y.t()).double().sum())  # projections as rows [p, N]
    return total / directions.shape[1]


def _normalize(x: Tensor, mean: Tensor, std: Tensor, channels: int) -> Tensor:
    shaped = x.reshape(x.shape[0], channels, -1)
    return ((shaped - mean.view(1, -1, 1)) / std.view(1, -1, 1)).reshape(x.shape)


def _channel_stats(*sets: Tensor, channels: int) -> tuple[Tensor, Tensor]:
    values = torch.cat([s.reshape(s.shape[0], channels, -1).transpose(0, 1).reshape(channels, -1) for s in sets], dim=1)
    values = values.double()
    return values.mean(dim=1), values.std(dim=1).clamp_min(1e-8)


def swd_per_level(real: list[Tensor], fake: list[Tensor], *, channels: int, num_projections: int = 512, seed: int = 0,
                  normalize: Literal["pooled", "separate"] = "pooled", device: torch.device | str | None = None) -> list[float]:
    """The sliced Wasserstein distance of each level's descriptors (``pyramid_descriptors``), normalized per channel."""
    if len(real) != len(fake):
        raise ValueError(f"real and generated descriptors have {len(real)} and {len(fake)} levels")
    if normalize not in ("pooled", "separate"):
        raise ValueError(f"normalize must be 'pooled' or 'separate', got {normalize!r}")
    results = []
    for level, (x, y) in enumerate(zip(real, fake)):
        x, y = x.to(device or x.device), y.to(device or x.device)
        if normalize == "pooled":
            mean, std = _channel_stats(x, y, channels=channels)
            x, y = (_normalize(t.double(), mean, std, channels).float() for t in (x, y))
        else:
            x = _normalize(x.double(), *_channel_stats(x, channels=channels), channels).float()
            y = _normalize(y.double(), *_channel_stats(y, channels=channels), channels).float()
        directions = random_directions(x.shape[1], num_projections, seed=seed + 1000 + level)
        results.append(sliced_wasserstein(x, y, directions))
    return results


class SWD(GeneratorMetric):
    """Multi-scale sliced Wasserstein distance of Karras et al. 2018 (``swd``, ``swd/<resolution>``; lower is better).

    Any image data works and nothing is downloaded; details in the module docstring. Real descriptors are
    computed once per datamodule and kept (about ``num_samples * descriptors_per_image * 49 * C * 4`` bytes
    per level).

    Args:
        num_samples: generated images (and real ones unless ``num_real`` is set).
        num_real: real images; None: as many as ``num_samples``.
        descriptors_per_image: 7x7 neighbourhoods drawn per image and pyramid level (the paper: 128).
        num_projections: random directions of the sliced distance (the paper: 512).
        min_resolution: size of the coarsest (low-pass) pyramid level (the paper: 16).
        normalize: ``"pooled"`` (both sets' channel statistics) or ``"separate"`` (each set its own, as the
            paper's released evaluation).
        seed: seed of the generated samples, the real subset, the positions and the directions.
    """

    headline = ("swd", "min")

    def __init__(self, *, num_samples: int = 2048, num_real: int | None = None, descriptors_per_image: int = 16,
                 num_projections: int = 256, min_resolution: int = 16,
                 normalize: Literal["pooled", "separate"] = "pooled", seed: int = 0) -> None:
        self.num_samples = check_num_samples("SWD", num_samples)
        self.num_real = None if num_real is None else check_num_samples("SWD", num_real)
        if descriptors_per_image < 1 or num_projections < 1:
            raise ValueError(f"SWD: descriptors_per_image and num_projections must be >= 1, got "
                             f"{descriptors_per_image} and {num_projections}")
        if min_resolution < NEIGHBOURHOOD:
            raise ValueError(f"SWD: min_resolution must be >= {NEIGHBOURHOOD} (the neighbourhoods are 7x7), got {min_resolution}")
        if normalize not in ("pooled", "separate"):
            raise ValueError(f"SWD: normalize must be 'pooled' or 'separate', got {normalize!r}")
        self.descriptors_per_image = int(descriptors_per_image)
        self.num_projections = int(num_projections)
        self.min_resolution = int(min_resolution)
        self.normalize = normalize
        self.seed = int(seed)
        self._real: tuple[Any, int, list[Tensor]] | None = None  # (datamodule, count, descriptors)

    def setup(self, datamodule: Any = None) -> None:
        """Refuses data that is not images of at least 7x7 pixels (e.g. toy2d points)."""
        shape = getattr(datamodule, "data_shape", None)
        if datamodule is None or shape is None:
            return
        if len(shape) != 3 or min(shape[1:]) < NEIGHBOURHOOD:
            raise TypeError(f"SWD needs image data [C, H, W] of at least {NEIGHBOURHOOD}x{NEIGHBOURHOOD} pixels; "
                            f"{type(datamodule).__name__} yields samples of shape {tuple(shape)}")

    def _descriptors(self, batches: Iterator[tuple[Tensor, Tensor | None]], count: int) -> list[Tensor]:
        images = (quantize(x) for x, _ in batches)
        return pyramid_descriptors(images, count, per_image=self.descriptors_per_image, seed=self.seed,
                                   min_resolution=self.min_resolution)

    def real_descriptors(self, datamodule: Any, batch_size: int = 256) -> list[Tensor]:
        """Descriptors of the real subset (computed once per datamodule, then kept)."""
        wanted = self.num_real or self.num_samples
        if self._real is None or self._real[0] is not datamodule or self._real[1] != wanted:
            batches = iter_real(datamodule, wanted, seed=self.seed, batch_size=batch_size)  # all images if fewer
            self._real = (datamodule, wanted, self._descriptors(batches, wanted))
        return self._real[2]

    def compute(self, generator: Generator, datamodule: Any, context: EvaluationContext | None = None) -> dict[str, float]:
        self.setup(datamodule)
        batch_size = context.batch_size if context is not None else 256
        real = self.real_descriptors(datamodule, batch_size)
        fake = self._descriptors(iter_generated(generator, self.num_samples, seed=self.seed, batch_size=batch_size),
                                 self.num_samples)
        channels = int(generator.output_shape[0]) if getattr(generator, "output_shape", None) else 1
        device = next((p.device for p in generator.parameters()), torch.device("cpu"))
        levels = swd_per_level(real, fake, channels=channels, num_projections=self.num_projections, seed=self.seed,
                               normalize=self.normalize, device=device)
        height = int(generator.output_shape[-2])
        width = int(generator.output_shape[-1])
        names = [f"swd/{h}" if h == w else f"swd/{h}x{w}" for h, w in pyramid_resolutions(height, width, self.min_resolution)]
        return {"swd": sum(levels) / len(levels), **dict(zip(names, levels))}
