"""ProgressiveGrowing: train a growable generator/discriminator pair from low to high resolution (ProGAN).

Recipe interface (unchanged from issue 16)::

    trainer:
      callbacks:
        - class_path: lightning_gan.callbacks.ProgressiveGrowing
          init_args:
            schedule:        # one row per resolution, in order; kimg of fade-in, then of stabilization
              - {resolution: 4,  fade_kimg: 0,  stable_kimg: 20}
              - {resolution: 8,  fade_kimg: 20, stable_kimg: 20, batch_size: 32, lr: 0.001}
              - {resolution: 16, fade_kimg: 20, stable_kimg: 20}

Karras et al. 2018 (ProGAN, sec. 2): training starts with both networks at the lowest resolution; each later
stage fades its new blocks in (``alpha`` rising linearly from 0 to 1 over ``fade_kimg`` thousand real images)
and then trains them at full weight for ``stable_kimg``. The architecture must implement the growable
protocol of ``lightning_gan.interfaces`` (``GrowableGenerator`` / ``GrowableDiscriminator``); one that cannot
grow is refused at fit start with one line naming what it lacks.

The table. Rows name the architecture's resolutions in order from its first (the networks' ``resolutions``,
all of them). The first row has nothing to fade from (``fade_kimg: 0``). Row ``i`` starts where the rows
before it end, ``start_i = sum_{j<i} (fade_kimg_j + stable_kimg_j)``; at ``kimg`` in row ``i``,
``alpha = min(1, (kimg - start_i) / fade_kimg_i)`` (1 when ``fade_kimg_i`` is 0). After the last row the run
stays at the full resolution with ``alpha = 1`` (until ``total_kimg``). ``GrowthSchedule.stage_at(kimg)``
is that function. Optional per row: ``batch_size`` (per process, what ``--data.batch_size`` is; a multiple
of ``d_steps``) and ``lr`` (both networks' learning rate, corrected for lazy regularization like the run's
own). A row without them keeps the previous row's values, or the run's own.

Batch sizes the discriminator accepts. A discriminator that needs particular batch sizes (ProGAN's minibatch
standard deviation: groups of ``mbstd_group`` samples must divide the batch) may define
``batch_size_problem(batch_size: int) -> str | None``: None when it accepts batches of that many samples, else
the reason. At fit start every row's batch size (its own, an earlier row's, else the datamodule's
``batch_size``) is split into the ``d_steps`` discriminator steps and asked; a refusal ends the run in one line
naming the row. A discriminator without the method accepts every size.

Determinism. The stage is a pure function of ``GANModule.images_seen``, the real images shown to D by all
processes together: every DDP process switches stage and alpha on the same iteration, and a resumed run (also
one resumed mid-fade) continues with the stage, alpha and learning rate the uninterrupted run had. The
callback keeps no state of its own; the networks' stage buffers travel in the checkpoint anyway. Before every
iteration (and again after each, for the data's next batch) it sets the stage of G, D and the EMA generator.

Real images: the datamodule serves them at the stage (``lightning_gan.data.base.ProgressiveData``, a mixin of
every built-in datamodule): the full-resolution images box-filtered down (``ops.growth.downsample_to``,
``downsample_average`` repeated, as ProGAN built its lower resolutions) and, during a fade, blended with their
half-resolution version like the generator's output (``ops.growth.real_images_at``, the paper's "interpolate
between two resolutions of the real images"). Per-stage batch sizes come from a batch sampler that reads the
global image count (``StageBatchSampler``; the Trainer then reloads the training loader every epoch, so that
Lightning re-reads the epoch's length); kimg keeps counting the real images exactly.

Optimizer state of parameters that become active (chosen: they start fresh, nothing is reset). A block not yet
in use (and an RGB layer no longer in use) takes no part in the forward pass, so after
``zero_grad(set_to_none=True)`` its gradient stays None and Adam skips it: no moments, no step count. When the
block fades in (its first iteration with ``alpha > 0``) Adam starts its state from zero with bias correction, as
for a new parameter, while the blocks trained so far keep their moments: resetting them would throw away
valid second-moment estimates and make every parameter take full-size first steps at once, just as the new
block joins at weight near 0. ``tests/unit/test_progressive.py`` checks the step counts.

Visibility. On the iterations GANModule logs its losses (every ``log_every_n_iterations``, else the Trainer's
``log_every_n_steps``) the callback logs the stage after the iteration, ``progressive/resolution`` and
``progressive/alpha``: the same row of the logger (``metrics.csv``) as ``progress/kimg``, so that
``alpha = (kimg - start_i) / fade_kimg_i`` can be read off it. ``GANProgressBar`` shows them as ``res`` and
``alpha``.

Metrics and sample grids follow the stage: a growable generator below its last stage is evaluated with its
images enlarged to the full resolution by pixel repetition (``ops.growth.at_full_resolution``: exactly what
the grown generator makes at alpha 0 of every later stage), so real-data statistics are computed once, at full
resolution, and figures from every stage compare against the same target; grids are enlarged alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import Any, NamedTuple

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from lightning_gan.errors import ConfigError
from lightning_gan.interfaces import require_growable
from lightning_gan.phases import lazy_ratio

__all__ = ["GrowthRow", "GrowthSchedule", "GrowthStage", "ProgressiveGrowing"]

_KEYS = ("resolution", "fade_kimg", "stable_kimg", "batch_size", "lr")
_REQUIRED = ("resolution", "fade_kimg", "stable_kimg")


class GrowthStage(NamedTuple):
    """A stage of the growth: the resolution and the weight of its new block."""

    resolution: int
    alpha: float


class GrowthRow(NamedTuple):
    """One row of the schedule table (``batch_size`` / ``lr`` None: keep the previous ones)."""

    resolution: int
    fade_kimg: float
    stable_kimg: float
    batch_size: int | None = None
    lr: float | None = None


def _number(value: Any, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"ProgressiveGrowing schedule {where}: {key} must be a non-negative number of kimg, "
                          f"got {value!r}")
    return float(value)


def _row(raw: Any, index: int) -> GrowthRow:
    where = f"row {index + 1}"
    if isinstance(raw, GrowthRow):
        raw = raw._asdict()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"ProgressiveGrowing schedule {where} must be a mapping like "
                          f"{{resolution: 8, fade_kimg: 20, stable_kimg: 20}}, got {raw!r}")
    unknown = [k for k in raw if k not in _KEYS]
    if unknown:
        raise ConfigError(f"ProgressiveGrowing schedule {where} has unknown key(s) {', '.join(map(str, unknown))}; "
                          f"the keys are {', '.join(_KEYS)}")
    missing = [k for k in _REQUIRED if raw.get(k) is None]
    if missing:
        raise ConfigError(f"ProgressiveGrowing schedule {where} lacks {', '.join(missing)}; every row needs "
                          f"resolution, fade_kimg and stable_kimg")
    resolution = raw["resolution"]
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ConfigError(f"ProgressiveGrowing schedule {where}: resolution must be a positive integer, "
                          f"got {resolution!r}")
    where = f"{where} (resolution {resolution})"
    batch_size, lr = raw.get("batch_size"), raw.get("lr")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ConfigError(f"ProgressiveGrowing schedule {where}: batch_size must be a positive integer, "
                          f"got {batch_size!r}")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr)
                           or lr <= 0):
        raise ConfigError(f"ProgressiveGrowing schedule {where}: lr must be a positive number, got {lr!r}")
    return GrowthRow(resolution, _number(raw["fade_kimg"], where, "fade_kimg"),
                     _number(raw["stable_kimg"], where, "stable_kimg"), batch_size,
                     None if lr is None else float(lr))


class GrowthSchedule:
    """The schedule table: rows of ``(resolution, fade_kimg, stable_kimg[, batch_size][, lr])``, validated.

    ``stage_at(kimg)`` / ``stage_at_images(n)`` give the stage, ``batch_size_at_images`` and ``lr_at_images``
    the per-stage settings (None: the run's own). See the module docstring for the formula.
    """

    def __init__(self, rows: Sequence[Mapping[str, Any] | GrowthRow]) -> None:
        if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Sequence) or not rows:
            raise ConfigError("ProgressiveGrowing needs a schedule: a list with one row per resolution, e.g. "
                              "[{resolution: 4, fade_kimg: 0, stable_kimg: 20}, {resolution: 8, fade_kimg: 20, "
                              "stable_kimg: 20}]")
        self.rows: tuple[GrowthRow, ...] = tuple(_row(raw, i) for i, raw in enumerate(rows))
        stages = [r.resolution for r in self.rows]
        for previous, row in zip(self.rows, self.rows[1:]):
            if row.resolution != 2 * previous.resolution:
                raise ConfigError(f"ProgressiveGrowing schedule: each row's resolution must double the one before "
                                  f"(e.g. 4, 8, 16), got {', '.join(map(str, stages))}")
        first = self.rows[0]
        if first.fade_kimg:
            raise ConfigError(f"ProgressiveGrowing schedule row 1 (resolution {first.resolution}) is the first "
                              f"stage and has nothing to fade from; set its fade_kimg to 0")
        for i, row in enumerate(self.rows[:-1]):
            if row.fade_kimg + row.stable_kimg <= 0:
                raise ConfigError(f"ProgressiveGrowing schedule row {i + 1} (resolution {row.resolution}) lasts 0 "
                                  f"kimg; give it fade_kimg or stable_kimg > 0 (only the last row may be empty)")
        # row boundaries in images (the run counts whole images; kimg * 1000, rounded)
        self._fade = [round(r.fade_kimg * 1000) for r in self.rows]
        self._starts = [0]
        for r in self.rows[:-1]:
            self._starts.append(self._starts[-1] + round(r.fade_kimg * 1000) + round(r.stable_kimg * 1000))

    @property
    def resolutions(self) -> tuple[int, ...]:
        """The rows' resolutions, in order."""
        return tuple(r.resolution for r in self.rows)

    @property
    def total_kimg(self) -> float:
        """Where the table ends: the full resolution is reached and stable (the last row's stable_kimg included)."""
        last = self.rows[-1]
        return (self._starts[-1] + round(last.fade_kimg * 1000) + round(last.stable_kimg * 1000)) / 1000.0

    def start_kimg(self, index: int) -> float:
        """The kimg at which row ``index`` (0-based) begins its fade-in."""
        return self._starts[index] / 1000.0

    def row_index_at_images(self, images: float) -> int:
        """The row that ``images`` real images into the run fall in (0-based)."""
        index = 0
        for i, start in enumerate(self._starts):
            if images >= start:
                index = i
        return index

    def stage_at_images(self, images: float) -> GrowthStage:
        """The stage after ``images`` real images: ``(resolution, alpha)``."""
        i = self.row_index_at_images(images)
        fade = self._fade[i]
        alpha = 1.0 if fade == 0 else min(1.0, (images - self._starts[i]) / fade)
        return GrowthStage(self.rows[i].resolution, float(alpha))

    def stage_at(self, kimg: float) -> GrowthStage:
        """The stage after ``kimg`` thousand real images: ``(resolution, alpha)``."""
        return self.stage_at_images(kimg * 1000.0)

    def _setting_at(self, images: float, key: str) -> Any:
        for row in reversed(self.rows[:self.row_index_at_images(images) + 1]):
            value = getattr(row, key)
            if value is not None:
                return value
        return None

    def batch_size_at_images(self, images: float) -> int | None:
        """Per-process batch size after ``images`` images: the row's, an earlier row's, or None (the data's own)."""
        return self._setting_at(images, "batch_size")

    def lr_at_images(self, images: float) -> float | None:
        """Learning rate after ``images`` images: the row's, an earlier row's, or None (the run's own)."""
        return self._setting_at(images, "lr")

    @property
    def has_batch_sizes(self) -> bool:
        return any(r.batch_size is not None for r in self.rows)

    def check(self, resolutions: Sequence[int], *, architecture: str = "the architecture", d_steps: int = 1,
              batch_size_problem: Callable[[int], str | None] | None = None, data_batch_size: int | None = None,
              discriminator: str = "the discriminator") -> None:
        """Raise a one-line ``ConfigError`` unless the rows are ``resolutions`` and every stage's batch suits D.

        Each row's batch size (its own, an earlier row's, else ``data_batch_size``) must split into ``d_steps``
        equal discriminator steps, and ``batch_size_problem(batch_size / d_steps)`` (the discriminator's, when
        it has one: module docstring) must return None.
        """
        resolutions = tuple(int(r) for r in resolutions)
        if self.resolutions != resolutions:
            raise ConfigError(f"ProgressiveGrowing schedule resolutions {', '.join(map(str, self.resolutions))} must "
                              f"be {architecture}'s stages in order from its first: "
                              f"{', '.join(map(str, resolutions))} (one row each)")
        size, source = data_batch_size, "the data"
        for i, row in enumerate(self.rows):
            where = f"ProgressiveGrowing schedule row {i + 1} (resolution {row.resolution})"
            own = row.batch_size is not None
            if own:
                size, source = row.batch_size, f"row {i + 1}"
            if size is None:
                continue
            what = f"batch_size {size}" + ("" if own else f" (from {source})")
            if size % d_steps:
                raise ConfigError(f"{where}: {what} cannot be split into --model.d_steps={d_steps} equal "
                                  f"discriminator steps; use a multiple of {d_steps}")
            problem = batch_size_problem(size // d_steps) if batch_size_problem is not None else None
            if problem:
                per_step = f" ({size // d_steps} per discriminator step)" if d_steps > 1 else ""
                raise ConfigError(f"{where}: {what}{per_step} does not suit {discriminator}: {problem}")

    def __repr__(self) -> str:
        return f"GrowthSchedule({[r._asdict() for r in self.rows]})"


class _BatchPlan:
    """What ``StageBatchSampler`` reads: the run's image count, the number of processes, the schedule's sizes."""

    def __init__(self, schedule: GrowthSchedule, module: Any, trainer: Trainer) -> None:
        self.schedule, self.module, self.trainer = schedule, module, trainer

    @property
    def world_size(self) -> int:
        return int(self.trainer.world_size)

    def images_seen(self) -> int:
        return int(self.module.images_seen)

    def batch_size_at(self, images: int) -> int | None:
        return self.schedule.batch_size_at_images(images)


class ProgressiveGrowing(Callback):
    """Grows a growable generator/discriminator pair through ``schedule`` (see the module docstring).

    Args:
        schedule: one row per resolution, in order from the architecture's first:
            ``{resolution, fade_kimg, stable_kimg}`` with optional ``batch_size`` (per process) and ``lr``.
    """

    def __init__(self, *, schedule: Sequence[Mapping[str, Any]]) -> None:
        super().__init__()
        self.schedule = GrowthSchedule(schedule)
        self._applied: tuple[GrowthStage, int] | None = None  # (stage, row) last set, to skip repeats
        self._datamodule: Any = None
        self._reload: int | None = None  # the Trainer's own reload_dataloaders_every_n_epochs while we override it

    @cached_property
    def state_key(self) -> str:
        return self._generate_state_key(resolutions=self.schedule.resolutions)

    @property
    def stage(self) -> GrowthStage | None:
        """The stage last set on the networks (None before the fit starts)."""
        return None if self._applied is None else self._applied[0]

    # -- hooks ------------------------------------------------------------------------------------
    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        generator = getattr(pl_module, "generator", None)
        discriminator = getattr(pl_module, "discriminator", None)
        if generator is None or discriminator is None:
            raise ConfigError(f"ProgressiveGrowing needs a GANModule-like module with generator and discriminator; "
                              f"{type(pl_module).__name__} has none")
        spec = getattr(pl_module, "spec", None)
        name = type(spec).__name__ if spec is not None else None
        require_growable(generator, discriminator, architecture=name)
        datamodule = getattr(trainer, "datamodule", None)
        data_batch_size = getattr(datamodule, "batch_size", None)
        self.schedule.check(generator.resolutions, d_steps=int(getattr(pl_module, "d_steps", 1)),
                            architecture=f"architecture {name}" if name else "the architecture",
                            batch_size_problem=getattr(discriminator, "batch_size_problem", None),
                            data_batch_size=data_batch_size if isinstance(data_batch_size, int) else None,
                            discriminator=type(discriminator).__name__)
        if datamodule is None or not callable(getattr(datamodule, "serve_stage", None)):
            what = "no datamodule" if datamodule is None else f"datamodule {type(datamodule).__name__}"
            raise ConfigError(f"ProgressiveGrowing needs a datamodule that serves images at the stage's resolution, "
                              f"got {what}; use a built-in datamodule or add lightning_gan.data.base.ProgressiveData "
                              f"to yours")
        if self.schedule.has_batch_sizes:
            if not hasattr(datamodule, "batch_plan"):
                raise ConfigError(f"The growth schedule sets batch sizes but datamodule {type(datamodule).__name__} "
                                  f"cannot batch by stage; add lightning_gan.data.base.ProgressiveData to it and "
                                  f"return self.staged_loader(loader) from train_dataloader, or drop batch_size")
            datamodule.batch_plan = _BatchPlan(self.schedule, pl_module, trainer)
            # the epoch's length changes with the batch size: Lightning re-reads it when it reloads the loader
            if self._reload is None:
                self._reload = trainer.reload_dataloaders_every_n_epochs
            trainer.reload_dataloaders_every_n_epochs = 1
        self._datamodule = datamodule
        self._applied = None
        # Until training starts, the pair is the full-resolution pair: GANModule checks it against the data.
        for net in self._networks(pl_module):
            net.set_stage(generator.resolutions[-1], 1.0)

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for optimizer in trainer.optimizers:  # the run's own learning rate, kept in the (saved) param groups
            for group in optimizer.param_groups:
                group.setdefault("growth_run_lr", group["lr"])
        self._applied = None
        self._apply(trainer, pl_module)

    @override
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._apply(trainer, pl_module)

    @override
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._apply(trainer, pl_module)  # the next batch is transferred (and resized) before the next batch start
        self._log_stage(trainer, pl_module)

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if self._datamodule is not None:
            self._datamodule.serve_stage(None)
            if hasattr(self._datamodule, "batch_plan"):
                self._datamodule.batch_plan = None
        if self._reload is not None:
            trainer.reload_dataloaders_every_n_epochs = self._reload
            self._reload = None
        self._datamodule = None

    # -- the stage ----------------------------------------------------------------------------------
    @staticmethod
    def _networks(pl_module: Any) -> list[Any]:
        nets = [pl_module.generator, pl_module.discriminator]
        ema = getattr(pl_module, "generator_ema", None)
        return nets + ([ema] if ema is not None else [])

    def _apply(self, trainer: Trainer, pl_module: Any) -> None:
        """Set the stage (and the row's learning rate) that ``pl_module.images_seen`` calls for."""
        images = int(pl_module.images_seen)
        stage = self.schedule.stage_at_images(images)
        row = self.schedule.row_index_at_images(images)
        if self._applied is not None and self._applied == (stage, row):
            return
        for net in self._networks(pl_module):
            net.set_stage(*stage)
        if self._datamodule is not None:
            self._datamodule.serve_stage(*stage)
        if self._applied is None or self._applied[1] != row:
            self._set_lr(trainer, pl_module, images)
        self._applied = (stage, row)

    def _log_stage(self, trainer: Trainer, pl_module: Any) -> None:
        """Log the stage with GANModule's training figures: on the iterations it logs its losses on."""
        if self._applied is None or not isinstance(pl_module, LightningModule):
            return
        interval = getattr(pl_module, "log_every_n_iterations", None) or max(1, trainer.log_every_n_steps)
        if int(getattr(pl_module, "iteration", 0)) % interval:
            return
        resolution, alpha = self._applied[0]
        # a pure function of the global image count: the same on every process, no reduction needed
        pl_module.log_dict({"progressive/resolution": float(resolution), "progressive/alpha": float(alpha)},
                           prog_bar=True, on_step=True, on_epoch=False, batch_size=1)

    def _set_lr(self, trainer: Trainer, pl_module: Any, images: int) -> None:
        lr = self.schedule.lr_at_images(images)
        phases = getattr(pl_module, "schedule", None)
        for optimizer, network in zip(trainer.optimizers, ("discriminator", "generator")):  # GANModule's order
            ratio = lazy_ratio(phases.interval(network), phases.main_steps(network)) if phases is not None else 1.0
            for group in optimizer.param_groups:
                run_lr = group.setdefault("growth_run_lr", group["lr"])
                group["lr"] = run_lr if lr is None else lr * ratio
