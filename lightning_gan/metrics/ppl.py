"""Perceptual path length (PPL, Karras et al. 2019, "A Style-Based Generator Architecture for GANs").

PPL measures how much the image changes along a short step of an interpolation path in latent space:

    l = E[ d(G(p(t)), G(p(t + eps))) / eps^2 ],   eps = 1e-4,

where ``p`` interpolates between two random latents, ``d`` is an image distance and the expectation
runs over pairs of latents and over ``t``:

* ``space="z"``: ``p(t) = slerp(z1, z2, t)``, spherical interpolation of ``z ~ prior`` on the unit
  sphere (both latents normalized, rotation by ``t`` times their angle; the result has unit norm, as in
  the paper: style-based generators normalize ``z`` first anyway), then ``G(z)``.
* ``space="w"``: ``p(t) = lerp(w1, w2, t)`` with ``w = mapping(z, c)``, then ``synthesis(w)``; for
  generators that expose ``mapping(z, c) -> w`` and ``synthesis(w) -> images``. ``w`` may be
  ``[N, w_dim]`` or ``[N, num_ws, w_dim]`` (every layer's ``w`` is interpolated alike).
* ``sampling="full"``: ``t ~ U(0, 1)``; ``sampling="end"``: the path's end point, ``t = 0`` (the
  convention of Karras et al.'s code: ``t`` drawn from ``U(0, 0)``; by symmetry of the pair
  ``(z1, z2)`` it is the same as ``t = 1``).

Conventions of this implementation:

* Conditional generators get the same class at both ends of a path (classes in equal shares,
  ``i % c_dim``, as everywhere in ``lightning_gan.metrics``).
* Images are **not** quantized to 8 bits (unlike the other image metrics): with ``eps = 1e-4`` the two
  images differ by far less than one 8-bit step, and rounding would destroy the difference.
* Per-pixel noise inputs are the same at both ends of a path: the global RNG is reseeded identically
  before the two forward passes of a batch (the equivalent of StyleGAN's constant noise), and forked
  so that the caller's random state is untouched.
* Latents and ``t`` are drawn in float32 and cast to the generator's dtype, so float32 and float64
  generators follow the same paths; in float32 the round-off at ``eps = 1e-4`` changes single values
  by about 0.1% (median) and the mean far less (checked on linear generators).
* The reported value discards samples below the 1st and above the 99th percentile and averages the
  rest (``ppl_from_samples``), as in the paper (percentiles by numpy's ``lower``/``higher`` rule).

The distance ``d``, whose name is part of the metric's key (``ppl_w_end/lpips_vgg``,
``ppl_z_full/shapes_classifier``) so that numbers computed with different distances are never mixed up:

* ``LPIPSDistance`` (``lpips_vgg``, the paper's choice; ``lpips_alex``, ``lpips_squeeze``): torchmetrics'
  LPIPS. torchmetrics ships LPIPS's linear heads, but the backbone is torchvision's ImageNet network,
  read from torch hub's checkpoints folder (``torch.hub.get_dir()/checkpoints``: ``vgg16-397923af.pth``,
  ``alexnet-owt-7be5be79.pth`` or ``squeezenet1_1-b8a52dc0.pth``). The file is checked before anything
  is built, so nothing is ever downloaded; a missing file is a ``MissingWeightsError`` naming it.
  Images larger than 256 pixels are downsampled to 256 by area averaging (VGG was trained at 224), as
  in the paper; no dataset-specific crop is applied.
* ``FeatureDistance`` (named after its extractor, e.g. ``shapes_classifier``): the squared Euclidean
  distance between L2-normalized feature vectors, ``|f(x)/|f(x)| - f(y)/|f(y)| |^2`` (= 2 - 2 cos, in
  [0, 4]), a stand-in for LPIPS, which is itself a distance between unit-normalized deep features.
* ``PixelDistance`` (``pixels``): ``|x - y|^2`` summed over all of a sample's values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lightning_gan.errors import ConfigError
from lightning_gan.interfaces import Configurable, Generator
from lightning_gan.metrics.base import (
    EvaluationContext,
    GeneratorMetric,
    _device_of,
    _eval_mode,
    balanced_labels,
    check_num_samples,
)
from lightning_gan.metrics.features import FeatureExtractor, MissingWeightsError, extractor_name

__all__ = [
    "LPIPS_BACKBONES",
    "PPL",
    "FeatureDistance",
    "ImageDistance",
    "LPIPSDistance",
    "PixelDistance",
    "lerp",
    "lpips_weights_path",
    "path_length_samples",
    "ppl_from_samples",
    "resolve_distance",
    "slerp",
]

Space = Literal["z", "w"]
Sampling = Literal["full", "end"]

#: LPIPS network -> the torchvision weights enum of its ImageNet backbone.
LPIPS_BACKBONES = {"vgg": "VGG16_Weights", "alex": "AlexNet_Weights", "squeeze": "SqueezeNet1_1_Weights"}

DISTANCES = ("auto", "lpips", "lpips_vgg", "lpips_alex", "lpips_squeeze", "shapes", "pixels")


# -- interpolation ---------------------------------------------------------------------------------
def _expand(t: Tensor | float, like: Tensor) -> Tensor:
    """``t`` (a number or [N]) shaped [N, 1, ..., 1] to broadcast against ``like`` [N, ...]."""
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    return t.reshape(-1, *([1] * (like.dim() - 1))) if t.dim() > 0 else t


def lerp(a: Tensor, b: Tensor, t: Tensor | float) -> Tensor:
    """Linear interpolation ``a + t (b - a)`` of [N, ...] tensors; ``t`` a number or [N]."""
    return a + _expand(t, a) * (b - a)


def slerp(a: Tensor, b: Tensor, t: Tensor | float) -> Tensor:
    """Spherical interpolation on the unit sphere of rows of ``a``, ``b`` [N, D]; ``t`` a number or [N].

    Both are normalized to unit length; the result is ``a`` rotated towards ``b`` by ``t`` times their
    angle, in their common plane (unit norm, constant angular speed; ``t=0`` gives ``a/|a|``, ``t=1``
    gives ``b/|b|``).
    """
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    cos = (a * b).sum(dim=-1, keepdim=True).clamp(-1.0, 1.0)
    angle = torch.acos(cos) * _expand(t, a)
    ortho = b - cos * a  # the part of b orthogonal to a
    ortho = ortho / ortho.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)
    out = a * torch.cos(angle) + ortho * torch.sin(angle)
    return out / out.norm(dim=-1, keepdim=True)


# -- distances -------------------------------------------------------------------------------------
class ImageDistance(nn.Module):
    """``forward(x, y) -> [N]``: a distance between two batches of images in [-1, 1] (no grad needed)."""

    #: part of the metric's key (``ppl_w_end/<name>``)
    name: str = "distance"

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


class PixelDistance(ImageDistance):
    """``|x - y|^2`` summed over every value of a sample (``pixels``); in the inputs' dtype."""

    name = "pixels"

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return (x - y).square().flatten(1).sum(dim=1)


class FeatureDistance(ImageDistance):
    """Squared Euclidean distance between L2-normalized features of an extractor (2 - 2 cos, in [0, 4]).

    Args:
        extractor: a ``FeatureExtractor`` (its features, not its logits, are used) or any module mapping
            images in [-1, 1] to features [N, ...] (flattened). Named after it (``extractor_name``).
    """

    def __init__(self, extractor: nn.Module) -> None:
        super().__init__()
        self.extractor = extractor
        self.name = extractor_name(extractor)

    def features(self, images: Tensor) -> Tensor:
        dtype = next((p.dtype for p in self.extractor.parameters() if p.is_floating_point()), images.dtype)
        images = images.to(dtype)
        if isinstance(self.extractor, FeatureExtractor):
            features = self.extractor.features_and_logits(images)[0]
        else:
            features = self.extractor(images)
        return nn.functional.normalize(features.flatten(1), dim=1, eps=1e-12)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        # the difference of normalized vectors, not 2 - 2 cos: no cancellation for nearby images
        return (self.features(x) - self.features(y)).square().sum(dim=1)


def lpips_weights_path(net: str = "vgg") -> Path:
    """Where torchvision reads LPIPS's ImageNet backbone ``net`` from: torch hub's checkpoints folder.

    That is ``torch.hub.get_dir()/checkpoints/<file>`` (``$TORCH_HOME/hub/checkpoints``, by default
    ``~/.cache/torch/hub/checkpoints``), with ``<file>`` the last part of the weights' URL, e.g.
    ``vgg16-397923af.pth``. Only the path is computed; nothing is downloaded.
    """
    import torchvision.models

    if net not in LPIPS_BACKBONES:
        raise ValueError(f"LPIPS net must be one of {sorted(LPIPS_BACKBONES)}, got {net!r}")
    url = getattr(torchvision.models, LPIPS_BACKBONES[net]).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _lpips_available(net: str) -> bool:
    try:
        return lpips_weights_path(net).is_file()
    except ImportError:  # no torchvision
        return False


def _lpips_missing_message(net: str) -> str:
    import torchvision.models

    path = lpips_weights_path(net)
    url = getattr(torchvision.models, LPIPS_BACKBONES[net]).DEFAULT.url
    return (f"LPIPS ({net}) needs torchvision's ImageNet backbone weights {path.name}, not found at {path}; "
            f"download {url} on a connected machine and put it there (torch hub's checkpoints folder, "
            f"$TORCH_HOME/hub/checkpoints; LPIPS's linear heads ship with torchmetrics), "
            f"or choose another distance (e.g. 'shapes' or 'pixels')")


class LPIPSDistance(ImageDistance):
    """LPIPS (Zhang et al. 2018) via torchmetrics, from local backbone weights only (``lpips_<net>``).

    Images in [-1, 1] with 1 (repeated to 3) or 3 channels; larger than 256 pixels they are first
    area-downsampled by an integer factor to at most 256. Evaluated in float32. The LPIPS network is
    called directly (torchmetrics' ``update`` rejects values outside [-1, 1], which generators may produce).

    Args:
        net: backbone, ``"vgg"`` (the PPL paper's), ``"alex"`` or ``"squeeze"``.

    Raises:
        MissingWeightsError: the backbone's file is not in torch hub's checkpoints folder (checked before
            torchvision is asked for it, so that nothing downloads).
    """

    def __init__(self, net: str = "vgg") -> None:
        super().__init__()
        try:
            path = lpips_weights_path(net)
        except ImportError as exc:
            raise ConfigError(f"LPIPS needs torchvision for its backbone ({exc})") from exc
        if not path.is_file():
            raise MissingWeightsError(_lpips_missing_message(net))
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        self.net = net
        self.name = f"lpips_{net}"
        self.lpips = LearnedPerceptualImagePatchSimilarity(net_type=net, normalize=False).eval()

    def _prepare(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"LPIPS takes images [N, 1 or 3, H, W], got {tuple(images.shape)}")
        images = images.float().expand(-1, 3, -1, -1)
        factor = math.ceil(max(images.shape[2:]) / 256)
        return nn.functional.avg_pool2d(images, factor) if factor > 1 else images

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.lpips.net(self._prepare(x), self._prepare(y), normalize=False).flatten()


def resolve_distance(distance: str | nn.Module, datamodule: Any = None) -> ImageDistance:
    """The distance module for a PPL ``distance`` setting (see ``PPL``)."""
    if isinstance(distance, ImageDistance):
        return distance
    if isinstance(distance, nn.Module):
        return FeatureDistance(distance)
    if distance == "pixels":
        return PixelDistance()
    if distance in ("lpips", "lpips_vgg", "lpips_alex", "lpips_squeeze"):
        return LPIPSDistance("vgg" if distance == "lpips" else distance.removeprefix("lpips_"))
    if distance == "shapes":
        from lightning_gan.metrics.shapes import shapes_classifier_for

        return FeatureDistance(shapes_classifier_for(datamodule).eval())
    if distance == "auto":
        if _lpips_available("vgg"):
            return LPIPSDistance("vgg")
        from lightning_gan.data.shapes import ShapesDataModule

        if isinstance(datamodule, ShapesDataModule):
            return resolve_distance("shapes", datamodule)
        raise ConfigError(
            f"PPL distance 'auto' found neither LPIPS's backbone weights ({lpips_weights_path('vgg')}) nor a shapes "
            f"datamodule (got {type(datamodule).__name__}); put the weights there, or choose distance='pixels', "
            f"'shapes' (shapes data only) or an nn.Module feature extractor")
    if distance == "inception":
        raise ConfigError(
            "PPL cannot use the Inception-v3 extractor: torch-fidelity's network takes 8-bit images, and rounding to "
            "8 bits destroys the eps=1e-4 differences PPL measures; use 'lpips', 'shapes', 'pixels' or an nn.Module")
    raise ValueError(f"PPL distance must be one of {', '.join(DISTANCES)} or an nn.Module, got {distance!r}")


# -- sampling ----------------------------------------------------------------------------------------
def _dtype_of(module: nn.Module) -> torch.dtype:
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.get_default_dtype())


def _check_finite(images: Tensor, what: str) -> Tensor:
    if not torch.isfinite(images).all():
        raise FloatingPointError(f"The generator produced non-finite values ({what}); PPL would be meaningless")
    return images


def path_length_samples(
    generator: Generator, num_samples: int, *, space: Space = "z", sampling: Sampling = "full",
    epsilon: float = 1e-4, distance: Callable[[Tensor, Tensor], Tensor], seed: int = 0, batch_size: int = 128,
    labels: Tensor | None = None,
) -> Tensor:
    """Per-path values ``d(G(p(t)), G(p(t + eps))) / eps^2``, float64 on the CPU, [num_samples].

    See the module docstring for ``space``, ``sampling`` and the noise convention. Latents (two per
    path, from ``generator.sample_latents``, cast to the generator's dtype) and ``t`` are drawn all at
    once from a ``torch.Generator`` seeded with ``seed``; the generator runs in eval mode without grad
    (its mode is restored afterwards). ``labels`` [num_samples] are the classes of a conditional generator
    (default: equal shares); each path keeps its class at both ends.

    Args:
        generator: the generator; ``space="w"`` needs ``mapping(z, c)`` and ``synthesis(w)``.
        num_samples: number of paths.
        space: ``"z"`` (slerp of latents) or ``"w"`` (lerp of mapped latents).
        sampling: ``"full"`` (t ~ U(0, 1)) or ``"end"`` (t = 0).
        epsilon: the step along the path.
        distance: ``(x, y) -> [N]`` image distance.
        seed: seed of the latents, of ``t`` and of the generator's noise.
        batch_size: paths per batch (each batch runs the generator twice, once per end).
        labels: class of each path, for conditional generators.
    """
    if space not in ("z", "w"):
        raise ValueError(f"space must be 'z' or 'w', got {space!r}")
    if sampling not in ("full", "end"):
        raise ValueError(f"sampling must be 'full' or 'end', got {sampling!r}")
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if space == "w":
        _check_style_based(generator)
    device, dtype = _device_of(generator), _dtype_of(generator)
    rng = torch.Generator(device=device).manual_seed(seed)
    z0 = generator.sample_latents(num_samples, generator=rng, device=device).to(dtype)
    z1 = generator.sample_latents(num_samples, generator=rng, device=device).to(dtype)
    t = torch.rand(num_samples, generator=rng, device=device).to(dtype) * (1.0 if sampling == "full" else 0.0)
    if labels is None:
        labels = balanced_labels(num_samples, generator.c_dim, device)
    elif not generator.c_dim:
        raise ValueError("labels were given but the generator is unconditional (c_dim = 0)")
    elif labels.shape[0] != num_samples:
        raise ValueError(f"labels has {labels.shape[0]} entries for {num_samples} samples")
    noise_seeds = torch.randint(0, 2**31 - 1, (math.ceil(num_samples / batch_size),),
                                generator=torch.Generator().manual_seed(seed)).tolist()
    devices = [device] if device.type == "cuda" else []
    values = []
    with _eval_mode(generator), torch.no_grad(), torch.random.fork_rng(devices=devices):
        for b, start in enumerate(range(0, num_samples, batch_size)):
            sl = slice(start, start + batch_size)
            c = None if labels is None else nn.functional.one_hot(labels[sl].long().to(device), generator.c_dim).to(dtype)
            if space == "z":
                ends = (slerp(z0[sl], z1[sl], t[sl]), slerp(z0[sl], z1[sl], t[sl] + epsilon))
            else:
                n = z0[sl].shape[0]
                cc = None if c is None else torch.cat([c, c])
                w0, w1 = generator.mapping(torch.cat([z0[sl], z1[sl]]), cc).split(n)
                ends = (lerp(w0, w1, t[sl]), lerp(w0, w1, t[sl] + epsilon))
            images = []
            for p in ends:  # the same noise at both ends
                torch.manual_seed(noise_seeds[b])
                out = generator(p, c) if space == "z" else generator.synthesis(p)
                images.append(_check_finite(out, f"samples {start}..{start + p.shape[0] - 1}, seed {seed}"))
            d = distance(images[0], images[1])
            if d.shape != (images[0].shape[0],):
                raise ValueError(f"the distance must return one value per sample, [{images[0].shape[0]}], got {tuple(d.shape)}")
            values.append(d.detach().double().cpu() / epsilon**2)
    return torch.cat(values)


def ppl_from_samples(values: Tensor, reject_outliers: bool = True) -> float:
    """The mean of per-path values; with ``reject_outliers``, of those within the 1st..99th percentile.

    The percentiles follow numpy's ``lower`` (1st) and ``higher`` (99th) rules on the sorted values
    ``v``: ``lo = v[floor(0.01 (n - 1))]``, ``hi = v[ceil(0.99 (n - 1))]``; values with ``lo <= x <= hi``
    are kept (Karras et al. 2019).
    """
    values = values.detach().double().flatten().cpu()
    if values.numel() == 0:
        raise ValueError("no PPL samples")
    if not torch.isfinite(values).all():
        return math.nan
    if reject_outliers:
        ordered = values.sort().values
        n = ordered.numel()
        lo, hi = ordered[math.floor(0.01 * (n - 1))], ordered[math.ceil(0.99 * (n - 1))]
        values = values[(values >= lo) & (values <= hi)]
    return float(values.mean())


def _check_style_based(generator: Generator) -> None:
    missing = [name for name in ("mapping", "synthesis") if not callable(getattr(generator, name, None))]
    if missing:
        raise ConfigError(
            f"PPL in W space needs a style-based generator with mapping(z, c) and synthesis(w); "
            f"{type(generator).__name__} has no {' or '.join(missing)} (use space='z')")


# -- metric --------------------------------------------------------------------------------------------
class PPL(GeneratorMetric):
    """Perceptual path length (lower is smoother); key ``ppl_<space>_<sampling>/<distance name>``.

    See the module docstring for the definition and conventions.

    Args:
        space: ``"w"`` (style-based generators: lerp of ``mapping`` outputs) or ``"z"`` (slerp of latents).
        sampling: ``"end"`` (t = 0) or ``"full"`` (t ~ U(0, 1)).
        epsilon: step along the path (1e-4 in the paper).
        num_samples: paths (the paper uses 100,000).
        distance: ``"auto"`` (LPIPS-VGG if its backbone weights are local, else the shapes classifier for a
            shapes datamodule, else an error), ``"lpips"`` (= ``"lpips_vgg"``), ``"lpips_alex"``,
            ``"lpips_squeeze"``, ``"shapes"`` (features of the shapes classifier), ``"pixels"``, or an
            ``nn.Module`` (a feature extractor for ``FeatureDistance``, or an ``ImageDistance``).
        reject_outliers: average only the values within the 1st..99th percentile (as in the paper).
        seed: seed of latents, ``t`` and noise (fixed so that successive evaluations compare like with like).
        batch_size: paths per batch (two generator passes each).
    """

    def __init__(self, *, space: Space = "w", sampling: Sampling = "end", epsilon: float = 1e-4,
                 num_samples: int = 10_000, distance: str | nn.Module = "auto", reject_outliers: bool = True,
                 seed: int = 0, batch_size: int = 128) -> None:
        if space not in ("z", "w"):
            raise ValueError(f"PPL: space must be 'z' or 'w', got {space!r}")
        if sampling not in ("full", "end"):
            raise ValueError(f"PPL: sampling must be 'full' or 'end', got {sampling!r}")
        if not float(epsilon) > 0:
            raise ValueError(f"PPL: epsilon must be > 0, got {epsilon}")
        if isinstance(distance, str) and distance not in DISTANCES:
            resolve_distance(distance)  # raises the specific error (e.g. for 'inception')
        if not isinstance(distance, (str, nn.Module)):
            raise TypeError(f"PPL: distance must be a name or an nn.Module, got {type(distance).__name__}")
        if int(batch_size) < 1:
            raise ValueError(f"PPL: batch_size must be >= 1, got {batch_size}")
        self.space = space
        self.sampling = sampling
        self.epsilon = float(epsilon)
        self.num_samples = check_num_samples("PPL", num_samples)
        self.distance = distance
        self.reject_outliers = bool(reject_outliers)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self._module: ImageDistance | None = None

    def config(self) -> dict[str, Any]:
        distance = self.distance
        if isinstance(distance, nn.Module):  # a custom module cannot be rebuilt from data: keep what it was
            self.distance = distance.config() if isinstance(distance, Configurable) else \
                f"custom:{type(distance).__module__}.{type(distance).__qualname__}"
        try:
            return super().config()
        finally:
            self.distance = distance

    def setup(self, datamodule: Any = None) -> None:
        self.distance_module(datamodule)

    def distance_module(self, datamodule: Any = None) -> ImageDistance:
        """The distance, built (weights checked and loaded) on first use."""
        if self._module is None:
            self._module = resolve_distance(self.distance, datamodule).eval()
        return self._module

    @property
    def key(self) -> str:
        name = self._module.name if self._module is not None else str(self.distance)
        return f"ppl_{self.space}_{self.sampling}/{name}"

    def compute(self, generator: Generator, datamodule: Any, context: EvaluationContext | None = None) -> dict[str, float]:
        if self.space == "w":
            _check_style_based(generator)
        distance = self.distance_module(datamodule).to(_device_of(generator))
        values = path_length_samples(generator, self.num_samples, space=self.space, sampling=self.sampling,
                                     epsilon=self.epsilon, distance=distance, seed=self.seed, batch_size=self.batch_size)
        return {self.key: ppl_from_samples(values, self.reject_outliers)}
