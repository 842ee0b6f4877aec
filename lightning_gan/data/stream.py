"""Images streamed from LitData's optimized format (a local folder or an object-store URL), sharded and resumable.

``lightning-gan prepare --input DIR_or_ZIP --output OUT --resolution R`` decodes an image folder or zip exactly as
``image_folder`` does (upright, channels, center crop, Lanczos resize, ``dataset.json`` labels) and writes the
uint8 images [R, R, C] and their labels in LitData's chunked format (``litdata.optimize``), with
``lightning_gan.json`` beside LitData's ``index.json`` (resolution, channels, classes, count). This datamodule
(``image_stream``) reads them back with ``litdata.StreamingDataset``/``StreamingDataLoader``:

* every process of every node reads its own share of the chunks (LitData shards by global rank and by loader
  worker), so a data set larger than one disk streams from ``s3://...`` (a local cache per node);
* the images are the ones ``image_folder`` would yield, bit for bit: ``x = v / 127.5 - 1`` of the stored uint8;
* the loader's position is part of Lightning's checkpoint (``StreamingDataLoader.state_dict``, which Lightning
  saves and restores for stateful loaders), so a run resumed in the middle of an epoch continues the data order
  exactly (on the same number of processes and workers).

Needs the ``stream`` extra: ``pip install lightning-gan[stream]``.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lightning_gan.data.base import GANDataModule
from lightning_gan.errors import ConfigError

__all__ = ["META_FILE", "ImageStreamDataModule", "StreamedImages", "import_litdata", "read_meta"]

META_FILE = "lightning_gan.json"  # written by `lightning-gan prepare` beside LitData's index.json
_URL_SCHEMES = ("s3://", "gs://", "azure://", "hf://", "lightning_storage://")


def import_litdata() -> Any:
    """The ``litdata`` module, or one line that says what to install."""
    try:
        import litdata
    except ImportError as err:
        raise ConfigError("Streaming data needs LitData: pip install 'lightning-gan[stream]' (or pip install "
                          "litdata)") from err
    return litdata


def is_url(path: str) -> bool:
    return path.startswith(_URL_SCHEMES)


def read_meta(path: str, *, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """``lightning_gan.json`` of a prepared data set (a local folder or an object-store URL)."""
    if is_url(path):
        import_litdata()
        from litdata.streaming.downloader import get_downloader

        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, META_FILE)
            get_downloader(path, tmp, [], storage_options).download_file(f"{path.rstrip('/')}/{META_FILE}", local)
            with open(local, encoding="utf-8") as f:
                return json.load(f)
    meta = os.path.join(path, META_FILE)
    if not os.path.isfile(meta):
        what = "does not exist" if not os.path.exists(path) else f"has no {META_FILE}"
        raise ConfigError(f"{path!r} {what}: make it with lightning-gan prepare --input IMAGES --output {path} "
                          f"--resolution R")
    with open(meta, encoding="utf-8") as f:
        return json.load(f)


def to_pair(item: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """A stored item ``{"image": uint8 [R, R, C], "label": int}`` as ``(x [C, R, R] in [-1, 1], label int64)``."""
    image = np.ascontiguousarray(item["image"])  # [R, R, C] uint8
    x = torch.from_numpy(image).permute(2, 0, 1).to(torch.float32).div_(127.5).sub_(1.0)
    return x, torch.tensor(int(item["label"]), dtype=torch.long)


class StreamedImages(Dataset):
    """Random access to a prepared data set, in stored order (what metrics read real images from).

    Args:
        path: the prepared folder or URL.
        count: number of images (from ``lightning_gan.json``).
        cache_dir: LitData's cache for a remote data set (None: its default).
        storage_options: passed to LitData (credentials, endpoint).
    """

    def __init__(self, *, path: str, count: int, cache_dir: str | None = None,
                 storage_options: dict[str, Any] | None = None) -> None:
        self.path, self.count = path, int(count)
        self.cache_dir, self.storage_options = cache_dir, storage_options
        self._dataset: Any = None

    @property
    def dataset(self) -> Any:
        if self._dataset is None:
            litdata = import_litdata()
            self._dataset = litdata.StreamingDataset(self.path, cache_dir=self.cache_dir, shuffle=False,
                                                     storage_options=self.storage_options or {})
        return self._dataset

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_dataset": None}  # each worker opens its own reader

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if not 0 <= index < self.count:
            raise IndexError(f"index {index} out of range for {self.count} images")
        return to_pair(self.dataset[int(index)])

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        pairs = [self[int(i)] for i in indices]
        return torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs])


def _collate(items: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


class ImageStreamDataModule(GANDataModule):
    """Images prepared by ``lightning-gan prepare``, streamed with LitData (``(x [N, C, R, R], label [N])``).

    ``resolution``, ``channels`` and the classes come from the prepared data (``lightning_gan.json``); give
    ``resolution``/``channels`` to have them checked against it. Each epoch is shuffled with ``seed`` (LitData
    shuffles the chunks, then the items within the chunks a process holds), incomplete batches are dropped.
    """

    def __init__(
        self,
        *,
        path: str,
        resolution: int | None = None,
        channels: int | None = None,
        cache_dir: str | None = None,
        max_cache_size: str = "100GB",
        storage_options: dict[str, Any] | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        num_predict: int = 64,
    ) -> None:
        """
        Args:
            path: the folder written by ``lightning-gan prepare``, or its copy in an object store (``s3://bucket/x``).
            resolution: expected side of the images; None takes the prepared one.
            channels: expected channels (1 or 3); None takes the prepared ones.
            cache_dir: where LitData keeps the chunks of a remote data set (one per node); None: LitData's default.
            max_cache_size: the most that cache may hold (LitData's size string).
            storage_options: passed to LitData for the object store (credentials, endpoint).
            batch_size: samples per batch and process.
            num_workers: loader worker processes per process (each reads its own chunks).
            seed: seed of the epoch shuffles.
            num_predict: how many samples ``predict`` generates.
        """
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed, num_predict=num_predict)
        self.path = os.fspath(path)
        self.cache_dir = cache_dir
        self.max_cache_size = max_cache_size
        self.storage_options = dict(storage_options or {})
        self._expected = {"resolution": resolution, "channels": channels}
        self._meta: dict[str, Any] | None = None

    @property
    def meta(self) -> dict[str, Any]:
        """``lightning_gan.json`` of the prepared data, read (and checked) on first use."""
        if self._meta is None:
            meta = read_meta(self.path, storage_options=self.storage_options)
            for name, expected in self._expected.items():
                if expected is not None and int(expected) != int(meta[name]):
                    raise ConfigError(f"{self.path!r} was prepared with {name} {meta[name]}, not {expected}: use "
                                      f"--data.init_args.{name}={meta[name]} or prepare it again with --{name} "
                                      f"{expected}")
            self._meta = meta
        return self._meta

    @property
    def data_shape(self) -> tuple[int, int, int]:  # type: ignore[override]
        """``(channels, resolution, resolution)`` of the prepared images."""
        return (int(self.meta["channels"]), int(self.meta["resolution"]), int(self.meta["resolution"]))

    @property
    def count(self) -> int:
        """Number of prepared images."""
        return int(self.meta["count"])

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        """Largest class index in the prepared labels plus one; 0 when unlabelled."""
        return int(self.meta.get("num_classes", 0))

    def default_metrics(self) -> list[Any]:
        """As ``image_folder``: FID and KID when the Inception weights are on this machine, else ``swd``."""
        from lightning_gan.metrics.features import find_inception_weights

        return ["fid", "kid"] if find_inception_weights() is not None else ["swd"]

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is None:
            self.train_dataset = StreamedImages(path=self.path, count=self.count, cache_dir=self.cache_dir,
                                                storage_options=self.storage_options)

    def train_dataloader(self) -> DataLoader:
        litdata = import_litdata()
        if self.batch_plan is not None:
            raise ConfigError("image_stream serves one batch size; leave batch_size out of the growth schedule "
                              "(the stages' resolutions work)")
        if self.count < self.batch_size:
            raise ConfigError(f"{self.path!r} holds {self.count} images, fewer than one batch of {self.batch_size}: "
                              f"lower batch_size (incomplete batches are dropped)")
        dataset = litdata.StreamingDataset(self.path, cache_dir=self.cache_dir, shuffle=True, drop_last=True,
                                           seed=self.seed, max_cache_size=self.max_cache_size,
                                           storage_options=self.storage_options, transform=to_pair)
        return litdata.StreamingDataLoader(dataset, batch_size=self.batch_size, num_workers=self.num_workers,
                                           drop_last=True, collate_fn=_collate,
                                           persistent_workers=self.num_workers > 0)
