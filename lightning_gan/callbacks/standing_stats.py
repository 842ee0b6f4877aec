"""StandingStatistics: re-estimate the sampling generator's batch-norm statistics before pictures and metrics.

BigGAN's standing statistics (``lightning_gan.utils.standing_stats``): the running mean/var of every batch norm
of the sampling generator (the EMA one when enabled, whose copied running statistics belong to the trained
weights, not the averaged ones) become the cumulative average over ``num_batches`` forward passes of random
latents and classes. It runs every ``every_n_kimg`` thousand images, before validation, and at the end of fit.
List it before ``SampleGrid`` and ``MetricsCallback`` in the callbacks (Lightning calls callbacks in list order)
with an interval that divides theirs, so that their samples see fresh statistics. A generator without batch
norm is left alone (one info line).

Classes (``classes``): ``"data"`` (default) draws the passes' classes in the shares the training batches have,
``trainer.datamodule.class_shares()`` (the data's class shares; equal shares under ``balance_classes``), so that
the batch statistics see the class mix training saw; a datamodule that cannot say gets equal shares and one info
line. ``"uniform"`` draws equal shares whatever the data.

The EMA update copies the trained generator's buffers at every iteration, so the re-estimated statistics of an
EMA generator last until the next training step: what they serve is the pictures, metrics and checkpoint of
the moment (``lightning-gan generate --standing-stats N`` re-estimates them again at sampling time).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lightning_gan.callbacks._periodic import next_multiple, reached
from lightning_gan.errors import ConfigError
from lightning_gan.ops.truncation import check_threshold
from lightning_gan.utils.standing_stats import data_class_shares, standing_statistics

__all__ = ["StandingStatistics"]


class StandingStatistics(Callback):
    """Re-estimates the sampling generator's batch-norm running statistics (module docstring).

    Args:
        num_batches: forward passes averaged over.
        batch_size: latents per pass.
        every_n_kimg: re-estimate each time this many thousand images have been shown (None: only before
            validation and at the end of fit).
        seed: seed of the latents and classes.
        truncation: draw the latents truncated to [-t, t], as truncated samples will be (None: untruncated).
        classes: class shares of the passes: ``"data"`` (the training batches') or ``"uniform"``.
    """

    def __init__(self, *, num_batches: int = 16, batch_size: int = 64, every_n_kimg: float | None = 5.0,
                 seed: int = 0, truncation: float | None = None, classes: Literal["data", "uniform"] = "data") -> None:
        super().__init__()
        if num_batches < 1 or batch_size < 2:
            raise ValueError(f"StandingStatistics needs num_batches >= 1 and batch_size >= 2, got {num_batches} "
                             f"and {batch_size}")
        if every_n_kimg is not None and every_n_kimg <= 0:
            raise ValueError(f"every_n_kimg must be > 0 or None, got {every_n_kimg}")
        self.num_batches, self.batch_size, self.seed = int(num_batches), int(batch_size), int(seed)
        self.every_n_kimg = None if every_n_kimg is None else float(every_n_kimg)
        self.truncation = None if truncation is None else check_threshold(truncation)
        if classes not in ("data", "uniform"):
            raise ValueError(f"StandingStatistics classes must be 'data' or 'uniform', got {classes!r}")
        self.classes = classes
        self.class_shares: Any = None  # the shares the passes draw (None: equal shares); set at setup
        self.updates = 0  # re-estimations done by this process
        self._next_kimg = math.inf
        self._warned = False

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not hasattr(pl_module, "sampling_generator"):
            raise ConfigError(f"StandingStatistics needs a GANModule-like module with `sampling_generator`; "
                              f"{type(pl_module).__name__} has none")
        self.class_shares = None
        if self.classes == "data" and getattr(pl_module.sampling_generator, "c_dim", 0):
            self.class_shares = data_class_shares(trainer.datamodule)
            if self.class_shares is None:
                rank_zero_info("StandingStatistics: the datamodule gives no class shares (`class_shares()`); "
                               "classes drawn in equal shares")

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.every_n_kimg is not None:
            kimg = float(getattr(pl_module, "kimg", 0.0))
            self._next_kimg = next_multiple(kimg, self.every_n_kimg)

    @override
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not reached(float(pl_module.kimg), self._next_kimg):
            return
        self.apply(pl_module)
        self._next_kimg = next_multiple(float(pl_module.kimg), self.every_n_kimg)

    @override
    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.apply(pl_module)

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.apply(pl_module)

    def apply(self, pl_module: Any) -> int:
        """Re-estimate now; the number of batch-norm modules re-estimated."""
        count = standing_statistics(pl_module.sampling_generator, num_batches=self.num_batches,
                                    batch_size=self.batch_size, seed=self.seed, truncation=self.truncation,
                                    class_shares=self.class_shares)
        if count:
            self.updates += 1
        elif not self._warned:
            self._warned = True
            rank_zero_info("StandingStatistics: the generator has no batch norm; nothing to re-estimate")
        return count
