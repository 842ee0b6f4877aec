"""``lightning-gan prepare``: an image folder or zip to LitData's optimized format, for ``--data=image_stream``.

The images are decoded exactly as ``image_folder`` decodes them (``ImageFolderDataModule`` with the same
``resolution``, ``channels``, labels and ``alpha_background``), so a run on the prepared data sees the same pixels.
Each item is ``{"image": uint8 [R, R, C], "label": int}`` (label 0 when unlabelled); ``lightning_gan.json`` beside
LitData's ``index.json`` records the resolution, channels, number of classes and images.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from lightning_gan.errors import ConfigError

__all__ = ["prepare", "prepare_command"]


class _Item:
    """``index -> {"image", "label"}`` of an ``ImageFolderDataset`` (picklable for LitData's worker processes)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __call__(self, index: int) -> dict[str, Any]:
        return {"image": self.dataset._load(index), "label": int(self.dataset.labels[index])}


def prepare(*, input: str, output: str, resolution: int, channels: int = 3, labels: str | None = None,
            alpha_background: int = 255, chunk_bytes: str = "64MB", num_workers: int = 1) -> dict[str, Any]:
    """Write ``input``'s images to ``output`` in LitData's format; returns what ``lightning_gan.json`` holds.

    Args:
        input: a folder (searched recursively) or a .zip of images, optionally with ``dataset.json`` labels.
        output: a new or empty local folder.
        resolution: side of the square images.
        channels: 1 (greyscale) or 3 (RGB).
        labels: a labels JSON file (as ``image_folder``'s); None: the input's ``dataset.json``, if any.
        alpha_background: grey level (0-255) that transparent pixels are composited over.
        chunk_bytes: size of LitData's chunks.
        num_workers: processes decoding the images.
    """
    from lightning_gan.data.image_folder import ImageFolderDataModule
    from lightning_gan.data.stream import META_FILE, import_litdata, is_url

    litdata = import_litdata()
    if is_url(output):
        raise ConfigError("prepare writes to a local folder: prepare into one, then copy it to the object store "
                          "(and train with --data.init_args.path=s3://...)")
    if not os.path.exists(input):
        raise ConfigError(f"--input {input!r} not found: give a folder (searched recursively) or a .zip of images")
    if os.path.isdir(output) and os.listdir(output):
        raise ConfigError(f"--output {output!r} is not empty; give a new folder")
    images = ImageFolderDataModule(path=input, resolution=resolution, channels=channels, labels=labels,
                                   alpha_background=alpha_background)
    images.setup("fit")
    dataset = images.train_dataset
    litdata.optimize(fn=_Item(dataset), inputs=list(range(len(dataset))), output_dir=output,
                     chunk_bytes=chunk_bytes, num_workers=num_workers, mode=None, reorder_files=False,
                     keep_data_ordered=True, verbose=False)
    meta = {"resolution": int(resolution), "channels": int(channels), "num_classes": images.num_classes,
            "count": len(dataset), "source": os.fspath(input)}
    with open(os.path.join(output, META_FILE), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
    return meta


def prepare_command(argv: list[str]) -> int:
    """``lightning-gan prepare --input DIR_or_ZIP --output OUT --resolution R [--channels C]``."""
    parser = argparse.ArgumentParser(
        prog="lightning-gan prepare",
        description="Convert an image folder or zip (with its dataset.json labels) to LitData's format for "
                    "--data=image_stream; the images are decoded as image_folder decodes them.")
    parser.add_argument("--input", required=True, help="folder or .zip of images")
    parser.add_argument("--output", required=True, help="new folder for the prepared data")
    parser.add_argument("--resolution", type=int, required=True, help="side of the square images, in pixels")
    parser.add_argument("--channels", type=int, default=3, choices=(1, 3), help="1 (greyscale) or 3 (RGB)")
    parser.add_argument("--labels", default=None, help="labels JSON (default: the input's dataset.json, if any)")
    parser.add_argument("--alpha-background", type=int, default=255, help="grey level under transparent pixels")
    parser.add_argument("--workers", type=int, default=1, help="processes decoding the images")
    args = parser.parse_args(argv)
    try:
        meta = prepare(input=args.input, output=args.output, resolution=args.resolution, channels=args.channels,
                       labels=args.labels, alpha_background=args.alpha_background, num_workers=args.workers)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"lightning-gan: error: {err}", file=sys.stderr)
        return 2
    classes = f", {meta['num_classes']} classes" if meta["num_classes"] else ""
    print(f"prepared {meta['count']} images at {meta['resolution']} px, {meta['channels']} channel(s){classes}: "
          f"{args.output} (train with --data=image_stream --data.init_args.path={args.output})")
    return 0
