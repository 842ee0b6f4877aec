"""MetricsCallback: evaluate metrics every N kimg on the EMA generator, log them, keep the best checkpoint.

Each evaluation goes through ``GANModule.evaluate_metrics`` (EMA generator, eval mode, no grad, global RNG
untouched, real-data features computed once per run). The numbers are logged (``metrics/<name>``), appended
to ``<log_dir>/metrics.jsonl`` (one JSON object per evaluation: kimg, iteration, values) and, when
``monitor`` is set, the checkpoint of the best value so far is kept at ``<dirpath>/best.ckpt``. Every
process computes the same numbers from the same seeds; the decision to save comes from rank 0.

By default the metrics follow the run: the model's ``metrics`` (``--model.metrics``), which by default are
the datamodule's own (``default_metrics()``), and the best checkpoint follows the first metric's headline
(``shapes/fd`` for shapes, ``swd`` or ``fid`` for an image folder). So a recipe that pins no metric trains
on any data: ``--data=image_folder`` switches the metrics with it.

Progressive growing (``ProgressiveGrowing``): a generator below its last stage is evaluated on its images
enlarged to the full resolution (``GANModule.evaluate_metrics``); each record carries the stage it was measured
at (``resolution``, ``alpha``, ``full_stage``), and only evaluations at the full stage compete for ``best.ckpt``.
"""

from __future__ import annotations

import copy
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
from lightning_gan.callbacks._periodic import KIMG_EPS, next_multiple, reached
from lightning_gan.errors import ConfigError
from lightning_gan.metrics.base import GeneratorMetric
from lightning_gan.metrics.selection import headline, setup_metrics
from lightning_gan.ops.truncation import check_threshold

__all__ = ["MetricsCallback"]


class MetricsCallback(Callback):
    """Evaluates ``metrics`` every ``every_n_kimg`` thousand images and at the end of fit.

    Args:
        metrics: metric objects or registered names (``fid``, ``shapes``, ``swd``, ``coverage``, ...); None:
            the model's metrics (``--model.metrics``, by default the datamodule's ``default_metrics()``).
        num_samples: images per evaluation for the data's own metrics (e.g. 5000 for quicker shapes metrics);
            None keeps each metric's default. Metrics pinned here or by ``--model.metrics`` keep their own.
        every_n_kimg: evaluate each time this many thousand images have been shown.
        monitor: a result name (``fid``, ``shapes/fd``, ``swd``, ``coverage/modes``) whose best value keeps a
            checkpoint; ``"auto"``: the headline of the first metric that has one (``shapes/fd``, ``swd``,
            ``fid``, ...); None keeps none.
        mode: ``min`` or ``max``: which direction of ``monitor`` is better; ``"auto"``: the headline's
            direction (``min`` for a result that is no metric's headline).
        dirpath: where ``best.ckpt`` goes; default ``<trainer.log_dir>/checkpoints``.
        filename: name of the best checkpoint, without ``.ckpt``.
        truncation: sample the metrics' latents truncated to [-t, t] by resampling (BigGAN's truncation trick);
            every record then carries ``truncation: t``. None: untruncated.
    """

    def __init__(self, *, metrics: Sequence[GeneratorMetric | str] | None = None, num_samples: int | None = None,
                 every_n_kimg: float = 50.0, monitor: str | None = "auto",
                 mode: Literal["auto", "min", "max"] = "auto",
                 dirpath: str | Path | None = None, filename: str = "best", truncation: float | None = None) -> None:
        super().__init__()
        if every_n_kimg <= 0:
            raise ValueError(f"every_n_kimg must be > 0, got {every_n_kimg}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        if num_samples is not None and (isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2):
            raise ValueError(f"num_samples must be an integer >= 2 or None, got {num_samples!r}")
        self.metrics: list[GeneratorMetric] | None = None
        self._pinned = metrics is not None
        if metrics is not None:
            self.metrics = [registry.resolve("metrics", m) for m in metrics]
            if not self.metrics:
                raise ValueError("MetricsCallback needs at least one metric (or metrics=None to follow the model's)")
        self.num_samples = num_samples
        self.every_n_kimg = float(every_n_kimg)
        self.monitor = monitor
        self.mode = mode
        self.dirpath = None if dirpath is None else Path(dirpath)
        self.filename = filename
        self.truncation = None if truncation is None else check_threshold(truncation)
        # saved in checkpoints
        self.last_kimg: float | None = None
        self.best_value: float | None = None
        self.best_kimg: float | None = None
        self.best_path: str | None = None
        self.history: list[dict[str, float]] = []
        self._next_kimg = math.inf
        self._log_path: Path | None = None
        self._monitor, self._mode = self._resolve_monitor()  # "auto" settled again at setup, once the metrics are known

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
        if self._pinned:
            pinned_by: str | None = "the MetricsCallback's metrics in the config"
        else:
            configured = getattr(pl_module, "configured_metrics", None)
            metrics = configured(datamodule) if configured else []
            pinned_by = "--model.metrics" if getattr(pl_module, "metrics", None) is not None else None
            self.metrics = metrics if pinned_by else self._with_num_samples(metrics)  # a pinned metric keeps its count
        # weights and classifiers now, not in the middle of training; one line for a metric that cannot serve the data
        setup_metrics(self.metrics, datamodule, pinned_by=pinned_by)
        self._monitor, self._mode = self._resolve_monitor()
        if not self.metrics:
            rank_zero_info(f"MetricsCallback: {type(datamodule).__name__} has no default metrics and none are set; "
                           f"nothing to evaluate (set --model.metrics)")
        log_dir = trainer.log_dir  # collective: every rank calls it
        base = Path(log_dir or ".")
        self._log_path = base / "metrics.jsonl"
        if self.dirpath is None:
            self.dirpath = base / "checkpoints"

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        kimg = float(pl_module.kimg)
        base = self.last_kimg if self.last_kimg is not None and self.last_kimg <= kimg + KIMG_EPS else kimg
        self._next_kimg = next_multiple(base, self.every_n_kimg)

    @override
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self.metrics or not reached(float(pl_module.kimg), self._next_kimg):
            return
        self._evaluate(trainer, pl_module)
        self._next_kimg = next_multiple(float(pl_module.kimg), self.every_n_kimg)

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.metrics:
            return
        if self.last_kimg is None or abs(self.last_kimg - float(pl_module.kimg)) > KIMG_EPS:
            self._evaluate(trainer, pl_module)
        if self.best_path and trainer.is_global_zero:
            rank_zero_info(f"best {self._monitor} = {self.best_value:.6g} at {self.best_kimg:.1f} kimg: {self.best_path}")

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

    # -- metric choice --------------------------------------------------------------------------------
    def _with_num_samples(self, metrics: Sequence[GeneratorMetric]) -> list[GeneratorMetric]:
        """Copies of ``metrics`` that draw ``num_samples`` images (metrics without that setting unchanged)."""
        if self.num_samples is None:
            return list(metrics)
        out = []
        for metric in metrics:
            if hasattr(metric, "num_samples"):
                metric = copy.copy(metric)  # shares loaded weights and caches; the model's metric keeps its count
                metric.num_samples = self.num_samples
            out.append(metric)
        return out

    def _resolve_monitor(self) -> tuple[str | None, Literal["min", "max"]]:
        """(result name, direction) of the best checkpoint: ``monitor``/``mode`` with ``"auto"`` filled in."""
        headlines = [h for h in (headline(m) for m in self.metrics or []) if h is not None]
        monitor = self.monitor
        if monitor == "auto":
            monitor = headlines[0][0] if headlines else None
        if self.mode != "auto":
            return monitor, self.mode
        return monitor, next((mode for name, mode in headlines if name == monitor), "min")

    # -- evaluation ---------------------------------------------------------------------------------
    def _evaluate(self, trainer: Trainer, pl_module: Any) -> None:
        kimg = float(pl_module.kimg)
        if self.truncation is None:
            results = pl_module.evaluate_metrics(self.metrics)
        else:
            results = pl_module.evaluate_metrics(self.metrics, truncation=self.truncation)
        self.last_kimg = kimg
        notes = dict(getattr(pl_module, "metric_notes", {}))  # text (e.g. shapes/judge): not for the loggers
        if self.truncation is not None:
            notes["truncation"] = self.truncation  # the record says at which truncation it was measured
        stage = _growth_stage(pl_module)
        if stage is not None:
            notes.update(stage)  # a growing run's record says at which stage (resolution, alpha) it was measured
        self.history.append({"kimg": kimg, "iteration": int(pl_module.iteration), **results, **notes})
        for logger in trainer.loggers:
            logger.log_metrics({f"metrics/{k}": v for k, v in results.items()}, step=trainer.global_step)
        if trainer.is_global_zero and self._log_path is not None:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            with self._log_path.open("a") as f:
                f.write(json.dumps(self.history[-1]) + "\n")
        if self._monitor is None:
            return
        if self._monitor not in results:
            raise ConfigError(f"MetricsCallback monitors {self._monitor!r} but the metrics give {sorted(results)}; "
                              f"set its monitor to one of them (or 'auto')")
        if stage is not None and not stage["full_stage"]:
            return  # a generator still growing is no candidate for the best checkpoint (every process alike)
        value = float(results[self._monitor])
        better = math.isfinite(value) and (self.best_value is None or (
            value < self.best_value if self._mode == "min" else value > self.best_value))
        better = bool(trainer.strategy.broadcast(better, src=0))  # one decision for every process
        if better:
            self.best_value, self.best_kimg = value, kimg
            path = Path(self.dirpath) / f"{self.filename}.ckpt"
            self.best_path = str(path)
            trainer.save_checkpoint(path, weights_only=False)  # full state (resumable); collective, rank 0 writes


def _growth_stage(pl_module: Any) -> dict[str, Any] | None:
    """``{resolution, alpha, full_stage}`` of a progressively growing sampling generator; None for any other."""
    generator = getattr(pl_module, "sampling_generator", None) or getattr(pl_module, "generator", None)
    resolutions = getattr(generator, "resolutions", None)
    if not resolutions or not hasattr(generator, "alpha"):
        return None
    resolution, alpha = int(generator.resolution), float(generator.alpha)
    return {"resolution": resolution, "alpha": alpha, "full_stage": resolution == resolutions[-1] and alpha == 1.0}
