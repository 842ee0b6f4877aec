"""GANProgressBar: Lightning's rich progress bar showing kimg and GANModule's phase losses compactly.

GANModule logs ``loss/Dmain``, ``loss/Dreg``, ``loss/Gmain``, ``loss/Greg``, ``penalty/<Regularizer>``,
``logits/real``, ``logits/fake``, ``progress/kimg`` and, with an augmentation, its figures (``augment/p``,
``augment/rt`` for ADA) to the progress bar every ``log_every_n_iterations`` iterations; this bar shows them as
``kimg: 12.3/50 · D: 1.23 · G: 0.713 · R1: 0.0512 · D(x): 1.9 · D(G(z)): -2.1 · p: 0.12 · rt: 0.61`` and reads kimg from the
module itself, so it is current on every redraw. A growing run (a ``ProgressiveGrowing`` callback) also shows
its stage right after kimg, ``kimg: 12.3/50 · res: 32 · alpha: 0.45 · D: ...``: the callback's schedule at the
module's image count, so also current (the logger gets it as ``progressive/resolution`` and
``progressive/alpha``). Redraws and metric updates happen at most ``refresh_rate`` times per second: a fast toy
run pays one clock read per batch.

When the console is not a terminal (output redirected to a file, ``nohup``, CI logs) rich draws no bar until
the run ends, so the bar prints one plain line every ``log_every_s`` seconds instead, e.g.
``kimg: 12.3/50 · 118 img/s · eta 5m17s · res: 32 · alpha: 0.45 · D: 1.23 · ...``, and a last one when training
ends (unless the previous line already showed the final count). Rich's own end-of-run rendering of the bar (the
bar, the timings and the metrics wrapped over several lines) is then left out: the log ends with the plain
lines.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Mapping
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.callbacks.progress.rich_progress import RichProgressBarTheme
from typing_extensions import override

from lightning_gan.callbacks.progressive import ProgressiveGrowing

__all__ = ["GANProgressBar", "format_gan_metrics", "format_metrics_line"]

# Logged name -> short name, in display order.
_SHORT_NAMES = {
    "loss/Dmain": "D",
    "loss/Dreg": "Dreg",
    "loss/Gmain": "G",
    "loss/Greg": "Greg",
}
_LOGIT_NAMES = {"logits/real": "D(x)", "logits/fake": "D(G(z))"}
_STAGE_NAMES = {"progressive/resolution": "res", "progressive/alpha": "alpha"}
_HIDDEN = {"progress/kimg", "v_num"}
DELIMITER = " · "


def _number(value: Any) -> str:
    """Three significant digits (``1.23``, ``0.0512``, ``1.23e+03``); strings pass through."""
    if isinstance(value, str):
        return value
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "nan"
    return f"{v:.3g}"


def format_gan_metrics(metrics: Mapping[str, Any], *, kimg: float | None = None,
                       total_kimg: float | None = None) -> dict[str, str]:
    """Progress-bar items from logged metrics: short names, three significant digits, kimg first.

    ``kimg`` defaults to ``metrics["progress/kimg"]``; with ``total_kimg`` it reads ``"12.3/50"``.
    A growing run's stage follows kimg: ``progressive/resolution`` as ``res`` (an integer) and
    ``progressive/alpha`` as ``alpha`` (two decimals: the weight of the block fading in). Losses become ``D``,
    ``Dreg``, ``G``, ``Greg``; ``penalty/R1`` becomes ``R1``; mean logits ``D(x)`` and ``D(G(z))``; the
    augmentation's ``augment/p`` becomes ``p`` and the StabilityController's ``stability/r`` ``r``; other metrics
    keep their names; ``v_num`` is dropped.
    """
    if kimg is None and "progress/kimg" in metrics:
        kimg = float(metrics["progress/kimg"])
    items: dict[str, str] = {}
    if kimg is not None:
        items["kimg"] = f"{kimg:.1f}" + (f"/{total_kimg:g}" if total_kimg else "")
    if "progressive/resolution" in metrics:
        items["res"] = f"{float(metrics['progressive/resolution']):.0f}"
    if "progressive/alpha" in metrics:
        items["alpha"] = f"{float(metrics['progressive/alpha']):.2f}"
    for name, short in _SHORT_NAMES.items():
        if name in metrics:
            items[short] = _number(metrics[name])
    for name, value in metrics.items():
        if name.startswith("penalty/"):
            items[name[len("penalty/"):]] = _number(value)
    for name, short in _LOGIT_NAMES.items():
        if name in metrics:
            items[short] = _number(metrics[name])
    for name, value in metrics.items():
        if name.startswith(("augment/", "stability/")):  # ADA's p, StabilityController's r and lr_scale
            items[name.split("/", 1)[1]] = _number(value)
    for name, value in metrics.items():
        if name not in _SHORT_NAMES and name not in _LOGIT_NAMES and name not in _HIDDEN \
                and name not in _STAGE_NAMES and not name.startswith(("penalty/", "augment/", "stability/")):
            items[name] = _number(value)
    return items


def format_metrics_line(items: Mapping[str, str], delimiter: str = DELIMITER) -> str:
    """The text the bar shows for ``items`` (rich's metrics column renders ``name: value`` pairs)."""
    return delimiter.join(f"{name}: {value}" for name, value in items.items())


class GANProgressBar(RichProgressBar):
    """A rich progress bar for GANModule: kimg (of ``total_kimg``) and the phase losses, compactly."""

    def __init__(
        self,
        *,
        refresh_rate: int = 10,
        leave: bool = False,
        theme: RichProgressBarTheme | None = None,
        console_kwargs: dict[str, Any] | None = None,
        log_every_s: float | None = 30.0,
    ) -> None:
        """
        Args:
            refresh_rate: redraws per second, and the most updates per second of the bar and its metrics (0 hides it).
            leave: keep each epoch's finished bar on screen.
            theme: rich styles (default: Lightning's, with `` · `` between metrics).
            console_kwargs: arguments of the rich ``Console``.
            log_every_s: when the console is not a terminal, print a plain progress line (kimg, images per
                second, time left, losses) this often, in seconds; None: never.
        """
        super().__init__(refresh_rate=refresh_rate, leave=leave,
                         theme=theme if theme is not None else RichProgressBarTheme(metrics_text_delimiter=DELIMITER),
                         console_kwargs=console_kwargs)
        if log_every_s is not None and not log_every_s >= 0:
            raise ValueError(f"log_every_s must be >= 0 seconds or None, got {log_every_s}")
        self._min_interval = 1.0 / refresh_rate if refresh_rate > 0 else math.inf
        self._next_update = 0.0
        self.log_every_s = log_every_s
        self._plain_lines = False
        self._next_line = 0.0
        self._last_line: tuple[float, int] | None = None  # (time, images seen) at the previous line

    @override
    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        metrics = dict(super().get_metrics(trainer, pl_module))
        images = getattr(pl_module, "images_seen", None)
        for callback in getattr(trainer, "callbacks", ()):  # the stage at the kimg shown, not at the last log
            if isinstance(callback, ProgressiveGrowing) and images is not None:
                metrics["progressive/resolution"], metrics["progressive/alpha"] = \
                    callback.schedule.stage_at_images(int(images))
        kimg = getattr(pl_module, "kimg", None)
        return format_gan_metrics(metrics, kimg=None if kimg is None else float(kimg),
                                  total_kimg=getattr(pl_module, "total_kimg", None))

    def _get_train_description(self, current_epoch: int) -> str:
        # Lightning's bar prints "Epoch 3/-2" for an open-ended run (max_epochs=-1, stopped by total_kimg).
        description = super()._get_train_description(current_epoch)
        max_epochs = self.trainer.max_epochs
        if max_epochs is not None and max_epochs < 0:
            description = description.replace(f"/{max_epochs - 1}", "")
        return description

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._plain_lines = self.prints_plain_lines
        now = time.monotonic()
        self._next_line = now + (self.log_every_s or 0.0)
        self._last_line = (now, int(getattr(pl_module, "images_seen", 0)))

    def plain_line(self, trainer: Trainer, pl_module: LightningModule, now: float) -> str:
        """The plain progress line: kimg, images per second since the last line, time left, then the metrics."""
        items = self.get_metrics(trainer, pl_module)
        images = int(getattr(pl_module, "images_seen", 0))
        parts = [f"kimg: {items.pop('kimg')}"] if "kimg" in items else []
        if self._last_line is not None and now > self._last_line[0] and images > self._last_line[1]:
            rate = (images - self._last_line[1]) / (now - self._last_line[0])
            parts.append(f"{rate:.0f} img/s" if rate >= 100 else f"{rate:.3g} img/s")
            total_kimg = getattr(pl_module, "total_kimg", None)
            if total_kimg:
                left = max(0.0, float(total_kimg) * 1000 - images) / rate
                parts.append(f"eta {int(left // 60)}m{int(left % 60):02d}s")
        self._last_line = (now, images)
        if items:
            parts.append(format_metrics_line(items))
        return DELIMITER.join(parts)

    @property
    def prints_plain_lines(self) -> bool:
        """True when the bar writes plain progress lines instead of drawing itself (its console is not a terminal)."""
        console = self._console
        return self.log_every_s is not None and self.is_enabled and console is not None and not console.is_terminal

    @contextlib.contextmanager
    def _no_final_render(self) -> Iterator[None]:
        """Mute the console while the live display stops, if plain lines replace it.

        A stopping rich display on a console that is not a terminal prints the bar once more (wrapped over
        several lines) and then an empty line; the plain lines already said all of it.
        """
        console = self._console
        if not self.prints_plain_lines or console is None:
            yield
            return
        was_quiet = console.quiet
        console.quiet = True
        try:
            yield
        finally:
            console.quiet = was_quiet

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        images = int(getattr(pl_module, "images_seen", 0))
        if self._plain_lines and (self._last_line is None or self._last_line[1] != images):
            self._console.print(self.plain_line(trainer, pl_module, time.monotonic()), markup=False,
                                highlight=False, soft_wrap=True)

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        with self._no_final_render():
            super().teardown(trainer, pl_module, stage)

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        with self._no_final_render():
            super().on_exception(trainer, pl_module, exception)

    @override
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        now = time.monotonic()
        if self._plain_lines and now >= self._next_line:  # _plain_lines implies a console
            self._next_line = now + (self.log_every_s or 0.0)
            self._console.print(self.plain_line(trainer, pl_module, now), markup=False, highlight=False,
                                soft_wrap=True)
        if now < self._next_update and batch_idx + 1 != self.total_train_batches:
            return  # the last batch of an epoch always lands, so the bar ends complete
        self._next_update = now + self._min_interval
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
