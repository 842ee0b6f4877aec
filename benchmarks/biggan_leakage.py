"""Class leakage of conditional BN on class-imbalanced shapes: no remedy vs class-grouped statistics vs balanced batches.

Trains a recipe (default ``biggan-shapes32``) on shapes with one class (``--minority``, default circle) at
``--share`` (5%) of the images and the other five sharing the rest, three ways at the same budget (``--kimg``
thousand real images shown to D):

* ``none``: the recipe as it is (batch statistics, shuffled batches: about 5% minority per batch);
* ``class_grouped``: ``model.architecture.init_args.bn_statistics=class_grouped`` (the generator's BN
  normalizes each class with its own statistics);
* ``balanced``: ``data.init_args.balance_classes=true`` (every batch holds the classes in equal shares, the
  minority oversampled; ``lightning_gan.data.base.ClassBalancedSampler``).

Each variant is trained by the real ``lightning-gan fit --config`` in its own process, one after the other
(with ``--threads`` threads), its metrics callback removed and a final checkpoint kept. Then, from each final
checkpoint (the EMA generator, as saved, in eval mode): the shapes metric's conditional accuracy over all
classes and per class (``ShapesMetrics(per_class_accuracy=True)``, ``--num-samples`` samples in equal class
shares), and the trained-model leakage (``lightning_gan.analysis.leakage.measure_leakage``: pure-class vs mixed
batch in training mode, the mixed batch with the data's class proportions) of the minority and, averaged, of
the other classes. Prints one table. Quality at a fixed kimg is comparable under CPU load; wall times are not.
One seed per variant: GAN runs this short differ between seeds, so treat small differences as noise.

Usage::

    python benchmarks/biggan_leakage.py --kimg 30                      # the measurement (about 3 x 10 min)
    python benchmarks/biggan_leakage.py --kimg 0.2 --num-samples 300 \\
        --set model.architecture.init_args.g_widths=[16,16,16,16] ...    # a smoke test
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
from lightning_gan.data.shapes import SHAPES

VARIANTS: dict[str, dict[str, object]] = {
    "none": {},
    "class_grouped": {"model.architecture.init_args.bn_statistics": "class_grouped"},
    "balanced": {"data.init_args.balance_classes": True},
}


def set_path(config: dict, dotted: str, value: object) -> None:
    """``config[a][b][c] = value`` for ``dotted = "a.b.c"`` (intermediate mappings created)."""
    keys = dotted.split(".")
    node = config
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value


def proportions(minority: str, share: float) -> list[float]:
    """Class shares over ``SHAPES``: ``share`` for the minority, the rest split equally."""
    rest = (1.0 - share) / (len(SHAPES) - 1)
    return [share if name == minority else rest for name in SHAPES]


def variant_config(recipe: str, overrides: dict[str, object], *, run_dir: Path, kimg: float, minority: str,
                   share: float) -> dict:
    """The recipe with imbalanced classes, ``kimg`` of training, no metrics callback, a final ``last.ckpt``."""
    config = yaml.safe_load(registry.recipe_path(recipe).read_text())
    trainer = config.setdefault("trainer", {})
    trainer["accelerator"] = "cpu"
    trainer["logger"] = {"class_path": "lightning.pytorch.loggers.CSVLogger",
                         "init_args": {"save_dir": str(run_dir), "name": "log", "version": 0}}
    callbacks = []
    for cb in trainer.get("callbacks", []):
        path = cb.get("class_path", "")
        if path.endswith(("ModelCheckpoint", "MetricsCallback")):
            continue
        args = cb.setdefault("init_args", {})
        if path.endswith("InterruptCheckpoint"):
            args["dirpath"] = str(run_dir)
        if path.endswith("SampleGrid"):
            args["every_n_kimg"] = kimg
        callbacks.append(cb)
    callbacks.append({"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                      "init_args": {"dirpath": str(run_dir), "save_last": True, "save_top_k": 0}})
    trainer["callbacks"] = callbacks
    model = config.setdefault("model", {})
    model["total_kimg"] = kimg
    data = config.setdefault("data", {}).setdefault("init_args", {})
    data["class_proportions"] = proportions(minority, share)
    for key, value in overrides.items():
        set_path(config, key, value)
    return config


def evaluate(ckpt: Path, *, minority: str, num_samples: int, seed: int) -> dict[str, float]:
    """Conditional accuracy (all, minority, others' mean) and leakage (minority, others' mean) of a checkpoint."""
    from lightning_gan.analysis.leakage import has_batch_norm, measure_leakage
    from lightning_gan.analysis.report import load_networks
    from lightning_gan.metrics.shapes import ShapesMetrics

    nets = load_networks(ckpt)
    dm = nets.datamodule
    metric = ShapesMetrics(num_samples=num_samples, seed=seed, per_class_accuracy=True)
    results = metric.compute(nets.generator, dm)
    k = list(dm.classes).index(minority)
    others = [c for c in dm.classes if c != minority]
    out = {"accuracy": results["shapes/accuracy"], "accuracy_minority": results[f"shapes/accuracy/{minority}"],
           "accuracy_others": sum(results[f"shapes/accuracy/{c}"] for c in others) / len(others),
           "fd": results["shapes/fd"], "kimg": nets.info.get("kimg", float("nan"))}
    if has_batch_norm(nets.generator):
        rows = measure_leakage(nets.generator, batch_size=256, proportions=dm.class_proportions, seed=seed)
        out["leakage_minority"] = rows[k].relative
        out["leakage_others"] = sum(r.relative for r in rows if r.label != k) / (len(rows) - 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="biggan-shapes32")
    parser.add_argument("--kimg", type=float, default=30.0, help="training budget per variant (real images / 1000)")
    parser.add_argument("--minority", default="circle", choices=SHAPES)
    parser.add_argument("--share", type=float, default=0.05, help="the minority's share of the images")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra dotted overrides of the recipe for every variant (values parsed as YAML)")
    parser.add_argument("--num-samples", type=int, default=3000, help="generated samples for the accuracy")
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluation's latents")
    parser.add_argument("--threads", type=int, default=1, help="OMP/torch threads of each training run")
    parser.add_argument("--out", type=Path, default=Path("runs/biggan_leakage"))
    parser.add_argument("--eval-only", action="store_true", help="evaluate the runs already in --out")
    args = parser.parse_args()
    if not 0.0 < args.share < 1.0:
        raise SystemExit(f"--share must be in (0, 1), got {args.share}")
    extra = {}
    for token in args.set:
        key, sep, value = token.partition("=")
        if not sep:
            raise SystemExit(f"--set {token!r} is not KEY=VALUE")
        extra[key] = yaml.safe_load(value)

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1")
    rows = {}
    for name in args.variants:
        run_dir = args.out / name
        if not args.eval_only:
            run_dir.mkdir(parents=True, exist_ok=True)
            config = variant_config(args.recipe, {**extra, **VARIANTS[name]}, run_dir=run_dir, kimg=args.kimg,
                                    minority=args.minority, share=args.share)
            (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
            start = time.perf_counter()
            with (run_dir / "stdout.txt").open("w") as log:
                code = subprocess.call([sys.executable, "-m", "lightning_gan.cli", "fit", "--config",
                                        str(run_dir / "config.yaml")], stdout=log, stderr=subprocess.STDOUT, env=env)
            print(f"{name}: exit {code} after {time.perf_counter() - start:.0f} s (under load: rough)", flush=True)
            if code != 0:
                print(f"  see {run_dir / 'stdout.txt'}", flush=True)
                continue
        ckpt = run_dir / "last.ckpt"
        if not ckpt.is_file():
            print(f"{name}: no {ckpt}", flush=True)
            continue
        rows[name] = evaluate(ckpt, minority=args.minority, num_samples=args.num_samples, seed=args.seed)
        (run_dir / "result.json").write_text(json.dumps(rows[name], indent=2))

    print(f"\n{args.recipe}, {args.minority} at {args.share:.0%} of the images, {args.kimg:g} kimg per variant; "
          f"accuracy = shapes/accuracy of {args.num_samples} EMA samples (eval mode), leakage = relative RMS "
          f"pure-class vs mixed batch (train mode, the data's class mix)")
    print(f"{'variant':14s} {'kimg':>6s} {'acc all':>8s} {'acc ' + args.minority:>11s} {'acc others':>10s} "
          f"{'shapes fd':>9s} {'leak ' + args.minority:>12s} {'leak others':>11s}")
    for name, r in rows.items():
        print(f"{name:14s} {r['kimg']:6.1f} {r['accuracy']:8.3f} {r['accuracy_minority']:11.3f} "
              f"{r['accuracy_others']:10.3f} {r['fd']:9.2f} {r.get('leakage_minority', float('nan')):12.4f} "
              f"{r.get('leakage_others', float('nan')):11.4f}")


if __name__ == "__main__":
    main()
