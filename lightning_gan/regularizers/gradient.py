"""Penalties on the discriminator's input gradient: R1 (real), R2 (fake), WGAN-GP (interpolates).

The input gradients are taken with ``create_graph=True`` and run in fp32 (autocast off, and
``force_fp32=True`` for discriminators whose forward takes it, e.g. StyleGAN2's float16 blocks), because an
autograd penalty bypasses any loss scaling that ``manual_backward`` applies.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import torch
from torch import Tensor

from lightning_gan.interfaces import Discriminator, PenaltyInputs, Regularizer


def input_gradient_sq_norm(discriminator: Discriminator, x: Tensor, c: Tensor | None, *,
                           augment: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Per-sample ``||d D(x_n) / d x_n||^2``, [N], differentiable w.r.t. the discriminator's parameters.

    With ``augment`` (a differentiable transform T), the gradient of ``D(T(x))`` w.r.t. the un-augmented ``x``
    (StyleGAN2-ADA's R1 on augmented reals).
    """
    x = x.detach()
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    x.requires_grad_(True)
    # The whole penalty, its backward included, outside autocast: under autocast even the backward's matmuls
    # would be recast to float16 (the autograd engine runs them with the caller's autocast state).
    with torch.autocast(device_type=x.device.type, enabled=False):
        seen = augment(x) if augment is not None else x
        logits = discriminator(seen, c, force_fp32=True) if _takes_force_fp32(type(discriminator)) \
            else discriminator(seen, c)
        (grad,) = torch.autograd.grad(logits.float().sum(), x, create_graph=True)
        return grad.square().flatten(1).sum(1)  # [N]


@functools.cache
def _takes_force_fp32(cls: type) -> bool:
    try:
        return "force_fp32" in inspect.signature(cls.forward).parameters
    except (TypeError, ValueError):
        return False


class R1(Regularizer):
    """R1 (Mescheder et al. 2018): ``(gamma / 2) * E ||grad_x D(x_real)||^2``. StyleGAN2: lazy, interval 16."""

    network = "discriminator"

    def __init__(self, *, gamma: float = 10.0, interval: int = 1) -> None:
        """
        Args:
            gamma: penalty weight.
            interval: run every ``interval`` iterations (16 in StyleGAN2); 1 folds it into Dmain.
        """
        super().__init__(weight=gamma, interval=interval)
        self.gamma = float(gamma)

    def forward(self, inputs: PenaltyInputs) -> Tensor:
        return 0.5 * self.gamma * input_gradient_sq_norm(inputs.discriminator, inputs.real, inputs.real_c,
                                                            augment=inputs.augment).mean()


class R2(Regularizer):
    """R2: ``(gamma / 2) * E ||grad_x D(G(z))||^2``, the same penalty on generated samples."""

    network = "discriminator"

    def __init__(self, *, gamma: float = 10.0, interval: int = 1) -> None:
        """
        Args:
            gamma: penalty weight.
            interval: run every ``interval`` iterations; 1 folds it into Dmain.
        """
        super().__init__(weight=gamma, interval=interval)
        self.gamma = float(gamma)

    def forward(self, inputs: PenaltyInputs) -> Tensor:
        fake, fake_c = inputs.fakes()
        return 0.5 * self.gamma * input_gradient_sq_norm(inputs.discriminator, fake, fake_c, augment=inputs.augment).mean()


class GradientPenalty(Regularizer):
    """WGAN-GP (Gulrajani et al. 2017): ``lambda * E (||grad D(x_hat)|| - target)^2`` on random interpolates.

    ``x_hat = eps * x_real + (1 - eps) * G(z)`` with ``eps ~ U[0, 1]`` per sample; conditional models
    generate the fakes with the real samples' conditions so that both ends share a label.
    """

    network = "discriminator"

    def __init__(self, *, weight: float = 10.0, target: float = 1.0, interval: int = 1) -> None:
        """
        Args:
            weight: lambda, the penalty weight (10 in the paper).
            target: the gradient norm the critic is pushed towards (1 = 1-Lipschitz).
            interval: run every ``interval`` iterations; 1 folds it into Dmain.
        """
        super().__init__(weight=weight, interval=interval)
        self.target = float(target)

    def forward(self, inputs: PenaltyInputs) -> Tensor:
        real = inputs.real.detach()
        z, _ = inputs.latents()
        with torch.no_grad():
            fake = inputs.generator(z, inputs.real_c)
        eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, dtype=real.dtype)
        x_hat = eps * real + (1.0 - eps) * fake.to(real.dtype)
        norm = input_gradient_sq_norm(inputs.discriminator, x_hat, inputs.real_c,
                                      augment=inputs.augment).add(1e-12).sqrt()
        return self.weight * (norm - self.target).square().mean()
