"""Test helper loaded by the CLI in a subprocess: each rank writes the run's state after every iteration."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from lightning.pytorch import Callback


def digest(module: torch.nn.Module | None) -> str:
    """A hash of every parameter and buffer of ``module`` (bit for bit), "" for None."""
    if module is None:
        return ""
    h = hashlib.sha1()
    for name, value in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class IterationLog(Callback):
    """Writes ``rank<k>.pt``: one row per iteration (after it) with the counters, the phases the iteration ran,
    a hash of G, D and the EMA generator, the loss scalers and the growth stage; then the final weights, the
    process's place in the job (global, local and node rank, world size, nodes) and the first real batch."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = dirpath
        self.rows: list[dict] = []
        self.start: dict | None = None
        self.first_batch: torch.Tensor | None = None
        self._phases: list[str] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = self._row(trainer, pl_module)  # what a resumed run starts from

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.first_batch is None:
            self.first_batch = batch[0].detach().clone()
        self._phases = [phase.name for phase in pl_module.schedule.phases(pl_module.iteration)]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.rows.append({**self._row(trainer, pl_module), "phases": self._phases, "batch": int(batch[0].shape[0])})

    @staticmethod
    def _row(trainer, pl_module) -> dict:
        g = pl_module.generator
        return {
            "iteration": pl_module.iteration, "images_seen": pl_module.images_seen,
            "generator": digest(g), "discriminator": digest(pl_module.discriminator),
            "generator_ema": digest(pl_module.generator_ema),
            "scalers": {k: s.state_dict() for k, s in getattr(trainer.precision_plugin, "scalers", {}).items()},
            "stage": (getattr(g, "resolution", None), getattr(g, "alpha", None)),
        }

    def on_train_end(self, trainer, pl_module) -> None:
        Path(self.dirpath).mkdir(parents=True, exist_ok=True)
        torch.save({
            "rows": self.rows, "start": self.start,
            "generator": {k: v.detach().cpu() for k, v in pl_module.generator.state_dict().items()},
            "generator_ema": {k: v.detach().cpu() for k, v in pl_module.generator_ema.state_dict().items()},
            "discriminator": {k: v.detach().cpu() for k, v in pl_module.discriminator.state_dict().items()},
            "iteration": pl_module.iteration, "images_seen": pl_module.images_seen,
            "global_rank": trainer.global_rank, "local_rank": trainer.local_rank, "node_rank": trainer.node_rank,
            "world_size": trainer.world_size, "num_nodes": trainer.num_nodes,
            "first_batch": self.first_batch,
        }, Path(self.dirpath) / f"rank{trainer.global_rank}.pt")
