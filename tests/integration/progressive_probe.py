"""Test helper loaded by the CLI in a subprocess: each rank writes the stage it trained at every iteration."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from lightning.pytorch import Callback


class StageLog(Callback):
    """Writes ``rank<k>.json``: per iteration the images seen before it, the stage of G, D and the EMA generator
    and the shape of the real batch that reached ``training_step``; and the weights' sum per network. With
    ``save_state``, also ``rank<k>.pt``: the module's state dict and the optimizers' states at the end."""

    def __init__(self, dirpath: str, save_state: bool = False) -> None:
        self.dirpath = dirpath
        self.save_state = save_state
        self.rows: list[list] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        g, d, ema = pl_module.generator, pl_module.discriminator, pl_module.generator_ema
        self.rows.append([pl_module.iteration, pl_module.images_seen, g.resolution, g.alpha, d.resolution, d.alpha,
                          ema.resolution, ema.alpha, list(batch[0].shape)])

    def on_train_end(self, trainer, pl_module) -> None:
        Path(self.dirpath).mkdir(parents=True, exist_ok=True)
        sums = {name: [float(p.double().sum()) for p in net.parameters()]
                for name, net in (("generator", pl_module.generator), ("discriminator", pl_module.discriminator))}
        record = {"rows": self.rows, "world_size": trainer.world_size, "images_seen": pl_module.images_seen,
                  "sums": sums}
        (Path(self.dirpath) / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
        if self.save_state:
            torch.save({"module": {k: v.detach().cpu() for k, v in pl_module.state_dict().items()
                                   if isinstance(v, torch.Tensor)},
                        "optimizers": [opt.state_dict() for opt in trainer.optimizers]},
                       Path(self.dirpath) / f"rank{trainer.global_rank}.pt")
