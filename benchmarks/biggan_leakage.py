"""Class leakage of conditional BN on class-imbalanced shapes: no remedy vs class-grouped statistics vs balanced batches.

Trains a recipe (default ``biggan-shapes32``) on shapes with one class (``--minority``, default circle) at
``--share`` (5%) of the images and the other five sharing the rest, three ways at the same budget (``--kimg``
thousand real images shown to D), each with every training seed of ``--seeds``:

* ``none``: the recipe as it is (batch statistics, shuffled batches: about 5% minority per batch);
* ``class_grouped``: ``model.architecture.init_args.bn_statistics=class_grouped`` (the generator's BN
  normalizes each class with its own statistics);
* ``balanced``: ``data.init_args.balance_classes=true`` (every batch holds the classes in equal shares, the
  minority oversampled; ``lightning_gan.data.base.ClassBalancedSampler``).

Each run is the real ``lightning-gan fit --config`` in its own process with ``--threads`` threads (default 1),
``--parallel`` of them at a time (default 1; 2 on 2 cores), its metrics callback removed and a final checkpoint
kept; ``seed_everything`` is the run's seed, the data (seed 0) the same for all. Every run trains exactly
``--kimg``, so the quality figures compare at equal images shown whatever the load; wall times do not compare.

Then, from each final checkpoint (the EMA generator): standing statistics as ``lightning-gan generate
--standing-stats 16`` runs them (16 batches of 64, the classes in the shares the run's training batches had:
the data's, equal under ``balance_classes``), and in eval mode the shapes metric's conditional accuracy over all
classes and per class (``ShapesMetrics(per_class_accuracy=True)``, ``--num-samples`` samples in equal class
shares) and FD; the minority's accuracy again after standing statistics with equal class shares (``acc unif``,
what the standing statistics gave before they followed the data); and the trained-model leakage
(``lightning_gan.analysis.leakage.measure_leakage``: pure-class vs mixed batch in training mode, the mixed batch
with the data's class proportions) of the minority and, averaged, of the other classes. Prints one row per run
and the mean and sample standard deviation over the seeds per variant, and writes them to ``--out``/summary.json.

Usage::

    python benchmarks/biggan_leakage.py --kimg 20 --seeds 0-2 --parallel 2                     # the measurement
    python benchmarks/biggan_leakage.py --kimg 20 --seeds 0-2 --parallel 2 --minority star
    python benchmarks/biggan_leakage.py --kimg 0.2 --seeds 0 --num-samples 300 \\
        --set model.architecture.init_args.g_widths=[16,16,16,16] ...                         # a smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from lightning_gan import registry
from lightning_gan.commands import parse_seeds
from lightning_gan.data.shapes import SHAPES

VARIANTS: dict[str, dict[str, object]] = {
    "none": {},
    "class_grouped": {"model.architecture.init_args.bn_statistics": "class_grouped"},
    "balanced": {"data.init_args.balance_classes": True},
}
# (key, column header, format) of the per-run results
COLUMNS = (("accuracy", "acc all", "{:.3f}"), ("accuracy_minority", "acc min", "{:.3f}"),
           ("accuracy_minority_uniform", "acc unif", "{:.3f}"), ("accuracy_others", "acc others", "{:.3f}"),
           ("fd", "shapes fd", "{:.1f}"), ("leakage_minority", "leak min", "{:.3f}"),
           ("leakage_others", "leak others", "{:.3f}"))
STANDING_BATCHES = 16  # as `lightning-gan generate --standing-stats 16`


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
                   share: float, seed: int) -> dict:
    """The recipe with imbalanced classes, training seed ``seed``, ``kimg`` of training, no metrics callback, a
    final ``last.ckpt``."""
    config = yaml.safe_load(registry.recipe_path(recipe).read_text())
    config["seed_everything"] = seed
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
    """Conditional accuracy (all, minority, others' mean), FD and leakage (minority, others' mean) of a checkpoint."""
    from lightning_gan.analysis.leakage import has_batch_norm, measure_leakage
    from lightning_gan.analysis.report import load_networks
    from lightning_gan.metrics.shapes import ShapesMetrics
    from lightning_gan.utils.standing_stats import standing_statistics

    nets = load_networks(ckpt)
    dm = nets.datamodule
    metric = ShapesMetrics(num_samples=num_samples, seed=seed, per_class_accuracy=True)
    k = list(dm.classes).index(minority)
    others = [c for c in dm.classes if c != minority]
    out: dict[str, float] = {"kimg": nets.info.get("kimg", float("nan"))}
    if has_batch_norm(nets.generator):  # the mix the sampler must see: equal shares first, then the training mix
        standing_statistics(nets.generator, num_batches=STANDING_BATCHES, class_shares=None)
        out["accuracy_minority_uniform"] = metric.compute(nets.generator, dm)[f"shapes/accuracy/{minority}"]
        standing_statistics(nets.generator, num_batches=STANDING_BATCHES, class_shares=dm.class_shares())
    results = metric.compute(nets.generator, dm)
    out.update(accuracy=results["shapes/accuracy"], accuracy_minority=results[f"shapes/accuracy/{minority}"],
               accuracy_others=sum(results[f"shapes/accuracy/{c}"] for c in others) / len(others),
               fd=results["shapes/fd"])
    if has_batch_norm(nets.generator):
        rows = measure_leakage(nets.generator, batch_size=256, proportions=dm.class_proportions, seed=seed)
        out["leakage_minority"] = rows[k].relative
        out["leakage_others"] = sum(r.relative for r in rows if r.label != k) / (len(rows) - 1)
    return out


def train_all(jobs: list[tuple[str, int, Path]], *, parallel: int, env: dict[str, str]) -> dict[tuple[str, int], int]:
    """Run ``fit --config run_dir/config.yaml`` for every job, ``parallel`` at a time; the exit code of each."""
    pending, running, codes = list(jobs), {}, {}
    while pending or running:
        while pending and len(running) < parallel:
            name, seed, run_dir = pending.pop(0)
            log = (run_dir / "stdout.txt").open("w")
            proc = subprocess.Popen([sys.executable, "-m", "lightning_gan.cli", "fit", "--config",
                                     str(run_dir / "config.yaml")], stdout=log, stderr=subprocess.STDOUT, env=env)
            running[(name, seed)] = (proc, log, time.perf_counter(), run_dir)
        time.sleep(2.0)
        for key, (proc, log, start, run_dir) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            codes[key] = proc.returncode
            del running[key]
            print(f"{key[0]} seed {key[1]}: exit {proc.returncode} after {time.perf_counter() - start:.0f} s "
                  f"(under load: rough)" + (f"; see {run_dir / 'stdout.txt'}" if proc.returncode else ""), flush=True)
    return codes


def summarize(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (nan for fewer than 2 values) of the finite values."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    mean = sum(finite) / len(finite)
    if len(finite) < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="biggan-shapes32")
    parser.add_argument("--kimg", type=float, default=20.0, help="training budget per run (real images / 1000)")
    parser.add_argument("--minority", default="circle", choices=SHAPES)
    parser.add_argument("--share", type=float, default=0.05, help="the minority's share of the images")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", default="0", help="training seeds (seed_everything), e.g. 0-2 or 0,5 (default 0)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra dotted overrides of the recipe for every variant (values parsed as YAML)")
    parser.add_argument("--num-samples", type=int, default=3000, help="generated samples for the accuracy")
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluation's latents (the same for every run)")
    parser.add_argument("--threads", type=int, default=1, help="OMP/torch threads of each training run")
    parser.add_argument("--parallel", type=int, default=1, help="training runs at a time (default 1)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder of the runs (default runs/biggan_leakage/<minority>)")
    parser.add_argument("--eval-only", action="store_true", help="evaluate the runs already in --out")
    parser.add_argument("--retrain", action="store_true",
                        help="train every run again (default: a run whose last.ckpt exists is not retrained)")
    args = parser.parse_args()
    if not 0.0 < args.share < 1.0:
        raise SystemExit(f"--share must be in (0, 1), got {args.share}")
    if args.parallel < 1 or args.threads < 1:
        raise SystemExit("--parallel and --threads must be >= 1")
    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as exc:
        raise SystemExit(f"--seeds: {exc}") from None
    out = args.out or Path("runs/biggan_leakage") / args.minority
    extra = {}
    for token in args.set:
        key, sep, value = token.partition("=")
        if not sep:
            raise SystemExit(f"--set {token!r} is not KEY=VALUE")
        extra[key] = yaml.safe_load(value)

    import torch

    torch.set_num_threads(args.threads)  # the evaluation, like the training runs
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1")
    runs = [(name, seed, out / name / f"seed{seed}") for name in args.variants for seed in seeds]
    codes: dict[tuple[str, int], int] = {}
    if not args.eval_only:
        todo = []
        for name, seed, run_dir in runs:
            if (run_dir / "last.ckpt").is_file() and not args.retrain:
                print(f"{name} seed {seed}: trained already ({run_dir / 'last.ckpt'})", flush=True)
                continue
            run_dir.mkdir(parents=True, exist_ok=True)
            config = variant_config(args.recipe, {**extra, **VARIANTS[name]}, run_dir=run_dir, kimg=args.kimg,
                                    minority=args.minority, share=args.share, seed=seed)
            (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
            todo.append((name, seed, run_dir))
        codes = train_all(todo, parallel=args.parallel, env=env)
    rows: dict[tuple[str, int], dict[str, float]] = {}
    for name, seed, run_dir in runs:
        ckpt = run_dir / "last.ckpt"
        if codes.get((name, seed), 0) != 0 or not ckpt.is_file():
            print(f"{name} seed {seed}: no {ckpt}", flush=True)
            continue
        rows[(name, seed)] = evaluate(ckpt, minority=args.minority, num_samples=args.num_samples, seed=args.seed)
        (run_dir / "result.json").write_text(json.dumps(rows[(name, seed)], indent=2))

    print(f"\n{args.recipe}, {args.minority} at {args.share:.0%} of the images, {args.kimg:g} kimg per run, "
          f"{args.threads} thread(s) each; accuracy = shapes/accuracy of {args.num_samples} EMA samples (eval mode, "
          f"after standing statistics in the training batches' class shares; acc unif: the minority after standing "
          f"statistics in equal shares), leakage = relative RMS pure-class vs mixed batch (train mode, the data's "
          f"class mix); min = {args.minority}")
    header = f"{'variant':14s} {'seed':>4s} {'kimg':>5s} " + " ".join(f"{h:>11s}" for _, h, _ in COLUMNS)
    print(header)
    for (name, seed), r in rows.items():
        cells = [fmt.format(r.get(key, math.nan)) for key, _, fmt in COLUMNS]
        print(f"{name:14s} {seed:4d} {r['kimg']:5.1f} " + " ".join(f"{c:>11s}" for c in cells))
    summary: dict[str, dict[str, list[float]]] = {}
    print(f"\nmean +- sample standard deviation over the seeds ({', '.join(map(str, seeds))})")
    print(f"{'variant':14s} {'runs':>4s} " + " ".join(f"{h:>15s}" for _, h, _ in COLUMNS))
    for name in args.variants:
        results = [r for (n, _), r in rows.items() if n == name]
        if not results:
            continue
        summary[name] = {key: list(summarize([r.get(key, math.nan) for r in results])) for key, _, _ in COLUMNS}
        cells = [f"{fmt.format(m)} +- {fmt.format(s)}" for (key, _, fmt), (m, s) in
                 zip(COLUMNS, (summary[name][key] for key, _, _ in COLUMNS))]
        print(f"{name:14s} {len(results):4d} " + " ".join(f"{c:>15s}" for c in cells))
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps({
        "recipe": args.recipe, "minority": args.minority, "share": args.share, "kimg": args.kimg, "seeds": seeds,
        "threads": args.threads, "num_samples": args.num_samples,
        "runs": [{"variant": n, "seed": s, **r} for (n, s), r in rows.items()], "mean_sd": summary,
    }, indent=2, default=float))


if __name__ == "__main__":
    main()
