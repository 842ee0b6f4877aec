"""Callbacks for GAN training: sample pictures, periodic metrics, a kimg-aware progress bar, lazy R1."""

from lightning_gan.callbacks.lazy_r1 import LazyR1
from lightning_gan.callbacks.metrics import MetricsCallback
from lightning_gan.callbacks.progress import GANProgressBar
from lightning_gan.callbacks.sample_grid import SampleGrid

__all__ = ["GANProgressBar", "LazyR1", "MetricsCallback", "SampleGrid"]
