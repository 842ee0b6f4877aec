"""Shared fixtures: temporary fake distributions on sys.path, registry isolation, quiet Lightning; subprocesses
that never outlive their test (``run_process``) and an environment without the machine's caches (``isolated_env``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import textwrap
import tomllib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lightning_gan import registry


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``pytest -n 2``, optional) each worker and its subprocesses use one thread.

    With as many workers as cores, torch's default of one thread per core would oversubscribe the machine.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        os.environ["OMP_NUM_THREADS"] = "1"  # inherited by every subprocess a test starts
        torch.set_num_threads(1)


# The handlers the test process started with (pytest's own, or a pytest-xdist worker's), except that Ctrl-C is
# always Python's KeyboardInterrupt: a shell starts a background job (`make test &`, nohup, some CI runners) with
# SIGINT ignored, which every process inherits, and the tests of Ctrl-C need it delivered.
_INITIAL_SIGNAL_HANDLERS = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
_INITIAL_SIGNAL_HANDLERS[signal.SIGINT] = signal.default_int_handler


@pytest.fixture(autouse=True)
def _restore_signal_handlers() -> Iterator[None]:
    """Every test starts, and ends, with the SIGINT/SIGTERM handlers the process started with, whatever an earlier
    test or a module-scoped fixture in the same process left: Lightning ignores SIGINT after a fit a
    KeyboardInterrupt ended and its DDP teardown leaves SIG_DFL, which the next in-process fit and every subprocess
    (an ignored disposition is inherited) would see. Set up before the test (not only after it) because a wider-scoped
    fixture that fits runs between two tests' teardown and setup."""

    def reset() -> None:
        for signum, handler in _INITIAL_SIGNAL_HANDLERS.items():
            if handler is not None and signal.getsignal(signum) is not handler:
                signal.signal(signum, handler)

    reset()
    yield
    reset()


@pytest.fixture(autouse=True)
def _quiet_lightning() -> Iterator[None]:
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*litlogger.*")
        yield


@pytest.fixture
def fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Path]]:
    """Create ``<name>-<version>.dist-info`` with entry points (and optional modules) on sys.path.

    ``fake_distribution("acme-gan", {"lightning_gan.losses": {"acme": "acme_gan:AcmeLoss"}},
    modules={"acme_gan": "source"})`` returns the folder it put on sys.path.
    """
    created: list[str] = []

    def make(dist: str, entry_points: dict[str, dict[str, str]], *, version: str = "1.0",
             modules: dict[str, str] | None = None) -> Path:
        root = tmp_path / f"site-{dist}"
        info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = []
        for group, eps in entry_points.items():
            lines.append(f"[{group}]")
            lines.extend(f"{name} = {target}" for name, target in eps.items())
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        for module, source in (modules or {}).items():
            (root / f"{module}.py").write_text(textwrap.dedent(source))
            created.append(module)
        monkeypatch.syspath_prepend(str(root))
        registry.refresh()
        return root

    yield make
    for module in created:
        sys.modules.pop(module, None)
    registry.refresh()


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    yield
    registry.refresh()


def make_trainer(tmp_path: Path, **kwargs: object) -> "pl.Trainer":
    """A quiet one-epoch CPU Trainer for the unit tests (no logger, no checkpoints, no validation)."""
    import lightning.pytorch as pl

    defaults: dict[str, object] = dict(
        max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
        default_root_dir=tmp_path)
    defaults.update(kwargs)
    return pl.Trainer(**defaults)


# -- subprocesses ----------------------------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]
PYTEST_TIMEOUT = float(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["timeout"])
SUBPROCESS_TIMEOUT = 300  # a command's own limit, well below pytest's: a hung command is killed here, with its children


def kill_process_group(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc``'s whole process group (started with ``start_new_session=True``: DDP ranks, DataLoader
    workers, torchrun's children) and reap ``proc``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run_process(args: list[str], *, timeout: float = SUBPROCESS_TIMEOUT, capture_output: bool = False,
                check: bool = False, input: str | bytes | None = None, **kwargs: object) -> subprocess.CompletedProcess:
    """``subprocess.run`` in a process group of its own that never outlives the call: on timeout (raising
    ``TimeoutExpired`` as ``subprocess.run`` does) or any other exception, pytest-timeout's included, the whole group
    is killed, so no child is left orphaned. ``timeout`` must stay below pytest's own."""
    if not 0 < timeout < PYTEST_TIMEOUT:
        raise ValueError(f"timeout must be in (0, {PYTEST_TIMEOUT}) s so that the command ends before pytest's limit, "
                         f"got {timeout}")
    if capture_output:
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    proc = subprocess.Popen(args, start_new_session=True, **kwargs)  # type: ignore[call-overload]
    try:
        stdout, stderr = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_process_group(proc)
        stdout, stderr = proc.communicate()
        raise subprocess.TimeoutExpired(args, timeout, output=stdout, stderr=stderr) from None
    except BaseException:
        kill_process_group(proc)
        raise
    if check and proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, args, stdout, stderr)
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


def isolated_env(root: Path, **extra: str) -> dict[str, str]:
    """This process's environment without the machine's caches: torch hub (``TORCH_HOME``: no Inception, LPIPS or
    other weights a previous run left there) and lightning-gan's (``LIGHTNING_GAN_CACHE``) in empty folders under
    ``root``, no ``LIGHTNING_GAN_INCEPTION_WEIGHTS``; plus ``extra``."""
    env = dict(os.environ)
    env["TORCH_HOME"] = str(root / ".torch")
    env["LIGHTNING_GAN_CACHE"] = str(root / ".cache")
    env.pop("LIGHTNING_GAN_INCEPTION_WEIGHTS", None)
    env.update(extra)
    return env
