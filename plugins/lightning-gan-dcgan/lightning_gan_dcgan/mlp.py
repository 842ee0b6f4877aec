"""Multilayer perceptrons for low-dimensional toy data (the 2-D mixtures of ``toy2d``).

The discriminator can *pack* m samples into one judgement (PacGAN, Lin et al. 2018): it sees
``m`` samples side by side, which penalizes a generator that makes too few distinct ones.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from lightning_gan.interfaces import ArchitectureSpec, Discriminator, Generator, NetworkPair, require_condition

_ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "elu": nn.ELU, "silu": nn.SiLU}


def _mlp(in_dim: int, hidden: int, depth: int, out_dim: int, activation: str, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(depth):
        layers.append(nn.Linear(dim, hidden, bias=not batch_norm))  # BatchNorm would cancel a bias
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden))
        layers.append(_ACTIVATIONS[activation]())
        dim = hidden
    layers.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*layers)


class MLPGenerator(Generator):
    """z [N, z_dim] (+ one-hot c [N, c_dim]) -> points [N, data_dim]."""

    def __init__(self, *, z_dim: int, c_dim: int, data_dim: int, hidden: int, depth: int,
                 activation: str, batch_norm: bool) -> None:
        super().__init__(z_dim=z_dim, c_dim=c_dim, output_shape=(data_dim,))
        self.net = _mlp(z_dim + c_dim, hidden, depth, data_dim, activation, batch_norm)

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        if self.c_dim:
            z = torch.cat([z, require_condition(c, self.c_dim, z.shape[0], "generator")], dim=1)
        return self.net(z)


class MLPDiscriminator(Discriminator):
    """points [N, data_dim] (+ c) -> logits [N]; with ``pack`` m, each group of m samples shares one logit."""

    def __init__(self, *, c_dim: int, data_dim: int, hidden: int, depth: int, activation: str, pack: int) -> None:
        super().__init__(c_dim=c_dim, input_shape=(data_dim,))
        self.pack = int(pack)
        self.net = _mlp((data_dim + c_dim) * self.pack, hidden, depth, 1, activation, batch_norm=False)

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        if self.c_dim:
            x = torch.cat([x, require_condition(c, self.c_dim, x.shape[0], "discriminator")], dim=1)
        n = x.shape[0]
        if n % self.pack:
            raise ValueError(f"batch size {n} is not a multiple of pack={self.pack}")
        logits = self.net(x.reshape(n // self.pack, -1)).squeeze(1)  # [N / pack]
        return logits.repeat_interleave(self.pack) if self.pack > 1 else logits

    def extra_repr(self) -> str:
        return super().extra_repr() + f", pack={self.pack}"


class MLPArchitecture(ArchitectureSpec):
    """MLP generator and discriminator for vectors (registered as ``mlp``)."""

    def __init__(
        self,
        *,
        data_dim: int = 2,
        z_dim: int = 2,
        c_dim: int = 0,
        g_hidden: int = 256,
        g_depth: int = 3,
        d_hidden: int = 256,
        d_depth: int = 3,
        activation: Literal["relu", "leaky_relu", "elu", "silu"] = "relu",
        g_batch_norm: bool = False,
        pack: int = 1,
    ) -> None:
        """
        Args:
            data_dim: size of one data vector (2 for toy2d).
            z_dim: latent size.
            c_dim: number of classes for a conditional model (0 = unconditional).
            g_hidden: width of the generator's hidden layers.
            g_depth: number of hidden layers of the generator.
            d_hidden: width of the discriminator's hidden layers.
            d_depth: number of hidden layers of the discriminator.
            activation: hidden-layer nonlinearity.
            g_batch_norm: batch normalization in the generator's hidden layers (PacGAN's setup).
            pack: samples per discriminator judgement (PacGAN's m; 1 = a plain discriminator).
        """
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        for name, value in (("data_dim", data_dim), ("z_dim", z_dim), ("g_hidden", g_hidden),
                            ("d_hidden", d_hidden), ("pack", pack)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.data_dim, self.z_dim, self.c_dim = data_dim, z_dim, c_dim
        self.g_hidden, self.g_depth, self.d_hidden, self.d_depth = g_hidden, g_depth, d_hidden, d_depth
        self.activation, self.g_batch_norm, self.pack = activation, g_batch_norm, pack

    def build(self) -> NetworkPair:
        return NetworkPair(
            MLPGenerator(z_dim=self.z_dim, c_dim=self.c_dim, data_dim=self.data_dim, hidden=self.g_hidden,
                         depth=self.g_depth, activation=self.activation, batch_norm=self.g_batch_norm),
            MLPDiscriminator(c_dim=self.c_dim, data_dim=self.data_dim, hidden=self.d_hidden,
                             depth=self.d_depth, activation=self.activation, pack=self.pack),
        )
