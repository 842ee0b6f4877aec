"""Phase schedule of one GAN iteration: Dmain, Dreg, Gmain, Greg, with StyleGAN2's lazy regularization.

Every regularizer belongs to one network and has an interval k. With k = 1 it is folded into that
network's main phase. With k > 1 it runs in the network's own regularization phase on iterations
0, k, 2k, ... with its penalty multiplied by k (the gain), so that its average strength is unchanged.
The network's optimizer then takes k + 1 steps every k iterations; Karras et al. (2020, App. C)
compensate with ``lr * k/(k+1)`` and ``beta ** (k/(k+1))``: :func:`lazy_ratio`, :func:`corrected_adam`.

All lazy regularizers of one network share one interval (one regularization phase per network).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lightning_gan.interfaces import NetworkName, Regularizer

__all__ = ["PHASE_ORDER", "Phase", "PhaseSchedule", "corrected_adam", "lazy_ratio"]

PHASE_ORDER = ("Dmain", "Dreg", "Gmain", "Greg")
_NETWORK_PREFIX = {"discriminator": "D", "generator": "G"}


def lazy_ratio(interval: int) -> float:
    """Share of a network's optimizer steps that are main steps: ``k / (k + 1)``, 1 when not lazy."""
    if interval < 1:
        raise ValueError(f"interval must be >= 1, got {interval}")
    return 1.0 if interval == 1 else interval / (interval + 1)


def corrected_adam(lr: float, betas: Sequence[float], interval: int) -> tuple[float, tuple[float, ...]]:
    """Adam hyperparameters for a network regularized every ``interval`` iterations."""
    ratio = lazy_ratio(interval)
    return lr * ratio, tuple(float(b) ** ratio for b in betas)


@dataclass(frozen=True)
class Phase:
    """One optimizer step of one network within an iteration.

    Attributes:
        name: ``Dmain``, ``Dreg``, ``Gmain`` or ``Greg``.
        network: which network this phase updates.
        adversarial: whether the adversarial loss is part of it (main phases).
        regularizers: the penalties added in this phase.
        gain: multiplier of the penalties (the interval in a lazy phase, 1 when folded).
    """

    name: str
    network: NetworkName
    adversarial: bool
    regularizers: tuple[Regularizer, ...]
    gain: int


class PhaseSchedule:
    """Which phases run on which iteration; the single place that knows about intervals."""

    def __init__(self, regularizers: Iterable[Regularizer] = ()) -> None:
        self.regularizers = tuple(regularizers)
        self.intervals: dict[str, int] = {}
        folded: dict[str, list[Regularizer]] = {"discriminator": [], "generator": []}
        lazy: dict[str, list[Regularizer]] = {"discriminator": [], "generator": []}
        for reg in self.regularizers:
            network = getattr(reg, "network", None)
            if network not in folded:
                raise ValueError(f"{type(reg).__name__}.network must be 'generator' or 'discriminator', got {network!r}")
            (folded if reg.interval == 1 else lazy)[network].append(reg)
        for network, regs in lazy.items():
            intervals = sorted({r.interval for r in regs})
            if len(intervals) > 1:
                names = ", ".join(f"{type(r).__name__}(interval={r.interval})" for r in regs)
                raise ValueError(
                    f"Lazy regularizers of the {network} must share one interval (one {network[0].upper()}reg "
                    f"phase), got {names}. Give them the same interval or fold some in with interval=1."
                )
            self.intervals[network] = intervals[0] if intervals else 1

        self._main = {
            net: Phase(f"{_NETWORK_PREFIX[net]}main", net, True, tuple(folded[net]), 1) for net in folded
        }
        self._reg = {
            net: Phase(f"{_NETWORK_PREFIX[net]}reg", net, False, tuple(lazy[net]), self.intervals[net])
            for net in lazy if lazy[net]
        }
        self.cycle_length = math.lcm(*self.intervals.values())
        self._cycle = [self._compute(i) for i in range(self.cycle_length)]

    def _compute(self, iteration: int) -> tuple[Phase, ...]:
        phases = []
        for net in ("discriminator", "generator"):
            phases.append(self._main[net])
            reg = self._reg.get(net)
            if reg is not None and iteration % reg.gain == 0:
                phases.append(reg)
        return tuple(phases)

    def phases(self, iteration: int) -> tuple[Phase, ...]:
        """Phases of iteration ``iteration`` (0-based), in the order Dmain, Dreg, Gmain, Greg."""
        return self._cycle[iteration % self.cycle_length]

    def interval(self, network: NetworkName) -> int:
        """The lazy interval of a network (1 when it has no lazy regularizer)."""
        return self.intervals[network]

    def correct_optimizer(self, optimizer, network: NetworkName) -> None:  # noqa: ANN001 (any torch Optimizer)
        """Scale ``lr`` by k/(k+1) and raise each beta to k/(k+1), in place, for every param group."""
        interval = self.interval(network)
        if interval == 1:
            return
        for group in optimizer.param_groups:
            if "betas" in group:
                group["lr"], group["betas"] = corrected_adam(group["lr"], group["betas"], interval)
            else:
                group["lr"] = group["lr"] * lazy_ratio(interval)

    def table(self, iterations: int) -> list[tuple[str, ...]]:
        """Phase names for iterations 0..iterations-1 (for docs and tests)."""
        return [tuple(p.name for p in self.phases(i)) for i in range(iterations)]

    def __repr__(self) -> str:
        parts = [f"{net}: interval {k}" for net, k in self.intervals.items()]
        return f"PhaseSchedule({', '.join(parts)}, regularizers={[type(r).__name__ for r in self.regularizers]})"
