"""What the periodic callbacks share (metrics, sample grids, monitors, the controller): the "every N kimg" schedule,
and logging a measurement at the step it was taken."""

from __future__ import annotations

import math
from typing import Any

KIMG_EPS = 1e-9  # kimg comparisons: 0.1 * 3 must count as reaching 0.3


def reached(kimg: float, threshold: float) -> bool:
    """Whether ``kimg`` thousand images have reached ``threshold`` (up to float rounding)."""
    return kimg + KIMG_EPS >= threshold


def next_multiple(kimg: float, every: float) -> float:
    """The first multiple of ``every`` strictly after ``kimg`` (a multiple that ``kimg`` has reached counts as
    passed): 0.3 after 0.1 * 3 at ``every=0.1``, 20 after 10 or 19.99 at ``every=10``."""
    return (math.floor(kimg / every + KIMG_EPS) + 1) * every


def log_measurement(trainer: Any, pl_module: Any, values: dict[str, float], *, prog_bar: bool = False) -> None:
    """Send a periodic measurement to every logger at this step, and to ``callback_metrics`` (and the progress bar).

    ``self.log(..., on_step=True)`` from a callback reaches the loggers only on the Trainer's logging steps (every
    ``log_every_n_steps``): a measurement taken every N kimg lands on one of those only by chance, and the others
    would be missing from ``metrics.csv``.
    """
    pl_module.log_dict(values, prog_bar=prog_bar, logger=False, on_step=True, on_epoch=False, batch_size=1)
    for logger in getattr(trainer, "loggers", None) or []:
        logger.log_metrics(dict(values), step=trainer.global_step)
