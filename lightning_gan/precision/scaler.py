"""Dynamic loss scaling for one network, with an underflow rule (docs/theory.md#dynamic-loss-scaling).

A network's loss is multiplied by the scale ``S`` before its backward pass, so that small gradients
computed in float16 stay above fp16's smallest normal number ``2**-14``; its gradients are divided by
``S`` before the optimizer step. A :class:`DynamicLossScaler` keeps ``S`` for one network (G or D) and
changes it **once per iteration** (:meth:`update`), however many optimizer steps (Dmain + Dreg, Gmain +
Greg) the network took in it:

* **overflow**: inf or nan in the scaled gradients of a step -> that step is skipped (:meth:`unscale_`
  returns False); at the iteration's update ``S <- max(S * backoff_factor, min_scale)``.
* **underflow**: otherwise, if more than ``underflow_threshold`` of the non-zero scaled gradient entries
  lie in fp16's subnormal range (``0 < |g S| < 2**-14``; values below ``2**-24`` flush to zero), ``S`` is
  too small: ``S <- S * growth_factor``. The rule never raises ``S`` to a scale that overflowed since the
  last interval growth (``ceiling``), so it cannot make the scale oscillate around the overflow level.
* **interval**: ``growth_interval`` healthy iterations in a row -> ``S <- S * growth_factor`` (PyTorch's
  GradScaler rule); this also clears the ceiling.
* ``S`` stays within ``[min_scale, max_scale]``.

The counts behind each decision are taken in one reduction per optimizer step and read back to the host
once (:meth:`unscale_`), the same synchronisation PyTorch's GradScaler makes to decide whether to step;
everything else, the scale included, is host-side Python: reading the counters never touches the device.
Under DDP the counts are all-reduced first (``reduce``), so every rank takes the same decision.

Gradient entries that were never float16 (parameters used only by ops autocast keeps in float32) are
counted too; the rule is a heuristic on the share of the gradient mass fp16 cannot represent well.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["FP16_MIN_NORMAL", "DynamicLossScaler", "gradient_counts"]

FP16_MIN_NORMAL = 2.0 ** -14  # 6.1e-5: below it float16 is subnormal (and flushes to 0 below 2**-24)


def gradient_counts(grads: Sequence[Tensor], tiny: float = FP16_MIN_NORMAL) -> Tensor:
    """``[non-finite, tiny, non-zero finite]`` entry counts over ``grads`` (int64, on their device).

    "tiny" counts finite entries with ``0 < |g| < tiny``; "non-zero" counts finite entries with ``|g| > 0``.
    """
    if not grads:
        return torch.zeros(3, dtype=torch.int64)
    # One flat copy and a handful of kernels, whatever the number of parameters (GPU launches add up).
    a = torch.cat([g.detach().reshape(-1) for g in grads]).abs()
    finite = torch.isfinite(a)
    positive = (a > 0) & finite
    return torch.stack([(~finite).sum(), (positive & (a < tiny)).sum(), positive.sum()])


class DynamicLossScaler:
    """The loss scale of one network and its once-per-iteration update policy (see the module docstring).

    Args:
        init_scale: the first scale (2**16, as PyTorch's GradScaler).
        growth_factor: multiplier when the scale grows (2).
        backoff_factor: multiplier after an overflow (0.5).
        growth_interval: healthy iterations in a row before a growth (2000).
        underflow_threshold: grow when more than this share of the non-zero scaled gradient entries is
            below fp16's smallest normal number; None turns the underflow rule off.
        min_scale: the floor of the scale (1).
        max_scale: the ceiling of the scale (2**24).
    """

    def __init__(self, *, init_scale: float = 2.0 ** 16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000, underflow_threshold: float | None = 0.01, min_scale: float = 1.0,
                 max_scale: float = 2.0 ** 24) -> None:
        if not growth_factor > 1.0:
            raise ValueError(f"growth_factor must be > 1, got {growth_factor}")
        if not 0.0 < backoff_factor < 1.0:
            raise ValueError(f"backoff_factor must lie in (0, 1), got {backoff_factor}")
        if growth_interval < 1:
            raise ValueError(f"growth_interval must be >= 1, got {growth_interval}")
        if underflow_threshold is not None and not 0.0 <= underflow_threshold < 1.0:
            raise ValueError(f"underflow_threshold must lie in [0, 1) or be None, got {underflow_threshold}")
        if not 0.0 < min_scale <= max_scale or not math.isfinite(max_scale):
            raise ValueError(f"need 0 < min_scale <= max_scale < inf, got {min_scale}, {max_scale}")
        if not min_scale <= init_scale <= max_scale:
            raise ValueError(f"init_scale {init_scale} lies outside [min_scale, max_scale] = [{min_scale}, {max_scale}]")
        self.init_scale, self.growth_factor, self.backoff_factor = float(init_scale), float(growth_factor), float(backoff_factor)
        self.growth_interval, self.underflow_threshold = int(growth_interval), underflow_threshold
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        self.scale = self.init_scale
        self.growth_tracker = 0  # healthy iterations in a row
        self.ceiling = math.inf  # lowest scale that overflowed since the last interval growth
        # counters over the run (saved with the state)
        self.iterations = 0  # updates: iterations in which the network took at least one step
        self.steps = 0  # optimizer steps attempted
        self.skipped = 0  # optimizer steps skipped for inf/nan
        self.overflows = 0  # iterations that ended in a backoff
        self.underflow_growths = 0
        self.interval_growths = 0
        self.last_underflow = 0.0  # underflow share of the last updated iteration
        # this iteration's counts, until update()
        self._pending = False
        self._found_inf = False
        self._tiny = 0
        self._nonzero = 0

    # -- one optimizer step ---------------------------------------------------------------------
    def scale_loss(self, loss: Tensor) -> Tensor:
        return loss * self.scale

    def unscale_(self, grads: Sequence[Tensor], reduce: Callable[[Tensor], Tensor] | None = None) -> bool:
        """Check and unscale (in place) one step's scaled gradients; True if the step may be taken.

        ``reduce`` sums the counts over processes (all ranks must call it). On inf/nan the gradients
        are left as they are and the step is to be skipped.
        """
        counts = gradient_counts(grads, FP16_MIN_NORMAL)
        if reduce is not None:
            counts = reduce(counts)
        nonfinite, tiny, nonzero = (int(v) for v in counts.tolist())  # the one host sync of the step
        self._pending = True
        self.steps += 1
        if nonfinite:
            self._found_inf = True
            self.skipped += 1
            return False
        self._tiny += tiny
        self._nonzero += nonzero
        if grads:
            torch._foreach_mul_(list(grads), 1.0 / self.scale)  # a power of two: exact
        return True

    # -- once per iteration -------------------------------------------------------------------------
    @property
    def underflow_fraction(self) -> float:
        """Share of this iteration's non-zero finite scaled gradient entries below 2**-14 (so far)."""
        return self._tiny / self._nonzero if self._nonzero else 0.0

    def update(self) -> str | None:
        """Apply the policy to this iteration's steps; returns what happened (None: no step was taken)."""
        if not self._pending:
            return None
        self.iterations += 1
        self.last_underflow = self.underflow_fraction
        event = "healthy"
        if self._found_inf:
            self.ceiling = min(self.ceiling, self.scale)
            self.scale = max(self.scale * self.backoff_factor, self.min_scale)
            self.growth_tracker = 0
            self.overflows += 1
            event = "overflow"
        else:
            grown = min(self.scale * self.growth_factor, self.max_scale)
            if (self.underflow_threshold is not None and self.last_underflow > self.underflow_threshold
                    and self.scale < grown < self.ceiling):
                self.scale = grown
                self.growth_tracker = 0
                self.underflow_growths += 1
                event = "underflow"
            else:
                self.growth_tracker += 1
                if self.growth_tracker >= self.growth_interval:
                    self.growth_tracker = 0
                    self.ceiling = math.inf
                    if grown > self.scale:
                        self.scale = grown
                        self.interval_growths += 1
                        event = "interval"
        self._pending, self._found_inf, self._tiny, self._nonzero = False, False, 0, 0
        return event

    @property
    def at_floor(self) -> bool:
        return self.scale <= self.min_scale

    # -- checkpoints ----------------------------------------------------------------------------------
    _STATE = ("scale", "growth_tracker", "ceiling", "iterations", "steps", "skipped", "overflows",
              "underflow_growths", "interval_growths", "last_underflow")

    def state_dict(self) -> dict[str, Any]:
        """Plain Python numbers (checkpoints load with ``weights_only=True``)."""
        return {name: getattr(self, name) for name in self._STATE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = [name for name in self._STATE if name not in state]
        if missing:
            raise KeyError(f"loss-scaler state lacks {', '.join(missing)}")
        for name in self._STATE:
            setattr(self, name, type(getattr(self, name))(state[name]))

    def __repr__(self) -> str:
        return (f"DynamicLossScaler(scale={self.scale:g}, growth_tracker={self.growth_tracker}, steps={self.steps}, "
                f"skipped={self.skipped}, overflows={self.overflows})")
