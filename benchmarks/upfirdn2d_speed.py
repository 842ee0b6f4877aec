"""Speed of ``upsample2d``, ``downsample2d`` and ``filter2d`` against the dense ``upfirdn2d`` definition.

Prints figures only: milliseconds per call (median of the repeats, fast and dense measured alternately)
and the ratio dense / fast (> 1: the fast path wins), forward alone and forward + backward, NCHW and
channels_last, with the 4-tap binomial filter. The dense path materializes the zero-inserted image,
pads, convolves with the full 2-D filter at every position and then subsamples; for plain filtering
(``filter2d``) that is one 2-D depthwise convolution, which is also what the fast path runs for large
images, so a ratio near 1 is expected there.
Usage: ``python benchmarks/upfirdn2d_speed.py [--threads 2] [--shapes 8x128x32 ...] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from lightning_gan.ops import binomial_filter, downsample2d, filter2d, upsample2d
from lightning_gan.ops.upfirdn2d import _upfirdn2d_dense


def timer(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, backward: bool,
          min_seconds: float) -> Callable[[], float]:
    """A function that returns the mean milliseconds per call over at least ``min_seconds``."""
    x = x.detach().requires_grad_(backward)

    def step() -> None:
        y = fn(x)
        if backward:
            y.backward(torch.ones_like(y))

    def measure() -> float:
        calls, start = 0, time.perf_counter()
        while calls == 0 or time.perf_counter() - start < min_seconds:
            step()
            calls += 1
        return (time.perf_counter() - start) / calls * 1e3

    for _ in range(3):  # warm-up: oneDNN primitive creation, allocator
        step()
    return measure


def compare(fast: Callable, dense: Callable, x: torch.Tensor, *, backward: bool, repeats: int,
            min_seconds: float = 0.1) -> tuple[float, float, float, float]:
    """Median and best milliseconds of both, measured alternately so that load changes hit both alike."""
    measure_fast = timer(fast, x, backward=backward, min_seconds=min_seconds)
    measure_dense = timer(dense, x, backward=backward, min_seconds=min_seconds)
    t_fast, t_dense = [], []
    for _ in range(repeats):
        t_fast.append(measure_fast())
        t_dense.append(measure_dense())
    return statistics.median(t_fast), statistics.median(t_dense), min(t_fast), min(t_dense)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shapes", nargs="+", default=["8x256x16", "8x128x32", "8x64x64", "8x3x64", "4x512x8"],
                        help="NxCxH (square images)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    f = binomial_filter()
    ops: dict[str, tuple[Callable, Callable]] = {
        "upsample2d": (lambda t: upsample2d(t, f), lambda t: _upfirdn2d_dense(t, f, 2, 2, 1, 1, 2, 1, 2, 1, False, 4.0)),
        "downsample2d": (lambda t: downsample2d(t, f), lambda t: _upfirdn2d_dense(t, f, 1, 1, 2, 2, 1, 1, 1, 1, False, 1.0)),
        "filter2d": (lambda t: filter2d(t, f), lambda t: _upfirdn2d_dense(t, f, 1, 1, 1, 1, 2, 1, 2, 1, False, 1.0)),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, float32, filter [1,3,3,1]/8 (separable)")
    print("median ms of the repeats (fast, dense), their ratio, and the ratio of the best times")
    print(f"{'op':>12} {'N x C x H':>11} {'layout':>13} {'pass':>8} {'fast ms':>8} {'dense ms':>9} {'dense/fast':>10} "
          f"{'best d/f':>9}")
    for shape in args.shapes:
        n, c, h = (int(v) for v in shape.split("x"))
        for layout in (torch.contiguous_format, torch.channels_last):
            x = torch.randn(n, c, h, h).contiguous(memory_format=layout)
            for backward in (False, True):
                for name, (fast, dense) in ops.items():
                    t_fast, t_dense, best_fast, best_dense = compare(fast, dense, x, backward=backward,
                                                                     repeats=args.repeats)
                    print(f"{name:>12} {shape:>11} {'channels_last' if layout == torch.channels_last else 'NCHW':>13} "
                          f"{'fwd+bwd' if backward else 'fwd':>8} {t_fast:>8.3f} {t_dense:>9.3f} {t_dense / t_fast:>10.2f} "
                          f"{best_dense / best_fast:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
