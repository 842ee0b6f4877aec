"""LeCam regularization (Tseng et al. 2021): D's outputs held near running anchors of the other side's outputs.

With exponential moving averages (decay ``decay``, 0.99 in the paper) of the discriminator's mean output on real
and on generated images,

    ``a_R <- decay * a_R + (1 - decay) * mean D(x_real)``,   ``a_F <- decay * a_F + (1 - decay) * mean D(G(z))``,

updated with the current batch first, the penalty on the discriminator is

    ``R_LC = lambda * ( E ||D(x_real) - a_F||^2 + E ||D(G(z)) - a_R||^2 )``

(lambda 0.1-0.3 in the paper with the hinge loss; the anchors carry no gradient). It keeps D's predictions on
real and generated images from drifting apart, which is what a discriminator memorizing a small training set
does; the paper shows it bounds a LeCam divergence between the two distributions and helps most with little data.

The outputs are the ones D computes in the Dmain phase on what it is shown (augmented images when the run
augments): folded into Dmain (``interval=1``, the default), the penalty reuses that phase's logits
(``PenaltyInputs.d_logits``) and costs no extra D forward. With a lazy interval it runs D on the real batch and a
fresh fake batch itself. The anchors are buffers, so they are saved in checkpoints; they start at 0 and are
updated with the batch means averaged over processes (``PenaltyInputs.reduce_mean``), identical on every process.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_gan.interfaces import PenaltyInputs, Regularizer

__all__ = ["LeCam", "lecam_penalty"]


def lecam_penalty(real_logits: Tensor, fake_logits: Tensor, anchor_real: Tensor, anchor_fake: Tensor) -> Tensor:
    """``E (D(x_real) - a_F)^2 + E (D(G(z)) - a_R)^2``, unweighted (module docstring)."""
    return (real_logits.float() - anchor_fake).square().mean() + (fake_logits.float() - anchor_real).square().mean()


class LeCam(Regularizer):
    """LeCam regularization on the discriminator (registered as ``lecam``; module docstring)."""

    network = "discriminator"

    def __init__(self, *, weight: float = 0.3, decay: float = 0.99, interval: int = 1) -> None:
        """
        Args:
            weight: lambda, the penalty weight (0.1-0.3 in the paper).
            decay: decay of the anchors' moving averages (0.99 in the paper).
            interval: run every ``interval`` iterations; 1 (the default) folds it into Dmain, reusing its logits.
        """
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        super().__init__(weight=weight, interval=interval)
        self.decay = float(decay)
        self.register_buffer("anchor_real", torch.zeros((), dtype=torch.float32))
        self.register_buffer("anchor_fake", torch.zeros((), dtype=torch.float32))

    def forward(self, inputs: PenaltyInputs) -> Tensor:
        if inputs.d_logits is not None:
            real_logits, fake_logits = inputs.d_logits
        else:
            fake, fake_c = inputs.fakes()
            real_logits = inputs.discriminate(inputs.real, inputs.real_c)
            fake_logits = inputs.discriminate(fake, fake_c)
        with torch.no_grad():  # the anchors take this batch in first, then hold its outputs near them
            means = inputs.reduce_mean(torch.stack([real_logits.detach().float().mean(),
                                                    fake_logits.detach().float().mean()]))
            self.anchor_real.lerp_(means[0], 1.0 - self.decay)
            self.anchor_fake.lerp_(means[1], 1.0 - self.decay)
        return self.weight * lecam_penalty(real_logits, fake_logits, self.anchor_real, self.anchor_fake)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, decay={self.decay}"
