"""`lightning-gan fit --recipe quickstart` under 2-process DDP (gloo on CPU): no unused-parameter error,
no user workaround, identical weights on both ranks although each rank saw different data."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import torch

from conftest import isolated_env, run_process  # tests/conftest.py

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent


@pytest.mark.parametrize("strategy", ["ddp", "ddp_spawn"])
def test_quickstart_under_ddp_keeps_ranks_identical(tmp_path, strategy) -> None:
    probe = json.dumps({"class_path": "ddp_probe.DumpRankState", "init_args": {"dirpath": str(tmp_path / "ranks")}})
    cmd = [
        sys.executable, "-m", "lightning_gan.cli", "fit", "--recipe", "quickstart",
        "--trainer.accelerator=cpu", "--trainer.devices=2", f"--trainer.strategy={strategy}",
        f"--trainer.logger.init_args.save_dir={tmp_path}", f"--trainer.default_root_dir={tmp_path}",
        "--data.num_samples=4000", "--data.batch_size=100", "--model.total_kimg=3",
        f"--trainer.callbacks+={probe}",  # the recipe brings lazy R1 and EMA
    ]
    env = isolated_env(tmp_path, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    result = run_process(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "were not used" not in result.stderr and "find_unused_parameters" not in result.stderr
    # the main process knows the counters too (ddp_spawn trains in children and sends the state back)
    assert re.search(r"iterations\s*\S\s*15\s", result.stdout), result.stdout[-2000:]
    r0 = torch.load(tmp_path / "ranks" / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "ranks" / "rank1.pt", weights_only=True)
    assert r0["world_size"] == r1["world_size"] == 2
    # 3 kimg of global batches of 2 x 100 images: 15 iterations, counted identically on both ranks
    assert r0["iteration"] == r1["iteration"] == 15
    assert r0["images_seen"] == r1["images_seen"] == 3000
    assert not torch.equal(r0["first_batch"], r1["first_batch"])  # the data really was split
    for net in ("generator", "generator_ema", "discriminator"):
        for key in r0[net]:
            assert torch.equal(r0[net][key], r1[net][key]), f"{net}.{key} differs between ranks"


@pytest.mark.parametrize("strategy", ["ddp", "ddp_spawn"])
def test_fp16_dynamic_under_ddp_one_ranks_inf_makes_both_skip(tmp_path, strategy) -> None:
    """fp16-dynamic + lazy R1 + EMA on 2 processes: an inf injected into D's averaged gradients on rank 1 only
    makes both ranks skip D's step and halve D's scale; weights and scales stay identical on both ranks."""
    probe = json.dumps({"class_path": "ddp_probe.DumpRankState", "init_args": {"dirpath": str(tmp_path / "ranks")}})
    plugin = json.dumps({"class_path": "ddp_probe.InjectInf", "init_args": {
        "rank": 1, "iteration": 2, "network": "discriminator", "init_scale": 1024.0, "growth_interval": 5,
        "underflow_threshold": None}})
    cmd = [
        sys.executable, "-m", "lightning_gan.cli", "fit", "--recipe", "quickstart",
        "--trainer.accelerator=cpu", "--trainer.devices=2", f"--trainer.strategy={strategy}",
        f"--trainer.plugins={plugin}", f"--trainer.logger.init_args.save_dir={tmp_path}",
        f"--trainer.default_root_dir={tmp_path}", "--data.num_samples=4000", "--data.batch_size=100",
        "--model.total_kimg=3", f"--trainer.callbacks+={probe}",
    ]
    env = isolated_env(tmp_path, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    result = run_process(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-4000:]
    r0 = torch.load(tmp_path / "ranks" / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "ranks" / "rank1.pt", weights_only=True)
    assert r0["iteration"] == r1["iteration"] == 15
    assert r0["scalers"] == r1["scalers"]
    d, g = r0["scalers"]["discriminator"], r0["scalers"]["generator"]
    # D: 15 Dmain + 4 lazy R1 steps (every 4th iteration), one skipped on both ranks; G never skipped.
    assert (d["steps"], d["skipped"], d["overflows"]) == (15 + 4, 1, 1)
    assert (g["steps"], g["skipped"], g["overflows"]) == (15, 0, 0)
    # growth every 5 healthy iterations: G 1024 -> x2 at 5, 10, 15; D halves at 2, then 12 healthy -> x2 at 7, 12
    assert g["scale"] == 1024.0 * 8 and d["scale"] == 512.0 * 4
    for net in ("generator", "generator_ema", "discriminator"):
        for key in r0[net]:
            assert torch.equal(r0[net][key], r1[net][key]), f"{net}.{key} differs between ranks"


def test_a_nan_on_one_rank_stops_every_rank_with_one_line(tmp_path) -> None:
    """The generator loss turns NaN on rank 1 only, at the last iteration (14, after the last log): the
    finiteness verdict is all-reduced, so both ranks stop before reporting metrics (no rank waits forever for
    one that raised, none reports results of a diverged run) and the command fails with one line."""
    nan = json.dumps({"class_path": "ddp_probe.NaNGeneratorLoss", "init_args": {"rank": 1, "iteration": 14}})
    cmd = [
        sys.executable, "-m", "lightning_gan.cli", "fit", "--recipe", "quickstart",
        "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp",
        f"--trainer.logger.init_args.save_dir={tmp_path}", f"--trainer.default_root_dir={tmp_path}",
        "--data.num_samples=4000", "--data.batch_size=100", "--model.total_kimg=3", f"--trainer.callbacks+={nan}",
    ]
    env = isolated_env(tmp_path, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    result = run_process(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("lightning-gan: error:")]
    assert errors and all(e == errors[0] for e in errors), result.stderr[-3000:]
    assert "Non-finite loss/Gmain at an iteration in 1-14 (3.0 kimg)" in errors[0]
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.rglob("metrics.json"))  # no rank reported results
