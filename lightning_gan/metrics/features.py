"""Feature extractors: Inception-v3 (from local weights only) or any ``nn.Module``, through one code path.

An extractor maps images in [-1, 1], ``[N, C, H, W]`` float, to features ``[N, D]``. A
``FeatureExtractor`` may also return class logits (``features_and_logits``), which the Inception Score
and the shapes metrics use. Any other ``nn.Module`` is used as is: its output, flattened, is the feature.

Inception-v3 is torch-fidelity's port of the TensorFlow 2015-12-05 graph, the network every published
FID/KID/IS/precision-recall number uses. Its weights are never downloaded at run time unless asked for
(``allow_download=True``). They are looked up, in order, at:

1. the ``weights`` argument (``--model.metrics...init_args.inception_weights`` or ``--inception-weights``),
2. the ``LIGHTNING_GAN_INCEPTION_WEIGHTS`` environment variable,
3. ``<cache>/weights/weights-inception-2015-12-05-6726825d.pth`` (``<cache>`` is ``$LIGHTNING_GAN_CACHE``,
   else ``$XDG_CACHE_HOME/lightning_gan``, else ``~/.cache/lightning_gan``),
4. torch hub's checkpoint folder (where torch-fidelity itself would have saved a download).

When none exists, the metric fails at setup with ``MissingWeightsError``: one line naming the file, where
to put it and where to get it.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lightning_gan.errors import ConfigError

__all__ = [
    "INCEPTION_FILE",
    "INCEPTION_URL",
    "FeatureExtractor",
    "InceptionV3Features",
    "MissingWeightsError",
    "cache_dir",
    "extract_features",
    "extractor_name",
    "find_inception_weights",
]

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
INCEPTION_ENV = "LIGHTNING_GAN_INCEPTION_WEIGHTS"
CACHE_ENV = "LIGHTNING_GAN_CACHE"


class MissingWeightsError(ConfigError, FileNotFoundError):
    """Pretrained weights a metric needs are not on this machine (and downloading is off or failed)."""


def cache_dir() -> Path:
    """lightning-gan's user cache: ``$LIGHTNING_GAN_CACHE``, ``$XDG_CACHE_HOME/lightning_gan`` or ``~/.cache/lightning_gan``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "lightning_gan"


class FeatureExtractor(nn.Module):
    """Base of the project's extractors: ``forward(images) -> [N, D]``, optionally logits too."""

    #: Reported with every number computed from these features (e.g. ``fid`` is only comparable with
    #: ``fid`` from the same extractor).
    name: str = "features"

    def features_and_logits(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """Features [N, D] and class logits [N, K] (None when the extractor is not a classifier)."""
        return self(images), None


def extractor_name(extractor: nn.Module) -> str:
    return str(getattr(extractor, "name", None) or type(extractor).__name__)


def extract_features(extractor: nn.Module, images: Tensor) -> tuple[Tensor, Tensor | None]:
    """``(features [N, D], logits or None)`` of images in [-1, 1], without grad, on the extractor's device."""
    device = next((p.device for p in extractor.parameters()), None) or next((b.device for b in extractor.buffers()), images.device)
    with torch.no_grad():
        images = images.to(device)
        if isinstance(extractor, FeatureExtractor):
            features, logits = extractor.features_and_logits(images)
        else:
            features, logits = extractor(images), None
    if features.shape[0] != images.shape[0]:
        raise ValueError(f"{extractor_name(extractor)} returned {features.shape[0]} feature rows for {images.shape[0]} images")
    return features.flatten(1), logits


def find_inception_weights(weights: str | os.PathLike[str] | None = None) -> Path | None:
    """The first existing Inception weights file in the documented search order, or None."""
    if weights is not None:
        path = Path(weights).expanduser()
        return path if path.is_file() else None
    candidates = []
    if os.environ.get(INCEPTION_ENV):
        candidates.append(Path(os.environ[INCEPTION_ENV]).expanduser())
    candidates.append(cache_dir() / "weights" / INCEPTION_FILE)
    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE)
    return next((p for p in candidates if p.is_file()), None)


def _missing_message(weights: str | os.PathLike[str] | None) -> str:
    where = (f"no file at {weights}" if weights is not None
             else f"not found at ${INCEPTION_ENV}, {cache_dir() / 'weights' / INCEPTION_FILE} or torch hub's checkpoints folder")
    return (f"Inception-v3 metrics (fid, kid, is, pr) need the weights file {INCEPTION_FILE} ({where}); "
            f"download it on a connected machine from {INCEPTION_URL} and put it at "
            f"{cache_dir() / 'weights' / INCEPTION_FILE} (or point {INCEPTION_ENV} / the metric's inception_weights at it)")


@contextlib.contextmanager
def _torch_load_weights_only() -> Iterator[None]:
    """torch-fidelity loads its weights with ``weights_only=False``; force ``True`` while it does."""
    original = torch.load

    @functools.wraps(original)
    def safe_load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return original(*args, **kwargs)

    torch.load = safe_load
    try:
        yield
    finally:
        torch.load = original


class InceptionV3Features(FeatureExtractor):
    """torch-fidelity's Inception-v3: 2048-d pool features and 1008 unbiased logits, from local weights.

    Images of any size and 1 or 3 channels (grey is repeated); they are turned back into uint8 (exact,
    since the context quantized them) and resized to 299 x 299 inside the network, as torch-fidelity does.

    Args:
        weights: path of ``weights-inception-2015-12-05-6726825d.pth``; None searches the documented places.
        allow_download: fetch the file from torch-fidelity's release when it is missing (off by default:
            nothing downloads at run time unless asked).
    """

    name = "inception_v3"

    def __init__(self, weights: str | os.PathLike[str] | None = None, *, allow_download: bool = False) -> None:
        super().__init__()
        self.weights = None if weights is None else str(weights)
        self.allow_download = bool(allow_download)
        self._net: nn.Module | None = None
        self.path = find_inception_weights(self.weights)
        if self.path is None and not self.allow_download:
            raise MissingWeightsError(_missing_message(self.weights))

    def load(self) -> nn.Module:
        """Build the network (reading the weights with ``weights_only=True``); idempotent."""
        if self._net is None:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

            try:
                with _torch_load_weights_only():
                    self._net = FeatureExtractorInceptionV3(
                        "inception-v3-compat", ["2048", "logits_unbiased"],
                        feature_extractor_weights_path=None if self.path is None else str(self.path), verbose=False)
            except OSError as exc:  # a failed download (no network) or an unreadable file
                raise MissingWeightsError(f"{_missing_message(self.weights)} ({type(exc).__name__}: {exc})") from exc
            except Exception as exc:
                if self.path is None:
                    raise MissingWeightsError(f"{_missing_message(self.weights)} ({type(exc).__name__}: {exc})") from exc
                raise ConfigError(f"{self.path} is not a usable Inception-v3 weights file: {type(exc).__name__}: {exc}") from exc
        return self._net

    def _apply(self, fn: Any, recurse: bool = True) -> Any:  # .to(device) moves the lazily built network too
        super()._apply(fn, recurse)
        if self._net is not None:
            self._net._apply(fn, recurse)
        return self

    def features_and_logits(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        net = self.load()
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        if images.shape[1] != 3:
            raise ValueError(f"Inception-v3 takes 1- or 3-channel images, got {images.shape[1]} channels")
        from lightning_gan.utils.images import to_uint8

        device = next(net.parameters()).device
        features, logits = net(to_uint8(images).to(device))
        return features, logits

    def forward(self, images: Tensor) -> Tensor:
        return self.features_and_logits(images)[0]
