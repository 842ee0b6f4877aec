"""OverfittingMonitor: is the discriminator memorizing the training images? D's outputs on held-out reals tell.

A discriminator trained on a few hundred or thousand images learns to tell *those* images apart from everything
else: its outputs on real images it never trained on drift from its outputs on the training images towards its
outputs on generated ones (Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data",
fig. 1), and the generator gets worse from then on. Every ``every_n_kimg`` thousand images this callback runs the
discriminator (in eval mode, without gradient, without augmentation) on three fixed sets:

* ``train``: ``num_images`` training images (drawn once, with ``seed``);
* ``heldout``: up to ``num_images`` real images kept out of training (the datamodule's ``heldout_dataset``,
  ``--data.init_args.holdout=N``);
* ``fake``: ``num_images`` samples of the trained generator (fixed latents, eval mode),

and logs, under ``overfit/``, D's mean output on each (``d_train``, ``d_heldout``, ``d_fake``), the share each
puts on its correct side of 0 (``acc_train``, ``acc_heldout``: D(x) > 0; ``acc_fake``: D(G(z)) < 0), the gap
``gap = d_train - d_heldout``, the scale-free overfitting heuristic ``r_v`` of the same paper (eq. 1),

    ``relative_gap = (d_train - d_heldout) / (d_train - d_fake)``:

0 when held-out reals look to D like training reals, 1 when they look like generated images, and how well D
tells the training reals from the fakes,

    ``separation = P(D(x_train) > D(G(z)))`` over all pairs of the two sets (ties count one half):

0.5 when D cannot tell them apart, 1 when it ranks every training real above every fake. The ratio means
something only while D separates the two: with D's outputs on reals and fakes a hair apart (it happens early, and
whenever G catches up) it is noise divided by noise and can read 300% or -50%. So the monitor warns once, on one
line, when ``relative_gap`` passes ``threshold`` (0.5 by default: held-out reals are judged closer to fakes than
to the training set) *and* ``separation`` is at least ``min_separation`` (0.75 by default). The history is kept
in the callback's state (checkpoints) and drawn as ``overfitting.png`` (D's outputs over kimg) in the run's log
folder at the end of fit. Under DDP every process measures the same images
with the same (synchronized) weights; rank 0 writes and warns.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from typing_extensions import override

from lightning_gan.callbacks._periodic import log_measurement, next_multiple, reached
from lightning_gan.errors import ConfigError

__all__ = ["OverfittingMonitor", "overfitting_figures", "separation"]

_EPS = 1e-9


def overfitting_figures(d_train: Tensor, d_heldout: Tensor, d_fake: Tensor) -> dict[str, float]:
    """The monitor's figures from D's logits on training reals, held-out reals and fakes (1-D tensors)."""
    train, heldout, fake = (float(t.float().mean()) for t in (d_train, d_heldout, d_fake))
    spread = train - fake
    return {
        "d_train": train, "d_heldout": heldout, "d_fake": fake,
        "acc_train": float((d_train > 0).float().mean()), "acc_heldout": float((d_heldout > 0).float().mean()),
        "acc_fake": float((d_fake < 0).float().mean()),
        "gap": train - heldout,
        "relative_gap": (train - heldout) / spread if abs(spread) > _EPS else math.nan,
        "separation": separation(d_train, d_fake),
    }


def separation(higher: Tensor, lower: Tensor) -> float:
    """``P(a > b)`` for ``a`` drawn from ``higher`` and ``b`` from ``lower`` (1-D tensors), ties counted one half: the
    area under the ROC curve of a threshold on D's output (Mann-Whitney)."""
    a, b = higher.double()[:, None], lower.double()[None, :]
    return float(((a > b).double() + 0.5 * (a == b).double()).mean())


def _fetch(dataset: Any, indices: list[int]) -> tuple[Tensor, Tensor | None]:
    """Images (and labels, if any) of ``indices``: one batched read where the dataset offers it."""
    getitems = getattr(dataset, "__getitems__", None)
    items = getitems(indices) if getitems is not None else [dataset[i] for i in indices]
    if isinstance(items, tuple) and len(items) == 2 and isinstance(items[0], Tensor):
        return items[0], items[1]
    if isinstance(items, Tensor):
        return items, None
    first = items[0]
    if isinstance(first, (tuple, list)):
        return torch.stack([it[0] for it in items]), torch.stack([torch.as_tensor(it[1]) for it in items])
    return torch.stack(list(items)), None


class OverfittingMonitor(Callback):
    """Logs D's outputs on training reals, held-out reals and fakes, and warns when D memorizes (module docstring).

    Args:
        every_n_kimg: measure each time this many thousand images have been shown (and at the start).
        num_images: images in each of the three sets (the held-out set may be smaller).
        threshold: warn when ``relative_gap`` exceeds it (and D separates reals from fakes, ``min_separation``).
        min_separation: the smallest ``separation`` (D's ranking of training reals above fakes, 0.5 to 1) at which
            ``relative_gap`` is trusted.
        batch_size: images per discriminator forward pass.
        seed: seed of the training subset and the generator's latents.
    """

    def __init__(self, *, every_n_kimg: float = 5.0, num_images: int = 256, threshold: float = 0.5,
                 min_separation: float = 0.75, batch_size: int = 64, seed: int = 0) -> None:
        super().__init__()
        if every_n_kimg <= 0:
            raise ValueError(f"every_n_kimg must be > 0, got {every_n_kimg}")
        if num_images < 2 or batch_size < 1:
            raise ValueError(f"num_images must be >= 2 and batch_size >= 1, got {num_images} and {batch_size}")
        if not 0.5 <= min_separation <= 1:
            raise ValueError(f"min_separation must be in [0.5, 1], got {min_separation}")
        self.min_separation = float(min_separation)
        self.every_n_kimg, self.num_images, self.threshold = float(every_n_kimg), int(num_images), float(threshold)
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.next_kimg = 0.0
        self.warned = False
        self.history: list[dict[str, float]] = []  # one entry per measurement, with its kimg
        self._sets: dict[str, tuple[Tensor, Tensor | None]] | None = None
        self.plot_path: Path | None = None

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        datamodule = trainer.datamodule
        if getattr(datamodule, "heldout_dataset", None) is None and hasattr(datamodule, "setup"):
            datamodule.setup("fit")
        heldout = getattr(datamodule, "heldout_dataset", None)
        if heldout is None or len(heldout) < 2:
            raise ConfigError(
                f"OverfittingMonitor compares D's outputs on training and held-out real images, but "
                f"{type(datamodule).__name__} holds no held-out images: keep some out of training with "
                f"--data.init_args.holdout=N (e.g. 200)")

    def _images(self, trainer: Trainer, pl_module: Any) -> dict[str, tuple[Tensor, Tensor | None]]:
        """The fixed real sets (read once), on the module's device."""
        if self._sets is None:
            datamodule = trainer.datamodule
            train, heldout = datamodule.train_dataset, datamodule.heldout_dataset
            rng = torch.Generator().manual_seed(self.seed)
            picks = torch.randperm(len(train), generator=rng)[:self.num_images].sort().values.tolist()
            sets = {"train": _fetch(train, picks),
                    "heldout": _fetch(heldout, list(range(min(self.num_images, len(heldout)))))}
            self._sets = {name: (x.to(pl_module.device), None if y is None else y.to(pl_module.device))
                          for name, (x, y) in sets.items()}
        return self._sets

    def _logits(self, pl_module: Any, images: Tensor, conditions: Tensor | None) -> Tensor:
        d = pl_module.discriminator
        out = []
        for start in range(0, images.shape[0], self.batch_size):
            x = images[start:start + self.batch_size]
            c = None if conditions is None else conditions[start:start + self.batch_size]
            out.append(d(x, c).float())
        return torch.cat(out)

    def _conditions(self, pl_module: Any, labels: Tensor | None, n: int) -> Tensor | None:
        c_dim = pl_module.generator.c_dim
        if not c_dim:
            return None
        if labels is None or labels.dim() != 1:
            labels = torch.arange(n, device=pl_module.device) % c_dim
        return torch.nn.functional.one_hot(labels.long(), c_dim).float()

    def measure(self, trainer: Trainer, pl_module: Any) -> dict[str, float]:
        """D's figures now (module docstring); global RNG state and every module's mode left as they were."""
        sets = self._images(trainer, pl_module)
        g, d = pl_module.generator, pl_module.discriminator
        modes = (g.training, d.training)
        device = pl_module.device
        try:
            g.eval()
            d.eval()
            with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(self.seed)
                logits = {}
                for name, (x, y) in sets.items():
                    logits[name] = self._logits(pl_module, x, self._conditions(pl_module, y, x.shape[0]))
                n = sets["train"][0].shape[0]
                z = g.sample_latents(n, generator=torch.Generator(device=device).manual_seed(self.seed), device=device)
                c = self._conditions(pl_module, sets["train"][1], n)
                fakes = torch.cat([g(z[i:i + self.batch_size], None if c is None else c[i:i + self.batch_size])
                                   for i in range(0, n, self.batch_size)])
                logits["fake"] = self._logits(pl_module, fakes, c)
        finally:
            g.train(modes[0])
            d.train(modes[1])
        return overfitting_figures(logits["train"], logits["heldout"], logits["fake"])

    @override
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        kimg = float(getattr(pl_module, "kimg", 0.0))
        if not reached(kimg, self.next_kimg):
            return
        self.next_kimg = next_multiple(kimg, self.every_n_kimg)
        figures = self.measure(trainer, pl_module)
        self.history.append({"kimg": kimg, **figures})
        log_measurement(trainer, pl_module, {f"overfit/{k}": v for k, v in figures.items() if math.isfinite(v)})
        relative = figures["relative_gap"]
        separates = figures["d_train"] > figures["d_fake"] and figures["separation"] >= self.min_separation
        if not self.warned and separates and math.isfinite(relative) and relative > self.threshold:
            self.warned = True
            rank_zero_warn(
                f"D is memorizing the training images: at {kimg:.1f} kimg it scores held-out reals {relative:.0%} of "
                f"the way from the training reals ({figures['d_train']:.3g}) to the fakes ({figures['d_fake']:.3g}); "
                f"try --model.augment=ada")

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        log_dir = trainer.log_dir
        if not trainer.is_global_zero or not log_dir or len(self.history) < 2:
            return
        from lightning_gan.analysis.plots import line_plot

        kimg = [h["kimg"] for h in self.history]
        series = {name: (kimg, [h[f"d_{name}"] for h in self.history]) for name in ("train", "heldout", "fake")}
        self.plot_path = Path(log_dir) / "overfitting.png"
        line_plot(series, self.plot_path, "kimg", "mean D output", "D on training reals, held-out reals and fakes",
                  hlines=[0.0])

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"next_kimg": self.next_kimg, "warned": self.warned, "history": [dict(h) for h in self.history]}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.next_kimg = float(state_dict["next_kimg"])
        self.warned = bool(state_dict["warned"])
        self.history = [dict(h) for h in state_dict.get("history", [])]
