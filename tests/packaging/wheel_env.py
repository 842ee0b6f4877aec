"""Helpers of the packaging tests: build wheels from a copy of the sources, install them away from .venv.

Nothing here touches the project's virtual environment: wheels are built from a copy of the sources
(``pip wheel --no-deps --no-build-isolation --no-index``: no network, the setuptools already installed)
and installed into a fresh ``venv`` that sees the third-party packages of the running environment
(torch, Lightning, ...) through a folder of links, but none of its lightning-gan distributions: their
editable finders and metadata would otherwise shadow or duplicate what the wheels installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import run_process  # tests/conftest.py

pytest.importorskip("setuptools", minversion="70.1")  # builds wheels without the `wheel` package or a network

ROOT = Path(__file__).resolve().parents[2]

# What the core's wheel is built from (pyproject.toml names README.md; setup.py maps recipes/).
CORE_SOURCES = ("pyproject.toml", "setup.py", "README.md", "lightning_gan", "recipes")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist", "*.pyc")


def copy_sources(source: Path, dest: Path, names: tuple[str, ...] | None = None) -> Path:
    """A copy of ``source`` (or of its ``names``) at ``dest``, without build leftovers."""
    dest.mkdir(parents=True)
    for name in names if names is not None else [p.name for p in source.iterdir()]:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, dest / name, ignore=_IGNORE)
        else:
            shutil.copy2(path, dest / name)
    return dest


def build_wheel(source: Path, out: Path) -> Path:
    """Build ``source``'s wheel into ``out`` with pip and the installed setuptools; return the wheel's path."""
    before = set(out.glob("*.whl")) if out.exists() else set()
    result = run_process([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                          "-q", "-w", str(out), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    (wheel,) = set(out.glob("*.whl")) - before
    return wheel


def fresh_environment(root: Path) -> Path:
    """A new venv under ``root`` that sees the running environment's third-party packages only; its python."""
    run_process([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True, timeout=120)
    python = root / "venv" / "bin" / "python"
    purelib = run_process([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True, timeout=120).stdout.strip()
    links = root / "third-party"
    links.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if entry.name.startswith(("lightning_gan", "__editable__", "__pycache__")) or entry.suffix == ".pth":
            continue  # the project's own (editable) distributions, their finders, and other .pth hooks
        (links / entry.name).symlink_to(entry)
    (Path(purelib) / "third_party.pth").write_text(f"{links}\n")
    return python


def install(python: Path, wheels: list[Path]) -> None:
    """``pip install --no-deps`` the wheels into the environment of ``python`` (not editable, no network)."""
    result = run_process([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                          "--no-index", "-q", *map(str, wheels)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]


def run_in(python: Path, args: list[str], cwd: Path, env: dict[str, str] | None = None,
           timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``python *args`` (or a console script of its venv when ``args[0]`` names one) with a clean environment."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LIGHTNING_GAN"))}
    environ["LIGHTNING_GAN_CACHE"] = str(cwd / ".cache")
    environ["TORCH_HOME"] = str(cwd / ".torch")  # no weights from this machine's torch hub cache
    environ.update(env or {})
    script = python.parent / args[0]
    command = [str(script), *args[1:]] if script.is_file() and args[0] != "python" else [str(python), *args]
    return run_process(command, cwd=cwd, env=environ, capture_output=True, text=True, timeout=timeout)
