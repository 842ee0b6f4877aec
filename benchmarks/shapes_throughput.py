"""Images per second that ShapesDataModule's train dataloader delivers (batch 64, in-process loading).

Prints figures only. Usage: ``python benchmarks/shapes_throughput.py [--batches 30] [--repeats 3]``.
The median of the repeats is the figure to quote; the best shows what an idle CPU gives.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lightning_gan.data.shapes import ShapesDataModule


def images_per_second(resolution: int, *, channels: int, batches: int, batch_size: int) -> float:
    dm = ShapesDataModule(resolution=resolution, channels=channels, batch_size=batch_size, num_workers=0,
                          num_samples=batch_size * (batches + 2))
    loader = iter(dm.train_dataloader())
    next(loader), next(loader)  # warm-up: sampler, first allocations
    start = time.perf_counter()
    for _ in range(batches):
        next(loader)
    return batches * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, "
          f"batch {args.batch_size}, channels {args.channels}, num_workers 0")
    print(f"{'resolution':>10} {'median img/s':>13} {'best img/s':>11} {'ms/batch':>9}")
    for r in args.resolutions:
        rates = [images_per_second(r, channels=args.channels, batches=args.batches, batch_size=args.batch_size)
                 for _ in range(args.repeats)]
        median = statistics.median(rates)
        print(f"{r:>10} {median:>13.0f} {max(rates):>11.0f} {1000 * args.batch_size / median:>9.2f}")


if __name__ == "__main__":
    main()
