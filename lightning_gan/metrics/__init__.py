"""Metrics computed on a generator (the EMA one during training) against a datamodule's data.

Registered by name in the ``lightning_gan.metrics`` entry-point group (``lightning-gan plugins``):
``fid``, ``kid``, ``is``, ``pr`` (Inception-v3 or any extractor), ``coverage``/``mode_coverage``,
``shapes`` (classifier-based, no download), ``swd`` (multi-scale sliced Wasserstein, any images, no download),
``ppl``, ``jodi``, ``eqt``.
"""

from lightning_gan.metrics.base import EvaluationContext, FeatureSet, GeneratorMetric, generate_images, iter_generated
from lightning_gan.metrics.mode_coverage import Coverage, CoverageResult, ModeCoverage, mode_coverage

__all__ = ["Coverage", "CoverageResult", "EvaluationContext", "FeatureSet", "GeneratorMetric", "ModeCoverage",
           "generate_images", "iter_generated", "mode_coverage"]
