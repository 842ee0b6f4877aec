"""GANModule with a discriminator augmentation: D sees T(x) in every phase, gradients reach G through T, R1 is taken
through T, the adaptive hooks run as promised, the state is checkpointed, and a run without one is unchanged."""

from __future__ import annotations

import json

import pytest
import torch
from torch import Tensor

from conftest import make_trainer  # tests/conftest.py
from lightning_gan.data.toy2d import Toy2DDataModule
from lightning_gan.interfaces import Augmentation
from lightning_gan.module import GANModule
from lightning_gan.regularizers import R1, input_gradient_sq_norm
from lightning_gan.testing import TinyArchitecture


class Affine(Augmentation):
    """``T(x) = factor * x + shift`` with a random sign flip per sample drawn from ``generator`` (when ``flip``);
    counts calls, what ``observe`` received and the images ``update`` was told about."""

    def __init__(self, *, factor: float = 2.0, shift: float = 0.0, flip: bool = False) -> None:
        super().__init__()
        self.factor, self.shift, self.flip = factor, shift, flip
        self.calls = 0
        self.observed: list[int] = []
        self.register_buffer("images_total", torch.zeros((), dtype=torch.int64))

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        self.calls += 1
        out = images * self.factor + self.shift
        if self.flip:
            signs = torch.randint(2, (images.shape[0],) + (1,) * (images.dim() - 1), generator=generator,
                                  device=images.device) * 2 - 1
            out = out * signs
        return out

    def observe(self, real_logits: Tensor) -> None:
        self.observed.append(real_logits.numel())

    def update(self, *, images: int, reduce) -> None:  # noqa: ANN001
        self.images_total += reduce(torch.tensor(images))

    def summary(self) -> dict[str, Tensor]:
        return {"images": self.images_total.float()}


def toy(num_samples: int = 200, batch_size: int = 20) -> Toy2DDataModule:
    return Toy2DDataModule(num_samples=num_samples, batch_size=batch_size)


def _ready(module: GANModule) -> GANModule:
    """A module whose phases can be called directly (no Trainer): its RNG streams set up, checks done."""
    module._latent_rng = torch.Generator().manual_seed(0)
    module._augment_rng = torch.Generator().manual_seed(1)
    module._first_check = False
    return module


def test_every_phase_judges_augmented_images_and_g_gets_gradients_through_t() -> None:
    torch.manual_seed(0)
    aug = Affine(factor=2.0, shift=0.5)
    module = _ready(GANModule(architecture=TinyArchitecture(), augment=aug, metrics=[]))
    G, D = module.generator, module.discriminator
    real = torch.randn(6, 2)
    inputs = module._penalty_inputs(real, None)

    d_loss = module._adversarial_loss("discriminator", inputs)
    module._latent_rng.manual_seed(0)
    z = G.sample_latents(6, generator=module._latent_rng)
    with torch.no_grad():
        fake = G(z)
    expected = module.loss_fn.discriminator_loss(D(2 * real + 0.5), D(2 * fake + 0.5))
    torch.testing.assert_close(d_loss, expected)
    assert aug.observed == [6]  # Dmain's augmented real logits were observed
    real_logits, fake_logits = inputs.d_logits  # kept for penalties folded into Dmain
    torch.testing.assert_close(real_logits, D(2 * real + 0.5))

    module._latent_rng.manual_seed(5)
    g_loss = module._adversarial_loss("generator", module._penalty_inputs(real, None))
    grads = torch.autograd.grad(g_loss, list(G.parameters()))
    module._latent_rng.manual_seed(5)
    z = G.sample_latents(6, generator=module._latent_rng)
    by_hand = module.loss_fn.generator_loss(D(2 * G(z) + 0.5))
    torch.testing.assert_close(g_loss, by_hand)
    for got, want in zip(grads, torch.autograd.grad(by_hand, list(G.parameters()))):
        torch.testing.assert_close(got, want)
    assert all(g.abs().sum() > 0 for g in grads)


def test_r1_is_the_gradient_of_d_of_t_with_respect_to_the_unaugmented_reals() -> None:
    torch.manual_seed(0)
    module = _ready(GANModule(architecture=TinyArchitecture(), augment=Affine(factor=3.0, shift=-1.0), metrics=[]))
    D = module.discriminator
    real = torch.randn(5, 2)
    penalty = R1(gamma=4.0)(module._penalty_inputs(real, None))
    # chain rule: d D(3x - 1) / dx = 3 (grad D)(3x - 1), so the penalty is 9 times R1 of D at 3x - 1
    at_augmented = input_gradient_sq_norm(D, 3 * real - 1, None)
    torch.testing.assert_close(penalty, 0.5 * 4.0 * 9 * at_augmented.mean())
    plain = R1(gamma=4.0)(_ready(GANModule(architecture=TinyArchitecture(), metrics=[]))._penalty_inputs(real, None))
    assert not torch.allclose(penalty, plain)


def test_a_fit_runs_the_hooks_logs_the_summary_and_checkpoints_the_state(tmp_path) -> None:
    aug = Affine(factor=1.0, flip=True)
    module = GANModule(architecture=TinyArchitecture(), augment=aug, d_steps=2, log_every_n_iterations=5,
                       metrics=[], total_kimg=0.2)
    trainer = make_trainer(tmp_path, max_epochs=-1, default_root_dir=tmp_path)
    trainer.fit(module, toy())
    assert module.iteration == 10  # 0.2 kimg in batches of 20
    assert aug.observed == [10] * 20  # one observation per D step, each of the step's 10 reals
    assert int(aug.images_total) == 200  # update told once per iteration about that iteration's 20 images
    # Dmain (2 reals + fakes per step: 4 calls), Gmain (1 call) each iteration
    assert aug.calls == 10 * (2 * 2 + 1)
    assert trainer.callback_metrics["augment/images"].item() == 200.0
    assert module.training_summary() == {"augment/images": 200.0}
    assert module.hparams["augment"]["class_path"].endswith("Affine")

    path = tmp_path / "run.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    assert int(ckpt["state_dict"]["augment.images_total"]) == 200
    assert ckpt["lightning_gan"]["rng"]["augment"] is not None  # the augmentation's stream resumes too

    fresh = GANModule(architecture=TinyArchitecture(), augment=Affine(factor=1.0, flip=True), d_steps=2,
                      metrics=[], total_kimg=0.4)
    make_trainer(tmp_path / "b", max_epochs=-1).fit(fresh, toy(), ckpt_path=path)
    assert int(fresh.augment.images_total) == 400  # continued from the checkpoint's 200


def test_without_augmentation_nothing_changes(tmp_path) -> None:
    """``augment=None`` adds nothing to the state or the hyperparameters, and an identity augmentation (which
    draws no random numbers) trains bit-identically to none: the augmentation path is only T."""

    def fit(augment: Augmentation | None) -> GANModule:
        torch.manual_seed(0)
        module = GANModule(architecture=TinyArchitecture(), augment=augment, regularizers=[R1(gamma=1.0, interval=2)],
                           metrics=[], total_kimg=0.1)
        make_trainer(tmp_path, max_epochs=-1).fit(module, toy())
        return module

    plain = fit(None)
    assert plain.hparams["augment"] is None
    assert not any(k.startswith("augment") for k in plain.state_dict())
    assert plain.training_summary() == {}
    identity = fit(Affine(factor=1.0))
    assert identity.augment.calls > 0
    trained = identity.state_dict()
    for name, value in plain.state_dict().items():
        if isinstance(value, Tensor):
            assert torch.equal(value, trained[name]), name


def test_metrics_json_holds_the_augmentation_summary(tmp_path) -> None:
    from lightning.pytorch.loggers import CSVLogger

    module = GANModule(architecture=TinyArchitecture(), augment=Affine(factor=1.0), metrics=[], total_kimg=0.1)
    trainer = make_trainer(tmp_path, max_epochs=-1, logger=CSVLogger(tmp_path))
    trainer.fit(module, toy())
    record = json.loads(module.metrics_path.read_text())
    assert record["augment/images"] == pytest.approx(100.0)
