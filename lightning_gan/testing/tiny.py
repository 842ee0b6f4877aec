"""Few-parameter generator/discriminator pairs for fast tests of the core and of plugins.

``TinyArchitecture(data_dim=2, hidden=8)`` builds an MLP G and D on vectors of about a hundred parameters
each; a conditional one (``c_dim > 0``) concatenates the one-hot condition to the input of both networks.
``TinyGrowableArchitecture(resolutions=(4, 8, 16))`` builds a small convolutional pair on images that
grows progressively (``lightning_gan.interfaces.GrowableGenerator`` / ``GrowableDiscriminator``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightning_gan.interfaces import (
    ArchitectureSpec,
    Discriminator,
    Generator,
    GrowableDiscriminator,
    GrowableGenerator,
    NetworkPair,
    require_condition,
)
from lightning_gan.ops.growth import downsample_average, fade, upsample_nearest

__all__ = [
    "TinyArchitecture",
    "TinyDiscriminator",
    "TinyGenerator",
    "TinyGrowableArchitecture",
    "TinyGrowableDiscriminator",
    "TinyGrowableGenerator",
]


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


class TinyGrowableGenerator(GrowableGenerator):
    """z (+ c) -> Linear -> [width, r0, r0]; per later stage r: 2x nearest -> 3x3 conv -> LeakyReLU; 1x1 toRGB.

    At stage ``k > 0`` the output is ``fade(upsample_nearest(toRGB[r_{k-1}](h_{k-1})), toRGB[r_k](h_k), alpha)``,
    ``h_k`` being the features after stage ``k`` (ProGAN's fig. 2 on a few parameters).
    """

    def __init__(self, *, z_dim: int, c_dim: int = 0, channels: int, width: int,
                 resolutions: Sequence[int]) -> None:
        """
        Args:
            z_dim: latent size.
            c_dim: condition size (0 = unconditional).
            channels: image channels.
            width: feature channels of every stage.
            resolutions: the stages' side lengths, each double the one before.
        """
        last = int(resolutions[-1])
        super().__init__(z_dim=z_dim, c_dim=c_dim, output_shape=(channels, last, last), resolutions=resolutions)
        self.width = width
        first = self.resolutions[0]
        self.stem = nn.Sequential(nn.Linear(z_dim + c_dim, width * first * first), nn.LeakyReLU(0.2))
        self.blocks = nn.ModuleDict({str(r): nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2))
                                     for r in self.resolutions[1:]})
        self.to_rgb = nn.ModuleDict({str(r): nn.Conv2d(width, channels, 1) for r in self.resolutions})

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        first, k = self.resolutions[0], self.stage_index
        h = self.stem(_with_condition(z, c, self.c_dim, "generator")).view(-1, self.width, first, first)
        previous = h
        for r in self.resolutions[1:k + 1]:
            previous = h
            h = self.blocks[str(r)](upsample_nearest(h))  # [N, width, r, r]
        image = self.to_rgb[str(self.resolution)](h)  # [N, channels, r, r]
        if k == 0:
            return image
        old = upsample_nearest(self.to_rgb[str(self.resolutions[k - 1])](previous))  # the previous stage's image
        return fade(old, image, self.alpha)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", width={self.width}"


class TinyGrowableDiscriminator(GrowableDiscriminator):
    """Per stage r: 1x1 fromRGB -> LeakyReLU; 3x3 conv -> LeakyReLU -> 0.5x average; at r0: Linear -> logits.

    At stage ``k > 0`` the features entering stage ``k - 1`` are
    ``fade(fromRGB[r_{k-1}](downsample_average(x)), downsample_average(block[r_k](fromRGB[r_k](x))), alpha)``.
    """

    def __init__(self, *, c_dim: int = 0, channels: int, width: int, resolutions: Sequence[int]) -> None:
        """
        Args:
            c_dim: condition size (0 = unconditional); the condition joins the features before the head.
            channels: image channels.
            width: feature channels of every stage.
            resolutions: the stages' side lengths, each double the one before.
        """
        last = int(resolutions[-1])
        super().__init__(c_dim=c_dim, input_shape=(channels, last, last), resolutions=resolutions)
        self.width = width
        first = self.resolutions[0]
        self.from_rgb = nn.ModuleDict({str(r): nn.Sequential(nn.Conv2d(channels, width, 1), nn.LeakyReLU(0.2))
                                       for r in self.resolutions})
        self.blocks = nn.ModuleDict({str(r): nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2))
                                     for r in self.resolutions[1:]})
        self.head = nn.Sequential(nn.Linear(width * first * first + c_dim, width), nn.LeakyReLU(0.2),
                                  nn.Linear(width, 1))

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        k = self.stage_index
        h = self.from_rgb[str(self.resolution)](x)  # [N, width, r, r]
        if k > 0:
            new = downsample_average(self.blocks[str(self.resolution)](h))  # [N, width, r/2, r/2]
            old = self.from_rgb[str(self.resolutions[k - 1])](downsample_average(x))  # the previous stage's input
            h = fade(old, new, self.alpha)
            for r in reversed(self.resolutions[1:k]):
                h = downsample_average(self.blocks[str(r)](h))  # [N, width, r/2, r/2]
        return self.head(_with_condition(h.flatten(1), c, self.c_dim, "discriminator")).squeeze(1)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", width={self.width}"


class TinyGrowableArchitecture(ArchitectureSpec):
    """A small convolutional pair on images that grows through ``resolutions`` (default 4 -> 8 -> 16 px)."""

    def __init__(self, *, resolutions: Sequence[int] = (4, 8, 16), channels: int = 1, z_dim: int = 8,
                 c_dim: int = 0, width: int = 4) -> None:
        """
        Args:
            resolutions: the stages' side lengths, each double the one before.
            channels: image channels.
            z_dim: latent size.
            c_dim: number of classes for a conditional pair (0 = unconditional).
            width: feature channels of every stage of both networks.
        """
        for name, value in (("channels", channels), ("z_dim", z_dim), ("width", width)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if c_dim < 0:
            raise ValueError(f"c_dim must be >= 0, got {c_dim}")
        self.resolutions = tuple(int(r) for r in resolutions)
        self.channels, self.z_dim, self.c_dim, self.width = channels, z_dim, c_dim, width

    def build(self) -> NetworkPair:
        return NetworkPair(
            TinyGrowableGenerator(z_dim=self.z_dim, c_dim=self.c_dim, channels=self.channels, width=self.width,
                                  resolutions=self.resolutions),
            TinyGrowableDiscriminator(c_dim=self.c_dim, channels=self.channels, width=self.width,
                                      resolutions=self.resolutions),
        )

    def __repr__(self) -> str:
        return (f"TinyGrowableArchitecture(resolutions={self.resolutions}, channels={self.channels}, "
                f"z_dim={self.z_dim}, c_dim={self.c_dim}, width={self.width})")
