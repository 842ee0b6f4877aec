"""Phase schedule of one GAN iteration: Dmain, Dreg, Gmain, Greg, with StyleGAN2's lazy regularization.

Every regularizer belongs to one network and has an interval k. With k = 1 it is folded into that
network's main phase. With k > 1 it runs in the network's own regularization phase on iterations
0, k, 2k, ... with its penalty multiplied by k (the gain), so that its average strength is unchanged.
The network's optimizer then takes k + 1 steps every k iterations; Karras et al. (2020, App. C)
compensate with ``lr * k/(k+1)`` and ``beta ** (k/(k+1))``: :func:`lazy_ratio`, :func:`corrected_adam`.

One interval per network: all lazy regularizers of one network share one interval, because each network
has one regularization phase (Dreg or Greg) whose gain and Adam correction are that interval. Two lazy
regularizers of the discriminator with intervals 16 and 4 (e.g. a plugin's ``R2(interval=16)`` next to the
``LazyR1(interval=4)`` callback) are refused when the schedule is built; give them the same interval, or
fold one into the main phase with ``interval=1``. Regularizers of different networks may differ
(StyleGAN2: R1 every 16 iterations on D, path length every 4 on G).

Several discriminator steps per iteration, ``d_steps`` = n (BigGAN: 2, 4 on CIFAR-10; WGAN-GP: 5): an
iteration runs Dmain n times, then Dreg where due, Gmain, Greg. Each D step takes its own real batch:
GANModule splits the loader's batch into n equal chunks and D step i sees chunk i (:attr:`Phase.batch`);
Dreg and G's phases see the last chunk, so a lazy penalty is computed on the D that G then trains against.
Splitting rather than asking the datamodule for n batches works with any datamodule and keeps Lightning's
loop as it is (one loader batch = one ``training_step`` = one iteration: epochs, resume and DDP's sampler are
unchanged). The data's ``batch_size`` is therefore the number of real images per iteration and process
(it must be a multiple of n): each D step sees ``batch_size / n`` of them and the G step makes as many
fakes; BigGAN's "batch 256 with 2 D steps" (the paper counts the batch per G step) is
``--data.batch_size=512 --model.d_steps=2`` on one process. Under DDP every process splits its own batch and
each D step's gradients are averaged over processes, as any phase's. kimg counts every real image D sees,
``batch_size`` x processes per iteration whatever n, and every kimg schedule (EMA half-life, ``total_kimg``,
sample grids) reads that count. Intervals still count iterations: a lazy D regularizer of interval k runs
once every k iterations (after the last D step), not every k D steps, and a folded one (interval 1, e.g.
WGAN-GP's gradient penalty) runs in every D step. D's optimizer then takes
n main steps per iteration and one regularization step every k iterations, n k main steps out of n k + 1,
so the Adam correction becomes ``lr * nk/(nk+1)`` and ``beta ** (nk/(nk+1))`` (StyleGAN2's k/(k+1) is
n = 1); G's is unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lightning_gan.errors import ConfigError
from lightning_gan.interfaces import ContractError, NetworkName, Regularizer

__all__ = ["PHASE_ORDER", "Phase", "PhaseSchedule", "corrected_adam", "lazy_ratio"]

PHASE_ORDER = ("Dmain", "Dreg", "Gmain", "Greg")
_NETWORK_PREFIX = {"discriminator": "D", "generator": "G"}


def lazy_ratio(interval: int, main_steps: int = 1) -> float:
    """Share of a network's optimizer steps that are main steps, 1 when not lazy.

    With ``main_steps`` = n main steps per iteration and one regularization step every ``interval`` = k
    iterations: ``n k / (n k + 1)`` (StyleGAN2's ``k / (k + 1)`` for n = 1).
    """
    if interval < 1:
        raise ValueError(f"interval must be >= 1, got {interval}")
    if main_steps < 1:
        raise ValueError(f"main_steps must be >= 1, got {main_steps}")
    main = main_steps * interval
    return 1.0 if interval == 1 else main / (main + 1)


def corrected_adam(lr: float, betas: Sequence[float], interval: int,
                   main_steps: int = 1) -> tuple[float, tuple[float, ...]]:
    """Adam hyperparameters for a network regularized every ``interval`` iterations with ``main_steps`` per
    iteration: ``lr * r`` and ``beta ** r``, r = :func:`lazy_ratio`."""
    ratio = lazy_ratio(interval, main_steps)
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
        batch: which of the iteration's ``d_steps`` real batches (chunks of the loader's batch) it sees:
            ``i`` for the i-th Dmain, the last one for Dreg, Gmain and Greg; 0 when ``d_steps`` is 1.
    """

    name: str
    network: NetworkName
    adversarial: bool
    regularizers: tuple[Regularizer, ...]
    gain: int
    batch: int = 0


class PhaseSchedule:
    """Which phases run on which iteration; the single place that knows about intervals.

    The one-interval-per-network rule: all lazy regularizers (interval > 1) of one network share one
    interval, since the network has a single regularization phase whose gain and Adam correction are that
    interval. Mixing intervals raises a ``ConfigError`` that names the regularizers; regularizers with
    ``interval=1`` (folded into the main phase) and those of the other network are free.

    Args:
        regularizers: the penalties to schedule (each with its ``network`` and ``interval``).
        d_steps: discriminator steps (Dmain phases) per iteration, each on its own real batch (module docstring).
    """

    def __init__(self, regularizers: Iterable[Regularizer] = (), *, d_steps: int = 1) -> None:
        if isinstance(d_steps, bool) or not isinstance(d_steps, int) or d_steps < 1:
            raise ConfigError(f"d_steps (discriminator steps per iteration) must be an integer >= 1, got {d_steps!r}; "
                              f"use 1 for one D step per G step (the default), 2 for BigGAN, 5 for WGAN-GP")
        self.d_steps = d_steps
        self.regularizers = tuple(regularizers)
        self.intervals: dict[str, int] = {}
        folded: dict[str, list[Regularizer]] = {"discriminator": [], "generator": []}
        lazy: dict[str, list[Regularizer]] = {"discriminator": [], "generator": []}
        for reg in self.regularizers:
            network = getattr(reg, "network", None)
            if network not in folded:
                raise ContractError(f"{type(reg).__name__}.network must be 'generator' or 'discriminator', got "
                                    f"{network!r}; set it as a class attribute (network = \"discriminator\")")
            (folded if reg.interval == 1 else lazy)[network].append(reg)
        for network, regs in lazy.items():
            intervals = sorted({r.interval for r in regs})
            if len(intervals) > 1:
                names = ", ".join(f"{type(r).__name__}(interval={r.interval})" for r in regs)
                raise ConfigError(
                    f"Lazy regularizers of the {network} must share one interval (one interval per network: "
                    f"one {_NETWORK_PREFIX[network]}reg phase), got {names}; give them the same interval "
                    f"(where each is configured: --model.regularizers, a callback such as LazyR1) "
                    f"or fold one into the main phase with interval=1"
                )
            self.intervals[network] = intervals[0] if intervals else 1

        last = d_steps - 1  # Dreg, Gmain and Greg see the last D step's real batch
        self._main = {
            "discriminator": tuple(Phase("Dmain", "discriminator", True, tuple(folded["discriminator"]), 1, i)
                                   for i in range(d_steps)),
            "generator": (Phase("Gmain", "generator", True, tuple(folded["generator"]), 1, last),),
        }
        self._reg = {
            net: Phase(f"{_NETWORK_PREFIX[net]}reg", net, False, tuple(lazy[net]), self.intervals[net], last)
            for net in lazy if lazy[net]
        }
        self.cycle_length = math.lcm(*self.intervals.values())
        self._cycle = [self._compute(i) for i in range(self.cycle_length)]

    def _compute(self, iteration: int) -> tuple[Phase, ...]:
        phases = []
        for net in ("discriminator", "generator"):
            phases.extend(self._main[net])
            reg = self._reg.get(net)
            if reg is not None and iteration % reg.gain == 0:
                phases.append(reg)
        return tuple(phases)

    def phases(self, iteration: int) -> tuple[Phase, ...]:
        """Phases of iteration ``iteration`` (0-based), in the order Dmain (``d_steps`` times), Dreg, Gmain, Greg."""
        return self._cycle[iteration % self.cycle_length]

    def interval(self, network: NetworkName) -> int:
        """The lazy interval of a network (1 when it has no lazy regularizer)."""
        return self.intervals[network]

    def main_steps(self, network: NetworkName) -> int:
        """Main-phase optimizer steps of a network per iteration: ``d_steps`` for D, 1 for G."""
        return self.d_steps if network == "discriminator" else 1

    def adam_ratio(self, network: NetworkName) -> float:
        """The network's Adam correction ``n k / (n k + 1)`` (n main steps per iteration, interval k)."""
        return lazy_ratio(self.interval(network), self.main_steps(network))

    def correct_optimizer(self, optimizer, network: NetworkName) -> None:  # noqa: ANN001 (any torch Optimizer)
        """Scale ``lr`` by r = nk/(nk+1) and raise each beta to r, in place, for every param group."""
        interval = self.interval(network)
        if interval == 1:
            return
        steps = self.main_steps(network)
        for group in optimizer.param_groups:
            if "betas" in group:
                group["lr"], group["betas"] = corrected_adam(group["lr"], group["betas"], interval, steps)
            else:
                group["lr"] = group["lr"] * lazy_ratio(interval, steps)

    def table(self, iterations: int) -> list[tuple[str, ...]]:
        """Phase names for iterations 0..iterations-1, ``Dmain`` once per D step (for docs and tests)."""
        return [tuple(p.name for p in self.phases(i)) for i in range(iterations)]

    def __repr__(self) -> str:
        parts = [f"{net}: interval {k}" for net, k in self.intervals.items()]
        return (f"PhaseSchedule(d_steps={self.d_steps}, {', '.join(parts)}, "
                f"regularizers={[type(r).__name__ for r in self.regularizers]})")
