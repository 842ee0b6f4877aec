"""Built-in adversarial losses (registered in ``lightning_gan.losses`` through the core's entry points)."""

from lightning_gan.losses.adversarial import (
    HingeLoss,
    LeastSquaresLoss,
    NonSaturatingLoss,
    RelativisticPairingLoss,
    WassersteinLoss,
)

__all__ = ["HingeLoss", "LeastSquaresLoss", "NonSaturatingLoss", "RelativisticPairingLoss", "WassersteinLoss"]
