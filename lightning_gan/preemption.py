"""SLURM pre-emption in whole iterations: Lightning's requeue signal handled between two iterations.

Under SLURM (``SLURMEnvironment`` with ``auto_requeue``) Lightning answers the requeue signal (SIGUSR1, sent ahead
of the time limit by ``#SBATCH --signal=SIGUSR1@90``) by writing ``<default_root_dir>/hpc_ckpt_N.ckpt`` and calling
``scontrol requeue <job id>``, from the signal handler: wherever the main thread is, typically inside a training
step after the discriminator's optimizer step and before the generator's. Such a checkpoint holds part of an
iteration (D stepped, G and the counters not), and the requeued job would repeat D's step. Under DDP the ranks
get the signal at different points and the checkpoint's barrier meets another rank's gradient all-reduce.

``DeferredSignal`` keeps Lightning's handler but runs it when the iteration in progress ends (GANModule's
``on_train_batch_end``, where Lightning's own step checkpoints are taken), on every process after the same
iteration (the request is all-reduced), so the checkpoint holds a whole number of iterations and the requeued
job continues exactly. A signal during the last iteration is dropped: the run is finished, nothing to requeue.
SLURM signals every task once; a task that gets it an iteration after another (the signal arrived at an iteration's
end) must not save and requeue a second time, so the handler runs once per fit.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import torch
from lightning.fabric.plugins.environments import SLURMEnvironment

__all__ = ["DeferredSignal"]


class DeferredSignal:
    """Runs the handler installed for a signal at ``run_pending`` (between two iterations) instead of at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._handler: Any = None
        self._pending = False
        self._done = False

    def install(self, trainer: Any) -> bool:
        """Under SLURM with auto-requeue, take over the requeue signal's handler (Lightning's); False elsewhere."""
        if threading.current_thread() is not threading.main_thread() or not SLURMEnvironment.detect():
            return False
        environment = getattr(trainer.strategy, "cluster_environment", None)
        if not isinstance(environment, SLURMEnvironment):
            environment = SLURMEnvironment()
        if not environment.auto_requeue or environment.requeue_signal is None:
            return False
        signum = environment.requeue_signal
        handler = signal.getsignal(signum)
        if handler == self._on_signal:  # already ours (fit called again)
            return True
        if not callable(handler):  # SIG_DFL, SIG_IGN or not set from Python: nothing to defer
            return False
        self.signum, self._handler, self._pending, self._done = signum, handler, False, False
        signal.signal(signum, self._on_signal)
        return True

    def __getstate__(self) -> dict[str, Any]:
        return {"signum": None, "_handler": None, "_pending": False, "_done": False}  # a handler belongs to its process

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._pending = True

    def run_pending(self, trainer: Any, device: torch.device) -> None:
        """Run the deferred handler now if this process or any other received the signal (one all-reduce); once."""
        if self._handler is None or self._done:
            return
        pending = self._pending
        if trainer.world_size > 1:
            flag = torch.tensor(float(pending), device=device)
            pending = bool(trainer.strategy.reduce(flag, reduce_op="max").item())
        if pending:
            self._pending, self._done = False, True
            self._handler(self.signum, None)
