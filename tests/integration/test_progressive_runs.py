"""ProgressiveGrowing in real fits on the tiny growable pair: the stages, the real images and the batch sizes of
a run follow the table; a run resumed mid-fade continues exactly as the uninterrupted one; 2 DDP processes agree
on the stage and alpha at every iteration (through the CLI, with the recipe's table format)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

from lightning_gan.callbacks import ProgressiveGrowing
from lightning_gan.callbacks.progressive import GrowthSchedule
from lightning_gan.data.shapes import ShapesDataModule
from lightning_gan.module import GANModule
from lightning_gan.testing.tiny import TinyGrowableArchitecture

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent

# 32 images of 16 px, 8 per batch until 72 images, then 4: the fade of 8 px runs over images 16-64 and the first
# epoch ends (iteration 4, 32 images) in its middle; 16 px fades in over images 72-104 with the smaller batch.
ROWS = [
    {"resolution": 4, "fade_kimg": 0, "stable_kimg": 0.016},
    {"resolution": 8, "fade_kimg": 0.048, "stable_kimg": 0.008},
    {"resolution": 16, "fade_kimg": 0.032, "stable_kimg": 0.016, "batch_size": 4, "lr": 0.001},
]


class ShapesRecorder(ShapesDataModule):
    """Shapes that remember each training batch before and after it was brought to the stage."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pairs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_after_batch_transfer(self, batch, dataloader_idx):
        full = batch[0].clone()
        out = super().on_after_batch_transfer(batch, dataloader_idx)
        if self.trainer is not None and self.trainer.training:
            self.pairs.append((full, out[0]))
        return out


class StageLog(Callback):
    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        g, d, ema = pl_module.generator, pl_module.discriminator, pl_module.generator_ema
        self.rows.append((pl_module.iteration, pl_module.images_seen, (g.resolution, g.alpha),
                          (d.resolution, d.alpha), (ema.resolution, ema.alpha), tuple(batch[0].shape)))


def build(seed: int = 0, data_cls=ShapesDataModule) -> tuple[GANModule, ShapesDataModule]:
    pl.seed_everything(seed, workers=True)
    module = GANModule(architecture=TinyGrowableArchitecture(resolutions=(4, 8, 16)), metrics=[], ema_kimg=0.02,
                       ema_rampup=None)
    return module, data_cls(resolution=16, channels=1, num_samples=32, batch_size=8, seed=3)


def trainer(root: Path, max_epochs: int, callbacks=()) -> pl.Trainer:
    return pl.Trainer(max_epochs=max_epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                      limit_val_batches=0, deterministic=True, default_root_dir=root,
                      callbacks=[ProgressiveGrowing(schedule=ROWS), *callbacks])


def reference_reals(full: torch.Tensor, resolution: int, alpha: float) -> torch.Tensor:
    """The box-filtered image at the stage, faded with its nearest-upsampled half-resolution version."""
    current = F.avg_pool2d(full, 16 // resolution)
    if alpha == 1.0:
        return current
    half = F.avg_pool2d(full, 32 // resolution).repeat_interleave(2, -1).repeat_interleave(2, -2)
    return torch.lerp(half, current, alpha)


def test_a_tiny_fit_grows_through_every_stage_with_the_tables_reals_and_batches(tmp_path) -> None:
    module, data = build(data_cls=ShapesRecorder)
    log = StageLog()
    fit = trainer(tmp_path, max_epochs=4, callbacks=[log])
    fit.fit(module, data)
    schedule = GrowthSchedule(ROWS)
    images = 0
    for i, (iteration, seen, g, d, ema, shape) in enumerate(log.rows):
        resolution, alpha = schedule.stage_at_images(seen)
        assert (iteration, seen) == (i, images)
        assert g == d == ema == (resolution, pytest.approx(alpha, abs=1e-7)), (i, g, d, ema)
        batch = schedule.batch_size_at_images(seen) or 8
        assert shape == (batch, 1, resolution, resolution), (i, shape)
        full, served = data.pairs[i]
        assert full.shape == (batch, 1, 16, 16)
        torch.testing.assert_close(served, reference_reals(full, resolution, g[1]), rtol=0, atol=1e-6)
        images += batch
    assert module.images_seen == images  # kimg counts every real image shown, across the batch size change
    # every stage and a fade of each growth happened; the epochs after the switch hold 32 / 4 = 8 batches
    assert {r[2][0] for r in log.rows} == {4, 8, 16}
    assert any(0 < r[2][1] < 1 for r in log.rows if r[2][0] == 8) and any(0 < r[2][1] < 1 for r in log.rows
                                                                           if r[2][0] == 16)
    assert len(log.rows) == 4 + 4 + (1 + 6) + 8  # epoch 3 switches to batches of 4 after its first batch
    assert [g["lr"] for opt in fit.optimizers for g in opt.param_groups] == [0.001, 0.001]
    assert data.served_stage is None and data.batch_plan is None  # the datamodule is itself again after the fit


def optimizer_state(fit: pl.Trainer) -> list[dict]:
    return [opt.state_dict() for opt in fit.optimizers]


def test_a_run_resumed_mid_fade_continues_as_the_uninterrupted_run(tmp_path) -> None:
    module, data = build()
    full = trainer(tmp_path / "a", max_epochs=3)  # 15 iterations: 4 px, 8 px faded in, 16 px fading in
    full.fit(module, data)
    uninterrupted = {k: v.clone() for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}
    uninterrupted_opt = optimizer_state(full)

    module, data = build()
    first = trainer(tmp_path / "b", max_epochs=1)
    first.fit(module, data)
    ckpt = tmp_path / "mid-fade.ckpt"
    first.save_checkpoint(ckpt)
    assert module.iteration == 4 and (module.generator.resolution, module.generator.alpha) == (8, pytest.approx(1 / 3))

    module, data = build(seed=123)  # everything must come from the checkpoint
    log = StageLog()
    resumed = trainer(tmp_path / "c", max_epochs=3, callbacks=[log])
    resumed.fit(module, data, ckpt_path=ckpt)
    assert log.rows[0][:3] == (4, 32, (8, pytest.approx(1 / 3)))  # continues mid-fade, same alpha
    state = {k: v for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}
    assert state.keys() == uninterrupted.keys()
    for key, value in uninterrupted.items():
        torch.testing.assert_close(state[key], value, rtol=1e-5, atol=1e-6, msg=key)
    for a, b in zip(optimizer_state(resumed), uninterrupted_opt):
        assert a["param_groups"] == b["param_groups"]  # lr, betas and the run's own lr per group
        assert a["state"].keys() == b["state"].keys()  # the same parameters have Adam state (blocks in use)
        for index in b["state"]:
            for name, value in b["state"][index].items():
                torch.testing.assert_close(a["state"][index][name], value, rtol=1e-5, atol=1e-6, msg=f"{index}.{name}")


class StopAt(Callback):
    """Save a checkpoint after iteration ``at`` and stop there."""

    def __init__(self, at: int, path: Path) -> None:
        self.at, self.path = at, path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.iteration == self.at:
            trainer.save_checkpoint(self.path)
            trainer.should_stop = True


@pytest.mark.filterwarnings("ignore:.*dataloader is not resumable")
def test_a_run_resumed_mid_epoch_and_mid_fade_continues_with_the_tables_stage(tmp_path) -> None:
    """Mid-epoch Lightning restarts the loader (the data order is not exact, see test_resume.py); the stage, alpha,
    batch size and image count still continue from the checkpoint's image count."""
    ckpt = tmp_path / "mid.ckpt"
    module, data = build()
    trainer(tmp_path / "a", max_epochs=4, callbacks=[StopAt(6, ckpt)]).fit(module, data)
    assert module.iteration == 6

    module, data = build(seed=5)
    log = StageLog()
    trainer(tmp_path / "b", max_epochs=4, callbacks=[log]).fit(module, data, ckpt_path=ckpt)
    schedule = GrowthSchedule(ROWS)
    assert log.rows[0][:3] == (6, 48, (8, pytest.approx(2 / 3)))  # 48 images: two thirds into the fade of 8 px
    images = 48
    for iteration, seen, g, d, ema, shape in log.rows:
        resolution, alpha = schedule.stage_at_images(seen)
        assert seen == images and g == d == ema == (resolution, pytest.approx(alpha, abs=1e-7)), iteration
        batch = schedule.batch_size_at_images(seen) or 8
        assert shape == (batch, 1, resolution, resolution)
        images += batch
    assert module.images_seen == images and {r[2][0] for r in log.rows} == {8, 16}


def test_two_ddp_processes_agree_on_stage_and_alpha_at_every_iteration(tmp_path) -> None:
    config = tmp_path / "progressive.yaml"
    config.write_text(textwrap.dedent(f"""\
        seed_everything: 0
        trainer:
          accelerator: cpu
          devices: 2
          strategy: ddp
          max_epochs: 3
          logger: false
          enable_checkpointing: false
          enable_progress_bar: false
          num_sanity_val_steps: 0
          limit_val_batches: 0
          callbacks:
            - class_path: lightning_gan.callbacks.ProgressiveGrowing
              init_args:
                schedule:
                  - {{resolution: 4,  fade_kimg: 0,  stable_kimg: 0.032}}
                  - {{resolution: 8,  fade_kimg: 0.064, stable_kimg: 0.016, batch_size: 4, lr: 0.001}}
                  - {{resolution: 16, fade_kimg: 0.032, stable_kimg: 0}}
            - class_path: progressive_probe.StageLog
              init_args:
                dirpath: {tmp_path / "ranks"}
        model:
          architecture:
            class_path: lightning_gan.testing.tiny.TinyGrowableArchitecture
            init_args:
              resolutions: [4, 8, 16]
          metrics: []
          ema_kimg: 0.02
        data:
          class_path: shapes
          init_args:
            resolution: 16
            channels: 1
            num_samples: 64
            batch_size: 8
        """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "lightning_gan.cli", "fit", "--config", str(config)], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    r0, r1 = (json.loads((tmp_path / "ranks" / f"rank{k}.json").read_text()) for k in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["rows"] == r1["rows"]  # iteration, images, the stage of G, D and EMA, the batch shape: all equal
    schedule = GrowthSchedule([{"resolution": 4, "fade_kimg": 0, "stable_kimg": 0.032},
                               {"resolution": 8, "fade_kimg": 0.064, "stable_kimg": 0.016, "batch_size": 4},
                               {"resolution": 16, "fade_kimg": 0.032, "stable_kimg": 0}])
    images = 0
    for i, (iteration, seen, g_r, g_a, d_r, d_a, e_r, e_a, shape) in enumerate(r0["rows"]):
        resolution, alpha = schedule.stage_at_images(seen)  # the global count: 2 processes' batches per iteration
        assert (iteration, seen) == (i, images)
        assert g_r == d_r == e_r == resolution and g_a == d_a == e_a == pytest.approx(alpha, abs=1e-7), i
        batch = schedule.batch_size_at_images(seen) or 8
        assert shape == [batch, 1, resolution, resolution], (i, shape)
        images += 2 * batch
    assert r0["images_seen"] == r1["images_seen"] == images
    assert {row[2] for row in r0["rows"]} == {4, 8, 16}
    assert r0["sums"] == r1["sums"]  # the ranks trained identical weights


def test_the_cli_shows_a_bad_table_in_one_line(tmp_path, capsys) -> None:
    from lightning_gan.cli import main

    config = tmp_path / "bad.yaml"
    config.write_text(textwrap.dedent("""\
        trainer:
          callbacks:
            - class_path: lightning_gan.callbacks.ProgressiveGrowing
              init_args:
                schedule:
                  - {resolution: 4, fade_kimg: 0, stable_kimg: 20}
                  - {resolution: 8, fade_kimg: -1, stable_kimg: 20}
        model:
          architecture: lightning_gan.testing.tiny.TinyGrowableArchitecture
        data: shapes
        """))
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", str(config)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == ("lightning-gan: error: ProgressiveGrowing schedule row 2 (resolution 8): fade_kimg "
                                   "must be a non-negative number of kimg, got -1")
    assert "Traceback" not in err
