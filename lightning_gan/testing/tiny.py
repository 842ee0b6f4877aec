"""A few-parameter MLP generator/discriminator pair on vectors, for fast tests of the core and of plugins.

``TinyArchitecture(data_dim=2, hidden=8)`` builds a G and a D of about a hundred parameters each; a
conditional one (``c_dim > 0``) concatenates the one-hot condition to the input of both networks.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_gan.interfaces import ArchitectureSpec, Discriminator, Generator, NetworkPair, require_condition

__all__ = ["TinyArchitecture", "TinyDiscriminator", "TinyGenerator"]


def _with_condition(x: Tensor, c: Tensor | None, c_dim: int, who: str) -> Tensor:
    """``x`` with the conditions [N, c_dim] concatenated (conditional networks), else ``x``."""
    if not c_dim:
        return x
    return torch.cat([x, require_condition(c, c_dim, x.shape[0], who).to(x.dtype)], dim=1)


class TinyGenerator(Generator):
    """z [N, z_dim] (+ c [N, c_dim]) -> Linear -> LeakyReLU(0.2) -> Linear -> points [N, data_dim]."""

    def __init__(self, *, z_dim: int, c_dim: int = 0, data_dim: int, hidden: int) -> None:
        """
        Args:
            z_dim: latent size.
            c_dim: condition size (0 = unconditional).
            data_dim: size of one output vector.
            hidden: width of the single hidden layer.
        """
        super().__init__(z_dim=z_dim, c_dim=c_dim, output_shape=(data_dim,))
        self.hidden = hidden
        self.net = nn.Sequential(nn.Linear(z_dim + c_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, data_dim))

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        return self.net(_with_condition(z, c, self.c_dim, "generator"))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", hidden={self.hidden}"


class TinyDiscriminator(Discriminator):
    """x [N, data_dim] (+ c [N, c_dim]) -> Linear -> LeakyReLU(0.2) -> Linear -> logits [N]."""

    def __init__(self, *, c_dim: int = 0, data_dim: int, hidden: int) -> None:
        """
        Args:
            c_dim: condition size (0 = unconditional).
            data_dim: size of one input vector.
            hidden: width of the single hidden layer.
        """
        super().__init__(c_dim=c_dim, input_shape=(data_dim,))
        self.hidden = hidden
        self.net = nn.Sequential(nn.Linear(data_dim + c_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        return self.net(_with_condition(x, c, self.c_dim, "discriminator")).squeeze(1)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", hidden={self.hidden}"


class TinyArchitecture(ArchitectureSpec):
    """A one-hidden-layer MLP pair on vectors: the smallest architecture that exercises the contracts."""

    def __init__(self, *, data_dim: int = 2, z_dim: int = 2, c_dim: int = 0, hidden: int = 8) -> None:
        """
        Args:
            data_dim: size of one data vector.
            z_dim: latent size.
            c_dim: number of classes for a conditional pair (0 = unconditional).
            hidden: width of each network's hidden layer.
        """
        for name, value in (("data_dim", data_dim), ("z_dim", z_dim), ("hidden", hidden)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if c_dim < 0:
            raise ValueError(f"c_dim must be >= 0, got {c_dim}")
        self.data_dim, self.z_dim, self.c_dim, self.hidden = data_dim, z_dim, c_dim, hidden

    def build(self) -> NetworkPair:
        return NetworkPair(
            TinyGenerator(z_dim=self.z_dim, c_dim=self.c_dim, data_dim=self.data_dim, hidden=self.hidden),
            TinyDiscriminator(c_dim=self.c_dim, data_dim=self.data_dim, hidden=self.hidden),
        )

    def __repr__(self) -> str:
        return (f"TinyArchitecture(data_dim={self.data_dim}, z_dim={self.z_dim}, c_dim={self.c_dim}, "
                f"hidden={self.hidden})")
