"""Test helper loaded by the CLI in a subprocess: the signals SLURM sends, at chosen points of a run."""

from __future__ import annotations

import os
import signal

from lightning.pytorch import Callback


class SignalAt(Callback):
    """Sends this process SIGUSR1 in the middle of iteration ``usr1_iteration`` (inside the generator's loss, after
    the discriminator's step: where most of an iteration's time goes) and SIGTERM before ``term_iteration``, as
    SLURM does before (``--signal=SIGUSR1@90``) and at the end of a job's time; only on global rank ``rank`` if
    given (None: every process)."""

    def __init__(self, *, usr1_iteration: int = -1, term_iteration: int = -1, rank: int | None = None) -> None:
        self.usr1_iteration, self.term_iteration, self.rank = usr1_iteration, term_iteration, rank

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.rank is not None and trainer.global_rank != self.rank:
            return
        if pl_module.iteration == self.term_iteration:
            os.kill(os.getpid(), signal.SIGTERM)
        if pl_module.iteration == self.usr1_iteration:
            loss_fn = pl_module.loss_fn
            original = type(loss_fn).generator_loss

            def generator_loss(*args):
                os.kill(os.getpid(), signal.SIGUSR1)
                return original(loss_fn, *args)

            loss_fn.generator_loss = generator_loss

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        pl_module.loss_fn.__dict__.pop("generator_loss", None)
