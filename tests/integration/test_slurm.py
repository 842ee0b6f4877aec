"""Pre-emption under SLURM, simulated: SLURM's environment variables, a fake ``scontrol`` on PATH, the signals sent
to a running ``lightning-gan fit`` by the process itself at chosen points.

SIGUSR1 (``#SBATCH --signal=SIGUSR1@90``) makes Lightning write ``hpc_ckpt_N.ckpt`` and call ``scontrol requeue
<job id>``; GANModule defers that to the end of the iteration in progress, so the checkpoint holds whole
iterations (without it, it held the discriminator's step of an iteration whose generator step had not run). SIGTERM (the time limit, or the requeue ending the job) stops the run after the iteration with
``interrupted.ckpt`` and exit status 143. The requeued job (the same command and environment) resumes from the
newest hpc checkpoint by itself."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from test_multinode import free_port, load, run_together, state_of

pytestmark = pytest.mark.slow

JOB_ID = "4242"


def slurm_env(tmp_path: Path) -> dict[str, str]:
    """What srun sets for a 1-task job step (Lightning's ``SLURMEnvironment.detect()`` needs SLURM_NTASKS and a job
    name other than bash/interactive), and a fake ``scontrol`` first on PATH that records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'scontrol.log'}\n")
    scontrol.chmod(0o755)
    return {"SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_JOB_ID": JOB_ID, "SLURM_PROCID": "0",
            "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_JOB_NAME": "gan", "SLURM_NODELIST": "localhost",
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def fit_command(root: Path, ranks: Path, **signals: int | None) -> list[str]:
    """quickstart for 3 kimg: 2000 points in batches of 100 (20 iterations per epoch), lazy R1 every 4th
    iteration, EMA, fp16-dynamic loss scales; the probe sends the signals."""
    callbacks = [{"class_path": "multinode_probe.IterationLog", "init_args": {"dirpath": str(ranks)}}]
    if signals:
        callbacks.append({"class_path": "slurm_probe.SignalAt", "init_args": signals})
    return [sys.executable, "-m", "lightning_gan.cli", "fit", "--recipe", "quickstart", "--trainer.accelerator=cpu",
            "--trainer.plugins=fp16-dynamic", "--data.num_samples=2000", "--data.batch_size=100",
            "--model.total_kimg=3", "--model.metrics=[]", f"--trainer.logger.init_args.save_dir={root}",
            f"--trainer.default_root_dir={root}",
            *(f"--trainer.callbacks+={json.dumps(c)}" for c in callbacks)]


def test_sigusr1_requeues_with_whole_iterations_and_the_requeued_job_continues_exactly(tmp_path) -> None:
    """SIGUSR1 in the middle of the 20th iteration (the last of the first epoch), SIGTERM in the 24th; the
    requeued job resumes from the hpc checkpoint (iteration 20, an epoch boundary) and ends with the weights of an
    uninterrupted run: counters, phases, EMA, loss scales, RNG streams and the data order all continue exactly."""
    job = tmp_path / "job"
    env = slurm_env(tmp_path)
    (rc, log), (rc_ref, log_ref) = run_together([
        fit_command(job, tmp_path / "ranks_a", usr1_iteration=19, term_iteration=23),
        fit_command(tmp_path / "reference", tmp_path / "ranks_ref"),
    ], cwd=tmp_path, env=env)
    assert rc_ref == 0, log_ref[-4000:]
    ref = load(tmp_path / "ranks_ref", 0)["rows"]
    assert len(ref) == 30
    # the time limit: SIGTERM stops the run after the iteration in progress (the 24th), saves interrupted.ckpt and
    # exits as a process that a signal ended
    assert rc == 143, log[-4000:]
    assert "Traceback" not in log
    assert (tmp_path / "scontrol.log").read_text().split("\n")[0] == f"requeue {JOB_ID}"
    hpc = job / "hpc_ckpt_1.ckpt"
    ckpt = torch.load(hpc, weights_only=True)
    # whole iterations: the iteration the signal met was finished first (G's step included), then saved
    assert ckpt["state_dict"]["_extra_state"] == {"iteration": 20, "images_seen": 2000}
    assert {"version", "rng", "data", "plugins"} <= set(ckpt["lightning_gan"])
    assert any(k.startswith("generator_ema.") for k in ckpt["state_dict"])
    assert len(ckpt["optimizer_states"]) == 2  # D's and G's Adam
    assert ckpt["FP16DynamicPrecision"]["generator"]["iterations"] == 20  # the loss scales
    assert ckpt["epoch"] == 0  # saved as the first epoch's last iteration ended; the requeued job starts the second
    interrupted = torch.load(tmp_path / "runs" / "quickstart" / "interrupted.ckpt", weights_only=True)  # the recipe's
    assert interrupted["state_dict"]["_extra_state"]["iteration"] == 24  # the iteration SIGTERM met, finished

    # requeued: the same command and environment, no --ckpt_path; Lightning resumes from hpc_ckpt_1.ckpt
    (rc, log), = run_together([fit_command(job, tmp_path / "ranks_b")], cwd=tmp_path, env=env)
    assert rc == 0, log[-4000:]
    resumed = load(tmp_path / "ranks_b", 0)
    assert resumed["start"] == state_of(ref[19])  # the state after iteration 20 of the uninterrupted run
    assert resumed["rows"] == ref[20:]  # then every iteration as in the uninterrupted run, to the last weights


def test_a_signal_to_one_of_two_tasks_makes_both_save_after_the_same_iteration_and_requeue_once(tmp_path) -> None:
    """2 SLURM tasks on one node (what srun starts for --ntasks-per-node=2), SIGUSR1 to global rank 1 only, in
    the middle of the 6th iteration: both processes finish that iteration, write one hpc checkpoint together
    (Lightning's save is collective: handled at once on rank 1 alone it met rank 0's gradient all-reduce) and
    rank 0 requeues the job once; training then goes on to the end with the ranks identical."""
    job = tmp_path / "job"
    port = free_port()
    command = [*fit_command(job, tmp_path / "ranks", usr1_iteration=5, rank=1), "--model.total_kimg=2",
               "--trainer.devices=2", "--trainer.strategy=ddp"]
    env = slurm_env(tmp_path)
    tasks = [{**env, "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_PROCID": str(k),
              "SLURM_LOCALID": str(k), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)} for k in (0, 1)]
    results = run_together([command, command], cwd=tmp_path, env_per_command=tasks, timeout=180)
    for rc, log in results:
        assert rc == 0, log[-4000:]
    assert (tmp_path / "scontrol.log").read_text().splitlines() == [f"requeue {JOB_ID}"]
    assert sorted(p.name for p in job.glob("hpc_ckpt_*.ckpt")) == ["hpc_ckpt_1.ckpt"]
    ckpt = torch.load(job / "hpc_ckpt_1.ckpt", weights_only=True)
    assert ckpt["state_dict"]["_extra_state"] == {"iteration": 6, "images_seen": 1200}
    r0, r1 = load(tmp_path / "ranks", 0), load(tmp_path / "ranks", 1)
    assert r0["world_size"] == 2 and r0["rows"] == r1["rows"] and len(r0["rows"]) == 10
