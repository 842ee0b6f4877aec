"""The four classic adversarial losses, as per-batch means over discriminator logits [N]."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from lightning_gan.interfaces import AdversarialLoss


class NonSaturatingLoss(AdversarialLoss):
    """Logistic loss (Goodfellow et al. 2014, non-saturating G; StyleGAN's default).

    D: ``softplus(-D(x)) + softplus(D(G(z)))``;  G: ``softplus(-D(G(z)))``.
    """

    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        return F.softplus(-fake_logits).mean()

    def discriminator_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


class HingeLoss(AdversarialLoss):
    """Hinge loss (Lim & Ye 2017; SAGAN/BigGAN).

    D: ``relu(margin - D(x)) + relu(margin + D(G(z)))``;  G: ``-D(G(z))``.
    """

    def __init__(self, *, margin: float = 1.0) -> None:
        """
        Args:
            margin: the hinge's margin (1 in the papers).
        """
        self.margin = float(margin)

    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        return -fake_logits.mean()

    def discriminator_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return F.relu(self.margin - real_logits).mean() + F.relu(self.margin + fake_logits).mean()


class WassersteinLoss(AdversarialLoss):
    """Wasserstein critic loss (Arjovsky et al. 2017); pair it with ``gradient_penalty`` (WGAN-GP).

    D: ``D(G(z)) - D(x) + drift * D(x)^2``;  G: ``-D(G(z))``. ``drift`` is ProGAN's epsilon term.
    """

    def __init__(self, *, drift: float = 0.0) -> None:
        """
        Args:
            drift: weight of the drift penalty ``D(x)^2`` that keeps critic outputs near 0 (ProGAN: 0.001).
        """
        self.drift = float(drift)

    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        return -fake_logits.mean()

    def discriminator_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        loss = fake_logits.mean() - real_logits.mean()
        if self.drift:
            loss = loss + self.drift * real_logits.square().mean()
        return loss


class LeastSquaresLoss(AdversarialLoss):
    """Least-squares GAN (Mao et al. 2017) with targets a (fake), b (real), c (G's wish).

    D: ``((D(x) - b)^2 + (D(G(z)) - a)^2) / 2``;  G: ``(D(G(z)) - c)^2 / 2``.
    """

    def __init__(self, *, real_target: float = 1.0, fake_target: float = 0.0, generator_target: float = 1.0) -> None:
        """
        Args:
            real_target: b, the discriminator's target for real samples.
            fake_target: a, the discriminator's target for generated samples.
            generator_target: c, the value the generator wants D to output for its samples.
        """
        self.real_target = float(real_target)
        self.fake_target = float(fake_target)
        self.generator_target = float(generator_target)

    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        return 0.5 * (fake_logits - self.generator_target).square().mean()

    def discriminator_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return 0.5 * ((real_logits - self.real_target).square().mean()
                      + (fake_logits - self.fake_target).square().mean())


class RelativisticPairingLoss(AdversarialLoss):
    """Relativistic pairing GAN, RpGAN (Jolicoeur-Martineau 2019; Huang et al. 2024 with R1 + R2).

    Each real sample ``x_i`` is paired with a generated one ``G(z_i)`` and D judges which of the two is real:
    D: ``softplus(D(G(z_i)) - D(x_i))``;  G: ``softplus(D(x_i) - D(G(z_i)))`` (means over the pairs). The
    generator's loss needs the real logits (``generator_needs_real``). Pair it with ``r1`` and ``r2``.
    """

    generator_needs_real = True

    def generator_loss(self, fake_logits: Tensor, real_logits: Tensor | None = None) -> Tensor:
        if real_logits is None:
            raise ValueError("RelativisticPairingLoss.generator_loss needs the real logits of the paired samples")
        _check_pairs(real_logits, fake_logits)
        return F.softplus(real_logits - fake_logits).mean()

    def discriminator_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        _check_pairs(real_logits, fake_logits)
        return F.softplus(fake_logits - real_logits).mean()


def _check_pairs(real_logits: Tensor, fake_logits: Tensor) -> None:
    """One real logit per generated one (no broadcasting between the two batches)."""
    if real_logits.shape != fake_logits.shape:
        raise ValueError(f"a relativistic pairing loss needs as many real as generated logits, got "
                         f"{tuple(real_logits.shape)} and {tuple(fake_logits.shape)}")
