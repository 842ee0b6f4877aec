"""Several discriminator steps per iteration across runs: resume reproduces the run; 2-process DDP with
fp16-dynamic keeps ranks identical and counts steps and images by the formula."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from conftest import isolated_env, run_process  # tests/conftest.py
from lightning_gan.data.toy2d import Toy2DDataModule
from lightning_gan.errors import ConfigError
from lightning_gan.module import GANModule
from lightning_gan.regularizers import R1

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent


def build(seed: int = 0, d_steps: int = 2) -> tuple[GANModule, Toy2DDataModule]:
    pl.seed_everything(seed, workers=True)
    module = GANModule(
        architecture={"class_path": "mlp", "init_args": {"g_hidden": 16, "d_hidden": 16, "g_depth": 2, "d_depth": 2}},
        regularizers=[R1(gamma=0.1, interval=4)], ema_kimg=0.1, ema_rampup=0.05, metrics=[], d_steps=d_steps,
    )
    return module, Toy2DDataModule(num_samples=240, batch_size=20)  # 12 iterations per epoch, D steps of 10


def trainer(tmp_path, max_epochs: int) -> pl.Trainer:
    return pl.Trainer(max_epochs=max_epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                      num_sanity_val_steps=0, limit_val_batches=0, deterministic=True)


def state(module: GANModule) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}


def test_resume_with_d_steps_reproduces_the_uninterrupted_run(tmp_path) -> None:
    module, data = build()
    trainer(tmp_path / "a", max_epochs=2).fit(module, data)
    uninterrupted = state(module)

    module, data = build()
    t1 = trainer(tmp_path / "b", max_epochs=1)
    t1.fit(module, data)
    ckpt = tmp_path / "epoch1.ckpt"
    t1.save_checkpoint(ckpt)

    module, data = build(seed=123)
    t2 = trainer(tmp_path / "c", max_epochs=2)
    t2.fit(module, data, ckpt_path=ckpt)
    # 24 iterations of 20 images; D: 2 steps per iteration + R1 on iterations 0, 4, ..., 20
    assert module.iteration == 24 and module.images_seen == 480
    d_steps_taken = max(int(s["step"]) for s in t2.optimizers[0].state.values())
    assert d_steps_taken == 2 * 24 + 6
    for key in uninterrupted:
        torch.testing.assert_close(state(module)[key], uninterrupted[key], rtol=1e-5, atol=1e-6, msg=key)

    module, data = build(d_steps=1)  # another split would not continue that run: refused in one line
    with pytest.raises(ConfigError, match=r"^The checkpoint was trained with d_steps=2 but this run has d_steps=1; "
                                          r"resume with --model.d_steps=2"):
        trainer(tmp_path / "d", max_epochs=2).fit(module, data, ckpt_path=ckpt)


def test_ddp_with_two_d_steps_and_fp16_dynamic_keeps_ranks_identical(tmp_path) -> None:
    """quickstart on 2 processes, d_steps=2, lazy R1 every 4, fp16-dynamic with an inf in D's gradients on rank 1
    at iteration 2: both ranks skip both D steps of that iteration and halve D's scale once."""
    probe = json.dumps({"class_path": "ddp_probe.DumpRankState", "init_args": {"dirpath": str(tmp_path / "ranks")}})
    plugin = json.dumps({"class_path": "ddp_probe.InjectInf", "init_args": {
        "rank": 1, "iteration": 2, "network": "discriminator", "init_scale": 1024.0, "growth_interval": 5,
        "underflow_threshold": None}})
    cmd = [
        sys.executable, "-m", "lightning_gan.cli", "fit", "--recipe", "quickstart",
        "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp",
        f"--trainer.plugins={plugin}", f"--trainer.logger.init_args.save_dir={tmp_path}",
        f"--trainer.default_root_dir={tmp_path}", "--data.num_samples=4000", "--data.batch_size=100",
        "--model.d_steps=2", "--model.total_kimg=3", f"--trainer.callbacks+={probe}",
    ]
    env = isolated_env(tmp_path, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    result = run_process(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-4000:]
    r0 = torch.load(tmp_path / "ranks" / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "ranks" / "rank1.pt", weights_only=True)
    # 3 kimg of 2 processes x 100 real images (two D steps of 50 each): 15 iterations
    assert r0["iteration"] == r1["iteration"] == 15
    assert r0["images_seen"] == r1["images_seen"] == 3000
    assert r0["scalers"] == r1["scalers"]
    d, g = r0["scalers"]["discriminator"], r0["scalers"]["generator"]
    # D: 2 x 15 main steps + 4 lazy R1 steps (iterations 0, 4, 8, 12); both D steps of iteration 2 skipped
    assert (d["steps"], d["skipped"], d["overflows"]) == (2 * 15 + 4, 2, 1)
    assert (g["steps"], g["skipped"], g["overflows"]) == (15, 0, 0)
    # one update per iteration: G x2 at 5, 10, 15; D halves at 2, then x2 after 5 healthy iterations (7, 12)
    assert g["scale"] == 1024.0 * 8 and d["scale"] == 512.0 * 4
    for net in ("generator", "generator_ema", "discriminator"):
        for key in r0[net]:
            assert torch.equal(r0[net][key], r1[net][key]), f"{net}.{key} differs between ranks"
