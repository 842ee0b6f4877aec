"""LossScaleMonitor: per-network loss scales, overflows, skipped steps and underflow, logged and summarized.

Reads the scalers of a :class:`~lightning_gan.precision.GANPrecision` plugin (``fp16-dynamic``). Their
figures are host-side numbers (the scaler already synchronises once per step to decide whether to step),
so logging them every ``every_n_iterations`` iterations costs no device synchronisation at all.

Logged per network ``N`` in ``D``/``G``: ``loss_scale/N/scale``, ``loss_scale/N/skipped`` (optimizer steps
skipped so far), ``loss_scale/N/overflows`` (iterations that backed the scale off), ``loss_scale/N/underflow``
(share of non-zero scaled gradient entries below fp16's smallest normal in the last iteration) and
``loss_scale/N/skip_rate`` (skipped / attempted steps over the last ``window`` iterations).

Warnings (once each, with the numbers): a scale sitting at its floor on two checks in a row (the gradients
overflow fp16 even barely scaled: the model itself produces inf/nan), and a skip rate above ``max_skip_rate`` over the window.
A rich summary table is printed at the end of fit. The monitor's own history survives resume.
"""

from __future__ import annotations

import copy
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from lightning_gan.precision.plugins import GANPrecision
from lightning_gan.precision.scaler import DynamicLossScaler

__all__ = ["LossScaleMonitor"]

_SHORT = {"discriminator": "D", "generator": "G"}


class LossScaleMonitor(Callback):
    """Logs and checks the per-network loss scales of ``fp16-dynamic``.

    Args:
        every_n_iterations: log (and check) every this many GAN iterations.
        window: iterations over which the skip rate is measured.
        max_skip_rate: warn when more than this share of a network's steps were skipped over the window.
        summary: print a table at the end of fit (global rank 0).
    """

    def __init__(self, *, every_n_iterations: int = 50, window: int = 500, max_skip_rate: float = 0.05,
                 summary: bool = True) -> None:
        super().__init__()
        if every_n_iterations < 1 or window < 1:
            raise ValueError(f"every_n_iterations and window must be >= 1, got {every_n_iterations}, {window}")
        if not 0.0 <= max_skip_rate <= 1.0:
            raise ValueError(f"max_skip_rate must lie in [0, 1], got {max_skip_rate}")
        self.every_n_iterations, self.window, self.max_skip_rate = int(every_n_iterations), int(window), float(max_skip_rate)
        self.summary = summary
        # per network: [(iteration, steps, skipped)] snapshots inside the window, min/max scale seen, warnings given
        self.history: dict[str, list[list[int]]] = {}
        self.scale_range: dict[str, list[float]] = {}
        self.warned: dict[str, list[str]] = {}
        self.floor_since: dict[str, int | None] = {}  # iteration of the first check that found the scale at its floor
        self._no_scalers_warned = False

    @staticmethod
    def scalers(trainer: Trainer) -> dict[str, DynamicLossScaler]:
        precision = trainer.precision_plugin
        return dict(getattr(precision, "scalers", {})) if isinstance(precision, GANPrecision) else {}

    # -- the figures ------------------------------------------------------------------------------
    def skip_rate(self, name: str, scaler: DynamicLossScaler) -> float:
        """Skipped / attempted steps since the oldest snapshot in the window (0 without steps)."""
        history = self.history.get(name) or [[0, 0, 0]]
        _, steps0, skipped0 = history[0]
        steps = scaler.steps - steps0
        return (scaler.skipped - skipped0) / steps if steps > 0 else 0.0

    def observe(self, iteration: int, scalers: dict[str, DynamicLossScaler]) -> dict[str, float]:
        """Record a snapshot, run the checks and return the values to log."""
        values: dict[str, float] = {}
        for name, scaler in scalers.items():
            short = _SHORT.get(name, name)
            history = self.history.setdefault(name, [])
            history.append([int(iteration), scaler.steps, scaler.skipped])
            while len(history) > 1 and history[1][0] <= iteration - self.window:
                history.pop(0)  # keep the newest snapshot at or before the window's start
            low, high = self.scale_range.setdefault(name, [scaler.scale, scaler.scale])
            self.scale_range[name] = [min(low, scaler.scale), max(high, scaler.scale)]
            rate = self.skip_rate(name, scaler)
            values.update({
                f"loss_scale/{short}/scale": scaler.scale, f"loss_scale/{short}/skipped": float(scaler.skipped),
                f"loss_scale/{short}/overflows": float(scaler.overflows),
                f"loss_scale/{short}/underflow": scaler.last_underflow, f"loss_scale/{short}/skip_rate": rate,
            })
            warned = self.warned.setdefault(name, [])
            floor_since = self.floor_since.get(name)
            self.floor_since[name] = (floor_since if floor_since is not None else int(iteration)) if scaler.at_floor else None
            # "sits": at the floor on two checks in a row (one backoff onto it may be a single bad batch)
            if floor_since is not None and scaler.at_floor and scaler.overflows and "floor" not in warned:
                warned.append("floor")
                rank_zero_warn(
                    f"LossScaleMonitor: {short}'s loss scale sits at its floor {scaler.min_scale:g} since iteration "
                    f"{floor_since} (now {iteration}, {scaler.overflows} overflows, {scaler.skipped} of {scaler.steps} steps "
                    f"skipped): its gradients overflow float16 even unscaled. Check for inf/nan in the model or the "
                    f"data, lower the learning rate, or clamp activations (conv_clamp).")
            span = iteration - history[0][0]
            if rate > self.max_skip_rate and span >= min(self.window, 10) and "skip_rate" not in warned:
                warned.append("skip_rate")
                rank_zero_warn(
                    f"LossScaleMonitor: {short} skipped {rate:.1%} of its optimizer steps over the last {span} iterations "
                    f"(threshold {self.max_skip_rate:.1%}); scale now {scaler.scale:g}, {scaler.overflows} overflows "
                    f"in all. Training is losing {short} updates: consider bf16-mixed or fp32 for this model.")
        return values

    # -- hooks ---------------------------------------------------------------------------------------
    @override
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        iteration = int(getattr(pl_module, "iteration", trainer.global_step))
        if iteration % self.every_n_iterations:
            return
        scalers = self.scalers(trainer)
        if not scalers:
            if not self._no_scalers_warned:
                self._no_scalers_warned = True
                rank_zero_warn(f"LossScaleMonitor: the precision plugin ({type(trainer.precision_plugin).__name__}) "
                               f"keeps no loss scales; use --trainer.plugins=fp16-dynamic. Nothing to monitor.")
            return
        pl_module.log_dict(self.observe(iteration, scalers), on_step=True, on_epoch=False, batch_size=1)

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        scalers = self.scalers(trainer)
        if self.summary and scalers and trainer.is_global_zero:
            from rich.console import Console

            Console(width=max(Console().width, 120)).print(self.table(scalers))

    def table(self, scalers: dict[str, DynamicLossScaler]) -> Any:
        from rich.table import Table

        table = Table(title="loss scaling (fp16-dynamic)")
        for column in ("network", "scale", "range seen", "steps", "skipped", "overflows", "grown (underflow)",
                       "grown (interval)", "underflow share"):
            table.add_column(column, justify="left" if column == "network" else "right")
        for name, s in scalers.items():
            low, high = self.scale_range.get(name, [s.scale, s.scale])
            share = f"{s.skipped / s.steps:.2%}" if s.steps else "-"
            table.add_row(name, f"{s.scale:g}", f"{min(low, s.scale):g} .. {max(high, s.scale):g}", str(s.steps),
                          f"{s.skipped} ({share})", str(s.overflows), str(s.underflow_growths), str(s.interval_growths),
                          f"{s.last_underflow:.2%}")
        return table

    # -- resume -----------------------------------------------------------------------------------------
    @override
    def state_dict(self) -> dict[str, Any]:
        return copy.deepcopy({"history": self.history, "scale_range": self.scale_range, "warned": self.warned,
                              "floor_since": self.floor_since})

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {k: [list(map(int, snap)) for snap in v] for k, v in state_dict["history"].items()}
        self.scale_range = {k: [float(x) for x in v] for k, v in state_dict["scale_range"].items()}
        self.warned = {k: list(v) for k, v in state_dict["warned"].items()}
        self.floor_since = {k: None if v is None else int(v) for k, v in state_dict.get("floor_since", {}).items()}
