"""LeCam regularization against its formula: the anchors' moving averages, the penalty, and in a fit the reuse of
Dmain's logits (no extra discriminator pass), the anchors' place in checkpoints, and a lazy interval."""

from __future__ import annotations

import pytest
import torch

from conftest import make_trainer  # tests/conftest.py
from lightning_gan import registry
from lightning_gan.data.toy2d import Toy2DDataModule
from lightning_gan.interfaces import PenaltyInputs
from lightning_gan.module import GANModule
from lightning_gan.regularizers import LeCam, lecam_penalty
from lightning_gan.testing import TinyArchitecture


def _inputs(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> PenaltyInputs:
    inputs = PenaltyInputs(generator=None, discriminator=None, real=torch.zeros(len(real_logits), 2), real_c=None,
                           latent_sampler=lambda n: (torch.zeros(n, 1), None))
    inputs.d_logits = (real_logits, fake_logits)
    return inputs


def test_penalty_and_anchors_follow_the_formula() -> None:
    reg = LeCam(weight=0.3, decay=0.9)
    a_r = a_f = 0.0
    for step in range(4):
        real = torch.randn(8) + 2.0
        fake = torch.randn(8) - 1.0
        got = reg(_inputs(real, fake))
        a_r = 0.9 * a_r + 0.1 * real.mean().item()  # the batch enters the anchors first
        a_f = 0.9 * a_f + 0.1 * fake.mean().item()
        want = 0.3 * (((real - a_f) ** 2).mean() + ((fake - a_r) ** 2).mean())
        assert got.item() == pytest.approx(want.item(), rel=1e-5), step
        assert reg.anchor_real.item() == pytest.approx(a_r, rel=1e-6)
        assert reg.anchor_fake.item() == pytest.approx(a_f, rel=1e-6)
    assert lecam_penalty(torch.tensor([1.0, 3.0]), torch.tensor([0.0]), torch.tensor(1.0), torch.tensor(2.0)).item() \
        == pytest.approx(((1 - 2) ** 2 + (3 - 2) ** 2) / 2 + 1.0)


def test_gradient_reaches_the_logits_not_the_anchors() -> None:
    reg = LeCam(weight=1.0, decay=0.5)
    real = torch.tensor([1.0, 2.0], requires_grad=True)
    fake = torch.tensor([-1.0, 0.0], requires_grad=True)
    reg(_inputs(real, fake)).backward()
    a_f = 0.5 * fake.detach().mean()  # anchors after the update (from 0)
    torch.testing.assert_close(real.grad, 2 * (real.detach() - a_f) / 2)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="decay"):
        LeCam(decay=1.0)
    with pytest.raises(ValueError, match="weight"):
        LeCam(weight=-1.0)


class CountingD(torch.nn.Module):
    def __init__(self, d: torch.nn.Module) -> None:
        super().__init__()
        self.calls = 0
        d.register_forward_pre_hook(self._count)

    def _count(self, *args) -> None:  # noqa: ANN002
        self.calls += 1


def test_in_a_fit_it_reuses_dmain_logits_and_its_anchors_are_checkpointed(tmp_path) -> None:
    reg = registry.resolve("regularizers", {"class_path": "lightning_gan.regularizers.LeCam", "init_args": {"weight": 0.1}})
    module = GANModule(architecture=TinyArchitecture(), regularizers=[reg], metrics=[], total_kimg=0.1)
    counter = CountingD(module.discriminator)
    trainer = make_trainer(tmp_path, max_epochs=-1)
    trainer.fit(module, Toy2DDataModule(num_samples=200, batch_size=20))
    assert module.iteration == 5
    assert counter.calls == 5 * 3  # Dmain: reals and fakes, Gmain: fakes; LeCam adds no discriminator pass
    assert reg.anchor_real.item() != 0.0 and reg.anchor_fake.item() != 0.0
    path = tmp_path / "run.ckpt"
    trainer.save_checkpoint(path)
    state = torch.load(path, weights_only=True)["state_dict"]
    assert state["regularizers.0.anchor_real"].item() == reg.anchor_real.item()

    lazy = LeCam(weight=0.1, interval=4)  # runs in Dreg: computes the logits itself
    module = GANModule(architecture=TinyArchitecture(), regularizers=[lazy], metrics=[], total_kimg=0.1)
    counter = CountingD(module.discriminator)
    make_trainer(tmp_path, max_epochs=-1).fit(module, Toy2DDataModule(num_samples=200, batch_size=20))
    assert counter.calls == 5 * 3 + 2 * 2  # iterations 0 and 4 run Dreg with a real and a fake pass
    assert lazy.anchor_real.item() != 0.0
