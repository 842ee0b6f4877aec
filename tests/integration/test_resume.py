"""Resuming from a checkpoint continues the run: exact at an epoch boundary, counters right mid-epoch."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from lightning_gan.callbacks import LazyR1, SampleGrid
from lightning_gan.data.toy2d import Toy2DDataModule
from lightning_gan.module import GANModule
from lightning_gan.regularizers import GradientPenalty

pytestmark = pytest.mark.slow


def build(seed: int = 0) -> tuple[GANModule, Toy2DDataModule]:
    pl.seed_everything(seed, workers=True)
    module = GANModule(
        architecture={"class_path": "mlp", "init_args": {"g_hidden": 16, "d_hidden": 16, "g_depth": 2, "d_depth": 2}},
        # the penalty draws from the global RNG (interpolation weights): resuming must restore it
        regularizers=[GradientPenalty(weight=1.0, interval=4)],  # shares the Dreg phase with LazyR1
        ema_kimg=0.1, ema_rampup=0.05, log_every_n_iterations=4,
    )
    return module, Toy2DDataModule(num_samples=240, batch_size=20)  # 12 iterations per epoch


def trainer(tmp_path, max_epochs: int, callbacks=(), **kwargs) -> pl.Trainer:
    return pl.Trainer(max_epochs=max_epochs, accelerator="cpu", devices=1, logger=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                      num_sanity_val_steps=1, check_val_every_n_epoch=1, limit_val_batches=1,
                      deterministic=True, callbacks=[LazyR1(gamma=0.1, interval=4), *callbacks], **kwargs)


def state(module: GANModule) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}


def test_epoch_boundary_resume_reproduces_the_uninterrupted_run(tmp_path) -> None:
    module, data = build()
    trainer(tmp_path / "a", max_epochs=3, enable_checkpointing=False).fit(module, data)
    uninterrupted = state(module)

    module, data = build()
    t1 = trainer(tmp_path / "b", max_epochs=1, enable_checkpointing=False)
    t1.fit(module, data)
    ckpt = tmp_path / "epoch1.ckpt"
    t1.save_checkpoint(ckpt)
    halfway = state(module)

    module, data = build(seed=123)  # a different seed: everything must come from the checkpoint
    trainer(tmp_path / "c", max_epochs=3, enable_checkpointing=False).fit(module, data, ckpt_path=ckpt)
    resumed = state(module)

    assert module.iteration == 36 and module.images_seen == 720
    assert resumed.keys() == uninterrupted.keys()
    assert all(not torch.equal(halfway[k], uninterrupted[k]) for k in uninterrupted)  # epochs 2-3 trained
    for key in uninterrupted:
        torch.testing.assert_close(resumed[key], uninterrupted[key], rtol=1e-5, atol=1e-6, msg=key)


class StopAt(Callback):
    """Save a checkpoint after iteration ``at`` and stop there, mid-epoch."""

    def __init__(self, at: int, path) -> None:
        self.at, self.path = at, path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.iteration == self.at:
            trainer.save_checkpoint(self.path)
            self.ema = {k: v.clone() for k, v in pl_module.generator_ema.state_dict().items()}
            trainer.should_stop = True


class PhaseLog(Callback):
    def __init__(self) -> None:
        self.rows: list[tuple[int, tuple[str, ...]]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.rows.append((pl_module.iteration, tuple(p.name for p in pl_module.schedule.phases(pl_module.iteration))))


def test_mid_epoch_resume_keeps_kimg_schedule_and_ema(tmp_path) -> None:
    ckpt = tmp_path / "mid.ckpt"
    module, data = build()
    stop = StopAt(17, ckpt)  # 5 iterations into the second epoch
    trainer(tmp_path / "a", max_epochs=3, callbacks=[stop], enable_checkpointing=False).fit(module, data)
    assert module.iteration == 17

    restored = {}

    class Capture(Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            restored.update({k: v.clone() for k, v in pl_module.generator_ema.state_dict().items()})
            restored["iteration"] = pl_module.iteration
            restored["kimg"] = pl_module.kimg

    module, data = build(seed=7)
    log = PhaseLog()
    trainer(tmp_path / "b", max_epochs=3, callbacks=[Capture(), log], enable_checkpointing=False).fit(
        module, data, ckpt_path=ckpt)
    assert restored["iteration"] == 17 and restored["kimg"] == pytest.approx(17 * 20 / 1000)
    for key, value in stop.ema.items():
        assert torch.equal(restored[key], value), key
    # the phase schedule continues from iteration 17: Dreg (R1 and GP every 4) on 20, 24, ...
    iterations = [i for i, _ in log.rows]
    assert iterations[0] == 17 and iterations == list(range(17, 17 + len(iterations)))
    for i, phases in log.rows:
        assert ("Dreg" in phases) == (i % 4 == 0), (i, phases)
    assert module.images_seen == module.iteration * 20


def test_last_checkpoint_of_a_run_resumes_with_callback_state(tmp_path) -> None:
    module, data = build()
    grid = SampleGrid(every_n_kimg=0.1)
    ckpt_cb = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer(tmp_path / "a", max_epochs=1, callbacks=[grid, ckpt_cb]).fit(module, data)
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    grid_state = [v for k, v in ckpt["callbacks"].items() if k.startswith("SampleGrid")]
    assert grid_state and grid_state[0]["last_kimg"] == pytest.approx(0.2)  # 0.24 is written after the last save
    assert ckpt["state_dict"]["_extra_state"]["iteration"] == 12
    assert len(ckpt["optimizer_states"]) == 2


class Crash(Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.iteration == self.at:
            raise RuntimeError("simulated crash")


def test_interrupt_checkpoint_saves_never_auto_resumes_and_is_removed_once_made_good(tmp_path) -> None:
    from lightning_gan.callbacks import InterruptCheckpoint

    saver = InterruptCheckpoint(tmp_path / "run", "interrupted")
    module, data = build()
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer(tmp_path / "a", max_epochs=2, callbacks=[saver, Crash(5)], enable_checkpointing=False).fit(module, data)
    path = tmp_path / "run" / "interrupted.ckpt"
    assert torch.load(path, weights_only=True)["state_dict"]["_extra_state"]["iteration"] == 5

    starts = []

    class Start(Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            starts.append(pl_module.iteration)

    module, data = build()  # the same command without --ckpt_path: a fresh run, the file is left alone
    trainer(tmp_path / "b", max_epochs=1, callbacks=[saver, Start()], enable_checkpointing=False).fit(module, data)
    assert starts == [0] and path.is_file()

    module, data = build()  # continue from it: once that run finishes, the interruption is made good
    trainer(tmp_path / "c", max_epochs=1, callbacks=[saver, Start()], enable_checkpointing=False).fit(
        module, data, ckpt_path=path)
    assert starts == [0, 5] and module.iteration > 5, (starts, module.iteration)
    assert not path.exists()


def test_interrupt_checkpoint_skips_a_run_the_framework_refused(tmp_path) -> None:
    """A ConfigError (e.g. a diverged game, NonFiniteError) leaves nothing worth continuing: no file."""
    from lightning_gan.callbacks import InterruptCheckpoint
    from lightning_gan.errors import ConfigError

    class Refuse(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if pl_module.iteration == 3:
                raise ConfigError("refused")

    saver = InterruptCheckpoint(tmp_path / "run", "interrupted")
    module, data = build()
    with pytest.raises(ConfigError, match="refused"):
        trainer(tmp_path / "a", max_epochs=2, callbacks=[saver, Refuse()], enable_checkpointing=False).fit(module, data)
    assert module.iteration == 3 and not (tmp_path / "run" / "interrupted.ckpt").exists()
