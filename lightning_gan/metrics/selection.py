"""Which metrics a run evaluates: the data's own unless pinned, each metric's headline, one-line refusals.

A run's metrics follow its data: ``GANModule(metrics=None)`` and ``MetricsCallback(metrics=None)`` evaluate
the datamodule's ``default_metrics()`` (the shapes metrics for shapes, ``swd`` or FID/KID for an image
folder, mode coverage for toy2d), so switching ``--data`` switches the metrics. A metric pinned by a
config that cannot serve the data is refused when fit/validate/test starts, before any training, with
one line that names it and the option that changes it.

A metric's *headline* is the result a run keeps its best checkpoint by: the attribute or property
``headline = (result name, "min" | "max")`` of the metric (``swd`` -> ``("swd", "min")``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from lightning_gan import registry
from lightning_gan.errors import ConfigError
from lightning_gan.metrics.base import GeneratorMetric

__all__ = ["data_default_metrics", "headline", "metric_name", "setup_metrics"]

# Headlines of metrics that do not declare one themselves (by class path).
_KNOWN_HEADLINES: dict[str, tuple[str, Literal["min", "max"]]] = {
    "lightning_gan.metrics.shapes.ShapesMetrics": ("shapes/fd", "min"),
}


def data_default_metrics(datamodule: Any) -> list[GeneratorMetric]:
    """The datamodule's ``default_metrics()`` resolved to metric objects ([] when it has none)."""
    defaults = datamodule.default_metrics() if hasattr(datamodule, "default_metrics") else []
    return [registry.resolve("metrics", m) for m in defaults]


def metric_name(metric: GeneratorMetric) -> str:
    """The registered name of the metric's class (``swd``, ``shapes``, ...), else its class name."""
    target = f"{type(metric).__module__}:{type(metric).__qualname__}"
    names = sorted(e.name for e in registry.get_registry("metrics").entries() if e.target == target)
    return names[0] if names else type(metric).__name__


def headline(metric: GeneratorMetric) -> tuple[str, Literal["min", "max"]] | None:
    """``(result name, "min" | "max")`` a best checkpoint follows for this metric, or None when it has none."""
    value = getattr(metric, "headline", None)
    if value is None:
        cls = type(metric)
        value = _KNOWN_HEADLINES.get(f"{cls.__module__}.{cls.__qualname__}")
    if value is None:
        return None
    name, mode = value
    if mode not in ("min", "max"):
        raise ValueError(f"{type(metric).__name__}.headline must be (name, 'min' | 'max'), got {value!r}")
    return str(name), mode


def setup_metrics(metrics: Sequence[GeneratorMetric], datamodule: Any, *, pinned_by: str | None) -> None:
    """``setup`` every metric; a metric that cannot serve the data (its ``setup`` raises ``TypeError``) is
    refused with one line naming it and, for a pinned one, the option ``pinned_by`` that sets it.

    Args:
        metrics: the metrics to prepare.
        datamodule: the run's data (None: nothing to check against).
        pinned_by: where the metrics were set: a command-line option (``--model.metrics``) or a description
            (``the MetricsCallback's metrics``); None when they are the data's own defaults.
    """
    for metric in metrics:
        try:
            metric.setup(datamodule)
        except TypeError as err:
            name = metric_name(metric)
            data = type(datamodule).__name__
            reason = " ".join(str(err).split())
            if pinned_by is None:
                raise ConfigError(f"The metric {name!r} that {data} asks for cannot run: {reason}") from err
            own = ", ".join(metric_name(m) for m in data_default_metrics(datamodule)) or "none"
            fix = (f"use {pinned_by}=null for the data's own metrics ({own})" if pinned_by.startswith("--")
                   else f"remove it from {pinned_by} to evaluate the data's own metrics ({own})")
            raise ConfigError(f"The metric {name!r} set by {pinned_by} cannot serve {data}: {reason}; {fix}.") from err
