"""BigGAN vs conditional StyleGAN2 on shapes at equal wall-clock time: the shapes metrics side by side.

Trains the recipes ``biggan-shapes32`` and ``stylegan2-shapes32-cond`` with the real ``lightning-gan fit
--config`` for the same number of seconds each (``--seconds``, default 600: biggan-shapes32's budget on 2 CPU
cores), stopped by Lightning's ``trainer.max_time`` (the clock starts when training starts, after setup), then
evaluates each final (EMA) generator once with the shapes metrics (``--num-samples`` images) and prints one
table: kimg reached, images/s, conditional accuracy (``shapes/accuracy``: samples the pinned judge recognizes
as the class they were asked for), recognizable share, FD, coverage, reverse KL. Periodic metrics are off
during the budget (they would cost one run more than the other); sample grids and BigGAN's standing statistics
stay on (the grid costs both runs the same; the statistics are part of the method).

Default: one run after the other, each with ``--threads`` threads (2: the whole laptop). ``--parallel`` runs
the two at once with 1 thread each (side by side on 2 cores; each gets one core). Wall-clock figures depend
on whatever else the machine does: run it alone. Outputs (configs, logs, metrics.jsonl, samples, the final
checkpoints) go to ``--out``; the BigGAN checkpoint makes the README's class grid::

    lightning-gan generate --ckpt OUT/biggan-shapes32/checkpoints/last.ckpt --standing-stats 16 --seeds 0-9

Usage: ``python benchmarks/biggan_vs_stylegan2.py [--seconds 600] [--parallel] [--out runs/biggan_vs_stylegan2]``.
Prints figures only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from lightning_gan import registry

RECIPES = ("biggan-shapes32", "stylegan2-shapes32-cond")
COLUMNS = (("kimg", "kimg", "{:.1f}"), ("img/s", "images_per_s", "{:.0f}"), ("accuracy", "shapes/accuracy", "{:.3f}"),
           ("recognizable", "shapes/recognizable", "{:.3f}"), ("fd", "shapes/fd", "{:.1f}"),
           ("coverage", "shapes/coverage", "{:.0f}"), ("reverse_kl", "shapes/reverse_kl", "{:.3f}"))


def timed_config(recipe: str, *, run_dir: Path, seconds: float, num_samples: int, accelerator: str) -> dict:
    """The recipe's YAML stopped by ``max_time`` after ``seconds`` of training, metrics once at the end."""
    config = yaml.safe_load(registry.recipe_path(recipe).read_text())
    trainer = config.setdefault("trainer", {})
    trainer["accelerator"] = accelerator
    total = max(1, round(seconds))
    trainer["max_time"] = f"{total // 86400:02d}:{total // 3600 % 24:02d}:{total // 60 % 60:02d}:{total % 60:02d}"
    trainer["logger"] = {"class_path": "lightning.pytorch.loggers.CSVLogger",
                         "init_args": {"save_dir": str(run_dir.parent), "name": run_dir.name, "version": ""}}
    callbacks = []
    for cb in trainer.get("callbacks", []):
        path, args = cb.get("class_path", ""), cb.setdefault("init_args", {})
        if path.endswith("MetricsCallback"):
            args.update(every_n_kimg=1e9, num_samples=num_samples)  # only at the end of fit
        if path.endswith("ModelCheckpoint"):
            args.update(dirpath=str(run_dir / "checkpoints"))
        if path.endswith("InterruptCheckpoint"):
            args["dirpath"] = str(run_dir)
        callbacks.append(cb)
    trainer["callbacks"] = callbacks
    config.setdefault("model", {})["total_kimg"] = 1e6  # the clock stops it
    return config


def final_metrics(run_dir: Path) -> dict:
    files = sorted(run_dir.rglob("metrics.jsonl"))
    rows = [json.loads(line) for line in files[0].read_text().splitlines() if line.strip()] if files else []
    return rows[-1] if rows else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="training seconds per run (default 600)")
    parser.add_argument("--parallel", action="store_true", help="both runs at once, 1 thread each")
    parser.add_argument("--threads", type=int, default=2, help="threads per run when not --parallel (default 2)")
    parser.add_argument("--num-samples", type=int, default=5000, help="images for the final shapes metrics")
    parser.add_argument("--seed", type=int, default=0, help="seed_everything of both runs")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("runs/biggan_vs_stylegan2"))
    args = parser.parse_args()

    threads = 1 if args.parallel else args.threads
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    jobs = []
    for recipe in RECIPES:
        run_dir = args.out / recipe
        run_dir.mkdir(parents=True, exist_ok=True)
        config = timed_config(recipe, run_dir=run_dir, seconds=args.seconds, num_samples=args.num_samples,
                              accelerator=args.accelerator)
        config["seed_everything"] = args.seed
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        jobs.append((recipe, run_dir, [sys.executable, "-m", "lightning_gan.cli", "fit", "--config",
                                       str(run_dir / "config.yaml")]))

    results: dict[str, dict] = {}

    def finish(recipe: str, run_dir: Path, proc: subprocess.Popen, t0: float) -> None:
        code = proc.wait()
        row = final_metrics(run_dir)
        row["exit"], row["wall_s"] = code, time.perf_counter() - t0
        row["images_per_s"] = 1000 * row["kimg"] / args.seconds if "kimg" in row else float("nan")
        results[recipe] = row
        print(f"finished {recipe}: exit {code}, {row['wall_s']:.0f} s in all"
              + ("" if code == 0 else f" (see {run_dir / 'stdout.txt'})"), flush=True)

    running = []
    for recipe, run_dir, cmd in jobs:
        log = (run_dir / "stdout.txt").open("w")
        print(f"training {recipe} for {args.seconds:.0f} s ({threads} thread{'s' * (threads > 1)})", flush=True)
        running.append((recipe, run_dir, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env),
                        time.perf_counter()))
        if not args.parallel:
            finish(*running.pop())
    for job in running:
        finish(*job)

    mode = "side by side, 1 thread each" if args.parallel else f"one after the other, {threads} thread(s) each"
    print(f"\nshapes metrics after {args.seconds:.0f} s of training ({mode}; {args.num_samples} samples, EMA generator)")
    header = f"{'recipe':<26}" + "".join(f"{title:>14}" for title, _, _ in COLUMNS)
    print(header)
    print("-" * len(header))
    for recipe in RECIPES:
        row = results.get(recipe, {})
        cells = []
        for _, key, fmt in COLUMNS:
            value = row.get(key)
            cells.append(f"{fmt.format(value):>14}" if isinstance(value, (int, float)) else f"{'-':>14}")
        print(f"{recipe:<26}" + "".join(cells))
    print("\nchance level of the conditional accuracy: 1/6 = 0.167")


if __name__ == "__main__":
    main()
