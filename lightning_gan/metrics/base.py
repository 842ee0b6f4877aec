"""The metric contract and the machinery every metric shares: sampling, real batches, feature caches.

A ``GeneratorMetric`` scores a generator (the EMA one during training) against a datamodule's data:
``compute(generator, datamodule, context) -> {name: value}``. Metrics that compare features
(FID, KID, precision/recall, the shapes metrics) ask the ``EvaluationContext`` for them: features of
real data are computed once per context and kept (the data does not change during a run), features of
generated images once per evaluation round (several metrics on one extractor share one pass).

Protocol shared by every image metric here:

* generated images come from latents drawn from a ``torch.Generator`` seeded with the metric's seed,
  all at once (so the samples do not depend on the batch size); conditional generators get classes in
  equal shares (``label i = i % c_dim``);
* real images are a seeded random subset (without replacement) of the datamodule's training set;
* both are quantized to 8 bits (``to_uint8``) before feature extraction, as if saved as PNG files, so
  real and generated images go through exactly the same path.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lightning_gan.interfaces import Configurable, Generator
from lightning_gan.metrics.features import extract_features
from lightning_gan.utils.images import to_uint8

__all__ = [
    "EvaluationContext",
    "FeatureSet",
    "GeneratorMetric",
    "balanced_labels",
    "generate_images",
    "iter_generated",
    "iter_real",
    "progress_bar",
    "quantize",
]


class GeneratorMetric(Configurable):
    """Scores a generator; ``compute`` returns ``{name: value}`` with names like ``fid`` or ``coverage/modes``.

    Implementations draw their samples from their own seeded ``torch.Generator`` so that evaluating
    never disturbs the training run's random state (resuming stays exact). ``setup`` runs before the
    first evaluation (at the start of fit/validate/test, and in ``lightning-gan evaluate``): load
    weights there, so that a missing file stops the run before training, not in the middle of it.
    """

    def setup(self, datamodule: Any = None) -> None:
        """Prepare (load weights, check the data); raise a clear error if the metric cannot run."""

    def compute(self, generator: Generator, datamodule: Any, context: EvaluationContext | None = None) -> dict[str, float]:
        raise NotImplementedError

    def notes(self) -> dict[str, str]:
        """Text that goes with the numbers, ``{name: text}`` (e.g. ``{"shapes/judge": "pinned-3f2a..."}``):
        for records that take text (``metrics.json``, the run summary, ``evaluate``'s JSON), never for
        loggers, which take numbers only. Valid after ``setup``; empty by default."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config()["init_args"].items())
        return f"{type(self).__name__}({args})"


@dataclass(frozen=True)
class FeatureSet:
    """Features of a set of images (on the CPU): ``features`` [N, D], ``logits`` [N, K] when the
    extractor is a classifier, and the images' class ``labels`` [N] (real data: the dataset's labels;
    generated: the conditioning labels, or None for an unconditional generator)."""

    features: Tensor
    logits: Tensor | None = None
    labels: Tensor | None = None

    def __len__(self) -> int:
        return self.features.shape[0]


def quantize(images: Tensor) -> Tensor:
    """Float images in [-1, 1] rounded to 8 bits and back, exactly as saving and reloading a PNG would."""
    return to_uint8(images).float().div_(127.5).sub_(1.0)


def balanced_labels(n: int, c_dim: int, device: torch.device | str | None = None) -> Tensor | None:
    """Class labels in equal shares (``i % c_dim``) for a conditional generator, None for c_dim = 0."""
    return torch.arange(n, device=device) % c_dim if c_dim else None


def _device_of(module: nn.Module) -> torch.device:
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def iter_generated(
    generator: Generator, num_samples: int, *, seed: int = 0, batch_size: int = 256,
    labels: Tensor | None = None,
) -> Iterator[tuple[Tensor, Tensor | None]]:
    """Batches ``(images, labels)`` of ``num_samples`` generator samples, in eval mode and without grad.

    The latents are drawn all at once from a ``torch.Generator`` seeded with ``seed``, and the global RNG
    (used e.g. by noise inputs inside the generator) is seeded with ``seed`` too and restored afterwards:
    the same seed gives the same images whatever the batch size, and the caller's random state is untouched.
    ``labels`` default to equal shares of every class for a conditional generator.
    """
    device = _device_of(generator)
    z = generator.sample_latents(num_samples, generator=torch.Generator(device=device).manual_seed(seed), device=device)
    if labels is None:
        labels = balanced_labels(num_samples, generator.c_dim, device)
    elif labels.shape[0] != num_samples:
        raise ValueError(f"labels has {labels.shape[0]} entries for {num_samples} samples")
    if labels is not None and not generator.c_dim:
        raise ValueError("labels were given but the generator is unconditional (c_dim = 0)")
    devices = [device] if device.type == "cuda" else []
    with _eval_mode(generator), torch.no_grad(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for start in range(0, num_samples, batch_size):
            zb = z[start:start + batch_size]
            lb = None if labels is None else labels[start:start + batch_size].to(device)
            c = None if lb is None else nn.functional.one_hot(lb.long(), generator.c_dim).float()
            out = generator(zb, c)
            if not torch.isfinite(out).all():
                raise FloatingPointError(
                    f"The generator produced non-finite values (samples {start}..{start + zb.shape[0] - 1}, seed {seed}); "
                    f"metrics would be meaningless"
                )
            yield out, lb


def generate_images(generator: Generator, num_samples: int, *, seed: int = 0, batch_size: int = 256,
                    labels: Tensor | None = None) -> Tensor:
    """All of ``iter_generated``'s samples in one CPU tensor [N, ...]."""
    return torch.cat([x.cpu() for x, _ in iter_generated(generator, num_samples, seed=seed, batch_size=batch_size, labels=labels)])


def _real_dataset(datamodule: Any) -> Any:
    dataset = getattr(datamodule, "train_dataset", None)
    if dataset is None and hasattr(datamodule, "setup"):
        datamodule.setup("fit")
        dataset = getattr(datamodule, "train_dataset", None)
    if dataset is None:
        raise TypeError(f"{type(datamodule).__name__} has no `train_dataset`; metrics that compare with real data need one")
    return dataset


def iter_real(datamodule: Any, num_samples: int, *, seed: int = 0, batch_size: int = 256) -> Iterator[tuple[Tensor, Tensor | None]]:
    """Batches ``(images, labels)`` of a seeded random subset of the datamodule's training set.

    With fewer than ``num_samples`` images in the set, all of them are used (with a warning).
    """
    dataset = _real_dataset(datamodule)
    total = len(dataset)
    if total < num_samples:
        warnings.warn(f"{type(datamodule).__name__} has {total} images, fewer than the {num_samples} asked for; using all of them",
                      stacklevel=2)
        num_samples = total
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:num_samples].sort().values.tolist()
    fetch: Callable[[list[int]], Any] = getattr(dataset, "__getitems__", None) or (
        lambda idx: torch.utils.data.default_collate([dataset[i] for i in idx]))
    for start in range(0, num_samples, batch_size):
        batch = fetch(order[start:start + batch_size])
        if isinstance(batch, (tuple, list)):
            yield batch[0], (batch[1] if len(batch) > 1 else None)
        else:
            yield batch, None


class EvaluationContext:
    """Feature caches and sampling settings for one or more evaluations.

    Real-data features are kept for the context's lifetime (keyed by extractor, datamodule, count and
    seed); generated ones until ``new_round()``, which GANModule calls before each evaluation because the
    generator has changed. ``progress=True`` shows a rich progress bar while extracting.

    Args:
        batch_size: images per forward pass of generator and extractor.
        progress: show progress bars (the ``evaluate`` command does; training does not).
    """

    def __init__(self, *, batch_size: int = 256, progress: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.progress = bool(progress)
        self._real: dict[tuple[Any, ...], FeatureSet] = {}
        self._fake: dict[tuple[Any, ...], FeatureSet] = {}
        # objects whose id() keys the caches, kept alive so that their ids cannot be reused
        self._alive: list[Any] = []
        self._fake_alive: list[Any] = []

    def new_round(self) -> None:
        """Forget generated features (the generator changed); real ones stay."""
        self._fake.clear()
        self._fake_alive.clear()

    def clear(self) -> None:
        """Forget every cached feature (e.g. the data changed)."""
        self.new_round()
        self._real.clear()
        self._alive.clear()

    def real_features(self, extractor: nn.Module, datamodule: Any, num_samples: int, *, seed: int = 0) -> FeatureSet:
        key = (id(extractor), id(datamodule), int(num_samples), int(seed))
        if key not in self._real:
            batches = iter_real(datamodule, num_samples, seed=seed, batch_size=self.batch_size)
            total = min(num_samples, len(_real_dataset(datamodule)))
            self._real[key] = self._extract(extractor, batches, total, f"features of {total} real images")
            self._alive.extend((extractor, datamodule))
        return self._real[key]

    def fake_features(self, extractor: nn.Module, generator: Generator, num_samples: int, *, seed: int = 0) -> FeatureSet:
        key = (id(extractor), id(generator), int(num_samples), int(seed))
        if key not in self._fake:
            batches = iter_generated(generator, num_samples, seed=seed, batch_size=self.batch_size)
            self._fake[key] = self._extract(extractor, batches, num_samples, f"features of {num_samples} samples")
            self._fake_alive.extend((extractor, generator))
        return self._fake[key]

    def _extract(self, extractor: nn.Module, batches: Iterator[tuple[Tensor, Tensor | None]], total: int,
                 description: str) -> FeatureSet:
        features, logits, labels = [], [], []
        with self._progress(description, total) as advance:
            for images, lb in batches:
                f, lg = extract_features(extractor, quantize(images))
                features.append(f.float().cpu())
                if lg is not None:
                    logits.append(lg.float().cpu())
                if lb is not None:
                    labels.append(lb.cpu())
                advance(images.shape[0])
        return FeatureSet(
            features=torch.cat(features),
            logits=torch.cat(logits) if logits and len(logits) == len(features) else None,
            labels=torch.cat(labels) if labels and len(labels) == len(features) else None,
        )

    def _progress(self, description: str, total: int) -> Any:
        return progress_bar(self.progress and total > self.batch_size, total, description)


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int, description: str) -> Iterator[Callable[[int], None]]:
    """A transient rich progress bar (``advance(n)`` is what the block receives); a no-op when not enabled."""
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


def check_num_samples(name: str, num_samples: int, minimum: int = 2) -> int:
    """``num_samples`` as an int, or a clear error when it is too small for the metric ``name``."""
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < minimum:
        raise ValueError(f"{name}: num_samples must be an integer >= {minimum}, got {num_samples!r}")
    return num_samples


def finite_or_nan(value: float) -> float:
    return float(value) if math.isfinite(float(value)) else math.nan
