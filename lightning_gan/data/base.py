"""Common ground of the datamodules: seeded epoch shuffling, batched in-memory fetching, seed batches, growth stages.

Every datamodule yields ``(x, label)`` batches (``label`` is an int64 class index; 0 when the data has
no classes) and exposes ``data_shape`` (one sample's shape) and ``num_classes`` so that GANModule can
check its architecture against the data before training.

Progressive growing (``lightning_gan.callbacks.ProgressiveGrowing``): ``ProgressiveData``, a mixin of every
built-in datamodule that any ``LightningDataModule`` can add, serves the training images at the growth stage's
resolution and the loader's batches at the stage's batch size (``StageBatchSampler``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler

from lightning_gan.errors import ConfigError
from lightning_gan.ops.growth import real_images_at

__all__ = ["ClassBalancedSampler", "EpochShuffleSampler", "GANDataModule", "ProgressiveData", "SeedDataset", "StageBatchSampler",
           "TensorPairDataset", "collate_batched"]


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


class ClassBalancedSampler(DistributedSampler):
    """Indices in rounds of one sample of every class, so that every batch holds the classes in equal shares.

    The stream of an epoch is a sequence of *rounds*; a round holds one index of each class present in
    ``labels``, in a random class order. Each class's indices are drawn from its own shuffled permutation,
    reshuffled whenever it runs out, so a minority class is oversampled and a majority class undersampled
    (each class ``1/K`` of the samples). A batch of ``batch_size`` consecutive indices that starts on a
    round boundary holds every class ``batch_size / K`` times when ``K`` divides ``batch_size``; any window
    of consecutive indices (a ``d_steps`` chunk, a progressive-growing batch size) holds each class within 2
    of ``window / K``.

    Depends only on ``(seed, epoch)`` (``set_epoch``), like ``EpochShuffleSampler``, so a resumed run sees the
    same order. DDP: every process builds the same stream and takes every ``world_size``-th round starting at
    its rank, so processes never share a round and each process's batches are balanced; being a
    ``DistributedSampler`` itself, Lightning does not wrap or replace it. An epoch has ``len(labels) // K``
    rounds in all (``len(labels)`` samples, less the remainder), shared among the processes.

    Args:
        labels: [N] int class index of every sample of the dataset.
        seed: seed of the order.
        num_replicas: processes (default: the initialized process group's world size, else 1).
        rank: this process's rank (default: from the process group, else 0).
    """

    def __init__(self, labels: Tensor | Sequence[int], *, seed: int = 0, num_replicas: int | None = None,
                 rank: int | None = None) -> None:
        labels = torch.as_tensor(labels, dtype=torch.long).flatten()
        dist = torch.distributed
        initialized = dist.is_available() and dist.is_initialized()
        num_replicas = num_replicas if num_replicas is not None else (dist.get_world_size() if initialized else 1)
        rank = rank if rank is not None else (dist.get_rank() if initialized else 0)
        super().__init__(labels, num_replicas=num_replicas, rank=rank, shuffle=True, seed=int(seed))
        self.labels = labels
        self.classes = torch.unique(labels)
        if len(self.classes) < 1:
            raise ConfigError("balanced classes need labelled training samples; the dataset is empty")
        self.members = [torch.nonzero(labels == c).flatten() for c in self.classes]
        self.rounds = (len(labels) // len(self.classes)) // self.num_replicas  # rounds per process

    def __len__(self) -> int:
        return self.rounds * len(self.classes)

    def __iter__(self) -> Iterator[int]:
        k = len(self.classes)
        total = self.rounds * self.num_replicas
        rng = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.argsort(torch.rand(total, k, generator=rng), dim=1)  # [rounds, K] class slot -> class
        stream = torch.empty(total, k, dtype=torch.long)
        for c, members in enumerate(self.members):
            draws = [members[torch.randperm(len(members), generator=rng)]
                     for _ in range(-(-total // len(members)))]
            picks = torch.cat(draws)[:total]
            stream[order == c] = picks  # one slot per round holds class c
        yield from stream[self.rank::self.num_replicas].flatten().tolist()


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


class StageBatchSampler(BatchSampler):
    """Batches whose size follows the run's global image count (per-stage batch sizes of progressive growing).

    ``plan`` (set by ``ProgressiveGrowing``) offers ``images_seen()`` (real images shown so far, all processes),
    ``world_size`` and ``batch_size_at(images) -> int | None`` (None: this sampler's own ``batch_size``). Batch
    ``k`` of an epoch has the size the plan gives for the images before it: the images seen when the epoch's
    iterator was made plus the sizes of batches ``0..k-1`` times ``world_size``. Batches are trained in the order
    they are drawn, so that count is the run's image count at the iteration that trains batch ``k``, however far
    the loader's workers or Lightning's prefetching run ahead, on every process alike (same count, same size).
    ``len()`` is the exact number of batches of the epoch about to start; ``ProgressiveGrowing`` has the Trainer
    reload the training loader every epoch so that Lightning re-reads it. Without a plan: a plain ``BatchSampler``.
    """

    def __init__(self, sampler: Sampler[int] | Sequence[int], batch_size: int, drop_last: bool, *,
                 plan: Any = None) -> None:
        """
        Args:
            sampler: the indices, e.g. the datamodule's shuffling sampler (Lightning swaps in its
                ``DistributedSampler`` under DDP).
            batch_size: the size when the plan gives none.
            drop_last: drop an incomplete last batch (training loaders do).
            plan: see the class docstring; None: fixed ``batch_size``.
        """
        super().__init__(sampler, batch_size, drop_last)
        self.plan = plan

    def batch_sizes(self) -> list[int]:
        """The sizes of the batches of the epoch about to start, in order."""
        remaining = total = len(self.sampler)  # type: ignore[arg-type]
        if self.plan is None:
            full, rest = divmod(remaining, self.batch_size)
            return [self.batch_size] * full + ([rest] if rest and not self.drop_last else [])
        images, world = int(self.plan.images_seen()), int(self.plan.world_size)
        sizes: list[int] = []
        while remaining > 0:
            size = int(self.plan.batch_size_at(images) or self.batch_size)
            if not sizes and size > total:
                raise ConfigError(f"The training data has {total} samples per process, fewer than one "
                                  f"batch of {size} (the growth schedule's batch_size at {images / 1000:g} kimg); "
                                  f"lower that batch_size or use more data")
            if remaining < size:
                if not self.drop_last:
                    sizes.append(remaining)
                break
            sizes.append(size)
            remaining -= size
            images += size * world
        return sizes

    def __len__(self) -> int:
        return len(self.batch_sizes())

    def __iter__(self) -> Iterator[list[int]]:
        if self.plan is None:
            yield from super().__iter__()
            return
        indices = iter(self.sampler)
        for size in self.batch_sizes():
            yield [next(indices) for _ in range(size)]


class ProgressiveData:
    """Mixin for a ``LightningDataModule``: serves training images at a progressive-growing stage.

    ``ProgressiveGrowing`` calls ``serve_stage(resolution, alpha)`` before every iteration; training batches
    ``(x, ...)`` (or ``x``) then reach the model as ``lightning_gan.ops.real_images_at(x, resolution, alpha)``:
    the full-resolution images box-filtered down to the stage (``downsample_average`` repeated: each pixel the
    mean of its block, as ProGAN made its lower resolutions), during a fade blended with their half-resolution
    version exactly as the generator blends its output (``fade_resolutions``, ProGAN sec. 2). No second
    dataset: one copy of the data at full resolution serves every stage.

    Where: ``on_after_batch_transfer``, i.e. on the device, after the loader (its workers run ahead and could
    not see a stage change; filtering on the accelerator costs less than a copy of the data per resolution),
    before the batch reaches ``training_step`` (which checks it against the generator's shape). Validation
    and test batches stay at full resolution. ``staged_loader(loader)`` re-batches a training loader with a
    ``StageBatchSampler`` when the callback set a ``batch_plan`` (per-stage batch sizes).
    """

    batch_plan: Any = None
    _served_stage: tuple[int, float] | None = None

    @property
    def served_stage(self) -> tuple[int, float] | None:
        """``(resolution, alpha)`` of the training images, or None for the full resolution."""
        return self._served_stage

    def serve_stage(self, resolution: int | None, alpha: float = 1.0) -> None:
        """Serve training images at ``(resolution, alpha)``; ``resolution=None`` serves them as they are."""
        self._served_stage = None if resolution is None else (int(resolution), float(alpha))

    def stage_batch(self, batch: Any) -> Any:
        """``batch`` with its images (the first element of a tuple/list batch, or the tensor) at the served stage."""
        stage = self._served_stage
        if stage is None:
            return batch
        if isinstance(batch, Tensor):
            return real_images_at(batch, *stage)
        if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
            return type(batch)([real_images_at(batch[0], *stage), *batch[1:]])
        raise ConfigError(f"{type(self).__name__} serves batches of type {type(batch).__name__}; progressive growing "
                          f"needs an image tensor or an (images, labels) tuple")

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = getattr(self, "trainer", None)
        if self._served_stage is None or trainer is None or not trainer.training:
            return batch
        return self.stage_batch(batch)

    def staged_loader(self, loader: DataLoader) -> DataLoader:
        """``loader`` itself, or with a ``batch_plan`` the same loader batched by a ``StageBatchSampler``."""
        if self.batch_plan is None:
            return loader
        if loader.batch_size is None:
            raise ConfigError(f"{type(self).__name__}'s training loader has its own batch sampler; per-stage batch "
                              f"sizes need a loader with batch_size (or leave batch_size out of the growth schedule)")
        sampler = StageBatchSampler(loader.sampler, loader.batch_size, loader.drop_last, plan=self.batch_plan)
        return DataLoader(loader.dataset, batch_sampler=sampler, num_workers=loader.num_workers,
                          collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
                          persistent_workers=loader.persistent_workers, generator=loader.generator,
                          worker_init_fn=loader.worker_init_fn)


class GANDataModule(ProgressiveData, LightningDataModule):
    """Base of the built-in datamodules. Subclasses set ``data_shape``/``num_classes`` and ``train_dataset``.

    Args:
        batch_size: samples per batch and process.
        num_workers: DataLoader worker processes (0 = load in the training process).
        seed: seed of the data itself (where generated) and of the epoch shuffles.
        num_predict: how many seeds ``predict`` turns into samples.
        balance_classes: training batches hold every class in equal shares (``ClassBalancedSampler``: minority
            classes oversampled), instead of a plain shuffle; needs labels (``train_labels``).
        holdout: real images kept out of training, in ``heldout_dataset`` (for ``OverfittingMonitor``); 0: none.
            Subclasses that support it say where the images come from; the others refuse a non-zero value.
    """

    data_shape: tuple[int, ...]
    num_classes: int = 0
    supports_holdout: bool = False

    def __init__(self, *, batch_size: int = 64, num_workers: int = 0, seed: int = 0, num_predict: int = 64,
                 balance_classes: bool = False, holdout: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(holdout, bool) or not isinstance(holdout, int) or holdout < 0:
            raise ValueError(f"holdout must be an integer >= 0 (images kept out of training), got {holdout!r}")
        if holdout and not self.supports_holdout:
            raise ConfigError(f"{type(self).__name__} cannot hold images out of training; drop holdout")
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.num_predict = int(num_predict)
        self.balance_classes = bool(balance_classes)
        self.holdout = int(holdout)
        self.train_dataset: Dataset | None = None
        self.heldout_dataset: Dataset | None = None  # set by setup when holdout > 0

    def train_labels(self) -> Tensor | None:
        """[N] class index of every training sample: the dataset's ``labels`` (or a ``TensorPairDataset``'s
        ``y``); None when the data has none. Datasets that can list their labels cheaply expose ``labels``; a
        dataset longer than its labels by a whole factor (mirrored copies) maps index i to label i % len(labels)."""
        if self.train_dataset is None:
            self.setup("fit")
        dataset = self.train_dataset
        labels = getattr(dataset, "labels", None)
        if labels is None and isinstance(dataset, TensorPairDataset):
            labels = dataset.y
        if labels is None:
            return None
        labels = torch.as_tensor(labels, dtype=torch.long).flatten()
        n = len(dataset)
        if len(labels) != n:
            if not len(labels) or n % len(labels):
                raise ConfigError(f"{type(self).__name__}: {n} training samples but {len(labels)} labels; "
                                  f"balanced batches need a label per sample")
            labels = labels.repeat(n // len(labels))
        return labels

    def class_shares(self) -> Tensor | None:
        """[num_classes] share of each class in the training batches the loader serves (what GANModule's
        conditions follow): ``count_k / N`` over ``train_labels()``, or with ``balance_classes`` equal shares of the
        classes present (``ClassBalancedSampler``); None without labels or classes."""
        if self.num_classes < 1:
            return None
        labels = self.train_labels()
        if labels is None or not len(labels):
            return None
        counts = torch.bincount(labels, minlength=self.num_classes)[:self.num_classes].double()
        if self.balance_classes:
            counts = (counts > 0).double()
        return counts / counts.sum() if counts.sum() > 0 else None

    def _shuffle_sampler(self, dataset: Dataset) -> Sampler[int]:
        if not self.balance_classes:
            return EpochShuffleSampler(dataset, seed=self.seed)
        labels = self.train_labels() if dataset is self.train_dataset else getattr(dataset, "labels", None)
        if labels is None or self.num_classes < 2:
            what = "no labels" if labels is None else f"{self.num_classes} class(es)"
            raise ConfigError(f"balance_classes needs labelled data with at least 2 classes; {type(self).__name__}'s "
                              f"training set has {what}: drop --data.balance_classes")
        return ClassBalancedSampler(labels, seed=self.seed)

    def default_metrics(self) -> list[Any]:
        """Metrics a run evaluates when no config pins any: GANModule's and MetricsCallback's ``metrics`` left at None
        (names or metric objects; ``lightning_gan.metrics.selection``)."""
        return []

    def _loader(self, dataset: Dataset, *, shuffle: bool, batch_size: int | None = None,
                drop_last: bool = False) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size or self.batch_size,
            sampler=self._shuffle_sampler(dataset) if shuffle else None,
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
        return self.staged_loader(self._loader(self.train_dataset, shuffle=True, drop_last=True))

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
