"""Jacobian off-diagonal index (JODI): how much a map mixes its input coordinates, exactly via autograd.

For a map ``f: R^n -> R^m`` (per sample; e.g. a mapping network ``z -> w``, or ``z -> classifier
features`` of generated images) and an input ``x``, let ``J = df/dx(x)`` ([m, n]) and ``B`` its leading
square block ``J[:k, :k]``, ``k = min(m, n)``. Then

    JODI(x) = sum_{i != j} B_ij^2 / sum_{i, j} B_ij^2,

the share of the block's squared entries that lie off its diagonal: 0 when output ``i`` depends on
input ``i`` only (a diagonal map), ``1 - 1/k`` on average for a random isotropic matrix, 1 when the
diagonal is zero. The reported index is the mean over samples (a sample whose block is all zero has no
index, NaN, and is left out of the mean). Outputs are flattened per sample, so ``f`` may return
``[N, ...]``.

Jacobians are exact: ``torch.func.jacrev`` under ``torch.func.vmap`` (one reverse pass per output of
the block; only the block's ``k`` outputs and ``k`` inputs are differentiated), with a per-sample loop
of ``torch.autograd.functional.jacobian`` as a fallback for maps that ``vmap`` cannot batch. A module
``f`` (and the metric's generator) is evaluated in eval mode, so that batch statistics play no part.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lightning_gan.errors import ConfigError
from lightning_gan.interfaces import Generator
from lightning_gan.metrics.base import (
    EvaluationContext,
    GeneratorMetric,
    _device_of,
    _eval_mode,
    balanced_labels,
    check_num_samples,
)
from lightning_gan.metrics.extractors import ExtractorArgument
from lightning_gan.metrics.features import FeatureExtractor, extractor_name

__all__ = [
    "JODI",
    "jacobian_offdiagonal_index",
    "jacobian_offdiagonal_samples",
    "offdiagonal_share",
    "square_block_jacobians",
]


def offdiagonal_share(blocks: Tensor) -> Tensor:
    """Per-sample share of squared entries off the diagonal of square matrices [N, k, k] -> [N] (float64).

    NaN where a matrix is all zero.
    """
    if blocks.dim() != 3 or blocks.shape[1] != blocks.shape[2]:
        raise ValueError(f"expected square matrices [N, k, k], got {tuple(blocks.shape)}")
    sq = blocks.detach().double().square()
    total = sq.sum(dim=(1, 2))
    off = total - sq.diagonal(dim1=1, dim2=2).sum(dim=1)
    return torch.where(total > 0, off / total.where(total > 0, torch.ones_like(total)), torch.full_like(total, math.nan))


def square_block_jacobians(f: Callable[..., Tensor], inputs: Tensor, *fixed: Tensor, batch_size: int = 64) -> Tensor:
    """The leading square block ``J[:k, :k]`` of ``f``'s Jacobian at each input, [N, k, k], ``k = min(m, n)``.

    Args:
        f: batched map ``f(x [B, n], *fixed [B, ...]) -> [B, ...]`` (outputs flattened to [B, m]).
        inputs: points [N, n] at which to differentiate.
        fixed: per-sample tensors [N, ...] passed to ``f`` alongside the input and held fixed (e.g. classes).
        batch_size: samples per vmapped chunk.
    """
    if inputs.dim() != 2:
        raise ValueError(f"inputs must be [N, n], got {tuple(inputs.shape)}")
    if any(a.shape[0] != inputs.shape[0] for a in fixed):
        raise ValueError("every fixed tensor must have one row per input")
    with _eval_mode(f) if isinstance(f, nn.Module) else contextlib.nullcontext():
        return _square_block_jacobians(f, inputs, fixed, batch_size)


def _square_block_jacobians(f: Callable[..., Tensor], inputs: Tensor, fixed: tuple[Tensor, ...], batch_size: int) -> Tensor:
    n = inputs.shape[1]
    with torch.no_grad():
        m = f(inputs[:1], *[a[:1] for a in fixed]).flatten(1).shape[1]
    k = min(m, n)
    head, tail = inputs[:, :k], inputs[:, k:]

    def block_map(x_head: Tensor, x_tail: Tensor, *others: Tensor) -> Tensor:  # one sample: [k] -> [k]
        x = torch.cat([x_head, x_tail]).unsqueeze(0)
        return f(x, *[o.unsqueeze(0) for o in others]).flatten()[:k]

    chunks = []
    with torch.enable_grad():
        try:
            batched = torch.func.vmap(torch.func.jacrev(block_map), randomness="different")
            for start in range(0, inputs.shape[0], batch_size):
                sl = slice(start, start + batch_size)
                chunks.append(batched(head[sl], tail[sl], *[a[sl] for a in fixed]).detach())
        except (RuntimeError, ValueError, NotImplementedError):  # not vmap-able: one sample at a time
            chunks = []
            for i in range(inputs.shape[0]):
                others = [a[i] for a in fixed]
                jac = torch.autograd.functional.jacobian(lambda xh: block_map(xh, tail[i], *others), head[i])
                chunks.append(jac.detach().unsqueeze(0))
    return torch.cat(chunks)


def jacobian_offdiagonal_samples(f: Callable[..., Tensor], inputs: Tensor, *fixed: Tensor, batch_size: int = 64) -> Tensor:
    """JODI of each input, [N] float64 (NaN where the block is all zero). See the module docstring."""
    return offdiagonal_share(square_block_jacobians(f, inputs, *fixed, batch_size=batch_size))


def jacobian_offdiagonal_index(f: Callable[..., Tensor], inputs: Tensor, *fixed: Tensor, batch_size: int = 64) -> float:
    """Mean JODI over the inputs [N, n] (NaN samples left out). See the module docstring."""
    values = jacobian_offdiagonal_samples(f, inputs, *fixed, batch_size=batch_size)
    return float(values.nanmean()) if values.isfinite().any() else math.nan


class JODI(ExtractorArgument, GeneratorMetric):
    """Jacobian off-diagonal index of a map of the generator; key ``jodi/mapping`` or ``jodi/features/<extractor>``.

    Args:
        map: ``"mapping"``: ``z -> w`` of a style-based generator (the first ``w`` when ``mapping`` returns
            ``[N, num_ws, w_dim]``); ``"features"``: ``z -> extractor(G(z, c))``, latents to the features
            of the generated images.
        extractor: for ``map="features"``: ``"shapes"`` (the shapes classifier) or an ``nn.Module`` mapping
            images in [-1, 1] to features (differentiable; images are not quantized).
        num_samples: latents at which the Jacobian is taken.
        seed: seed of the latents (and of the generator's noise).
        batch_size: samples per vmapped chunk.
    """

    def __init__(self, *, map: Literal["mapping", "features"] = "mapping", extractor: str | nn.Module = "shapes",
                 num_samples: int = 256, seed: int = 0, batch_size: int = 64) -> None:
        if map not in ("mapping", "features"):
            raise ValueError(f"JODI: map must be 'mapping' or 'features', got {map!r}")
        if isinstance(extractor, str) and extractor != "shapes":
            raise ValueError(f"JODI: extractor must be 'shapes' or an nn.Module, got {extractor!r}")
        self.map = map
        self.extractor = extractor
        self.num_samples = check_num_samples("JODI", num_samples, minimum=1)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self._module: nn.Module | None = extractor if isinstance(extractor, nn.Module) else None

    def setup(self, datamodule: Any = None) -> None:
        if self.map == "features":
            self.feature_extractor(datamodule)

    @property
    def key(self) -> str:
        if self.map == "mapping":
            return "jodi/mapping"
        return f"jodi/features/{extractor_name(self._module or self.extractor)}"

    def compute(self, generator: Generator, datamodule: Any, context: EvaluationContext | None = None) -> dict[str, float]:
        device = _device_of(generator)
        if self.map == "mapping" and not callable(getattr(generator, "mapping", None)):
            raise ConfigError(f"JODI map='mapping' needs a style-based generator with mapping(z, c); "
                              f"{type(generator).__name__} has none (use map='features')")
        dtype = next((p.dtype for p in generator.parameters() if p.is_floating_point()), torch.get_default_dtype())
        z = generator.sample_latents(self.num_samples, generator=torch.Generator(device=device).manual_seed(self.seed),
                                     device=device).to(dtype)
        labels = balanced_labels(self.num_samples, generator.c_dim, device)
        fixed = () if labels is None else (nn.functional.one_hot(labels, generator.c_dim).to(dtype),)

        if self.map == "mapping":
            def f(x: Tensor, *c: Tensor) -> Tensor:
                w = generator.mapping(x, c[0] if c else None)
                return w[:, 0] if w.dim() == 3 else w
        else:
            extractor = self.feature_extractor(datamodule).to(device).eval()

            def f(x: Tensor, *c: Tensor) -> Tensor:
                images = generator(x, c[0] if c else None)
                if isinstance(extractor, FeatureExtractor):
                    return extractor.features_and_logits(images)[0]
                return extractor(images)

        devices = [device] if device.type == "cuda" else []
        with _eval_mode(generator), torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            value = jacobian_offdiagonal_index(f, z, *fixed, batch_size=self.batch_size)
        return {self.key: value}
