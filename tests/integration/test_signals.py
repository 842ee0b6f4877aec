"""Ctrl-C and SIGTERM: a run stops between two iterations, saves ``interrupted.ckpt``, exits with 128 + the signal
number (130 for SIGINT, 143 for SIGTERM), and ``--ckpt_path interrupted.ckpt`` continues it exactly.

The end-to-end tests send the signal to a real ``lightning-gan fit --recipe quickstart`` subprocess (tiny MLP, no
metrics) from outside, at whatever iteration it has reached. Exact continuation: the resumed run and an
uninterrupted run of the same command end with the same weights, EMA and optimizer states, bit for bit. That
needs an epoch of one batch (``num_samples == batch_size``): a run resumed in the middle of an epoch keeps its
counters, phases and EMA but starts the epoch's data order again (docs/gan-module.md), so with longer epochs
only the counters would match; with one-batch epochs every iteration boundary is an epoch boundary.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from conftest import isolated_env, kill_process_group
from lightning_gan import cli
from lightning_gan.callbacks import InterruptCheckpoint, LazyR1
from lightning_gan.callbacks.interrupt import StoppedBySignal, exit_status, stopping_signal
from lightning_gan.data.toy2d import Toy2DDataModule
from lightning_gan.module import GANModule

BATCH = 64
FIT = ["fit", "--recipe", "quickstart", "--model.architecture.init_args.g_hidden=16",
       "--model.architecture.init_args.d_hidden=16", "--model.metrics=[]",
       f"--data.init_args.num_samples={BATCH}", f"--data.init_args.batch_size={BATCH}",  # one batch per epoch
       "--trainer.check_val_every_n_epoch=1"]  # the recipe's ModelCheckpoint writes last.ckpt after every validation
INTERRUPTED = "runs/quickstart/interrupted.ckpt"  # the recipe's InterruptCheckpoint, relative to the working folder
START_TIMEOUT = 240  # s until the first iteration's checkpoint (start-up on a busy machine)
RUN_TIMEOUT = 240  # s for a command to end; both well below pytest's 600 s


# -- the exit status -------------------------------------------------------------------------------------------------
def test_exit_status_is_128_plus_the_signal_number() -> None:
    after_ctrl_c = SystemExit(1)
    after_ctrl_c.__context__ = KeyboardInterrupt()  # Lightning's sys.exit(1) while it handles a KeyboardInterrupt
    assert exit_status(SIGTERMException()) == 128 + signal.SIGTERM == 143
    assert exit_status(StoppedBySignal(signal.SIGINT)) == StoppedBySignal(signal.SIGINT).code == 130
    assert exit_status(KeyboardInterrupt()) == exit_status(after_ctrl_c) == 128 + signal.SIGINT
    assert stopping_signal(after_ctrl_c) == signal.SIGINT and stopping_signal(SIGTERMException()) == signal.SIGTERM
    for other in (SystemExit(0), SystemExit(2), RuntimeError("crash"), ValueError()):
        assert exit_status(other) is None


class _RaisingCLI:
    """Stands in for GANCLI: raises what a Trainer command raised."""

    exception: BaseException = RuntimeError("set by the test")

    def __init__(self, **kwargs) -> None:
        raise self.exception


@pytest.mark.parametrize(("exception", "status"), [
    (SIGTERMException(), 143),  # a SIGTERM without InterruptCheckpoint (Lightning's exception has no code: 0)
    (StoppedBySignal(signal.SIGINT), 130),
    (KeyboardInterrupt(), 130),  # Ctrl-C outside fit
])
def test_main_exits_with_the_signals_status(monkeypatch, exception, status) -> None:
    import lightning_gan.lightning_cli

    monkeypatch.setattr(_RaisingCLI, "exception", exception)
    monkeypatch.setattr(lightning_gan.lightning_cli, "GANCLI", _RaisingCLI)
    assert cli.main(["fit", "--recipe", "quickstart"]) == status
    monkeypatch.setattr(_RaisingCLI, "exception", SystemExit(2))  # anything else goes on as it was
    with pytest.raises(SystemExit) as info:
        cli.main(["fit", "--recipe", "quickstart"])
    assert info.value.code == 2


# -- in one process: where the stop lands ----------------------------------------------------------------------------
class SignalDuringG(Callback):
    """Sends ``signum`` to this process from inside the generator's loss of iteration ``at``: after D's step of that
    iteration, before G's."""

    def __init__(self, signum: int, at: int) -> None:
        self.signum, self.at = signum, at

    def on_train_start(self, trainer, pl_module) -> None:
        loss_fn, original = pl_module.loss_fn, pl_module.loss_fn.generator_loss

        def generator_loss(*args, **kwargs):
            if pl_module.iteration == self.at:
                os.kill(os.getpid(), self.signum)
            return original(*args, **kwargs)

        loss_fn.generator_loss = generator_loss


def _fit_until_signal(tmp_path: Path, signum: int, at: int) -> tuple[BaseException, dict]:
    pl.seed_everything(0)
    module = GANModule(architecture={"class_path": "mlp", "init_args": {"g_hidden": 16, "d_hidden": 16}},
                       metrics=[], total_kimg=100)
    trainer = pl.Trainer(max_epochs=-1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0, default_root_dir=tmp_path,
                         callbacks=[LazyR1(gamma=0.1, interval=4), InterruptCheckpoint(tmp_path, "interrupted"),
                                    SignalDuringG(signum, at)])
    with pytest.raises(SystemExit) as info:
        trainer.fit(module, Toy2DDataModule(num_samples=2000, batch_size=100))
    return info.value, torch.load(tmp_path / "interrupted.ckpt", weights_only=True)


def assert_whole_iterations(ckpt: dict, iterations: int, batch: int) -> None:
    """The checkpoint holds ``iterations`` whole iterations: the counters, and the optimizers' step counts by the phase
    schedule (G: one step per iteration; D: one, plus lazy R1's Dreg on iterations 0, 4, 8, ...). A stop between D's
    and G's step of an iteration would leave D one step ahead of the counters."""
    assert ckpt["state_dict"]["_extra_state"] == {"iteration": iterations, "images_seen": iterations * batch}
    d_state, g_state = (ckpt["optimizer_states"][k]["state"] for k in (0, 1))
    assert {int(s["step"]) for s in g_state.values()} == {iterations}
    assert int(d_state[0]["step"]) == iterations + (iterations + 3) // 4  # D's first weight: every D step


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_inside_an_iteration_stops_after_it(tmp_path, signum, status) -> None:
    """Delivered between D's and G's step of iteration 6 (the 7th), the signal lets the iteration finish: 7 whole
    iterations are saved, and the process exits with 128 + the signal number."""
    previous = signal.getsignal(signal.SIGTERM)
    try:
        exc, ckpt = _fit_until_signal(tmp_path, signum, at=6)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert exc.code == status
    assert_whole_iterations(ckpt, 7, 100)  # G took its step of the 7th iteration too; D 7 + 2 (Dreg on 0 and 4)
    if signum == signal.SIGINT:  # after fit, Ctrl-C is Python's again: a KeyboardInterrupt
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# -- a real `lightning-gan fit`, signalled from outside -------------------------------------------------------------
def _command(*extra: str) -> list[str]:
    return [sys.executable, "-m", "lightning_gan.cli", *FIT, *extra]


def _state(path: Path) -> tuple[dict, dict[str, torch.Tensor], list]:
    ckpt = torch.load(path, weights_only=True)
    weights = {k: v for k, v in ckpt["state_dict"].items() if isinstance(v, torch.Tensor)}
    return ckpt["state_dict"]["_extra_state"], weights, ckpt["optimizer_states"]


def _interrupt(work: Path, signum: int) -> tuple[int, str]:
    """Start the fit (open-ended), wait until it has finished an iteration, send ``signum``; (status, output)."""
    log = work / "interrupted.log"
    first = work / "runs" / "quickstart" / "version_0" / "checkpoints" / "last.ckpt"
    with log.open("w") as out:
        proc = subprocess.Popen(_command("--model.total_kimg=100000"), cwd=work, env=isolated_env(work),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not first.is_file():
            assert proc.poll() is None, f"the run ended before its first iteration:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no iteration within {START_TIMEOUT} s:\n{log.read_text()[-3000:]}"
            time.sleep(0.05)
        time.sleep(0.5)  # a few more iterations
        proc.send_signal(signum)
        status = proc.wait(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            kill_process_group(proc)
    return status, log.read_text()


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "status", "said"), [
    (signal.SIGINT, 130, "Ctrl-C"),
    (signal.SIGTERM, 143, "SIGTERM"),
], ids=["SIGINT", "SIGTERM"])
def test_a_signalled_fit_saves_exits_with_the_signals_status_and_continues_exactly(tmp_path, signum, status,
                                                                                  said) -> None:
    work, reference = tmp_path / "run", tmp_path / "reference"
    work.mkdir()
    reference.mkdir()
    code, log = _interrupt(work, signum)
    name = signal.Signals(signum).name
    assert code == status, log[-3000:]
    assert re.search(rf"Training stopped \({said}\) at [\d.]+ kimg; saved {INTERRUPTED}; exiting with status "
                     rf"{status} \({name}\)\. Continue with the same command plus --ckpt_path {INTERRUPTED}\n", log), log
    assert "Traceback" not in log, log
    counters, _, _ = _state(work / INTERRUPTED)
    iterations = counters["iteration"]
    assert iterations >= 1
    assert_whole_iterations(torch.load(work / INTERRUPTED, weights_only=True), iterations, BATCH)

    # the same command plus --ckpt_path, to 5 iterations more, and an uninterrupted run to the same total_kimg
    total = f"--model.total_kimg={(iterations + 5) * BATCH / 1000}"
    with (work / "resumed.log").open("w") as out_c, (reference / "reference.log").open("w") as out_a:
        procs = [subprocess.Popen(_command(total, "--ckpt_path", INTERRUPTED), cwd=work, env=isolated_env(work),
                                  stdout=out_c, stderr=subprocess.STDOUT, start_new_session=True),
                 subprocess.Popen(_command(total), cwd=reference, env=isolated_env(reference),
                                  stdout=out_a, stderr=subprocess.STDOUT, start_new_session=True)]
    try:
        codes = [p.wait(timeout=RUN_TIMEOUT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                kill_process_group(p)
    assert codes == [0, 0], (work / "resumed.log").read_text()[-3000:] + (reference / "reference.log").read_text()[-3000:]
    assert not (work / INTERRUPTED).exists()  # made good: a later fit never picks it up

    resumed = _state(work / "runs" / "quickstart" / "version_1" / "checkpoints" / "last.ckpt")
    uninterrupted = _state(reference / "runs" / "quickstart" / "version_0" / "checkpoints" / "last.ckpt")
    assert resumed[0] == uninterrupted[0] and resumed[0]["iteration"] >= iterations + 5
    assert resumed[1].keys() == uninterrupted[1].keys() and any(k.startswith("generator_ema.") for k in resumed[1])
    for key, value in uninterrupted[1].items():
        assert torch.equal(resumed[1][key], value), key
    for opt_resumed, opt_reference in zip(resumed[2], uninterrupted[2], strict=True):
        for index, moments in opt_reference["state"].items():
            for key, value in moments.items():
                assert torch.equal(opt_resumed["state"][index][key], value), (index, key)


def test_a_stale_handler_left_by_an_earlier_fit_is_replaced(tmp_path) -> None:
    """After a fit that raised, Lightning puts back the handlers it found, an earlier callback's inert Ctrl-C handler
    among them; the next fit's callback takes Ctrl-C over from it (else Ctrl-C would stop that fit mid-iteration)."""
    old = InterruptCheckpoint(tmp_path)
    signal.signal(signal.SIGINT, old._on_sigint)  # what Lightning leaves behind
    try:
        new = InterruptCheckpoint(tmp_path)
        new.setup(type("FakeTrainer", (), {"is_global_zero": True})(), None, "fit")
        assert signal.getsignal(signal.SIGINT) == new._on_sigint
        new._fitting = False
        new._restore_sigint()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
