"""Pure-PyTorch ops shared by plugins: ``upfirdn2d`` resampling, FIR filter design, progressive-growing fades,
convolutions with fast second derivatives."""

from lightning_gan.ops.conv import conv2d, conv_transpose2d
from lightning_gan.ops.filters import (
    binomial_filter,
    kaiser_atten,
    kaiser_beta,
    kaiser_lowpass,
    register_filter,
    setup_filter,
)
from lightning_gan.ops.growth import downsample_average, fade, fade_resolutions, upsample_nearest
from lightning_gan.ops.upfirdn2d import downsample2d, filter2d, upfirdn2d, upsample2d

__all__ = [
    "binomial_filter",
    "conv2d",
    "conv_transpose2d",
    "downsample2d",
    "downsample_average",
    "fade",
    "fade_resolutions",
    "filter2d",
    "kaiser_atten",
    "kaiser_beta",
    "kaiser_lowpass",
    "register_filter",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
    "upsample_nearest",
]
