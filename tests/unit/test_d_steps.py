"""Several discriminator steps per iteration: real batches per D step, counters, optimizer steps, fp16 scales."""

from __future__ import annotations

import functools
import math

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch import Callback
from torch.utils.data import DataLoader, TensorDataset

from conftest import make_trainer  # tests/conftest.py
from lightning_gan.data.toy2d import Toy2DDataModule
from lightning_gan.errors import ConfigError
from lightning_gan.interfaces import PenaltyInputs, Regularizer
from lightning_gan.module import GANModule, NonFiniteError
from lightning_gan.precision import FP16DynamicPrecision
from lightning_gan.regularizers import R1
from lightning_gan.testing import TinyArchitecture


class RecordReal(Regularizer):
    """A zero penalty on D that records the real batch of every phase it runs in (``tag`` names it)."""

    network = "discriminator"

    def __init__(self, *, tag: str, log: list, interval: int = 1) -> None:
        super().__init__(weight=0.0, interval=interval)
        self.tag, self.log = tag, log
        self.conditions: list[torch.Tensor | None] = []

    def forward(self, inputs: PenaltyInputs) -> torch.Tensor:
        self.log.append((self.tag, inputs.real.detach().clone()))
        self.conditions.append(inputs.real_c)
        return 0.0 * sum(p.sum() for p in inputs.discriminator.parameters())


class RecordBatches(Callback):
    def __init__(self) -> None:
        self.batches: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches.append(batch[0].detach().clone())


def adam_steps(optimizer: torch.optim.Optimizer) -> int:
    """Optimizer steps taken, read from Adam's per-parameter step counters (R1's gradient misses D's last bias,
    which Adam then leaves out of the lazy steps: the largest counter counts every step)."""
    return max(int(state["step"]) for state in optimizer.state.values())


def test_each_d_step_sees_its_own_chunk_and_dreg_the_last(tmp_path) -> None:
    """d_steps=2, batch 20: D step i sees rows 10i..10i+9 of the loader's batch; the lazy Dreg (every 4
    iterations) runs once, after the last D step, on the last chunk."""
    log: list = []
    module = GANModule(architecture=TinyArchitecture(), metrics=[], ema_kimg=None, d_steps=2,
                       regularizers=[RecordReal(tag="main", log=log), RecordReal(tag="reg", log=log, interval=4)])
    batches = RecordBatches()
    make_trainer(tmp_path, callbacks=[batches]).fit(module, Toy2DDataModule(num_samples=200, batch_size=20))
    assert module.iteration == 10
    per_iteration = iter(log)
    for i, batch in enumerate(batches.batches):
        expected = [("main", batch[:10]), ("main", batch[10:])] + ([("reg", batch[10:])] if i % 4 == 0 else [])
        for tag, real in expected:
            got_tag, got = next(per_iteration)
            assert got_tag == tag and torch.equal(got, real), (i, tag)
    assert next(per_iteration, None) is None


@pytest.mark.parametrize("d_steps, interval", [(1, 4), (2, 4), (5, 1), (5, 16)])
def test_fit_counts_images_and_optimizer_steps_by_the_formula(tmp_path, d_steps: int, interval: int) -> None:
    """Over T iterations of batch B: kimg counts T B images (every real image D saw); D's optimizer takes
    n T + ceil(T / k) steps, G's T; D's Adam is corrected by n k / (n k + 1)."""
    adam = functools.partial(torch.optim.Adam, lr=0.01, betas=(0.5, 0.9))
    module = GANModule(architecture=TinyArchitecture(), metrics=[], d_steps=d_steps, d_optimizer=adam,
                       g_optimizer=adam, regularizers=[R1(gamma=0.1, interval=interval)])
    trainer = make_trainer(tmp_path)
    iterations, batch = 10, 20
    trainer.fit(module, Toy2DDataModule(num_samples=iterations * batch, batch_size=batch))
    d_opt, g_opt = trainer.optimizers
    lazy = math.ceil(iterations / interval) if interval > 1 else 0
    assert module.iteration == iterations
    assert module.images_seen == iterations * batch and module.kimg == pytest.approx(iterations * batch / 1000)
    assert adam_steps(d_opt) == d_steps * iterations + lazy
    assert adam_steps(g_opt) == iterations
    assert trainer.global_step == (d_steps + 1) * iterations + lazy
    ratio = d_steps * interval / (d_steps * interval + 1) if interval > 1 else 1.0
    assert d_opt.param_groups[0]["lr"] == pytest.approx(0.01 * ratio)
    assert d_opt.param_groups[0]["betas"] == pytest.approx((0.5 ** ratio, 0.9 ** ratio))
    assert g_opt.param_groups[0]["lr"] == pytest.approx(0.01)
    assert module.hparams["d_steps"] == d_steps


def test_d_steps_one_trains_exactly_as_before(tmp_path) -> None:
    """The default splits nothing: the same weights as a module built without the argument."""
    weights = []
    for kwargs in ({}, {"d_steps": 1}):
        pl.seed_everything(3)
        module = GANModule(architecture=TinyArchitecture(), metrics=[], regularizers=[R1(gamma=0.1, interval=4)],
                           **kwargs)
        make_trainer(tmp_path).fit(module, Toy2DDataModule(num_samples=100, batch_size=20))
        weights.append({k: v.clone() for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)})
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_conditions_are_split_with_their_images(tmp_path) -> None:
    """A conditional pair: each D step's conditions are the one-hot labels of its own images."""
    images, labels = torch.randn(40, 2), torch.arange(40) % 3
    rec = RecordReal(tag="main", log=[])
    module = GANModule(architecture=TinyArchitecture(c_dim=3), metrics=[], d_steps=2, regularizers=[rec])
    make_trainer(tmp_path).fit(module, DataLoader(TensorDataset(images, labels), batch_size=20))
    assert module.iteration == 2 and len(rec.log) == 4
    for (_, real), c in zip(rec.log, rec.conditions):
        rows = [int(torch.nonzero((images == x).all(dim=1))[0]) for x in real]
        assert real.shape == (10, 2)
        assert torch.equal(c, torch.nn.functional.one_hot(labels[rows], 3).float())


def test_a_batch_size_that_does_not_split_is_refused_before_training(tmp_path) -> None:
    module = GANModule(architecture=TinyArchitecture(), metrics=[], d_steps=4)
    with pytest.raises(ConfigError, match=r"^--data.batch_size=30 cannot be split into --model.d_steps=4 equal "
                                          r"discriminator steps .* a multiple of 4, e.g. 32") as info:
        make_trainer(tmp_path).fit(module, Toy2DDataModule(num_samples=120, batch_size=30))
    assert "\n" not in str(info.value) and module.iteration == 0


def test_an_uneven_batch_of_a_plain_loader_is_refused_in_one_line(tmp_path) -> None:
    """A loader without a datamodule's batch_size (here 3 images in the last batch) fails at that batch."""
    module = GANModule(architecture=TinyArchitecture(), metrics=[], d_steps=2)
    loader = DataLoader(TensorDataset(torch.randn(23, 2)), batch_size=10)
    with pytest.raises(ConfigError, match=r"^A training batch of 3 real images cannot be split into "
                                          r"--model.d_steps=2 equal discriminator steps"):
        make_trainer(tmp_path).fit(module, loader)
    assert module.iteration == 2


def test_first_iteration_checks_every_d_steps_batch_with_one_host_sync(tmp_path, monkeypatch) -> None:
    """NaN only in the first D step's chunk of the first batch: the first-iteration check (run once) names the data."""
    checks: list[bool] = []
    original = GANModule._check_finite

    def spy(self, *, first: bool = False) -> None:
        checks.append(first)
        original(self, first=first)

    monkeypatch.setattr(GANModule, "_check_finite", spy)
    images = torch.randn(40, 2)
    images[3] = float("nan")  # row 3: the first of the two D steps of iteration 0
    module = GANModule(architecture=TinyArchitecture(), metrics=[], d_steps=2)
    with pytest.raises(NonFiniteError, match=r"^The real batch holds NaN/inf at iteration 0"):
        make_trainer(tmp_path).fit(module, DataLoader(TensorDataset(images), batch_size=20))
    assert checks == [True] and module.iteration == 1


def fp16_fit(tmp_path, precision, iterations: int, callbacks=(), **module_kwargs) -> GANModule:
    pl.seed_everything(0)
    module = GANModule(architecture=TinyArchitecture(), metrics=[], ema_kimg=None, total_kimg=iterations * 20 / 1000,
                       **module_kwargs)
    trainer = make_trainer(tmp_path, max_epochs=-1, plugins=[precision], callbacks=list(callbacks))
    trainer.fit(module, Toy2DDataModule(num_samples=400, batch_size=20))
    return module


def test_fp16_dynamic_updates_each_scale_once_per_iteration_with_several_d_steps(tmp_path) -> None:
    """7 iterations, 2 D steps + R1 every 2: D takes 7*2 + 4 steps, but both scales grow by iterations
    (growth_interval 2: x2 after iterations 2, 4, 6), not by optimizer steps."""
    precision = FP16DynamicPrecision(init_scale=2.0 ** 4, growth_interval=2, underflow_threshold=None)
    fp16_fit(tmp_path, precision, 7, d_steps=2, regularizers=[R1(gamma=0.1, interval=2)])
    d, g = precision.scalers["discriminator"], precision.scalers["generator"]
    assert d.steps == 7 * 2 + 4 and g.steps == 7
    for s in (d, g):
        assert s.iterations == 7 and s.interval_growths == 3 and s.scale == 2.0 ** 4 * 2 ** 3


class InfInFirstDStep(Callback):
    """Makes D's gradients inf after the first D backward of one iteration (the second D step stays finite)."""

    def __init__(self, iteration: int) -> None:
        self.iteration, self.d_backwards = iteration, 0

    def on_after_backward(self, trainer, pl_module) -> None:
        if pl_module.iteration == self.iteration and trainer.precision_plugin._active == "discriminator":
            self.d_backwards += 1
            if self.d_backwards == 1:
                for p in pl_module.discriminator.parameters():
                    if p.grad is not None:
                        p.grad.fill_(math.inf)


def test_fp16_dynamic_overflow_in_one_d_step_skips_that_step_and_backs_off_once(tmp_path) -> None:
    precision = FP16DynamicPrecision(init_scale=2.0 ** 10, growth_interval=1000, underflow_threshold=None)
    fp16_fit(tmp_path, precision, 6, [InfInFirstDStep(3)], d_steps=2)
    d, g = precision.scalers["discriminator"], precision.scalers["generator"]
    assert (d.steps, d.skipped, d.overflows, d.scale) == (12, 1, 1, 2.0 ** 9)
    assert (g.steps, g.skipped, g.overflows, g.scale) == (6, 0, 0, 2.0 ** 10)
