"""Test helper loaded by the CLI in a subprocess: each rank writes what it trained and saw."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import Callback

from lightning_gan.precision import FP16DynamicPrecision


class DumpRankState(Callback):
    """Writes ``rank<k>.pt`` with the generator (and EMA) weights, counters and a digest of the first batch."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = dirpath
        self.first_batch: torch.Tensor | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.first_batch is None:
            self.first_batch = batch[0].detach().clone()

    def on_train_end(self, trainer, pl_module) -> None:
        Path(self.dirpath).mkdir(parents=True, exist_ok=True)
        torch.save({
            "generator": {k: v.detach().cpu() for k, v in pl_module.generator.state_dict().items()},
            "generator_ema": {k: v.detach().cpu() for k, v in pl_module.generator_ema.state_dict().items()},
            "discriminator": {k: v.detach().cpu() for k, v in pl_module.discriminator.state_dict().items()},
            "iteration": pl_module.iteration,
            "images_seen": pl_module.images_seen,
            "world_size": trainer.world_size,
            "first_batch": self.first_batch,
            "scalers": {k: s.state_dict() for k, s in getattr(trainer.precision_plugin, "scalers", {}).items()},
        }, Path(self.dirpath) / f"rank{trainer.global_rank}.pt")


class InjectInf(FP16DynamicPrecision):
    """fp16-dynamic that puts an inf into one gradient of ``network`` on one rank at one iteration, after the
    gradients were averaged over ranks: only the all-reduced overflow decision can make the other rank skip."""

    def __init__(self, *, rank: int = 1, iteration: int = 2, network: str = "discriminator", **kwargs) -> None:
        super().__init__(**kwargs)
        self.rank, self.iteration, self.network_name = rank, iteration, network

    def optimizer_step(self, optimizer, model, closure, **kwargs):
        if (model.iteration == self.iteration and self._active == self.network_name
                and model.trainer.global_rank == self.rank):
            grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            grads[0].view(-1)[0] = float("inf")
        return super().optimizer_step(optimizer, model, closure, **kwargs)


class NaNGeneratorLoss(Callback):
    """Makes the generator loss NaN on one rank at one iteration (the other ranks stay finite)."""

    def __init__(self, *, rank: int = 1, iteration: int = 14) -> None:
        self.rank, self.iteration = rank, iteration

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_rank == self.rank and pl_module.iteration == self.iteration:
            loss_fn = pl_module.loss_fn
            original = type(loss_fn).generator_loss
            loss_fn.generator_loss = lambda *args: original(loss_fn, *args) * float("nan")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        pl_module.loss_fn.__dict__.pop("generator_loss", None)
