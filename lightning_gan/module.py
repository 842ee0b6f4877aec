"""GANModule: the LightningModule that trains a generator/discriminator pair, phase by phase.

The networks, loss and regularizers are plain objects built from the registry; this module only
orchestrates: manual optimization with one optimizer per network, the phase schedule of
``phases.PhaseSchedule`` (Dmain, Dreg, Gmain, Greg with lazy intervals and the Adam correction;
``d_steps`` D steps per iteration, each on its own chunk of the loader's batch), image/iteration
counters of its own (never ``trainer.global_step``, which counts every optimizer step; kimg counts
every real image shown to D), a G-only EMA with a half-life in kimg, gradient synchronisation per phase
under DDP, and checkpoints that hold everything needed to continue the run (counters and every RNG included).

Run-time contracts: the first iteration of every fit checks the shapes of the generator's output (against
its ``output_shape`` and the data) and of the discriminator's logits ([N]) before they are used, and the
finiteness of the real batch, the fakes, the logits and the losses (one host sync, once). After that,
losses and penalties are summed on the device; the sums are checked for NaN/inf at every log, when the run
stops, at epoch and validation ends and before ``on_train_end`` reports metrics (no per-step host sync;
under DDP the verdict is all-reduced, so every process stops together). Violations raise ``ContractError``
or ``NonFiniteError``, both ``ConfigError``: the CLI shows one line and exits non-zero.
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from lightning_gan import registry
from lightning_gan.checkpoint import datamodule_config, plugin_distributions
from lightning_gan.ema import ema_beta, update_ema
from lightning_gan.errors import ConfigError, condition_mismatch, shape_mismatch
from lightning_gan.interfaces import (
    AdversarialLoss,
    ArchitectureSpec,
    Augmentation,
    ContractError,
    Discriminator,
    Generator,
    NetworkName,
    PenaltyInputs,
    Regularizer,
    SyncableBatchNorm,
)
from lightning_gan.metrics.base import EvaluationContext, GeneratorMetric
from lightning_gan.metrics.selection import data_default_metrics, setup_metrics
from lightning_gan.ops.growth import at_full_resolution
from lightning_gan.ops.truncation import TruncatedGenerator
from lightning_gan.phases import Phase, PhaseSchedule
from lightning_gan.precision.plugins import GANPrecision
from lightning_gan.preemption import DeferredSignal

__all__ = ["GANModule", "NonFiniteError"]

_CKPT_KEY = "lightning_gan"
_CKPT_VERSION = 1


class NonFiniteError(ConfigError, FloatingPointError):
    """Training produced NaN/inf (data, generator output, logits or a loss); the run stops where it was found."""


def _default_optimizer(params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """Adam(lr 0.002, betas (0, 0.99), eps 1e-8), fused (one kernel for all tensors) on CPU and CUDA."""
    params = list(params)
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=0.002, betas=(0.0, 0.99), eps=1e-8, fused=fused or None)


class GANModule(LightningModule):
    """Trains a generator and a discriminator with manual optimization, phase by phase.

    Args:
        architecture: the generator/discriminator builder: an ``ArchitectureSpec``, a registered name
            (``"mlp"``, ``"dcgan"``) or its config mapping ``{"class_path", "init_args"}``.
        loss: the adversarial loss, an object or a registered name (``"hinge"``).
        regularizers: penalties with their weight and interval (``R1(gamma=10, interval=16)``, ``"r1"``).
        g_optimizer: builds the generator's optimizer from its parameters (default Adam, lr 0.002,
            betas (0, 0.99)); corrected for lazy regularization.
        d_optimizer: the same for the discriminator.
        ema_kimg: half-life of the generator EMA in thousands of images; None or 0 turns the EMA off.
        ema_rampup: caps the half-life at ``ema_rampup * images seen`` early on; None for no ramp-up.
        total_kimg: stop training after this many thousand images (all processes together); None = never.
        metrics: evaluated on the EMA generator at validation, test and the end of fit (objects or registered
            names: ``fid``, ``shapes``, ...); None uses the datamodule's defaults (e.g. mode coverage for
            toy2d), ``[]`` none. Each metric's ``setup`` runs when fit/validate/test starts, so missing
            weights stop the run before training.
        log_every_n_iterations: average and log phase losses every this many iterations (no per-step
            host sync); None follows the Trainer's ``log_every_n_steps`` so that every value reaches the logger.
        seed: seed of the training latents (offset by the process rank).
        d_steps: discriminator steps per iteration (BigGAN 2, WGAN-GP 5). The loader's batch is split into
            ``d_steps`` equal chunks, one per D step, so the data's ``batch_size`` counts the real images of a
            whole iteration and must be a multiple of ``d_steps`` (see ``lightning_gan.phases``).
        augment: a differentiable augmentation of every image the discriminator sees (``ada``, ``diffaugment``;
            an ``Augmentation`` or a registered name), for small datasets; None: none. See ``Augmentation``.
    """

    def __init__(
        self,
        *,
        architecture: ArchitectureSpec | str,
        loss: AdversarialLoss | str = "non_saturating",
        regularizers: Sequence[Regularizer | str] | None = None,
        g_optimizer: OptimizerCallable | None = None,
        d_optimizer: OptimizerCallable | None = None,
        ema_kimg: float | None = 10.0,
        ema_rampup: float | None = 0.05,
        total_kimg: float | None = None,
        metrics: Sequence[GeneratorMetric | str] | None = None,
        log_every_n_iterations: int | None = None,
        seed: int = 0,
        d_steps: int = 1,
        augment: Augmentation | str | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.spec: ArchitectureSpec = registry.resolve("architectures", architecture)
        self.loss_fn: AdversarialLoss = registry.resolve("losses", loss)
        pair = self.spec.build()
        self.generator: Generator = pair.generator
        self.discriminator: Discriminator = pair.discriminator
        _check_networks(self.generator, self.discriminator, self.spec)
        self.regularizers = torch.nn.ModuleList([registry.resolve("regularizers", r) for r in regularizers or ()])
        self.schedule = PhaseSchedule(self.regularizers, d_steps=d_steps)
        self.d_steps = d_steps
        # D sees T(x) for every image x in every phase; a child module, so its state (ADA's p) is checkpointed
        self.augment: Augmentation | None = None if augment is None else registry.resolve("augmentations", augment)

        if ema_kimg is not None and ema_kimg < 0:
            raise ValueError(f"ema_kimg must be >= 0 or None, got {ema_kimg}")
        self.ema_kimg = ema_kimg or None
        self.ema_rampup = ema_rampup
        self.generator_ema: Generator | None = None
        if self.ema_kimg:
            self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)

        self.g_optimizer = g_optimizer or _default_optimizer
        self.d_optimizer = d_optimizer or _default_optimizer
        self.total_kimg = total_kimg
        self.metrics = None if metrics is None else [registry.resolve("metrics", m) for m in metrics]
        self._eval_context = EvaluationContext()  # real-data features are computed once per run
        self._default_metrics: list[GeneratorMetric] | None = None
        if log_every_n_iterations is not None and log_every_n_iterations < 1:
            raise ValueError(f"log_every_n_iterations must be >= 1 or None, got {log_every_n_iterations}")
        self.log_every_n_iterations = log_every_n_iterations
        self._log_interval = log_every_n_iterations or 50
        self.seed = int(seed)

        # Counters of the run (saved in checkpoints); `global_step` counts optimizer steps instead.
        self.iteration = 0
        self.images_seen = 0
        self.final_metrics: dict[str, float] = {}
        self.metric_notes: dict[str, str] = {}  # text that goes with the numbers (GeneratorMetric.notes)
        self.metrics_path: Path | None = None  # where on_train_end wrote them (global rank 0)
        self._latent_rng: torch.Generator | None = None
        self._augment_rng: torch.Generator | None = None  # each process draws its own transforms
        self._pending_rng_state: dict[str, Any] | None = None
        self._loss_sums: dict[str, Tensor] = {}
        self._loss_counts: dict[str, int] = {}
        self._clean_through = -1  # the last iteration known to be finite (for messages)
        self._first_check = True  # the run-time contracts are checked on the first iteration of each fit
        self._first_flags: dict[str, Tensor] = {}  # what must be finite on that iteration -> all-finite flag
        self._trainable: NetworkName | None = None
        self._ddp = False
        self._preemption = DeferredSignal()  # SLURM's requeue signal, handled between two iterations
        self._save_plain_hparams(self.metrics)

    # -- construction helpers ---------------------------------------------------------------
    def _save_plain_hparams(self, metrics: Sequence[GeneratorMetric] | None) -> None:
        """Hyperparameters as plain data (checkpoints load with ``weights_only=True``)."""
        self.save_hyperparameters({
            "architecture": self.spec.config(),
            "loss": self.loss_fn.config(),
            "regularizers": [r.config() for r in self.regularizers],
            "ema_kimg": self.ema_kimg,
            "ema_rampup": self.ema_rampup,
            "total_kimg": self.total_kimg,
            "metrics": None if metrics is None else [m.config() for m in metrics],
            "log_every_n_iterations": self.log_every_n_iterations,
            "seed": self.seed,
            "d_steps": self.d_steps,
            "augment": None if self.augment is None else self.augment.config(),
        })

    def add_regularizer(self, regularizer: Regularizer | str) -> Regularizer:
        """Add a penalty to the phase schedule; only before the optimizers are built (e.g. in ``setup``)."""
        if self._trainer is not None and self.trainer.optimizers:
            raise RuntimeError("Regularizers must be added before training starts (the optimizers are corrected for them)")
        reg = registry.resolve("regularizers", regularizer)
        self.regularizers.append(reg)
        self.schedule = PhaseSchedule(self.regularizers, d_steps=self.d_steps)
        self.hparams["regularizers"] = [r.config() for r in self.regularizers]
        return reg

    # -- public API ---------------------------------------------------------------------------
    @property
    def kimg(self) -> float:
        """Thousands of real images shown to the discriminator so far (all processes)."""
        return self.images_seen / 1000.0

    @property
    def sampling_generator(self) -> Generator:
        """The generator used for samples and metrics: the EMA one when enabled."""
        return self.generator_ema if self.generator_ema is not None else self.generator

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        return self.sampling_generator(z, c)

    @contextlib.contextmanager
    def _evaluating(self, seed: int | None = None) -> Iterator[Generator]:
        """The sampling generator in eval mode, under no_grad, with the global RNG state restored after."""
        gen = self.sampling_generator
        was_training = gen.training
        device = self.device
        gen.eval()
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                if seed is not None:
                    torch.manual_seed(seed)  # e.g. noise inputs drawn inside the generator
                yield gen
        finally:
            gen.train(was_training)

    def sample(self, n: int, *, seed: int = 0, labels: Tensor | None = None,
               truncation: float | None = None) -> Tensor:
        """``n`` samples of the sampling generator from a fixed seed, without touching global RNG state.

        ``truncation``: latents truncated to [-t, t] by resampling (``lightning_gan.ops.truncation``).
        """
        with self._evaluating(seed) as gen:
            device = self.device
            if truncation is not None:
                gen = TruncatedGenerator(gen, truncation)
            z = gen.sample_latents(n, generator=torch.Generator(device=device).manual_seed(seed), device=device)
            c = None
            if gen.c_dim:
                if labels is None:
                    labels = torch.arange(n, device=device) % gen.c_dim
                c = torch.nn.functional.one_hot(labels.to(device).long(), gen.c_dim).float()
            return gen(z, c)

    def evaluate_metrics(self, metrics: Sequence[GeneratorMetric] | None = None, *,
                         truncation: float | None = None) -> dict[str, float]:
        """``metrics`` (default: the configured ones) on the sampling generator; global RNG state untouched.

        ``truncation``: the metrics' latents truncated to [-t, t] by resampling (``TruncatedGenerator``).
        """
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if metrics is None:
            metrics = self.configured_metrics(datamodule)
        results: dict[str, float] = {}
        self._eval_context.new_round()  # the generator changed since the last evaluation
        with self._evaluating() as gen:
            gen = at_full_resolution(gen)  # a growing generator below its last stage: images enlarged to full size
            if truncation is not None:
                gen = TruncatedGenerator(gen, truncation)
            for metric in metrics:
                results.update(metric.compute(gen, datamodule, self._eval_context))
                self.metric_notes.update(metric.notes())
        return results

    def configured_metrics(self, datamodule: Any = None) -> list[GeneratorMetric]:
        """The metrics this module evaluates: ``metrics`` when set, else the datamodule's ``default_metrics()``."""
        if self.metrics is not None:
            return self.metrics
        if self._default_metrics is None:
            self._default_metrics = data_default_metrics(datamodule)
        return self._default_metrics

    # -- Lightning hooks: setup -----------------------------------------------------------------
    def setup(self, stage: str) -> None:
        strategy = self.trainer.strategy
        if not isinstance(strategy, (SingleDeviceStrategy, DDPStrategy)):
            raise ConfigError(
                f"GANModule supports single-device and DDP strategies (ddp, ddp_spawn, ddp_notebook); got "
                f"{type(strategy).__name__}. Sharded strategies (FSDP, DeepSpeed) are not supported yet."
            )
        precision = self.trainer.precision_plugin
        if isinstance(precision, MixedPrecision) and precision.scaler is not None and not isinstance(precision, GANPrecision):
            raise ConfigError(
                "precision='16-mixed' shares one GradScaler between the generator and the discriminator and updates it "
                "after every optimizer step (an overflow in D halves G's scale too). Use --trainer.plugins=fp16-dynamic "
                "(one loss scale per network, updated once per iteration) or --trainer.precision=bf16-mixed."
            )
        if getattr(strategy, "_layer_sync", None) is not None:  # --trainer.sync_batchnorm=true
            for m in self.modules():  # plugins' own batch norms, which torch's SyncBatchNorm conversion misses
                if isinstance(m, SyncableBatchNorm):
                    m.set_sync_batchnorm()
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None:
            _check_data(self.generator, self.discriminator, datamodule, self.spec)
            if stage == "fit":
                _check_d_steps(getattr(datamodule, "batch_size", None), self.d_steps)
        if stage in ("fit", "validate", "test"):
            # Load weights / train classifiers now, so that a missing file stops the run before training.
            metrics = self.configured_metrics(datamodule)
            pinned_by = None if self.metrics is None else "--model.metrics"
            # one line for a metric that cannot serve the data
            _in_turns(self.trainer, lambda: setup_metrics(metrics, datamodule, pinned_by=pinned_by),
                      "lightning_gan.metrics_setup", several=bool(metrics))

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        d_opt = self.d_optimizer(self.discriminator.parameters())
        g_opt = self.g_optimizer(self.generator.parameters())
        self.schedule.correct_optimizer(d_opt, "discriminator")
        self.schedule.correct_optimizer(g_opt, "generator")
        return [d_opt, g_opt]

    def on_train_start(self) -> None:
        model = self.trainer.strategy.model
        # One backward per phase touches only one network, so DDP's reducer (which expects every
        # parameter in every backward) stays off; `_all_reduce_gradients` averages each phase's network.
        self._ddp = isinstance(model, DistributedDataParallel)
        self._log_interval = self.log_every_n_iterations or max(1, self.trainer.log_every_n_steps)
        self._latent_rng = torch.Generator(device=self.device).manual_seed(self.seed * 7919 + self.global_rank)
        if self.augment is not None:
            self._augment_rng = torch.Generator(device=self.device).manual_seed(
                self.seed * 7919 + self.global_rank + 104729)
        if self._pending_rng_state is not None:
            _set_rng_state(self._pending_rng_state, self._latent_rng, self._augment_rng)
            self._pending_rng_state = None
        self._preemption.install(self.trainer)
        self._first_check = True
        self._first_flags.clear()
        self._loss_sums.clear()
        self._loss_counts.clear()
        self._clean_through = self.iteration - 1

    # -- training -------------------------------------------------------------------------------
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # a requeue signal received during this iteration: the hpc checkpoint and requeue now, on every process
        # (where Lightning's own step checkpoints are taken: a resumed run, its loader included, starts at the next)
        if not self.trainer.should_stop:
            self._preemption.run_pending(self.trainer, self.device)

    def _split_batch(self, batch: Any) -> tuple[Tensor, Tensor | None]:
        if isinstance(batch, (tuple, list)):
            real, labels = batch[0], (batch[1] if len(batch) > 1 else None)
        else:
            real, labels = batch, None
        real_c = None
        if self.generator.c_dim:
            if labels is None:
                raise ConfigError(f"The architecture is conditional (c_dim={self.generator.c_dim}) but the batches "
                                  f"carry no labels; use labelled data or c_dim=0")
            real_c = labels.float() if labels.dim() == 2 else torch.nn.functional.one_hot(labels.long(), self.generator.c_dim).float()
        return real, real_c

    def _sample_latents(self, n: int, real_c: Tensor | None) -> tuple[Tensor, Tensor | None]:
        z = self.generator.sample_latents(n, generator=self._latent_rng, device=self.device)
        if real_c is None:
            return z, None
        perm = torch.randint(real_c.shape[0], (n,), generator=self._latent_rng, device=self.device)
        return z, real_c[perm]  # conditions follow the data's label distribution

    def _set_trainable(self, network: NetworkName) -> None:
        if self._trainable != network:
            self.discriminator.requires_grad_(network == "discriminator")
            self.generator.requires_grad_(network == "generator")
            self._trainable = network

    def training_step(self, batch: Any, batch_idx: int) -> None:
        if self._ddp:
            # Lightning re-arms the reducer after every step for manual optimization; disarm it again.
            self.trainer.strategy.model.require_backward_grad_sync = False
        real, real_c = self._split_batch(batch)
        n = real.shape[0]  # every image of the batch is shown to D: d_steps chunks of n / d_steps
        optimizers = self.optimizers()
        opts = {"discriminator": optimizers[0], "generator": optimizers[1]}
        inputs = [self._penalty_inputs(r, c) for r, c in _chunks(real, real_c, self.d_steps)]
        precision = self.trainer.precision_plugin
        gan_precision = precision if isinstance(precision, GANPrecision) else None
        for phase in self.schedule.phases(self.iteration):
            with gan_precision.network(phase.network) if gan_precision else contextlib.nullcontext():
                self._run_phase(phase, opts[phase.network], inputs[phase.batch])
        if gan_precision is not None:
            gan_precision.end_iteration()  # loss scales change once per iteration, never per optimizer step

        batch_images = n * self.trainer.world_size
        if self.augment is not None:  # adaptive strength (ADA's p) from this iteration's D(T(x_real))
            self.augment.update(images=batch_images, reduce=self._sum_over_processes)
        if self.generator_ema is not None:
            update_ema(self.generator_ema, self.generator,
                       ema_beta(batch_images, self.images_seen, self.ema_kimg, self.ema_rampup))
        self.iteration += 1
        self.images_seen += batch_images
        if self._first_check:
            self._first_check = False
            self._check_finite(first=True)
        if self.iteration % self._log_interval == 0:
            self._log_losses()
        if self.total_kimg is not None and self.images_seen >= self.total_kimg * 1000:
            self._check_finite()  # the last iteration: no checkpoint or metric of a diverged run
            self.trainer.should_stop = True

    def _penalty_inputs(self, real: Tensor, real_c: Tensor | None) -> PenaltyInputs:
        """What the phases of one D step's real batch see (fakes are cached per batch)."""
        return PenaltyInputs(generator=self.generator, discriminator=self.discriminator, real=real,
                             real_c=real_c, latent_sampler=lambda k: self._sample_latents(k, real_c),
                             augment=self._augmented if self.augment is not None else None,
                             reduce_mean=self._mean_over_processes)

    def _augmented(self, images: Tensor) -> Tensor:
        """``T(images)``, drawn from this process's own augmentation stream."""
        return self.augment(images, generator=self._augment_rng)

    def _sum_over_processes(self, value: Tensor) -> Tensor:
        return self.trainer.strategy.reduce(value, reduce_op="sum") if self.trainer.world_size > 1 else value

    def _mean_over_processes(self, value: Tensor) -> Tensor:
        return self.trainer.strategy.reduce(value, reduce_op="mean") if self.trainer.world_size > 1 else value

    def _run_phase(self, phase: Phase, optimizer: Any, inputs: PenaltyInputs) -> None:
        self._set_trainable(phase.network)
        net = self.discriminator if phase.network == "discriminator" else self.generator
        loss = self._adversarial_loss(phase.network, inputs) if phase.adversarial else None
        for reg in phase.regularizers:
            penalty = reg(inputs)
            self._accumulate(f"penalty/{type(reg).__name__}", penalty.detach())
            penalty = penalty * phase.gain if phase.gain != 1 else penalty
            loss = penalty if loss is None else loss + penalty
        inputs.d_logits = None  # their graph is gone after this backward
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self._ddp:
            self._all_reduce_gradients(net)
        optimizer.step()
        self._accumulate(f"loss/{phase.name}", loss.detach())

    def _adversarial_loss(self, network: NetworkName, inputs: PenaltyInputs) -> Tensor:
        z, c = inputs.latents()
        if network == "discriminator":
            with torch.no_grad():
                fake = self.generator(z, c)
            if self._first_check:
                self._check_samples(fake, inputs.real)
            real_logits = inputs.discriminate(inputs.real, inputs.real_c)
            fake_logits = inputs.discriminate(fake, c)
            if self._first_check:
                self._check_logits(real_logits, fake_logits, inputs.batch_size, z.shape[0])
            self._accumulate("logits/real", real_logits.detach().mean())
            self._accumulate("logits/fake", fake_logits.detach().mean())
            inputs.d_logits = (real_logits, fake_logits)  # for penalties folded into Dmain (LeCam)
            if self.augment is not None:
                self.augment.observe(real_logits.detach())
            return self.loss_fn.discriminator_loss(real_logits, fake_logits)
        fake_logits = inputs.discriminate(self.generator(z, c), c)
        if self.loss_fn.generator_needs_real:  # a relativistic loss compares each fake with a real sample
            with torch.no_grad():
                real_logits = inputs.discriminate(inputs.real, inputs.real_c)
            return self.loss_fn.generator_loss(fake_logits, real_logits)
        return self.loss_fn.generator_loss(fake_logits)

    def _all_reduce_gradients(self, net: torch.nn.Module) -> None:
        """Average this phase's gradients over processes (DDP's own reducer is off, see on_train_start)."""
        params = [p for p in net.parameters() if p.grad is not None]
        if not params:
            return
        flat = torch.cat([p.grad.flatten() for p in params])
        flat = self.trainer.strategy.reduce(flat, reduce_op="mean")
        offset = 0
        for p in params:
            numel = p.grad.numel()
            p.grad.copy_(flat[offset:offset + numel].view_as(p.grad))
            offset += numel

    def _accumulate(self, name: str, value: Tensor) -> None:
        """Running sums on the device: no host sync until the next log (lazy phases count their own runs)."""
        total = self._loss_sums.get(name)
        self._loss_sums[name] = value.float() if total is None else total + value.float()
        self._loss_counts[name] = self._loss_counts.get(name, 0) + 1

    def _log_losses(self) -> None:
        if not self._loss_sums:
            return
        self._check_finite()
        means = {name: total / self._loss_counts[name] for name, total in self._loss_sums.items()}
        means["progress/kimg"] = torch.tensor(self.kimg)
        if self.augment is not None:
            means.update({f"augment/{k}": v.float() for k, v in self.augment.summary().items()})
        self.log_dict(means, prog_bar=True, on_step=True, on_epoch=False, batch_size=1)
        self._loss_sums.clear()
        self._loss_counts.clear()

    # -- run-time contracts -----------------------------------------------------------------------
    def _check_samples(self, fake: Tensor, real: Tensor) -> None:
        """First iteration: the generator makes [N, *output_shape] and the data has that shape (no host sync)."""
        declared = tuple(self.generator.output_shape)
        g_name, arch = type(self.generator).__name__, type(self.spec).__name__
        if tuple(fake.shape[1:]) != declared:
            raise ContractError(
                f"{g_name} (architecture {arch}) declares output_shape {declared} but returned a tensor of shape "
                f"{list(fake.shape)}; make forward return [N, *output_shape] or declare the shape it makes"
            )
        if tuple(real.shape[1:]) != declared:
            raise ConfigError(
                f"The generator makes samples of shape {declared} but the data's batches hold {tuple(real.shape[1:])} "
                f"(batch {list(real.shape)}); make the architecture's output shape match the data"
            )
        self._flag_first("the real batch", torch.isfinite(real).all())
        self._flag_first(f"{g_name}'s output", torch.isfinite(fake).all())

    def _check_logits(self, real_logits: Tensor, fake_logits: Tensor, n_real: int, n_fake: int) -> None:
        """First iteration: the discriminator returns one logit per sample, [N] (no host sync)."""
        d_name, arch = type(self.discriminator).__name__, type(self.spec).__name__
        for logits, n in ((real_logits, n_real), (fake_logits, n_fake)):
            if tuple(logits.shape) != (n,):
                raise ContractError(
                    f"{d_name} (architecture {arch}) returned logits of shape {list(logits.shape)} for {n} samples; "
                    f"a discriminator returns one logit per sample, shape [N] = [{n}] "
                    f"(e.g. end forward with .flatten())"
                )
        self._flag_first(f"{d_name}'s logits", torch.isfinite(real_logits).all() & torch.isfinite(fake_logits).all())

    def _flag_first(self, name: str, finite: Tensor) -> None:
        """Record a first-iteration finiteness flag; with several D steps every step's batch must be finite."""
        previous = self._first_flags.get(name)
        self._first_flags[name] = finite if previous is None else previous & finite

    def _check_finite(self, *, first: bool = False) -> None:
        """Stop the run if the losses and penalties summed since the last check (and, on the first iteration,
        the data, fakes and logits) hold NaN/inf. One host sync; under DDP the verdict is all-reduced so that
        every process stops at the same point (none waits forever for one that raised)."""
        names = list(self._first_flags) if first else []
        flags = [~f for f in self._first_flags.values()] if first else []
        names += list(self._loss_sums)
        flags += [~torch.isfinite(v) for v in self._loss_sums.values()]
        if first:
            self._first_flags.clear()
        if not flags:
            return
        bad = torch.stack([f.reshape(()) for f in flags]).float()
        if self._trainer is not None and self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce(bad, reduce_op="sum")
        found = [name for name, b in zip(names, bad.tolist()) if b > 0]
        if found:
            if not first:  # losses and penalties first: they are what the advice is about
                found.sort(key=lambda name: not name.startswith(("loss/", "penalty/")))
            raise NonFiniteError(self._non_finite_message(found, first))
        self._clean_through = self.iteration - 1

    def _non_finite_message(self, found: list[str], first: bool) -> str:
        last = self.iteration - 1
        since = self._clean_through + 1  # sums stay NaN once a NaN entered them: it entered in since..last
        when = f"iteration {last}" if first or last <= since else f"an iteration in {since}-{last}"
        where = f"{when} ({self.kimg:.1f} kimg)"
        if first:
            start = "its first call, before any update" if last == 0 else f"the first iteration of this fit ({where})"
            culprit = found[0]
            if culprit == "the real batch":
                return f"The real batch holds NaN/inf at {where}; check the data (and its transforms)"
            if not culprit.startswith(("loss/", "penalty/")):
                return (f"{culprit} is NaN/inf on {start}; check the network's initialisation and forward "
                        f"(lightning_gan.testing.check_architecture runs the same check)")
            who = f"the regularizer {culprit.split('/', 1)[1]}" if culprit.startswith("penalty/") \
                else f"the loss {type(self.loss_fn).__name__}"
            return (f"Non-finite {', '.join(found)} at {where} although the data, fakes and logits are finite; "
                    f"check {who}")
        return (f"Non-finite {', '.join(found)} at {where}: the game diverged; lower the learning rates, add a "
                f"regularizer (r1) or check the data for NaNs")

    # -- evaluation -------------------------------------------------------------------------
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Real batches are not needed: metrics draw samples on ``on_validation_epoch_end``."""

    def on_train_epoch_end(self) -> None:
        self._check_finite()  # before the epoch's checkpoints (ModelCheckpoint saves after this hook)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self._check_finite()  # no metrics of a diverged generator
        results = self.evaluate_metrics()
        if results:
            self.log_dict(results, prog_bar=False, sync_dist=True)  # identical on every rank

    def test_step(self, batch: Any, batch_idx: int) -> None:
        """See ``validation_step``."""

    def on_test_epoch_end(self) -> None:
        results = self.evaluate_metrics()
        if results:
            self.log_dict({f"test/{k}": v for k, v in results.items()})

    def predict_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        """Samples for a batch of integer seeds (one latent per seed), from the sampling generator."""
        gen = self.sampling_generator
        z = torch.stack([
            gen.sample_latents(1, generator=torch.Generator(device=self.device).manual_seed(int(s)), device=self.device)[0]
            for s in batch
        ])
        c = None
        if gen.c_dim:
            c = torch.nn.functional.one_hot(batch.to(self.device).long() % gen.c_dim, gen.c_dim).float()
        return gen(z, c)

    def training_summary(self) -> dict[str, float]:
        """The run's own state worth reporting next to its metrics: the augmentation's (``augment/p``, ...)."""
        if self.augment is None:
            return {}
        return {f"augment/{k}": float(v) for k, v in self.augment.summary().items()}

    def on_train_end(self) -> None:
        self._check_finite()  # a run that diverged since the last log reports an error, not metrics
        self.final_metrics = self.evaluate_metrics()
        summary = self.training_summary()
        if not self.final_metrics and not summary:
            return
        for logger in self.loggers:
            logger.log_metrics({f"final/{k}": v for k, v in self.final_metrics.items()}, step=self.trainer.global_step)
        log_dir = self.trainer.log_dir
        if self.trainer.is_global_zero and log_dir:
            path = Path(log_dir) / "metrics.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"iteration": self.iteration, "kimg": self.kimg, **self.final_metrics,
                                        **self.metric_notes, **summary}, indent=2))
            self.metrics_path = path

    # -- checkpoints --------------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, int]:
        """The run's counters travel with the weights (checkpoints, ``load_from_checkpoint``, ddp_spawn)."""
        return {"iteration": self.iteration, "images_seen": self.images_seen}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.iteration = int(state["iteration"])
        self.images_seen = int(state["images_seen"])

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        data = None if datamodule is None else datamodule_config(datamodule)
        rng = _get_rng_state(self._latent_rng, self._augment_rng)
        checkpoint[_CKPT_KEY] = {
            "version": _CKPT_VERSION, "rng": rng,
            # every process's streams (each draws its own latents): the file is written by rank 0 only
            "rng_per_rank": _gather_from_ranks(rng),
            # how to rebuild the data, for `lightning-gan evaluate` (None: not readable from the datamodule)
            "data": data,
            # which distribution provided each plugin class, to say what to install where one is missing
            "plugins": plugin_distributions([dict(self.hparams), data]),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(_CKPT_KEY)
        if state is None:
            raise KeyError(f"Checkpoint has no '{_CKPT_KEY}' entry: it was not written by GANModule")
        trained = (checkpoint.get("hyper_parameters") or {}).get("d_steps", 1)
        if self._trainer is not None and self.trainer.state.fn == "fit" and trained != self.d_steps:
            # the counters continue the schedule only with the same split and the same Adam correction
            raise ConfigError(f"The checkpoint was trained with d_steps={trained} but this run has d_steps="
                              f"{self.d_steps}; resume with --model.d_steps={trained} to continue that run")
        # RNG streams are restored when training (re)starts, after Lightning's sanity check; each process its
        # own when the checkpoint has them for this many processes.
        per_rank = state.get("rng_per_rank")
        same_world = per_rank is not None and self._trainer is not None and len(per_rank) == self.trainer.world_size
        self._pending_rng_state = per_rank[self.global_rank] if same_world else state["rng"]


def _gather_from_ranks(value: Any) -> list[Any]:
    """``value`` of every process, in rank order (``[value]`` without a process group). Every process saves a
    checkpoint together (Lightning's ``save_checkpoint`` ends in a barrier), so the collective is safe here."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [value]
    gathered: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, value)
    return gathered


def _get_rng_state(latent_rng: torch.Generator | None, augment_rng: torch.Generator | None = None) -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": random.getstate(),
        "latent": latent_rng.get_state() if latent_rng is not None else None,
        "augment": augment_rng.get_state() if augment_rng is not None else None,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any], latent_rng: torch.Generator | None,
                   augment_rng: torch.Generator | None = None) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if latent_rng is not None and state.get("latent") is not None:
        latent_rng.set_state(state["latent"])
    if augment_rng is not None and state.get("augment") is not None:
        augment_rng.set_state(state["augment"])


def _in_turns(trainer: Any, work: Any, name: str, *, several: bool = True) -> None:
    """``work()`` on every process, in turns: global rank 0, then the first process of every other node, then
    the rest. What the first writes to a shared disk (e.g. the shapes classifier's cache) the others read; on
    node-local disks one process per node writes it, never all of a node's processes at once. ``several``:
    False runs ``work`` everywhere at once (nothing to share)."""
    if trainer.world_size == 1 or not several:
        work()
        return
    turn = 0 if trainer.is_global_zero else (1 if trainer.local_rank == 0 else 2)
    for t in range(3):
        if t == 1 and trainer.num_nodes == 1:
            continue  # one node: nobody in the second turn (every process calls the same barriers)
        if turn == t:
            work()
        if t < 2:
            trainer.strategy.barrier(f"{name}.{t}")


def _check_networks(generator: Any, discriminator: Any, spec: Any) -> None:
    name = type(spec).__name__
    for attr in ("z_dim", "c_dim", "output_shape", "sample_latents"):
        if not hasattr(generator, attr):
            raise ContractError(f"{name}.build() returned a generator without `{attr}`; "
                                f"subclass lightning_gan.Generator")
    if not hasattr(discriminator, "c_dim"):
        raise ContractError(f"{name}.build() returned a discriminator without `c_dim`; "
                            f"subclass lightning_gan.Discriminator")
    if generator.c_dim != discriminator.c_dim:
        raise ContractError(f"{name}: generator c_dim {generator.c_dim} != discriminator c_dim {discriminator.c_dim}; "
                            f"pass the same c_dim to both networks")


def _chunks(real: Tensor, real_c: Tensor | None, d_steps: int) -> list[tuple[Tensor, Tensor | None]]:
    """The loader's batch as ``d_steps`` equal real batches, one per D step (``phases`` says why)."""
    if d_steps == 1:
        return [(real, real_c)]
    n = real.shape[0]
    _check_d_steps(n, d_steps, what=f"A training batch of {n} real images")
    size = n // d_steps
    reals = real.split(size)
    conds = real_c.split(size) if real_c is not None else (None,) * d_steps
    return list(zip(reals, conds))


def _check_d_steps(batch_size: Any, d_steps: int, *, what: str | None = None) -> None:
    """The batch splits into ``d_steps`` equal D-step batches (``batch_size`` None: unknown, not checked)."""
    if d_steps == 1 or not isinstance(batch_size, int) or (batch_size % d_steps == 0 and batch_size >= d_steps):
        return
    multiple = max(d_steps, round(batch_size / d_steps) * d_steps)
    raise ConfigError(
        f"{what or f'--data.batch_size={batch_size}'} cannot be split into --model.d_steps={d_steps} equal "
        f"discriminator steps (each D step takes batch_size / d_steps real images of the iteration's batch); "
        f"use a batch size that is a multiple of {d_steps}, e.g. {multiple}, and drop incomplete last batches"
    )


def _check_data(generator: Generator, discriminator: Discriminator, datamodule: Any, spec: Any = None) -> None:
    shape = getattr(datamodule, "data_shape", None)
    if shape is not None and tuple(shape) != tuple(generator.output_shape):
        raise ConfigError(shape_mismatch(tuple(generator.output_shape), tuple(shape), spec, datamodule))
    classes = getattr(datamodule, "num_classes", 0)
    if generator.c_dim and generator.c_dim != classes:
        raise ConfigError(condition_mismatch(generator.c_dim, classes, spec, datamodule))

