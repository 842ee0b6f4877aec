"""Spectral normalization in G on structure-heavy vs texture-heavy data: the spectral gap to the real images.

The claim (docs/theory.md#spectral-normalization-structure-and-texture): spectral normalization (SN) caps each
generator layer's largest singular value at 1, which keeps an unconstrained generator from adding high-frequency energy; that should help on
structure-heavy data (energy at low frequencies) and can over-smooth texture-heavy data (energy at high
frequencies). This benchmark trains the ``dcgan`` architecture (plugin lightning-gan-dcgan, the settings of the
``dcgan-shapes32`` recipe: z 64, base 32, max 256 channels, non-saturating loss, Adam 2e-4 (0.5, 0.99), EMA
half-life 5 kimg, batch 32, 32x32 RGB) through ``GANModule`` and a Lightning ``Trainer``, with and without SN on
every generator weight (``torch.nn.utils.parametrizations.spectral_norm`` on its Linear, Conv2d and
ConvTranspose2d layers, applied after building; the discriminator is the same in both runs), on

* ``shapes``: procedural shapes (``ShapesDataModule``), structure-heavy (about 96 % of the energy at or below
  0.25 cycles/pixel);
* ``textures``: procedural gratings, plaids, checkerboards and noise (``TexturesDataModule``), texture-heavy
  (about 96 % above),

for ``--kimg`` thousand real images each (equal budget, same seed: the same initial weights, latents and data
order in both arms of a dataset). Then ``--num-samples`` images of the EMA generator and as many real ones
give the figures (``lightning_gan.analysis.spectra``): the spectral gap to the real images (mean absolute
difference of the log10 radial power spectra, in decades; lower is closer) and the low/high-frequency energy
shares of real and generated images. The ``real vs real`` line is the gap between two disjoint real sets: the
floor of the measure at this sample size. Prints figures only; with ``--out DIR`` it also writes, per dataset,
a PNG of the spectra and grids of real and generated samples. Usage::

    OMP_NUM_THREADS=2 python benchmarks/spectral_norm_experiment.py [--kimg 50] [--num-samples 2000]
        [--datasets shapes textures] [--seed 0] [--no-g-batch-norm] [--d-spectral-norm] [--out DIR]

Four runs of ``--kimg`` each (a 0.5 kimg run took about 5 s, mostly setup, on one thread of a shared 2-core
machine; the time grows linearly with ``--kimg``). ``--no-g-batch-norm``
drops the generator's BatchNorm, which otherwise renormalizes every layer's output and so undoes most of what
SN does to the scale of the activations (SN then acts mainly on the last, un-normalized conv and on the
conditioning of the layers).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path

import torch
from lightning.pytorch import Trainer, seed_everything
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from lightning_gan import registry
from lightning_gan.analysis.spectra import energy_split, plot_spectra, radial_power_spectrum, spectral_gap
from lightning_gan.data.base import GANDataModule
from lightning_gan.data.shapes import ShapesDataModule
from lightning_gan.data.textures import TexturesDataModule
from lightning_gan.interfaces import ArchitectureSpec, NetworkPair
from lightning_gan.metrics.base import generate_images
from lightning_gan.module import GANModule
from lightning_gan.utils.images import make_grid_image

RESOLUTION, CHANNELS, BATCH_SIZE = 32, 3, 32
DCGAN = dict(resolution=RESOLUTION, channels=CHANNELS, z_dim=64, base_channels=32, max_channels=256)
ADAM = dict(lr=2e-4, betas=(0.5, 0.99))
EMA_KIMG = 5.0


class GeneratorSpectralNorm(ArchitectureSpec):
    """Builds ``base``'s networks, then puts spectral normalization on every generator weight when ``enabled``."""

    def __init__(self, *, base: ArchitectureSpec, enabled: bool = True) -> None:
        """
        Args:
            base: the architecture to build.
            enabled: apply ``spectral_norm`` to the generator's Linear, Conv2d and ConvTranspose2d layers.
        """
        self.base, self.enabled = base, bool(enabled)

    def build(self) -> NetworkPair:
        pair = self.base.build()
        if self.enabled:
            for module in pair.generator.modules():
                if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                    spectral_norm(module)  # dim 1 (the outputs) for transposed convs, as PyTorch picks
        return pair


def datamodule(name: str, seed: int) -> GANDataModule:
    kwargs = dict(resolution=RESOLUTION, channels=CHANNELS, batch_size=BATCH_SIZE, seed=seed)
    if name == "shapes":
        return ShapesDataModule(**kwargs)
    if name == "textures":
        return TexturesDataModule(**kwargs)
    raise ValueError(f"unknown dataset {name!r}; available: shapes, textures")


def train(dataset: str, *, sn: bool, kimg: float, seed: int, g_batch_norm: bool, d_spectral_norm: bool,
          root: Path) -> tuple[GANModule, float]:
    """A GANModule trained for ``kimg`` on ``dataset``; and the seconds it took."""
    seed_everything(seed, workers=True, verbose=False)
    base = registry.get_registry("architectures").create("dcgan", **DCGAN, g_batch_norm=g_batch_norm,
                                                         spectral_norm=d_spectral_norm)
    module = GANModule(architecture=GeneratorSpectralNorm(base=base, enabled=sn), loss="non_saturating",
                       g_optimizer=lambda params: torch.optim.Adam(params, **ADAM),
                       d_optimizer=lambda params: torch.optim.Adam(params, **ADAM),
                       ema_kimg=EMA_KIMG, total_kimg=kimg, metrics=[], seed=seed)
    trainer = Trainer(accelerator="cpu", devices=1, max_epochs=-1, logger=False, enable_progress_bar=False,
                      enable_checkpointing=False, enable_model_summary=False, limit_val_batches=0,
                      num_sanity_val_steps=0, default_root_dir=root)
    start = time.perf_counter()
    trainer.fit(module, datamodule(dataset, seed))
    return module, time.perf_counter() - start


def real_sets(dm: GANDataModule, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint seeded random sets of ``n`` training images: the reference, and a second for the gap's floor."""
    total = len(dm.train_dataset)
    if 2 * n > total:
        raise ValueError(f"--num-samples {n} needs {2 * n} real images, the data has {total}")
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed + 1)).tolist()
    return dm.train_dataset.__getitems__(sorted(order[:n]))[0], dm.train_dataset.__getitems__(sorted(order[n:2 * n]))[0]


def row(dataset: str, label: str, gap: float, real_split: dict[str, float], fake_split: dict[str, float],
        seconds: float) -> None:
    real, fake = (f"{s['low']:.3f}/{s['high']:.3f}" for s in (real_split, fake_split))
    print(f"{dataset:>9} {label:>13} {gap:>9.3f} {real:>13} {fake:>13} {seconds:>8.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kimg", type=float, default=50.0, help="training budget per run, thousands of real images")
    parser.add_argument("--num-samples", type=int, default=2000, help="generated and real images per spectrum")
    parser.add_argument("--datasets", nargs="+", default=["shapes", "textures"], choices=["shapes", "textures"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-g-batch-norm", action="store_true", help="DCGAN generator without BatchNorm")
    parser.add_argument("--d-spectral-norm", action="store_true", help="spectral normalization in D too (both arms)")
    parser.add_argument("--window", action="store_true", help="Hann window before the FFT")
    parser.add_argument("--out", type=Path, default=None, help="write spectra and sample grids (PNG) here")
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no "GPU available" banners
    warnings.filterwarnings("ignore", message=".*(LeafSpec|litlogger|does not have many workers).*")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; dcgan {DCGAN}, g_batch_norm "
          f"{not args.no_g_batch_norm}, SN in D {args.d_spectral_norm}; {args.kimg:g} kimg per run, batch "
          f"{BATCH_SIZE}, seed {args.seed}; spectra of {args.num_samples} images"
          f"{' (Hann window)' if args.window else ''}; low/high = energy share at <= / > 0.25 cycles/pixel")

    print(f"{'dataset':>9} {'generator':>13} {'gap (dec)':>9} {'real low/high':>13} {'gen low/high':>13} "
          f"{'train s':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets:
            dm = datamodule(dataset, args.seed)
            dm.setup("fit")
            real, reference = real_sets(dm, args.num_samples, seed=args.seed)
            real_spectrum = radial_power_spectrum(real, window=args.window)
            real_split = energy_split(real, window=args.window)
            floor = spectral_gap(real_spectrum, radial_power_spectrum(reference, window=args.window))
            row(dataset, "real vs real", floor, real_split, energy_split(reference, window=args.window), 0.0)
            curves = {"real": real_spectrum}
            for sn in (False, True):
                module, seconds = train(dataset, sn=sn, kimg=args.kimg, seed=args.seed,
                                        g_batch_norm=not args.no_g_batch_norm, d_spectral_norm=args.d_spectral_norm,
                                        root=Path(tmp))
                fake = generate_images(module.sampling_generator, args.num_samples, seed=args.seed)
                spectrum = radial_power_spectrum(fake, window=args.window)
                label = "SN in G" if sn else "no SN"
                curves[f"G, {label}"] = spectrum
                row(dataset, label, spectral_gap(real_spectrum, spectrum), real_split,
                    energy_split(fake, window=args.window), seconds)
                if args.out is not None:
                    args.out.mkdir(parents=True, exist_ok=True)
                    make_grid_image(fake[:64]).save(args.out / f"{dataset}_{'sn' if sn else 'nosn'}_samples.png")
            if args.out is not None:
                make_grid_image(real[:64]).save(args.out / f"{dataset}_real_samples.png")
                plot_spectra(curves, args.out / f"{dataset}_spectra.png",
                             title=f"{dataset}: {args.kimg:g} kimg, {args.num_samples} images per curve")
    if args.out is not None:
        print(f"spectra and sample grids in {args.out}")


if __name__ == "__main__":
    main()
