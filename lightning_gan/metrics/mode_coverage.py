"""Mode coverage of mixtures of Gaussians, by the PacGAN / VEEGAN protocol.

Draw 2500 generator samples. A sample is *high quality* if it lies within 3 standard deviations of
its nearest mode. A mode is *captured* if it is the nearest mode of at least one high-quality sample.
The *reverse KL* compares the histogram of high-quality samples over modes, p, with the uniform
distribution over the K modes: ``KL(p || U) = sum_k p_k log(K p_k)`` (0 when perfectly balanced,
``log K`` when everything falls into one mode, inf when no sample is high quality).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lightning_gan.interfaces import Generator
from lightning_gan.metrics.base import EvaluationContext, GeneratorMetric


@dataclass(frozen=True)
class CoverageResult:
    modes: int  # captured modes
    total_modes: int
    high_quality: float  # fraction of samples within `threshold` sigma of their nearest mode
    reverse_kl: float
    histogram: tuple[int, ...]  # high-quality samples per mode

    def as_dict(self, prefix: str = "coverage/") -> dict[str, float]:
        return {f"{prefix}modes": float(self.modes), f"{prefix}high_quality": self.high_quality,
                f"{prefix}reverse_kl": self.reverse_kl}


def mode_coverage(samples: Tensor, modes: Tensor, sigma: float, threshold: float = 3.0) -> CoverageResult:
    """Coverage of ``samples`` [N, D] over Gaussian ``modes`` [K, D] with standard deviation ``sigma``."""
    if samples.dim() != 2 or modes.dim() != 2 or samples.shape[1] != modes.shape[1]:
        raise ValueError(f"samples [N, D] and modes [K, D] must share D, got {tuple(samples.shape)} and {tuple(modes.shape)}")
    samples = samples.detach().double().cpu()
    modes = modes.detach().double().cpu()
    distance, nearest = torch.cdist(samples, modes).min(dim=1)  # [N], [N]
    good = distance <= threshold * sigma
    histogram = torch.bincount(nearest[good], minlength=modes.shape[0])
    n_good = int(good.sum())
    k = modes.shape[0]
    if n_good == 0:
        reverse_kl = math.inf
    else:
        p = histogram[histogram > 0].double() / n_good
        reverse_kl = float((p * (p * k).log()).sum())
    return CoverageResult(
        modes=int((histogram > 0).sum()), total_modes=k,
        high_quality=n_good / max(samples.shape[0], 1), reverse_kl=reverse_kl,
        histogram=tuple(int(h) for h in histogram),
    )


class ModeCoverage(GeneratorMetric):
    """Mode coverage of a 2-D (or any-D) mixture datamodule exposing ``modes`` [K, D] and ``sigma``."""

    def __init__(self, *, num_samples: int = 2500, threshold: float = 3.0, seed: int = 123) -> None:
        """
        Args:
            num_samples: generator samples drawn (2500 in the PacGAN/VEEGAN protocol).
            threshold: a sample within ``threshold * sigma`` of its nearest mode is high quality.
            seed: seed of the latents, fixed so that successive evaluations compare like with like.
        """
        self.num_samples = int(num_samples)
        self.threshold = float(threshold)
        self.seed = int(seed)

    def setup(self, datamodule: Any = None) -> None:
        """Refuses data without known modes (before training, not at the first evaluation)."""
        if datamodule is not None and (getattr(datamodule, "modes", None) is None or getattr(datamodule, "sigma", None) is None):
            raise TypeError(f"ModeCoverage needs a datamodule with `modes` and `sigma` (e.g. toy2d), got {type(datamodule).__name__}")

    @torch.no_grad()
    def compute(self, generator: Generator, datamodule: Any, context: EvaluationContext | None = None) -> dict[str, float]:
        modes = getattr(datamodule, "modes", None)
        sigma = getattr(datamodule, "sigma", None)
        if modes is None or sigma is None:
            raise TypeError(f"ModeCoverage needs a datamodule with `modes` and `sigma` (e.g. toy2d), got {type(datamodule).__name__}")
        device = next(generator.parameters()).device
        rng = torch.Generator(device=device).manual_seed(self.seed)
        z = generator.sample_latents(self.num_samples, generator=rng, device=device)
        c = None
        if generator.c_dim:  # a conditional generator: classes in equal shares
            labels = torch.arange(self.num_samples, device=device) % generator.c_dim
            c = torch.nn.functional.one_hot(labels, generator.c_dim).float()
        samples = generator(z, c)
        return mode_coverage(samples, modes, sigma, self.threshold).as_dict()


class Coverage(GeneratorMetric):
    """Mode or class coverage, whichever the data defines (the ``coverage`` metric).

    * a mixture datamodule (``modes`` and ``sigma``, e.g. toy2d): ``ModeCoverage`` (``coverage/modes``,
      ``coverage/high_quality``, ``coverage/reverse_kl``);
    * the procedural shapes: class coverage by the shapes classifier (``shapes/coverage``,
      ``shapes/recognizable``, ``shapes/reverse_kl``; see ``lightning_gan.metrics.shapes``).

    Args:
        num_samples: generated samples (None: 2500 for mixtures, the protocol's number; 10000 for shapes).
        seed: seed of the latents.
    """

    def __init__(self, *, num_samples: int | None = None, seed: int = 123) -> None:
        self.num_samples = None if num_samples is None else int(num_samples)
        self.seed = int(seed)
        self._delegate: GeneratorMetric | None = None

    def _for(self, datamodule: Any) -> GeneratorMetric:
        if self._delegate is None:
            if getattr(datamodule, "modes", None) is not None and getattr(datamodule, "sigma", None) is not None:
                self._delegate = ModeCoverage(num_samples=self.num_samples or 2500, seed=self.seed)
            elif all(hasattr(datamodule, a) for a in ("classes", "size_range", "resolution")):
                from lightning_gan.metrics.shapes import ShapesMetrics

                self._delegate = ShapesMetrics(num_samples=self.num_samples or 10_000, seed=self.seed)
            else:
                raise TypeError(
                    f"coverage needs data with known modes (toy2d) or known classes (shapes); "
                    f"{type(datamodule).__name__} has neither (use swd or fid/kid/pr for image folders)"
                )
        return self._delegate

    def setup(self, datamodule: Any = None) -> None:
        self._for(datamodule).setup(datamodule)

    def compute(self, generator: Generator, datamodule: Any, context: EvaluationContext | None = None) -> dict[str, float]:
        delegate = self._for(datamodule)
        results = delegate.compute(generator, datamodule, context)
        if isinstance(delegate, ModeCoverage):
            return results
        return {k: v for k, v in results.items() if k in ("shapes/coverage", "shapes/recognizable", "shapes/reverse_kl")}
