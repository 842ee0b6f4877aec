"""MetricsCallback: evaluate metrics every N kimg on the EMA generator, log them, keep the best checkpoint.

Each evaluation goes through ``GANModule.evaluate_metrics`` (EMA generator, eval mode, no grad, global RNG
untouched, real-data features computed once per run). The numbers are logged (``metrics/<name>``), appended
to ``<log_dir>/metrics.jsonl`` (one JSON object per evaluation: kimg, iteration, values) and, when
``monitor`` is set, the checkpoint of the best value so far is kept at ``<dirpath>/best.ckpt``. Every
process computes the same numbers from the same seeds; the decision to save comes from rank 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lightning_gan import registry
from lightning_gan.errors import ConfigError
from lightning_gan.metrics.base import GeneratorMetric

__all__ = ["MetricsCallback"]

_EPS = 1e-9


class MetricsCallback(Callback):
    """Evaluates ``metrics`` every ``every_n_kimg`` thousand images and at the end of fit.

    Args:
        metrics: metric objects or registered names (``fid``, ``shapes``, ``coverage``, ...).
        every_n_kimg: evaluate each time this many thousand images have been shown.
        monitor: a result name (``fid``, ``shapes/fd``, ``coverage/modes``) whose best value keeps a checkpoint;
            None keeps none.
        mode: ``min`` or ``max``: which direction of ``monitor`` is better.
        dirpath: where ``best.ckpt`` goes; default ``<trainer.log_dir>/checkpoints``.
        filename: name of the best checkpoint, without ``.ckpt``.
    """

    def __init__(self, *, metrics: Sequence[GeneratorMetric | str], every_n_kimg: float = 50.0,
                 monitor: str | None = None, mode: Literal["min", "max"] = "min",
                 dirpath: str | Path | None = None, filename: str = "best") -> None:
        super().__init__()
        if every_n_kimg <= 0:
            raise ValueError(f"every_n_kimg must be > 0, got {every_n_kimg}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.metrics = [registry.resolve("metrics", m) for m in metrics]
        if not self.metrics:
            raise ValueError("MetricsCallback needs at least one metric")
        self.every_n_kimg = float(every_n_kimg)
        self.monitor = monitor
        self.mode = mode
        self.dirpath = None if dirpath is None else Path(dirpath)
        self.filename = filename
        # saved in checkpoints
        self.last_kimg: float | None = None
        self.best_value: float | None = None
        self.best_kimg: float | None = None
        self.best_path: str | None = None
        self.history: list[dict[str, float]] = []
        self._next_kimg = math.inf
        self._log_path: Path | None = None

    @cached_property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, every_n_kimg=self.every_n_kimg)

    # -- hooks ------------------------------------------------------------------------------------
    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not hasattr(pl_module, "evaluate_metrics") or not hasattr(pl_module, "kimg"):
            raise ConfigError(f"MetricsCallback needs a GANModule-like module; {type(pl_module).__name__} has no evaluate_metrics")
        datamodule = getattr(trainer, "datamodule", None)
        for metric in self.metrics:
            metric.setup(datamodule)  # weights and classifiers now, not in the middle of training
        log_dir = trainer.log_dir  # collective: every rank calls it
        base = Path(log_dir or ".")
        self._log_path = base / "metrics.jsonl"
        if self.dirpath is None:
            self.dirpath = base / "checkpoints"

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        kimg = float(pl_module.kimg)
        base = self.last_kimg if self.last_kimg is not None and self.last_kimg <= kimg + _EPS else kimg
        self._next_kimg = (math.floor(base / self.every_n_kimg + _EPS) + 1) * self.every_n_kimg

    @override
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if pl_module.kimg + _EPS < self._next_kimg:
            return
        self._evaluate(trainer, pl_module)
        self._next_kimg = (math.floor(float(pl_module.kimg) / self.every_n_kimg + _EPS) + 1) * self.every_n_kimg

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.last_kimg is None or abs(self.last_kimg - float(pl_module.kimg)) > _EPS:
            self._evaluate(trainer, pl_module)
        if self.best_path and trainer.is_global_zero:
            rank_zero_info(f"best {self.monitor} = {self.best_value:.6g} at {self.best_kimg:.1f} kimg: {self.best_path}")

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"last_kimg": self.last_kimg, "best_value": self.best_value, "best_kimg": self.best_kimg,
                "best_path": self.best_path, "history": self.history}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_kimg = state_dict.get("last_kimg")
        self.best_value = state_dict.get("best_value")
        self.best_kimg = state_dict.get("best_kimg")
        self.best_path = state_dict.get("best_path")
        self.history = list(state_dict.get("history") or [])

    # -- evaluation ---------------------------------------------------------------------------------
    def _evaluate(self, trainer: Trainer, pl_module: Any) -> None:
        kimg = float(pl_module.kimg)
        results = pl_module.evaluate_metrics(self.metrics)
        self.last_kimg = kimg
        self.history.append({"kimg": kimg, "iteration": int(pl_module.iteration), **results})
        for logger in trainer.loggers:
            logger.log_metrics({f"metrics/{k}": v for k, v in results.items()}, step=trainer.global_step)
        if trainer.is_global_zero and self._log_path is not None:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            with self._log_path.open("a") as f:
                f.write(json.dumps(self.history[-1]) + "\n")
        if self.monitor is None:
            return
        if self.monitor not in results:
            raise ConfigError(f"MetricsCallback monitors {self.monitor!r} but the metrics give {sorted(results)}")
        value = float(results[self.monitor])
        better = math.isfinite(value) and (self.best_value is None or (
            value < self.best_value if self.mode == "min" else value > self.best_value))
        better = bool(trainer.strategy.broadcast(better, src=0))  # one decision for every process
        if better:
            self.best_value, self.best_kimg = value, kimg
            path = Path(self.dirpath) / f"{self.filename}.ckpt"
            self.best_path = str(path)
            trainer.save_checkpoint(path, weights_only=False)  # full state (resumable); collective, rank 0 writes
