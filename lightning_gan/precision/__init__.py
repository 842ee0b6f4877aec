"""Precision plugins: ``fp32``, ``bf16-mixed``, ``fp16-dynamic`` (one dynamic loss scaler per network)."""

from lightning_gan.precision.plugins import BF16MixedPrecision, FP16DynamicPrecision, FP32Precision, GANPrecision
from lightning_gan.precision.scaler import DynamicLossScaler

__all__ = ["BF16MixedPrecision", "DynamicLossScaler", "FP16DynamicPrecision", "FP32Precision", "GANPrecision"]
