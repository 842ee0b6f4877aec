"""Demodulation check: activation variance ratios through the modulated convolutions of a style-based generator.

Weight demodulation (StyleGAN2) scales the modulated weights ``w'_oik = s_i w_oik`` of each
output channel ``o`` by ``d_o = 1 / sqrt(sum_{i,k} w'_oik^2 + eps)``. For inputs that are i.i.d. with unit
variance, an output channel is a sum of independent terms with variance ``sum_{i,k} w'_oik^2``, so after
demodulation ``Var(y_o) = Var(x)``: whatever the styles, the layer neither amplifies nor attenuates
(docs/theory.md#modulation-and-demodulation).
``activation_variance_ratios`` measures how well that holds inside a real generator, where the inputs are
leaky-ReLU activations plus noise (neither zero-mean nor independent), by running the generator on seeded
latents and recording, for every modulated convolution, ``Var(output) / Var(input)``.

A modulated convolution is recognised by duck typing, so that this core module needs no plugin: a submodule
with a boolean ``demodulate`` attribute and a 4-D ``weight`` [O, I, k, k] (lightning-gan-stylegan2's
``ModulatedConv2d``). Its input and output are captured through

* ``forward_unscaled(x, ...) -> (y, d)`` when it has one (the output is ``y * d[:, :, None, None]``, or ``y``
  when ``d`` is None). StyleGAN2's ``SynthesisLayer`` calls this method directly, to fold the demodulation into
  its bias pass, which bypasses ``nn.Module`` forward hooks; so the method is wrapped on the instance for the
  duration of the run and restored afterwards. ``y`` itself gives the ratio without demodulation too.
* a forward hook otherwise (input ``args[0]``, output the return value).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from lightning_gan.analysis.plots import line_plot
from lightning_gan.metrics.base import iter_generated

__all__ = [
    "LayerVarianceRatio",
    "activation_variance_ratios",
    "find_modulated_convs",
    "format_variance_ratios",
    "plot_variance_ratios",
]


@dataclass(frozen=True)
class LayerVarianceRatio:
    """Variance statistics of one modulated convolution over a run of the generator.

    Variances are pooled over every element of every call (samples, channels, pixels) about the pooled mean.

    Attributes:
        name: the layer's qualified name in the generator (``named_modules``).
        demodulate: the layer's ``demodulate`` flag.
        to_image: whether the layer outputs image channels (a ToRGB): it writes the image instead of feeding
            the next layer, so it is left out of the running product of the layers after it.
        input_variance: ``Var(x)`` of the layer's input.
        output_variance: ``Var(y)`` of its output (after demodulation).
        ratio: ``output_variance / input_variance``; about 1 with demodulation and i.i.d. unit-variance inputs.
        cumulative: running product of ``ratio`` over the feature layers (``not to_image``) up to and including
            this one, in call order; for a ToRGB, the product of the feature layers before it times its ratio.
        modulated_ratio: ``Var(modulated output before demodulation) / Var(x)`` (NaN where the layer does not
            expose it: fused evaluation, or no ``forward_unscaled``); equals ``ratio`` without demodulation.
    """

    name: str
    demodulate: bool
    to_image: bool
    input_variance: float
    output_variance: float
    ratio: float
    cumulative: float
    modulated_ratio: float


class _Moments:
    """Running sum, sum of squares and count (float64), for a pooled variance ``E[x^2] - E[x]^2``."""

    def __init__(self) -> None:
        self.sum = 0.0
        self.sumsq = 0.0
        self.count = 0

    def add(self, x: Tensor) -> None:
        x = x.detach().to(torch.float64)
        self.sum += float(x.sum())
        self.sumsq += float(x.square().sum())
        self.count += x.numel()

    def variance(self) -> float:
        if self.count == 0:
            return math.nan
        mean = self.sum / self.count
        return max(self.sumsq / self.count - mean * mean, 0.0)


class _LayerStats:
    def __init__(self) -> None:
        self.inputs, self.outputs, self.modulated = _Moments(), _Moments(), _Moments()


def find_modulated_convs(generator: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every modulated convolution: a submodule with a bool ``demodulate``, a 4-D ``weight``."""
    found = []
    for name, module in generator.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(getattr(module, "demodulate", None), bool) and isinstance(weight, Tensor) and weight.dim() == 4:
            found.append((name, module))
    return found


def activation_variance_ratios(generator: nn.Module, num_samples: int = 64, seed: int = 0, *,
                               batch_size: int = 64) -> list[LayerVarianceRatio]:
    """Per modulated convolution, ``Var(output) / Var(input)`` over ``num_samples`` generated samples.

    The generator runs in eval mode without gradients on latents (and, if conditional, balanced classes) drawn
    from a ``torch.Generator`` seeded with ``seed``; the global RNG (noise inputs) is seeded with ``seed`` too and
    restored afterwards (``lightning_gan.metrics.base.iter_generated``), so the figures are reproducible. Rows
    come in the order the layers are first called (input to output); see ``LayerVarianceRatio`` for the
    fields and the running product. With demodulation, a ratio far from 1 means the layer's inputs are far from
    i.i.d. (correlated neighbours or channels, a large mean), not that the weights are out of scale.

    Args:
        generator: a style-based generator (``forward(z, c)``, ``z_dim``, ``c_dim``, modulated convolutions).
        num_samples: generated samples to pool the statistics over.
        seed: seed of the latents and of the noise inputs.
        batch_size: samples per forward pass.

    Raises:
        ValueError: the generator has no modulated convolution (e.g. DCGAN), or none of them ran.
    """
    if not isinstance(generator, nn.Module):
        raise ValueError(f"generator must be an nn.Module, got {type(generator).__name__}")
    if num_samples < 1 or batch_size < 1:
        raise ValueError(f"num_samples and batch_size must be >= 1, got {num_samples} and {batch_size}")
    layers = find_modulated_convs(generator)
    if not layers:
        raise ValueError(
            f"{type(generator).__name__} has no modulated convolution (a submodule with a bool `demodulate` flag "
            f"and a 4-D `weight`): the demodulation check needs a style-based generator such as StyleGAN2's "
            f"(plugin lightning-gan-stylegan2)")
    if not hasattr(generator, "z_dim"):
        raise ValueError(f"{type(generator).__name__} has no `z_dim`; subclass lightning_gan.Generator")
    image_channels = getattr(generator, "output_shape", (None,))[0]

    stats: dict[str, _LayerStats] = {}  # first-call order
    handles: list[Any] = []
    wrapped: list[nn.Module] = []

    def record(name: str, x: Tensor, out: Tensor, modulated: Tensor | None) -> None:
        s = stats.setdefault(name, _LayerStats())
        s.inputs.add(x)
        s.outputs.add(out)
        if modulated is not None:
            s.modulated.add(modulated)

    def wrap_unscaled(name: str, module: nn.Module) -> None:
        original = module.forward_unscaled  # the bound method

        def forward_unscaled(x: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor | None]:
            y, d = original(x, *args, **kwargs)
            out = y if d is None else y * d.to(y.dtype)[:, :, None, None]
            record(name, x, out, y if d is not None else (y if not module.demodulate else None))
            return y, d

        module.forward_unscaled = forward_unscaled  # instance attribute, shadows the method until deleted
        wrapped.append(module)

    def hook(name: str, module: nn.Module) -> None:
        def capture(_module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if args and isinstance(args[0], Tensor) and isinstance(output, Tensor):
                record(name, args[0], output, None if module.demodulate else output)

        handles.append(module.register_forward_hook(capture))

    try:
        for name, module in layers:
            if callable(getattr(module, "forward_unscaled", None)):
                wrap_unscaled(name, module)
            else:
                hook(name, module)
        for _ in iter_generated(generator, num_samples, seed=seed, batch_size=batch_size):
            pass
    finally:
        for module in wrapped:
            del module.forward_unscaled
        for handle in handles:
            handle.remove()
    if not stats:
        raise ValueError(f"none of the {len(layers)} modulated convolutions of {type(generator).__name__} ran")

    modules = dict(layers)
    rows: list[LayerVarianceRatio] = []
    chain = 1.0
    for name, s in stats.items():
        module = modules[name]
        var_in, var_out = s.inputs.variance(), s.outputs.variance()
        ratio = var_out / var_in if var_in > 0 else math.nan
        modulated = s.modulated.variance() / var_in if var_in > 0 and s.modulated.count else math.nan
        to_image = image_channels is not None and module.weight.shape[0] == image_channels and not module.demodulate
        cumulative = chain * ratio
        if not to_image:
            chain = cumulative
        rows.append(LayerVarianceRatio(name=name, demodulate=bool(module.demodulate), to_image=to_image,
                                       input_variance=var_in, output_variance=var_out, ratio=ratio,
                                       cumulative=cumulative, modulated_ratio=modulated))
    return rows


def format_variance_ratios(rows: Sequence[LayerVarianceRatio]) -> str:
    """A plain-text table of ``activation_variance_ratios`` rows, one line per layer."""
    if not rows:
        raise ValueError("no rows to format")
    width = max(len("layer"), *(len(r.name) for r in rows))
    lines = [f"{'layer':<{width}}  demod  {'Var(in)':>9}  {'Var(out)':>9}  {'ratio':>7}  {'no demod':>9}  "
             f"{'product':>9}"]
    for r in rows:
        lines.append(f"{r.name:<{width}}  {'yes' if r.demodulate else 'no':>5}  {r.input_variance:>9.4g}  "
                     f"{r.output_variance:>9.4g}  {r.ratio:>7.4f}  {r.modulated_ratio:>9.4g}  {r.cumulative:>9.4g}"
                     + ("  (to image)" if r.to_image else ""))
    return "\n".join(lines)


def plot_variance_ratios(rows: Sequence[LayerVarianceRatio], path: str | Path | None, *,
                         title: str = "Activation variance ratio per modulated conv") -> Image.Image:
    """A PNG of ``ratio``, ``modulated_ratio`` (where known) and ``cumulative`` per layer (log y, dashed line at 1).

    The x axis is the layer's position in call order (0 = first modulated conv); the table of
    ``format_variance_ratios`` names them.
    """
    if not rows:
        raise ValueError("no rows to plot")
    index = list(range(len(rows)))
    series: dict[str, tuple[list[int], list[float]]] = {
        "Var(out) / Var(in)": (index, [r.ratio for r in rows]),
        "running product": (index, [r.cumulative for r in rows]),
    }
    if any(math.isfinite(r.modulated_ratio) for r in rows):
        series["before demodulation"] = (index, [r.modulated_ratio for r in rows])
    return line_plot(series, path, "modulated conv layer (call order)", "variance ratio", title, logy=True,
                     hlines=(1.0,))
