"""StyleGAN2 generator and the ``stylegan2`` architecture spec (Karras et al. 2020; fp16 as in Karras et al. 2020b).

Generator: ``ws = mapping(z, c)`` [N, num_ws, w_dim], then ``images = synthesis(ws)`` [N, C, R, R]. In
training mode ``forward`` mixes styles (``training_ws``): a second latent z2 (drawn from torch's global RNG,
same condition) takes over the ws from a crossover layer drawn uniformly from 1..num_ws-1, with probability
``style_mixing``; StyleGAN2 draws one crossover and one decision for the whole batch
(``style_mixing_mode="batch"``, the default), ``"sample"`` draws them per sample. ``w_avg`` tracks the main
latents' w only, never z2's. Truncation ``w <- w_avg + psi (w - w_avg)`` on the first ``truncation_cutoff`` ws.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from lightning_gan.interfaces import ArchitectureSpec, Generator, GrowableGenerator, NetworkPair, require_condition
from lightning_gan_stylegan2.discriminator import ARCHITECTURES as D_ARCHITECTURES
from lightning_gan_stylegan2.discriminator import (
    DiscriminatorArchitecture,
    GrowableStyleGAN2Discriminator,
    StyleGAN2Discriminator,
)
from lightning_gan_stylegan2.layers import (FUSED_MODES, NOISE_MODES, NOISE_STRENGTHS, FusedMode, ModulatedConv2d,
                                           NoiseMode, NoiseStrength)
from lightning_gan_stylegan2.mapping import MappingNetwork
from lightning_gan_stylegan2.synthesis import ARCHITECTURES as G_ARCHITECTURES
from lightning_gan_stylegan2.synthesis import SYNTHESIS_INPUTS, SynthesisArchitecture, SynthesisInput, SynthesisNetwork

__all__ = ["GrowableStyleGAN2Generator", "StyleGAN2Architecture", "StyleGAN2Discriminator", "StyleGAN2Generator",
           "StyleMixingMode", "mix_styles"]

MIN_RESOLUTION, MAX_RESOLUTION = 4, 1024


def check_resolution(resolution: int) -> int:
    """``resolution`` if it is a power of two in [4, 1024]; a ValueError otherwise."""
    if (isinstance(resolution, bool) or not isinstance(resolution, int)
            or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION or resolution & (resolution - 1)):
        raise ValueError(f"StyleGAN2 resolution must be a power of two between {MIN_RESOLUTION} and "
                         f"{MAX_RESOLUTION}, got {resolution!r}")
    return resolution


StyleMixingMode = Literal["batch", "sample"]
STYLE_MIXING_MODES = ("batch", "sample")


def mix_styles(ws: Tensor, ws2: Tensor, probability: float, mode: StyleMixingMode = "batch") -> Tensor:
    """With ``probability``: the ws from a crossover layer ~ U{1, ..., num_ws - 1} on come from ``ws2``.

    ``mode="batch"`` (StyleGAN2) draws one crossover, then one decision, for the whole batch; ``"sample"``
    draws a crossover and a decision per sample. Both from torch's global RNG, crossover first.
    """
    if mode not in STYLE_MIXING_MODES:
        raise ValueError(f"style mixing mode must be one of {STYLE_MIXING_MODES}, got {mode!r}")
    n, num_ws = ws.shape[:2]
    draws = n if mode == "sample" else 1
    cutoff = torch.randint(1, num_ws, (draws,), device=ws.device).expand(n)
    mixed = (torch.rand(draws, device=ws.device) < probability).expand(n)
    cutoff = torch.where(mixed, cutoff, torch.full_like(cutoff, num_ws))
    first = torch.arange(num_ws, device=ws.device)[None, :] < cutoff[:, None]  # [N, num_ws]
    return torch.where(first[:, :, None], ws, ws2)


class StyleGAN2Generator(Generator):
    """z [N, z_dim] (+ one-hot c [N, c_dim]) -> images [N, img_channels, R, R] (linear output, about [-1, 1])."""

    def __init__(self, *, z_dim: int = 512, c_dim: int = 0, w_dim: int = 512, resolution: int, img_channels: int = 3,
                 mapping_layers: int = 8, mapping_lr_mul: float = 0.01, w_avg_beta: float = 0.995,
                 channel_base: int = 32768, channel_max: int = 512, architecture: SynthesisArchitecture = "skip",
                 style_mixing: float = 0.9, num_fp16_res: int = 0, conv_clamp: float | None = None,
                 noise_mode: NoiseMode = "random", noise_phi: float = 0.0, fused_modconv: FusedMode = "auto",
                 channels_last: bool = True, synthesis_input: SynthesisInput = "const",
                 low_res_rgb_gain: float = 1.0, style_mixing_mode: StyleMixingMode = "batch",
                 noise_strength: NoiseStrength = "layer") -> None:
        """
        Args:
            z_dim: latent size.
            c_dim: number of classes (0 = unconditional).
            w_dim: size of w.
            resolution: output side, a power of two in [4, 1024].
            img_channels: image channels.
            mapping_layers: depth of the mapping network.
            mapping_lr_mul: learning-rate multiplier of the mapping network.
            w_avg_beta: decay of the running average ``w_avg`` (for truncation).
            channel_base: channels at resolution r are ``min(channel_base // r, channel_max)``.
            channel_max: the cap on channels.
            architecture: synthesis architecture, "orig", "skip" or "resnet".
            style_mixing: probability that a training batch (or sample, see style_mixing_mode) mixes two latents.
            num_fp16_res: number of highest resolutions computed in float16 on CUDA devices.
            conv_clamp: clamp every layer's output to +-conv_clamp; None = no clamp.
            noise_mode: default noise inputs, "random", "const" or "none".
            noise_phi: AR(1) coefficient of spatially correlated noise (0 = i.i.d. per pixel).
            fused_modconv: evaluation of the modulated convs: "auto", "fused" or "plain".
            channels_last: channels_last feature maps (faster on CPU).
            synthesis_input: the 4x4 input of the synthesis network: "const" (the paper) or "linear".
            low_res_rgb_gain: ``skip`` only: factor on the ToRGB outputs below the output resolution (1 = paper).
            style_mixing_mode: "batch" (one crossover and decision per batch, StyleGAN2) or "sample".
            noise_strength: noise strengths: "layer" (one scalar per layer, StyleGAN2) or "channel".
        """
        super().__init__(z_dim=z_dim, c_dim=c_dim, output_shape=(img_channels, resolution, resolution))
        check_resolution(resolution)
        if not 0.0 <= style_mixing <= 1.0:
            raise ValueError(f"style_mixing is a probability in [0, 1], got {style_mixing}")
        if style_mixing_mode not in STYLE_MIXING_MODES:
            raise ValueError(f"style_mixing_mode must be one of {STYLE_MIXING_MODES}, got {style_mixing_mode!r}")
        self.style_mixing_mode = style_mixing_mode
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        self.w_dim, self.resolution, self.img_channels = int(w_dim), int(resolution), int(img_channels)
        self.style_mixing, self.noise_mode = float(style_mixing), noise_mode
        self.synthesis_network = SynthesisNetwork(
            w_dim=w_dim, resolution=resolution, img_channels=img_channels, channel_base=channel_base,
            channel_max=channel_max, architecture=architecture, num_fp16_res=num_fp16_res, conv_clamp=conv_clamp,
            noise_phi=noise_phi, fused=fused_modconv, channels_last=channels_last, synthesis_input=synthesis_input,
            low_res_rgb_gain=low_res_rgb_gain, noise_strength=noise_strength)
        self.num_ws = self.synthesis_network.num_ws
        self.mapping_network = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                              num_layers=mapping_layers, lr_mul=mapping_lr_mul, w_avg_beta=w_avg_beta)

    @property
    def w_avg(self) -> Tensor:
        """The running average of w [w_dim] (the truncation centre)."""
        return self.mapping_network.w_avg

    def mapping(self, z: Tensor, c: Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, update_w_avg: bool = True) -> Tensor:
        """ws [N, num_ws, w_dim] for latents z [N, z_dim] (and one-hot c); updates ``w_avg`` in training mode."""
        return self.mapping_network(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                                    update_w_avg=update_w_avg)

    def synthesis(self, ws: Tensor, noise_mode: NoiseMode | None = None, force_fp32: bool = False) -> Tensor:
        """Images [N, C, R, R] from ws [N, num_ws, w_dim] or one w [N, w_dim] for every layer."""
        return self.synthesis_network(ws, noise_mode or self.noise_mode, force_fp32)

    def forward(self, z: Tensor, c: Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: NoiseMode | None = None) -> Tensor:
        if self.c_dim:
            c = require_condition(c, self.c_dim, z.shape[0], "generator")
        if self.training:
            ws = self.training_ws(z, c, truncation_psi, truncation_cutoff)
        else:
            ws = self.mapping(z, c, truncation_psi, truncation_cutoff)
        return self.synthesis(ws, noise_mode)

    def factorizable_weights(self) -> Tensor:
        """SeFa's ``A`` [sum of in_channels, w_dim]: the style affines (w -> styles) of every modulated layer of the
        synthesis network, convs and ToRGBs in order, as effective weights (stored weight times its equalized-lr
        gain), stacked along the output axis (``lightning_gan.directions``)."""
        affines = [m.affine for m in self.synthesis_network.modules() if isinstance(m, ModulatedConv2d)]
        return torch.cat([a.weight * a.weight_gain for a in affines])  # [sum I, w_dim]

    def training_ws(self, z: Tensor, c: Tensor | None = None, truncation_psi: float = 1.0,
                    truncation_cutoff: int | None = None) -> Tensor:
        """ws [N, num_ws, w_dim] as a training step makes them: ``mapping(z, c)``, then style mixing.

        With ``style_mixing > 0`` a second latent ``z2 = randn_like(z)`` (global RNG, drawn first) is mapped
        with the same conditions and mixed in by ``mix_styles`` (``style_mixing_mode``). ``w_avg`` is updated
        (in training mode) from z's w only. The path-length regularizer generates its batch through this too.
        """
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff)
        if self.style_mixing > 0 and self.num_ws > 1:
            z2 = torch.randn_like(z)  # the second latent, from the global RNG
            ws2 = self.mapping(z2, c, truncation_psi, truncation_cutoff, update_w_avg=False)
            ws = mix_styles(ws, ws2, self.style_mixing, self.style_mixing_mode)
        return ws

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", w_dim={self.w_dim}, num_ws={self.num_ws}, "
                f"style_mixing={self.style_mixing}, style_mixing_mode={self.style_mixing_mode!r}, "
                f"noise_mode={self.noise_mode!r}")


class GrowableStyleGAN2Generator(GrowableGenerator, StyleGAN2Generator):
    """StyleGAN2's skip generator growing through 4, 8, ..., R (the ``stylegan2`` spec's ``growable: true``).

    The same layers as ``StyleGAN2Generator`` with ``architecture="skip"``; at stage ``r`` only the synthesis
    blocks up to side ``r`` run, and while stage ``r`` fades in the image is
    ``fade(upsample_nearest(img_q), upsample2d(img_q) + ToRGB_r(x_r), alpha)`` (``SynthesisNetwork.forward``'s
    ``growth``): the highest block's RGB contribution fades in, and at alpha = 0 the output is exactly the
    previous stage's, pixels repeated 2x2 as the growth protocol and the faded real images have them. The
    mapping network always makes all ``num_ws`` ws; a stage reads the ones of its blocks.
    """

    def __init__(self, **kwargs: Any) -> None:
        """
        Args:
            **kwargs: the arguments of ``StyleGAN2Generator``; ``architecture`` must be "skip".
        """
        architecture = kwargs.get("architecture", "skip")
        if architecture != "skip":
            raise ValueError(f"only the skip generator grows progressively (it sums upsampled RGB images, so "
                             f"growing fades in the highest one); got architecture {architecture!r}")
        StyleGAN2Generator.__init__(self, **kwargs)
        self._init_stages(self.synthesis_network.block_resolutions, self.full_output_shape, "output_shape")

    def synthesis(self, ws: Tensor, noise_mode: NoiseMode | None = None, force_fp32: bool = False) -> Tensor:
        """Images [N, C, r, r] of the current stage r from ws [N, num_ws, w_dim] or one w [N, w_dim]."""
        return self.synthesis_network(ws, noise_mode or self.noise_mode, force_fp32,
                                      growth=(self.stage_index, self.alpha))

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", w_dim={self.w_dim}, num_ws={self.num_ws}, "
                f"style_mixing={self.style_mixing}, noise_mode={self.noise_mode!r}")


class StyleGAN2Architecture(ArchitectureSpec):
    """StyleGAN2 generator and discriminator for square images (registered as ``stylegan2``)."""

    def __init__(
        self,
        *,
        resolution: int = 32,
        channels: int = 3,
        z_dim: int = 512,
        w_dim: int = 512,
        c_dim: int = 0,
        mapping_layers: int = 8,
        mapping_lr_mul: float = 0.01,
        w_avg_beta: float = 0.995,
        channel_base: int = 32768,
        channel_max: int = 512,
        g_architecture: SynthesisArchitecture = "skip",
        d_architecture: DiscriminatorArchitecture = "resnet",
        style_mixing: float = 0.9,
        num_fp16_res: int = 0,
        conv_clamp: float | None = None,
        noise_mode: NoiseMode = "random",
        noise_phi: float = 0.0,
        mbstd_group: int = 4,
        mbstd_channels: int = 1,
        cmap_dim: int = 0,
        d_mapping_layers: int = 8,
        fused_modconv: FusedMode = "auto",
        channels_last: bool = True,
        synthesis_input: SynthesisInput = "const",
        low_res_rgb_gain: float = 1.0,
        style_mixing_mode: StyleMixingMode = "batch",
        noise_strength: NoiseStrength = "layer",
        d_mapping_lr_mul: float = 0.01,
        growable: bool = False,
    ) -> None:
        """
        Args:
            resolution: image side, a power of two in [4, 1024].
            channels: image channels (3 RGB, 1 grey).
            z_dim: latent size.
            w_dim: size of the intermediate latent w.
            c_dim: number of classes for a conditional model (0 = unconditional).
            mapping_layers: depth of the mapping network (8 in the paper; 2 for small models).
            mapping_lr_mul: learning-rate multiplier of the mapping network.
            w_avg_beta: decay of the running average of w used for truncation.
            channel_base: channels at resolution r are ``min(channel_base // r, channel_max)`` (G and D).
            channel_max: the cap on channels.
            g_architecture: generator architecture: "orig", "skip" (paper's config E/F) or "resnet".
            d_architecture: discriminator architecture: "orig", "skip" or "resnet" (paper's config E/F).
            style_mixing: probability of style mixing per training batch (0.9 in the paper; see style_mixing_mode).
            num_fp16_res: number of highest resolutions in float16 on CUDA devices (CPU: float32).
            conv_clamp: clamp every conv output to +-conv_clamp (256 with fp16); None = no clamp.
            noise_mode: the generator's default noise inputs: "random", "const" or "none".
            noise_phi: AR(1) coefficient of spatially correlated noise inputs; 0 = i.i.d. per pixel.
            mbstd_group: minibatch standard deviation group size of the discriminator.
            mbstd_channels: minibatch standard deviation feature maps (0 = off).
            cmap_dim: size of the discriminator's condition embedding (0 = the channels at 4x4).
            d_mapping_layers: fully connected layers of the discriminator's condition embedding (8, StyleGAN2-ADA's
                class-conditional default).
            fused_modconv: modulated convs: "auto" (plain path for 3x3 convs, fused ToRGB), "fused", "plain".
            channels_last: channels_last feature maps (faster convolutions on CPU).
            synthesis_input: the synthesis network's 4x4 input: "const" (the paper's learned constant) or
                "linear" (an equalized-lr linear map of the first w, as DCGAN/BigGAN generators start; it
                lets w place objects that sit at random positions, see the ``stylegan2-shapes32`` recipe).
            low_res_rgb_gain: ``g_architecture="skip"`` only: factor on the generator's ToRGB outputs below the
                output resolution (1 = the paper; 0.1 keeps the skip generator training on grey shapes, where
                with 1 it collapses, see the README).
            style_mixing_mode: "batch" (StyleGAN2: one crossover layer and one mix-or-not decision per batch) or
                "sample" (drawn per sample).
            noise_strength: the generator's noise strengths: "layer" (one learned scalar per layer, StyleGAN2)
                or "channel" (one per channel, StyleGAN1's wording). Checkpoints keep the shape they were saved with.
            d_mapping_lr_mul: learning-rate multiplier of the discriminator's condition embedding layers (0.01,
                StyleGAN2-ADA's class-conditional default).
            growable: build a pair that grows progressively through 4, 8, ..., resolution (the
                ``ProgressiveGrowing`` callback): the skip generator fades in its highest RGB contribution and
                the discriminator its highest block (needs ``g_architecture="skip"``). False (the default) builds
                the usual fixed-resolution networks; at the last stage the growable ones compute the same.
        """
        check_resolution(resolution)
        if growable and g_architecture != "skip":
            raise ValueError(f"growable=True needs g_architecture 'skip' (the skip generator grows by fading in "
                             f"its highest RGB output), got {g_architecture!r}")
        if style_mixing_mode not in STYLE_MIXING_MODES:
            raise ValueError(f"style_mixing_mode must be one of {STYLE_MIXING_MODES}, got {style_mixing_mode!r}")
        if noise_strength not in NOISE_STRENGTHS:
            raise ValueError(f"noise_strength must be one of {NOISE_STRENGTHS}, got {noise_strength!r}")
        if not d_mapping_lr_mul > 0:
            raise ValueError(f"d_mapping_lr_mul must be > 0, got {d_mapping_lr_mul}")
        for name, value in dict(channels=channels, z_dim=z_dim, w_dim=w_dim, mapping_layers=mapping_layers,
                                channel_base=channel_base, channel_max=channel_max, mbstd_group=mbstd_group,
                                d_mapping_layers=d_mapping_layers).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name, value in dict(c_dim=c_dim, num_fp16_res=num_fp16_res, mbstd_channels=mbstd_channels,
                                cmap_dim=cmap_dim).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if g_architecture not in G_ARCHITECTURES or d_architecture not in D_ARCHITECTURES:
            raise ValueError(f"g_architecture and d_architecture must be one of {G_ARCHITECTURES}, got "
                             f"{g_architecture!r} and {d_architecture!r}")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if synthesis_input not in SYNTHESIS_INPUTS:
            raise ValueError(f"synthesis_input must be one of {SYNTHESIS_INPUTS}, got {synthesis_input!r}")
        if fused_modconv not in FUSED_MODES:
            raise ValueError(f"fused_modconv must be one of {FUSED_MODES}, got {fused_modconv!r}")
        if not low_res_rgb_gain > 0:
            raise ValueError(f"low_res_rgb_gain must be > 0, got {low_res_rgb_gain}")
        if low_res_rgb_gain != 1.0 and g_architecture != "skip":
            raise ValueError(f"low_res_rgb_gain={low_res_rgb_gain} needs g_architecture 'skip' (only it has "
                             f"low-resolution ToRGB outputs), got {g_architecture!r}")
        if not 0.0 <= style_mixing <= 1.0:
            raise ValueError(f"style_mixing is a probability in [0, 1], got {style_mixing}")
        if not -1.0 < noise_phi < 1.0:
            raise ValueError(f"noise_phi must lie in (-1, 1), got {noise_phi}")
        if conv_clamp is not None and not conv_clamp > 0:
            raise ValueError(f"conv_clamp must be > 0 or None, got {conv_clamp}")
        self.resolution, self.channels, self.z_dim, self.w_dim, self.c_dim = resolution, channels, z_dim, w_dim, c_dim
        self.mapping_layers, self.mapping_lr_mul, self.w_avg_beta = mapping_layers, mapping_lr_mul, w_avg_beta
        self.channel_base, self.channel_max = channel_base, channel_max
        self.g_architecture, self.d_architecture = g_architecture, d_architecture
        self.style_mixing, self.num_fp16_res, self.conv_clamp = style_mixing, num_fp16_res, conv_clamp
        self.noise_mode, self.noise_phi = noise_mode, noise_phi
        self.mbstd_group, self.mbstd_channels = mbstd_group, mbstd_channels
        self.cmap_dim, self.d_mapping_layers = cmap_dim, d_mapping_layers
        self.fused_modconv, self.channels_last = fused_modconv, channels_last
        self.synthesis_input, self.low_res_rgb_gain = synthesis_input, float(low_res_rgb_gain)
        self.style_mixing_mode, self.noise_strength = style_mixing_mode, noise_strength
        self.d_mapping_lr_mul = float(d_mapping_lr_mul)
        self.growable = bool(growable)

    def build(self) -> NetworkPair:
        common = dict(resolution=self.resolution, img_channels=self.channels, channel_base=self.channel_base,
                      channel_max=self.channel_max, num_fp16_res=self.num_fp16_res, conv_clamp=self.conv_clamp,
                      channels_last=self.channels_last)
        generator = (GrowableStyleGAN2Generator if self.growable else StyleGAN2Generator)(
            z_dim=self.z_dim, c_dim=self.c_dim, w_dim=self.w_dim, mapping_layers=self.mapping_layers,
            mapping_lr_mul=self.mapping_lr_mul, w_avg_beta=self.w_avg_beta, architecture=self.g_architecture,
            style_mixing=self.style_mixing, noise_mode=self.noise_mode, noise_phi=self.noise_phi,
            fused_modconv=self.fused_modconv, synthesis_input=self.synthesis_input,
            low_res_rgb_gain=self.low_res_rgb_gain, style_mixing_mode=self.style_mixing_mode,
            noise_strength=self.noise_strength, **common)
        discriminator = (GrowableStyleGAN2Discriminator if self.growable else StyleGAN2Discriminator)(
            c_dim=self.c_dim, architecture=self.d_architecture, mbstd_group=self.mbstd_group,
            mbstd_channels=self.mbstd_channels, cmap_dim=self.cmap_dim, mapping_layers=self.d_mapping_layers,
            mapping_lr_mul=self.d_mapping_lr_mul, **common)
        return NetworkPair(generator, discriminator)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config()["init_args"].items())
        return f"{type(self).__name__}({args})"
