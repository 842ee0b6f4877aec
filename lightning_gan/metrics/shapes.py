"""Shapes-domain metrics: class coverage, reverse KL, conditional accuracy and a Frechet distance, no download.

The shapes data knows every image's class, so the project trains its own judge: a small CNN
(``ShapesClassifier``) fitted to freshly rendered shapes of the datamodule's settings (resolution,
channels, classes, size range). Every number below is measured in this network's features, and a judge
trained on another processor, thread count or a GPU is a slightly different network; so, as FID pins one
Inception network, the package ships *pinned* judges for the settings the recipes use (32 and 64 px, 1
and 3 channels, the six classes, the default size range and training recipe) in
``lightning_gan/metrics/judges/`` (``<name>.safetensors``, and ``<name>.json`` with its SHA-256, held-out
accuracy and rejection, settings and how it was trained: ``benchmarks/train_shapes_judge.py``). The
metric uses the pinned judge whenever the settings match, and checks its hash. For other settings it
trains one, once, in seconds to tens of seconds on the CPU, and caches it as
``<cache>/shapes_classifier/<key>.safetensors`` (``<cache>``: the metric's ``cache_dir``, else the user
cache of ``lightning_gan.metrics.features.cache_dir()``; ``<key>`` hashes the settings and the training
recipe); the cache is never consulted for settings that have a pinned judge. Either way the judge is
named ``pinned-<hash>`` or ``local-<hash>`` (``judge_id``: the first 12 hex digits of its file's
SHA-256), said once in the log, given as text by ``ShapesMetrics.notes()`` and as numbers in the results
(``shapes/judge_id``, ``shapes/judge_pinned``). Its held-out accuracy on clean rendered shapes is
reported with every evaluation (``shapes/classifier_accuracy``) so that a reader can tell how far to trust
the numbers below; figures are comparable only between runs scored by the same judge.

Protocol (the Stacked-MNIST protocol of Metz et al. 2017 / VEEGAN / PacGAN, with the shapes classifier
in place of the MNIST one, and PacGAN's quality filter of the 2-D mixtures in place of nothing):

1. Draw ``num_samples`` generator samples (seeded latents; a conditional generator gets every class in
   equal shares, ``label i = i % c_dim``) and ``num_real`` real images (a seeded random subset of the
   training set); quantize both to 8 bits (see ``lightning_gan.metrics.base``).
2. Classify each: ``p(y | x) = softmax(logits)`` over the ``K`` classes of the datamodule.
3. A generated sample is *recognizable* when its most probable class is a shape (not the classifier's
   extra class "not a shape", see below) with probability at least ``confidence`` (default 0.5: more
   than all other outcomes together). It then counts towards that class. ``n_k`` recognizable samples
   fall in class ``k``, ``n = sum_k n_k`` of ``N`` samples in all.

   The extra class is what makes "recognizable" mean something: a plain K-way classifier trained to
   ignore noise calls pure noise "a circle" with confidence (an untrained DCGAN's output was 100%
   recognizable that way, and no feature-space test fixed it: uniform noise lay inside the real images'
   k-NN feature manifold 33-60% of the time and passed a class-conditional Mahalanobis test 100% of the
   time). So the classifier is trained with a (K+1)-th class of negatives: uniform noise, smooth noise
   blobs, blends of two different shapes, and shapeless backgrounds.

From this histogram and the classifier's features:

* ``shapes/recognizable`` = ``n / N``.
* ``shapes/coverage``: the number of covered classes, 0 to ``K``. Class ``k`` is covered when
  ``n_k > 0`` and ``n_k / n >= coverage_threshold / K``, i.e. it receives at least ``coverage_threshold``
  of its fair share ``1/K`` of the recognizable samples (default 0.1). ``coverage_threshold = 0`` is
  Stacked MNIST's rule "at least one sample".
* ``shapes/reverse_kl`` = ``KL(p || q) = sum_{k: p_k > 0} p_k log(p_k / q_k)`` in nats, with
  ``p_k = n_k / n`` and ``q`` the class frequencies of the real images' labels (uniform up to sampling
  noise on shapes data; uniform when the data has no labels). 0 when the generator matches the real
  class balance, ``log(1 / q_j)`` (``log K`` for uniform ``q``) when every recognizable sample is of
  class ``j``; ``inf`` when no sample is recognizable (or a sample lands in a class ``q`` lacks).
* ``shapes/accuracy`` (conditional generators with ``c_dim = K`` only): the share of all ``N`` generated
  samples whose predicted class ``argmax_k p(k | x)`` is their conditioning label (no confidence filter;
  chance level is ``1/K``). With ``per_class_accuracy``, also ``shapes/accuracy/<class>``: the same share
  among the samples conditioned on that class (``N / K`` each), e.g. a minority class's accuracy.
* ``shapes/fd``: the Frechet distance ``|mu_r - mu_g|^2 + tr(S_r + S_g - 2 (S_r S_g)^(1/2))`` between
  Gaussians fitted to the classifier's 128-d features of the real and the generated images (the same
  function as FID, ``lightning_gan.metrics.distances.frechet_distance``). Comparable only between runs with
  the same classifier (same data settings and ``classifier_accuracy``), never with Inception FIDs.
* ``shapes/classifier_accuracy``: the classifier's held-out accuracy (see ``train_shapes_classifier``);
  ``shapes/classifier_rejection``: the held-out share of negatives it calls "not a shape".

The classifier: images ``[N, C, R, R]`` in [-1, 1]; above 32 px they are first averaged down to 32 x 32
(``area`` resizing), so the network never costs more than at 32 px (shapes are recognizable at 32 px,
fine GAN artifacts above it do not matter to it). Then four 3x3 convolutions with BatchNorm and ReLU
(16, 32, 64, 128 channels; the first one with stride 2 at 32 px and stride 1 at 8 and 16 px, the others
with stride 2), a global average pool, a linear layer to the 128-d *features* (taken before their ReLU)
and a linear layer from ``ReLU(features)`` to the ``K`` class logits.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import struct
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from lightning_gan.data.base import check_resolution
from lightning_gan.data.shapes import (
    _check_classes,
    _check_size_range,
    render_shapes,
    shape_factors,
)
from lightning_gan.errors import ConfigError
from lightning_gan.interfaces import Generator
from lightning_gan.metrics.base import EvaluationContext, GeneratorMetric, check_num_samples, progress_bar, quantize
from lightning_gan.metrics.distances import frechet_distance
from lightning_gan.metrics.features import FeatureExtractor
from lightning_gan.metrics.features import cache_dir as user_cache_dir

__all__ = [
    "CLASSIFIER_VERSION",
    "DEFAULT_CONFIDENCE",
    "DEFAULT_COVERAGE_THRESHOLD",
    "PINNED_DIR",
    "ShapesClassifier",
    "ShapesMetrics",
    "class_coverage",
    "class_histogram",
    "classifier_path",
    "clear_loaded_classifiers",
    "held_out_accuracy",
    "held_out_rejection",
    "judge_bytes",
    "judge_id",
    "judge_number",
    "pinned_judges",
    "pinned_record",
    "reverse_kl",
    "shapes_classifier_for",
    "train_shapes_classifier",
]

log = logging.getLogger(__name__)

#: Bump when the network or its training changes: cached files of other versions are not reused.
CLASSIFIER_VERSION = 2  # 2: a (K+1)-th class of negatives ("not a shape")
DEFAULT_CONFIDENCE = 0.5
DEFAULT_COVERAGE_THRESHOLD = 0.1
DEFAULT_STEPS = 1300
DEFAULT_BATCH_SIZE = 64
WORKING_RESOLUTION = 32
FEATURE_DIM = 128
HELD_OUT = 2000
NEGATIVE_SHARE = 0.2  # of every training batch: negatives labelled "not a shape"
# The classifier's images: seed ``_DATA_SEED_OFFSET + seed`` (never one a run trains on), indices from 0
# for training and from ``_HELD_OUT_START`` for the held-out set (disjoint).
_DATA_SEED_OFFSET = 0x5EED_C1A5_0000
_HELD_OUT_START = 1 << 40
# Training images above this size are rendered at it and resized (rendering at 256 px would dominate).
_MAX_TRAIN_RENDER = 64
_SUFFIX = ".safetensors"
_FORMAT = "lightning_gan.shapes_classifier"


# -- the classifier ---------------------------------------------------------------------------------
class ShapesClassifier(FeatureExtractor):
    """Small CNN classifying shape images; ``forward`` gives 128-d features, ``features_and_logits`` both.

    See the module docstring for the layers. The logits are ``[N, K + 1]``: the ``K`` shape classes
    (``classes``, in the datamodule's label order), then "not a shape" (``reject_index = K``).
    ``accuracy`` is the held-out accuracy measured when it was trained, ``rejection`` the held-out share
    of negatives it calls "not a shape" (None for an untrained network).

    Args:
        resolution: side ``R`` of the images it takes, a power of two from 8 to 256.
        channels: image channels, 1 or 3.
        classes: shape names, in the order of the datamodule's labels.
        width: channels of the first convolution (doubled by each following one).
        feature_dim: size of the feature layer.
    """

    name = "shapes_classifier"

    def __init__(self, *, resolution: int, channels: int = 3, classes: Sequence[str] | None = None,
                 width: int = 16, feature_dim: int = FEATURE_DIM) -> None:
        super().__init__()
        check_resolution(resolution)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.resolution = int(resolution)
        self.channels = int(channels)
        self.classes = _check_classes(classes)
        self.num_classes = len(self.classes)
        self.working_resolution = min(self.resolution, WORKING_RESOLUTION)
        self.reject_index = self.num_classes  # the extra logit: "not a shape"
        self.accuracy: float | None = None
        self.rejection: float | None = None  # held-out share of negatives classified "not a shape"
        self.judge: str | None = None  # pinned-<hash> / local-<hash> once trained or loaded (judge_id)
        stem_stride = 2 if self.working_resolution >= WORKING_RESOLUTION else 1
        widths = [self.channels, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=stem_stride if i == 0 else 2, padding=1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.to_features = nn.Linear(widths[-1], feature_dim)
        self.to_logits = nn.Linear(feature_dim, self.num_classes + 1)

    def extra_repr(self) -> str:
        return (f"resolution={self.resolution}, channels={self.channels}, classes={list(self.classes)}, "
                f"working_resolution={self.working_resolution}, accuracy={self.accuracy}, rejection={self.rejection}")

    def prepare(self, images: Tensor) -> Tensor:
        """Checked images at the working resolution: ``[N, C, R, R]`` -> ``[N, C, min(R, 32), min(R, 32)]``."""
        if images.dim() != 4 or tuple(images.shape[1:]) != (self.channels, self.resolution, self.resolution):
            raise ValueError(f"{self.name} takes images [N, {self.channels}, {self.resolution}, {self.resolution}], "
                             f"got {tuple(images.shape)}")
        if self.resolution > self.working_resolution:
            images = F.interpolate(images, size=(self.working_resolution,) * 2, mode="area")
        return images

    def _head(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.to_features(self.body(x))  # [N, 128]
        return features, self.to_logits(F.relu(features))  # [N, K]

    def features_and_logits(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self._head(self.prepare(images))

    def forward(self, images: Tensor) -> Tensor:
        return self.features_and_logits(images)[0]


def _augment(x: Tensor, rng: torch.Generator) -> Tensor:
    """Random degradations like a GAN's (blur, contrast and brightness shifts, noise), then clamped to [-1, 1].

    Per image: with probability 1/3 a [1, 2, 1]/4 binomial blur along both axes; ``x * a + b`` with
    ``a ~ U(0.6, 1.2)``, ``b ~ U(-0.2, 0.2)``; additive Gaussian noise of standard deviation ``U(0, 0.25)``.
    """
    n = x.shape[0]
    blur = (torch.rand(n, generator=rng) < 1 / 3).nonzero().flatten()
    if blur.numel():
        p = F.pad(x[blur], (1, 1, 1, 1), mode="replicate")  # [n_blur, C, R + 2, R + 2]
        p = 0.25 * p[..., :-2, :] + 0.5 * p[..., 1:-1, :] + 0.25 * p[..., 2:, :]
        x = x.index_copy(0, blur, 0.25 * p[..., :-2] + 0.5 * p[..., 1:-1] + 0.25 * p[..., 2:])
    contrast = torch.empty(n, 1, 1, 1).uniform_(0.6, 1.2, generator=rng)
    brightness = torch.empty(n, 1, 1, 1).uniform_(-0.2, 0.2, generator=rng)
    noise_std = 0.25 * torch.rand(n, 1, 1, 1, generator=rng)
    x = x * contrast + brightness + noise_std * torch.randn(x.shape, generator=rng)
    return x.clamp_(-1.0, 1.0)


def _negatives(images: Tensor, labels: Tensor, background: Tensor, rng: torch.Generator) -> Tensor:
    """Images that are not one shape, made from a batch of shapes ``images`` [n, C, R, R] (in [-1, 1]).

    Four kinds in turn: uniform noise (amplitude ``U(0.2, 1)`` around a random level); smooth noise
    (uniform noise at 2 to 8 pixels, bilinearly upsampled: blobs); a 50/50 blend of two shapes of
    different classes (the next image of the batch whose class differs; smooth noise when none does);
    the shapeless background of each image.
    """
    n, c, r, _ = images.shape
    out = torch.empty_like(images)
    kind = torch.arange(n) % 4
    for k in range(4):
        idx = (kind == k).nonzero().flatten()
        m = idx.numel()
        if m == 0:
            continue
        if k == 0:
            amplitude = torch.empty(m, 1, 1, 1).uniform_(0.2, 1.0, generator=rng)
            level = torch.empty(m, 1, 1, 1).uniform_(-0.5, 0.5, generator=rng)
            out[idx] = level + amplitude * (2 * torch.rand(m, c, r, r, generator=rng) - 1)
        elif k == 1 or k == 2:
            side = int(2 ** torch.randint(1, 4, (1,), generator=rng))
            blobs = 2 * torch.rand(m, c, side, side, generator=rng) - 1
            out[idx] = F.interpolate(blobs, size=(r, r), mode="bilinear", align_corners=False)
            if k == 2:
                for j, i in enumerate(idx.tolist()):
                    other = next((o for o in range(1, n) if labels[(i + o) % n] != labels[i]), None)
                    if other is not None:
                        out[i] = 0.5 * (images[i] + images[(i + other) % n])
        else:
            out[idx] = (background[idx] * 2 - 1)[:, :, None, None].expand(m, c, r, r)
    return out.clamp_(-1.0, 1.0)


@contextlib.contextmanager
def _training_mode() -> Iterator[None]:
    """Gradients on, even when called inside ``torch.inference_mode`` or ``no_grad`` (e.g. from validation)."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def held_out_accuracy(classifier: ShapesClassifier, *, size_range: tuple[float, float], seed: int = 0,
                      num_images: int = HELD_OUT, batch_size: int = 500) -> float:
    """Share of ``num_images`` held-out shapes (rendered at the classifier's resolution, quantized to 8 bits
    like every evaluated image, no augmentation) whose predicted class is their label."""
    data_seed = _DATA_SEED_OFFSET + int(seed)
    correct = 0
    was_training = classifier.training
    classifier.eval()
    try:
        with torch.no_grad():
            for start in range(0, num_images, batch_size):
                idx = range(_HELD_OUT_START + start, _HELD_OUT_START + min(start + batch_size, num_images))
                f = shape_factors(idx, seed=data_seed, classes=classifier.classes, channels=classifier.channels,
                                  size_range=size_range)
                images = quantize(render_shapes(f, resolution=classifier.resolution))
                _, logits = classifier.features_and_logits(images)
                correct += int((logits.argmax(1) == f.label).sum())
    finally:
        classifier.train(was_training)
    return correct / num_images


def held_out_rejection(classifier: ShapesClassifier, *, size_range: tuple[float, float], seed: int = 0,
                       num_images: int = HELD_OUT // 2) -> float:
    """Share of ``num_images`` held-out negatives (``_negatives`` of held-out shapes, quantized) that the
    classifier calls "not a shape"."""
    data_seed = _DATA_SEED_OFFSET + int(seed)
    idx = range(2 * _HELD_OUT_START, 2 * _HELD_OUT_START + num_images)
    f = shape_factors(idx, seed=data_seed, classes=classifier.classes, channels=classifier.channels, size_range=size_range)
    images = render_shapes(f, resolution=classifier.resolution)
    negatives = quantize(_negatives(images, f.label, f.background, torch.Generator().manual_seed(int(seed) + 1)))
    was_training = classifier.training
    classifier.eval()
    try:
        with torch.no_grad():
            logits = torch.cat([classifier.features_and_logits(b)[1] for b in negatives.split(500)])
    finally:
        classifier.train(was_training)
    return float((logits.argmax(1) == classifier.reject_index).double().mean())


def train_shapes_classifier(
    *,
    resolution: int,
    channels: int = 3,
    classes: Sequence[str] | None = None,
    size_range: tuple[float, float] = (0.35, 0.85),
    seed: int = 0,
    steps: int = DEFAULT_STEPS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
) -> tuple[ShapesClassifier, float]:
    """A freshly trained ``ShapesClassifier`` and its held-out accuracy (also stored as ``.accuracy``).

    Training: ``steps`` AdamW steps (weight decay 1e-4, one-cycle learning rate peaking at 5e-3) on batches
    of ``batch_size`` new images each, cross-entropy loss over the ``K`` shapes and "not a shape"; the first
    ``NEGATIVE_SHARE`` (20%) of every batch are negatives (``_negatives``). The images are the shapes of these settings with
    data seed ``0x5EEDC1A50000 + seed`` (so never images a run trains its GAN on), indices ``0, 1, ...``;
    above 64 px they are rendered at 64 px (rendering at full size would cost more than the training),
    then resized to the working resolution and degraded (``_augment``: blur, contrast, brightness, noise)
    so that the classifier judges GAN samples by their shape, not by their artifacts.

    Held-out accuracy: see ``held_out_accuracy`` (2000 other indices of the same seed, rendered at
    ``resolution``). Measured at 32 px with the defaults: 0.991-0.993 (1 or 2 threads), with 94% of held-out
    negatives rejected (``held_out_rejection``); the pinned judges' figures are in their ``.json`` files
    (0.9930 / 0.9430 at 32 px, 3 channels, trained on one thread). Measured before the negatives class was added (version 1,
    1000 steps): about 0.99 from 32 to 256 px, 0.98 at 16 px, 0.84 at 8 px (where the smallest shapes span
    3 pixels and cannot all be told apart).

    Deterministic given the arguments (and the number of threads); the caller's global random state is
    left untouched; works inside ``torch.inference_mode``. Runs on the CPU: about 30 s on one core at
    32 px (``benchmarks/shapes_metrics.py``), more at 256 px (rendering the held-out set at full size).
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    size_range = _check_size_range(size_range)
    data_seed = _DATA_SEED_OFFSET + int(seed)
    render_at = min(resolution, _MAX_TRAIN_RENDER)
    with _training_mode(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rng = torch.Generator().manual_seed(seed)
        model = ShapesClassifier(resolution=resolution, channels=channels, classes=classes)
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=5e-3, total_steps=steps, pct_start=0.15)
        model.train()
        with progress_bar(progress, steps, f"training the shapes classifier ({resolution} px)") as advance:
            for step in range(steps):
                f = shape_factors(range(step * batch_size, (step + 1) * batch_size), seed=data_seed,
                                  classes=model.classes, channels=channels, size_range=size_range)
                images = render_shapes(f, resolution=render_at)
                if render_at > model.working_resolution:
                    images = F.interpolate(images, size=(model.working_resolution,) * 2, mode="area")
                labels = f.label.clone()
                negative = torch.arange(batch_size) < round(NEGATIVE_SHARE * batch_size)  # the first ones
                if negative.any():
                    images[negative] = _negatives(images[negative], labels[negative], f.background[negative], rng)
                    labels[negative] = model.reject_index
                _, logits = model._head(_augment(images, rng))
                loss = F.cross_entropy(logits, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                advance(1)
    model.eval()
    model.accuracy = held_out_accuracy(model, size_range=size_range, seed=seed)
    model.rejection = held_out_rejection(model, size_range=size_range, seed=seed)
    return model, model.accuracy


# -- caching ----------------------------------------------------------------------------------------
_LOADED: dict[str, ShapesClassifier] = {}


def clear_loaded_classifiers() -> None:
    """Forget the classifiers kept in this process (the next request reads the cached file again)."""
    _LOADED.clear()


_NEEDED = ("resolution", "channels", "classes", "size_range")


def _data_settings(source: Any) -> dict[str, Any]:
    """``resolution``, ``channels``, ``classes``, ``size_range`` of a shapes datamodule (or a mapping)."""
    if isinstance(source, Mapping):
        values = {k: source[k] for k in _NEEDED if k in source}
    else:
        values = {k: getattr(source, k) for k in _NEEDED if getattr(source, k, None) is not None}
    missing = [k for k in _NEEDED if k not in values]
    what = "mapping" if isinstance(source, Mapping) else type(source).__name__
    if missing:
        raise TypeError(f"The shapes metrics and the shapes classifier need shapes data (a datamodule like "
                        f"ShapesDataModule with {', '.join(_NEEDED)}); {what} has no {', '.join(missing)}")
    try:
        check_resolution(values["resolution"])
        classes = _check_classes(values["classes"])
        size_range = _check_size_range(values["size_range"])
    except ValueError as exc:
        raise TypeError(f"The shapes classifier needs shapes data; {what} does not describe any: {exc}") from exc
    if values["channels"] not in (1, 3):
        raise TypeError(f"The shapes classifier needs 1 or 3 channels; {what} has {values['channels']!r}")
    return {"resolution": int(values["resolution"]), "channels": int(values["channels"]),
            "classes": list(classes), "size_range": list(size_range)}


def _settings(source: Any, *, seed: int, steps: int, batch_size: int) -> dict[str, Any]:
    return {"version": CLASSIFIER_VERSION, **_data_settings(source), "seed": int(seed), "steps": int(steps),
            "batch_size": int(batch_size)}


def _key(settings: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return f"{settings['resolution']}px-{settings['channels']}ch-{len(settings['classes'])}cls-{digest}"


def classifier_path(source: Any, cache_dir: str | os.PathLike[str] | None = None, *, seed: int = 0,
                    steps: int = DEFAULT_STEPS, batch_size: int = DEFAULT_BATCH_SIZE) -> Path:
    """Where ``shapes_classifier_for`` keeps the classifier of these data and training settings:
    ``<cache_dir or user cache>/shapes_classifier/<resolution>px-<channels>ch-<K>cls-<hash>.pt``."""
    key = _key(_settings(source, seed=seed, steps=steps, batch_size=batch_size))
    base = Path(cache_dir).expanduser() if cache_dir is not None else user_cache_dir()
    return base / "shapes_classifier" / f"{key}{_SUFFIX}"


def judge_bytes(model: ShapesClassifier, settings: Mapping[str, Any]) -> bytes:
    """The judge file of ``model``: safetensors of its state dict with one metadata entry, the JSON of
    ``{"format", "settings", "accuracy", "rejection"}`` (sorted keys). The same bytes for the same weights,
    so the file's SHA-256 names the network (``judge_id``)."""
    info = {"format": _FORMAT, "settings": dict(settings), "accuracy": model.accuracy, "rejection": model.rejection}
    state = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    return safetensors.torch.save(state, metadata={_FORMAT: json.dumps(info, sort_keys=True)})


def judge_id(data: bytes, *, pinned: bool) -> str:
    """``pinned-<hash>`` or ``local-<hash>``: the first 12 hex digits of the judge file's SHA-256."""
    return f"{'pinned' if pinned else 'local'}-{hashlib.sha256(data).hexdigest()[:12]}"


def judge_number(judge: str) -> float:
    """The numeric stand-in of a judge id where only numbers go (loggers, CSV): its hash's first 6 hex digits
    as an integer (exact in float32); ``f"{int(n):06x}"`` gives them back."""
    return float(int(judge.rsplit("-", 1)[1][:6], 16))


def _from_bytes(data: bytes, settings: Mapping[str, Any]) -> ShapesClassifier:
    """The classifier in a judge file's bytes; ValueError when they are not one of ``settings``."""
    (header_size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_size])
    info = json.loads((header.get("__metadata__") or {}).get(_FORMAT, "null"))
    if not isinstance(info, dict) or info.get("format") != _FORMAT:
        raise ValueError("not a shapes classifier file")
    if info.get("settings") != dict(settings):
        raise ValueError(f"it was trained with other settings ({info.get('settings')!r})")
    model = ShapesClassifier(resolution=settings["resolution"], channels=settings["channels"],
                             classes=settings["classes"])
    model.load_state_dict(safetensors.torch.load(data))
    model.accuracy = float(info["accuracy"])
    model.rejection = None if info.get("rejection") is None else float(info["rejection"])
    return model


def _write_atomically(path: Path, data: bytes) -> None:
    """Write atomically (a temporary file in the same folder, then ``os.replace``): readers, other ranks
    or processes never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# -- the pinned judges --------------------------------------------------------------------------------
#: The judges shipped with the package: ``<name>.safetensors`` with ``<name>.json`` beside it (its hash,
#: held-out accuracy and rejection, settings, and how it was trained: ``benchmarks/train_shapes_judge.py``).
PINNED_DIR = Path(__file__).with_name("judges")


def pinned_judges() -> list[dict[str, Any]]:
    """The records (``<name>.json``) of every pinned judge, sorted by file name; ``path`` is added."""
    records = []
    for path in sorted(PINNED_DIR.glob("*.json")):
        record = json.loads(path.read_text())
        record["path"] = str(path.with_name(record["file"]))
        records.append(record)
    return records


def pinned_record(source: Any, *, seed: int = 0, steps: int = DEFAULT_STEPS,
                  batch_size: int = DEFAULT_BATCH_SIZE) -> dict[str, Any] | None:
    """The pinned judge's record for these data and training settings, or None when none is shipped."""
    return _pinned_for(_settings(source, seed=seed, steps=steps, batch_size=batch_size))


def _pinned_for(settings: Mapping[str, Any]) -> dict[str, Any] | None:
    return next((r for r in pinned_judges() if r["settings"] == dict(settings)), None)


def _load_pinned(record: Mapping[str, Any], settings: Mapping[str, Any]) -> ShapesClassifier:
    path = Path(record["path"])
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"The pinned shapes judge {path.name} cannot be read ({exc}); reinstall lightning-gan "
                          f"(pip install --force-reinstall lightning-gan)") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != record["sha256"]:
        raise ConfigError(f"The pinned shapes judge {path} has SHA-256 {digest[:12]}..., not the recorded "
                          f"{record['sha256'][:12]}...; restore it (git checkout / reinstall lightning-gan) or rerun "
                          f"benchmarks/train_shapes_judge.py")
    model = _from_bytes(data, settings)
    model.judge = judge_id(data, pinned=True)
    return model


_ANNOUNCED: set[str] = set()


def _announce(model: ShapesClassifier, settings: Mapping[str, Any], where: Path | None) -> None:
    """Say once per process which judge scores the shapes metrics (and whether it is the shipped one)."""
    if model.judge is None or model.judge in _ANNOUNCED:
        return
    _ANNOUNCED.add(model.judge)
    what = f"{settings['resolution']} px, {settings['channels']} channels, {len(settings['classes'])} classes"
    if model.judge.startswith("pinned-"):
        rank_zero_info(f"shapes metrics: judge {model.judge} (the pinned classifier shipped for {what}; held-out "
                       f"accuracy {model.accuracy:.4f}): figures comparable with the documented ones")
    else:
        rank_zero_info(f"shapes metrics: judge {model.judge}, trained on this machine for {what} (no pinned judge "
                       f"for these settings; cached at {where}): figures comparable only with this judge's")


def shapes_classifier_for(
    source: Any,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    steps: int = DEFAULT_STEPS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
) -> ShapesClassifier:
    """The judge (trained shapes classifier) of a shapes datamodule (or a mapping with the same settings), in eval mode.

    Looked up in this process first (every metric of a run shares one instance, hence one feature pass);
    then the pinned judge shipped with the package when one has exactly these settings (``pinned_record``;
    its file must have its recorded SHA-256, else ConfigError: nothing trained locally, on a GPU or
    elsewhere, ever stands in for it, and the cache is not consulted); otherwise the cached judge at
    ``classifier_path(...)``, trained with ``train_shapes_classifier`` and saved there when absent. A
    cached file that cannot be read, or was trained with other settings, is retrained and replaced (with
    a warning); a cache folder that cannot be written to only warns. ``.judge`` names the result
    (``pinned-<hash>`` / ``local-<hash>``, see ``judge_id``); which one is used is logged once.

    Args:
        source: a datamodule with ``resolution``, ``channels``, ``classes`` and ``size_range``
            (``ShapesDataModule``), or a mapping with these keys. Anything else: TypeError.
        cache_dir: folder holding the ``shapes_classifier`` cache folder (e.g. the run's folder);
            None: the user cache (``$LIGHTNING_GAN_CACHE``, ``$XDG_CACHE_HOME/lightning_gan`` or
            ``~/.cache/lightning_gan``).
        seed, steps, batch_size: the training recipe (part of the cache key and of the pinned settings).
        progress: show a progress bar while training.
    """
    settings = _settings(source, seed=seed, steps=steps, batch_size=batch_size)
    key = _key(settings)
    if key in _LOADED:
        return _LOADED[key]
    record = _pinned_for(settings)
    path = None if record is not None else classifier_path(source, cache_dir, seed=seed, steps=steps,
                                                             batch_size=batch_size)
    model = None
    with torch.inference_mode(False):
        if record is not None:
            model = _load_pinned(record, settings)
        elif path is not None and path.is_file():
            try:
                data = path.read_bytes()
                model = _from_bytes(data, settings)
                model.judge = judge_id(data, pinned=False)
            except Exception as exc:  # unreadable, truncated, foreign or stale: retrain
                model = None
                warnings.warn(f"The cached shapes classifier {path} is not usable ({type(exc).__name__}: {exc}); "
                              f"training a new one", stacklevel=2)
        if model is None:
            assert path is not None
            log.info("Training the shapes classifier for %s px, %s channels, classes %s (once; cached at %s)",
                     settings["resolution"], settings["channels"], settings["classes"], path)
            model, _ = train_shapes_classifier(
                resolution=settings["resolution"], channels=settings["channels"], classes=settings["classes"],
                size_range=tuple(settings["size_range"]), seed=seed, steps=steps, batch_size=batch_size,
                progress=progress)
            data = judge_bytes(model, settings)
            model.judge = judge_id(data, pinned=False)
            try:
                _write_atomically(path, data)
            except OSError as exc:
                warnings.warn(f"Could not cache the shapes classifier at {path} ({exc}); it will be trained again "
                              f"in the next process", stacklevel=2)
    model.eval().requires_grad_(False)
    _announce(model, settings, path)
    _LOADED[key] = model
    return model


# -- the numbers ------------------------------------------------------------------------------------
def class_histogram(logits_or_probs: Tensor, num_classes: int | None = None, *,
                    confidence: float = DEFAULT_CONFIDENCE) -> Tensor:
    """Recognizable samples per predicted class, ``[K]`` int64.

    ``logits_or_probs`` ``[N, K]`` are class probabilities when every entry lies in [0, 1] and every row
    sums to 1 (within 1e-4), logits otherwise (turned into probabilities by a softmax). Sample ``i`` is
    recognizable when ``max_k p_ik >= confidence``; it then counts once, in class ``argmax_k p_ik``. So
    ``histogram.sum() / N`` is the recognizable share, and ``confidence <= 1/K`` counts every sample.

    Args:
        logits_or_probs: class logits or probabilities, ``[N, K]``.
        num_classes: ``K``; checked against the tensor's second dimension when given.
        confidence: the top probability a sample needs to count, in [0, 1].
    """
    if logits_or_probs.dim() != 2:
        raise ValueError(f"class_histogram takes scores [N, K], got {tuple(logits_or_probs.shape)}")
    k = logits_or_probs.shape[1]
    if num_classes is not None and num_classes != k:
        raise ValueError(f"scores have {k} classes, num_classes is {num_classes}")
    if not 0.0 <= confidence <= 1.0:
        raise ValueError(f"confidence must be in [0, 1], got {confidence}")
    scores = logits_or_probs.detach().double().cpu()
    if scores.shape[0] == 0:
        return torch.zeros(k, dtype=torch.long)
    is_probs = bool(((scores >= 0) & (scores <= 1)).all()) and bool(((scores.sum(1) - 1).abs() <= 1e-4).all())
    top, predicted = (scores if is_probs else scores.softmax(1)).max(1)  # [N], [N]
    return torch.bincount(predicted[top >= confidence], minlength=k)


def class_coverage(histogram: Tensor | Sequence[int], *, threshold: float = DEFAULT_COVERAGE_THRESHOLD) -> int:
    """Covered classes: those with ``n_k > 0`` and ``n_k / n >= threshold / K``, of ``K = len(histogram)``
    classes and ``n = sum_k n_k`` counted samples (0 when ``n = 0``).

    ``threshold`` is the share of its fair ``1/K`` a class needs: 0 counts every class with at least one
    sample (Stacked MNIST's rule), 1 only classes at or above a uniform share.
    """
    h = torch.as_tensor(histogram, dtype=torch.float64).flatten()
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    n = float(h.sum())
    if n <= 0:
        return 0
    return int(((h > 0) & (h / n >= threshold / h.numel())).sum())


def reverse_kl(histogram: Tensor | Sequence[float], reference: Tensor | Sequence[float] | None = None) -> float:
    """``KL(p || q) = sum_{k: p_k > 0} p_k log(p_k / q_k)`` in nats, with ``p = histogram / sum(histogram)``.

    ``reference`` (counts or probabilities, normalized here) gives ``q``; None: uniform, ``q_k = 1/K``,
    making it ``sum_k p_k log(K p_k)`` as in PacGAN. 0 when ``p = q``; ``inf`` when the histogram is empty
    or puts mass on a class with ``q_k = 0``.
    """
    h = torch.as_tensor(histogram, dtype=torch.float64).flatten()
    if (h < 0).any():
        raise ValueError("histogram counts must be >= 0")
    n = float(h.sum())
    if n <= 0:
        return math.inf
    if reference is None:
        q = torch.full_like(h, 1.0 / h.numel())
    else:
        q = torch.as_tensor(reference, dtype=torch.float64).flatten()
        if q.shape != h.shape or (q < 0).any() or float(q.sum()) <= 0:
            raise ValueError(f"reference must hold {h.numel()} non-negative values, not all 0, got {q.tolist()}")
        q = q / q.sum()
    p = h / n
    support = p > 0
    if (q[support] == 0).any():
        return math.inf
    return float((p[support] * (p[support] / q[support]).log()).sum())


# -- the metric -------------------------------------------------------------------------------------
class ShapesMetrics(GeneratorMetric):
    """Class coverage, reverse KL, conditional accuracy and Frechet distance on shapes data (``shapes/...``).

    Computed exactly as the module docstring says, with the judge of the data's settings (the pinned one
    shipped with the package when there is one, else one trained once and cached); no download. Keys:
    ``shapes/coverage``, ``shapes/recognizable``, ``shapes/reverse_kl``, ``shapes/fd``,
    ``shapes/classifier_accuracy``, ``shapes/classifier_rejection``, ``shapes/judge_id`` and
    ``shapes/judge_pinned`` (the judge in numbers: ``judge_number`` of its id, 1 for a pinned judge, else 0)
    and, for a conditional generator, ``shapes/accuracy``. The judge's id itself (``pinned-<hash>`` or
    ``local-<hash>``) is text: ``notes()``.

    Args:
        num_samples: generated images ``N``.
        num_real: real images (reverse KL's reference and the Frechet distance); None: ``num_samples``.
        seed: seed of the latents and of the real subset (the same as FID's, so features are shared).
        confidence: top class probability a sample needs to be recognizable (and counted).
        coverage_threshold: share of its fair ``1/K`` of the recognizable samples a class needs to be covered.
        cache_dir: folder for the classifier's cache (e.g. the run's folder); None: the user cache.
        per_class_accuracy: also report ``shapes/accuracy/<class>`` for every class (conditional generators).
    """

    def __init__(self, *, num_samples: int = 10_000, num_real: int | None = None, seed: int = 0,
                 confidence: float = DEFAULT_CONFIDENCE, coverage_threshold: float = DEFAULT_COVERAGE_THRESHOLD,
                 cache_dir: str | None = None, per_class_accuracy: bool = False) -> None:
        self.num_samples = check_num_samples(type(self).__name__, num_samples)
        self.num_real = None if num_real is None else check_num_samples(type(self).__name__, num_real)
        self.seed = int(seed)
        if not 0.0 <= confidence <= 1.0:
            raise ValueError(f"ShapesMetrics: confidence must be in [0, 1], got {confidence}")
        if coverage_threshold < 0:
            raise ValueError(f"ShapesMetrics: coverage_threshold must be >= 0, got {coverage_threshold}")
        self.confidence = float(confidence)
        self.coverage_threshold = float(coverage_threshold)
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        self.per_class_accuracy = bool(per_class_accuracy)
        self._warned_labels = False
        self._judge: str | None = None

    def classifier(self, datamodule: Any) -> ShapesClassifier:
        """The judge of ``datamodule``: the pinned one for its settings, else one trained once and cached."""
        model = shapes_classifier_for(datamodule, self.cache_dir)
        self._judge = model.judge
        return model

    def notes(self) -> dict[str, str]:
        """``{"shapes/judge": "pinned-<hash>" or "local-<hash>"}`` once the judge is known (after ``setup``)."""
        return {} if self._judge is None else {"shapes/judge": self._judge}

    def setup(self, datamodule: Any = None) -> None:
        if datamodule is not None:
            self.classifier(datamodule)

    def compute(self, generator: Generator, datamodule: Any, context: EvaluationContext | None = None) -> dict[str, float]:
        context = context or EvaluationContext()
        classifier = self.classifier(datamodule)
        parameter = next(iter(generator.parameters()), None)
        classifier.to(torch.device("cpu") if parameter is None else parameter.device)
        real = context.real_features(classifier, datamodule, self.num_real or self.num_samples, seed=self.seed)
        fake = context.fake_features(classifier, generator, self.num_samples, seed=self.seed)
        assert fake.logits is not None  # a ShapesClassifier always gives logits
        k = classifier.num_classes
        # logits over the K shapes and "not a shape" (last): drop the samples that went there
        histogram = class_histogram(fake.logits, k + 1, confidence=self.confidence)[:k]
        reference = None if real.labels is None else torch.bincount(real.labels.long(), minlength=k)
        out = {
            "shapes/coverage": float(class_coverage(histogram, threshold=self.coverage_threshold)),
            "shapes/recognizable": float(histogram.sum()) / len(fake),
            "shapes/reverse_kl": reverse_kl(histogram, reference),
            "shapes/fd": frechet_distance(real.features, fake.features),
            "shapes/classifier_accuracy": float(classifier.accuracy if classifier.accuracy is not None else math.nan),
            "shapes/classifier_rejection": float(classifier.rejection if classifier.rejection is not None else math.nan),
            "shapes/judge_id": judge_number(classifier.judge) if classifier.judge else math.nan,
            "shapes/judge_pinned": float(bool(classifier.judge and classifier.judge.startswith("pinned-"))),
        }
        if fake.labels is not None:
            if generator.c_dim == k:
                right = fake.logits.argmax(1) == fake.labels.long()
                out["shapes/accuracy"] = float(right.double().mean())
                if self.per_class_accuracy:
                    for label, name in enumerate(classifier.classes):
                        rows = fake.labels.long() == label
                        out[f"shapes/accuracy/{name}"] = float(right[rows].double().mean()) if rows.any() else math.nan
            elif not self._warned_labels:
                self._warned_labels = True
                warnings.warn(f"ShapesMetrics: the generator is conditional with c_dim={generator.c_dim}, but the data "
                              f"has {k} shape classes; shapes/accuracy is left out", stacklevel=2)
        return out
