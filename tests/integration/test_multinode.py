"""Multi-node DDP simulated on one machine: 2 "nodes" of 1 process each started by torchrun (gloo).

Every counter of the run is global: the two nodes agree on the state after every iteration (kimg, phases,
G/D/EMA weights bit for bit, loss scales), train exactly what 2 processes on one node train, write the
checkpoint and the metrics once (node 0), and a checkpoint continues on another number of nodes with the
image count exact."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.strategies import DDPStrategy

import lightning_gan.module
from conftest import SUBPROCESS_TIMEOUT, kill_process_group  # tests/conftest.py
from lightning_gan.module import GANModule
from lightning_gan.testing import TinyArchitecture

HERE = Path(__file__).parent
TIMEOUT = SUBPROCESS_TIMEOUT  # seconds for a whole job, below pytest's; a hung rendezvous is killed with its group

# quickstart at 100 points per batch and process, with lazy R1 (every 4th iteration), EMA and per-network loss scales
FIT = ["fit", "--recipe", "quickstart", "--trainer.accelerator=cpu", "--trainer.plugins=fp16-dynamic",
       "--data.num_samples=4000", "--data.batch_size=100"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fit_args(root: Path, ranks: Path, *extra: str) -> list[str]:
    probe = json.dumps({"class_path": "multinode_probe.IterationLog", "init_args": {"dirpath": str(ranks)}})
    return [*FIT, f"--trainer.logger.init_args.save_dir={root}", f"--trainer.default_root_dir={root}",
            f"--trainer.callbacks+={probe}", *extra]


def node_command(node_rank: int, port: int, args: list[str]) -> list[str]:
    """torchrun for one of 2 nodes of 1 process each, the rendezvous on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
            f"--node_rank={node_rank}", "--master_addr=127.0.0.1", f"--master_port={port}",
            "-m", "lightning_gan.cli", *args, "--trainer.num_nodes=2", "--trainer.devices=1", "--trainer.strategy=ddp"]


def run_together(commands: list[list[str]], cwd: Path, timeout: float = TIMEOUT, env: dict[str, str] | None = None,
                 env_per_command: list[dict[str, str]] | None = None) -> list[tuple[int, str]]:
    """Start every command at once (each in its own process group; ``env``, or command i's ``env_per_command[i]``,
    added to this one's), wait for all; on timeout kill every group. Returns (exit status, stdout + stderr) per
    command."""
    base = {**os.environ, "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    logs = [cwd / f"job{i}.log" for i in range(len(commands))]
    deadline = time.monotonic() + timeout
    procs = []
    for i, (cmd, log) in enumerate(zip(commands, logs)):
        with log.open("w") as out:
            procs.append(subprocess.Popen(cmd, cwd=cwd, env={**base, **(env_per_command[i] if env_per_command else {})},
                                          stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
    try:
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        for p in procs:
            kill_process_group(p)
        pytest.fail(f"the job did not end within {timeout} s:\n" + "\n".join(log.read_text()[-2000:] for log in logs))
    except BaseException:  # pytest-timeout, Ctrl-C: no rank is left behind
        for p in procs:
            kill_process_group(p)
        raise
    return [(p.returncode, log.read_text()) for p, log in zip(procs, logs)]


def load(ranks: Path, k: int) -> dict:
    return torch.load(ranks / f"rank{k}.pt", weights_only=True)


def state_of(row: dict) -> dict:
    """A row's state (counters, weights, loss scales) without what only the iteration saw (phases, batch)."""
    return {k: v for k, v in row.items() if k not in ("phases", "batch")}


def same_weights(a: dict, b: dict) -> bool:
    return all(torch.equal(a[net][key], b[net][key]) for net in ("generator", "generator_ema", "discriminator")
               for key in a[net])


@pytest.mark.parametrize("num_nodes", [1, 2])
def test_metric_setup_goes_in_turns_one_process_per_node_before_the_rest(monkeypatch, num_nodes) -> None:
    """Global rank 0 sets the metrics up first (what it caches on a shared disk the others read), then the first
    process of every other node (node-local disks: one process per node writes), then the rest; every process
    calls the same barriers. Simulated: 4 processes, each a GANModule whose trainer says where it runs."""
    per_node = 4 // num_nodes
    turns, barriers = {}, {}
    for rank in range(4):
        log: list[str] = []
        monkeypatch.setattr(lightning_gan.module, "setup_metrics", lambda *a, log=log, **k: log.append("setup"))
        strategy = DDPStrategy()
        monkeypatch.setattr(strategy, "barrier", lambda name=None, log=log: log.append("barrier"))
        trainer = type("FakeTrainer", (), {
            "strategy": strategy, "precision_plugin": Precision(), "datamodule": None, "world_size": 4,
            "num_nodes": num_nodes, "global_rank": rank, "local_rank": rank % per_node, "is_global_zero": rank == 0})()
        module = GANModule(architecture=TinyArchitecture(), metrics=["swd"])
        module._trainer = trainer
        module.setup("fit")
        assert log.count("setup") == 1
        turns[rank] = log.index("setup")  # the barriers it passed before its turn
        barriers[rank] = log.count("barrier")
    # 2 nodes: ranks 0, 1 on node 0 and 2, 3 on node 1 (rank 2 is node 1's first process)
    assert turns == ({0: 0, 1: 2, 2: 1, 3: 2} if num_nodes == 2 else {0: 0, 1: 1, 2: 1, 3: 1})
    assert set(barriers.values()) == {num_nodes}  # every process calls the same barriers


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory) -> dict:
    """2 kimg on 2 nodes x 1 process (10 iterations of 2 x 100 points) and, at the same time, on 1 node x 2
    processes; each node its own root folder, so what node 1 writes can be seen."""
    tmp = tmp_path_factory.mktemp("multinode")
    port = free_port()
    nodes = [node_command(k, port, fit_args(tmp / f"node{k}", tmp / "ranks_2n", "--model.total_kimg=2"))
             for k in (0, 1)]
    single = [sys.executable, "-m", "lightning_gan.cli",
              *fit_args(tmp / "single", tmp / "ranks_1n", "--model.total_kimg=2"),
              "--trainer.devices=2", "--trainer.strategy=ddp"]
    results = run_together([*nodes, single], cwd=tmp)
    for rc, log in results:
        assert rc == 0, log[-4000:]
    return {"tmp": tmp, "logs": [log for _, log in results]}


@pytest.mark.slow
def test_two_nodes_agree_at_every_iteration_and_train_what_one_node_of_two_processes_trains(two_nodes) -> None:
    tmp = two_nodes["tmp"]
    r0, r1 = load(tmp / "ranks_2n", 0), load(tmp / "ranks_2n", 1)
    assert [(r["global_rank"], r["node_rank"], r["local_rank"], r["world_size"], r["num_nodes"]) for r in (r0, r1)] \
        == [(0, 0, 0, 2, 2), (1, 1, 0, 2, 2)]
    assert not torch.equal(r0["first_batch"], r1["first_batch"])  # each node trained on its own share
    # after every iteration: the same counters, phases, weights (hashes of G, D and EMA) and loss scales
    assert r0["rows"] == r1["rows"]
    rows = r0["rows"]
    assert [(r["iteration"], r["images_seen"]) for r in rows] == [(i, 200 * i) for i in range(1, 11)]
    assert [("Dreg" in r["phases"]) for r in rows] == [(i - 1) % 4 == 0 for i in range(1, 11)]  # lazy R1
    d_scale = rows[-1]["scalers"]["discriminator"]
    assert (d_scale["iterations"], d_scale["steps"]) == (10, 10 + 3)  # one scale update per iteration
    # the same job on one node of 2 processes: the same state after every iteration, the same final weights
    s0 = load(tmp / "ranks_1n", 0)
    assert s0["num_nodes"] == 1 and s0["world_size"] == 2
    assert s0["rows"] == rows
    assert same_weights(r0, s0)
    # written once, by the global rank 0: node 1 wrote no checkpoint, samples or metrics
    assert not [p for p in (tmp / "node1").rglob("*") if p.is_file()]
    ckpt = torch.load(next((tmp / "node0").rglob("last.ckpt")), weights_only=True)
    assert ckpt["lightning_gan"]["version"] == 1
    assert ckpt["state_dict"]["_extra_state"] == {"iteration": 10, "images_seen": 2000}
    metrics = [json.loads(p.read_text()) for p in (tmp / "node0", tmp / "single") for p in p.rglob("metrics.json")]
    assert len(metrics) == 2 and metrics[0] == metrics[1]  # the EMA generator's mode coverage, equal


@pytest.mark.slow
def test_a_checkpoint_continues_on_another_number_of_nodes_with_the_image_count_exact(two_nodes, tmp_path) -> None:
    """2 nodes -> 1 process (2 -> 3 kimg), then that checkpoint -> 2 nodes (3 -> 4 kimg): each resumed run
    starts from the checkpoint's counters, weights and loss scales and adds its own global batch per iteration."""
    tmp = two_nodes["tmp"]
    last_2n = state_of(load(tmp / "ranks_2n", 0)["rows"][-1])
    ckpt_2n = next((tmp / "node0").rglob("last.ckpt"))
    (rc, log), = run_together([[sys.executable, "-m", "lightning_gan.cli",
                                *fit_args(tmp_path / "one", tmp_path / "ranks_one", "--model.total_kimg=3",
                                          f"--ckpt_path={ckpt_2n}")]], cwd=tmp_path)
    assert rc == 0, log[-4000:]
    one = load(tmp_path / "ranks_one", 0)
    assert one["world_size"] == 1
    assert one["start"] == last_2n  # counters, G/D/EMA weights and loss scales as the 2 nodes left them
    # the global batch halves (1 x 100 points): 10 more iterations to 3 kimg, the phases follow the iteration
    assert [(r["iteration"], r["images_seen"]) for r in one["rows"]] == [(i, 2000 + 100 * (i - 10))
                                                                         for i in range(11, 21)]
    assert [("Dreg" in r["phases"]) for r in one["rows"]] == [(i - 1) % 4 == 0 for i in range(11, 21)]

    ckpt_one = next((tmp_path / "one").rglob("last.ckpt"))
    port = free_port()
    results = run_together([node_command(k, port, fit_args(tmp_path / f"node{k}", tmp_path / "ranks_back",
                                                           "--model.total_kimg=4", f"--ckpt_path={ckpt_one}"))
                            for k in (0, 1)], cwd=tmp_path)
    for rc, log in results:
        assert rc == 0, log[-4000:]
    b0, b1 = load(tmp_path / "ranks_back", 0), load(tmp_path / "ranks_back", 1)
    assert b0["start"] == b1["start"] == state_of(one["rows"][-1])
    assert b0["rows"] == b1["rows"]
    assert [(r["iteration"], r["images_seen"]) for r in b0["rows"]] == [(i, 3000 + 200 * (i - 20))
                                                                        for i in range(21, 26)]
