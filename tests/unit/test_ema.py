"""EMA half-life arithmetic and the G-only update."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_gan.ema import ema_beta, update_ema


@pytest.mark.parametrize("batch", [16, 64, 500])
def test_half_life_in_images(batch: int) -> None:
    ema_kimg = 10.0
    # without ramp-up the old average's weight halves every ema_kimg * 1000 images
    beta = ema_beta(batch, images_seen=10**9, ema_kimg=ema_kimg, ema_rampup=None)
    assert beta == pytest.approx(0.5 ** (batch / 10_000))
    steps = 10_000 / batch
    assert beta ** steps == pytest.approx(0.5, rel=1e-9)


def test_rampup_caps_the_half_life_early() -> None:
    # after 1000 images with rampup 0.05 the half-life is 50 images, not 10 kimg
    assert ema_beta(50, images_seen=1000, ema_kimg=10.0, ema_rampup=0.05) == pytest.approx(0.5)
    # late in training the configured half-life wins
    assert ema_beta(50, images_seen=10**7, ema_kimg=10.0, ema_rampup=0.05) == pytest.approx(0.5 ** (50 / 10_000))
    # first update copies the model (nothing seen yet)
    assert ema_beta(32, images_seen=0, ema_kimg=10.0, ema_rampup=0.05) == 0.0


def test_update_ema_lerps_parameters_and_copies_buffers() -> None:
    model = torch.nn.BatchNorm1d(3)
    ema = torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        model.weight.fill_(2.0)
        ema.weight.fill_(1.0)
        model.running_mean.fill_(7.0)
    update_ema(ema, model, beta=0.25)
    assert torch.allclose(ema.weight, torch.full((3,), 0.25 * 1.0 + 0.75 * 2.0))
    assert torch.equal(ema.running_mean, model.running_mean)
    assert math.isclose(model.weight.detach()[0].item(), 2.0)  # the model is untouched
