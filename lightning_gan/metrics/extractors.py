"""Choosing a metric's feature extractor by name: ``"inception"``, ``"shapes"`` or any ``nn.Module``.

Kept apart from ``lightning_gan.metrics.features`` (the extractors themselves) because it knows every
named extractor, the shapes classifier included, which itself builds on ``features`` and ``base``: the
imports read top to bottom, ``features`` -> ``base`` -> ``shapes`` -> ``extractors`` -> the metrics.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from lightning_gan.errors import ConfigError
from lightning_gan.interfaces import Configurable
from lightning_gan.metrics.features import InceptionV3Features
from lightning_gan.metrics.shapes import shapes_classifier_for

__all__ = ["ExtractorArgument"]


class ExtractorArgument:
    """Mixin for metrics with an ``extractor`` argument: ``"inception"``, ``"shapes"`` or an ``nn.Module``.

    ``feature_extractor(datamodule)`` builds the named one on first use (Inception-v3 from local weights,
    see ``inception_weights``; the shapes judge of the datamodule's settings, ``shapes_classifier_for``) and
    ``config()`` stores a module as its config (``Configurable``) or as ``"custom:<class path>"``.
    """

    extractor: str | nn.Module
    _module: nn.Module | None = None

    def feature_extractor(self, datamodule: Any = None) -> nn.Module:
        if self._module is None:
            if isinstance(self.extractor, nn.Module):
                module = self.extractor
            elif self.extractor == "inception":
                module = InceptionV3Features(getattr(self, "inception_weights", None))
                module.load()
            elif self.extractor == "shapes":
                module = shapes_classifier_for(datamodule)
            else:
                raise ConfigError(f"{type(self).__name__}: unknown extractor {self.extractor!r}")
            self._module = module.eval()
        return self._module

    def config(self) -> dict[str, Any]:
        extractor = self.extractor
        if isinstance(extractor, nn.Module):  # a custom module: keep what it was; it cannot be rebuilt from data
            self.extractor = extractor.config() if isinstance(extractor, Configurable) else \
                f"custom:{type(extractor).__module__}.{type(extractor).__qualname__}"
        try:
            return super().config()  # type: ignore[misc]
        finally:
            self.extractor = extractor
