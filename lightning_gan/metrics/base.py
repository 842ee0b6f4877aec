"""The metric contract GANModule evaluates at validation, test and the end of fit."""

from __future__ import annotations

from typing import Any

from lightning_gan.interfaces import Configurable, Generator


class GeneratorMetric(Configurable):
    """Scores a generator; ``compute`` returns ``{name: value}`` with names like ``coverage/modes``.

    Implementations draw their samples from their own seeded ``torch.Generator`` so that evaluating
    never disturbs the training run's random state (resuming stays exact).
    """

    def compute(self, generator: Generator, datamodule: Any) -> dict[str, float]:
        raise NotImplementedError
