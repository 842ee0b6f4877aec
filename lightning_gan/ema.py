"""Exponential moving average of the generator's weights, with a half-life counted in images.

After ``ema_kimg * 1000`` images the old average's weight has halved: per batch of B images
``beta = 0.5 ** (B / ema_nimg)``. The ramp-up (Karras et al. 2020) caps the half-life at
``ema_rampup * images_seen`` so that the average forgets the random initialization quickly.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ema_beta", "update_ema"]


def ema_beta(batch_images: int, images_seen: int, ema_kimg: float, ema_rampup: float | None = None) -> float:
    """Decay for one update after ``images_seen`` images (before this batch) with ``batch_images`` new ones."""
    ema_nimg = ema_kimg * 1000.0
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, images_seen * ema_rampup)
    return 0.5 ** (batch_images / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """``ema = beta * ema + (1 - beta) * model`` for parameters; buffers are copied."""
    ema_params = [p for p in ema.parameters()]
    params = [p.detach() for p in model.parameters()]
    if len(ema_params) != len(params):
        raise RuntimeError("EMA and model parameters differ; was the generator changed after the EMA copy was made?")
    if ema_params:
        torch._foreach_lerp_(ema_params, params, 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)
