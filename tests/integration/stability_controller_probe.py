"""Test helper run as a script: a tiny GAN with a StabilityController under 2-process DDP (gloo on CPU); each rank
writes the controller's state, its learning rates and the weights to ``rank<k>.pt`` in the folder of argv[1]."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from lightning_gan.callbacks import LazyR1, StabilityController
from lightning_gan.data.toy2d import Toy2DDataModule
from lightning_gan.module import GANModule


class Dump(Callback):
    def __init__(self, dirpath: Path, controller: StabilityController) -> None:
        self.dirpath, self.controller = dirpath, controller
        self.first_batch: torch.Tensor | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.first_batch is None:
            self.first_batch = batch[0].detach().clone()

    def on_train_end(self, trainer, pl_module) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        torch.save({"controller": self.controller.state_dict(), "world_size": trainer.world_size,
                    "lrs": [g["lr"] for opt in trainer.optimizers for g in opt.param_groups],
                    "first_batch": self.first_batch,
                    "weights": {k: v.detach().cpu() for k, v in pl_module.state_dict().items()
                                if isinstance(v, torch.Tensor)}},
                   self.dirpath / f"rank{trainer.global_rank}.pt")


def main(out: Path) -> None:
    pl.seed_everything(0)
    opt = partial(torch.optim.SGD, lr=1.0)  # a step above the stable window: the controller acts
    module = GANModule(architecture={"class_path": "mlp", "init_args": {"g_hidden": 16, "d_hidden": 16, "g_depth": 2,
                                                                       "d_depth": 2}},
                       g_optimizer=opt, d_optimizer=opt, ema_kimg=0.1, log_every_n_iterations=4)
    controller = StabilityController(target=0.98, every_n_kimg=0.1)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=2, strategy="ddp", logger=False,
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                         num_sanity_val_steps=0, limit_val_batches=0,
                         callbacks=[LazyR1(gamma=0.1, interval=4), controller, Dump(out, controller)])
    trainer.fit(module, Toy2DDataModule(num_samples=400, batch_size=20))  # 10 iterations of 2 x 20 images


if __name__ == "__main__":
    main(Path(sys.argv[1]))
