"""Precision plugins for GANs: ``fp32``, ``bf16-mixed`` and ``fp16-dynamic`` (per-network loss scaling).

They are Lightning ``Precision`` plugins (``Trainer(plugins=[FP16DynamicPrecision()])``,
``--trainer.plugins=fp16-dynamic``) that also speak :class:`GANPrecision`, the small protocol GANModule
uses to tell a plugin which network a backward pass and an optimizer step belong to
(:meth:`GANPrecision.network`) and when an iteration ends (:meth:`GANPrecision.end_iteration`).

Why not Lightning's ``precision="16-mixed"``: it shares one GradScaler between all optimizers and
updates it after every optimizer step, so D's overflow halves G's scale, and an iteration with Dmain and
Dreg updates D's scale twice. ``fp16-dynamic`` keeps one :class:`~lightning_gan.precision.scaler.DynamicLossScaler`
per network (G's phases share one, D's phases another), updates each once per iteration, skips only
the overflowing network's step, and under DDP all-reduces the counts behind every decision so that all
ranks skip or step together and keep identical scales.

Autograd penalties (R1, path length) take ``torch.autograd.grad(..., create_graph=True)`` outside any
scaling; the built-in ones compute their inner gradient in float32 with autocast off, so only the
outer backward (of the scaled total loss) is scaled, and their values equal float32's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, Literal

import torch
import torch.distributed as dist
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from torch import Tensor

from lightning_gan.precision.scaler import DynamicLossScaler

__all__ = ["BF16MixedPrecision", "FP16DynamicPrecision", "FP32Precision", "GANPrecision"]

NETWORKS = ("discriminator", "generator")


class GANPrecision:
    """What GANModule asks of a precision plugin besides Lightning's hooks (no-ops by default).

    ``scalers`` maps a network name to its loss scaler (empty when the plugin does not scale).
    """

    scalers: Mapping[str, DynamicLossScaler] = MappingProxyType({})  # read-only: shared by every instance

    @contextlib.contextmanager
    def network(self, name: str) -> Iterator[None]:
        """Backward passes and optimizer steps inside belong to network ``name``."""
        yield

    def end_iteration(self) -> None:
        """Called by GANModule once at the end of every training iteration."""


def _device_type(model: torch.nn.Module) -> str:
    for p in model.parameters():
        return p.device.type
    return "cpu"


class FP32Precision(Precision, GANPrecision):
    """Full float32 (Lightning's ``32-true``), registered as ``fp32``."""

    precision = "32-true"


class BF16MixedPrecision(MixedPrecision, GANPrecision):
    """bfloat16 autocast without loss scaling (bf16 has float32's exponent range), registered as ``bf16-mixed``.

    Args:
        device: autocast device type ("cuda", "cpu"); None takes the model's device when training starts.
    """

    def __init__(self, device: str | None = None) -> None:
        super().__init__("bf16-mixed", device or "cpu")
        self._auto_device = device is None

    def connect(self, model: torch.nn.Module, optimizers: list, lr_schedulers: list) -> tuple:
        if self._auto_device:
            self.device = _device_type(model)
        return super().connect(model, optimizers, lr_schedulers)


class FP16DynamicPrecision(Precision, GANPrecision):
    """float16 autocast with one dynamic loss scaler per network, registered as ``fp16-dynamic``.

    The scale policy (overflow -> skip + backoff, underflow share -> grow, ``growth_interval`` healthy
    iterations -> grow, bounds) is :class:`~lightning_gan.precision.scaler.DynamicLossScaler`'s; the
    arguments are passed to both networks' scalers. Needs a LightningModule that declares its phases
    (GANModule does): every backward and optimizer step happens inside ``network(name)``.

    Args:
        init_scale, growth_factor, backoff_factor, growth_interval, underflow_threshold, min_scale,
            max_scale: see :class:`~lightning_gan.precision.scaler.DynamicLossScaler`.
        device: autocast device type ("cuda", "cpu"); None takes the model's device when training starts.
    """

    precision: Literal["16-mixed"] = "16-mixed"

    def __init__(self, *, init_scale: float = 2.0 ** 16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000, underflow_threshold: float | None = 0.01, min_scale: float = 1.0,
                 max_scale: float = 2.0 ** 24, device: str | None = None) -> None:
        kwargs = dict(init_scale=init_scale, growth_factor=growth_factor, backoff_factor=backoff_factor,
                      growth_interval=growth_interval, underflow_threshold=underflow_threshold,
                      min_scale=min_scale, max_scale=max_scale)
        self.scalers = {name: DynamicLossScaler(**kwargs) for name in NETWORKS}
        self.device = device or "cpu"
        self._auto_device = device is None
        self._active: str | None = None

    # -- GANPrecision ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def network(self, name: str) -> Iterator[None]:
        if name not in self.scalers:
            raise ValueError(f"Unknown network {name!r}; fp16-dynamic scales {', '.join(self.scalers)}")
        previous, self._active = self._active, name
        try:
            yield
        finally:
            self._active = previous

    def end_iteration(self) -> None:
        for scaler in self.scalers.values():
            scaler.update()

    def _scaler(self) -> DynamicLossScaler:
        if self._active is None:
            raise RuntimeError(
                "fp16-dynamic keeps one loss scale per network and needs to know which network a backward pass or "
                "optimizer step belongs to: train a GANModule, or wrap them in `precision.network('generator')`."
            )
        return self.scalers[self._active]

    # -- Lightning's Precision hooks -------------------------------------------------------------------
    def connect(self, model: torch.nn.Module, optimizers: list, lr_schedulers: list) -> tuple:
        # Fused optimizers are fine: they get gradients already unscaled here and no grad_scale/found_inf.
        if self._auto_device:
            self.device = _device_type(model)
        return super().connect(model, optimizers, lr_schedulers)

    @contextlib.contextmanager
    def forward_context(self) -> Iterator[None]:
        # No autocast weight cache: the phases step the optimizers between forwards of the same step.
        with torch.autocast(self.device, dtype=torch.float16, cache_enabled=False):
            yield

    def pre_backward(self, tensor: Tensor, module: Any) -> Tensor:
        return super().pre_backward(self._scaler().scale_loss(tensor), module)

    def optimizer_step(self, optimizer: Any, model: Any, closure: Callable[[], Any], **kwargs: Any) -> Any:
        closure_result = closure()
        scaler = self._scaler()
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        ok = scaler.unscale_(grads, reduce=_sum_over_processes)
        self._after_closure(model, optimizer)  # hooks see unscaled gradients (or the infs that skip the step)
        if not ok:
            return closure_result
        return optimizer.step(**kwargs)

    def state_dict(self) -> dict[str, Any]:
        return {name: scaler.state_dict() for name, scaler in self.scalers.items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for name, scaler in self.scalers.items():
            if name in state_dict:
                scaler.load_state_dict(state_dict[name])

    def __repr__(self) -> str:
        scales = ", ".join(f"{name}={s.scale:g}" for name, s in self.scalers.items())
        return f"FP16DynamicPrecision({scales})"


def _sum_over_processes(counts: Tensor) -> Tensor:
    """Sum over the default process group, when one is initialized (DDP); identity otherwise."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        counts = counts.clone()
        dist.all_reduce(counts, op=dist.ReduceOp.SUM)
    return counts
