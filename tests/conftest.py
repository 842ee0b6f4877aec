"""Shared fixtures: temporary fake distributions on sys.path, registry isolation, quiet Lightning."""

from __future__ import annotations

import logging
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lightning_gan import registry


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
