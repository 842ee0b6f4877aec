"""Small training sets: no augmentation vs DiffAugment vs ADA (and ADA + LeCam), side by side at equal kimg.

Trains one recipe (default ``dcgan-shapes32``) on a *small fixed* training set, four ways at the same budget
(``--kimg`` thousand real images shown to D), each with the ``OverfittingMonitor`` on a held-out set:

* ``none``: the recipe as it is;
* ``diffaugment``: ``model.augment: diffaugment`` (color, translation, cutout on every image D sees);
* ``ada``: ``model.augment: ada`` (bgc pipeline, p adapted towards r_t = 0.6; ``--ada-kimg`` sets how fast);
* ``ada_lecam``: ``ada`` plus the ``lecam`` regularizer (weight ``--lecam``).

Data (``--data``):

* ``shapes``: ``--images`` shapes (default 1,000) as the whole training set, ``--holdout`` more from the same
  distribution for the monitor. Judged by the pinned shapes judge against ``--num-samples`` fresh shapes of the
  full distribution (another data seed; ``shapes/fd``, ``shapes/recognizable``): memorizing the training images
  does not score.
* ``digits``: a folder of real images: the 1,797 8x8 handwritten digits that scikit-learn ships (``pip install
  scikit-learn``; nothing is downloaded), ``--images`` of them written as 32x32 greyscale PNGs (bicubic) into
  ``--out/digits``, ``--holdout`` more kept out; judged by ``swd`` against all 1,797 digits.

Each variant is trained by the real ``lightning-gan fit --config`` in its own process (``--parallel`` at once, each
with ``--threads`` threads), with a sample grid, the metric evaluated every ``--every`` kimg (the curve is in the
run's ``metrics.csv``) and a final checkpoint. Prints, per variant: the metric over training, the final one, the
monitor's relative gap (0: held-out reals look like training reals to D; 1: like fakes) and ADA's final p. Quality
at a fixed kimg is comparable under CPU load; wall times are not. ``--seeds`` repeats everything per seed.

Usage::

    python benchmarks/small_data.py --kimg 40 --parallel 2                # shapes, 1,000 images
    python benchmarks/small_data.py --data digits --images 500 --kimg 40  # a folder of 500 real images
    python benchmarks/small_data.py --kimg 0.5 --images 200 --every 0.25  # a smoke test
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from lightning_gan import registry

VARIANTS: dict[str, dict[str, object]] = {
    "none": {},
    "diffaugment": {"augment": "diffaugment"},
    "ada": {"augment": "ada"},
    "ada_lecam": {"augment": "ada", "lecam": True},
}


def write_digits(folder: Path, count: int, holdout: int) -> Path:
    """``count + holdout`` of scikit-learn's digits as 32x32 greyscale PNGs (and all 1,797 for the judge)."""
    import numpy as np
    from PIL import Image

    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit("--data digits needs scikit-learn (pip install scikit-learn): its digits ship with it") from None
    images = load_digits().images  # [1797, 8, 8] in 0..16
    for name, subset in (("train", images[:count + holdout]), ("all", images)):
        target = folder / name
        if target.is_dir() and len(list(target.glob("*.png"))) == len(subset):
            continue
        target.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(subset):
            pixels = (255 - img / 16.0 * 255).clip(0, 255).astype(np.uint8)  # dark digits on white
            Image.fromarray(pixels).resize((32, 32), Image.BICUBIC).save(target / f"{i:04d}.png")
    return folder


def variant_config(args: argparse.Namespace, name: str, run_dir: Path, data_dir: Path | None) -> dict:
    """The recipe on the small set with the variant's augmentation, the monitor, metrics every ``--every`` kimg."""
    config = yaml.safe_load(registry.recipe_path(args.recipe).read_text())
    trainer = config.setdefault("trainer", {})
    trainer["accelerator"] = "cpu"
    trainer["logger"] = {"class_path": "lightning.pytorch.loggers.CSVLogger",
                         "init_args": {"save_dir": str(run_dir), "name": "log", "version": 0}}
    callbacks = [cb for cb in trainer.get("callbacks", [])
                 if not cb.get("class_path", "").endswith(("ModelCheckpoint", "MetricsCallback", "InterruptCheckpoint",
                                                           "SampleGrid"))]
    callbacks += [
        {"class_path": "lightning_gan.callbacks.SampleGrid", "init_args": {"every_n_kimg": args.kimg}},
        {"class_path": "lightning_gan.callbacks.MetricsCallback",
         "init_args": {"every_n_kimg": args.every, "num_samples": args.num_samples}},
        {"class_path": "lightning_gan.callbacks.OverfittingMonitor",
         "init_args": {"every_n_kimg": args.every, "num_images": min(256, args.holdout)}},
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
         "init_args": {"dirpath": str(run_dir), "save_last": True, "save_top_k": 0}},
    ]
    trainer["callbacks"] = callbacks
    model = config.setdefault("model", {})
    model["total_kimg"] = args.kimg
    variant = VARIANTS[name]
    if variant.get("augment") == "ada":
        model["augment"] = {"class_path": "ada", "init_args": {"ada_kimg": args.ada_kimg}}
    elif variant.get("augment"):
        model["augment"] = variant["augment"]
    if variant.get("lecam"):
        model.setdefault("regularizers", [])
        model["regularizers"] = list(model["regularizers"] or []) + [
            {"class_path": "lecam", "init_args": {"weight": args.lecam}}]
    data = config.setdefault("data", {})
    if args.data == "shapes":
        data["init_args"] = {**data.get("init_args", {}), "num_samples": args.images, "holdout": args.holdout}
        model["metrics"] = [{"class_path": "shapes", "init_args": {"num_samples": args.num_samples}}]
    else:
        res = 32
        data["class_path"] = "image_folder"
        data["init_args"] = {"path": str(data_dir / "train"), "resolution": res, "channels": 1,
                             "holdout": args.holdout, "batch_size": data.get("init_args", {}).get("batch_size", 32)}
        model["architecture"].setdefault("init_args", {}).update({"channels": 1, "resolution": res})
        model["metrics"] = [{"class_path": "swd", "init_args": {"num_samples": args.num_samples}}]
    config["seed_everything"] = args.seed
    model["seed"] = args.seed
    for token in args.set:
        key, sep, value = token.partition("=")
        if not sep:
            raise SystemExit(f"--set {token!r} is not KEY=VALUE")
        node = config
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    return config


def judge(ckpt: Path, args: argparse.Namespace, data_dir: Path | None) -> dict[str, float]:
    """The final EMA generator against the full distribution (shapes) or all the digits (swd)."""
    from lightning_gan.checkpoint import load_sampler

    loaded = load_sampler(ckpt)
    if args.data == "shapes":
        from lightning_gan.data.shapes import ShapesDataModule
        from lightning_gan.metrics.shapes import ShapesMetrics

        reference = ShapesDataModule(resolution=32, channels=3, num_samples=args.num_samples, seed=12345)
        metric = ShapesMetrics(num_samples=args.num_samples)
    else:
        from lightning_gan.data.image_folder import ImageFolderDataModule
        from lightning_gan.metrics.swd import SWD

        reference = ImageFolderDataModule(path=str(data_dir / "all"), resolution=32, channels=1)
        metric = SWD(num_samples=args.num_samples)
    reference.setup("fit")
    metric.setup(reference)
    return metric.compute(loaded.generator, reference)


def curve(run_dir: Path, key: str) -> list[tuple[float, float]]:
    """``(kimg, value)`` of an evaluated metric (``metrics.jsonl``) or a logged one (``metrics.csv``) of a run."""
    log = run_dir / "log" / "version_0"
    points = []
    if (log / "metrics.jsonl").is_file():
        for line in (log / "metrics.jsonl").read_text().splitlines():
            record = json.loads(line)
            if key in record:
                points.append((float(record["kimg"]), float(record[key])))
    if not points and (log / "metrics.csv").is_file():
        with (log / "metrics.csv").open() as f:
            for row in csv.DictReader(f):
                if row.get(key) and row.get("progress/kimg"):
                    points.append((float(row["progress/kimg"]), float(row[key])))
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="dcgan-shapes32")
    parser.add_argument("--data", choices=["shapes", "digits"], default="shapes")
    parser.add_argument("--images", type=int, default=1000, help="training images")
    parser.add_argument("--holdout", type=int, default=200, help="held-out real images for the monitor")
    parser.add_argument("--kimg", type=float, default=40.0, help="training budget per variant")
    parser.add_argument("--every", type=float, default=10.0, help="metric and monitor interval in kimg")
    parser.add_argument("--ada-kimg", type=float, default=20.0,
                        help="ADA: kimg for p to go from 0 to 1 (the paper's 500 is for runs of thousands of kimg)")
    parser.add_argument("--lecam", type=float, default=0.3, help="LeCam weight of the ada_lecam variant")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="dotted overrides of the recipe for every variant, values parsed as YAML "
                             "(e.g. model.architecture.init_args.base_channels=16)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--num-samples", type=int, default=2000, help="generated samples per evaluation")
    parser.add_argument("--parallel", type=int, default=1, help="training runs at once")
    parser.add_argument("--threads", type=int, default=1, help="OMP/torch threads of each run")
    parser.add_argument("--out", type=Path, default=Path("runs/small_data"))
    parser.add_argument("--eval-only", action="store_true", help="judge the runs already in --out")
    args = parser.parse_args()

    data_dir = write_digits(args.out / "digits", args.images, args.holdout) if args.data == "digits" else None
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1")
    jobs = []
    for seed in args.seeds:
        for name in args.variants:
            args.seed = seed
            run_dir = args.out / f"{args.data}-{args.images}" / f"seed{seed}" / name
            jobs.append((seed, name, run_dir))
            if not args.eval_only:
                run_dir.mkdir(parents=True, exist_ok=True)
                (run_dir / "config.yaml").write_text(yaml.safe_dump(variant_config(args, name, run_dir, data_dir),
                                                                     sort_keys=False))
    running: list[tuple[subprocess.Popen, str, float]] = []
    pending = [] if args.eval_only else list(jobs)
    while pending or running:
        while pending and len(running) < args.parallel:
            seed, name, run_dir = pending.pop(0)
            log = (run_dir / "stdout.txt").open("w")
            proc = subprocess.Popen([sys.executable, "-m", "lightning_gan.cli", "fit", "--config",
                                     str(run_dir / "config.yaml")], stdout=log, stderr=subprocess.STDOUT, env=env)
            running.append((proc, f"seed {seed} {name}", time.perf_counter()))
        time.sleep(2)
        for item in list(running):
            proc, label, start = item
            if proc.poll() is not None:
                running.remove(item)
                print(f"{label}: exit {proc.returncode} after {time.perf_counter() - start:.0f} s", flush=True)

    key = "shapes/fd" if args.data == "shapes" else "swd"
    print(f"\n{args.recipe} on {args.images} {args.data} images ({args.holdout} held out), {args.kimg:g} kimg per "
          f"variant; {key} of {args.num_samples} EMA samples against "
          + (f"{args.num_samples} fresh shapes of the full distribution" if args.data == "shapes"
             else "all 1,797 digits"))
    print(f"{'seed':>4s} {'variant':12s} {key + ' over training':36s} {'final ' + key:>14s} "
          + ("recognizable " if args.data == "shapes" else "") + f"{'rel. gap':>8s} {'max |gap|':>9s} {'ada p max, final':>16s}")
    for seed, name, run_dir in jobs:
        ckpt = run_dir / "last.ckpt"
        if not ckpt.is_file():
            print(f"{seed:4d} {name:12s} (no checkpoint)")
            continue
        result_path = run_dir / "judged.json"
        if result_path.is_file() and args.eval_only:
            results = json.loads(result_path.read_text())
        else:
            results = judge(ckpt, args, data_dir)
            result_path.write_text(json.dumps(results, indent=2))
        trace = " ".join(f"{v:.3g}" for _, v in curve(run_dir, key))
        gaps = curve(run_dir, "overfit/relative_gap")
        summary = json.loads((run_dir / "log" / "version_0" / "metrics.json").read_text()) \
            if (run_dir / "log" / "version_0" / "metrics.json").is_file() else {}
        p = summary.get("augment/p", float("nan"))
        p_max = max((v for _, v in curve(run_dir, "augment/p")), default=float("nan"))
        abs_gap = max((abs(v) for _, v in curve(run_dir, "overfit/gap")), default=float("nan"))
        extra = f"{results.get('shapes/recognizable', float('nan')):12.2f} " if args.data == "shapes" else ""
        print(f"{seed:4d} {name:12s} {trace:36s} {results[key]:14.3g} {extra}"
              f"{gaps[-1][1] if gaps else float('nan'):8.2f} {abs_gap:9.3f} {p_max:7.3f}, {p:.3f}")


if __name__ == "__main__":
    main()
