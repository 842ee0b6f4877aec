"""Common ground of the datamodules: seeded epoch shuffling, batched in-memory fetching, seed batches.

Every datamodule yields ``(x, label)`` batches (``label`` is an int64 class index; 0 when the data has
no classes) and exposes ``data_shape`` (one sample's shape) and ``num_classes`` so that GANModule can
check its architecture against the data before training.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler

from lightning_gan.errors import ConfigError

__all__ = ["EpochShuffleSampler", "GANDataModule", "SeedDataset", "TensorPairDataset", "collate_batched"]


class EpochShuffleSampler(RandomSampler):
    """A permutation per epoch that depends only on ``(seed, epoch)``, so a resumed run sees the same order.

    Lightning calls ``set_epoch`` at the start of every epoch. Under DDP Lightning swaps this sampler
    for its ``DistributedSampler``, which is deterministic the same way but seeded by
    ``seed_everything`` (``PL_GLOBAL_SEED``) rather than by the datamodule's ``seed``.
    """

    def __init__(self, data_source: Sequence[Any], *, seed: int = 0) -> None:
        super().__init__(data_source)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        rng = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        yield from torch.randperm(len(self.data_source), generator=rng).tolist()


class TensorPairDataset(Dataset):
    """``(x[i], y[i])`` over in-memory tensors; ``__getitems__`` fetches a whole batch in one indexing op."""

    def __init__(self, x: Tensor, y: Tensor) -> None:
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.x[index], self.y[index]

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.x[idx], self.y[idx]


def collate_batched(batch: Any) -> Any:
    """Collate for datasets whose ``__getitems__`` already returns a batch; falls back to the default."""
    if isinstance(batch, tuple) and len(batch) == 2 and isinstance(batch[0], Tensor):
        return batch
    return torch.utils.data.default_collate(batch)


class SeedDataset(Dataset):
    """Integers 0..n-1: the seeds ``predict`` turns into samples."""

    def __init__(self, n: int) -> None:
        self.n = int(n)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


class GANDataModule(LightningDataModule):
    """Base of the built-in datamodules. Subclasses set ``data_shape``/``num_classes`` and ``train_dataset``.

    Args:
        batch_size: samples per batch and process.
        num_workers: DataLoader worker processes (0 = load in the training process).
        seed: seed of the data itself (where generated) and of the epoch shuffles.
        num_predict: how many seeds ``predict`` turns into samples.
    """

    data_shape: tuple[int, ...]
    num_classes: int = 0

    def __init__(self, *, batch_size: int = 64, num_workers: int = 0, seed: int = 0, num_predict: int = 64) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.num_predict = int(num_predict)
        self.train_dataset: Dataset | None = None

    def default_metrics(self) -> list[Any]:
        """Metrics a run evaluates when no config pins any: GANModule's and MetricsCallback's ``metrics`` left at None
        (names or metric objects; ``lightning_gan.metrics.selection``)."""
        return []

    def _loader(self, dataset: Dataset, *, shuffle: bool, batch_size: int | None = None,
                drop_last: bool = False) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size or self.batch_size,
            sampler=EpochShuffleSampler(dataset, seed=self.seed) if shuffle else None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_batched,
            drop_last=drop_last,
            # Its own generator: creating an iterator would otherwise draw from the global RNG, and a
            # resumed run (which skips the validation loaders an uninterrupted one created) would diverge.
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            self.setup("fit")
        if len(self.train_dataset) < self.batch_size:
            raise ConfigError(
                f"{type(self).__name__} has {len(self.train_dataset)} training samples, fewer than one batch of "
                f"{self.batch_size}: lower batch_size (incomplete batches are dropped)."
            )
        return self._loader(self.train_dataset, shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        # Metrics draw their own samples; one small real batch drives the validation loop.
        if self.train_dataset is None:
            self.setup("validate")
        subset = torch.utils.data.Subset(self.train_dataset, range(min(self.batch_size, len(self.train_dataset))))
        return DataLoader(subset, batch_size=self.batch_size, collate_fn=collate_batched,
                          generator=torch.Generator().manual_seed(self.seed))

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(SeedDataset(self.num_predict), batch_size=self.batch_size,
                          generator=torch.Generator().manual_seed(self.seed))


def check_resolution(resolution: int) -> None:
    """A power of two from 8 to 256, the sizes the procedural image datasets render."""
    if not (isinstance(resolution, int) and 8 <= resolution <= 256 and resolution & (resolution - 1) == 0):
        raise ValueError(f"resolution must be a power of two from 8 to 256 (8, 16, ..., 256), got {resolution!r}")


def check_image_args(resolution: int, channels: int, num_samples: int) -> None:
    """The argument checks shared by the procedural image datasets (shapes, textures)."""
    check_resolution(resolution)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
