"""GANModule: phases actually run as scheduled, counters, Adam correction, EMA, checkpoints, errors."""

from __future__ import annotations

import functools

import pytest
import torch

from conftest import make_trainer  # tests/conftest.py
from lightning_gan.callbacks import LazyR1
from lightning_gan.data.toy2d import Toy2DDataModule
from lightning_gan.errors import ConfigError
from lightning_gan.interfaces import AdversarialLoss, PenaltyInputs, Regularizer
from lightning_gan.losses import RelativisticPairingLoss
from lightning_gan.module import GANModule
from lightning_gan.regularizers import R1
from lightning_gan.testing import TinyArchitecture


class CountingPenalty(Regularizer):
    """Penalty ``weight * sum(params of its network)``; records the iterations on which it ran."""

    def __init__(self, *, weight: float = 1.0, interval: int = 1, network: str = "generator") -> None:
        super().__init__(weight=weight, interval=interval)
        self.network = network
        self.calls = 0

    def forward(self, inputs: PenaltyInputs) -> torch.Tensor:
        self.calls += 1
        net = inputs.generator if self.network == "generator" else inputs.discriminator
        return self.weight * sum(p.sum() for p in net.parameters())


def toy(num_samples=200, batch_size=20, **kwargs) -> Toy2DDataModule:
    return Toy2DDataModule(num_samples=num_samples, batch_size=batch_size, **kwargs)


def test_phases_run_as_scheduled_and_counters_are_images_not_steps(tmp_path) -> None:
    d_pen = CountingPenalty(weight=0.0, interval=4, network="discriminator")
    g_pen = CountingPenalty(weight=0.0, interval=3, network="generator")
    module = GANModule(architecture=TinyArchitecture(), regularizers=[d_pen, g_pen], metrics=[])
    trainer = make_trainer(tmp_path, max_epochs=2)
    trainer.fit(module, toy())  # 10 iterations per epoch
    assert module.iteration == 20
    assert module.images_seen == 400 and module.kimg == pytest.approx(0.4)
    assert d_pen.calls == len(range(0, 20, 4)) == 5
    assert g_pen.calls == len(range(0, 20, 3)) == 7
    # Lightning's global_step counts every optimizer step: 2 per iteration plus the lazy phases
    assert trainer.global_step == 2 * 20 + 5 + 7


def test_lazy_gain_multiplies_the_penalty(tmp_path) -> None:
    pen = CountingPenalty(weight=1e-3, interval=5, network="generator")
    module = GANModule(architecture=TinyArchitecture(), regularizers=[pen], metrics=[], log_every_n_iterations=10)
    trainer = make_trainer(tmp_path)
    trainer.fit(module, toy())
    logged = trainer.callback_metrics
    # Greg's loss is the penalty times the interval
    assert logged["loss/Greg"].item() == pytest.approx(5 * logged["penalty/CountingPenalty"].item(), rel=1e-5)


def test_optimizers_are_corrected_for_lazy_intervals(tmp_path) -> None:
    adam = functools.partial(torch.optim.Adam, lr=0.01, betas=(0.5, 0.9))
    module = GANModule(architecture=TinyArchitecture(), regularizers=[R1(gamma=1.0, interval=16)],
                       g_optimizer=adam, d_optimizer=adam, metrics=[])
    trainer = make_trainer(tmp_path, max_steps=1)
    trainer.fit(module, toy())
    d_opt, g_opt = trainer.optimizers
    assert d_opt.param_groups[0]["lr"] == pytest.approx(0.01 * 16 / 17)
    assert d_opt.param_groups[0]["betas"] == pytest.approx((0.5 ** (16 / 17), 0.9 ** (16 / 17)))
    assert g_opt.param_groups[0]["lr"] == pytest.approx(0.01)


def test_lazy_r1_callback_goes_through_the_same_schedule(tmp_path) -> None:
    module = GANModule(architecture=TinyArchitecture(), metrics=[])
    trainer = make_trainer(tmp_path, callbacks=[LazyR1(gamma=0.5, interval=4)])
    trainer.fit(module, toy())
    (reg,) = module.regularizers
    assert isinstance(reg, R1) and (reg.gamma, reg.interval) == (0.5, 4)
    assert module.schedule.table(5)[0] == ("Dmain", "Dreg", "Gmain")
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.002 * 4 / 5)
    assert trainer.global_step == 2 * 10 + 3  # Dreg on iterations 0, 4, 8
    assert module.hparams["regularizers"][0]["init_args"] == {"gamma": 0.5, "interval": 4}
    # a conflicting R1 is refused, an identical one (e.g. restored on resume) is not added twice
    clash = GANModule(architecture=TinyArchitecture(), regularizers=[R1(gamma=1.0, interval=16)], metrics=[])
    with pytest.raises(ConfigError, match="conflicts"):
        make_trainer(tmp_path, callbacks=[LazyR1(gamma=0.5, interval=4)]).fit(clash, toy())
    same = GANModule(architecture=TinyArchitecture(), regularizers=[R1(gamma=0.5, interval=4)], metrics=[])
    make_trainer(tmp_path, max_steps=2, callbacks=[LazyR1(gamma=0.5, interval=4)]).fit(same, toy())
    assert len(same.regularizers) == 1


def test_ema_tracks_only_the_generator_and_is_used_for_sampling(tmp_path) -> None:
    module = GANModule(architecture=TinyArchitecture(), ema_kimg=0.05, ema_rampup=None, metrics=[])
    assert not any(name.startswith("discriminator_ema") for name, _ in module.named_modules())
    before = [p.clone() for p in module.generator_ema.parameters()]
    make_trainer(tmp_path).fit(module, toy())
    ema, g = list(module.generator_ema.parameters()), list(module.generator.parameters())
    assert all(not p.requires_grad for p in ema)
    assert any(not torch.equal(a, b) for a, b in zip(ema, g))  # an average, not a copy
    assert any(not torch.equal(a, b) for a, b in zip(ema, before))  # and it moved
    z = torch.randn(4, 2)
    assert torch.equal(module(z), module.generator_ema(z))
    assert torch.equal(module.sample(6, seed=3), module.sample(6, seed=3))


def test_total_kimg_stops_at_the_image_count(tmp_path) -> None:
    module = GANModule(architecture=TinyArchitecture(), total_kimg=0.1, metrics=[])
    make_trainer(tmp_path, max_epochs=100).fit(module, toy())
    assert module.images_seen == 100 and module.iteration == 5


def test_checkpoint_is_plain_data_and_rebuilds_the_module(tmp_path) -> None:
    module = GANModule(architecture=TinyArchitecture(hidden=5), loss="hinge",
                       regularizers=[R1(gamma=2.0, interval=4)], metrics=[])
    trainer = make_trainer(tmp_path)
    trainer.fit(module, toy())
    path = tmp_path / "run.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)  # nothing pickled beyond tensors and containers
    assert ckpt["state_dict"]["_extra_state"] == {"iteration": 10, "images_seen": 200}  # counters with the weights
    assert set(ckpt["lightning_gan"]["rng"]) >= {"torch", "numpy", "python", "latent"}
    assert ckpt["hyper_parameters"]["architecture"]["init_args"]["hidden"] == 5
    again = GANModule.load_from_checkpoint(path)
    assert type(again.loss_fn).__name__ == "HingeLoss"
    assert [type(r).__name__ for r in again.regularizers] == ["R1"] and again.regularizers[0].interval == 4
    for a, b in zip(again.generator_ema.parameters(), module.generator_ema.parameters()):
        assert torch.equal(a, b)
    assert again.iteration == 10


def test_conditional_training_uses_one_hot_labels(tmp_path) -> None:
    class Conditional(Toy2DDataModule):
        num_classes = 25

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.num_classes = 25

    seen = []

    class Spy(AdversarialLoss):
        def generator_loss(self, fake_logits):
            return -fake_logits.mean()

        def discriminator_loss(self, real_logits, fake_logits):
            seen.append(real_logits.shape)
            return fake_logits.mean() - real_logits.mean()

    module = GANModule(architecture=TinyArchitecture(c_dim=25), loss=Spy(), metrics=[])
    make_trainer(tmp_path, max_steps=4).fit(module, Conditional(num_samples=200, batch_size=20))
    assert seen and seen[0] == torch.Size([20])
    samples = module.sample(50, seed=0)
    assert samples.shape == (50, 2)


def test_a_relativistic_loss_gets_the_logits_of_real_training_samples_in_the_generator_phase(tmp_path) -> None:
    torch.manual_seed(0)  # the networks' initialisation: a fake logit equal to a real one by chance is then ruled out
    dm = toy()
    dm.setup("fit")
    checks = []

    class Spy(RelativisticPairingLoss):
        def generator_loss(self, fake_logits, real_logits=None):
            with torch.no_grad():  # D is unchanged within the phase: its logits on every training point
                every_real = module.discriminator(dm.train_dataset.x)
            distance = (real_logits[:, None] - every_real[None, :]).abs().min(1).values
            checks.append((fake_logits.requires_grad, real_logits.requires_grad, real_logits.shape,
                           float(distance.max()), float((real_logits - fake_logits).abs().min())))
            return super().generator_loss(fake_logits, real_logits)

    module = GANModule(architecture=TinyArchitecture(), loss=Spy(), metrics=[])
    make_trainer(tmp_path, max_steps=6).fit(module, dm)
    assert len(checks) == 3  # 3 iterations of Dmain + Gmain
    for fake_grad, real_grad, shape, distance, gap in checks:
        assert fake_grad and not real_grad and shape == torch.Size([20])
        assert distance < 1e-6  # every real logit is D of a training point ...
        assert gap > 1e-6  # ... and none is a fake's


def test_mismatched_data_and_architecture_fail_fast(tmp_path) -> None:
    module = GANModule(architecture=TinyArchitecture(data_dim=3), metrics=[])
    with pytest.raises(ConfigError, match=r"shape \(3,\) but Toy2DDataModule yields \(2,\)"):
        make_trainer(tmp_path).fit(module, toy())
    conditional = GANModule(architecture=TinyArchitecture(c_dim=4), metrics=[])
    with pytest.raises(ConfigError, match="conditional on 4 classes"):
        make_trainer(tmp_path).fit(conditional, toy())


def test_divergence_is_reported_with_phase_and_iteration(tmp_path) -> None:
    class Exploding(AdversarialLoss):
        """NaN generator loss from its ``after``-th call (0-based): iteration ``after`` of the run."""

        def __init__(self, after: int = 0) -> None:
            self.after, self.calls = after, 0

        def generator_loss(self, fake_logits):
            self.calls += 1
            return fake_logits.mean() * (float("nan") if self.calls > self.after else 1.0)

        def discriminator_loss(self, real_logits, fake_logits):
            return fake_logits.mean() - real_logits.mean()

    # NaN on the first iteration: found there (one host sync), and blamed on the loss since the logits are finite
    module = GANModule(architecture=TinyArchitecture(), loss=Exploding(), metrics=[], log_every_n_iterations=3)
    with pytest.raises(FloatingPointError, match=r"Non-finite loss/Gmain at iteration 0 \(0.0 kimg\) although the "
                                                 r"data, fakes and logits are finite; check the loss Exploding"):
        make_trainer(tmp_path).fit(module, toy())
    assert module.iteration == 1
    # NaN from iteration 2: found at the log after iteration 2 (iterations 0-2), the window named
    module = GANModule(architecture=TinyArchitecture(), loss=Exploding(after=2), metrics=[], log_every_n_iterations=3)
    with pytest.raises(FloatingPointError, match=r"Non-finite loss/Gmain.* at an iteration in 1-2 \(0.1 kimg\): "
                                                 r"the game diverged"):
        make_trainer(tmp_path).fit(module, toy())
    assert module.iteration == 3


def test_unsupported_strategy_fails_fast() -> None:
    from types import SimpleNamespace

    from lightning.pytorch.strategies import FSDPStrategy

    module = GANModule(architecture=TinyArchitecture(), metrics=[])
    strategy = FSDPStrategy.__new__(FSDPStrategy)  # the type is what matters; no process group needed
    module._trainer = SimpleNamespace(strategy=strategy, datamodule=None)
    with pytest.raises(ConfigError, match="FSDPStrategy"):
        module.setup("fit")


def test_metrics_default_to_the_datamodule_and_are_logged(tmp_path) -> None:
    module = GANModule(architecture=TinyArchitecture())
    trainer = make_trainer(tmp_path, limit_val_batches=1, check_val_every_n_epoch=1)
    trainer.fit(module, toy())
    assert {"coverage/modes", "coverage/high_quality", "coverage/reverse_kl"} <= set(trainer.callback_metrics)
    assert set(module.final_metrics) == {"coverage/modes", "coverage/high_quality", "coverage/reverse_kl"}
    assert 0 <= module.final_metrics["coverage/modes"] <= 25


def test_losses_follow_the_trainers_logging_interval_into_the_logger(tmp_path) -> None:
    import csv

    from lightning.pytorch.loggers import CSVLogger

    module = GANModule(architecture=TinyArchitecture(), metrics=[])  # log_every_n_iterations=None
    logger = CSVLogger(tmp_path, name="run")
    make_trainer(tmp_path, logger=logger, log_every_n_steps=5, max_epochs=2).fit(module, toy())
    rows = [r for r in csv.DictReader(open(tmp_path / "run" / "version_0" / "metrics.csv")) if r.get("loss/Dmain")]
    # 20 iterations, one averaged row every 5: nothing logged is lost between Lightning's writes
    assert [float(r["progress/kimg"]) for r in rows] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert all(r["loss/Gmain"] and r["logits/real"] for r in rows)
