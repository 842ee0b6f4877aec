"""ProGAN's progressively growing generator and discriminator and the ``progan`` architecture spec (Karras et al. 2018).

Both networks grow from 4x4 to ``resolution`` = 2^k (k <= 10) through the stages 4, 8, ..., ``resolution``
(``lightning_gan.interfaces.GrowableGenerator`` / ``GrowableDiscriminator``); a freshly built pair stands at
its last stage with alpha 1, an ordinary full-resolution GAN. Feature channels at resolution r are
``min(channel_base // r, channel_max)`` (the paper: 512 up to 32x32, then halving, ``channel_base = 16384``).

Generator (Table 2): z [N, z_dim] -> pixel norm (the latent on the sphere) -> 4x4 block (fully connected to
a 4x4 map, the paper's "4x4 conv" on a 1x1 input, leaky ReLU, pixel norm; 3x3 conv, leaky ReLU, pixel norm)
-> per later stage r: 2x nearest upsampling, two 3x3 convs each followed by leaky ReLU and pixel norm ->
toRGB (1x1 conv, linear). While stage r fades in (fig. 2), the image is
``fade(upsample_nearest(toRGB_q(h_q)), toRGB_r(h_r), alpha)``, q = r / 2 and h the features after a stage.

Discriminator: fromRGB (1x1 conv, leaky ReLU) at the stage's resolution -> per stage r down to 8: two 3x3
convs with leaky ReLU (the second one to the channels of r / 2) and 0.5x average pooling -> 4x4 epilogue:
minibatch standard deviation, 3x3 conv, the paper's "4x4 conv" (fully connected on the flattened map),
the linear output. While stage r fades in, the features entering stage q are
``fade(fromRGB_q(downsample_average(x)), block_r(fromRGB_r(x)), alpha)``.

Every layer uses equalized learning rate; no batch normalization anywhere. Class conditioning (optional,
not in the paper): the generator concatenates a learned class embedding to the normalized latent; the
discriminator adds a projection term ``<embed(c), h> / sqrt(C)`` on the features ``h`` [N, C] before its
output layer (Miyato & Koyama 2018).

The paper's loss is WGAN-GP with the drift term: the core ``wasserstein`` loss with ``drift: 0.001`` and the
regularizer ``gradient_penalty`` (weight 10); the non-saturating logistic loss also works.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lightning_gan.interfaces import (
    ArchitectureSpec,
    GrowableDiscriminator,
    GrowableGenerator,
    NetworkPair,
    require_condition,
)
from lightning_gan.ops.growth import downsample_average, fade, upsample_nearest
from lightning_gan_progan.layers import EqualizedConv2d, EqualizedLinear, MinibatchStdDev, group_size_for, pixel_norm

__all__ = [
    "DiscriminatorBlock",
    "GeneratorBlock",
    "ProGANArchitecture",
    "ProGANDiscriminator",
    "ProGANGenerator",
    "channels_at",
    "check_resolution",
    "stage_resolutions",
]

MIN_RESOLUTION, MAX_RESOLUTION = 4, 1024


def check_resolution(resolution: int) -> int:
    """``resolution`` if it is a power of two in [4, 1024]; a ValueError otherwise."""
    if (isinstance(resolution, bool) or not isinstance(resolution, int)
            or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION or resolution & (resolution - 1)):
        raise ValueError(f"ProGAN resolution must be a power of two between {MIN_RESOLUTION} and {MAX_RESOLUTION} "
                         f"(4, 8, ..., 1024), got {resolution!r}")
    return resolution


def stage_resolutions(resolution: int) -> tuple[int, ...]:
    """The stages 4, 8, ..., ``resolution``."""
    return tuple(2 ** i for i in range(2, int(math.log2(check_resolution(resolution))) + 1))


def channels_at(r: int, *, channel_base: int, channel_max: int) -> int:
    """Feature channels at resolution ``r``: ``max(1, min(channel_base // r, channel_max))``."""
    return max(1, min(channel_base // r, channel_max))


def _check_ints(minimum: int, **values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


class GeneratorBlock(nn.Module):
    """Doubles the resolution: 2x nearest -> (3x3 conv -> leaky ReLU -> pixel norm) twice."""

    def __init__(self, *, in_channels: int, out_channels: int, use_pixel_norm: bool = True,
                 equalized: bool = True) -> None:
        """
        Args:
            in_channels: channels of the input map.
            out_channels: channels of the output map (twice the input's resolution).
            use_pixel_norm: pixel norm after each conv.
            equalized: equalized learning rate.
        """
        super().__init__()
        self.use_pixel_norm = bool(use_pixel_norm)
        self.conv0 = EqualizedConv2d(in_channels=in_channels, out_channels=out_channels, kernel_size=3,
                                     equalized=equalized)
        self.conv1 = EqualizedConv2d(in_channels=out_channels, out_channels=out_channels, kernel_size=3,
                                     equalized=equalized)

    def _norm(self, x: Tensor) -> Tensor:
        return pixel_norm(x) if self.use_pixel_norm else x

    def forward(self, x: Tensor) -> Tensor:  # [N, I, H, W] -> [N, O, 2H, 2W]
        x = self._norm(self.conv0(upsample_nearest(x)))
        return self._norm(self.conv1(x))


class DiscriminatorBlock(nn.Module):
    """Halves the resolution: 3x3 conv -> leaky ReLU -> 3x3 conv (to ``out_channels``) -> leaky ReLU -> 0.5x."""

    def __init__(self, *, in_channels: int, out_channels: int, equalized: bool = True) -> None:
        """
        Args:
            in_channels: channels at this block's resolution.
            out_channels: channels at half the resolution.
            equalized: equalized learning rate.
        """
        super().__init__()
        self.conv0 = EqualizedConv2d(in_channels=in_channels, out_channels=in_channels, kernel_size=3,
                                     equalized=equalized)
        self.conv1 = EqualizedConv2d(in_channels=in_channels, out_channels=out_channels, kernel_size=3,
                                     equalized=equalized)

    def forward(self, x: Tensor) -> Tensor:  # [N, I, H, W] -> [N, O, H/2, W/2]
        return downsample_average(self.conv1(self.conv0(x)))


class ProGANGenerator(GrowableGenerator):
    """z [N, z_dim] (+ one-hot c [N, c_dim]) -> images [N, channels, r, r] at the current stage r (linear output)."""

    def __init__(self, *, z_dim: int = 512, c_dim: int = 0, resolution: int, channels: int = 3,
                 channel_base: int = 16384, channel_max: int = 512, use_pixel_norm: bool = True,
                 normalize_latent: bool = True, equalized: bool = True) -> None:
        """
        Args:
            z_dim: latent size.
            c_dim: number of classes (0 = unconditional).
            resolution: full output side, a power of two in [4, 1024]; the stages are 4, 8, ..., resolution.
            channels: image channels.
            channel_base: feature channels at resolution r are ``min(channel_base // r, channel_max)``.
            channel_max: the cap on feature channels.
            use_pixel_norm: pixel norm after every conv (sec. 4.2).
            normalize_latent: pixel norm on the latent vector (and on the class embedding).
            equalized: equalized learning rate (sec. 4.1).
        """
        _check_ints(1, z_dim=z_dim, channels=channels, channel_base=channel_base, channel_max=channel_max)
        _check_ints(0, c_dim=c_dim)
        super().__init__(z_dim=z_dim, c_dim=c_dim, output_shape=(channels, resolution, resolution),
                         resolutions=stage_resolutions(resolution))
        self.channels, self.channel_base, self.channel_max = int(channels), int(channel_base), int(channel_max)
        self.use_pixel_norm, self.normalize_latent, self.equalized = (bool(use_pixel_norm), bool(normalize_latent),
                                                                      bool(equalized))

        def ch(r: int) -> int:
            return channels_at(r, channel_base=channel_base, channel_max=channel_max)

        # one-hot c picks a row of the embedding, stored ~ N(0, 1) and used at unit scale (gain sqrt(c_dim))
        self.embed = (EqualizedLinear(in_features=c_dim, out_features=z_dim, gain=math.sqrt(c_dim), activation="linear",
                                      bias=False, equalized=equalized) if c_dim else None)
        in_dim = z_dim * (2 if c_dim else 1)
        self.init_channels = ch(4)
        self.dense = EqualizedLinear(in_features=in_dim, out_features=self.init_channels * 16, equalized=equalized)
        self.conv = EqualizedConv2d(in_channels=self.init_channels, out_channels=self.init_channels, kernel_size=3,
                                    equalized=equalized)
        self.blocks = nn.ModuleDict({str(r): GeneratorBlock(in_channels=ch(r // 2), out_channels=ch(r),
                                                            use_pixel_norm=use_pixel_norm, equalized=equalized)
                                     for r in self.resolutions[1:]})
        self.to_rgb = nn.ModuleDict({str(r): EqualizedConv2d(in_channels=ch(r), out_channels=channels, kernel_size=1,
                                                             gain=1.0, activation="linear", equalized=equalized)
                                     for r in self.resolutions})

    def _norm(self, x: Tensor) -> Tensor:
        return pixel_norm(x) if self.use_pixel_norm else x

    def features_4x4(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        """The first stage's features [N, C_4, 4, 4]."""
        n = z.shape[0]
        h = pixel_norm(z) if self.normalize_latent else z  # [N, z_dim]
        if self.c_dim:
            e = self.embed(require_condition(c, self.c_dim, n, "generator").to(z.dtype))  # [N, z_dim]
            h = torch.cat([h, pixel_norm(e) if self.normalize_latent else e], dim=1)  # [N, 2 z_dim]
        x = self._norm(self.dense(h).view(n, self.init_channels, 4, 4))  # [N, C_4, 4, 4]
        return self._norm(self.conv(x))

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        k, alpha = self.stage_index, self.alpha
        x = self.features_4x4(z, c)
        previous = x
        for r in self.resolutions[1:k + 1]:
            previous = x
            x = self.blocks[str(r)](x)  # [N, C_r, r, r]
        image = self.to_rgb[str(self.resolutions[k])](x)  # [N, channels, r, r]
        if k == 0 or alpha == 1.0:
            return image
        old = upsample_nearest(self.to_rgb[str(self.resolutions[k - 1])](previous))  # the previous stage's image
        return fade(old, image, alpha)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", channel_base={self.channel_base}, channel_max={self.channel_max}, "
                f"use_pixel_norm={self.use_pixel_norm}, equalized={self.equalized}")


class ProGANDiscriminator(GrowableDiscriminator):
    """images [N, channels, r, r] at the current stage r (+ one-hot c [N, c_dim]) -> logits [N]."""

    def __init__(self, *, c_dim: int = 0, resolution: int, channels: int = 3, channel_base: int = 16384,
                 channel_max: int = 512, mbstd_group: int = 4, mbstd: bool = True, equalized: bool = True) -> None:
        """
        Args:
            c_dim: number of classes (0 = unconditional; > 0 adds the projection term).
            resolution: full input side, a power of two in [4, 1024]; the stages are 4, 8, ..., resolution.
            channels: image channels.
            channel_base: feature channels at resolution r are ``min(channel_base // r, channel_max)``.
            channel_max: the cap on feature channels.
            mbstd_group: minibatch standard deviation group size (0 = the whole batch).
            mbstd: append the minibatch standard deviation feature map at 4x4 (sec. 3).
            equalized: equalized learning rate (sec. 4.1).
        """
        _check_ints(1, channels=channels, channel_base=channel_base, channel_max=channel_max)
        _check_ints(0, c_dim=c_dim)
        group_size_for(1, mbstd_group)  # validates
        super().__init__(c_dim=c_dim, input_shape=(channels, resolution, resolution),
                         resolutions=stage_resolutions(resolution))
        self.channels, self.channel_base, self.channel_max = int(channels), int(channel_base), int(channel_max)
        self.mbstd_group, self.mbstd, self.equalized = int(mbstd_group), bool(mbstd), bool(equalized)

        def ch(r: int) -> int:
            return channels_at(r, channel_base=channel_base, channel_max=channel_max)

        self.from_rgb = nn.ModuleDict({str(r): EqualizedConv2d(in_channels=channels, out_channels=ch(r), kernel_size=1,
                                                               equalized=equalized)
                                       for r in self.resolutions})
        self.blocks = nn.ModuleDict({str(r): DiscriminatorBlock(in_channels=ch(r), out_channels=ch(r // 2),
                                                                equalized=equalized)
                                     for r in self.resolutions[1:]})
        c4 = ch(4)
        self.feature_dim = c4
        self.stddev = MinibatchStdDev(group_size=mbstd_group) if mbstd else None
        self.conv = EqualizedConv2d(in_channels=c4 + (1 if mbstd else 0), out_channels=c4, kernel_size=3,
                                    equalized=equalized)
        self.dense = EqualizedLinear(in_features=c4 * 16, out_features=c4, equalized=equalized)  # the "4x4 conv"
        self.output = EqualizedLinear(in_features=c4, out_features=1, gain=1.0, activation="linear",
                                      equalized=equalized)
        self.embed = (EqualizedLinear(in_features=c_dim, out_features=c4, gain=math.sqrt(c_dim), activation="linear",
                                      bias=False, equalized=equalized) if c_dim else None)

    def batch_size_problem(self, batch_size: int) -> str | None:
        """None when batches of ``batch_size`` keep every minibatch-stddev group full, else why not.

        ``ProgressiveGrowing`` asks this of each stage's batch (per discriminator step) when it checks the schedule.
        """
        return None if self.stddev is None else self.stddev.batch_size_problem(batch_size)

    def features(self, h: Tensor) -> Tensor:
        """The epilogue's features [N, C_4] from the 4x4 map [N, C_4, 4, 4]: mbstd, 3x3 conv, fully connected."""
        if self.stddev is not None:
            h = self.stddev(h)  # [N, C_4 + 1, 4, 4]
        return self.dense(self.conv(h).flatten(1))  # [N, C_4]

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        k, alpha, r = self.stage_index, self.alpha, self.resolution
        if self.c_dim:
            c = require_condition(c, self.c_dim, x.shape[0], "discriminator")
        h = self.from_rgb[str(r)](x)  # [N, C_r, r, r]
        if k > 0:
            h = self.blocks[str(r)](h)  # [N, C_{r/2}, r/2, r/2]
            if alpha != 1.0:
                old = self.from_rgb[str(self.resolutions[k - 1])](downsample_average(x))  # the previous stage's input
                h = fade(old, h, alpha)
            for q in reversed(self.resolutions[1:k]):
                h = self.blocks[str(q)](h)
        f = self.features(h)  # [N, C_4]
        logits = self.output(f).squeeze(1)  # [N]
        if self.c_dim:
            logits = logits + (self.embed(c.to(f.dtype)) * f).sum(1) * (1.0 / math.sqrt(self.feature_dim))
        return logits

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", channel_base={self.channel_base}, channel_max={self.channel_max}, "
                f"mbstd={self.mbstd}, mbstd_group={self.mbstd_group}, equalized={self.equalized}")


class ProGANArchitecture(ArchitectureSpec):
    """ProGAN's progressively growing generator and discriminator (registered as ``progan``)."""

    def __init__(
        self,
        *,
        resolution: int = 64,
        channels: int = 3,
        z_dim: int = 512,
        c_dim: int = 0,
        channel_base: int = 16384,
        channel_max: int = 512,
        pixel_norm: bool = True,
        normalize_latent: bool = True,
        equalized_lr: bool = True,
        mbstd: bool = True,
        mbstd_group: int = 4,
    ) -> None:
        """
        Args:
            resolution: full image side, a power of two in [4, 1024]; the networks grow 4, 8, ..., resolution.
            channels: image channels (3 RGB, 1 grey).
            z_dim: latent size (512 in the paper).
            c_dim: number of classes for a conditional model (0 = unconditional).
            channel_base: feature channels at resolution r are ``min(channel_base // r, channel_max)``
                (16384 and 512: the paper's 512 up to 32x32, then halving).
            channel_max: the cap on feature channels.
            pixel_norm: pixelwise feature normalization after every generator conv (sec. 4.2).
            normalize_latent: pixel norm on the latent vector (the paper's latents on the hypersphere).
            equalized_lr: equalized learning rate (sec. 4.1); False initializes with He's constant instead.
            mbstd: the discriminator's minibatch standard deviation feature (sec. 3).
            mbstd_group: its group size (4; 0 = the whole batch).
        """
        check_resolution(resolution)
        _check_ints(1, channels=channels, z_dim=z_dim, channel_base=channel_base, channel_max=channel_max)
        _check_ints(0, c_dim=c_dim, mbstd_group=mbstd_group)
        self.resolution, self.channels, self.z_dim, self.c_dim = resolution, channels, z_dim, c_dim
        self.channel_base, self.channel_max = channel_base, channel_max
        self.pixel_norm, self.normalize_latent, self.equalized_lr = pixel_norm, normalize_latent, equalized_lr
        self.mbstd, self.mbstd_group = mbstd, mbstd_group

    @property
    def resolutions(self) -> tuple[int, ...]:
        """The stages 4, 8, ..., ``resolution``."""
        return stage_resolutions(self.resolution)

    def build(self) -> NetworkPair:
        shape = dict(resolution=self.resolution, channels=self.channels, channel_base=self.channel_base,
                     channel_max=self.channel_max, equalized=self.equalized_lr)
        return NetworkPair(
            ProGANGenerator(z_dim=self.z_dim, c_dim=self.c_dim, use_pixel_norm=self.pixel_norm,
                            normalize_latent=self.normalize_latent, **shape),
            ProGANDiscriminator(c_dim=self.c_dim, mbstd=self.mbstd, mbstd_group=self.mbstd_group, **shape),
        )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config()["init_args"].items())
        return f"{type(self).__name__}({args})"
