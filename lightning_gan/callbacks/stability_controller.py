"""StabilityController: keeps the linearized game's convergence factor r at or below a target during training.

Every ``every_n_kimg`` thousand images it estimates, on the current batch and fresh latents, the coupling
``s_max`` and the damping ``alpha`` of the game by Hessian-vector products
(:func:`lightning_gan.analysis.estimate_game`, warm-started from the previous singular vector), evaluates each
network's ``r = (1 - eta alpha)^2 + (eta s_max)^2`` at its learning rate, and when the largest r is above
``target``:

- ``mode="lr"``: multiplies the learning rates of both networks by the factor k <= 1 that brings it to the
  target (:func:`~lightning_gan.analysis.lr_scale_for_target`), measured from the learning rates the run was
  given (so k also recovers towards 1 when a later estimate allows it);
- ``mode="r1"``: raises R1's gamma until ``alpha`` reaches the smallest damping with r <= target
  (:func:`~lightning_gan.analysis.min_damping_for_target`), using R1's own measured curvature along the
  coupling's singular vector (alpha grows by ``gamma_increase * c / 2``, c = R1's Rayleigh quotient per unit gamma),
  measured from the run's own gamma (so gamma also returns towards it when a later estimate allows it).

A run whose r is at or below the target is never changed: k stays 1 and gamma stays the run's own. Neither is a
step below the r-minimizing one, ``alpha / (alpha^2 + s_max^2)``: there r > target only because the step is small
(``r ~ 1 - 2 eta alpha`` < 1, the game contracts slowly), and raising the learning rate beyond the run's own or
damping it more (which a small step would need a lot of) is not the controller's business.

Adam (``adam``): its step ``lr * m / (sqrt(v) + eps)`` enters r in one of two ways.

- ``"plain"`` (default): r of the plain gradient game (P = I) at Adam's lr. This ignores Adam's per-coordinate
  scaling; it is the treatment whose verdicts agree with runs that train well (quickstart's r stays at
  0.976-0.99 over its first 100 kimg, docs/diagnostics.md#the-stability-controller).
- ``"preconditioned"``: Adam as a gradient step with the fixed diagonal preconditioner
  ``P = 1 / (sqrt(v_hat) + eps)`` from its bias-corrected second moment; s_max and alpha are those of the
  preconditioned game ``P^(1/2) A P^(1/2)``, in which the plain lr is the step. Exact for a frozen P, but
  early in training coordinates with tiny gradients make P, and r, huge (quickstart: r = 90 at its first estimate,
  2-190 over the first 30 kimg, 0.4-0.7 after), although the run is stable: Adam's per-coordinate step is
  bounded by about lr, and v grows as soon as a coordinate oscillates, which a frozen P does not model. On
  dcgan-shapes32 it cut the learning rates to 2-5% at every rate swept and stalled the runs (smaller steps
  shrink v, which raises P and the next estimate of r); on quickstart it rescued learning rates 10-30 times the
  recipe's (docs/diagnostics.md, "Learning-rate tolerance").

Momentum (beta1 > 0) is modelled by neither. Weight decay adds ``wd * P`` (L2 in the gradient) or ``wd``
(AdamW, decoupled) to the curvature; param groups with another lr than the first group's enter P in
proportion. Optimizers without a second moment (SGD) are plain gradient steps, for which the model is exact.

DDP: every Hessian-vector product is averaged over the processes (the estimate is that of the global batch,
the same on every process), and the action is broadcast from rank 0, so learning rates and gamma stay identical
on every process. Logged under ``stability/`` (``s_max``, ``alpha``, ``alpha_G``, ``alpha_D``, ``r/G``,
``r/D``, ``r`` at the settings after the action, ``r_uncontrolled`` at the run's own, ``lr_scale``, ``gamma``
in r1 mode, ``actions``); ``r`` and ``lr_scale`` (or ``gamma``) go to the progress bar. The state (scale,
gamma, the singular vector, the schedule) is saved in checkpoints.

Not included in the estimate: the run's augmentation (the estimate's D sees plain images) and G's
regularizers. The estimate runs in float32 with autocast off; its forward passes use the training mode, and
every buffer they touch (batch-norm statistics, spectral-norm vectors, LeCam anchors) is restored afterwards,
and its latents come from its own random stream: a run the controller does not act on trains exactly as
without it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor
from typing_extensions import override

from lightning_gan.analysis.hvp import GameEstimate, estimate_game
from lightning_gan.analysis.stability import convergence_factor, lr_scale_for_target, min_damping_for_target
from lightning_gan.callbacks._periodic import log_measurement, next_multiple, reached
from lightning_gan.errors import ConfigError

__all__ = ["StabilityController", "adam_preconditioner"]

_MODES = ("lr", "r1")
_ADAM = ("plain", "preconditioned")


def adam_preconditioner(optimizer: torch.optim.Optimizer, *, plain: bool = False
                        ) -> tuple[list[Tensor], Tensor, Tensor, float] | None:
    """The parameters an optimizer steps, the diagonal P of its step (flat), its weight-decay curvature, and the lr.

    Adam/AdamW (any param group with ``betas`` and ``eps``), unless ``plain``: ``P = (lr_j / lr_0) / (sqrt(v_hat)
    + eps)`` with ``v_hat = exp_avg_sq / (1 - beta2^step)`` (``max_exp_avg_sq`` with amsgrad) and ``lr_j`` the
    param group's lr; other optimizers, or ``plain``: ``P = lr_j / lr_0``. Weight decay wd of a group adds
    ``wd * P`` (L2, in the gradient) or ``wd * lr_j / lr_0`` (decoupled: AdamW, or ``decoupled_weight_decay``).
    ``lr_0`` is the first group's lr, returned last. None when Adam's P is asked for before its first step.
    """
    params, pre, decay = [], [], []
    lr0 = float(optimizer.param_groups[0]["lr"])
    decoupled_cls = isinstance(optimizer, torch.optim.AdamW)
    for group in optimizer.param_groups:
        ratio = float(group["lr"]) / lr0
        wd = float(group.get("weight_decay", 0.0) or 0.0)
        decoupled = decoupled_cls or bool(group.get("decoupled_weight_decay", False))
        for p in group["params"]:
            if "betas" in group and "eps" in group and not plain:
                state = optimizer.state.get(p, {})
                second = state.get("max_exp_avg_sq" if group.get("amsgrad") else "exp_avg_sq")
                if second is None:
                    return None
                v_hat = second.detach().float() / (1.0 - float(group["betas"][1]) ** float(state["step"]))
                diag = (ratio / (v_hat.sqrt() + float(group["eps"]))).reshape(-1)
            else:
                diag = torch.full((p.numel(),), ratio, dtype=torch.float32, device=p.device)
            params.append(p)
            pre.append(diag)
            decay.append(wd * ratio * torch.ones_like(diag) if decoupled else wd * diag)
    return params, torch.cat(pre), torch.cat(decay), lr0


class StabilityController(Callback):
    """Keeps ``r = (1 - eta alpha)^2 + (eta s_max)^2`` at or below ``target`` by scaling the lrs or raising R1's gamma.

    Args:
        target: the convergence factor to stay at or below, in (0, 1).
        mode: "lr" scales both networks' learning rates; "r1" raises the gamma of the model's R1.
        every_n_kimg: estimate each time this many thousand images have been shown (and after the first batch).
        iterations: power-iteration steps of each estimate, warm-started from the previous singular vector.
        first_iterations: power-iteration steps of the first estimate (random start).
        num_samples: real images and latents of each estimate; None: the whole batch.
        adam: how Adam's step enters r: "plain" (the plain gradient game at Adam's lr, P = I) or "preconditioned"
            (the game preconditioned by ``1 / (sqrt(v_hat) + eps)``, see the module docstring).
        min_scale: the smallest learning-rate factor mode "lr" applies.
        max_gamma: the largest gamma mode "r1" sets; None: no limit.
        seed: seed of the estimates' own latents (offset by the process rank and the estimate's number).
    """

    def __init__(self, *, target: float = 0.98, mode: str = "lr", every_n_kimg: float = 10.0, iterations: int = 3,
                 first_iterations: int = 20, num_samples: int | None = None, adam: str = "plain",
                 min_scale: float = 0.01,
                 max_gamma: float | None = None, seed: int = 0) -> None:
        super().__init__()
        if not (isinstance(target, (int, float)) and 0 < target < 1):
            raise ConfigError(f"StabilityController: target must lie in (0, 1), got {target!r} (e.g. 0.98)")
        if mode not in _MODES:
            raise ConfigError(f"StabilityController: mode must be one of {_MODES}, got {mode!r}")
        if adam not in _ADAM:
            raise ConfigError(f"StabilityController: adam must be one of {_ADAM}, got {adam!r}")
        if not every_n_kimg > 0:
            raise ConfigError(f"StabilityController: every_n_kimg must be > 0, got {every_n_kimg}")
        if iterations < 1 or first_iterations < 1:
            raise ConfigError(f"StabilityController: iterations and first_iterations must be >= 1, got "
                              f"{iterations}, {first_iterations}")
        if num_samples is not None and num_samples < 1:
            raise ConfigError(f"StabilityController: num_samples must be >= 1 or None, got {num_samples}")
        if not 0 < min_scale <= 1:
            raise ConfigError(f"StabilityController: min_scale must lie in (0, 1], got {min_scale}")
        if max_gamma is not None and not max_gamma > 0:
            raise ConfigError(f"StabilityController: max_gamma must be > 0 or None, got {max_gamma}")
        self.target, self.mode, self.every_n_kimg = float(target), mode, float(every_n_kimg)
        self.iterations, self.first_iterations = int(iterations), int(first_iterations)
        self.num_samples, self.adam, self.min_scale = num_samples, adam, float(min_scale)
        self.max_gamma, self.seed = max_gamma, int(seed)
        # the run's state (checkpointed)
        self.next_kimg = 0.0
        self.scale = 1.0  # the factor on the learning rates the run was given (mode "lr")
        self.gamma: float | None = None  # R1's gamma as set by the controller (mode "r1")
        self.base_gamma: float | None = None  # the run's own gamma
        self.set_lrs: list[list[float]] | None = None  # the lrs the controller last wrote, per optimizer and group
        self.count = 0  # estimates made
        self.actions = 0  # estimates after which the lrs or gamma changed
        self.u: Tensor | None = None  # the warm start: G-space singular vector
        self.last: dict[str, float] = {}
        self.warned: list[str] = []

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"next_kimg": self.next_kimg, "scale": self.scale, "gamma": self.gamma, "base_gamma": self.base_gamma,
                "set_lrs": self.set_lrs, "count": self.count, "actions": self.actions,
                "u": None if self.u is None else self.u.detach().cpu(), "last": dict(self.last),
                "warned": list(self.warned)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.next_kimg = float(state_dict["next_kimg"])
        self.scale = float(state_dict["scale"])
        self.gamma, self.base_gamma = state_dict["gamma"], state_dict["base_gamma"]
        self.set_lrs = state_dict["set_lrs"]
        self.count, self.actions = int(state_dict["count"]), int(state_dict["actions"])
        self.u = state_dict["u"]
        self.last = dict(state_dict["last"])
        self.warned = list(state_dict["warned"])

    # -- helpers ------------------------------------------------------------------------------------
    def _r1(self, pl_module: Any) -> Any:
        from lightning_gan.regularizers import R1

        found = [r for r in getattr(pl_module, "regularizers", []) if isinstance(r, R1)]
        return found[0] if found else None

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.append(key)
            rank_zero_warn(f"StabilityController: {message}")

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not hasattr(pl_module, "generator") or not hasattr(pl_module, "discriminator"):
            raise ConfigError("StabilityController needs a GANModule (a model with a generator and a discriminator)")
        if self.mode == "r1":
            r1 = self._r1(pl_module)
            if r1 is None:
                raise ConfigError("StabilityController(mode='r1') needs an R1 regularizer to raise: add "
                                  "--model.regularizers+=r1 (or the LazyR1 callback), or use mode='lr'")
            if self.gamma is not None:  # resumed: the gamma the controller had set
                r1.gamma = r1.weight = float(self.gamma)

    @contextlib.contextmanager
    def _side_effect_free(self, pl_module: Any, params: list[Tensor]) -> Iterator[None]:
        """Every parameter trainable and autocast off inside; buffers and requires_grad flags restored after."""
        buffers = [(b, b.detach().clone()) for b in pl_module.buffers()]
        flags = [(p, p.requires_grad) for p in pl_module.parameters()]
        for p in params:
            p.requires_grad_(True)
        try:
            with torch.enable_grad(), torch.autocast(device_type=pl_module.device.type, enabled=False):
                yield
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)
            with torch.no_grad():
                for b, saved in buffers:
                    b.copy_(saved)

    def estimate(self, trainer: Trainer, pl_module: Any, real: Tensor, real_c: Tensor | None, *,
                 adam: str | None = None) -> tuple[GameEstimate, float, float] | None:
        """The game's estimate on this batch, and the lrs of G and D; None while Adam has no second moment yet.

        ``adam`` overrides the controller's own treatment of Adam ("plain" or "preconditioned"), for comparisons.
        """
        from lightning_gan.interfaces import PenaltyInputs

        d_opt, g_opt = trainer.optimizers[:2]
        plain = (adam or self.adam) == "plain"
        found_g, found_d = adam_preconditioner(g_opt, plain=plain), adam_preconditioner(d_opt, plain=plain)
        if found_g is None or found_d is None:
            return None
        g_params, pre_g, decay_g, lr_g = found_g
        d_params, pre_d, decay_d, lr_d = found_d
        G, D = pl_module.generator, pl_module.discriminator
        n = real.shape[0] if self.num_samples is None else min(self.num_samples, real.shape[0])
        real = real[:n].detach().float()
        real_c = None if real_c is None else real_c[:n]
        gen = torch.Generator(device=pl_module.device).manual_seed(
            (self.seed * 1_000_003 + trainer.global_rank * 7919 + self.count) % (2 ** 63))

        def latents(k: int) -> tuple[Tensor, Tensor | None]:
            z = G.sample_latents(k, generator=gen, device=pl_module.device)
            if real_c is None:
                return z, None
            return z, real_c[torch.randint(real_c.shape[0], (k,), generator=gen, device=pl_module.device)]

        world = trainer.world_size
        reduce = (lambda t: trainer.strategy.reduce(t, reduce_op="mean")) if world > 1 else None
        r1 = self._r1(pl_module)
        with self._side_effect_free(pl_module, [*g_params, *d_params]):
            z, c = latents(n)
            real_logits = D(real, real_c)
            fake_logits = D(G(z, c), c)
            loss_fn = pl_module.loss_fn
            loss_d = loss_fn.discriminator_loss(real_logits, fake_logits)
            loss_g = (loss_fn.generator_loss(fake_logits, real_logits) if loss_fn.generator_needs_real
                      else loss_fn.generator_loss(fake_logits))
            inputs = PenaltyInputs(generator=G, discriminator=D, real=real, real_c=real_c, latent_sampler=latents,
                                   reduce_mean=(lambda t: t))
            inputs.d_logits = (real_logits, fake_logits)
            terms: dict[str, tuple[Tensor, float]] = {}
            for reg in getattr(pl_module, "regularizers", []):
                if reg.network != "discriminator":
                    continue
                if reg is r1:  # per unit gamma, at weight gamma: mode "r1" needs R1's own curvature
                    terms["R1"] = (0.5 * _r1_unit(inputs), float(reg.gamma))
                else:
                    terms[type(reg).__name__] = (reg(inputs), 1.0)
            u0 = self.u if self.u is not None and self.u.numel() == sum(p.numel() for p in g_params) else None
            estimate = estimate_game(loss_g, loss_d, g_params, d_params,
                                     iterations=self.iterations if u0 is not None else self.first_iterations,
                                     u0=u0, precondition_g=pre_g, precondition_d=pre_d, diagonal_g=decay_g,
                                     diagonal_d=decay_d, d_terms=terms, reduce=reduce, seed=self.seed)
        return estimate, lr_g, lr_d

    def _base_lrs(self, trainer: Trainer) -> list[list[float]]:
        """The lrs the run was given: the current ones divided by the controller's factor, unless something else
        (a schedule, progressive growing) has written new ones since, which are then the run's own."""
        current = [[float(g["lr"]) for g in opt.param_groups] for opt in trainer.optimizers[:2]]
        if self.set_lrs is None or self.scale == 1.0:
            return current
        base = []
        for cur_opt, set_opt in zip(current, self.set_lrs):
            base.append([cur / self.scale if math.isclose(cur, was, rel_tol=1e-9) else cur
                         for cur, was in zip(cur_opt, set_opt)])
        return base

    def _apply_scale(self, trainer: Trainer, base: list[list[float]], scale: float) -> None:
        self.set_lrs = []
        for opt, lrs in zip(trainer.optimizers[:2], base):
            for group, lr in zip(opt.param_groups, lrs):
                group["lr"] = lr * scale
            self.set_lrs.append([float(g["lr"]) for g in opt.param_groups])
        self.scale = scale

    def control(self, trainer: Trainer, pl_module: Any, estimate: GameEstimate, lr_g: float,
                lr_d: float) -> dict[str, float]:
        """Decide and apply the action for one estimate; the figures to log."""
        s, alpha = estimate.s_max, estimate.alpha
        rho = self.target
        out = {"s_max": s, "alpha": alpha, "alpha_G": estimate.alpha_g, "alpha_D": estimate.alpha_d}
        if self.mode == "lr":
            base = self._base_lrs(trainer)
            base_g, base_d = base[1][0], base[0][0]  # trainer.optimizers is [D's, G's]
            k = lr_scale_for_target([base_g, base_d], alpha, s, rho)
            if k is None:
                self._warn_once("alpha", f"the estimated damping alpha = {alpha:.3g} <= 0: no learning rate makes "
                                         f"the linearized game contract; keeping the learning rates (mode='r1' "
                                         f"raises R1's gamma instead)")
                k = self.scale
            k = max(self.min_scale, k)
            k = float(trainer.strategy.broadcast(k, src=0)) if trainer.world_size > 1 else k
            uncontrolled = max(convergence_factor(base_g, alpha, s), convergence_factor(base_d, alpha, s))
            changed = not math.isclose(k, self.scale, rel_tol=1e-12)
            if changed:
                if self.actions == 0:
                    rank_zero_info(f"StabilityController: r = {uncontrolled:.4g} > target {rho} at "
                                   f"{pl_module.kimg:.1f} kimg; learning rates x{k:.3g}")
                self._apply_scale(trainer, base, k)
            lrs = {"G": base_g * self.scale, "D": base_d * self.scale}
            out["lr_scale"] = self.scale
        else:
            r1 = self._r1(pl_module)
            if self.base_gamma is None:
                self.base_gamma = float(r1.gamma)
            current = float(r1.gamma)
            c = estimate.terms.get("R1", 0.0)
            alpha_base = alpha - 0.5 * (current - self.base_gamma) * c
            lrs = {"G": lr_g, "D": lr_d}
            uncontrolled = max(convergence_factor(lr, alpha_base, s) for lr in lrs.values())
            # Only steps above the r-minimizing one, alpha / (alpha^2 + s^2), call for damping: there the rotation
            # (eta s)^2 drives r. Below it r exceeds the target only because the step is small (r ~ 1 - 2 eta alpha:
            # the game contracts, slowly), as mode "lr" leaves such a step alone too.
            fast = [lr for lr in lrs.values() if convergence_factor(lr, alpha_base, s) > rho
                    and (alpha_base <= 0 or lr * (alpha_base ** 2 + s ** 2) > alpha_base)]
            needed = min_damping_for_target(fast, s, rho) if fast else alpha_base
            gamma = current
            if needed is None:
                self._warn_once("coupling", f"(eta s_max)^2 > target at s_max = {s:.3g}: no damping brings r to "
                                            f"{rho}; lower the learning rates (mode='lr')")
            elif c <= 0:
                self._warn_once("r1", f"R1 adds no damping along the coupling's singular vector (its curvature "
                                      f"there is {c:.3g}); keeping gamma")
            else:
                gamma = max(self.base_gamma, self.base_gamma + 2.0 * (needed - alpha_base) / c)
                if self.max_gamma is not None:
                    gamma = min(gamma, float(self.max_gamma))
            gamma = float(trainer.strategy.broadcast(gamma, src=0)) if trainer.world_size > 1 else gamma
            changed = not math.isclose(gamma, current, rel_tol=1e-12)
            if changed:
                if self.actions == 0:
                    rank_zero_info(f"StabilityController: r = {uncontrolled:.4g} > target {rho} at "
                                   f"{pl_module.kimg:.1f} kimg; R1 gamma {current:.3g} -> {gamma:.3g}")
                r1.gamma = r1.weight = gamma
            self.gamma = gamma
            alpha = alpha_base + 0.5 * (gamma - self.base_gamma) * c
            out["alpha"] = alpha
            out["gamma"] = gamma
        self.actions += int(changed)
        for name, lr in lrs.items():
            out[f"r/{name}"] = convergence_factor(lr, alpha, s)
        out["r"] = max(out["r/G"], out["r/D"])
        out["r_uncontrolled"] = uncontrolled
        out["actions"] = float(self.actions)
        return out

    @override
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        kimg = float(getattr(pl_module, "kimg", 0.0))
        if not reached(kimg, self.next_kimg):
            return
        real, real_c = pl_module._split_batch(batch)
        found = self.estimate(trainer, pl_module, real, real_c)
        if found is None:
            return  # the optimizers have not stepped yet: try again after the next batch
        estimate, lr_g, lr_d = found
        self.next_kimg = next_multiple(kimg, self.every_n_kimg)
        self.count += 1
        self.u = estimate.u
        if not (math.isfinite(estimate.s_max) and math.isfinite(estimate.alpha)):
            self._warn_once("finite", f"non-finite estimate at {kimg:.1f} kimg (s_max = {estimate.s_max}, alpha = "
                                      f"{estimate.alpha}); skipped")
            self.u = None
            return
        values = self.control(trainer, pl_module, estimate, lr_g, lr_d)
        self.last = values
        bar = {"stability/r": values["r"]}
        knob = "gamma" if self.mode == "r1" else "lr_scale"
        bar[f"stability/{knob}"] = values[knob]
        log_measurement(trainer, pl_module, bar, prog_bar=True)
        log_measurement(trainer, pl_module, {f"stability/{k}": v for k, v in values.items() if f"stability/{k}" not in bar})


def _r1_unit(inputs: Any) -> Tensor:
    from lightning_gan.regularizers import input_gradient_sq_norm

    return input_gradient_sq_norm(inputs.discriminator, inputs.real, inputs.real_c).mean()
