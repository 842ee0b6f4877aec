"""Synchronized conditional batch norm across processes (BigGAN's ``sync_bn``, ``--trainer.sync_batchnorm``).

Two gloo processes with half of a batch each must give what one process gives with the whole batch: outputs,
gradients and running statistics, for ``batch`` and ``class_grouped`` statistics (with classes that only one
process holds). Gradients: each process's loss is the sum over its own samples, so the global loss is the sum of
the processes' losses; the input gradients of each process are then the matching rows of the one-process input
gradient, and the parameter gradients summed over processes are the one-process parameter gradient (GANModule
averages the processes' gradients of per-process mean losses: with equal halves the same thing).
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import Tensor

from lightning_gan.utils.standing_stats import batch_norm_modules, standing_statistics
from lightning_gan_biggan.layers import BN_STATISTICS, ConditionalBatchNorm2d
from lightning_gan_biggan.networks import BigGANArchitecture

HERE = Path(__file__).parent
N, C, H, W, D, K = 8, 3, 4, 4, 5, 5  # batch, channels, height, width, conditioning size, classes
HALF = N // 2
# Class 0 only in process 0's half, classes 2 and 3 only in process 1's, class 1 in both, class 4 nowhere.
LABELS = [0, 1, 0, 1, 1, 2, 3, 3]
DTYPES = {"float64": (torch.float64, 1e-10), "float32": (torch.float32, 1e-5)}
STEPS = 2  # forward/backward passes: the running statistics of the second build on the first


def _layer_case(statistics: str, dtype: torch.dtype) -> tuple[ConditionalBatchNorm2d, list[Tensor], Tensor, Tensor,
                                                                  Tensor]:
    """The layer, the inputs of every step [N, C, H, W], conditions [N, D], labels [N] and the loss weights
    ``w`` [N, C, H, W] of ``loss = sum(y * w)``: the same in every process (seeded)."""
    gen = torch.Generator().manual_seed(1)
    layer = ConditionalBatchNorm2d(C, cond_dim=D, statistics=statistics, num_classes=K, momentum=0.3).to(dtype)
    with torch.no_grad():
        layer.gain_map.weight.copy_(torch.randn(C, D, generator=gen, dtype=dtype) * 0.5)
        layer.bias_map.weight.copy_(torch.randn(C, D, generator=gen, dtype=dtype) * 0.5)
    xs = [torch.randn(N, C, H, W, generator=gen, dtype=dtype) * (1 + s) + 2.0 for s in range(STEPS)]  # mean off 0
    cond = torch.randn(N, D, generator=gen, dtype=dtype)
    w = torch.randn(N, C, H, W, generator=gen, dtype=dtype)
    return layer, xs, cond, torch.tensor(LABELS), w


def _run_steps(layer: ConditionalBatchNorm2d, xs: list[Tensor], cond: Tensor, labels: Tensor, w: Tensor,
               part: slice) -> dict[str, Any]:
    """``STEPS`` training passes on the samples ``part``: outputs, input and parameter gradients of every step,
    and the buffers at the end."""
    out: dict[str, Any] = {"y": [], "x_grad": [], "gain_grad": [], "bias_grad": []}
    layer.train()
    for x in xs:
        layer.zero_grad(set_to_none=True)
        xp = x[part].clone().requires_grad_(True)
        y = layer(xp, cond[part], labels[part])
        (y * w[part]).sum().backward()
        out["y"].append(y.detach())
        out["x_grad"].append(xp.grad)
        out["gain_grad"].append(layer.gain_map.weight.grad.clone())
        out["bias_grad"].append(layer.bias_map.weight.grad.clone())
    out["buffers"] = {k: v.clone() for k, v in layer.state_dict().items() if "running" in k or "tracked" in k}
    return out


def _tiny_generator(statistics: str, sync: bool) -> torch.nn.Module:
    """A 32 px BigGAN generator with 3 classes and 4 channels everywhere, the same weights in every process."""
    torch.manual_seed(3)
    spec = BigGANArchitecture(resolution=32, c_dim=3, z_dim=8, shared_dim=4, g_widths=[4, 4, 4, 4],
                              d_widths=[4, 4, 4, 4], bn_statistics=statistics, sync_bn=sync)
    return spec.build().generator


def _norm_buffers(generator: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in generator.state_dict().items() if "running" in k or "tracked" in k}


def layer_worker(rank: int, port: int, out: str) -> None:
    """One of two gloo processes: the layer cases with half the batch, and standing statistics."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        results: dict[str, Any] = {}
        part = slice(rank * HALF, (rank + 1) * HALF)
        for statistics in BN_STATISTICS:
            for name, (dtype, _) in DTYPES.items():
                layer, xs, cond, labels, w = _layer_case(statistics, dtype)
                layer.set_sync_batchnorm()
                results[f"layer/{statistics}/{name}"] = _run_steps(layer, xs, cond, labels, w, part)
            for sync in (True, False):
                g = _tiny_generator(statistics, sync)
                calls: list[tuple[Tensor, Tensor]] = []  # the (z, c) of every standing-statistics pass
                g.register_forward_pre_hook(lambda _, args: calls.append((args[0].clone(), args[1].clone())))
                # a seed per process: the two processes draw different latents and classes
                standing_statistics(g, num_batches=2, batch_size=4, seed=rank)
                results[f"standing/{statistics}/{sync}"] = {"buffers": _norm_buffers(g), "calls": calls}
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


LAYER_SCRIPT = """
import sys, torch
sys.path.insert(0, {here!r})
from test_biggan_sync_bn import layer_worker

if __name__ == "__main__":
    torch.multiprocessing.spawn(layer_worker, args=({port}, {out!r}), nprocs=2)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """What each of the two processes of ``layer_worker`` saved (one process group for all the cases)."""
    from conftest import run_process  # tests/conftest.py: the processes die with the call

    tmp = tmp_path_factory.mktemp("sync_bn")
    script = tmp / "layer.py"
    script.write_text(LAYER_SCRIPT.format(here=str(HERE), port=_free_port(), out=str(tmp)))
    result = run_process([sys.executable, str(script)], cwd=tmp, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("statistics", BN_STATISTICS)
def test_two_halves_give_the_outputs_gradients_and_running_stats_of_the_whole_batch(
        two_processes: list[dict[str, Any]], statistics: str, dtype_name: str) -> None:
    dtype, tol = DTYPES[dtype_name]
    layer, xs, cond, labels, w = _layer_case(statistics, dtype)
    ref = _run_steps(layer, xs, cond, labels, w, slice(0, N))  # one process, the whole batch
    ranks = [r[f"layer/{statistics}/{dtype_name}"] for r in two_processes]
    close = dict(rtol=tol, atol=tol)
    for step in range(STEPS):
        torch.testing.assert_close(torch.cat([r["y"][step] for r in ranks]), ref["y"][step], **close)
        torch.testing.assert_close(torch.cat([r["x_grad"][step] for r in ranks]), ref["x_grad"][step], **close)
        for grad in ("gain_grad", "bias_grad"):
            torch.testing.assert_close(ranks[0][grad][step] + ranks[1][grad][step], ref[grad][step], **close)
    for key, value in ref["buffers"].items():
        assert torch.equal(ranks[0]["buffers"][key], ranks[1]["buffers"][key]), key  # the same on every process
        torch.testing.assert_close(ranks[0]["buffers"][key], value, **close)
    if statistics == "class_grouped":  # classes 0, 2, 3 tracked though only one process held them; 4 never
        assert ref["buffers"]["num_batches_tracked"].tolist() == [STEPS] * 4 + [0]


@pytest.mark.parametrize("statistics", BN_STATISTICS)
def test_standing_statistics_agree_across_processes_when_synchronized(
        two_processes: list[dict[str, Any]], statistics: str) -> None:
    """Each process draws its own latents (seed = rank): synchronized, both end with the buffers one process
    gets from the passes' union (batches of 8); unsynchronized, each keeps its own."""
    synced = [r[f"standing/{statistics}/True"] for r in two_processes]
    for key, value in synced[0]["buffers"].items():
        assert torch.equal(value, synced[1]["buffers"][key]), key
    g = _tiny_generator(statistics, sync=False)
    union = iter([(torch.cat([z0, z1]), torch.cat([c0, c1]))
                  for (z0, c0), (z1, c1) in zip(synced[0]["calls"], synced[1]["calls"], strict=True)])
    forward = g.forward
    g.forward = lambda z, c: forward(*next(union))  # each pass sees both processes' latents and classes
    standing_statistics(g, num_batches=2, batch_size=4, seed=0)
    for key, value in _norm_buffers(g).items():
        torch.testing.assert_close(synced[0]["buffers"][key], value, rtol=1e-5, atol=1e-5)
    apart = [r[f"standing/{statistics}/False"]["buffers"] for r in two_processes]
    assert not torch.allclose(apart[0]["blocks.0.bn1.running_mean"], apart[1]["blocks.0.bn1.running_mean"])


@pytest.mark.parametrize("statistics", BN_STATISTICS)
def test_without_a_process_group_sync_is_the_plain_layer_bit_for_bit(statistics: str) -> None:
    plain = _run_steps(*_layer_case(statistics, torch.float32), slice(0, N))
    layer, *rest = _layer_case(statistics, torch.float32)
    layer.set_sync_batchnorm()
    synced = _run_steps(layer, *rest, slice(0, N))
    for key in ("y", "x_grad", "gain_grad", "bias_grad"):
        for a, b in zip(plain[key], synced[key], strict=True):
            assert torch.equal(a, b), key
    for key, value in plain["buffers"].items():
        assert torch.equal(value, synced["buffers"][key]), key


def test_sync_bn_option_reaches_every_conditional_norm_and_the_config() -> None:
    spec = BigGANArchitecture(resolution=32, c_dim=3, z_dim=8, shared_dim=4, g_widths=[4, 4, 4, 4],
                              d_widths=[4, 4, 4, 4], sync_bn=True)
    g = spec.build().generator
    norms = [m for m in g.modules() if isinstance(m, ConditionalBatchNorm2d)]
    assert len(norms) == 7 and all(m.sync for m in norms)  # 3 blocks x 2 + the output BN
    assert spec.config()["init_args"]["sync_bn"] is True
    assert not any(m.sync for m in BigGANArchitecture(resolution=32, g_widths=[4] * 4, d_widths=[4] * 4).build()
                   .generator.modules() if isinstance(m, ConditionalBatchNorm2d))
    assert len(batch_norm_modules(g)) == 7


FIT_SCRIPT = """
import sys, torch, lightning.pytorch as pl
from lightning_gan.data.shapes import ShapesDataModule
from lightning_gan.module import GANModule
from lightning_gan_biggan.layers import ConditionalBatchNorm2d
from lightning_gan_biggan.networks import BigGANArchitecture


class Dump(pl.Callback):
    def on_train_end(self, trainer, pl_module):
        g = pl_module.generator
        torch.save({{"buffers": {{k: v for k, v in g.state_dict().items() if "running" in k or "tracked" in k}},
                    "sync": [m.sync for m in g.modules() if isinstance(m, ConditionalBatchNorm2d)]}},
                   f"{out}/rank{{trainer.global_rank}}.pt")


if __name__ == "__main__":
    torch.set_num_threads(1)
    spec = BigGANArchitecture(resolution=32, c_dim=6, z_dim=8, shared_dim=4, g_widths=[4, 4, 4, 4],
                              d_widths=[4, 4, 4, 4], bn_statistics={statistics!r})
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", sync_batchnorm={sync}, max_steps=4,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                         callbacks=[Dump()], default_root_dir={out!r})
    trainer.fit(GANModule(architecture=spec, loss="hinge", ema_kimg=None, metrics=[]),
                ShapesDataModule(num_samples=32, batch_size=4))
"""


@pytest.mark.slow
@pytest.mark.parametrize("sync", [True, False])
def test_trainer_sync_batchnorm_flag_keeps_running_statistics_identical_on_both_ranks(tmp_path, sync: bool) -> None:
    """A tiny BigGAN fit on 2 DDP processes: with ``sync_batchnorm=True`` the generator's conditional BN
    running statistics end identical on both ranks; without it each rank averaged its own batches."""
    from conftest import isolated_env, run_process  # tests/conftest.py

    script = tmp_path / "fit.py"
    script.write_text(FIT_SCRIPT.format(out=str(tmp_path), statistics="class_grouped", sync=sync))
    result = run_process([sys.executable, str(script)], cwd=tmp_path, env=isolated_env(tmp_path),
                         capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["sync"] == r1["sync"] == [sync] * 7
    same = [torch.equal(v, r1["buffers"][k]) for k, v in r0["buffers"].items() if "running" in k]
    assert len(same) == 14  # running mean and var of 7 norms
    if sync:
        assert all(same)
    else:
        assert not any(same)  # each rank's own batches
