"""Seconds the shapes metrics take on the CPU: 10k generated and 10k real images at 32 px, plus the one-off training.

Prints figures only. Usage: ``python benchmarks/shapes_metrics.py [--num-samples 10000] [--resolution 32]
[--cache-dir DIR]``. Settings with a pinned judge (32 and 64 px, 1 and 3 channels) load it; for others,
without ``--cache-dir`` the classifier is trained in a temporary folder, so the one-off training time is
measured too; with one, a classifier cached there is loaded instead.

Generators: ``render`` draws real shapes (what a perfect generator would give: the metrics' own cost,
generation nearly free) and, when the ``lightning-gan-dcgan`` plugin is installed, an untrained DCGAN of
the ``dcgan-shapes32`` recipe (z 64, base 32, max 256 channels; its outputs are noise to the classifier).
Per generator: ``generate`` is the generator alone, ``real`` the real images' features (once per run:
they are cached for the run), ``evaluate`` one evaluation (sampling, features, all the numbers), ``total``
the first evaluation of a run (``real`` + ``evaluate``). The target is ``total`` under 60 s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import torch
from torch import Tensor

from lightning_gan.data.shapes import SHAPES, ShapesDataModule, render_shapes, shape_factors
from lightning_gan.interfaces import Generator
from lightning_gan.metrics.base import EvaluationContext, generate_images
from lightning_gan.metrics.shapes import ShapesMetrics, clear_loaded_classifiers, shapes_classifier_for


class RenderingGenerator(Generator):
    """Renders shapes of another data seed, the latents picking the images: samples as good as the data."""

    def __init__(self, dm: ShapesDataModule, *, seed: int = 777) -> None:
        super().__init__(z_dim=2, output_shape=dm.data_shape)
        self.dm, self.data_seed = dm, seed

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        bits = (z.double().abs() * 2**20).long().cpu()  # [N, 2]
        f = shape_factors((bits[:, 0] * 2**21 + bits[:, 1]).tolist(), seed=self.data_seed, classes=self.dm.classes,
                          channels=self.dm.channels, size_range=self.dm.size_range)
        return render_shapes(f, resolution=self.dm.resolution).to(z.device)


def dcgan(resolution: int, channels: int) -> Generator | None:
    try:
        from lightning_gan import registry

        spec = registry.get_registry("architectures").create(
            "dcgan", resolution=resolution, channels=channels, z_dim=64, base_channels=32, max_channels=256)
    except Exception as exc:  # the plugin is optional
        print(f"(no untrained DCGAN: {type(exc).__name__}: {exc})")
        return None
    return spec.build().generator


def timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=10_000)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--cache-dir", default=None, help="classifier cache (default: a temporary folder)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads; {args.num_samples} samples, "
          f"{args.resolution} px, {args.channels} channels, classes {list(SHAPES)}")

    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache_dir or tmp
        dm = ShapesDataModule(resolution=args.resolution, channels=args.channels,
                              num_samples=max(50_000, args.num_samples))
        clear_loaded_classifiers()
        classifier, t_first = timed(lambda: shapes_classifier_for(dm, cache))
        clear_loaded_classifiers()
        classifier, t_load = timed(lambda: shapes_classifier_for(dm, cache))
        print(f"classifier {classifier.judge}: first request {t_first:.1f} s (training, unless the judge is pinned "
              f"or --cache-dir held it), load {1000 * t_load:.0f} ms; held-out accuracy {classifier.accuracy:.4f}")

        generators = {"render": RenderingGenerator(dm)}
        net = dcgan(args.resolution, args.channels)
        if net is not None:
            generators["dcgan (untrained)"] = net
        metric = ShapesMetrics(num_samples=args.num_samples, cache_dir=cache)
        metric.setup(dm)
        print(f"{'generator':>18} {'generate s':>10} {'real s':>7} {'evaluate s':>10} {'total s':>8}  values")
        for name, generator in generators.items():
            _, t_gen = timed(lambda: generate_images(generator, args.num_samples, seed=metric.seed))
            context = EvaluationContext()
            _, t_real = timed(lambda: context.real_features(classifier, dm, args.num_samples, seed=metric.seed))
            values, t_eval = timed(lambda: metric.compute(generator, dm, context))
            shown = ", ".join(f"{k.removeprefix('shapes/')} {v:.4g}" for k, v in values.items())
            print(f"{name:>18} {t_gen:>10.1f} {t_real:>7.1f} {t_eval:>10.1f} {t_real + t_eval:>8.1f}  {shown}")


if __name__ == "__main__":
    main()
