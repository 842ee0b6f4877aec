"""The progan-shapes64 recipe grown 4 -> 64 px against its networks trained at 64 px from the start (a benchmark).

Two variants of one recipe (default ``progan-shapes64``, or a recipe file of the same form), each in its own
process with one thread:

* ``grow``: the recipe as it is: its networks, loss, regularizers, optimizers, its ``ProgressiveGrowing``
  table and its ``total_kimg``;
* ``fixed``: the same networks, loss, regularizers and optimizers at 64 px from the first iteration (a
  growable pair stands at its last stage), trained for ``--cpu-seconds`` of CPU time.

The budget is CPU time, not wall time: the training loop's ``time.process_time()`` (one thread, so one core's
seconds) from the first iteration to the last, the final evaluation left out. On a machine that other jobs
share, CPU time still counts the work a run did, where wall time would count the neighbours'. The grow
variant stops at its ``total_kimg`` (or at ``--cpu-seconds``, whichever comes first); size the recipe so that
both meet. Both variants are judged by the shapes metrics (``lightning_gan.metrics.shapes``: recognizable share,
classes covered of 6, ``shapes/fd``, reverse KL) on ``--num-samples`` images of the EMA generator; the images
per CPU-second at every resolution are printed too (what converts a time budget into kimg per stage).
``--parallel 2`` (the default) trains both at once, one core each. Writes ``grow.json``, ``fixed.json``,
``grow.ckpt``, ``fixed.ckpt``, their logs (plain progress lines with ``res`` / ``alpha``) and
``progan_growing.png`` (64 samples of each, grow on the left) into ``--out``. One seed per invocation; GAN
runs at this size vary between seeds. Usage::

    python benchmarks/progan_growing.py                                   # the recipe, 900 CPU-seconds each
    python benchmarks/progan_growing.py --recipe my.yaml --cpu-seconds 200 --num-samples 2000  # a pilot
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
from PIL import Image

from lightning_gan import registry
from lightning_gan.utils.images import make_grid_image

from _workers import run_workers  # benchmarks/_workers.py (the script's folder is on sys.path)

VARIANTS = ("grow", "fixed")
METRIC_KEYS = ("shapes/recognizable", "shapes/coverage", "shapes/fd", "shapes/reverse_kl")
GROWTH = "lightning_gan.callbacks.ProgressiveGrowing"


def load_recipe(recipe: str) -> dict[str, Any]:
    """A recipe by name (``progan-shapes64``) or by path (``my.yaml``)."""
    path = Path(recipe)
    if not path.suffix:
        try:
            path = registry.recipe_path(recipe)
        except LookupError as error:
            raise SystemExit(f"--recipe: {error}") from None
    if not path.is_file():
        raise SystemExit(f"--recipe {recipe}: no such recipe or file")
    return yaml.safe_load(path.read_text())


def growth_table(config: dict[str, Any]) -> list[dict[str, Any]]:
    for callback in config.get("trainer", {}).get("callbacks", []):
        if isinstance(callback, dict) and callback.get("class_path") == GROWTH:
            return callback["init_args"]["schedule"]
    raise SystemExit(f"the recipe has no {GROWTH} callback: nothing to compare")


def _optimizer(config: dict[str, Any]) -> Any:
    module_name, _, class_name = config["class_path"].rpartition(".")
    args = dict(config.get("init_args", {}))
    if "betas" in args:
        args["betas"] = tuple(float(b) for b in args["betas"])
    return functools.partial(getattr(importlib.import_module(module_name), class_name), **args)


class CPUClock(Callback):
    """Stops training after ``seconds`` of process CPU time; records CPU time and images at each resolution."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = self.trained = 0.0
        self.last: tuple[float, int] = (0.0, 0)
        self.per_stage: dict[int, list[float]] = {}  # resolution -> [CPU seconds, images]

    def on_train_start(self, trainer: Trainer, pl_module: Any) -> None:
        self.start = time.process_time()
        self.last = (self.start, pl_module.images_seen)

    def on_train_batch_end(self, trainer: Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        now, images = time.process_time(), pl_module.images_seen
        spent = self.per_stage.setdefault(int(batch[0].shape[-1]), [0.0, 0])  # the resolution this batch trained at
        spent[0] += now - self.last[0]
        spent[1] += images - self.last[1]
        self.last = (now, images)
        if now - self.start >= self.seconds:
            trainer.should_stop = True

    def on_train_end(self, trainer: Trainer, pl_module: Any) -> None:
        self.trained = time.process_time() - self.start  # before the module's final evaluation


def run_variant(name: str, *, recipe: str, cpu_seconds: float, num_samples: int, seed: int, out: Path) -> None:
    from lightning_gan.callbacks import GANProgressBar, ProgressiveGrowing
    from lightning_gan.data.shapes import ShapesDataModule
    from lightning_gan.metrics.shapes import ShapesMetrics
    from lightning_gan.module import GANModule

    torch.set_num_threads(1)
    config = load_recipe(recipe)
    model, data_args = config["model"], dict(config["data"]["init_args"])
    schedule = growth_table(config)
    seed_everything(seed, verbose=False)
    module = GANModule(architecture=model["architecture"], loss=model.get("loss", "non_saturating"),
                       regularizers=model.get("regularizers"), g_optimizer=_optimizer(model["g_optimizer"]),
                       d_optimizer=_optimizer(model["d_optimizer"]), ema_kimg=model.get("ema_kimg", 10.0),
                       ema_rampup=model.get("ema_rampup", 0.05),
                       total_kimg=model.get("total_kimg") if name == "grow" else None, seed=seed,
                       metrics=[ShapesMetrics(num_samples=num_samples, seed=seed)])
    data = ShapesDataModule(**data_args, seed=seed)
    clock = CPUClock(cpu_seconds)
    callbacks: list[Callback] = [clock, GANProgressBar(log_every_s=30.0)]
    if name == "grow":
        callbacks.append(ProgressiveGrowing(schedule=schedule))
    trainer = Trainer(accelerator="cpu", devices=1, max_epochs=-1, logger=False, enable_checkpointing=False,
                      enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, callbacks=callbacks)
    trainer.fit(module, datamodule=data)
    metrics = module.final_metrics  # evaluated by the module at the end of fit (EMA generator, full stage)
    make_grid_image(module.sample(64, seed=seed), nrow=8).save(out / f"{name}.png")
    trainer.save_checkpoint(out / f"{name}.ckpt")  # for `lightning-gan evaluate` with more samples or other metrics
    result = {
        "name": name, "recipe": recipe, "cpu_seconds": clock.trained, "kimg": module.images_seen / 1000,
        "resolution": int(getattr(module.generator, "resolution", data_args["resolution"])),
        "alpha": float(getattr(module.generator, "alpha", 1.0)),
        "images_per_cpu_second": {r: images / max(spent, 1e-9)
                                  for r, (spent, images) in sorted(clock.per_stage.items())},
        "metrics": {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
    }
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))


def print_table(results: list[dict[str, Any]]) -> None:
    print("\n" + "".join([f"{'':<24}", *(f"{r['name']:>12}" for r in results)]))
    rows: list[tuple[str, Any]] = [
        ("CPU seconds trained", lambda r: f"{r['cpu_seconds']:.0f}"),
        ("kimg", lambda r: f"{r['kimg']:.1f}"),
        ("final stage", lambda r: f"{r['resolution']} a={r['alpha']:.2f}"),
        ("recognizable", lambda r: f"{r['metrics'].get('shapes/recognizable', float('nan')):.2f}"),
        ("classes covered (of 6)", lambda r: f"{r['metrics'].get('shapes/coverage', float('nan')):.0f}"),
        ("shapes/fd", lambda r: f"{r['metrics'].get('shapes/fd', float('nan')):.1f}"),
        ("reverse KL", lambda r: f"{r['metrics'].get('shapes/reverse_kl', float('nan')):.2f}"),
    ]
    for label, cell in rows:
        print("".join([f"{label:<24}", *(f"{cell(r):>12}" for r in results)]))
    print("\nimages per CPU-second at each resolution (training loop, callbacks included):")
    for r in results:
        stages = "  ".join(f"{res}px: {ips:.0f}" for res, ips in r["images_per_cpu_second"].items())
        print(f"  {r['name']:<10}{stages}")


def side_by_side(paths: list[Path], out: Path) -> None:
    """The variants' sample grids next to each other, 8 px of white between them."""
    images = [Image.open(p).convert("RGB") for p in paths]
    gap = 8
    canvas = Image.new("RGB", (sum(i.width for i in images) + gap * (len(images) - 1), max(i.height for i in images)),
                       "white")
    x = 0
    for image in images:
        canvas.paste(image, (x, 0))
        x += image.width + gap
    canvas.save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="progan-shapes64", help="a recipe name or a recipe file")
    parser.add_argument("--cpu-seconds", type=float, default=900.0,
                        help="CPU time of each variant's training loop (one thread); grow also stops at total_kimg")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--num-samples", type=int, default=5000, help="generated images for the shapes metrics")
    parser.add_argument("--parallel", type=int, default=2, help="variants trained at once (one thread each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/progan_growing"))
    parser.add_argument("--worker", choices=VARIANTS, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cpu_seconds <= 0 or args.num_samples < 1 or args.parallel < 1:
        raise SystemExit("--cpu-seconds, --num-samples and --parallel must be positive")
    growth_table(load_recipe(args.recipe))  # a recipe that cannot grow ends here, before any training
    args.out.mkdir(parents=True, exist_ok=True)
    if args.worker:
        run_variant(args.worker, recipe=args.recipe, cpu_seconds=args.cpu_seconds, num_samples=args.num_samples,
                    seed=args.seed, out=args.out)
        return

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    commands = {name: [sys.executable, __file__, "--worker", name, "--recipe", args.recipe, "--cpu-seconds",
                       str(args.cpu_seconds), "--num-samples", str(args.num_samples), "--seed", str(args.seed),
                       "--out", str(args.out)] for name in args.variants}
    failed = run_workers(commands, parallel=args.parallel, env=env, log_dir=args.out, echo_log=True)
    done = [n for n in args.variants if n not in failed]
    results = [json.loads((args.out / f"{n}.json").read_text()) for n in done]
    if results:
        print_table(results)
        side_by_side([args.out / f"{n}.png" for n in done], args.out / "progan_growing.png")
        print(f"\nsample grids ({', '.join(done)}, left to right): {args.out / 'progan_growing.png'}")
    for name in failed:
        print(f"{name} failed: see {args.out / (name + '.log')}")


if __name__ == "__main__":
    main()
