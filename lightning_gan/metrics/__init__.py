"""Metrics computed on a generator (the EMA one during training) against a datamodule's data."""

from lightning_gan.metrics.base import GeneratorMetric
from lightning_gan.metrics.mode_coverage import CoverageResult, ModeCoverage, mode_coverage

__all__ = ["CoverageResult", "GeneratorMetric", "ModeCoverage", "mode_coverage"]
