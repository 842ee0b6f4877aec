"""StabilityController: on the linear game it turns a divergent learning rate into the contraction the closed
form predicts; it leaves a run below the target untouched; its state survives a checkpoint round trip."""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch

from lightning_gan.analysis import convergence_factor, estimate_game, lr_window, simulate_linear_game
from lightning_gan.callbacks import LazyR1, StabilityController
from lightning_gan.callbacks.progress import format_gan_metrics
from lightning_gan.callbacks.stability_controller import adam_preconditioner
from lightning_gan.data.toy2d import Toy2DDataModule
from lightning_gan.errors import ConfigError
from lightning_gan.module import GANModule
from lightning_gan.regularizers import R1

SINGULAR_VALUES = [3.0, 1.0, 0.5, 0.2]


def coupling(n: int = 4) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return u @ torch.diag(torch.tensor(SINGULAR_VALUES, dtype=torch.float64)) @ v.T


class LinearGame:
    """The analysis module's game on parameters: L_G = a_G/2 |x|^2 + x^T S y, L_D = a_D/2 |y|^2 - x^T S y, with
    D's damping a_D optionally from an R1 object's gamma (the "R1 term" |y|^2 / 2 per unit gamma)."""

    def __init__(self, lr: float, alpha_g: float, alpha_d: float | None, r1: R1 | None = None,
                 top_block: bool = False) -> None:
        self.S = coupling()
        gen = torch.Generator().manual_seed(1)
        x, y = torch.randn(4, generator=gen, dtype=torch.float64), torch.randn(4, generator=gen, dtype=torch.float64)
        if top_block:  # start in the plane of the top singular pair, which the iteration never leaves
            U, _, Vh = torch.linalg.svd(self.S)
            x, y = U[:, 0] * 0.8, Vh[0] * 0.6
        self.x, self.y = torch.nn.Parameter(x), torch.nn.Parameter(y)
        self.alpha_g, self.alpha_d, self.r1 = alpha_g, alpha_d, r1
        self.g_opt = torch.optim.SGD([self.x], lr=lr)
        self.d_opt = torch.optim.SGD([self.y], lr=lr)
        self.trainer = SimpleNamespace(optimizers=[self.d_opt, self.g_opt], world_size=1, global_rank=0, strategy=None)
        self.module = SimpleNamespace(kimg=0.0, regularizers=[] if r1 is None else [r1])

    def losses(self) -> tuple[torch.Tensor, torch.Tensor, dict]:
        coupling_term = self.x @ self.S @ self.y
        loss_g = 0.5 * self.alpha_g * self.x @ self.x + coupling_term
        loss_d = -coupling_term + (0.0 if self.alpha_d is None else 0.5 * self.alpha_d * self.y @ self.y)
        terms = {} if self.r1 is None else {"R1": (0.5 * self.y @ self.y, self.r1.gamma)}
        return loss_g, loss_d, terms

    def control(self, ctl: StabilityController) -> dict[str, float]:
        """One estimate by Hessian-vector products (SGD: P = I, read through adam_preconditioner) and the action."""
        loss_g, loss_d, terms = self.losses()
        _, pre_g, decay_g, lr_g = adam_preconditioner(self.g_opt)
        _, pre_d, decay_d, lr_d = adam_preconditioner(self.d_opt)
        est = estimate_game(loss_g, loss_d, [self.x], [self.y], iterations=60, precondition_g=pre_g,
                            precondition_d=pre_d, diagonal_g=decay_g, diagonal_d=decay_d, d_terms=terms)
        return ctl.control(self.trainer, self.module, est, lr_g, lr_d)

    def step(self) -> None:
        loss_g, loss_d, _ = self.losses()
        if self.r1 is not None:
            loss_d = loss_d + 0.5 * self.r1.gamma * self.y @ self.y
        gx = torch.autograd.grad(loss_g, self.x, retain_graph=True)[0]
        gy = torch.autograd.grad(loss_d, self.y)[0]  # simultaneous: both at the same point
        self.x.grad, self.y.grad = gx, gy
        self.g_opt.step()
        self.d_opt.step()

    def sq_norm(self) -> float:
        return float(self.x.detach().square().sum() + self.y.detach().square().sum())

    def contraction(self, steps: int, control_every: int | None = None,
                    ctl: StabilityController | None = None) -> float:
        """The per-step ratio of |x|^2 + |y|^2 over the last half of ``steps`` (the slowest block by then)."""
        ratios = []
        for t in range(steps):
            if ctl is not None and control_every and t % control_every == 0:
                self.control(ctl)
            before = self.sq_norm()
            self.step()
            ratios.append(self.sq_norm() / before)
        tail = ratios[-steps // 2:]
        return float(torch.tensor(tail, dtype=torch.float64).log().mean().exp())


def test_controller_turns_a_divergent_lr_into_the_predicted_contraction() -> None:
    alpha, target = 1.0, 0.98
    eta = 1.5 * 2 * alpha / (alpha ** 2 + 3.0 ** 2)  # 1.5 times the largest stable step
    assert convergence_factor(eta, alpha, 3.0) > 1
    free = LinearGame(eta, alpha, alpha)
    assert free.contraction(200) == pytest.approx(convergence_factor(eta, alpha, 3.0), rel=1e-6)  # diverges

    game = LinearGame(eta, alpha, alpha)
    ctl = StabilityController(target=target)
    values = game.control(ctl)
    controlled = game.g_opt.param_groups[0]["lr"]
    # the closed form: the largest step with r = target
    assert controlled == pytest.approx(lr_window(alpha, 3.0, target)[1], rel=1e-6)
    assert game.d_opt.param_groups[0]["lr"] == controlled
    assert values["r"] == pytest.approx(target, abs=1e-6) and values["r_uncontrolled"] > 1
    assert values["s_max"] == pytest.approx(3.0, abs=1e-6) and values["alpha"] == pytest.approx(alpha, abs=1e-9)
    # re-estimated every 25 steps as training goes on, the factor stays where it is (the game is linear)
    contraction = game.contraction(400, control_every=25, ctl=ctl)
    assert contraction == pytest.approx(target, abs=1e-3)
    # the same as the analysis module's own simulation of the top block at the controlled step
    sim = simulate_linear_game(controlled, alpha, 3.0, 0.0, steps=50, num_chains=4)
    assert contraction == pytest.approx(sim.contraction, abs=1e-3)
    assert ctl.actions == 1 and ctl.scale == pytest.approx(controlled / eta)


def test_r1_mode_raises_gamma_to_the_needed_damping() -> None:
    """D's damping from R1 alone; gamma raised until alpha = (alpha_G + gamma c) / 2 gives r = target. The block's
    dampings then differ (delta != 0), so the top block's measured contraction is its exact
    (1 - eta alpha)^2 + eta^2 (s^2 - delta^2), below r. (Weakly coupled blocks are then damped mostly by the less
    damped player and can contract more slowly than r: the linear model's single alpha does not bound them.)"""
    eta, target, alpha_g = 0.1, 0.95, 0.2
    r1 = R1(gamma=0.2)
    game = LinearGame(eta, alpha_g, None, r1=r1, top_block=True)
    assert convergence_factor(eta, 0.2, 3.0) > 1  # alpha = (0.2 + 0.2) / 2 at the run's own gamma
    ctl = StabilityController(target=target, mode="r1")
    values = game.control(ctl)
    alpha = 0.5 * (alpha_g + r1.gamma)
    assert convergence_factor(eta, alpha, 3.0) == pytest.approx(target, abs=1e-9)
    assert values["r"] == pytest.approx(target, abs=1e-9) and values["gamma"] == r1.gamma == r1.weight
    delta = 0.5 * (alpha_g - r1.gamma)
    exact = (1 - eta * alpha) ** 2 + eta ** 2 * (3.0 ** 2 - delta ** 2)
    contraction = game.contraction(1600)  # long: the block is not normal, single steps' ratios oscillate
    assert contraction == pytest.approx(exact, abs=1e-3) and contraction < target


@pytest.mark.parametrize("mode", ["lr", "r1"])
def test_a_game_below_the_target_is_never_changed(mode: str) -> None:
    alpha, target = 1.0, 0.98
    eta = 0.9 * lr_window(alpha, 3.0, target)[1]
    r1 = R1(gamma=alpha) if mode == "r1" else None
    game = LinearGame(eta, alpha, None if r1 else alpha, r1=r1)
    ctl = StabilityController(target=target, mode=mode)
    for _ in range(3):
        values = game.control(ctl)
        assert values["r"] == values["r_uncontrolled"] < target
    assert game.g_opt.param_groups[0]["lr"] == eta and game.d_opt.param_groups[0]["lr"] == eta  # not even rounded
    assert ctl.actions == 0 and ctl.scale == 1.0
    if r1 is not None:
        assert r1.gamma == alpha


@pytest.mark.parametrize("mode", ["lr", "r1"])
def test_a_small_stable_step_is_left_alone(mode: str) -> None:
    """r above the target only because the step is small (below alpha / (alpha^2 + s^2)): no action in either mode."""
    alpha, target, eta = 1.0, 0.98, 0.005
    assert 1 > convergence_factor(eta, alpha, 3.0) > target and eta < alpha / (alpha ** 2 + 9.0)
    r1 = R1(gamma=alpha) if mode == "r1" else None
    game = LinearGame(eta, alpha, None if r1 else alpha, r1=r1)
    ctl = StabilityController(target=target, mode=mode)
    values = game.control(ctl)
    assert values["r"] == values["r_uncontrolled"] > target
    assert game.g_opt.param_groups[0]["lr"] == eta == game.d_opt.param_groups[0]["lr"]
    assert ctl.actions == 0 and (r1 is None or r1.gamma == alpha)


def test_adam_preconditioner_is_one_over_the_bias_corrected_root() -> None:
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    q = torch.nn.Parameter(torch.tensor([3.0]))
    opt = torch.optim.Adam([{"params": [p]}, {"params": [q], "lr": 0.002}], lr=0.001, betas=(0.0, 0.9), eps=1e-8,
                           weight_decay=0.1)
    assert adam_preconditioner(opt) is None  # no second moment before the first step
    grads = [torch.tensor([0.3, -0.1, 2.0]), torch.tensor([0.5])]
    for _ in range(2):
        p.grad, q.grad = grads[0].clone(), grads[1].clone()
        opt.step()
    params, pre, decay, lr0 = adam_preconditioner(opt)
    assert params == [p, q] and lr0 == 0.001
    # v after two steps of beta2 = 0.9 on (g + wd theta)^2; bias correction 1 - 0.9^2
    state = [opt.state[p]["exp_avg_sq"], opt.state[q]["exp_avg_sq"]]
    want = torch.cat([1 / ((state[0] / 0.19).sqrt() + 1e-8), 2 / ((state[1] / 0.19).sqrt() + 1e-8)])
    torch.testing.assert_close(pre, want)
    torch.testing.assert_close(decay, 0.1 * want)  # L2 weight decay enters through P
    opt_w = torch.optim.AdamW([p], lr=0.001, weight_decay=0.1)
    p.grad = grads[0].clone()
    opt_w.step()
    torch.testing.assert_close(adam_preconditioner(opt_w)[2], torch.full((3,), 0.1))  # decoupled: not through P


def test_bad_settings_are_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="target"):
        StabilityController(target=1.0)
    with pytest.raises(ConfigError, match="mode"):
        StabilityController(mode="gamma")


def test_the_estimate_leaves_buffers_flags_and_the_global_rng_as_they_were() -> None:
    """Batch-norm statistics updated by the estimate's training-mode forwards are restored, and so are the
    requires_grad flags the module sets per phase; the global RNG is not drawn from."""
    from lightning_gan.testing.tiny import TinyArchitecture

    torch.manual_seed(0)
    module = GANModule(architecture=TinyArchitecture(data_dim=2, hidden=8), ema_kimg=None)
    G = module.generator
    G.net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.BatchNorm1d(8), torch.nn.LeakyReLU(0.2),
                                torch.nn.Linear(8, 2))
    g_opt, d_opt = torch.optim.SGD(G.parameters(), lr=0.1), torch.optim.SGD(module.discriminator.parameters(), lr=0.1)
    trainer = SimpleNamespace(optimizers=[d_opt, g_opt], world_size=1, global_rank=0, strategy=None)
    module.discriminator.requires_grad_(False)  # as in G's phase
    before = {k: v.clone() for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}
    real = torch.randn(16, 2)
    rng = torch.get_rng_state()
    est, lr_g, lr_d = StabilityController().estimate(trainer, module, real, None)
    assert est.s_max > 0 and (lr_g, lr_d) == (0.1, 0.1)
    after = module.state_dict()
    assert int(before["generator.net.1.num_batches_tracked"]) == 0
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    assert all(p.requires_grad for p in G.parameters())
    assert not any(p.requires_grad for p in module.discriminator.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


# -- in a Trainer --------------------------------------------------------------------------------------


def build(lr: float, seed: int = 0, sgd: bool = False) -> tuple[GANModule, Toy2DDataModule]:
    pl.seed_everything(seed)
    opt = partial(torch.optim.SGD, lr=lr) if sgd else partial(torch.optim.Adam, lr=lr, betas=(0.0, 0.99))
    module = GANModule(architecture={"class_path": "mlp", "init_args": {"g_hidden": 16, "d_hidden": 16, "g_depth": 2,
                                                                       "d_depth": 2}},
                       g_optimizer=opt, d_optimizer=opt, ema_kimg=0.1, log_every_n_iterations=4)
    return module, Toy2DDataModule(num_samples=400, batch_size=40)  # 10 iterations per epoch


def fit(tmp_path, module, data, epochs: int, callbacks, ckpt_path=None) -> pl.Trainer:
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path,
                         num_sanity_val_steps=0, limit_val_batches=0, deterministic=True,
                         callbacks=[LazyR1(gamma=0.1, interval=4), *callbacks])
    trainer.fit(module, data, ckpt_path=ckpt_path)
    return trainer


def weights(module: GANModule) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}


class Recording(StabilityController):
    """Keeps every estimate's figures."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.history: list[dict[str, float]] = []

    def control(self, *args, **kwargs) -> dict[str, float]:
        self.history.append(super().control(*args, **kwargs))
        return self.history[-1]


def test_a_run_below_the_target_trains_exactly_as_without_it(tmp_path) -> None:
    module, data = build(lr=0.2, sgd=True)
    fit(tmp_path, module, data, 2, [])
    without = weights(module)
    module, data = build(lr=0.2, sgd=True)
    ctl = Recording(target=0.99, every_n_kimg=0.1)
    trainer = fit(tmp_path, module, data, 2, [ctl])
    assert len(ctl.history) == ctl.count >= 8  # estimated every 2-3 iterations
    assert all(h["r_uncontrolled"] < 0.99 for h in ctl.history), ctl.history
    assert ctl.actions == 0 and ctl.scale == 1.0
    for key, value in weights(module).items():
        assert torch.equal(value, without[key]), key
    # logged (the last estimate's figures), r and the factor on the progress bar as "r" and "lr_scale"
    logged = trainer.callback_metrics
    for name in ("s_max", "alpha", "alpha_G", "alpha_D", "r/G", "r/D", "r_uncontrolled", "actions"):
        assert float(logged[f"stability/{name}"]) == pytest.approx(ctl.last[name], rel=1e-6), name
    items = format_gan_metrics(trainer.progress_bar_metrics)
    assert float(items["r"]) == pytest.approx(ctl.last["r"], rel=1e-2) and items["lr_scale"] == "1"


def test_state_survives_a_checkpoint_round_trip(tmp_path) -> None:
    """Adam treated as preconditioned (its second moment in the estimate), which acts on this run."""
    controller = partial(StabilityController, target=0.98, every_n_kimg=0.1, adam="preconditioned")
    module, data = build(lr=0.01)
    straight = controller()
    trainer = fit(tmp_path / "a", module, data, 2, [straight])
    assert straight.actions >= 2 and straight.scale < 1  # it acted, more than once
    want_lrs = [g["lr"] for opt in trainer.optimizers for g in opt.param_groups]
    want = weights(module)

    module, data = build(lr=0.01)
    first = controller()
    trainer = fit(tmp_path / "b", module, data, 1, [first])
    ckpt = tmp_path / "half.ckpt"
    trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=True)["callbacks"]["StabilityController"]
    assert saved["scale"] == first.scale and torch.equal(saved["u"], first.u)

    module, data = build(lr=0.01, seed=5)  # everything must come from the checkpoint
    resumed = controller()
    trainer = fit(tmp_path / "c", module, data, 2, [resumed], ckpt_path=ckpt)
    assert resumed.count == straight.count and resumed.actions == straight.actions
    assert resumed.scale == straight.scale
    assert torch.equal(resumed.u, straight.u)
    assert [g["lr"] for opt in trainer.optimizers for g in opt.param_groups] == want_lrs
    for key, value in weights(module).items():
        torch.testing.assert_close(value, want[key], rtol=0, atol=0, msg=key)
