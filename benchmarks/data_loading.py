"""Loader throughput of image_folder (a folder, a zip) against image_stream (LitData) on the same images.

Renders ``--images`` PNGs of the procedural shapes at ``--resolution`` px (with their dataset.json labels), zips
them, prepares them with ``lightning-gan prepare``, then for each source and 0, 1 and 2 loader worker processes
prints the time to the first batch (setup, e.g. image_folder's header scan, and the workers' start included) and
the images per second decoded and batched over ``--epochs`` epochs (first batch included).

    python benchmarks/data_loading.py --images 4000 --resolution 64 --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def make_pngs(root: Path, n: int, resolution: int) -> None:
    from lightning_gan.data.shapes import ShapesDataModule

    data = ShapesDataModule(resolution=resolution, num_samples=n, channels=3)
    data.setup("fit")
    x, y = data.train_dataset.__getitems__(list(range(n)))  # [N, 3, R, R] in [-1, 1]
    pixels = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    labels = []
    for i in range(n):
        name = f"{i // 1000:02d}/{i:06d}.png"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(pixels[i])).save(root / name)
        labels.append([name, int(y[i])])
    (root / "dataset.json").write_text(json.dumps({"labels": labels}))


def measure(datamodule, epochs: int) -> tuple[float, float]:
    """(seconds to the first batch, images per second over ``epochs`` epochs, first batch included)."""
    start = time.perf_counter()
    first = None
    images = 0
    for _ in range(epochs):
        for x, _ in datamodule.train_dataloader():
            if first is None:
                first = time.perf_counter() - start
            images += x.shape[0]
    return first or float("nan"), images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", default="0,1,2",
                        help="loader worker processes to try, comma-separated (0: decode in this process)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from lightning_gan.data.image_folder import ImageFolderDataModule
    from lightning_gan.data.stream import ImageStreamDataModule
    from lightning_gan.prepare import prepare

    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (figures scale with what else runs)")
    tmp = Path(tempfile.mkdtemp(prefix="data_loading_"))
    try:
        t = time.perf_counter()
        make_pngs(tmp / "pngs", args.images, args.resolution)
        archive = shutil.make_archive(str(tmp / "pngs"), "zip", tmp / "pngs")
        print(f"{args.images} PNGs of {args.resolution} px rendered and zipped in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        prepare(input=str(tmp / "pngs"), output=str(tmp / "stream"), resolution=args.resolution, num_workers=1)
        print(f"prepare (1 worker): {time.perf_counter() - t:.1f} s")
        print(f"{'source':<22}{'workers':>8}{'first batch (s)':>17}{'images/s':>11}")
        for workers in (int(w) for w in args.workers.split(",")):
            sources = {
                "image_folder (folder)": ImageFolderDataModule(path=str(tmp / "pngs"), resolution=args.resolution,
                                                               batch_size=args.batch_size, num_workers=workers),
                "image_folder (zip)": ImageFolderDataModule(path=archive, resolution=args.resolution,
                                                            batch_size=args.batch_size, num_workers=workers),
                "image_stream": ImageStreamDataModule(path=str(tmp / "stream"), batch_size=args.batch_size,
                                                      num_workers=workers),
            }
            for name, dm in sources.items():
                first, rate = measure(dm, args.epochs)
                print(f"{name:<22}{workers:>8}{first:>17.2f}{rate:>11.0f}", flush=True)
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
