"""InterruptCheckpoint: a checkpoint when fit stops on an exception (Ctrl-C included), and how to continue.

Lightning's ``OnExceptionCheckpoint`` does the saving too, but its presence makes every later ``fit`` without
``ckpt_path`` resume silently from whatever ``interrupted.ckpt`` lies in that folder, also a fresh run with
another configuration (which then fails on mismatched weights). This callback only saves and says how to
continue (``--ckpt_path``); when a run that resumed from the file finishes, the file is removed, so a stale
interruption is never picked up again.
"""

from __future__ import annotations

import os
from pathlib import Path

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lightning_gan.errors import ConfigError

__all__ = ["InterruptCheckpoint"]


class InterruptCheckpoint(Callback):
    """Saves ``<dirpath>/<filename>.ckpt`` when training stops on an exception.

    A run the framework refused (a ``ConfigError``: a broken contract, a non-finite loss) is not saved:
    its weights are nothing to continue from.

    Args:
        dirpath: the folder of the checkpoint.
        filename: its name without ``.ckpt``.
    """

    def __init__(self, dirpath: str | os.PathLike[str], filename: str = "interrupted") -> None:
        super().__init__()
        if not filename:
            raise ValueError("filename must not be empty")
        self.dirpath, self.filename = str(dirpath), filename

    @property
    def ckpt_path(self) -> str:
        return os.path.join(self.dirpath, self.filename + ".ckpt")

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if trainer.state.fn != TrainerFn.FITTING or trainer.global_step == 0:
            return  # not fitting, or nothing trained yet (e.g. a configuration error at setup)
        if isinstance(exception, ConfigError):
            return  # a refused run (a broken contract, a diverged game): nothing worth continuing
        trainer.save_checkpoint(self.ckpt_path)
        kimg = getattr(pl_module, "kimg", None)
        where = f" at {kimg:.1f} kimg" if isinstance(kimg, float) else ""
        rank_zero_info(f"\nTraining stopped ({type(exception).__name__}){where}; saved {self.ckpt_path}. "
                       f"Continue with the same command plus --ckpt_path {self.ckpt_path}")

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        resumed_from = trainer.ckpt_path
        if (stage == "fit" and not trainer.interrupted and resumed_from
                and Path(resumed_from).resolve() == Path(self.ckpt_path).resolve()):
            trainer.strategy.remove_checkpoint(self.ckpt_path)  # the interruption has been made good
