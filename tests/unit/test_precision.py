"""Per-network dynamic loss scaling: the scaler's policy, the fp16-dynamic plugin inside GANModule, R1 under it,
LossScaleMonitor, and resume."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.precision import MixedPrecision

from lightning_gan import registry
from lightning_gan.callbacks import LossScaleMonitor
from lightning_gan.data.toy2d import Toy2DDataModule
from lightning_gan.errors import ConfigError
from lightning_gan.module import GANModule
from lightning_gan.precision import BF16MixedPrecision, DynamicLossScaler, FP16DynamicPrecision, FP32Precision
from lightning_gan.precision.scaler import FP16_MIN_NORMAL, gradient_counts
from lightning_gan.regularizers import R1
from lightning_gan.testing import TinyArchitecture

# -- the scaler on its own ---------------------------------------------------------------------------


def test_gradient_counts_known_answer() -> None:
    g1 = torch.tensor([math.inf, 1e-6, 1.0, 0.0, -3e-5, FP16_MIN_NORMAL])
    g2 = torch.tensor([[math.nan, -2.0], [0.0, -1e-9]])
    # non-finite: inf, nan; tiny (0 < |g| < 2**-14): 1e-6, -3e-5, -1e-9; non-zero finite: those 3 + 1, 2**-14, -2
    assert gradient_counts([g1, g2]).tolist() == [2, 3, 6]
    assert gradient_counts([]).tolist() == [0, 0, 0]


def test_unscale_divides_exactly_and_overflow_skips_and_backs_off_once_per_iteration() -> None:
    s = DynamicLossScaler(init_scale=1024.0, growth_interval=100)
    g = torch.tensor([3.0, -1024.0, 0.5])
    assert s.unscale_([g]) is True
    assert g.tolist() == [3.0 / 1024, -1.0, 0.5 / 1024]
    bad = torch.tensor([1.0, math.inf])
    assert s.unscale_([bad]) is False and bad.tolist() == [1.0, math.inf]  # left alone: the step is skipped
    assert s.unscale_([torch.tensor([math.nan])]) is False
    assert s.scale == 1024.0  # nothing changes before the iteration ends
    assert s.update() == "overflow"
    assert s.scale == 512.0  # halved once although two steps of the iteration overflowed
    assert (s.steps, s.skipped, s.overflows, s.iterations) == (3, 2, 1, 1)
    assert s.update() is None and s.iterations == 1  # no step since: no update


def test_underflow_rule_grows_and_respects_the_overflow_ceiling() -> None:
    s = DynamicLossScaler(init_scale=8.0, growth_interval=1000, underflow_threshold=0.25)
    # 1 of 4 non-zero scaled entries below 2**-14: a share of 0.25 is not above the threshold
    s.unscale_([torch.tensor([1e-6, 1.0, 2.0, 3.0, 0.0])])
    assert s.underflow_fraction == pytest.approx(0.25)
    assert s.update() == "healthy" and s.scale == 8.0
    s.unscale_([torch.tensor([1e-6, 1e-7, 1.0, 0.0])])  # 2 of 3
    assert s.update() == "underflow" and s.scale == 16.0 and s.last_underflow == pytest.approx(2 / 3)
    s.unscale_([torch.tensor([math.inf])])
    assert s.update() == "overflow" and s.scale == 8.0 and s.ceiling == 16.0
    for _ in range(3):  # tiny gradients again, but 16 overflowed: the rule may not go back there
        s.unscale_([torch.tensor([1e-7, 1e-7, 1.0])])
        assert s.update() == "healthy" and s.scale == 8.0
    assert s.underflow_growths == 1


def test_growth_interval_and_bounds() -> None:
    s = DynamicLossScaler(init_scale=4.0, growth_interval=3, underflow_threshold=None, max_scale=16.0, min_scale=2.0)
    events = []
    for _ in range(9):
        s.unscale_([torch.ones(2)])
        events.append(s.update())
    assert events == ["healthy", "healthy", "interval", "healthy", "healthy", "interval", "healthy", "healthy", "healthy"]
    assert s.scale == 16.0 and s.interval_growths == 2  # capped at max_scale
    for _ in range(5):
        s.unscale_([torch.tensor([math.inf])])
        s.update()
    assert s.scale == 2.0 and s.at_floor  # floored at min_scale
    with pytest.raises(ValueError, match="init_scale"):
        DynamicLossScaler(init_scale=0.5, min_scale=1.0)
    with pytest.raises(ValueError, match="backoff_factor"):
        DynamicLossScaler(backoff_factor=1.0)


def test_distributed_reduction_decides_for_all() -> None:
    """A healthy step on this rank is skipped when the summed counts of all ranks hold an inf."""
    s = DynamicLossScaler(init_scale=2.0)
    g = torch.ones(3)
    other_rank = torch.tensor([1, 0, 2])  # the other rank saw one non-finite entry
    assert s.unscale_([g], reduce=lambda counts: counts + other_rank) is False
    assert g.tolist() == [1.0, 1.0, 1.0] and s.update() == "overflow" and s.scale == 1.0


def test_state_roundtrip() -> None:
    s = DynamicLossScaler(init_scale=64.0, growth_interval=2)
    for _ in range(3):
        s.unscale_([torch.ones(1)])
        s.update()
    t = DynamicLossScaler()
    t.load_state_dict(s.state_dict())
    assert t.state_dict() == s.state_dict() and t.scale == 128.0 and t.growth_tracker == 1
    with pytest.raises(KeyError, match="scale"):
        t.load_state_dict({})


# -- the plugins inside GANModule --------------------------------------------------------------------------


def test_plugins_are_registered() -> None:
    reg = registry.get_registry("precision")
    assert reg.load("fp16-dynamic") is FP16DynamicPrecision
    assert reg.load("bf16-mixed") is BF16MixedPrecision
    assert reg.load("fp32") is FP32Precision


def fit(tmp_path, precision, iterations: int, callbacks=(), module=None, ckpt_path=None, **module_kwargs) -> GANModule:
    pl.seed_everything(0)
    module = module or GANModule(architecture=TinyArchitecture(), metrics=[], ema_kimg=None, **module_kwargs)
    trainer = pl.Trainer(max_steps=-1, max_epochs=-1, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=tmp_path,
                         plugins=[precision], callbacks=list(callbacks))
    module.total_kimg = iterations * 20 / 1000
    trainer.fit(module, Toy2DDataModule(num_samples=400, batch_size=20), ckpt_path=ckpt_path)
    module._test_trainer = trainer
    return module


class GradientTamper(Callback):
    """Right after a backward of ``network`` on the given iterations, multiplies its gradients by ``factor``
    (inf makes an overflow, 1e-8 tiny gradients); records the network's weights around those iterations."""

    def __init__(self, network: str, iterations, factor: float) -> None:
        self.network, self.iterations, self.factor = network, set(iterations), factor
        self.before: dict[int, dict[str, torch.Tensor]] = {}
        self.after: dict[int, dict[str, torch.Tensor]] = {}

    @staticmethod
    def weights(module) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if pl_module.iteration in self.iterations:
            self.before[pl_module.iteration] = self.weights(pl_module)

    def on_after_backward(self, trainer, pl_module) -> None:
        if pl_module.iteration in self.iterations and trainer.precision_plugin._active == self.network:
            net = getattr(pl_module, self.network)
            for p in net.parameters():
                if p.grad is not None:
                    p.grad.mul_(self.factor)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.iteration - 1 in self.iterations:
            self.after[pl_module.iteration - 1] = self.weights(pl_module)


def test_inf_in_d_gradients_skips_only_ds_step_and_halves_only_ds_scale(tmp_path) -> None:
    precision = FP16DynamicPrecision(init_scale=2.0 ** 10, growth_interval=1000, underflow_threshold=None)
    tamper = GradientTamper("discriminator", [3], math.inf)
    fit(tmp_path, precision, 6, [tamper])
    before, after = tamper.before[3], tamper.after[3]
    d_keys = [k for k in before if k.startswith("discriminator.")]
    g_keys = [k for k in before if k.startswith("generator.")]
    assert all(torch.equal(before[k], after[k]) for k in d_keys)  # D's step was skipped
    assert any(not torch.equal(before[k], after[k]) for k in g_keys)  # G stepped
    d, g = precision.scalers["discriminator"], precision.scalers["generator"]
    assert (d.scale, d.skipped, d.overflows, d.steps) == (2.0 ** 9, 1, 1, 6)
    assert (g.scale, g.skipped, g.overflows, g.steps) == (2.0 ** 10, 0, 0, 6)


def test_tiny_gradients_raise_the_scale_by_the_underflow_rule(tmp_path) -> None:
    precision = FP16DynamicPrecision(init_scale=2.0, growth_interval=1000, underflow_threshold=0.5)
    fit(tmp_path, precision, 5, [GradientTamper("generator", [0, 1, 2], 1e-9)])
    g, d = precision.scalers["generator"], precision.scalers["discriminator"]
    assert g.scale == 2.0 * 2 ** 3 and g.underflow_growths == 3  # once per tampered iteration
    assert d.scale == 2.0 and d.underflow_growths == 0


def test_growth_interval_raises_both_scales_within_bounds(tmp_path) -> None:
    precision = FP16DynamicPrecision(init_scale=2.0 ** 4, growth_interval=2, underflow_threshold=None,
                                     max_scale=2.0 ** 6)
    fit(tmp_path, precision, 7, regularizers=[R1(gamma=0.1, interval=2)])  # D takes 2 steps every 2nd iteration
    for name in ("discriminator", "generator"):
        s = precision.scalers[name]
        assert s.iterations == 7 and s.interval_growths == 2 and s.scale == 2.0 ** 6  # 16 -> 32 -> 64 (cap)
    assert precision.scalers["discriminator"].steps == 7 + 4 and precision.scalers["generator"].steps == 7


def test_r1_under_fp16_dynamic_matches_fp32() -> None:
    """R1 runs its input gradient in float32 and only the outer backward is scaled: value and gradients
    after unscaling equal float32's."""
    torch.manual_seed(0)
    disc = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.LeakyReLU(0.2), torch.nn.Flatten(),
                               torch.nn.Linear(8 * 8 * 8, 1))

    class D(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.c_dim = disc, 0

        def forward(self, x, c=None):
            return self.net(x).squeeze(1)

    d = D()
    real = torch.randn(6, 3, 8, 8)
    from lightning_gan.interfaces import PenaltyInputs

    inputs = PenaltyInputs(generator=None, discriminator=d, real=real, real_c=None, latent_sampler=None)
    r1 = R1(gamma=10.0)
    value32 = r1(inputs)
    grads32 = torch.autograd.grad(value32, list(d.parameters()), allow_unused=True)  # the last bias: unused

    precision = FP16DynamicPrecision(init_scale=2.0 ** 16, device="cpu")
    with precision.forward_context(), precision.network("discriminator"):
        value16 = r1(inputs)
        assert torch.is_autocast_enabled("cpu")
        scaled = precision.scalers["discriminator"].scale_loss(value16)
    d.zero_grad()
    scaled.backward()
    assert [p.grad is None for p in d.parameters()] == [g is None for g in grads32] == [False, False, False, True]
    grads = [p.grad for p in d.parameters() if p.grad is not None]
    assert precision.scalers["discriminator"].unscale_(grads)
    torch.testing.assert_close(value16, value32, rtol=1e-6, atol=0)
    for a, b in zip(grads, [g for g in grads32 if g is not None]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_lightnings_shared_fp16_scaler_is_refused(tmp_path) -> None:
    module = GANModule(architecture=TinyArchitecture(), metrics=[])
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_checkpointing=False, plugins=[MixedPrecision("16-mixed", "cpu")])
    with pytest.raises(ConfigError, match="fp16-dynamic"):
        trainer.fit(module, Toy2DDataModule(num_samples=40, batch_size=20))


def test_backward_outside_a_network_phase_is_explained() -> None:
    precision = FP16DynamicPrecision()
    with pytest.raises(RuntimeError, match="which network"):
        precision.pre_backward(torch.ones(()), None)
    with pytest.raises(ValueError, match="Unknown network"):
        with precision.network("critic"):
            pass


def test_bf16_mixed_trains_under_cpu_autocast(tmp_path) -> None:
    precision = BF16MixedPrecision()
    module = fit(tmp_path, precision, 3)
    assert precision.device == "cpu" and module.iteration == 3


# -- the monitor and resume -------------------------------------------------------------------------------


def test_monitor_logs_warns_and_resumes_with_the_same_scales(tmp_path) -> None:
    def run(iterations, ckpt_path=None, tamper_at=()):
        precision = FP16DynamicPrecision(init_scale=2.0 ** 8, growth_interval=3, underflow_threshold=None)
        monitor = LossScaleMonitor(every_n_iterations=2, window=4, max_skip_rate=0.2, summary=False)
        callbacks = [monitor, GradientTamper("discriminator", tamper_at, math.inf)]
        module = fit(tmp_path, precision, iterations, callbacks, ckpt_path=ckpt_path)
        return module, precision, monitor

    with pytest.warns(UserWarning, match=r"D skipped 50.0% of its optimizer steps over the last 4 iterations"):
        module, full, full_monitor = run(10, tamper_at=[2, 3])
    logged = module._test_trainer.callback_metrics
    assert logged["loss_scale/D/scale"].item() == full.scalers["discriminator"].scale
    assert logged["loss_scale/D/skipped"].item() == 2 and logged["loss_scale/G/skipped"].item() == 0
    # D: 256, healthy 0 1 -> tracker 2; overflow 2 -> 128, overflow 3 -> 64; healthy 4 5 6 -> 128; 7 8 9 -> 256
    assert full.scalers["discriminator"].scale == 256.0 and full.scalers["generator"].scale == 256.0 * 2 ** 3

    module, half, half_monitor = run(6, tamper_at=[2, 3])
    ckpt = tmp_path / "half.ckpt"
    module._test_trainer.save_checkpoint(ckpt)
    saved_scales = {k: s.state_dict() for k, s in half.scalers.items()}
    saved_monitor = half_monitor.state_dict()

    class Probe(Callback):
        def on_train_start(self, trainer, pl_module):
            self.scales = {k: s.state_dict() for k, s in trainer.precision_plugin.scalers.items()}
            self.monitor = monitor_state()

    probe = Probe()
    precision = FP16DynamicPrecision(init_scale=2.0 ** 8, growth_interval=3, underflow_threshold=None)
    monitor = LossScaleMonitor(every_n_iterations=2, window=4, max_skip_rate=0.2, summary=False)
    monitor_state = monitor.state_dict
    resumed = fit(tmp_path, precision, 10, [monitor, probe], ckpt_path=ckpt)
    assert probe.scales == saved_scales and probe.monitor == saved_monitor  # restored before training goes on
    assert resumed.iteration == 10
    for name in ("discriminator", "generator"):
        assert precision.scalers[name].state_dict() == full.scalers[name].state_dict()
    assert monitor.state_dict() == full_monitor.state_dict()


def test_monitor_warns_once_when_a_scale_sits_at_its_floor() -> None:
    scaler = DynamicLossScaler(init_scale=2.0, min_scale=1.0)
    monitor = LossScaleMonitor(every_n_iterations=1, max_skip_rate=1.0)
    for it in range(1, 4):
        scaler.unscale_([torch.tensor([math.inf])])
        scaler.update()
        if it == 1:
            values = monitor.observe(it, {"generator": scaler})
            assert values["loss_scale/G/scale"] == 1.0 and values["loss_scale/G/overflows"] == 1.0
        elif it == 2:
            with pytest.warns(UserWarning, match=r"G's loss scale sits at its floor 1 since iteration 1 \(now 2, 2 "
                                                 r"overflows, 2 of 2 steps skipped\)"):
                monitor.observe(it, {"generator": scaler})
        else:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("error")
                monitor.observe(it, {"generator": scaler})  # once only


def test_fused_adam_steps_like_plain_adam_on_the_unscaled_gradients() -> None:
    """The plugin unscales before step() and passes no grad_scale, so a fused optimizer needs nothing special."""
    torch.manual_seed(0)
    a, b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    opts = [torch.optim.Adam(a.parameters(), lr=0.1), torch.optim.Adam(b.parameters(), lr=0.1, fused=True)]
    x = torch.randn(8, 4)
    for model, opt in zip((a, b), opts):
        precision = FP16DynamicPrecision(init_scale=2.0 ** 12)
        precision.connect(model, [opt], [])
        precision._after_closure = lambda module, optimizer: None  # no Trainer here to call hooks on
        with precision.network("generator"):
            (model(x).square().mean() * precision.scalers["generator"].scale).backward()
            precision.optimizer_step(opt, model=None, closure=lambda: None)
        assert precision.scalers["generator"].steps == 1 and precision.scalers["generator"].skipped == 0
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)

