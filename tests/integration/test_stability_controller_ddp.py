"""StabilityController under 2-process DDP: the same estimates, actions and learning rates on both ranks although
each rank estimates on its own data (every Hessian-vector product is averaged over the processes)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from conftest import isolated_env, run_process  # tests/conftest.py

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent


def test_controller_is_identical_on_two_ddp_processes(tmp_path) -> None:
    cmd = [sys.executable, str(HERE / "stability_controller_probe.py"), str(tmp_path / "ranks")]
    result = run_process(cmd, cwd=tmp_path, env=isolated_env(tmp_path, OMP_NUM_THREADS="1"), capture_output=True,
                         text=True, timeout=200)
    assert result.returncode == 0, result.stderr[-4000:]
    r0 = torch.load(tmp_path / "ranks" / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "ranks" / "rank1.pt", weights_only=True)
    assert r0["world_size"] == r1["world_size"] == 2
    assert not torch.equal(r0["first_batch"], r1["first_batch"])  # each rank saw its own data
    c0, c1 = r0["controller"], r1["controller"]
    assert c0["count"] == c1["count"] >= 3 and c0["actions"] >= 1  # it estimated and acted
    assert c0["scale"] == c1["scale"] < 1
    assert torch.equal(c0["u"], c1["u"])  # the warm-start vector: the global batch's on both
    assert c0["last"] == c1["last"]
    assert r0["lrs"] == r1["lrs"]
    for key in r0["weights"]:
        assert torch.equal(r0["weights"][key], r1["weights"][key]), key
