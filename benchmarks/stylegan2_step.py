"""Images per second of full StyleGAN2 training iterations: GANModule + Lightning Trainer vs a bare PyTorch loop.

One iteration = Dmain every iteration, Dreg (R1, lazy) every 16, Gmain every iteration, Greg (path length,
lazy, half batch) every 4, and the generator EMA update, as in StyleGAN2. The reference configuration:
32x32 RGB, channel_base 4096, channel_max 256, mapping depth 2, z/w dim 512, batch 16, float32, CPU.

Both runs train the same architecture from the same initial weights on the same ShapesDataModule batches:
once through ``GANModule`` and a ``Trainer`` (manual optimization, as the framework trains), once by a bare
loop with plain Adam (lr and betas corrected for the lazy intervals like the framework). Timing starts after
``--warmup`` iterations and covers ``--iterations`` iterations (a multiple of 16 covers whole lazy cycles).
The two runs alternate ``--repeats`` times; the medians are reported with the overhead
``bare img/s / GANModule img/s - 1`` (wall-clock and per CPU time, see ``Rates``), and the overhead from a
decomposition: both runs time their phases (the same computation), so GANModule's extra cost is its extra
time per iteration outside the phases, a figure that on a shared machine is far less noisy than the ratio
of two wall-clock rates measured minutes apart. Both clocks include fetching the batch. Prints figures
only. Usage::

    OMP_NUM_THREADS=2 python benchmarks/stylegan2_step.py [--iterations 16] [--warmup 3] [--repeats 2]
    python benchmarks/stylegan2_step.py --phases   # per-phase milliseconds of the bare loop
    python benchmarks/stylegan2_step.py --profile  # milliseconds per iteration by kind of work
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import statistics
import time
import warnings
from collections import defaultdict

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, Trainer
from torch.profiler import ProfilerActivity, profile, record_function

from lightning_gan.data.shapes import ShapesDataModule
from lightning_gan.ema import ema_beta, update_ema
from lightning_gan.module import GANModule
from lightning_gan.regularizers import R1
from lightning_gan_stylegan2.networks import StyleGAN2Architecture
from lightning_gan_stylegan2.path_length import PathLength

R1_GAMMA, R1_INTERVAL, PL_INTERVAL, PL_WEIGHT, PL_DECAY, PL_SHRINK = 0.01, 16, 4, 2.0, 0.01, 2
LR, BETAS, EMA_KIMG, EMA_RAMPUP = 0.002, (0.0, 0.99), 10.0, 0.05


def reference_spec(**overrides) -> StyleGAN2Architecture:
    kwargs = dict(resolution=32, channels=3, z_dim=512, w_dim=512, mapping_layers=2, channel_base=4096,
                  channel_max=256)
    return StyleGAN2Architecture(**{**kwargs, **overrides})


def datamodule(batch_size: int, iterations: int) -> ShapesDataModule:
    dm = ShapesDataModule(resolution=32, channels=3, batch_size=batch_size, num_samples=batch_size * (iterations + 4))
    dm.setup("fit")
    return dm


class _IterationClock(Callback):
    """Timestamps at the end of every GAN iteration; stops the Trainer after ``warmup + iterations``."""

    def __init__(self, warmup: int, iterations: int) -> None:
        self.warmup, self.iterations = warmup, iterations
        self.stamps: list[tuple[float, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if pl_module.iteration >= self.warmup:
            self.stamps.append((time.perf_counter(), time.process_time()))
        if pl_module.iteration == self.warmup + self.iterations:
            trainer.should_stop = True


class Rates:
    """Figures of one timed run, from (wall, process CPU) stamps at the end of iterations w-1 .. w+n-1.

    ``wall``: timed images / elapsed time. ``cpu``: timed images per process CPU second times the thread
    count, the rate of a fully busy CPU of our own (it leaves out time the virtual CPU was taken away, so it
    compares two runs better on a shared machine). ``outside_ms``: milliseconds per iteration spent outside
    the four phases (EMA, counters, data loading, the Lightning loop): what GANModule may add.
    """

    def __init__(self, stamps: list[tuple[float, float]], phase_seconds: float, batch_size: int) -> None:
        iterations = len(stamps) - 1
        elapsed = stamps[-1][0] - stamps[0][0]
        self.wall = iterations * batch_size / elapsed
        self.cpu = iterations * batch_size * torch.get_num_threads() / (stamps[-1][1] - stamps[0][1])
        self.iteration_ms = 1000 * elapsed / iterations
        self.outside_ms = 1000 * (elapsed - phase_seconds) / iterations


class _TimedGANModule(GANModule):
    """GANModule that records how long each phase takes (the same phases the bare loop times)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.phase_times: list[tuple[int, float]] = []

    def _run_phase(self, phase, optimizer, inputs) -> None:  # noqa: ANN001
        t = time.perf_counter()
        super()._run_phase(phase, optimizer, inputs)
        self.phase_times.append((self.iteration, time.perf_counter() - t))


def run_ganmodule(spec: StyleGAN2Architecture, *, batch_size: int, warmup: int, iterations: int, seed: int) -> Rates:
    torch.manual_seed(seed)
    module = _TimedGANModule(architecture=spec, regularizers=[R1(gamma=R1_GAMMA, interval=R1_INTERVAL), PathLength()],
                             ema_kimg=EMA_KIMG, ema_rampup=EMA_RAMPUP, metrics=[], seed=seed)
    clock = _IterationClock(warmup, iterations)
    trainer = Trainer(accelerator="cpu", devices=1, max_steps=-1, max_epochs=-1, logger=False,
                      enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                      limit_val_batches=0, num_sanity_val_steps=0, callbacks=[clock])
    trainer.fit(module, datamodule(batch_size, warmup + iterations))
    phase_seconds = sum(t for i, t in module.phase_times if warmup <= i < warmup + iterations)
    return Rates(clock.stamps, phase_seconds, batch_size)


def run_bare(spec: StyleGAN2Architecture, *, batch_size: int, warmup: int, iterations: int, seed: int,
             phases: dict[str, list[float]] | None = None) -> Rates:
    """The same phases with plain PyTorch: no Lightning, no registry, no logging."""
    torch.manual_seed(seed)
    G, D = spec.build()
    G.train()
    D.train()
    G_ema = copy.deepcopy(G).requires_grad_(False)
    d_ratio, g_ratio = R1_INTERVAL / (R1_INTERVAL + 1), PL_INTERVAL / (PL_INTERVAL + 1)
    # fused Adam, as GANModule's default optimizer
    opt_d = torch.optim.Adam(D.parameters(), lr=LR * d_ratio, betas=tuple(b ** d_ratio for b in BETAS), eps=1e-8,
                             fused=True)
    opt_g = torch.optim.Adam(G.parameters(), lr=LR * g_ratio, betas=tuple(b ** g_ratio for b in BETAS), eps=1e-8,
                             fused=True)
    latent_rng = torch.Generator().manual_seed(seed * 7919)
    pl_mean = torch.zeros(())
    images_seen, stamps, phase_seconds = 0, [], 0.0

    def step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def mark(name: str, t0: float) -> float:
        nonlocal phase_seconds
        t = time.perf_counter()
        if phases is not None:
            phases[name].append(t - t0)
        if name != "EMA" and warmup <= it < warmup + iterations:
            phase_seconds += t - t0
        return t

    for it, (real, _) in enumerate(datamodule(batch_size, warmup + iterations).train_dataloader()):
        if it == warmup + iterations:
            break
        n = real.shape[0]
        t = time.perf_counter()
        # Dmain
        D.requires_grad_(True)
        G.requires_grad_(False)
        with torch.no_grad():
            fake = G(torch.randn(n, G.z_dim, generator=latent_rng))
        step(opt_d, F.softplus(-D(real)).mean() + F.softplus(D(fake)).mean())
        t = mark("Dmain", t)
        # Dreg: R1 = gamma/2 * ||grad_x D(x)||^2, times the interval
        if it % R1_INTERVAL == 0:
            x = real.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
            step(opt_d, grad.square().flatten(1).sum(1).mean() * (0.5 * R1_GAMMA * R1_INTERVAL))
            t = mark("Dreg", t)
        # Gmain
        G.requires_grad_(True)
        D.requires_grad_(False)
        step(opt_g, F.softplus(-D(G(torch.randn(n, G.z_dim, generator=latent_rng)))).mean())
        t = mark("Gmain", t)
        # Greg: path length on half the batch, times the interval
        if it % PL_INTERVAL == 0:
            ws = G.mapping(torch.randn(n // PL_SHRINK, G.z_dim, generator=latent_rng))
            img = G.synthesis(ws)
            y = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
            (grad,) = torch.autograd.grad((img * y).sum(), ws, create_graph=True)
            lengths = grad.square().sum(2).mean(1).sqrt()
            pl_mean = pl_mean.lerp(lengths.detach().mean(), PL_DECAY)
            step(opt_g, (lengths - pl_mean).square().mean() * (PL_WEIGHT * PL_INTERVAL))
            t = mark("Greg", t)
        with record_function("EMA"):
            update_ema(G_ema, G, ema_beta(n, images_seen, EMA_KIMG, EMA_RAMPUP))
        images_seen += n
        t = mark("EMA", t)
        if it + 1 >= warmup:  # the same stamps as the GANModule clock: after iterations warmup-1 .. end
            stamps.append((t, time.process_time()))
    return Rates(stamps, phase_seconds, batch_size)


_CONV_OPS = ("aten::convolution_backward", "aten::mkldnn_convolution", "aten::_convolution",
             "aten::convolution_overrideable", "aten::slow_conv_transpose2d")


def _category(event) -> str:  # noqa: ANN001 (a profiler event)
    """Where an op's own time goes: convolutions, FIR filtering (upfirdn2d and its derivatives, whichever
    primitive runs it), the optimizer, the EMA update, or everything else (elementwise, reductions, copies)."""
    names, parent = [], event.cpu_parent
    while parent is not None:
        names.append(parent.name)
        parent = parent.cpu_parent
    if any(n.startswith("_UpFirDn2d") for n in names):
        return "FIR filters (upfirdn2d, its derivatives)"
    if any(n.startswith("Optimizer.step") for n in names) or event.name.startswith("Optimizer.step"):
        return "optimizer (Adam)"
    if "EMA" in names:
        return "EMA update"
    if event.name in _CONV_OPS:
        return "convolutions (3x3, 1x1, transposed)"
    return "elementwise, reductions, copies, other"


def profile_iteration(spec: StyleGAN2Architecture, *, batch_size: int, warmup: int, iterations: int) -> None:
    """Milliseconds per iteration of the bare loop by category (torch.profiler, each op's own time), the
    convolutions' throughput against a large matmul's, and the ceiling if everything but them vanished."""
    run_bare(spec, batch_size=batch_size, warmup=0, iterations=max(warmup, 2), seed=0)  # warm the allocator
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t = time.perf_counter()
        run_bare(spec, batch_size=batch_size, warmup=0, iterations=iterations, seed=0)
        whole = 1000 * (time.perf_counter() - t) / iterations
    totals: dict[str, float] = defaultdict(float)
    for event in prof.events():
        if event.name.startswith("aten::") or event.name.startswith("Optimizer.step"):
            totals[_category(event)] += event.self_cpu_time_total / 1000 / iterations
    print(f"bare loop under the profiler: {whole:.0f} ms/iteration ({1000 * batch_size / whole:.2f} img/s), "
          f"{iterations} iterations (lazy R1 once, path length every 4th)")
    for name, ms in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {name:42s} {ms:7.1f} ms/iteration  {100 * ms / whole:5.1f}%")
    conv = totals["convolutions (3x3, 1x1, transposed)"]
    a = torch.randn(2048, 2048)
    x = torch.randn(batch_size, 128, 32, 32).contiguous(memory_format=torch.channels_last)
    w = torch.randn(128, 128, 3, 3).contiguous(memory_format=torch.channels_last)
    peak = _gflops(lambda: a @ a, 2 * 2048 ** 3)
    conv_rate = _gflops(lambda: F.conv2d(x, w, padding=1), 2 * batch_size * 128 * 128 * 9 * 32 * 32)
    print(f"a 2048x2048 matmul runs at {peak:.0f} GFLOP/s, the 128->128 3x3 convolution at 32x32 at {conv_rate:.0f} "
          f"({100 * conv_rate / peak:.0f}%); without everything but the convolutions the iteration would be "
          f"{whole / conv:.2f}x as fast (the ceiling of CPU work on these FLOPs)")


def _gflops(fn, flops: float, repeats: int = 5) -> float:  # noqa: ANN001
    """GFLOP/s of ``fn`` (``flops`` per call), after 3 untimed calls."""
    for _ in range(3):
        fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return repeats * flops / (time.perf_counter() - t) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=16, help="timed iterations per run (default 16)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations first (default 3)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating bare/GANModule runs (default 2)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--phases", action="store_true", help="only the bare loop, with per-phase milliseconds")
    parser.add_argument("--no-channels-last", action="store_true", help="NCHW feature maps")
    parser.add_argument("--profile", action="store_true",
                        help="only the bare loop under torch.profiler: milliseconds per iteration by category")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no "GPU available" banners
    warnings.filterwarnings("ignore", message=".*(LeafSpec|litlogger|does not have many workers).*")
    spec = reference_spec(channels_last=not args.no_channels_last)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{args.iterations} timed iterations after {args.warmup} warm-up, float32, CPU")
    print(f"architecture: {spec!r}")
    kw = dict(batch_size=args.batch_size, warmup=args.warmup, iterations=args.iterations, seed=0)
    if args.profile:
        profile_iteration(spec, batch_size=args.batch_size, warmup=args.warmup, iterations=args.iterations)
        return
    if args.phases:
        phases: dict[str, list[float]] = defaultdict(list)
        rate = run_bare(spec, phases=phases, **kw)
        print(f"bare loop: {rate.wall:.2f} img/s ({rate.cpu:.2f} per CPU time)")
        for name, times in phases.items():
            times = times[-max(1, len(times) * args.iterations // (args.iterations + args.warmup)):]
            print(f"  {name:6s} {1000 * statistics.median(times):8.1f} ms median over {len(times)} runs")
        return
    runs: dict[str, list[Rates]] = {"bare PyTorch loop": [], "GANModule+Trainer": []}
    for r in range(args.repeats):
        runs["bare PyTorch loop"].append(run_bare(spec, **kw))
        runs["GANModule+Trainer"].append(run_ganmodule(spec, **kw))
        print(f"repeat {r + 1}: " + ", ".join(
            f"{label.split()[0]} {v[-1].wall:.2f} img/s (per CPU time {v[-1].cpu:.2f}, outside phases "
            f"{v[-1].outside_ms:.1f} ms/it)" for label, v in runs.items()))
    med = {label: {k: statistics.median(getattr(x, k) for x in v) for k in ("wall", "cpu", "iteration_ms", "outside_ms")}
           for label, v in runs.items()}
    for label, m in med.items():
        print(f"{label}: {m['wall']:.2f} img/s wall-clock, {m['cpu']:.2f} img/s per CPU time, "
              f"{m['iteration_ms']:.0f} ms/iteration of which {m['outside_ms']:.1f} outside the phases "
              f"(medians of {args.repeats})")
    b, g = med["bare PyTorch loop"], med["GANModule+Trainer"]
    print(f"GANModule overhead, wall-clock:     {100 * (b['wall'] / g['wall'] - 1):+.1f}%")
    print(f"GANModule overhead, per CPU time:   {100 * (b['cpu'] / g['cpu'] - 1):+.1f}%")
    print(f"GANModule overhead, outside phases: {100 * (g['outside_ms'] - b['outside_ms']) / b['iteration_ms']:+.2f}% "
          f"(extra ms/iteration outside the identical phases / bare ms per iteration; the least noisy figure)")


if __name__ == "__main__":
    main()
