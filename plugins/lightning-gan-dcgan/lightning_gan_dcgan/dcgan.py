"""DCGAN generator and discriminator for square images (Radford et al. 2015), optionally class-conditional.

Generator: z (+ class c) -> linear projection to a 4x4 map -> log2(resolution / 4) upsampling blocks
(stride-2 transposed conv, or nearest upsampling + 3x3 conv) with BatchNorm and ReLU -> 3x3 conv to
``channels`` -> tanh. Discriminator: log2(resolution / 4) stride-2 4x4 convs with LeakyReLU(0.2)
(BatchNorm and spectral normalization optional) down to a 4x4 map whose flattened features ``h`` give
the logit ``w . h + b``; a conditional discriminator adds the projection term ``<embed(c), h>``
(Miyato & Koyama 2018).

Channel widths: a feature map at resolution r has ``min(base_channels * resolution / r, max_channels)``
channels, so the widest maps are the smallest ones, as in the paper.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from lightning_gan.interfaces import ArchitectureSpec, Discriminator, Generator, NetworkPair, require_condition

__all__ = [
    "DCGANArchitecture",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "DiscriminatorBlock",
    "GeneratorBlock",
    "channel_width",
    "check_resolution",
    "dcgan_init_",
    "num_blocks",
]

UpsampleMode = Literal["transposed", "nearest"]
_UPSAMPLE = ("transposed", "nearest")
INIT_STD = 0.02
MIN_RESOLUTION, MAX_RESOLUTION = 8, 256


def check_resolution(resolution: int) -> int:
    """``resolution`` itself if it is a power of two in [8, 256]; a ValueError otherwise."""
    if (isinstance(resolution, bool) or not isinstance(resolution, int)
            or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION or resolution & (resolution - 1)):
        allowed = ", ".join(str(2 ** k) for k in range(3, 9))
        raise ValueError(f"DCGAN resolution must be a power of two between {MIN_RESOLUTION} and "
                         f"{MAX_RESOLUTION} ({allowed}), got {resolution!r}")
    return resolution


def channel_width(r: int, *, resolution: int, base_channels: int, max_channels: int) -> int:
    """Channels of a feature map at resolution ``r``: ``min(base_channels * resolution / r, max_channels)``."""
    return min(base_channels * (resolution // r), max_channels)


def num_blocks(resolution: int) -> int:
    """Number of up- (or down-) sampling blocks between 4x4 and ``resolution``: log2(resolution / 4)."""
    return int(math.log2(check_resolution(resolution) // 4))


@torch.no_grad()
def dcgan_init_(module: nn.Module, std: float = INIT_STD) -> nn.Module:
    """DCGAN initialization in place: conv/linear weights ~ N(0, std), BatchNorm scales ~ N(1, std), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
    return module


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


class GeneratorBlock(nn.Module):
    """Doubles the resolution: (4x4 stride-2 transposed conv | nearest x2 + 3x3 conv) -> BatchNorm? -> ReLU."""

    def __init__(self, *, in_channels: int, out_channels: int, upsample: UpsampleMode = "transposed",
                 batch_norm: bool = True) -> None:
        """
        Args:
            in_channels: channels of the input map.
            out_channels: channels of the output map (twice the input's resolution).
            upsample: "transposed" (the paper's fractionally-strided conv) or "nearest" (upsample, then
                3x3 conv; no checkerboard artifacts, Odena et al. 2016).
            batch_norm: BatchNorm after the conv (the conv then has no bias, which BatchNorm would cancel).
        """
        super().__init__()
        if upsample not in _UPSAMPLE:
            raise ValueError(f"upsample must be one of {_UPSAMPLE}, got {upsample!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.upsample, self.batch_norm = upsample, batch_norm
        if upsample == "transposed":
            self.conv: nn.Module = nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1,
                                                      bias=not batch_norm)
        else:
            self.conv = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                      nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=not batch_norm))
        self.norm = nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:  # [N, C_in, H, W] -> [N, C_out, 2H, 2W]
        return self.act(self.norm(self.conv(x)))

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"upsample={self.upsample!r}, batch_norm={self.batch_norm}")


class DiscriminatorBlock(nn.Module):
    """Halves the resolution: 4x4 stride-2 conv -> BatchNorm? -> LeakyReLU(0.2)."""

    def __init__(self, *, in_channels: int, out_channels: int, batch_norm: bool = False) -> None:
        """
        Args:
            in_channels: channels of the input map.
            out_channels: channels of the output map (half the input's resolution).
            batch_norm: BatchNorm after the conv (the conv then has no bias).
        """
        super().__init__()
        self.in_channels, self.out_channels, self.batch_norm = in_channels, out_channels, batch_norm
        self.conv = nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1, bias=not batch_norm)
        self.norm = nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor) -> Tensor:  # [N, C_in, H, W] -> [N, C_out, H/2, W/2]
        return self.act(self.norm(self.conv(x)))

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, batch_norm={self.batch_norm}"


class DCGANGenerator(Generator):
    """z [N, z_dim] (+ one-hot c [N, c_dim]) -> images [N, channels, resolution, resolution] in [-1, 1]."""

    def __init__(self, *, z_dim: int, c_dim: int = 0, resolution: int, channels: int = 3,
                 base_channels: int = 64, max_channels: int = 512, upsample: UpsampleMode = "transposed",
                 batch_norm: bool = True, c_embed_dim: int = 0) -> None:
        """
        Args:
            z_dim: latent size.
            c_dim: number of classes (0 = unconditional).
            resolution: output height and width, a power of two in [8, 256].
            channels: output image channels.
            base_channels: channels of the last feature map (at ``resolution``); smaller maps have more.
            max_channels: cap on the channels of any feature map.
            upsample: "transposed" (stride-2 transposed convs) or "nearest" (upsample + 3x3 conv).
            batch_norm: BatchNorm in the projection and every upsampling block.
            c_embed_dim: size of a learned class embedding concatenated to z; 0 concatenates one-hot c itself.
        """
        super().__init__(z_dim=z_dim, c_dim=c_dim, output_shape=(channels, resolution, resolution))
        check_resolution(resolution)
        _check_positive(z_dim=z_dim, channels=channels, base_channels=base_channels, max_channels=max_channels)
        if c_dim < 0 or c_embed_dim < 0:
            raise ValueError(f"c_dim and c_embed_dim must be >= 0, got {c_dim} and {c_embed_dim}")
        self.resolution, self.channels = resolution, channels
        self.base_channels, self.max_channels = base_channels, max_channels
        self.upsample, self.batch_norm = upsample, batch_norm
        self.c_embed_dim = c_embed_dim if c_dim else 0

        def width(r: int) -> int:
            return channel_width(r, resolution=resolution, base_channels=base_channels, max_channels=max_channels)

        self.embed = nn.Linear(c_dim, self.c_embed_dim, bias=False) if self.c_embed_dim else None
        in_dim = z_dim + (self.c_embed_dim or c_dim)
        self.init_channels = width(4)
        self.project = nn.Linear(in_dim, self.init_channels * 16, bias=not batch_norm)  # -> [N, C0 * 4 * 4]
        self.project_norm = nn.BatchNorm2d(self.init_channels) if batch_norm else nn.Identity()
        self.project_act = nn.ReLU()
        blocks, r = [], 4
        for _ in range(num_blocks(resolution)):
            blocks.append(GeneratorBlock(in_channels=width(r), out_channels=width(2 * r), upsample=upsample,
                                         batch_norm=batch_norm))
            r *= 2
        self.blocks = nn.Sequential(*blocks)
        self.to_image = nn.Conv2d(width(resolution), channels, 3, padding=1)
        dcgan_init_(self)

    def factorizable_weights(self) -> Tensor:
        """SeFa's ``A`` [init_channels * 16, z_dim]: the first linear layer's weights on z (the class columns
        left out), ``lightning_gan.directions``."""
        return self.project.weight[:, :self.z_dim]

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        n = z.shape[0]
        if self.c_dim:
            c = require_condition(c, self.c_dim, n, "generator")
            z = torch.cat([z, self.embed(c) if self.embed is not None else c.to(z.dtype)], dim=1)
        x = self.project(z).view(n, self.init_channels, 4, 4)  # [N, C0, 4, 4]
        x = self.project_act(self.project_norm(x))
        x = self.blocks(x)  # [N, base_channels, R, R]
        return torch.tanh(self.to_image(x))  # [N, channels, R, R]

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", base_channels={self.base_channels}, max_channels={self.max_channels}, "
                f"upsample={self.upsample!r}, batch_norm={self.batch_norm}, c_embed_dim={self.c_embed_dim}")


class DCGANDiscriminator(Discriminator):
    """images [N, channels, resolution, resolution] (+ one-hot c) -> logits [N]; projection-conditional."""

    def __init__(self, *, c_dim: int = 0, resolution: int, channels: int = 3, base_channels: int = 64,
                 max_channels: int = 512, batch_norm: bool = False, spectral_norm: bool = False) -> None:
        """
        Args:
            c_dim: number of classes (0 = unconditional); > 0 adds the projection term <embed(c), h>.
            resolution: input height and width, a power of two in [8, 256].
            channels: input image channels.
            base_channels: a feature map at resolution r has ``base_channels * resolution / r`` channels, as
                in the generator (the first one, at resolution / 2, has 2 * base_channels).
            max_channels: cap on the channels of any feature map.
            batch_norm: BatchNorm in every downsampling block but the first (as in the paper).
            spectral_norm: spectral normalization (Miyato et al. 2018) of every weight, embedding included.
        """
        super().__init__(c_dim=c_dim, input_shape=(channels, resolution, resolution))
        check_resolution(resolution)
        _check_positive(channels=channels, base_channels=base_channels, max_channels=max_channels)
        if c_dim < 0:
            raise ValueError(f"c_dim must be >= 0, got {c_dim}")
        self.resolution, self.channels = resolution, channels
        self.base_channels, self.max_channels = base_channels, max_channels
        self.batch_norm, self.spectral_norm = batch_norm, spectral_norm

        def width(r: int) -> int:
            return channel_width(r, resolution=resolution, base_channels=base_channels, max_channels=max_channels)

        blocks, r, in_ch = [], resolution, channels
        for i in range(num_blocks(resolution)):
            blocks.append(DiscriminatorBlock(in_channels=in_ch, out_channels=width(r // 2),
                                             batch_norm=batch_norm and i > 0))
            in_ch, r = width(r // 2), r // 2
        self.blocks = nn.Sequential(*blocks)
        self.feature_dim = width(4) * 16  # flattened 4x4 map
        self.output = nn.Linear(self.feature_dim, 1)  # = the paper's final 4x4 "valid" conv
        self.embed = nn.Linear(c_dim, self.feature_dim, bias=False) if c_dim else None  # class embeddings [F, c_dim]
        dcgan_init_(self)
        if spectral_norm:
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    _spectral_norm(m)

    def features(self, x: Tensor) -> Tensor:
        """The features ``h`` [N, feature_dim] that the output layer and the projection read."""
        return self.blocks(x).flatten(1)  # [N, C * 4 * 4]

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        h = self.features(x)
        logits = self.output(h).squeeze(1)  # [N]
        if self.c_dim:
            c = require_condition(c, self.c_dim, x.shape[0], "discriminator")
            logits = logits + (self.embed(c.to(h.dtype)) * h).sum(1)  # projection <embed(c), h>
        return logits

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", base_channels={self.base_channels}, max_channels={self.max_channels}, "
                f"batch_norm={self.batch_norm}, spectral_norm={self.spectral_norm}")


class DCGANArchitecture(ArchitectureSpec):
    """DCGAN generator and discriminator for square images (registered as ``dcgan``)."""

    def __init__(
        self,
        *,
        resolution: int = 32,
        channels: int = 3,
        z_dim: int = 100,
        c_dim: int = 0,
        base_channels: int = 64,
        max_channels: int = 512,
        upsample: UpsampleMode = "transposed",
        c_embed_dim: int = 0,
        g_batch_norm: bool = True,
        d_batch_norm: bool = False,
        spectral_norm: bool = False,
    ) -> None:
        """
        Args:
            resolution: image height and width, a power of two in [8, 256].
            channels: image channels (3 for RGB, 1 for grayscale).
            z_dim: latent size.
            c_dim: number of classes for a conditional model (0 = unconditional).
            base_channels: channels of the feature maps at full resolution; each halving doubles them.
            max_channels: cap on the channels of any feature map.
            upsample: generator upsampling, "transposed" (stride-2 transposed conv) or "nearest" (+ 3x3 conv).
            c_embed_dim: the generator concatenates a learned class embedding of this size to z; 0 = one-hot c.
            g_batch_norm: BatchNorm in the generator (the paper's setting).
            d_batch_norm: BatchNorm in the discriminator's blocks after the first.
            spectral_norm: spectral normalization of every discriminator weight.
        """
        check_resolution(resolution)
        _check_positive(channels=channels, z_dim=z_dim, base_channels=base_channels, max_channels=max_channels)
        if c_dim < 0 or c_embed_dim < 0:
            raise ValueError(f"c_dim and c_embed_dim must be >= 0, got {c_dim} and {c_embed_dim}")
        if upsample not in _UPSAMPLE:
            raise ValueError(f"upsample must be one of {_UPSAMPLE}, got {upsample!r}")
        self.resolution, self.channels, self.z_dim, self.c_dim = resolution, channels, z_dim, c_dim
        self.base_channels, self.max_channels = base_channels, max_channels
        self.upsample, self.c_embed_dim = upsample, c_embed_dim
        self.g_batch_norm, self.d_batch_norm, self.spectral_norm = g_batch_norm, d_batch_norm, spectral_norm

    def build(self) -> NetworkPair:
        shape = dict(resolution=self.resolution, channels=self.channels, base_channels=self.base_channels,
                     max_channels=self.max_channels)
        return NetworkPair(
            DCGANGenerator(z_dim=self.z_dim, c_dim=self.c_dim, upsample=self.upsample, batch_norm=self.g_batch_norm,
                           c_embed_dim=self.c_embed_dim, **shape),
            DCGANDiscriminator(c_dim=self.c_dim, batch_norm=self.d_batch_norm, spectral_norm=self.spectral_norm,
                               **shape),
        )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config()["init_args"].items())
        return f"{type(self).__name__}({args})"
