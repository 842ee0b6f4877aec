"""Differentiable augmentations of every image the discriminator sees: ``DiffAugment`` and ``ADA``.

``DiffAugment`` (Zhao et al. 2020) applies colour, translation and cutout to every image at every call;
``ADA`` (Karras et al. 2020) applies the "bgc" pipeline (blit, geometric, colour) with a probability p that its
controller adapts to how much D overfits. Both implement ``lightning_gan.interfaces.Augmentation``; the maths is
in ``lightning_gan.augment.transforms`` (ADA) and in ``lightning_gan.augment.diffaugment``'s functions.
"""

from lightning_gan.augment.ada import ADA, MAX_P, ADAParameters
from lightning_gan.augment.diffaugment import POLICIES, DiffAugment

__all__ = ["ADA", "MAX_P", "POLICIES", "ADAParameters", "DiffAugment"]
