"""ADA's augmentation pipeline (``lightning_gan.augment``) against the same transforms on kornia: speed, aliasing.

Prints figures only.

(a) Speed: images per second of the full "bgc" pipeline at p = 0.5 and p = 1, forward alone and forward + backward
(the gradient w.r.t. the images, as G's phase needs), on one and on two threads, for three implementations:

- ``ours``: ``ADA(fixed_p=p)``: exact blits, one anti-aliased resampling (2x up, bilinear warp, 2x down), one 4x4
  colour matrix;
- ``ours-plain``: the same draws and blits and colours, the warp by plain bilinear ``grid_sample`` at the input's
  rate (``transforms.warp_bilinear``): what the anti-aliasing costs;
- ``kornia``: the closest pipeline of ``kornia.augmentation`` modules, each with probability p:
  ``RandomHorizontalFlip``, ``RandomRotation90`` (nearest), ``RandomAffine`` integer-like translation (nearest,
  reflection), ``RandomAffine`` rotation/scale/translation (bilinear, reflection; kornia has no anisotropic
  scaling and draws the scale uniformly), ``ColorJiggle`` on [0, 1] (HSV-based brightness, contrast, saturation,
  hue; no luma flip). Similar work, not the same distributions.

(b) Aliasing: a band-limited image (12 cosines of 0.03-0.22 cycles/pixel, unit RMS, 64 x 64) rotated by 45 degrees
and zoomed by 1.25 (and rotated by 30 degrees, zoomed by 0.9), by ``apply_geometric`` (ours), by kornia's
``warp_affine`` (bilinear, reflection) with the same matrix, and by plain bilinear ``grid_sample``: in the central
32 x 32, the share of the (Hann-windowed) power above 0.3 cycles/pixel, where the exact image has only the window's
leakage, and the RMS error against the exact warped image.

kornia is optional (``pip install kornia``): without it its columns are skipped with one line.
Usage: ``python benchmarks/augment_pipeline.py [--threads 1 2] [--shapes 32x3x32 64x3x64] [--seconds 1.0]``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from lightning_gan.analysis.spectra import power_spectrum_2d, radial_frequency
from lightning_gan.augment import ADA
from lightning_gan.augment.transforms import (
    apply_blit,
    apply_colour,
    apply_geometric,
    apply_selected,
    geometric_matrix,
    warp_bilinear,
)

try:
    import kornia
    import kornia.augmentation as K
    from kornia.geometry.transform import warp_affine
except ImportError:  # optional: the comparison only
    kornia = None


class PlainWarpADA(nn.Module):
    """ADA's draws, blits and colours with the warp done by plain bilinear ``grid_sample`` (no anti-aliasing)."""

    def __init__(self, ada: ADA) -> None:
        super().__init__()
        self.ada = ada

    def forward(self, images: Tensor) -> Tensor:
        n, c, h, w = images.shape
        params = self.ada.sample_parameters(n, h, w, c, device=images.device)
        x = apply_selected(images, params.blit, lambda y, rows: apply_blit(
            y, xflip=params.xflip[rows], rotations=params.rotations[rows], shifts=params.shifts[rows]), subset=True)
        x = apply_selected(x, params.geometric_selected, lambda y, rows: warp_bilinear(y, params.geometric[rows]),
                           subset=True)
        return apply_selected(x, params.colour_selected, lambda y, rows: apply_colour(y, params.colour[rows]),
                              subset=True)


def kornia_pipeline(p: float) -> nn.Module:
    """The closest ``kornia.augmentation`` pipeline (see the module docstring); images in [-1, 1] in and out."""
    scale = 2 ** (0.2 * math.sqrt(3))  # a uniform log2-scale with ADA's standard deviation 0.2
    geometric = nn.Sequential(
        K.RandomHorizontalFlip(p=p),
        K.RandomRotation90(times=(0, 3), resample="nearest", p=p),
        K.RandomAffine(degrees=0.0, translate=(0.125, 0.125), resample="nearest", padding_mode="reflection", p=p),
        K.RandomAffine(degrees=180.0, translate=(0.125 * math.sqrt(3), 0.125 * math.sqrt(3)),
                       scale=(1 / scale, scale), padding_mode="reflection", p=p),
    )
    colour = K.ColorJiggle(brightness=0.1, contrast=0.5, saturation=1.0, hue=0.5, p=p)  # 0.1 on [0, 1] = 0.2

    class Pipeline(nn.Module):
        def forward(self, images: Tensor) -> Tensor:
            x = geometric(images)
            return colour((x + 1) / 2) * 2 - 1

    return Pipeline()


def measure(pipelines: dict[str, Callable[[Tensor], Tensor]], x: Tensor, *, backward: bool, seconds: float,
            repeats: int) -> dict[str, tuple[float, float]]:
    """Per pipeline, the median over ``repeats`` of (images per wall-clock second, images per CPU second of this
    process), each repeat measuring every pipeline in turn for at least ``seconds`` so that load changes on a
    shared machine hit all of them alike."""
    x = x.detach().requires_grad_(backward)

    def step(fn: Callable[[Tensor], Tensor]) -> None:
        y = fn(x)
        if backward:
            y.square().mean().backward()

    for fn in pipelines.values():  # warm-up
        for _ in range(3):
            step(fn)
    rates: dict[str, list[tuple[float, float]]] = {name: [] for name in pipelines}
    for _ in range(repeats):
        for name, fn in pipelines.items():
            calls, wall, cpu = 0, time.perf_counter(), time.process_time()
            while calls == 0 or time.perf_counter() - wall < seconds:
                step(fn)
                calls += 1
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            rates[name].append((calls * x.shape[0] / wall, calls * x.shape[0] / cpu))
    return {name: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
            for name, rs in rates.items()}


def speed(args: argparse.Namespace) -> None:
    print("(a) speed: images per second, wall clock / per CPU second of this process (median of the repeats, "
          "measured alternately), float32, CPU")
    names = ["ours", "ours-plain"] + (["kornia"] if kornia is not None else [])
    if kornia is None:
        print("kornia is not installed: its columns are skipped (pip install kornia)")
    print(f"{'threads':>7} {'N x C x H':>10} {'p':>4} {'pass':>8} " + " ".join(f"{n:>15}" for n in names))
    for threads in args.threads:
        torch.set_num_threads(threads)
        for shape in args.shapes:
            n, c, h = (int(v) for v in shape.split("x"))
            x = torch.rand(n, c, h, h) * 2 - 1
            for p in (0.5, 1.0):
                ada = ADA(fixed_p=p)
                pipelines: dict[str, Callable[[Tensor], Tensor]] = {"ours": ada, "ours-plain": PlainWarpADA(ada)}
                if kornia is not None:
                    pipelines["kornia"] = kornia_pipeline(p)
                for backward in (False, True):
                    torch.manual_seed(0)
                    rates = measure(pipelines, x, backward=backward, seconds=args.seconds, repeats=args.repeats)
                    print(f"{threads:>7} {shape:>10} {p:>4} {'fwd+bwd' if backward else 'fwd':>8} "
                          + " ".join(f"{rates[name][0]:>7.0f} /{rates[name][1]:>6.0f}" for name in names),
                          flush=True)


def band_limited(size: int, seed: int = 0) -> Callable[[Tensor | None], Tensor]:
    """``exact(G)``: the image ``in(G^-1 q)`` [1, 1, size, size] (float64) of 12 cosines of 0.03-0.22 cycles/pixel."""
    g = torch.Generator().manual_seed(seed)
    angle = torch.rand(12, generator=g, dtype=torch.float64) * 2 * math.pi
    radius = 0.03 + torch.rand(12, generator=g, dtype=torch.float64) * 0.19
    phase = torch.rand(12, generator=g, dtype=torch.float64) * 2 * math.pi
    centres = torch.arange(size, dtype=torch.float64) + 0.5 - size / 2
    y, x = torch.meshgrid(centres, centres, indexing="ij")

    def exact(matrix: Tensor | None = None) -> Tensor:
        u, v = x, y
        if matrix is not None:
            inv = torch.linalg.inv(matrix)
            u, v = inv[0, 0] * x + inv[0, 1] * y + inv[0, 2], inv[1, 0] * x + inv[1, 1] * y + inv[1, 2]
        waves = torch.cos(2 * math.pi * (radius[:, None, None] * (torch.cos(angle)[:, None, None] * u
                                                                  + torch.sin(angle)[:, None, None] * v))
                          + phase[:, None, None])
        return (waves.sum(0) / math.sqrt(6))[None, None]

    return exact


def kornia_warp(images: Tensor, matrices: Tensor) -> Tensor:
    """``warp_affine`` with our centred pixel-coordinate matrices moved to kornia's (origin at the first pixel)."""
    n, _, h, w = images.shape
    to_centred = torch.eye(3, dtype=matrices.dtype).repeat(n, 1, 1)
    to_centred[:, 0, 2], to_centred[:, 1, 2] = 0.5 - w / 2, 0.5 - h / 2
    m = torch.linalg.inv(to_centred) @ matrices @ to_centred
    return warp_affine(images, m[:, :2, :].to(images.dtype), (h, w), mode="bilinear", padding_mode="reflection",
                       align_corners=True)


def aliasing() -> None:
    print("(b) aliasing: band-limited 64 x 64 image (<= 0.22 cycles/pixel, unit RMS), central 32 x 32")
    exact = band_limited(64)
    x = exact(None).float()
    f = ADA().up_filter
    centre = (..., slice(16, 48), slice(16, 48))
    high = radial_frequency(32, 32) > 0.3
    methods: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
        "ours (2x, Kaiser 12)": lambda im, g: apply_geometric(im, g, up_filter=f, down_filter=f),
        "plain grid_sample": warp_bilinear,
    }
    if kornia is not None:
        methods["kornia warp_affine"] = kornia_warp
    else:
        print("kornia is not installed: its row is skipped (pip install kornia)")
    for degrees, zoom in ((45.0, 1.25), (30.0, 0.9)):
        one = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
        g = geometric_matrix(scale=one(zoom), pre_angle=one(math.radians(degrees)), aniso=one(1.0),
                             post_angle=one(0.0), translation=torch.zeros(1, 2, dtype=torch.float64))
        reference = exact(g[0])
        power = power_spectrum_2d(reference[centre], window=True)
        print(f"rotation {degrees:g} deg, zoom {zoom:g}: exact image {float(power[high].sum() / power.sum()):.1e} of "
              f"its power above 0.3 cycles/pixel (the window's leakage)")
        for name, warp in methods.items():
            out = warp(x, g.float()).double()
            power = power_spectrum_2d(out[centre], window=True)
            rms = float((out - reference)[centre].square().mean().sqrt())
            print(f"  {name:>22}: power above 0.3 c/px {float(power[high].sum() / power.sum()):.1e}, "
                  f"RMS error {rms:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--shapes", nargs="+", default=["32x3x32", "64x3x64"], help="NxCxH (square images)")
    parser.add_argument("--seconds", type=float, default=1.0, help="at least this long per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-speed", action="store_true", help="the aliasing figures only")
    args = parser.parse_args()
    print(f"torch {torch.__version__}" + (f", kornia {kornia.__version__}" if kornia is not None else ""))
    aliasing()
    if not args.skip_speed:
        speed(args)


if __name__ == "__main__":
    main()
