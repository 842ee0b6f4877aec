"""GANProgressBar: the compact metrics text, its throttling, and a run in a real tiny fit.

The bar's clock (``time.monotonic`` as ``lightning_gan.callbacks.progress`` reads it) is replaced by ``FakeClock`` where
timing matters, so that the figures are exact and a slow or busy machine changes nothing.
"""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import RichProgressBar

import lightning_gan.callbacks.progress as progress
from lightning_gan import GANModule
from lightning_gan.callbacks import GANProgressBar
from lightning_gan.callbacks.progress import format_gan_metrics, format_metrics_line
from lightning_gan.data.toy2d import Toy2DDataModule

LOGGED = {
    "loss/Gmain": 0.71234,
    "loss/Dmain": 1.23456,
    "loss/Dreg": 0.0512,
    "penalty/R1": 0.0032,
    "logits/real": 1.9,
    "logits/fake": -2.05,
    "progress/kimg": 12.0,
    "coverage/modes": 24.0,
    "v_num": 3,
}


class FakeClock:
    """``monotonic()`` returns ``now`` and then advances it by ``step`` seconds: every read is one tick."""

    def __init__(self, now: float = 100.0, step: float = 0.0) -> None:
        self.now, self.step, self.reads = now, step, 0

    def monotonic(self) -> float:
        value = self.now
        self.now += self.step
        self.reads += 1
        return value


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    """The progress bar's clock, and only its own (Lightning's and rich's keep the real one)."""
    fake = FakeClock()
    monkeypatch.setattr(progress, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


def test_format_orders_and_shortens_the_phase_metrics():
    items = format_gan_metrics(LOGGED, kimg=12.34, total_kimg=50)
    assert items == {"kimg": "12.3/50", "D": "1.23", "Dreg": "0.0512", "G": "0.712", "R1": "0.0032",
                     "D(x)": "1.9", "D(G(z))": "-2.05", "coverage/modes": "24"}
    assert format_metrics_line(items) == (
        "kimg: 12.3/50 · D: 1.23 · Dreg: 0.0512 · G: 0.712 · R1: 0.0032 · D(x): 1.9 · D(G(z)): -2.05 · coverage/modes: 24"
    )


def test_format_falls_back_to_the_logged_kimg_and_handles_odd_values():
    assert format_gan_metrics({"progress/kimg": 2.0, "loss/Gmain": float("nan"), "loss/Dmain": 1234.5}) == {
        "kimg": "2.0", "D": "1.23e+03", "G": "nan"}
    assert format_gan_metrics({}) == {}


def test_get_metrics_reads_kimg_and_total_from_the_module():
    bar = GANProgressBar()
    trainer = SimpleNamespace(loggers=[], progress_bar_metrics={"loss/Dmain": 0.5, "progress/kimg": 1.0})
    module = SimpleNamespace(kimg=1.25, total_kimg=None)
    assert bar.get_metrics(trainer, module) == {"kimg": "1.2", "D": "0.5"}  # the module's kimg is fresher


def test_updates_are_throttled_but_the_last_batch_always_lands(monkeypatch, clock):
    seen = []
    monkeypatch.setattr(RichProgressBar, "on_train_batch_end", lambda self, t, m, o, b, i: seen.append(i))
    monkeypatch.setattr(GANProgressBar, "total_train_batches", property(lambda self: 5))
    bar = GANProgressBar(refresh_rate=1)  # at most one update per second
    for i, now in enumerate([100.0, 100.5, 101.0, 101.2, 101.3]):
        clock.now = now
        bar.on_train_batch_end(None, None, None, None, i)  # type: ignore[arg-type]
    # 100.0 lands (the first), 100.5 is within the second, 101.0 is a second later, 101.2 is not; the last always
    assert seen == [0, 2, 4] and clock.reads == 5


def test_runs_in_a_tiny_fit():
    torch.manual_seed(0)
    module = GANModule(architecture={"class_path": "mlp", "init_args": {"g_hidden": 8, "d_hidden": 8}},
                       metrics=[], total_kimg=0.6, log_every_n_iterations=1)
    bar = GANProgressBar()
    trainer = Trainer(max_epochs=1, logger=False, accelerator="cpu", enable_model_summary=False,
                      enable_checkpointing=False, callbacks=[bar], num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(module, Toy2DDataModule(num_samples=1000, batch_size=200))
    items = bar.get_metrics(trainer, module)
    assert items["kimg"] == "0.6/0.6" and {"D", "G", "D(x)", "D(G(z))"} <= set(items)


def test_prints_plain_progress_lines_when_the_console_is_not_a_terminal(clock):
    clock.step = 1.0  # each read of the bar's clock is one second later: 200 images between two lines, 200 img/s

    def fit(log_every_s: float = 0.0, **console_kwargs) -> str:
        torch.manual_seed(0)
        module = GANModule(architecture={"class_path": "mlp", "init_args": {"g_hidden": 8, "d_hidden": 8}},
                           metrics=[], total_kimg=0.6, log_every_n_iterations=1)
        out = io.StringIO()
        bar = GANProgressBar(log_every_s=log_every_s, console_kwargs={"file": out, **console_kwargs})
        trainer = Trainer(max_epochs=1, logger=False, accelerator="cpu", enable_model_summary=False,
                          enable_checkpointing=False, callbacks=[bar], num_sanity_val_steps=0, limit_val_batches=0)
        trainer.fit(module, Toy2DDataModule(num_samples=1000, batch_size=200))
        return out.getvalue()

    output = fit()
    lines = [line for line in output.splitlines() if line.startswith("kimg: ")]
    # one line per iteration (3 of 200 images), after the iteration's images are counted; none repeated at the end
    assert [line.split(" · ")[0] for line in lines] == ["kimg: 0.2/0.6", "kimg: 0.4/0.6", "kimg: 0.6/0.6"]
    # rich's end-of-run rendering of the bar is left out: the output ends with the last plain line
    assert output.rstrip("\n").splitlines()[-1] == lines[-1] and "Epoch" not in output
    # the clock is read at the start and after every iteration: 200 images per second, 400, 200 and 0 images left
    assert [line.split(" · ")[1:3] for line in lines] == [
        ["200 img/s", "eta 0m02s"], ["200 img/s", "eta 0m01s"], ["200 img/s", "eta 0m00s"]]
    assert all(" · D: " in line and " · G: " in line for line in lines[1:])
    # a run shorter than the interval still ends with one line: the final count
    single = fit(log_every_s=3600.0).splitlines()
    assert len(single) == 1 and single[0].startswith("kimg: 0.6/0.6 · ") and " · eta 0m00s · D: " in single[0]
    # on a terminal the live bar shows the same: no plain lines
    assert not [line for line in fit(force_terminal=True).splitlines() if line.startswith("kimg: ")]


def test_rejects_a_negative_log_interval():
    with pytest.raises(ValueError, match="log_every_s"):
        GANProgressBar(log_every_s=-1.0)


def test_format_puts_a_growing_runs_resolution_and_alpha_after_kimg():
    items = format_gan_metrics({**LOGGED, "progressive/resolution": 32.0, "progressive/alpha": 0.4567},
                               kimg=12.34, total_kimg=50)
    assert format_metrics_line(items) == ("kimg: 12.3/50 · res: 32 · alpha: 0.46 · D: 1.23 · Dreg: 0.0512 · "
                                          "G: 0.712 · R1: 0.0032 · D(x): 1.9 · D(G(z)): -2.05 · coverage/modes: 24")


def test_a_growing_runs_plain_lines_show_the_stage_after_each_iteration(clock):
    from lightning_gan.callbacks import ProgressiveGrowing
    from lightning_gan.data.shapes import ShapesDataModule
    from lightning_gan.testing.tiny import TinyGrowableArchitecture

    clock.step = 1.0
    torch.manual_seed(0)
    # 8 images per iteration; 8 px fades in over images 16-48: alpha = (images - 16) / 32
    schedule = [{"resolution": 4, "fade_kimg": 0, "stable_kimg": 0.016},
                {"resolution": 8, "fade_kimg": 0.032, "stable_kimg": 0.016}]
    module = GANModule(architecture=TinyGrowableArchitecture(resolutions=(4, 8)), metrics=[], total_kimg=0.064,
                       log_every_n_iterations=4)
    out = io.StringIO()
    bar = GANProgressBar(log_every_s=0.0, console_kwargs={"file": out})
    trainer = Trainer(max_epochs=-1, logger=False, accelerator="cpu", enable_model_summary=False,
                      enable_checkpointing=False, callbacks=[bar, ProgressiveGrowing(schedule=schedule)],
                      num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(module, ShapesDataModule(resolution=8, channels=1, num_samples=32, batch_size=8, seed=0))
    lines = [line.split(" · ") for line in out.getvalue().splitlines() if line.startswith("kimg: ")]
    assert len(lines) == 8
    stages = [(parts[3], parts[4]) for parts in lines]  # after kimg, img/s and eta; current on every line
    expected = [(4, 1.0)] + [(8, min(1.0, (8 * i - 16) / 32)) for i in range(2, 9)]
    assert stages == [(f"res: {r}", f"alpha: {a:.2f}") for r, a in expected]
    assert stages[2:4] == [("res: 8", "alpha: 0.25"), ("res: 8", "alpha: 0.50")]  # mid-fade
