"""ProgressiveGrowing in real fits on the tiny growable pair: the stages, the real images and the batch sizes of
a run follow the table; a run resumed mid-fade continues exactly as the uninterrupted one (in one process and
under 2-process DDP); 2 DDP processes agree on the stage and alpha at every iteration (through the CLI, with the
recipe's table format). And the real growable architectures, ``progan`` and ``stylegan2`` with ``growable: true``,
in short fits across a fade at tiny widths."""

from __future__ import annotations

import json
import math
import os
import sys
import textwrap
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

from conftest import isolated_env, run_process  # tests/conftest.py
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


# -- the plugins' growable architectures --------------------------------------------------------------------------
class LossLog(Callback):
    """Per iteration: the stage G, D and the EMA generator trained at, and the losses logged for it."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._stage = [(n.resolution, n.alpha) for n in (pl_module.generator, pl_module.discriminator,
                                                         pl_module.generator_ema)]
        self._seen = pl_module.images_seen

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        losses = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("loss/", "penalty/"))}
        self.rows.append((self._seen, self._stage, losses))


# 8 images a batch: 2 iterations at 4 px, the fade of 8 px over 4 iterations (alpha 0, 1/4, 1/2, 3/4), 2 at 8 px.
PLUGIN_ROWS = [{"resolution": 4, "fade_kimg": 0, "stable_kimg": 0.016},
               {"resolution": 8, "fade_kimg": 0.032, "stable_kimg": 0.016}]


@pytest.mark.parametrize("architecture", [
    pytest.param({"class_path": "progan", "init_args": {"resolution": 8, "channels": 1, "z_dim": 8,
                                                        "channel_base": 32, "channel_max": 8}}, id="progan"),
    pytest.param({"class_path": "stylegan2", "init_args": {"resolution": 8, "channels": 1, "z_dim": 8, "w_dim": 8,
                                                           "mapping_layers": 2, "channel_base": 32, "channel_max": 8,
                                                           "growable": True, "g_architecture": "skip"}},
                 id="stylegan2-growable"),
])
def test_a_plugin_architecture_grows_across_a_fade_with_finite_losses(tmp_path, architecture) -> None:
    pytest.importorskip(f"lightning_gan_{architecture['class_path']}")
    pl.seed_everything(0, workers=True)
    regularizers = [{"class_path": "gradient_penalty", "init_args": {"weight": 10.0}}] \
        if architecture["class_path"] == "progan" else [{"class_path": "r1", "init_args": {"gamma": 1.0}}]
    module = GANModule(architecture=architecture, regularizers=regularizers, metrics=[], ema_kimg=0.01,
                       ema_rampup=None, log_every_n_iterations=1)
    log = LossLog()
    fit = pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                     limit_val_batches=0, default_root_dir=tmp_path,
                     callbacks=[ProgressiveGrowing(schedule=PLUGIN_ROWS), log])
    fit.fit(module, ShapesDataModule(resolution=8, channels=1, num_samples=32, batch_size=8, seed=3))
    schedule = GrowthSchedule(PLUGIN_ROWS)
    assert [seen for seen, _, _ in log.rows] == list(range(0, 64, 8))
    alphas = []
    for seen, stages, losses in log.rows:
        resolution, alpha = schedule.stage_at_images(seen)
        assert stages == [(resolution, pytest.approx(alpha, abs=1e-7))] * 3, seen
        assert {"loss/Dmain", "loss/Gmain"} <= losses.keys() and all(math.isfinite(v) for v in losses.values())
        alphas.append((resolution, alpha))
    assert alphas == [(4, 1.0), (4, 1.0), (8, 0.0), (8, 0.25), (8, 0.5), (8, 0.75), (8, 1.0), (8, 1.0)]
    assert all(torch.isfinite(p).all() for p in module.parameters())


# -- 2 DDP processes through the CLI -----------------------------------------------------------------------------
# 2 processes x 8 images until 32 images, then 2 x 4: the first epoch (32 samples per process) holds 6 iterations
# and ends at 64 images, half-way through the fade of 8 px (images 32-96); the third ends in the 16 px fade.
DDP_ROWS = [{"resolution": 4, "fade_kimg": 0, "stable_kimg": 0.032},
            {"resolution": 8, "fade_kimg": 0.064, "stable_kimg": 0.016, "batch_size": 4, "lr": 0.001},
            {"resolution": 16, "fade_kimg": 0.032, "stable_kimg": 0}]
DDP_CONFIG = """\
seed_everything: 0
trainer:
  accelerator: cpu
  devices: 2
  strategy: ddp
  max_epochs: 3
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
  num_sanity_val_steps: 0
  limit_val_batches: 0
  callbacks:
    - class_path: lightning_gan.callbacks.ProgressiveGrowing
      init_args:
        schedule:
          - {{resolution: 4,  fade_kimg: 0,  stable_kimg: 0.032}}
          - {{resolution: 8,  fade_kimg: 0.064, stable_kimg: 0.016, batch_size: 4, lr: 0.001}}
          - {{resolution: 16, fade_kimg: 0.032, stable_kimg: 0}}
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{dirpath: {ckpts}, filename: "epoch{{epoch}}", auto_insert_metric_name: false, save_top_k: -1}}
    - class_path: progressive_probe.StageLog
      init_args: {{dirpath: {ranks}, save_state: true}}
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
"""


def _ddp_fit(root: Path, *extra: str) -> tuple[list[dict], list[dict]]:
    """A 2-process CLI fit (gloo on CPU) of DDP_CONFIG in ``root``: both ranks' StageLog records and final states."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "progressive.yaml"
    config.write_text(DDP_CONFIG.format(ckpts=root / "ckpts", ranks=root / "ranks"))
    env = isolated_env(root, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    result = run_process([sys.executable, "-m", "lightning_gan.cli", "fit", "--config", str(config), *extra],
                         cwd=root, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-4000:]
    records = [json.loads((root / "ranks" / f"rank{k}.json").read_text()) for k in (0, 1)]
    states = [torch.load(root / "ranks" / f"rank{k}.pt", weights_only=True) for k in (0, 1)]
    return records, states


@pytest.fixture(scope="module")
def uninterrupted_ddp_run(tmp_path_factory) -> tuple[Path, list[dict], list[dict]]:
    """The 3 epochs of DDP_CONFIG without a break, run once for the tests below (a DDP launch takes seconds)."""
    root = tmp_path_factory.mktemp("ddp_full")
    return (root, *_ddp_fit(root))


def test_two_ddp_processes_agree_on_stage_and_alpha_at_every_iteration(uninterrupted_ddp_run) -> None:
    _, (r0, r1), _ = uninterrupted_ddp_run
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["rows"] == r1["rows"]  # iteration, images, the stage of G, D and EMA, the batch shape: all equal
    schedule = GrowthSchedule(DDP_ROWS)
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


def test_a_ddp_run_resumed_mid_fade_continues_as_the_uninterrupted_run(uninterrupted_ddp_run, tmp_path) -> None:
    """Resumed from the first epoch's checkpoint (64 images, alpha 1/2 into the fade of 8 px), the 2-process run
    equals the uninterrupted one on both ranks: the stage and batch at every later iteration, and at the end the
    weights, the EMA, the counters and the optimizers' states, bit for bit (each process continues its own
    latent stream)."""
    root, full_records, full_states = uninterrupted_ddp_run
    ckpt = root / "ckpts" / "epoch0.ckpt"
    first_epoch = [row for row in full_records[0]["rows"] if row[1] < 64]
    assert len(first_epoch) == 6 and full_records[0]["rows"][6][1:4] == [64, 8, 0.5]  # the checkpoint is mid-fade
    resumed_records, resumed_states = _ddp_fit(tmp_path, f"--ckpt_path={ckpt}")
    for full, resumed in zip(full_records, resumed_records):
        assert resumed["rows"] == full["rows"][6:]  # iteration, images, stages of G, D, EMA, batch shape
        assert resumed["images_seen"] == full["images_seen"]
        assert resumed["sums"] == full["sums"]
    for full, resumed in zip(full_states, resumed_states):
        assert resumed["module"].keys() == full["module"].keys()
        for key, value in full["module"].items():
            torch.testing.assert_close(resumed["module"][key], value, rtol=0, atol=0, msg=key)
        for a, b in zip(resumed["optimizers"], full["optimizers"]):
            assert a["param_groups"] == b["param_groups"]
            assert a["state"].keys() == b["state"].keys()
            for index, state in b["state"].items():
                for name, value in state.items():
                    torch.testing.assert_close(a["state"][index][name], value, rtol=0, atol=0)


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


def test_the_logger_records_the_stage_the_table_predicts_at_each_logged_kimg(tmp_path) -> None:
    import csv

    from lightning.pytorch.loggers import CSVLogger

    module, data = build()
    fit = pl.Trainer(max_epochs=4, accelerator="cpu", devices=1, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, log_every_n_steps=2,
                     logger=CSVLogger(tmp_path, name="run"), callbacks=[ProgressiveGrowing(schedule=ROWS)])
    fit.fit(module, data)
    with open(Path(fit.logger.log_dir) / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("progress/kimg")]
    assert len(rows) == module.iteration // 2  # every logged iteration, the stage on the same row as kimg
    starts = [0.0, 0.016, 0.016 + 0.048 + 0.008]  # kimg at which each row of ROWS begins
    seen = set()
    for r in rows:
        kimg = float(r["progress/kimg"])
        i = max(j for j, start in enumerate(starts) if kimg >= start - 1e-9)
        fade = ROWS[i]["fade_kimg"]
        alpha = 1.0 if fade == 0 else min(1.0, (kimg - starts[i]) / fade)
        assert float(r["progressive/resolution"]) == ROWS[i]["resolution"], r
        assert float(r["progressive/alpha"]) == pytest.approx(alpha, abs=1e-6), r
        seen.add((ROWS[i]["resolution"], 0 < alpha < 1))
    assert {(8, True), (16, True), (16, False)} <= seen  # mid-fade rows of both growths, and the last stage
