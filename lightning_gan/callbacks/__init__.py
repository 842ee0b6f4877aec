"""Callbacks for GAN training: sample pictures, periodic metrics, a kimg-aware progress bar, lazy R1, loss scales, stability,
progressive growing, the discriminator's overfitting."""

from lightning_gan.callbacks.interrupt import InterruptCheckpoint
from lightning_gan.callbacks.lazy_r1 import LazyR1
from lightning_gan.callbacks.loss_scale import LossScaleMonitor
from lightning_gan.callbacks.metrics import MetricsCallback
from lightning_gan.callbacks.overfitting import OverfittingMonitor
from lightning_gan.callbacks.progressive import ProgressiveGrowing
from lightning_gan.callbacks.progress import GANProgressBar
from lightning_gan.callbacks.sample_grid import SampleGrid
from lightning_gan.callbacks.stability import StabilityMonitor
from lightning_gan.callbacks.stability_controller import StabilityController
from lightning_gan.callbacks.standing_stats import StandingStatistics

__all__ = ["GANProgressBar", "InterruptCheckpoint", "LazyR1", "LossScaleMonitor", "MetricsCallback", "OverfittingMonitor",
           "ProgressiveGrowing", "SampleGrid", "StabilityController", "StabilityMonitor", "StandingStatistics"]
