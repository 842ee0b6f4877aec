"""InterruptCheckpoint: a checkpoint when fit stops on a signal or an exception, how to continue, and the exit status.

Lightning's ``OnExceptionCheckpoint`` does the saving too, but its presence makes every later ``fit`` without
``ckpt_path`` resume silently from whatever ``interrupted.ckpt`` lies in that folder, also a fresh run with
another configuration (which then fails on mismatched weights). This callback only saves and says how to
continue (``--ckpt_path``); when a run that resumed from the file finishes, the file is removed, so a stale
interruption is never picked up again.

A signal stops a run between two iterations, so the checkpoint holds whole iterations (never a discriminator
that took its step while the generator has not yet), and the process exits as a shell reports one that a
signal ended, ``128 + signal number``, so that a scheduler (SLURM, Kubernetes) does not read the stop as
"finished":

* SIGTERM: Lightning stops after the current iteration (``SIGTERMException``, whose exit code this callback
  sets); exit status 143.
* Ctrl-C (SIGINT): the same (``StoppedBySignal``); exit status 130. The first Ctrl-C asks to stop at the end
  of the current iteration (from ``setup`` on: during the sanity check or a validation, before the next
  iteration); DataLoader workers forked during fit ignore it, so a terminal's Ctrl-C (sent to the whole
  process group) does not end them first. A second Ctrl-C stops at once, through Lightning's
  ``KeyboardInterrupt`` handling: the checkpoint may then hold part of an iteration, and ``lightning-gan``
  exits with 130 where a script of your own exits with Lightning's 1.

Lightning's SLURM handling (SIGUSR1: ``hpc_ckpt_N.ckpt`` and ``scontrol requeue``) is left as it is.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException
from typing_extensions import override

from lightning_gan.errors import ConfigError

__all__ = ["InterruptCheckpoint", "StoppedBySignal", "exit_status", "stopping_signal"]


class StoppedBySignal(SystemExit):
    """Training stopped between two iterations on a signal; exits with status ``128 + signum`` (like SIGTERMException,
    a ``SystemExit``, so Lightning saves and tears down, then lets it end the process)."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + int(signum))
        self.signum = signal.Signals(signum)


def stopping_signal(exception: BaseException) -> signal.Signals | None:
    """The signal that stopped a run, read from what ``Trainer.fit`` raised; None for any other exception.

    ``StoppedBySignal`` carries it; Lightning raises ``SIGTERMException`` for SIGTERM and, after a
    ``KeyboardInterrupt`` (SIGINT), calls ``sys.exit(1)`` while handling it (the ``SystemExit``'s context).
    """
    if isinstance(exception, StoppedBySignal):
        return exception.signum
    if isinstance(exception, SIGTERMException):
        return signal.SIGTERM
    if isinstance(exception, KeyboardInterrupt) or (
            isinstance(exception, SystemExit) and isinstance(exception.__context__, KeyboardInterrupt)):
        return signal.SIGINT
    return None


def exit_status(exception: BaseException) -> int | None:
    """``128 + signal number`` for a run a signal stopped (SIGTERM: 143, SIGINT: 130), as a shell reports it;
    None for any other exception."""
    signum = stopping_signal(exception)
    return None if signum is None else 128 + int(signum)


class InterruptCheckpoint(Callback):
    """Saves ``<dirpath>/<filename>.ckpt`` when training stops on a signal or an exception.

    A run the framework refused (a ``ConfigError``: a broken contract, a non-finite loss) is not saved:
    its weights are nothing to continue from. During training the first Ctrl-C stops the run after the
    current iteration (installed only where Ctrl-C would raise ``KeyboardInterrupt``: the main thread, no
    other handler); under DDP every process stops after the same iteration.

    Args:
        dirpath: the folder of the checkpoint.
        filename: its name without ``.ckpt``.
    """

    def __init__(self, dirpath: str | os.PathLike[str], filename: str = "interrupted") -> None:
        super().__init__()
        if not filename:
            raise ValueError("filename must not be empty")
        self.dirpath, self.filename = str(dirpath), filename
        self._fitting = False  # between setup and the end of fit: the first Ctrl-C waits for the iteration's end
        self._stop_requested = False
        self._sigint_installed = False
        self._main_pid = 0
        self._announce = False

    @property
    def ckpt_path(self) -> str:
        return os.path.join(self.dirpath, self.filename + ".ckpt")

    # -- Ctrl-C: stop between two iterations ---------------------------------------------------------
    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if not self._fitting:  # after a fit that raised, Lightning puts back the handlers it found (this one)
            if signal.getsignal(signal.SIGINT) == self._on_sigint:
                signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt  # Python's default
        if os.getpid() != self._main_pid:
            return  # a DataLoader worker forked during fit: it keeps loading; the main process ends it
        if self._stop_requested:  # the second Ctrl-C: stop at once
            self._fitting = False
            self._restore_sigint()
            raise KeyboardInterrupt
        self._stop_requested = True
        if self._announce:  # os.write: print() from a signal handler can meet a write in progress
            os.write(2, b"\nCtrl-C: stopping at the end of this iteration and saving a checkpoint "
                        b"(Ctrl-C again to stop at once)\n")

    def _restore_sigint(self) -> None:
        if self._sigint_installed and threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGINT) == self._on_sigint:
                signal.signal(signal.SIGINT, signal.default_int_handler)
            self._sigint_installed = False

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # Installed before the training loader's worker processes are forked, so that they inherit it and keep
        # loading (Python's default would end them on the Ctrl-C a terminal sends to the whole process group).
        if stage != "fit":
            return
        self._fitting, self._stop_requested = True, False
        self._main_pid, self._announce = os.getpid(), trainer.is_global_zero
        current = signal.getsignal(signal.SIGINT)
        # Python's default, or the inert handler an earlier InterruptCheckpoint left behind when Lightning put back
        # the handlers it had found at the start of a fit that raised (it behaves as Python's default)
        stale = getattr(current, "__func__", None) is InterruptCheckpoint._on_sigint and not current.__self__._fitting
        if threading.current_thread() is threading.main_thread() and (current is signal.default_int_handler or stale):
            signal.signal(signal.SIGINT, self._on_sigint)
            self._sigint_installed = True

    @override
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        stop = self._stop_requested
        if trainer.world_size > 1:  # a Ctrl-C that reached one process stops them all after the same iteration
            flag = torch.tensor(float(stop), device=pl_module.device)
            stop = bool(trainer.strategy.reduce(flag, reduce_op="max").item())
        if stop:
            raise StoppedBySignal(signal.SIGINT)

    # -- saving ------------------------------------------------------------------------------------
    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._fitting = False
        self._restore_sigint()
        status, signum = exit_status(exception), stopping_signal(exception)
        if isinstance(exception, SIGTERMException):
            exception.code = status  # Lightning's SIGTERMException is a SystemExit with no code: status 0
        if trainer.state.fn != TrainerFn.FITTING or isinstance(exception, ConfigError):
            return  # not fitting, or a refused run (a broken contract, a diverged game): nothing worth continuing
        why = type(exception).__name__ if signum is None else ("Ctrl-C" if signum == signal.SIGINT else signum.name)
        exiting = "" if signum is None else f"; exiting with status {status} ({signum.name})"
        if trainer.global_step == 0:  # nothing trained yet (e.g. stopped during the sanity check)
            if signum is not None:
                rank_zero_info(f"\nTraining stopped ({why}) before its first iteration: nothing to save{exiting}.")
            return
        trainer.save_checkpoint(self.ckpt_path, weights_only=False)  # the whole run, not just the weights
        kimg = getattr(pl_module, "kimg", None)
        where = f" at {kimg:.1f} kimg" if isinstance(kimg, float) else ""
        rank_zero_info(f"\nTraining stopped ({why}){where}; saved {self.ckpt_path}{exiting}. "
                       f"Continue with the same command plus --ckpt_path {self.ckpt_path}")

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self._fitting = False
            self._restore_sigint()
        resumed_from = trainer.ckpt_path
        if (stage == "fit" and not trainer.interrupted and resumed_from
                and Path(resumed_from).resolve() == Path(self.ckpt_path).resolve()):
            trainer.strategy.remove_checkpoint(self.ckpt_path)  # the interruption has been made good
