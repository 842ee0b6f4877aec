"""SampleGrid: pictures of the (EMA) generator's samples from fixed seeds, every N kimg and at the end of fit.

Images ([C, H, W], C = 1 or 3) become a grid (one row per class for a conditional generator); 2-D
points become a scatter plot over the real data, with the mixture's modes and 3-sigma circles and
the mode coverage in the title when the datamodule has ``modes`` and ``sigma`` (toy2d). Files go to
``<trainer.log_dir>/samples/kimg{kimg:07.1f}.png`` and ``final.png``; loggers with image support
(TensorBoard, Weights & Biases) get the picture too. A progressively growing generator's images are enlarged
to its full resolution (pixels repeated), so that the pictures of every stage have one size.
"""

from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from PIL import Image
from torch import Tensor
from typing_extensions import override

from lightning_gan.callbacks._periodic import KIMG_EPS, next_multiple, reached
from lightning_gan.errors import ConfigError
from lightning_gan.ops.growth import upsample_to
from lightning_gan.ops.truncation import check_threshold
from lightning_gan.utils.images import PALETTE, REAL_COLOR, PointSet, make_grid_image, scatter_plot, square_bounds

__all__ = ["SampleGrid"]


class SampleGrid(Callback):
    """Writes a picture of generator samples every ``every_n_kimg`` thousand images and at the end of fit.

    The latents come from fixed seeds, so successive pictures show the same samples as training moves
    them. Only global rank 0 draws and writes. The check per training batch is one float comparison.
    """

    def __init__(
        self,
        *,
        every_n_kimg: float | None = 10.0,
        dirpath: str | Path | None = None,
        seed: int = 0,
        num_images: int = 64,
        nrow: int | None = None,
        samples_per_class: int = 8,
        max_classes: int = 16,
        num_points: int = 2500,
        num_real_points: int = 3000,
        log_key: str = "samples",
        log_to_loggers: bool = True,
        truncation: float | None = None,
    ) -> None:
        """
        Args:
            every_n_kimg: write a picture each time this many thousand images have been shown; None or 0: only at the end.
            dirpath: where the PNGs go; default ``<trainer.log_dir>/samples``.
            seed: seed of the latents (the same every time, so pictures compare).
            num_images: images in the grid of an unconditional image generator.
            nrow: images per row of that grid (default ``ceil(sqrt(num_images))``).
            samples_per_class: images per row of a conditional grid (one row per class, same latents per column).
            max_classes: rows of a conditional grid at most (the first classes).
            num_points: generated points in a 2-D scatter plot (2500 as in the PacGAN protocol).
            num_real_points: real points drawn underneath (a fixed random subset of the training set).
            log_key: name of the picture in the loggers.
            log_to_loggers: also hand the picture to loggers that take images (TensorBoard, W&B).
            truncation: draw the latents truncated to [-t, t] by resampling (BigGAN's truncation trick,
                ``lightning_gan.ops.truncation``); None: untruncated.
        """
        super().__init__()
        if every_n_kimg is not None and every_n_kimg < 0:
            raise ValueError(f"every_n_kimg must be > 0, 0 or None, got {every_n_kimg}")
        for name, value in (("num_images", num_images), ("samples_per_class", samples_per_class),
                            ("max_classes", max_classes), ("num_points", num_points)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.every_n_kimg = float(every_n_kimg) if every_n_kimg else None
        self.dirpath = Path(dirpath) if dirpath is not None else None
        self.seed = int(seed)
        self.num_images = int(num_images)
        self.nrow = nrow
        self.samples_per_class = int(samples_per_class)
        self.max_classes = int(max_classes)
        self.num_points = int(num_points)
        self.num_real_points = int(num_real_points)
        self.log_key = log_key
        self.log_to_loggers = log_to_loggers
        self.truncation = None if truncation is None else check_threshold(truncation)

        self.last_kimg: float | None = None  # kimg of the last picture written (saved in checkpoints)
        self.last_path: Path | None = None  # the newest file written by this process
        self.paths: list[Path] = []  # every file written by this process, in order
        self._next_kimg = math.inf
        self._out_dir: Path | None = None
        self._real_points: Tensor | None = None
        self._bounds: tuple[float, float, float, float] | None = None

    @cached_property  # Lightning reads it on every hook call; the configuration never changes
    def state_key(self) -> str:
        return self._generate_state_key(every_n_kimg=self.every_n_kimg, seed=self.seed,
                                        dirpath=None if self.dirpath is None else str(self.dirpath))

    # -- Lightning hooks ------------------------------------------------------------------------
    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        for attr in ("kimg", "sample"):
            if not hasattr(pl_module, attr):
                raise ConfigError(
                    f"SampleGrid needs a GANModule-like module with `kimg` and `sample(n, seed=...)`; "
                    f"{type(pl_module).__name__} has no `{attr}`"
                )
        log_dir = trainer.log_dir  # a collective call: every rank must make it
        self._out_dir = self.dirpath if self.dirpath is not None else Path(log_dir or ".") / "samples"

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # After every setup hook, so that GANModule's own check of the data against the model speaks first.
        shape = tuple(_generator(pl_module).output_shape)
        if shape != (2,) and not (len(shape) == 3 and shape[0] in (1, 3)):
            raise ConfigError(
                f"SampleGrid draws images [C, H, W] with C = 1 or 3, or 2-D points; the generator makes {shape}"
            )

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        kimg = float(pl_module.kimg)
        # A resumed run continues after the last picture it wrote; a callback reused on a new run starts over.
        base = self.last_kimg if self.last_kimg is not None and self.last_kimg <= kimg + KIMG_EPS else kimg
        self._next_kimg = self._threshold_after(base)

    @override
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not reached(float(pl_module.kimg), self._next_kimg):
            return
        kimg = float(pl_module.kimg)
        self._write(trainer, pl_module, kimg, [_kimg_name(kimg)])
        self._next_kimg = self._threshold_after(kimg)

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        kimg = float(pl_module.kimg)
        names = ["final.png"]
        if self.last_kimg is None or abs(self.last_kimg - kimg) > KIMG_EPS:
            names.insert(0, _kimg_name(kimg))
        self._write(trainer, pl_module, kimg, names)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"last_kimg": self.last_kimg}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        last = state_dict.get("last_kimg")
        self.last_kimg = None if last is None else float(last)

    # -- drawing --------------------------------------------------------------------------------
    @torch.no_grad()
    def render(self, pl_module: LightningModule, *, datamodule: Any = None, kimg: float | None = None) -> Image.Image:
        """The picture for the module's current sampling generator (also usable outside a Trainer)."""
        generator = _generator(pl_module)  # pl_module.sample() switches it to eval mode itself
        if tuple(generator.output_shape) == (2,):
            return self._render_points(pl_module, generator, datamodule, kimg)
        return self._render_images(pl_module, generator)

    def _render_images(self, pl_module: Any, generator: Any) -> Image.Image:
        if generator.c_dim:
            classes = min(generator.c_dim, self.max_classes)
            # Same seed per row: every column keeps its latent across classes, so rows differ by class only.
            rows = [pl_module.sample(self.samples_per_class, seed=self.seed,
                                     labels=torch.full((self.samples_per_class,), k, dtype=torch.long),
                                     **self._truncation_kwargs())
                    for k in range(classes)]
            return make_grid_image(_full_size(generator, torch.cat(rows)).float().cpu(), self.samples_per_class)
        samples = pl_module.sample(self.num_images, seed=self.seed, **self._truncation_kwargs())
        return make_grid_image(_full_size(generator, samples).float().cpu(), self.nrow)

    def _truncation_kwargs(self) -> dict[str, float]:
        """``truncation=t`` for ``pl_module.sample`` when set (modules without the option still work untruncated)."""
        return {} if self.truncation is None else {"truncation": self.truncation}

    def _render_points(self, pl_module: Any, generator: Any, datamodule: Any, kimg: float | None) -> Image.Image:
        modes = getattr(datamodule, "modes", None)
        sigma = getattr(datamodule, "sigma", None)
        if self._real_points is None:
            self._real_points = _real_points(datamodule, self.num_real_points, self.seed)
        samples = pl_module.sample(self.num_points, seed=self.seed, **self._truncation_kwargs()).float().cpu()  # [N, 2]
        sets = [PointSet(self._real_points, REAL_COLOR, "real", radius=1.0)] if len(self._real_points) else []
        if generator.c_dim:  # `sample` cycles the classes: sample i has class i % c_dim
            labels = torch.arange(len(samples)) % generator.c_dim
            sets += [PointSet(samples[labels == k], PALETTE[k % len(PALETTE)], f"class {k}")
                     for k in range(min(generator.c_dim, len(PALETTE)))]
        else:
            sets.append(PointSet(samples, PALETTE[0], "generated"))
        radius = 3.0 * float(sigma) if modes is not None and sigma is not None else None
        if self._bounds is None:  # fixed for the run, so that pictures compare
            if modes is not None:
                pad = radius or 0.0
                m = torch.as_tensor(modes, dtype=torch.float64).reshape(-1, 2)
                self._bounds = square_bounds(torch.cat([m - pad, m + pad]).numpy(), margin=0.12)
            else:
                self._bounds = square_bounds(self._real_points.numpy() if len(self._real_points) else samples.numpy())
        title = [] if kimg is None else [f"kimg {kimg:.1f}"]
        if modes is not None and sigma is not None:
            from lightning_gan.metrics.mode_coverage import mode_coverage

            cov = mode_coverage(samples, torch.as_tensor(modes), float(sigma), threshold=3.0)
            title += [f"modes {cov.modes}/{cov.total_modes}", f"HQ {cov.high_quality:.1%}",
                      f"reverse KL {cov.reverse_kl:.3f}"]
        return scatter_plot(sets, bounds=self._bounds, modes=modes, mode_radius=radius, title=" | ".join(title))

    # -- writing ------------------------------------------------------------------------------
    def _threshold_after(self, kimg: float) -> float:
        if self.every_n_kimg is None:
            return math.inf
        return next_multiple(kimg, self.every_n_kimg)

    def _write(self, trainer: Trainer, pl_module: LightningModule, kimg: float, names: list[str]) -> None:
        self.last_kimg = kimg
        if not trainer.is_global_zero:
            return
        image = self.render(pl_module, datamodule=getattr(trainer, "datamodule", None), kimg=kimg)
        out_dir = self._out_dir if self._out_dir is not None else Path(trainer.default_root_dir) / "samples"
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            path = out_dir / name
            image.save(path)
            self.paths.append(path)
            self.last_path = path
        if self.log_to_loggers:
            self._log_image(trainer, image, kimg)
        if names[-1] == "final.png":
            rank_zero_info(f"Samples at {kimg:.1f} kimg written to {self.last_path}")

    def _log_image(self, trainer: Trainer, image: Image.Image, kimg: float) -> None:
        """Loggers' steps are ``global_step`` (what their scalars use); the caption carries kimg."""
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                array = np.asarray(image)
                logger.experiment.add_image(self.log_key, array, global_step=trainer.global_step,
                                            dataformats="HW" if array.ndim == 2 else "HWC")
            elif callable(getattr(logger, "log_image", None)):  # WandbLogger and look-alikes
                logger.log_image(key=self.log_key, images=[image], step=trainer.global_step,
                                 caption=[f"kimg {kimg:.1f}"])


def _kimg_name(kimg: float) -> str:
    return f"kimg{kimg:07.1f}.png"


def _full_size(generator: Any, images: Tensor) -> Tensor:
    """A growing generator's images enlarged to its full resolution (pixels repeated), so that grids compare."""
    full = getattr(generator, "full_output_shape", None)
    if full is None or images.shape[-1] == full[-1]:
        return images
    return upsample_to(images, full[-1])


def _generator(pl_module: Any) -> Any:
    """The generator that ``pl_module.sample`` uses: the EMA one when the module has it."""
    generator = getattr(pl_module, "sampling_generator", None)
    return generator if generator is not None else pl_module.generator


def _real_points(datamodule: Any, n: int, seed: int) -> Tensor:
    """A fixed random subset (at most ``n``) of the datamodule's training points, [M, 2]; empty if unavailable."""
    dataset = getattr(datamodule, "train_dataset", None)
    if dataset is None or n <= 0:
        return torch.empty(0, 2)
    rng = torch.Generator().manual_seed(seed)
    x = getattr(dataset, "x", None)
    if isinstance(x, Tensor) and x.dim() == 2 and x.shape[1] == 2:
        index = torch.randperm(len(x), generator=rng)[:n]
        return x[index].float().cpu()
    index = torch.randperm(len(dataset), generator=rng)[:n].tolist()
    items = [dataset[i] for i in index]
    points = [item[0] if isinstance(item, (tuple, list)) else item for item in items]
    return torch.stack([torch.as_tensor(p, dtype=torch.float32).reshape(2) for p in points])
