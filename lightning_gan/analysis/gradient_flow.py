"""How much gradient the discriminator loss sends to each layer, with and without R1.

Theory and papers: docs/theory.md#hinge-vs-non-saturating-gradient-flow.

Hinge and non-saturating logistic losses differ in where their gradient vanishes: the logistic loss
weights every sample by ``sigmoid(-D(x_real))`` or ``sigmoid(D(x_fake))`` (small once D is confident),
the hinge drops samples beyond its margin entirely. R1 adds ``gamma * d/dtheta (1/2 E|grad_x D|^2)``,
which does not vanish with confidence. :func:`discriminator_gradient_flow` measures both parts per layer.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from lightning_gan.interfaces import AdversarialLoss, Discriminator, PenaltyInputs
from lightning_gan.regularizers.gradient import R1

__all__ = ["LayerGradient", "discriminator_gradient_flow"]


class LayerGradient(NamedTuple):
    """Gradient norms reaching one layer's own parameters (weight and bias, not its children's).

    Attributes:
        name: the module's qualified name ("(root)" for parameters held by the discriminator itself).
        grad_norm: ``|g_adv + g_r1|``, the L2 norm over the layer's parameters of the total gradient.
        adversarial_grad_norm: ``|g_adv|``, from the adversarial loss alone.
        r1_grad_norm: ``|g_r1|``, from the R1 penalty alone (0 when ``r1_gamma == 0``).
        num_params: number of scalar parameters of the layer.
    """

    name: str
    grad_norm: float
    adversarial_grad_norm: float
    r1_grad_norm: float
    num_params: int


def _no_latents(n: int) -> tuple[Tensor, Tensor | None]:
    raise RuntimeError("discriminator_gradient_flow gives R1 real samples only; it has no latents to sample")


def _norm(grads: list[Tensor | None]) -> Tensor:
    squares = [g.detach().double().square().sum() for g in grads if g is not None]
    return torch.stack(squares).sum().sqrt() if squares else torch.zeros((), dtype=torch.float64)


def discriminator_gradient_flow(discriminator: Discriminator, real: Tensor, fake: Tensor,
                                loss: AdversarialLoss | str, r1_gamma: float = 0.0, *,
                                real_c: Tensor | None = None, fake_c: Tensor | None = None) -> list[LayerGradient]:
    """Per-layer norms of the gradient of ``loss.discriminator_loss(D(real), D(fake)) + R1`` w.r.t. D's parameters.

    The objective is the discriminator's, as the training step computes it with R1 folded in
    (``interval=1``): ``loss.discriminator_loss(D(real, real_c), D(fake, fake_c))`` (e.g. non-saturating
    ``mean softplus(-D(x_r)) + mean softplus(D(x_f))``, hinge ``mean relu(1 - D(x_r)) + mean relu(1 + D(x_f))``)
    plus, when ``r1_gamma > 0``, ``lightning_gan.regularizers.R1(gamma=r1_gamma)``:
    ``(gamma / 2) mean_n |grad_x D(x_r,n)|^2`` (a lazy R1 with interval k is this, times k, every k-th step).
    The two parts are differentiated separately (``torch.autograd.grad``: the parameters' ``.grad`` are not
    touched) and reported per layer, i.e. per module that owns parameters directly, in ``named_modules`` order.

    Args:
        discriminator: the discriminator, called as ``discriminator(x, c)``; its current train/eval mode is used.
        real: a real batch [N, ...].
        fake: a generated batch [M, ...] (detached: no gradient reaches the generator).
        loss: an adversarial loss, or its registered name ("hinge", "non_saturating", ...).
        r1_gamma: R1 weight gamma (>= 0); 0 leaves R1 out.
        real_c: conditions of the real batch [N, c_dim], or None.
        fake_c: conditions of the fake batch [M, c_dim], or None.
    """
    if isinstance(loss, str):
        from lightning_gan import registry

        loss = registry.get_registry("losses").create(loss)
    if not isinstance(loss, AdversarialLoss):
        raise ValueError(f"loss must be an AdversarialLoss or a registered loss name, got {type(loss).__name__}")
    if not r1_gamma >= 0:
        raise ValueError(f"r1_gamma must be >= 0, got {r1_gamma}")
    if real.dim() < 1 or fake.dim() < 1 or real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"real [N, ...] and fake [M, ...] must share a sample shape, got {tuple(real.shape)} "
                         f"and {tuple(fake.shape)}")
    layers: list[tuple[str, list[nn.Parameter]]] = []
    for name, module in discriminator.named_modules():
        params = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if params:
            layers.append((name or "(root)", params))
    if not layers:
        raise ValueError("the discriminator has no trainable parameters")
    flat = [p for _, params in layers for p in params]

    with torch.enable_grad():
        real_logits = discriminator(real.detach(), real_c)
        fake_logits = discriminator(fake.detach(), fake_c)
        adversarial = loss.discriminator_loss(real_logits, fake_logits)
        adv_grads = list(torch.autograd.grad(adversarial, flat, allow_unused=True))
        if r1_gamma > 0:
            inputs = PenaltyInputs(generator=None, discriminator=discriminator,  # type: ignore[arg-type]
                                   real=real, real_c=real_c, latent_sampler=_no_latents)
            penalty = R1(gamma=r1_gamma)(inputs)
            r1_grads = list(torch.autograd.grad(penalty, flat, allow_unused=True))
        else:
            r1_grads = [None] * len(flat)

    records, i = [], 0
    for name, params in layers:
        adv, r1 = adv_grads[i:i + len(params)], r1_grads[i:i + len(params)]
        i += len(params)
        total = [a if b is None else (b if a is None else a + b) for a, b in zip(adv, r1)]
        records.append(LayerGradient(name=name, grad_norm=float(_norm(total)), adversarial_grad_norm=float(_norm(adv)),
                                     r1_grad_norm=float(_norm(r1)), num_params=sum(p.numel() for p in params)))
    return records
