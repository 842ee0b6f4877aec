"""FID, KID, Inception Score and precision/recall, computed by torch-fidelity from features.

The features come from the ``EvaluationContext`` (one extraction per extractor and evaluation, shared by
every metric), and the numbers from torch-fidelity's feature-level functions, the same code its own
``calculate_metrics`` runs:

* **FID** (Heusel et al. 2017): ``|mu_r - mu_g|^2 + tr(S_r + S_g - 2 (S_r S_g)^(1/2))`` of the feature
  means and covariances.
* **KID** (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel
  ``k(x, y) = (x.y / d + 1)^3``, averaged over ``subsets`` random subsets of ``subset_size``; reported
  with its standard deviation over subsets (``kid_std``).
* **IS** (Salimans et al. 2016): ``exp E_x KL(p(y|x) || p(y))`` over ``splits`` splits of the generated
  logits (mean and standard deviation); needs an extractor that gives logits.
* **Precision/recall** (Kynkaanniemi et al. 2019): each set's manifold is the union of balls reaching each
  point's k-th nearest neighbour (k = 3); precision is the share of generated samples inside the real
  manifold, recall the share of real samples inside the generated one.

The extractor is Inception-v3 by default (``extractor="inception"``), the shapes classifier with
``extractor="shapes"``, or any ``nn.Module``. Names carry the extractor when it is not Inception
(``fid/shapes_classifier``), so numbers from different feature spaces are never mixed up.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lightning_gan.interfaces import Generator
from lightning_gan.metrics.base import EvaluationContext, FeatureSet, GeneratorMetric, check_num_samples
from lightning_gan.metrics.distances import frechet_distance, inception_score, kernel_distance, precision_recall
from lightning_gan.metrics.extractors import ExtractorArgument
from lightning_gan.metrics.features import extractor_name

__all__ = ["FID", "KID", "FeatureMetric", "InceptionScore", "PrecisionRecall",
           "frechet_distance", "inception_score", "kernel_distance", "precision_recall"]


# -- metrics ---------------------------------------------------------------------------------------
class FeatureMetric(ExtractorArgument, GeneratorMetric):
    """Base of metrics computed from the features of real and generated images.

    Args:
        extractor: ``"inception"`` (Inception-v3 from local weights), ``"shapes"`` (the shapes classifier,
            trained and cached on first use) or any ``nn.Module`` mapping images in [-1, 1] to features.
        inception_weights: path of the Inception weights file (see ``lightning_gan.metrics.features``).
        num_samples: generated images (and real ones unless ``num_real`` is set).
        num_real: real images; None: as many as ``num_samples``.
        seed: seed of the generated samples and of the real subset.
    """

    def __init__(self, *, extractor: str | nn.Module = "inception", inception_weights: str | None = None,
                 num_samples: int = 10_000, num_real: int | None = None, seed: int = 0) -> None:
        if isinstance(extractor, str) and extractor not in ("inception", "shapes"):
            raise ValueError(f"{type(self).__name__}: extractor must be 'inception', 'shapes' or an nn.Module, got {extractor!r}")
        self.extractor = extractor
        self.inception_weights = inception_weights
        self.num_samples = check_num_samples(type(self).__name__, num_samples)
        self.num_real = None if num_real is None else check_num_samples(type(self).__name__, num_real)
        self.seed = int(seed)
        self._module: nn.Module | None = extractor if isinstance(extractor, nn.Module) else None

    def setup(self, datamodule: Any = None) -> None:
        self.feature_extractor(datamodule)

    @property
    def suffix(self) -> str:
        return "" if self.extractor == "inception" else f"/{extractor_name(self._module or self.extractor)}"

    def _features(self, generator: Generator, datamodule: Any, context: EvaluationContext | None) -> tuple[FeatureSet, FeatureSet]:
        context = context or EvaluationContext()
        extractor = self.feature_extractor(datamodule)
        device = next((p.device for p in generator.parameters()), torch.device("cpu"))
        extractor.to(device)
        real = context.real_features(extractor, datamodule, self.num_real or self.num_samples, seed=self.seed)
        fake = context.fake_features(extractor, generator, self.num_samples, seed=self.seed)
        return real, fake


class FID(FeatureMetric):
    """Frechet distance of feature statistics (``fid``; lower is better). See the module docstring."""

    @property
    def headline(self) -> tuple[str, str]:
        """The result a best checkpoint follows (``MetricsCallback(monitor="auto")``)."""
        return f"fid{self.suffix}", "min"

    def compute(self, generator: Generator, datamodule: Any, context: EvaluationContext | None = None) -> dict[str, float]:
        real, fake = self._features(generator, datamodule, context)
        return {f"fid{self.suffix}": frechet_distance(real.features, fake.features)}


class KID(FeatureMetric):
    """Kernel distance (``kid``, ``kid_std``; lower is better). See the module docstring.

    Args:
        subsets: random subsets the MMD is averaged over.
        subset_size: images per subset (capped at the number of samples).
    """

    def __init__(self, *, subsets: int = 100, subset_size: int = 1000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.subsets = int(subsets)
        self.subset_size = int(subset_size)

    @property
    def headline(self) -> tuple[str, str]:
        """The result a best checkpoint follows (``MetricsCallback(monitor="auto")``)."""
        return f"kid{self.suffix}", "min"

    def compute(self, generator: Generator, datamodule: Any, context: EvaluationContext | None = None) -> dict[str, float]:
        real, fake = self._features(generator, datamodule, context)
        mean, std = kernel_distance(real.features, fake.features, subsets=self.subsets, subset_size=self.subset_size)
        return {f"kid{self.suffix}": mean, f"kid_std{self.suffix}": std}


class InceptionScore(FeatureMetric):
    """Inception Score of the generated images (``is``, ``is_std``; higher is better); real data unused.

    Args:
        splits: splits of the samples the score is averaged over.
    """

    def __init__(self, *, splits: int = 10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.splits = int(splits)

    def compute(self, generator: Generator, datamodule: Any, context: EvaluationContext | None = None) -> dict[str, float]:
        context = context or EvaluationContext()
        extractor = self.feature_extractor(datamodule)
        fake = context.fake_features(extractor, generator, self.num_samples, seed=self.seed)
        if fake.logits is None:
            raise TypeError(f"The Inception Score needs class logits; the extractor {extractor_name(extractor)} gives none")
        mean, std = inception_score(fake.logits, splits=self.splits)
        return {f"is{self.suffix}": mean, f"is_std{self.suffix}": std}


class PrecisionRecall(FeatureMetric):
    """Improved precision and recall (``precision``, ``recall``; higher is better). See the module docstring.

    Args:
        k: the neighbour whose distance sets each point's ball (3 in the paper).
    """

    def __init__(self, *, k: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.k = int(k)

    def compute(self, generator: Generator, datamodule: Any, context: EvaluationContext | None = None) -> dict[str, float]:
        real, fake = self._features(generator, datamodule, context)
        precision, recall = precision_recall(real.features, fake.features, k=self.k)
        return {f"precision{self.suffix}": precision, f"recall{self.suffix}": recall}
