"""StyleGAN2's synthesis network: w [N, num_ws, w_dim] -> images, from a learned constant 4x4 input.

One ``SynthesisBlock`` per resolution 4, 8, ..., R. The 4x4 block holds the learned constant and one
modulated 3x3 conv (``synthesis_input="linear"`` replaces the constant by an equalized-lr linear map of the
first w to the 4x4 input, as the first layer of DCGAN/BigGAN generators: a deviation from the paper for data
whose objects sit at random positions, where a constant input leaves the layout to the styles and the
noise alone); every other block upsamples by 2 in its first modulated conv (transposed conv +
FIR filter) and has a second one. Each conv layer adds per-pixel noise and a bias, then leaky ReLU.
Architectures (Karras et al. 2020, Fig. 7):

* ``orig``: a plain chain, ToRGB at the last block only;
* ``skip``: every block has a ToRGB, and the image is the sum of the upsampled lower-resolution image
  and the block's ToRGB output (``img = upsample2d(img) + torgb(x)``);
* ``resnet``: each block adds a 1x1 upsampling conv of its input to its output, both scaled by sqrt(1/2);
  ToRGB at the last block only.

w indices: conv layers use consecutive ws and a block's ToRGB shares its w with the next block's first
conv, so ``num_ws = 2 log2(R) - 2`` (one per conv layer plus one for the last ToRGB).

Mixed precision (StyleGAN2-ADA): the ``num_fp16_res`` highest block resolutions (never 4x4) compute in
float16 when their input lives on a CUDA device; elsewhere (CPU) they compute in the parameters' dtype. Every
layer's output is clamped to ``[-conv_clamp, conv_clamp]`` when ``conv_clamp`` is set (needed for fp16:
typical 256), on every device, so a model behaves alike on CPU and GPU. The image accumulates in the
parameters' dtype.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_gan.ops import upsample2d
from lightning_gan.ops.growth import fade, upsample_nearest
from lightning_gan_stylegan2.layers import (
    FUSED_MODES,
    LRELU_GAIN,
    LRELU_SLOPE,
    NOISE_MODES,
    EqualConv2d,
    EqualLinear,
    FusedMode,
    ModulatedConv2d,
    NoiseInjection,
    NoiseMode,
    NoiseStrength,
    ToRGB,
    resample_filter,
)

__all__ = [
    "SynthesisArchitecture",
    "SynthesisBlock",
    "SynthesisLayer",
    "SynthesisNetwork",
    "block_dtype",
    "channels_at",
    "fp16_resolutions",
]

SynthesisArchitecture = Literal["orig", "skip", "resnet"]
SynthesisInput = Literal["const", "linear"]
SYNTHESIS_INPUTS = ("const", "linear")
ARCHITECTURES = ("orig", "skip", "resnet")


def channels_at(resolution: int, *, channel_base: int, channel_max: int) -> int:
    """Feature channels at a resolution: ``min(channel_base // resolution, channel_max)``."""
    return max(1, min(channel_base // resolution, channel_max))


def fp16_resolutions(resolution: int, num_fp16_res: int) -> set[int]:
    """The ``num_fp16_res`` highest block resolutions from 8 to ``resolution`` (4x4 always stays float32)."""
    res, out = resolution, set()
    while len(out) < num_fp16_res and res >= 8:
        out.add(res)
        res //= 2
    return out


def block_dtype(use_fp16: bool, param_dtype: torch.dtype, device: torch.device, force_fp32: bool = False) -> torch.dtype:
    """float16 for an fp16 block on a CUDA device (unless ``force_fp32``); the parameters' dtype otherwise."""
    if use_fp16 and device.type == "cuda" and not force_fp32 and param_dtype == torch.float32:
        return torch.float16
    return param_dtype


class SynthesisLayer(nn.Module):
    """Modulated conv (+ upsampling) -> demodulation -> + noise * strength -> + bias -> leaky ReLU * sqrt(2) * gain."""

    def __init__(self, *, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, noise_phi: float = 0.0, gain: float = 1.0,
                 conv_clamp: float | None = None, fused: FusedMode = "auto",
                 noise_strength: NoiseStrength = "layer") -> None:
        """
        Args:
            in_channels: input channels.
            out_channels: output channels.
            w_dim: size of w.
            resolution: output side R (of the noise maps).
            kernel_size: conv kernel size.
            up: 2 doubles the resolution (transposed conv + FIR filter).
            use_noise: add per-pixel noise.
            noise_phi: AR(1) coefficient of spatially correlated noise (0 = i.i.d.).
            gain: extra output gain (sqrt(1/2) on a residual branch).
            conv_clamp: clamp the output to [-conv_clamp * gain, conv_clamp * gain]; None = no clamp.
            fused: evaluation of the modulated conv ("auto", "fused", "plain").
            noise_strength: the noise's learned strength: "layer" (one scalar, StyleGAN2) or "channel".
        """
        super().__init__()
        self.resolution, self.gain, self.conv_clamp = int(resolution), float(gain), conv_clamp
        self.conv = ModulatedConv2d(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size,
                                    w_dim=w_dim, up=up, fused=fused)
        self.noise = (NoiseInjection(channels=out_channels, resolution=resolution, phi=noise_phi,
                                     strength=noise_strength) if use_noise else None)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: Tensor, w: Tensor, noise_mode: NoiseMode = "random",
                fused: FusedMode | None = None) -> Tensor:  # [N, I, H, W], [N, w_dim] -> [N, O, R, R]
        y, d = self.conv.forward_unscaled(x, w, fused)
        # One pass for demodulation, gain and bias, one for the noise, one (in place) for the activation:
        # lrelu(a) * g == lrelu(a * g) for g > 0 folds the gain into the affine terms.
        g = LRELU_GAIN * self.gain
        b = (self.bias * g).to(y.dtype).view(1, -1, 1, 1)
        y = torch.add(b, y, alpha=g) if d is None else torch.addcmul(b, y, (d * g).to(y.dtype)[:, :, None, None])
        if self.noise is not None:
            noise = self.noise.noise(y.shape[0], noise_mode, y)
            if noise is not None:
                y = y.addcmul_(noise, (self.noise.strength * g).to(y.dtype).view(1, -1, 1, 1))
        elif noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        y = F.leaky_relu_(y, LRELU_SLOPE)
        if self.conv_clamp is not None:
            y = y.clamp(-self.conv_clamp * self.gain, self.conv_clamp * self.gain)
        return y

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, gain={self.gain:.4g}, conv_clamp={self.conv_clamp}"


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network; ``forward(x, img, ws) -> (x, img)``.

    ``ws`` [N, num_conv + 1, w_dim]: one w per conv layer, then the ToRGB's (the next block's first).
    """

    def __init__(self, *, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: SynthesisArchitecture = "skip", use_fp16: bool = False,
                 conv_clamp: float | None = None, noise_phi: float = 0.0, fused: FusedMode = "auto",
                 channels_last: bool = True, synthesis_input: SynthesisInput = "const", rgb_gain: float = 1.0,
                 noise_strength: NoiseStrength = "layer") -> None:
        """
        Args:
            in_channels: channels of the previous block's output; 0 for the first (4x4 input) block.
            out_channels: channels of this block's feature maps.
            w_dim: size of w.
            resolution: this block's output side.
            img_channels: image channels.
            is_last: the block at the output resolution (always has a ToRGB).
            architecture: "orig", "skip" or "resnet".
            use_fp16: compute in float16 on CUDA devices.
            conv_clamp: clamp every layer's output to +-conv_clamp; None = no clamp.
            noise_phi: AR(1) coefficient of the noise (0 = i.i.d.).
            fused: evaluation of the modulated convs.
            channels_last: keep feature maps in channels_last memory format (faster convolutions on CPU).
            synthesis_input: the first block's 4x4 input: "const" (learned constant, the paper) or "linear"
                (an equalized-lr linear map of the block's w, unit variance at init).
            rgb_gain: factor on this block's ToRGB output (see ``SynthesisNetwork``'s ``low_res_rgb_gain``).
            noise_strength: the noise strengths: "layer" (one scalar per layer, StyleGAN2) or "channel".
        """
        super().__init__()
        if not rgb_gain > 0:
            raise ValueError(f"rgb_gain must be > 0, got {rgb_gain}")
        if architecture not in ARCHITECTURES:
            raise ValueError(f"synthesis architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        if synthesis_input not in SYNTHESIS_INPUTS:
            raise ValueError(f"synthesis_input must be one of {SYNTHESIS_INPUTS}, got {synthesis_input!r}")
        self.in_channels, self.out_channels, self.resolution = int(in_channels), int(out_channels), int(resolution)
        self.architecture, self.is_last, self.use_fp16 = architecture, bool(is_last), bool(use_fp16)
        self.channels_last, self.rgb_gain = bool(channels_last), float(rgb_gain)
        layer = dict(w_dim=w_dim, resolution=resolution, noise_phi=noise_phi, conv_clamp=conv_clamp, fused=fused,
                     noise_strength=noise_strength)
        residual = architecture == "resnet" and in_channels > 0
        if in_channels == 0:
            if resolution != 4:
                raise ValueError(f"the first synthesis block starts from a 4x4 input, got resolution {resolution}")
            if synthesis_input == "const":
                self.const = nn.Parameter(torch.randn(out_channels, 4, 4))  # [C, 4, 4]
                self.input = None
            else:
                self.const = None
                self.input = EqualLinear(in_features=w_dim, out_features=out_channels * 16)  # w -> [C * 4 * 4]
            self.conv0 = None
        else:
            self.const = self.input = None
            self.conv0 = SynthesisLayer(in_channels=in_channels, out_channels=out_channels, up=2, **layer)
        self.conv1 = SynthesisLayer(in_channels=out_channels, out_channels=out_channels,
                                    gain=math.sqrt(0.5) if residual else 1.0, **layer)
        self.torgb = (ToRGB(in_channels=out_channels, out_channels=img_channels, w_dim=w_dim, conv_clamp=conv_clamp,
                            fused=fused) if is_last or architecture == "skip" else None)
        self.skip = (EqualConv2d(in_channels=in_channels, out_channels=out_channels, kernel_size=1, bias=False, up=2,
                                 gain=math.sqrt(0.5)) if residual else None)
        self.num_conv = 1 if in_channels == 0 else 2
        self.register_buffer("resample_filter", resample_filter(), persistent=False)

    def forward(self, x: Tensor | None, img: Tensor | None, ws: Tensor, noise_mode: NoiseMode = "random",
                force_fp32: bool = False, fused: FusedMode | None = None) -> tuple[Tensor, Tensor | None]:
        param_dtype = self.conv1.bias.dtype
        dtype = block_dtype(self.use_fp16, param_dtype, ws.device, force_fp32)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        w = ws.unbind(1)
        if self.conv0 is None:
            if self.const is not None:
                x = self.const.to(dtype).unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
            else:
                x = self.input(w[0]).to(dtype).view(ws.shape[0], -1, 4, 4)
            x = self.conv1(x.contiguous(memory_format=fmt), w[0], noise_mode, fused)  # [N, C, 4, 4]
        else:
            x = x.to(dtype=dtype, memory_format=fmt)
            y = self.skip(x) if self.skip is not None else None
            x = self.conv0(x, w[0], noise_mode, fused)  # [N, C, R, R]
            x = self.conv1(x, w[1], noise_mode, fused)
            if y is not None:
                x = y.add_(x)  # (skip + main) * sqrt(1/2), the gains already applied
        if img is not None and self.architecture == "skip":
            img = upsample2d(img, self.resample_filter)  # [N, img_channels, R, R]
        if self.torgb is not None:
            rgb = self.torgb(x, w[self.num_conv]).to(param_dtype)
            if self.rgb_gain != 1.0:
                rgb = rgb * self.rgb_gain
            img = rgb if img is None else img.add_(rgb)
        return x, img

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, resolution={self.resolution}, "
                f"architecture={self.architecture!r}, use_fp16={self.use_fp16}"
                + (f", rgb_gain={self.rgb_gain:g}" if self.rgb_gain != 1.0 else ""))


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] (or one w [N, w_dim], broadcast) -> images [N, img_channels, R, R], linear output."""

    def __init__(self, *, w_dim: int, resolution: int, img_channels: int = 3, channel_base: int = 32768,
                 channel_max: int = 512, architecture: SynthesisArchitecture = "skip", num_fp16_res: int = 0,
                 conv_clamp: float | None = None, noise_phi: float = 0.0, fused: FusedMode = "auto",
                 channels_last: bool = True, synthesis_input: SynthesisInput = "const",
                 low_res_rgb_gain: float = 1.0, noise_strength: NoiseStrength = "layer") -> None:
        """
        Args:
            w_dim: size of w.
            resolution: output side R, a power of two >= 4.
            img_channels: image channels.
            channel_base: channels at resolution r are ``min(channel_base // r, channel_max)``.
            channel_max: the cap on channels.
            architecture: "orig", "skip" or "resnet".
            num_fp16_res: number of highest resolutions computed in float16 on CUDA devices.
            conv_clamp: clamp every layer's output to +-conv_clamp; None = no clamp.
            noise_phi: AR(1) coefficient of the noise inputs (0 = i.i.d.).
            fused: evaluation of the modulated convs.
            channels_last: channels_last feature maps.
            synthesis_input: the 4x4 input: "const" (learned constant) or "linear" (a linear map of the first w).
            low_res_rgb_gain: ``skip`` only: factor on the ToRGB outputs of every block below the output
                resolution (1 = the paper). The summed low-resolution images move the whole picture at once;
                0.1 keeps the skip generator training on grey shapes, where with 1 it collapses (README).
            noise_strength: the noise strengths: "layer" (one scalar per layer, StyleGAN2) or "channel".
        """
        super().__init__()
        if not low_res_rgb_gain > 0:
            raise ValueError(f"low_res_rgb_gain must be > 0, got {low_res_rgb_gain}")
        if low_res_rgb_gain != 1.0 and architecture != "skip":
            raise ValueError(f"low_res_rgb_gain={low_res_rgb_gain} needs architecture 'skip' (only it has "
                             f"low-resolution ToRGB outputs), got {architecture!r}")
        if fused not in FUSED_MODES:
            raise ValueError(f"fused must be one of {FUSED_MODES}, got {fused!r}")
        if resolution < 4 or resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 4, got {resolution}")
        self.w_dim, self.resolution, self.img_channels = int(w_dim), int(resolution), int(img_channels)
        self.architecture, self.num_fp16_res, self.conv_clamp = architecture, int(num_fp16_res), conv_clamp
        self.synthesis_input, self.low_res_rgb_gain = synthesis_input, float(low_res_rgb_gain)
        self.block_resolutions = [2 ** i for i in range(2, int(math.log2(resolution)) + 1)]
        fp16 = fp16_resolutions(resolution, num_fp16_res)
        blocks, in_ch = [], 0
        for res in self.block_resolutions:
            out_ch = channels_at(res, channel_base=channel_base, channel_max=channel_max)
            blocks.append(SynthesisBlock(in_channels=in_ch, out_channels=out_ch, w_dim=w_dim, resolution=res,
                                         img_channels=img_channels, is_last=res == resolution,
                                         architecture=architecture, use_fp16=res in fp16, conv_clamp=conv_clamp,
                                         noise_phi=noise_phi, fused=fused, channels_last=channels_last,
                                         synthesis_input=synthesis_input, noise_strength=noise_strength,
                                         rgb_gain=1.0 if res == resolution else low_res_rgb_gain))
            in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)
        self.num_ws = sum(b.num_conv for b in blocks) + 1

    def forward(self, ws: Tensor, noise_mode: NoiseMode = "random", force_fp32: bool = False,
                fused: FusedMode | None = None, growth: tuple[int, float] | None = None) -> Tensor:
        """Images [N, C, R, R]; with ``growth = (k, alpha)`` (``skip`` only) the images of growth stage k.

        Stage k runs the blocks up to the k-th (side ``4 * 2^k``); for k > 0 its image is
        ``fade(upsample_nearest(img_{k-1}), img_k, alpha)`` (``lightning_gan.ops.growth``), ``img_{k-1}`` the
        image the blocks below produce and ``img_k = upsample2d(img_{k-1}) + rgb_gain * ToRGB_k(x_k)`` the
        usual skip output: alpha fades in the highest block's contribution (and the FIR upsampling of the lower
        image), and at alpha = 0 the output is exactly the previous stage's, pixels repeated 2x2.
        """
        if ws.dim() == 2:
            ws = ws.unsqueeze(1).expand(-1, self.num_ws, -1)  # one w for every layer
        if ws.dim() != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"synthesis expects ws [N, {self.num_ws}, {self.w_dim}] or w [N, {self.w_dim}], "
                             f"got {list(ws.shape)}")
        stage = len(self.blocks) - 1 if growth is None else int(growth[0])
        if growth is not None and self.architecture != "skip":
            raise ValueError(f"only the skip synthesis network grows (growth={growth}), this one is "
                             f"{self.architecture!r}")
        x = img = previous = None
        idx = 0
        for block in self.blocks[:stage + 1]:
            previous = img  # the lower stage's image (the block upsamples it into a new tensor)
            x, img = block(x, img, ws[:, idx:idx + block.num_conv + 1], noise_mode, force_fp32, fused)
            idx += block.num_conv
        if growth is not None and stage > 0 and growth[1] != 1.0:
            img = fade(upsample_nearest(previous), img, growth[1])  # [N, img_channels, r, r]
        return img.contiguous()  # [N, img_channels, R, R]

    def extra_repr(self) -> str:
        return (f"w_dim={self.w_dim}, resolution={self.resolution}, img_channels={self.img_channels}, "
                f"num_ws={self.num_ws}, architecture={self.architecture!r}, num_fp16_res={self.num_fp16_res}, "
                f"conv_clamp={self.conv_clamp}, synthesis_input={self.synthesis_input!r}")
