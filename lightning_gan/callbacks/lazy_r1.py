"""LazyR1: switch on StyleGAN2's lazy R1 from a recipe's callback list.

It adds one ``R1(gamma, interval)`` to GANModule's regularizers during ``setup``, before the
optimizers are built, so the phase schedule runs it as a Dreg phase every ``interval`` iterations
with gain ``interval`` and corrects D's Adam hyperparameters: the same single mechanism a
regularizer given to GANModule directly goes through.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from typing_extensions import override

from lightning_gan.errors import ConfigError
from lightning_gan.regularizers import R1


class LazyR1(Callback):
    """Adds R1 with weight ``gamma`` every ``interval`` iterations (StyleGAN2: 16) to a GANModule.

    Args:
        gamma: R1 weight (``(gamma/2) * ||grad_x D(x_real)||^2``).
        interval: lazy interval in iterations; 1 folds R1 into the Dmain phase.
    """

    def __init__(self, *, gamma: float = 10.0, interval: int = 16) -> None:
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.gamma = float(gamma)
        self.interval = int(interval)

    @cached_property  # Lightning reads it on every hook call; the configuration never changes
    def state_key(self) -> str:
        return self._generate_state_key(gamma=self.gamma, interval=self.interval)

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        add = getattr(pl_module, "add_regularizer", None)
        if add is None:
            raise ConfigError(f"LazyR1 needs a GANModule (with add_regularizer); got {type(pl_module).__name__}")
        existing = [r for r in getattr(pl_module, "regularizers", []) if isinstance(r, R1)]
        for reg in existing:  # e.g. restored from a checkpoint's hyperparameters on resume
            if (reg.gamma, reg.interval) == (self.gamma, self.interval):
                return
            raise ConfigError(
                f"LazyR1(gamma={self.gamma}, interval={self.interval}) conflicts with the model's "
                f"R1(gamma={reg.gamma}, interval={reg.interval}); configure R1 in one place only."
            )
        add(R1(gamma=self.gamma, interval=self.interval))

    def __repr__(self) -> str:
        return f"LazyR1(gamma={self.gamma}, interval={self.interval})"

    def state_dict(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "interval": self.interval}
