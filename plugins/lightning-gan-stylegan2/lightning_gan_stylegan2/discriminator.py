"""StyleGAN2's discriminator: blocks R -> 8 that halve the resolution, then a 4x4 epilogue with minibatch stddev.

Each block: (FromRGB) -> 3x3 conv -> 3x3 conv with anti-aliased downsampling (FIR filter + stride 2).
Architectures (Karras et al. 2020, Fig. 7):

* ``orig``: FromRGB (1x1 conv) on the image at the first block only;
* ``skip``: every block (and the epilogue) adds a FromRGB of the image downsampled to its resolution;
* ``resnet``: each block adds a 1x1 downsampling conv of its input; both branches are scaled by sqrt(1/2).

Epilogue at 4x4: minibatch standard deviation (group 4, 1 channel), 3x3 conv, a fully connected layer on the
flattened map, and the output layer. Conditional models use a projection (StyleGAN2-ADA style): the class
is mapped to an embedding ``cmap`` [N, cmap_dim] (embed, normalize, fully connected layers), the output
layer gives ``cmap_dim`` features ``h``, and the logit is ``sum(h * cmap) / sqrt(cmap_dim)``.

Mixed precision as in the synthesis network: the ``num_fp16_res`` highest resolutions compute in float16
on CUDA devices only; ``conv_clamp`` clamps every conv output on every device.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lightning_gan.errors import ConfigError
from lightning_gan.interfaces import Discriminator, GrowableDiscriminator, require_condition
from lightning_gan.ops import downsample2d
from lightning_gan.ops.growth import downsample_average, fade
from lightning_gan_stylegan2.layers import EqualConv2d, EqualLinear, MinibatchStdDev, resample_filter
from lightning_gan_stylegan2.mapping import MappingNetwork
from lightning_gan_stylegan2.synthesis import block_dtype, channels_at, fp16_resolutions

__all__ = ["DiscriminatorArchitecture", "DiscriminatorBlock", "DiscriminatorEpilogue", "GrowableStyleGAN2Discriminator",
           "StyleGAN2Discriminator"]

DiscriminatorArchitecture = Literal["orig", "skip", "resnet"]
ARCHITECTURES = ("orig", "skip", "resnet")


class DiscriminatorBlock(nn.Module):
    """Halves the resolution: ``forward(x, img) -> (x, img)`` with x [N, C_in, R, R] -> [N, C_out, R/2, R/2]."""

    def __init__(self, *, in_channels: int, tmp_channels: int, out_channels: int, resolution: int, img_channels: int,
                 architecture: DiscriminatorArchitecture = "resnet", use_fp16: bool = False,
                 conv_clamp: float | None = None, channels_last: bool = True) -> None:
        """
        Args:
            in_channels: channels of the previous block's output; 0 for the first block (reads the image).
            tmp_channels: channels at this block's input resolution.
            out_channels: channels of the output (half the resolution).
            resolution: this block's input side.
            img_channels: image channels.
            architecture: "orig", "skip" or "resnet".
            use_fp16: compute in float16 on CUDA devices.
            conv_clamp: clamp every conv output to +-conv_clamp (times the branch gain); None = no clamp.
            channels_last: channels_last feature maps.
        """
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"discriminator architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        if in_channels not in (0, tmp_channels):
            raise ValueError(f"in_channels must be 0 or tmp_channels ({tmp_channels}), got {in_channels}")
        self.in_channels, self.tmp_channels, self.out_channels = int(in_channels), int(tmp_channels), int(out_channels)
        self.resolution, self.architecture, self.use_fp16 = int(resolution), architecture, bool(use_fp16)
        self.channels_last = bool(channels_last)
        residual = architecture == "resnet"
        gain = math.sqrt(0.5) if residual else 1.0
        clamp = None if conv_clamp is None else conv_clamp * gain
        self.fromrgb = (EqualConv2d(in_channels=img_channels, out_channels=tmp_channels, kernel_size=1,
                                    activation="lrelu", conv_clamp=conv_clamp)
                        if in_channels == 0 or architecture == "skip" else None)
        self.conv0 = EqualConv2d(in_channels=tmp_channels, out_channels=tmp_channels, kernel_size=3,
                                 activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = EqualConv2d(in_channels=tmp_channels, out_channels=out_channels, kernel_size=3, activation="lrelu",
                                 down=2, gain=gain, conv_clamp=clamp)
        self.skip = (EqualConv2d(in_channels=tmp_channels, out_channels=out_channels, kernel_size=1, bias=False,
                                 down=2, gain=gain) if residual else None)
        self.register_buffer("resample_filter", resample_filter(), persistent=False)

    def forward(self, x: Tensor | None, img: Tensor | None, force_fp32: bool = False) -> tuple[Tensor, Tensor | None]:
        x, img = self.read_image(x, img, force_fp32)
        return self.convolve(x), img

    def read_image(self, x: Tensor | None, img: Tensor | None,
                   force_fp32: bool = False) -> tuple[Tensor, Tensor | None]:
        """The features entering the convolutions, [N, C_tmp, R, R], and the image the next block reads.

        The block reads the image through its FromRGB when it has no features (``x`` None: the first block, or
        the first block of a growing discriminator's stage) and, in ``skip``, always (adding it to ``x``; the image
        is then downsampled with the FIR filter for the next block).
        """
        dtype = block_dtype(self.use_fp16, self.conv0.weight.dtype, (img if x is None else x).device, force_fp32)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        if x is not None:
            x = x.to(dtype=dtype, memory_format=fmt)
        if self.fromrgb is not None and (x is None or self.architecture == "skip"):
            y = self.fromrgb(img.to(dtype=dtype, memory_format=fmt))  # [N, C, R, R]
            x = y if x is None else x + y
            if self.architecture == "skip":
                img = downsample2d(img, self.resample_filter)
        return x, img

    def convolve(self, x: Tensor) -> Tensor:
        """The convolutions on ``read_image``'s features: [N, C_tmp, R, R] -> [N, C_out, R/2, R/2]."""
        if self.skip is not None:
            y = self.skip(x)
            x = self.conv1(self.conv0(x))
            return y.add_(x)  # (skip + main) * sqrt(1/2), the gains already applied
        return self.conv1(self.conv0(x))

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, tmp_channels={self.tmp_channels}, out_channels={self.out_channels}, "
                f"resolution={self.resolution}, architecture={self.architecture!r}, use_fp16={self.use_fp16}")


class DiscriminatorEpilogue(nn.Module):
    """4x4 features -> (FromRGB) -> minibatch stddev -> 3x3 conv -> FC -> output (1 or ``cmap_dim`` features)."""

    def __init__(self, *, in_channels: int, img_channels: int, cmap_dim: int = 0, resolution: int = 4,
                 architecture: DiscriminatorArchitecture = "resnet", mbstd_group: int = 4, mbstd_channels: int = 1,
                 conv_clamp: float | None = None) -> None:
        """
        Args:
            in_channels: channels of the 4x4 map.
            img_channels: image channels (FromRGB of the "skip" architecture, or of a 4x4 discriminator).
            cmap_dim: size of the condition embedding for the projection; 0 = unconditional (one output).
            resolution: side of the input map (4).
            architecture: "orig", "skip" or "resnet".
            mbstd_group: minibatch stddev group size.
            mbstd_channels: minibatch stddev feature maps (0 = off).
            conv_clamp: clamp the conv output to +-conv_clamp (not the FromRGB's); None = no clamp.
        """
        super().__init__()
        self.in_channels, self.cmap_dim, self.resolution = int(in_channels), int(cmap_dim), int(resolution)
        self.architecture = architecture
        # the last FromRGB (skip D, or a 4x4 D) is not clamped, as in StyleGAN2-ADA
        self.fromrgb = (EqualConv2d(in_channels=img_channels, out_channels=in_channels, kernel_size=1,
                                    activation="lrelu") if architecture == "skip" else None)
        self.mbstd = (MinibatchStdDev(group_size=mbstd_group, num_channels=mbstd_channels)
                      if mbstd_channels > 0 else None)
        self.conv = EqualConv2d(in_channels=in_channels + max(mbstd_channels, 0), out_channels=in_channels,
                                kernel_size=3, activation="lrelu", conv_clamp=conv_clamp)
        self.fc = EqualLinear(in_features=in_channels * resolution ** 2, out_features=in_channels, activation="lrelu")
        self.out = EqualLinear(in_features=in_channels, out_features=cmap_dim or 1)

    def forward(self, x: Tensor | None, img: Tensor | None, cmap: Tensor | None = None) -> Tensor:  # -> [N]
        return self.judge(self.read_image(x, img), cmap)

    def read_image(self, x: Tensor | None, img: Tensor | None) -> Tensor:
        """The 4x4 features judged, [N, C, 4, 4]: ``x`` (+ FromRGB(img) in ``skip``), FromRGB(img) if ``x`` is None."""
        dtype = self.conv.weight.dtype
        if x is not None:
            x = x.to(dtype)
        if self.fromrgb is not None and (x is None or self.architecture == "skip"):
            channels_last = x is not None and x.is_contiguous(memory_format=torch.channels_last)
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            y = self.fromrgb(img.to(dtype=dtype, memory_format=fmt))
            x = y if x is None else x + y
        return x

    def judge(self, x: Tensor, cmap: Tensor | None = None) -> Tensor:
        """Logits [N] from ``read_image``'s features [N, C, 4, 4] (and the condition embedding ``cmap``)."""
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)  # [N, C, 4, 4]
        x = self.fc(x.flatten(1))  # [N, C]
        x = self.out(x)  # [N, cmap_dim or 1]
        if cmap is None:
            return x.squeeze(1)
        return (x * cmap.to(x.dtype)).sum(1) * (1.0 / math.sqrt(self.cmap_dim))

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, cmap_dim={self.cmap_dim}, architecture={self.architecture!r}"


class StyleGAN2Discriminator(Discriminator):
    """images [N, img_channels, R, R] (+ one-hot c [N, c_dim]) -> logits [N]."""

    def __init__(self, *, c_dim: int = 0, resolution: int, img_channels: int = 3, channel_base: int = 32768,
                 channel_max: int = 512, architecture: DiscriminatorArchitecture = "resnet", num_fp16_res: int = 0,
                 conv_clamp: float | None = None, mbstd_group: int = 4, mbstd_channels: int = 1, cmap_dim: int = 0,
                 mapping_layers: int = 8, channels_last: bool = True, mapping_lr_mul: float = 0.01) -> None:
        """
        Args:
            c_dim: number of classes (0 = unconditional; > 0 adds the projection).
            resolution: input side R, a power of two >= 4.
            img_channels: image channels.
            channel_base: channels at resolution r are ``min(channel_base // r, channel_max)``.
            channel_max: the cap on channels.
            architecture: "orig", "skip" or "resnet".
            num_fp16_res: number of highest resolutions computed in float16 on CUDA devices.
            conv_clamp: clamp every conv output to +-conv_clamp; None = no clamp.
            mbstd_group: minibatch stddev group size.
            mbstd_channels: minibatch stddev feature maps (0 = off).
            cmap_dim: size of the condition embedding (0 = the channels at 4x4).
            mapping_layers: fully connected layers of the condition embedding network (8, StyleGAN2-ADA).
            channels_last: channels_last feature maps.
            mapping_lr_mul: learning-rate multiplier of those layers (0.01, StyleGAN2-ADA; the embedding of the
                one-hot class itself keeps 1).
        """
        super().__init__(c_dim=c_dim, input_shape=(img_channels, resolution, resolution))
        if resolution < 4 or resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 4, got {resolution}")
        if architecture not in ARCHITECTURES:
            raise ValueError(f"discriminator architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        self.resolution, self.img_channels, self.architecture = int(resolution), int(img_channels), architecture
        self.num_fp16_res, self.conv_clamp, self.channels_last = int(num_fp16_res), conv_clamp, bool(channels_last)

        def ch(r: int) -> int:
            return channels_at(r, channel_base=channel_base, channel_max=channel_max)

        fp16 = fp16_resolutions(resolution, num_fp16_res)
        blocks, res, in_ch = [], resolution, 0
        while res > 4:
            blocks.append(DiscriminatorBlock(in_channels=in_ch, tmp_channels=ch(res), out_channels=ch(res // 2),
                                             resolution=res, img_channels=img_channels, architecture=architecture,
                                             use_fp16=res in fp16, conv_clamp=conv_clamp, channels_last=channels_last))
            in_ch, res = ch(res // 2), res // 2
        self.blocks = nn.ModuleList(blocks)
        self.cmap_dim = (int(cmap_dim) or ch(4)) if c_dim else 0
        self.mapping = (MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=self.cmap_dim, num_ws=None,
                                       num_layers=mapping_layers, lr_mul=mapping_lr_mul, w_avg_beta=None)
                        if c_dim else None)
        if c_dim:  # saved with the weights: they mean something else under another multiplier (checked on load)
            self.register_buffer("cmap_lr_mul", torch.tensor(float(mapping_lr_mul)))
        # a 4x4 discriminator reads the image in its epilogue
        epilogue_arch = "skip" if not blocks else architecture
        self.epilogue = DiscriminatorEpilogue(in_channels=ch(4), img_channels=img_channels, cmap_dim=self.cmap_dim,
                                              architecture=epilogue_arch, mbstd_group=mbstd_group,
                                              mbstd_channels=mbstd_channels, conv_clamp=conv_clamp)

    def forward(self, x: Tensor, c: Tensor | None = None, force_fp32: bool = False) -> Tensor:
        cmap = None
        if self.c_dim:
            c = require_condition(c, self.c_dim, x.shape[0], "discriminator")
            cmap = self.mapping(None, c)  # [N, cmap_dim]
        h, img = None, x
        for block in self.blocks:
            h, img = block(h, img, force_fp32)
        if h is None:  # 4x4 input
            h = torch.zeros(x.shape[0], self.epilogue.in_channels, 4, 4, dtype=x.dtype, device=x.device)
        return self.epilogue(h, img, cmap)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:  # noqa: ANN001 (torch's hook signature)
        if self.c_dim:
            # the stored embedding weights are the effective ones / lr multiplier: a checkpoint must be loaded
            # with the multiplier it was trained with (checkpoints from before the option: 1)
            key, flag = prefix + "cmap_lr_mul", "--model.architecture.init_args.d_mapping_lr_mul"
            saved = state_dict.get(key)
            mine = float(self.cmap_lr_mul)
            if saved is None and not math.isclose(mine, 1.0, rel_tol=1e-3):
                raise ConfigError(f"this checkpoint's conditional discriminator was trained with the former class "
                                  f"embedding defaults (lr multiplier 1, 2 layers unless set): load it with {flag}=1.0 "
                                  f"--model.architecture.init_args.d_mapping_layers=2 (or the layers it used)")
            if saved is not None and not math.isclose(float(saved), mine, rel_tol=1e-3):
                raise ConfigError(f"this checkpoint's conditional discriminator was trained with d_mapping_lr_mul="
                                  f"{float(saved):g}, this model has {mine:g}: load it with {flag}={float(saved):g}")
            if saved is None:
                state_dict[key] = self.cmap_lr_mul.detach().clone()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", architecture={self.architecture!r}, num_fp16_res={self.num_fp16_res}, "
                f"conv_clamp={self.conv_clamp}, cmap_dim={self.cmap_dim}")


class GrowableStyleGAN2Discriminator(GrowableDiscriminator, StyleGAN2Discriminator):
    """StyleGAN2's discriminator growing through 4, 8, ..., R (the ``stylegan2`` spec's ``growable: true``).

    The same blocks and epilogue as ``StyleGAN2Discriminator``; ``orig`` and ``resnet`` get a FromRGB at every
    resolution (``skip`` has them already; the epilogue too), used where a stage's input enters. At stage
    ``r`` the block of side ``r`` reads the image; while stage ``r`` fades in, the features entering the next
    block (side ``q = r / 2``) are ``fade(old, new, alpha)`` with ``old`` what that block makes of
    ``downsample_average(x)`` as its stage's input (its FromRGB) and ``new`` its usual input from the block of
    side ``r`` (plus, in ``skip``, the FromRGB of the FIR-downsampled image); ``skip`` fades the image it hands
    on alike. At alpha = 0 this is exactly the previous stage on the 2x2-averaged image (the growth protocol of
    ``lightning_gan.interfaces``); at alpha = 1 and the last stage, exactly ``StyleGAN2Discriminator``.
    """

    def __init__(self, **kwargs: Any) -> None:
        """
        Args:
            **kwargs: the arguments of ``StyleGAN2Discriminator``.
        """
        StyleGAN2Discriminator.__init__(self, **kwargs)
        img_channels = self.full_input_shape[0]
        for block in self.blocks:
            if block.fromrgb is None:
                block.fromrgb = EqualConv2d(in_channels=img_channels, out_channels=block.tmp_channels, kernel_size=1,
                                            activation="lrelu", conv_clamp=self.conv_clamp)
        if self.epilogue.fromrgb is None:
            self.epilogue.fromrgb = EqualConv2d(in_channels=img_channels, out_channels=self.epilogue.in_channels,
                                                kernel_size=1, activation="lrelu")
        self._init_stages([2 ** i for i in range(2, len(self.blocks) + 3)], self.full_input_shape, "input_shape")

    def forward(self, x: Tensor, c: Tensor | None = None, force_fp32: bool = False) -> Tensor:
        cmap = None
        if self.c_dim:
            c = require_condition(c, self.c_dim, x.shape[0], "discriminator")
            cmap = self.mapping(None, c)  # [N, cmap_dim]
        k, alpha = self.stage_index, self.alpha
        first = len(self.blocks) - k  # blocks run from side R down to 8: the block of side r, or the epilogue
        h, img = None, x
        if k > 0 and alpha != 1.0:
            new_h, new_img = self.blocks[first](None, x, force_fp32)  # [N, C_q, q, q]
            old_img = downsample_average(x)  # the previous stage's input
            if first + 1 < len(self.blocks):
                after = self.blocks[first + 1]
                old_h, old_img = after.read_image(None, old_img, force_fp32)
                new_h, new_img = after.read_image(new_h, new_img, force_fp32)
                h = after.convolve(fade(old_h, new_h, alpha))
                first += 2
            else:
                old_h, new_h = self.epilogue.read_image(None, old_img), self.epilogue.read_image(new_h, new_img)
                return self.epilogue.judge(fade(old_h, new_h, alpha), cmap)
            img = fade(old_img, new_img, alpha) if self.architecture == "skip" else None
        for block in self.blocks[first:]:
            h, img = block(h, img, force_fp32)
        return self.epilogue(h, img, cmap)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", architecture={self.architecture!r}, num_fp16_res={self.num_fp16_res}, "
                f"conv_clamp={self.conv_clamp}, cmap_dim={self.cmap_dim}")
