"""Progressive growing against fixed-resolution training at equal wall-clock time on the shapes data (a benchmark).

Four variants on 64x64 shapes, each trained for the same ``--seconds`` of wall-clock time and then judged by
the shapes metrics (``shapes/fd``, coverage, recognizable share, reverse KL) on ``--num-samples`` images:

* ``progan-grow``: the ``progan-shapes64`` recipe's networks, loss and optimizers, grown 4 -> 64 px by the
  ``ProgressiveGrowing`` callback;
* ``progan-fixed``: the same networks trained at 64 px from the start (a growable pair stands at its last stage);
* ``stylegan2skip-grow``: the ``stylegan2-shapes32`` recipe's settings at 64 px with the skip generator
  (``g_architecture: skip``, ``growable: true``), grown the same way;
* ``stylegan2skip-fixed``: the same skip generator, not growing (``growable: false``): StyleGAN2's claim is that
  the skip architecture does implicitly what growing does explicitly.

The growth schedule is fitted to the time budget: before training, the worker times one iteration of its
networks at every stage (mid-fade and stable, lazy regularizers amortized over their interval), and gives
each fade-in and each stabilization an equal share of ``--grow-share`` of the budget; after the table the run
stays at 64 px until the time is up. The timing of the calibration and of the final evaluation is not
counted; the training loop's own overhead is. Per stage, the measured images per second are printed too.

``--parallel 2 --threads 1`` trains two variants at once with one thread each (on a small CPU two one-thread
runs train nearly twice as many images per second as one two-thread run), which is fair only when every
variant runs under the same pairing: compare numbers from one invocation. Writes ``NAME.png`` (64 samples of
the EMA generator, enlarged to 64 px if the run ended below it) and ``NAME.json`` into ``--out``.
Figures only; GAN runs at this size vary between seeds, so compare several seeds before believing a
difference of a few FD points. Usage::

    python benchmarks/progressive_growing.py --seconds 600 --parallel 2 --threads 1
    python benchmarks/progressive_growing.py --seconds 60 --variants progan-grow progan-fixed  # a quick look
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch import Callback, Trainer, seed_everything

from lightning_gan import registry
from lightning_gan.interfaces import PenaltyInputs, growth_gaps
from lightning_gan.ops.growth import upsample_to
from lightning_gan.utils.images import make_grid_image

from _workers import run_workers  # benchmarks/_workers.py (the script's folder is on sys.path)

RESOLUTION = 64
VARIANTS = {  # name: (recipe the settings come from, grows)
    "progan-grow": ("progan-shapes64", True),
    "progan-fixed": ("progan-shapes64", False),
    "stylegan2skip-grow": ("stylegan2-shapes32", True),
    "stylegan2skip-fixed": ("stylegan2-shapes32", False),
}
METRIC_KEYS = ("shapes/fd", "shapes/coverage", "shapes/recognizable", "shapes/reverse_kl")


# -- one variant ----------------------------------------------------------------------------------
def _optimizer(config: dict) -> Any:
    module_name, _, class_name = config["class_path"].rpartition(".")
    args = dict(config.get("init_args", {}))
    if "betas" in args:
        args["betas"] = tuple(float(b) for b in args["betas"])
    return functools.partial(getattr(importlib.import_module(module_name), class_name), **args)


def module_kwargs(name: str) -> dict[str, Any]:
    """GANModule arguments of a variant: its recipe's model section, at 64 px (see the module docstring)."""
    recipe, grows = VARIANTS[name]
    model = yaml.safe_load(registry.recipe_path(recipe).read_text())["model"]
    architecture = {"class_path": model["architecture"]["class_path"],
                    "init_args": dict(model["architecture"].get("init_args", {}), resolution=RESOLUTION)}
    if architecture["class_path"] == "stylegan2":
        architecture["init_args"].update(g_architecture="skip", growable=grows)
    return dict(architecture=architecture, loss=model.get("loss", "non_saturating"),
                regularizers=model.get("regularizers"), g_optimizer=_optimizer(model["g_optimizer"]),
                d_optimizer=_optimizer(model["d_optimizer"]), ema_kimg=model.get("ema_kimg", 10.0),
                ema_rampup=model.get("ema_rampup", 0.05), total_kimg=None)


def _seconds(fn: Any, reps: int = 2) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def iteration_seconds(module: Any, resolution: int, alpha: float, batch_size: int) -> float:
    """Seconds of one training iteration at a stage: Dmain, Gmain, and each regularizer / its interval."""
    g, d, loss = module.generator, module.discriminator, module.loss_fn
    for net in (g, d):
        net.set_stage(resolution, alpha)
    channels = g.output_shape[0]
    x = torch.rand(batch_size, channels, resolution, resolution) * 2 - 1

    def latents(n: int) -> tuple[torch.Tensor, None]:
        return g.sample_latents(n), None

    def main_step() -> None:
        fake = g(latents(batch_size)[0])
        loss.discriminator_loss(d(x), d(fake.detach())).backward()
        if loss.generator_needs_real:
            loss.generator_loss(d(fake), d(x).detach()).backward()
        else:
            loss.generator_loss(d(fake)).backward()

    total = _seconds(main_step)
    for reg in module.regularizers:
        inputs = PenaltyInputs(generator=g, discriminator=d, real=x, real_c=None, latent_sampler=latents)
        total += _seconds(lambda: reg(inputs).backward()) / reg.interval
    for net in (g, d):
        net.zero_grad(set_to_none=True)
    return total


def fitted_schedule(module: Any, batch_size: int, seconds: float) -> list[dict[str, float]]:
    """Rows for ``ProgressiveGrowing``: every fade-in and stabilization gets ``seconds`` of (timed) training."""
    g = module.generator
    rows = []
    for i, r in enumerate(g.resolutions):
        row: dict[str, float] = {"resolution": r, "fade_kimg": 0.0}
        if i:
            row["fade_kimg"] = round(seconds * batch_size / iteration_seconds(module, r, 0.5, batch_size) / 1000, 3)
        row["stable_kimg"] = round(seconds * batch_size / iteration_seconds(module, r, 1.0, batch_size) / 1000, 3)
        rows.append(row)
    for net in (g, module.discriminator):
        net.set_stage(g.resolutions[-1], 1.0)
    return rows


class StageClock(Callback):
    """Stops training after ``seconds`` of wall-clock time and records images per second at each stage."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = self.trained = 0.0
        self.last: tuple[float, int] = (0.0, 0)
        self.per_stage: dict[int, list[float]] = {}  # resolution -> [seconds, images]

    def on_train_start(self, trainer: Trainer, pl_module: Any) -> None:
        self.start = time.perf_counter()
        self.last = (self.start, pl_module.images_seen)

    def on_train_batch_end(self, trainer: Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        now, images = time.perf_counter(), pl_module.images_seen
        resolution = getattr(pl_module.generator, "resolution", RESOLUTION)
        spent = self.per_stage.setdefault(int(resolution), [0.0, 0])
        spent[0] += now - self.last[0]
        spent[1] += images - self.last[1]
        self.last = (now, images)
        if now - self.start >= self.seconds:
            trainer.should_stop = True

    def on_train_end(self, trainer: Trainer, pl_module: Any) -> None:
        self.trained = time.perf_counter() - self.start  # before the module's final evaluation


def run_variant(name: str, *, seconds: float, grow_share: float, batch_size: int, num_samples: int, seed: int,
                threads: int, out: Path) -> dict[str, Any]:
    from lightning_gan.callbacks import ProgressiveGrowing
    from lightning_gan.data.shapes import ShapesDataModule
    from lightning_gan.metrics.shapes import ShapesMetrics
    from lightning_gan.module import GANModule

    torch.set_num_threads(threads)
    seed_everything(seed, verbose=False)
    module = GANModule(seed=seed, metrics=[ShapesMetrics(num_samples=num_samples, seed=seed)], **module_kwargs(name))
    data = ShapesDataModule(resolution=RESOLUTION, channels=3, batch_size=batch_size, seed=seed)
    grows = VARIANTS[name][1]
    callbacks: list[Callback] = []
    schedule = None
    if grows:
        if growth_gaps(module.generator, module.discriminator):
            raise SystemExit(f"{name}: cannot grow: {'; '.join(growth_gaps(module.generator, module.discriminator))}")
        segments = 2 * len(module.generator.resolutions) - 1
        schedule = fitted_schedule(module, batch_size, grow_share * seconds / segments)
        callbacks.append(ProgressiveGrowing(schedule=schedule))
    clock = StageClock(seconds)
    trainer = Trainer(accelerator="cpu", devices=1, max_epochs=-1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                      num_sanity_val_steps=0, callbacks=[*callbacks, clock])
    trainer.fit(module, datamodule=data)
    metrics = module.final_metrics  # evaluated by the module at the end of fit
    samples = module.sample(64, seed=seed)
    if samples.shape[-1] != RESOLUTION:
        samples = upsample_to(samples, RESOLUTION)
    make_grid_image(samples, nrow=8).save(out / f"{name}.png")
    result = {
        "name": name, "seconds": clock.trained, "kimg": module.images_seen / 1000, "iterations": module.iteration,
        "resolution": int(getattr(module.generator, "resolution", RESOLUTION)),
        "alpha": float(getattr(module.generator, "alpha", 1.0)), "schedule": schedule,
        "images_per_second": {r: images / max(spent, 1e-9) for r, (spent, images) in sorted(clock.per_stage.items())},
        "metrics": {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
    }
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    return result


# -- the comparison -------------------------------------------------------------------------------
def print_table(results: list[dict[str, Any]]) -> None:
    width = max(14, *(len(r["name"]) + 2 for r in results))
    print("\n" + "".join([f"{'':<22}", *(f"{r['name']:>{width}}" for r in results)]))
    rows: list[tuple[str, Any]] = [
        ("seconds trained", lambda r: f"{r['seconds']:.0f}"),
        ("kimg", lambda r: f"{r['kimg']:.1f}"),
        ("final stage", lambda r: f"{r['resolution']} a={r['alpha']:.2f}"),
    ]
    rows += [(key, lambda r, key=key: f"{r['metrics'].get(key, float('nan')):.4g}") for key in METRIC_KEYS]
    for label, cell in rows:
        print("".join([f"{label:<22}", *(f"{cell(r):>{width}}" for r in results)]))
    print("\nimages per second at each stage (training loop, callbacks included):")
    for r in results:
        stages = "  ".join(f"{res}px: {ips:.0f}" for res, ips in r["images_per_second"].items())
        print(f"  {r['name']:<22}{stages}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="wall-clock training time of every variant")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--grow-share", type=float, default=0.5,
                        help="share of the time spent growing (fades and stabilizations below the end of the table)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-samples", type=int, default=5000, help="generated images for the shapes metrics")
    parser.add_argument("--parallel", type=int, default=1, help="variants trained at once")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/progressive_growing"))
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # one variant, in this process
    args = parser.parse_args()
    if not 0.0 < args.grow_share < 1.0:
        raise SystemExit(f"--grow-share must lie in (0, 1), got {args.grow_share}")
    args.out.mkdir(parents=True, exist_ok=True)
    options = dict(seconds=args.seconds, grow_share=args.grow_share, batch_size=args.batch_size,
                   num_samples=args.num_samples, seed=args.seed, threads=args.threads, out=args.out)
    if args.worker:
        run_variant(args.worker, **options)
        return

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1")
    commands = {name: [sys.executable, __file__, "--worker", name, "--seconds", str(args.seconds), "--grow-share",
                       str(args.grow_share), "--batch-size", str(args.batch_size), "--num-samples",
                       str(args.num_samples), "--threads", str(args.threads), "--seed", str(args.seed), "--out",
                       str(args.out)] for name in args.variants}
    failed = run_workers(commands, parallel=args.parallel, env=env, log_dir=args.out)
    results = [json.loads((args.out / f"{n}.json").read_text()) for n in args.variants if n not in failed]
    if results:
        print_table(results)
    for name in failed:
        print(f"{name} failed: see {args.out / (name + '.log')}")
    print(f"\nsample grids: {args.out}/<variant>.png")


if __name__ == "__main__":
    main()
