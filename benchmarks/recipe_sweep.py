"""Train variants of one recipe side by side and print their metrics over training (a tuning aid).

Each variant is the recipe with some keys of its YAML replaced (dotted paths, values parsed as YAML), trained
by the real ``lightning-gan fit --config`` in its own process for ``--kimg`` thousand images, with the
recipe's ``MetricsCallback`` evaluated every ``--every`` kimg. ``--parallel`` processes run at once, each
with ``--threads`` threads: on a small CPU two one-thread runs train nearly twice as many images per
second as one two-thread run (the small convolutions of a 32 px model use a second thread poorly); on a GPU
box with many cores, eight runs share one launch-bound GPU well. The output folder gets each variant's
config, log, ``metrics.jsonl`` and sample grids (``NAME_final.png``); checkpoints are deleted unless
``--keep-checkpoints``. Prints one table per variant (kimg, wall seconds, metrics). Figures only.

GAN runs at a few tens of kimg differ a lot between seeds (on stylegan2-shapes32 two seeds of the same
configuration gave shapes FD 144 and 187 at 40 kimg): compare variants over several evaluations and seeds
(``seed_everything=1 model.seed=1``) before believing a difference. Usage::

    python benchmarks/recipe_sweep.py --recipe stylegan2-shapes32 --kimg 30 --parallel 2 --threads 1 \\
        --variant base --variant fast model.g_optimizer.init_args.lr=0.005 model.d_optimizer.init_args.lr=0.005
    python benchmarks/recipe_sweep.py --accelerator cuda --parallel 8 --threads 2 --kimg 80 --variant ...
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


def set_path(config: dict, dotted: str, value: object) -> None:
    """``config[a][b][c] = value`` for ``dotted = "a.b.c"``; a KeyError names a missing key."""
    keys = dotted.split(".")
    node = config
    for i, key in enumerate(keys[:-1]):
        if not isinstance(node, dict) or key not in node:
            raise KeyError(f"{'.'.join(keys[:i + 1])!r} is not in the recipe (override {dotted!r})")
        node = node[key]
    node[keys[-1]] = value


def parse_variant(tokens: list[str]) -> tuple[str, dict[str, object]]:
    """``["NAME", "a.b=1", ...]`` -> ``("NAME", {"a.b": 1, ...})`` (values parsed as YAML)."""
    name, overrides = tokens[0], {}
    for token in tokens[1:]:
        key, sep, value = token.partition("=")
        if not sep:
            raise SystemExit(f"variant {name}: override {token!r} is not KEY=VALUE")
        overrides[key] = yaml.safe_load(value)
    return name, overrides


def variant_config(recipe: str, overrides: dict[str, object], *, run_dir: Path, kimg: float, every: float,
                   accelerator: str) -> dict:
    """The recipe's YAML for one variant: logs under ``run_dir``, ``kimg`` of training, metrics every ``every``."""
    config = yaml.safe_load(registry.recipe_path(recipe).read_text())
    trainer = config.setdefault("trainer", {})
    trainer["accelerator"] = accelerator
    trainer["logger"] = {"class_path": "lightning.pytorch.loggers.CSVLogger",
                         "init_args": {"save_dir": str(run_dir), "name": "log", "version": 0}}
    callbacks = []
    for cb in trainer.get("callbacks", []):
        path = cb.get("class_path", "")
        if path.endswith("ModelCheckpoint"):
            continue
        args = cb.setdefault("init_args", {})
        if path.endswith("MetricsCallback"):
            args["every_n_kimg"] = every
        if path.endswith("InterruptCheckpoint"):
            args["dirpath"] = str(run_dir)
        callbacks.append(cb)
    trainer["callbacks"] = callbacks
    config.setdefault("model", {})["total_kimg"] = kimg
    for key, value in overrides.items():
        set_path(config, key, value)
    return config


def read_metrics(run_dir: Path) -> list[dict]:
    files = sorted(run_dir.rglob("metrics.jsonl"))
    return [json.loads(line) for line in files[0].read_text().splitlines() if line.strip()] if files else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="stylegan2-shapes32")
    parser.add_argument("--variant", nargs="+", action="append", metavar="NAME [KEY=VALUE ...]", required=True,
                        help="a variant: its name, then dotted overrides of the recipe (repeat the option)")
    parser.add_argument("--kimg", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=10.0, help="metrics every this many kimg")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--parallel", type=int, default=1, help="variants trained at once")
    parser.add_argument("--threads", type=int, default=1, help="OMP/torch threads per run")
    parser.add_argument("--deadline", type=float, default=None, help="stop every run after this many seconds")
    parser.add_argument("--out", type=Path, default=Path("runs/sweep"))
    parser.add_argument("--keep-checkpoints", action="store_true")
    args = parser.parse_args()

    variants = dict(parse_variant(tokens) for tokens in args.variant)
    configs = {}
    for name, overrides in variants.items():  # every override is checked before anything trains
        try:
            configs[name] = variant_config(args.recipe, overrides, run_dir=args.out / name, kimg=args.kimg,
                                           every=args.every, accelerator=args.accelerator)
        except KeyError as err:
            raise SystemExit(f"variant {name}: {err.args[0]}") from None
    queue, running, started, wall = list(configs.items()), {}, time.perf_counter(), {}
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1")
    while queue or running:
        if args.deadline is not None and time.perf_counter() - started > args.deadline:
            queue.clear()  # past the deadline: start nothing more
        while queue and len(running) < args.parallel:
            name, config = queue.pop(0)
            run_dir = args.out / name
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
            log = (run_dir / "stdout.txt").open("w")
            cmd = [sys.executable, "-m", "lightning_gan.cli", "fit", "--config", str(run_dir / "config.yaml")]
            running[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env),
                             time.perf_counter(), log)
            print(f"started {name}", flush=True)
        time.sleep(2)
        for name, (proc, t0, log) in list(running.items()):
            late = args.deadline is not None and time.perf_counter() - started > args.deadline
            if proc.poll() is None and late:
                proc.terminate()
                proc.wait()
            if proc.poll() is not None:
                wall[name] = (time.perf_counter() - t0, proc.returncode)
                log.close()
                del running[name]
                print(f"finished {name}: exit {proc.returncode} after {wall[name][0]:.0f} s", flush=True)

    for name in wall:
        run_dir = args.out / name
        if not args.keep_checkpoints:
            for ckpt in run_dir.rglob("*.ckpt"):
                ckpt.unlink()
        final = sorted(run_dir.rglob("samples/final.png"))
        if final:
            final[0].replace(args.out / f"{name}_final.png")
        seconds, code = wall[name]
        print(f"\n{name} ({seconds:.0f} s, exit {code}){'' if code == 0 else ': see ' + str(run_dir / 'stdout.txt')}")
        for row in read_metrics(run_dir):
            values = " ".join(f"{k.split('/')[-1]}={v:.3g}" for k, v in row.items()
                              if "/" in k and isinstance(v, (int, float)) and "classifier" not in k)
            print(f"  {row.get('kimg', 0):6.1f} kimg  {values}")


if __name__ == "__main__":
    main()
