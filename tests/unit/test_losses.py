"""Adversarial losses against their formulas on hand-picked logits."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_gan import registry

REAL = torch.tensor([2.0, -0.5, 0.0])
FAKE = torch.tensor([-1.5, 0.5, 3.0])


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def test_non_saturating() -> None:
    loss = registry.get_registry("losses").create("non_saturating")
    d = mean(softplus(-r) for r in REAL.tolist()) + mean(softplus(f) for f in FAKE.tolist())
    g = mean(softplus(-f) for f in FAKE.tolist())
    assert loss.discriminator_loss(REAL, FAKE).item() == pytest.approx(d, rel=1e-6)
    assert loss.generator_loss(FAKE).item() == pytest.approx(g, rel=1e-6)


def test_hinge_with_margin() -> None:
    loss = registry.get_registry("losses").create("hinge", margin=0.5)
    d = mean(max(0.0, 0.5 - r) for r in REAL.tolist()) + mean(max(0.0, 0.5 + f) for f in FAKE.tolist())
    # real: [0, 1.0, 0.5] -> 0.5 ; fake: [0, 1.0, 3.5] -> 1.5
    assert d == pytest.approx(2.0)
    assert loss.discriminator_loss(REAL, FAKE).item() == pytest.approx(2.0)
    assert loss.generator_loss(FAKE).item() == pytest.approx(-mean(FAKE.tolist()))


def test_wasserstein_with_drift() -> None:
    loss = registry.get_registry("losses").create("wasserstein", drift=0.001)
    d = mean(FAKE.tolist()) - mean(REAL.tolist()) + 0.001 * mean(r * r for r in REAL.tolist())
    assert loss.discriminator_loss(REAL, FAKE).item() == pytest.approx(d, rel=1e-6)
    assert loss.generator_loss(FAKE).item() == pytest.approx(-mean(FAKE.tolist()))


def test_least_squares() -> None:
    loss = registry.get_registry("losses").create("least_squares")
    d = 0.5 * (mean((r - 1) ** 2 for r in REAL.tolist()) + mean(f ** 2 for f in FAKE.tolist()))
    g = 0.5 * mean((f - 1) ** 2 for f in FAKE.tolist())
    assert loss.discriminator_loss(REAL, FAKE).item() == pytest.approx(d, rel=1e-6)
    assert loss.generator_loss(FAKE).item() == pytest.approx(g, rel=1e-6)


def test_relativistic_pairing() -> None:
    loss = registry.get_registry("losses").create("relativistic_pairing")
    d = mean(softplus(f - r) for r, f in zip(REAL.tolist(), FAKE.tolist()))
    g = mean(softplus(r - f) for r, f in zip(REAL.tolist(), FAKE.tolist()))
    assert loss.generator_needs_real
    assert loss.discriminator_loss(REAL, FAKE).item() == pytest.approx(d, rel=1e-6)
    assert loss.generator_loss(FAKE, REAL).item() == pytest.approx(g, rel=1e-6)
    # pairs, not batch means: shuffling the fakes against the reals changes the loss
    assert loss.discriminator_loss(REAL, FAKE.flip(0)).item() != pytest.approx(d, rel=1e-3)
    with pytest.raises(ValueError, match="real logits"):
        loss.generator_loss(FAKE)
    with pytest.raises(ValueError, match="as many real as generated"):
        loss.discriminator_loss(REAL, FAKE[:2])


@pytest.mark.parametrize("name", ["non_saturating", "hinge", "wasserstein", "least_squares", "relativistic_pairing"])
def test_config_round_trip(name: str) -> None:
    loss = registry.get_registry("losses").create(name)
    again = registry.resolve("losses", loss.config())
    assert type(again) is type(loss) and again.config() == loss.config()
