"""fp32 vs fp16-dynamic (and bf16-mixed) on the same recipe: final shapes metrics, skipped-step rates, speed.

Trains a recipe's model (default ``stylegan2-shapes32``, its architecture, loss, regularizers, optimizers and
EMA) from the same seed for ``--kimg`` thousand images under each precision plugin, then evaluates the data's
default metrics (shapes metrics, mode coverage on toy2d) on the EMA generator. On CPU use an MLP recipe
(``--recipe quickstart``): float16 convolution backward passes have no fast CPU kernels in PyTorch (a 3x3
conv, 64 channels, 32x32, batch 32: 18.9 s in float16 against 0.16 s in float32 on this 2-core machine). Prints per precision: steady-state images/s (timed after ``--warmup``
iterations), the speed ratio to the first precision, each network's share of skipped optimizer steps and
final loss scale, and the metrics. Figures only; no assertions. Usage::

    OMP_NUM_THREADS=2 python benchmarks/precision_compare.py --recipe quickstart --kimg 100
    python benchmarks/precision_compare.py --accelerator cuda --kimg 40 --precisions fp32 fp16-dynamic bf16-mixed
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import logging
import time
import warnings

import lightning.pytorch as pl
import torch
import yaml
from lightning.pytorch import Callback

from lightning_gan import registry
from lightning_gan.callbacks import LossScaleMonitor
from lightning_gan.module import GANModule


SHOWN = ("shapes/fd", "shapes/recognizable", "shapes/coverage", "coverage/modes", "coverage/high_quality",
         "coverage/reverse_kl")


def optimizer_factory(config: dict) -> functools.partial:
    module, _, name = config["class_path"].rpartition(".")
    return functools.partial(getattr(importlib.import_module(module), name), **config.get("init_args", {}))


def build(recipe: str, batch_size: int | None) -> tuple[GANModule, pl.LightningDataModule]:
    config = yaml.safe_load(registry.recipe_path(recipe).read_text())
    model, data = dict(config["model"]), config["data"]
    regularizers = list(model.get("regularizers") or [])
    for cb in (config.get("trainer") or {}).get("callbacks") or []:  # the recipe's LazyR1 callback, as a regularizer
        if isinstance(cb, dict) and str(cb.get("class_path", "")).endswith("LazyR1"):
            regularizers.append({"class_path": "r1", "init_args": cb.get("init_args", {})})
    module = GANModule(
        architecture=model["architecture"], loss=model.get("loss", "non_saturating"),
        regularizers=regularizers, g_optimizer=optimizer_factory(model["g_optimizer"]),
        d_optimizer=optimizer_factory(model["d_optimizer"]), ema_kimg=model.get("ema_kimg", 10.0),
        ema_rampup=model.get("ema_rampup", 0.05), metrics=[], log_every_n_iterations=10**9,
    )
    init_args = dict(data.get("init_args", {}))
    if batch_size:
        init_args["batch_size"] = batch_size
    datamodule = registry.get_registry("datasets").create(data["class_path"], **init_args)
    return module, datamodule


class Clock(Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.images = warmup, None, None, 0

    def _sync(self, module) -> None:  # noqa: ANN001
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if pl_module.iteration == self.warmup:
            self._sync(pl_module)
            self.start, self.images = time.perf_counter(), pl_module.images_seen

    def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        self._sync(pl_module)
        self.end = time.perf_counter()
        self.images = pl_module.images_seen - self.images

    @property
    def rate(self) -> float:
        return self.images / (self.end - self.start) if self.start and self.end else float("nan")


def _with_samples(metric, num_samples: int):  # noqa: ANN001, ANN202
    config = registry.resolve("metrics", metric).config()
    if "num_samples" in config["init_args"]:
        config["init_args"]["num_samples"] = num_samples
    return registry.resolve("metrics", config)


def run(name: str, args: argparse.Namespace) -> dict:
    pl.seed_everything(args.seed, verbose=False)
    module, datamodule = build(args.recipe, args.batch_size)
    module.total_kimg = args.kimg
    clock = Clock(args.warmup)
    precision = registry.get_registry("precision").create(name)
    trainer = pl.Trainer(accelerator=args.accelerator, devices=1, max_epochs=-1, logger=False, plugins=[precision],
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, num_sanity_val_steps=0,
                         callbacks=[clock, LossScaleMonitor(summary=False, every_n_iterations=10**9)])
    trainer.fit(module, datamodule)
    metrics = module.evaluate_metrics([_with_samples(m, args.metric_samples) for m in datamodule.default_metrics()])
    result = {"precision": name, "img_per_s": clock.rate, "kimg": module.kimg, "metrics": metrics}
    for net, scaler in getattr(precision, "scalers", {}).items():
        result[f"{net}_skipped_rate"] = scaler.skipped / max(scaler.steps, 1)
        result[f"{net}_scale"] = scaler.scale
        result[f"{net}_overflows"] = scaler.overflows
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="stylegan2-shapes32")
    parser.add_argument("--kimg", type=float, default=4.0)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "fp16-dynamic"])
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations first")
    parser.add_argument("--metric-samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*(LeafSpec|litlogger|does not have many workers|ckpt_path).*")
    device = torch.cuda.get_device_name() if args.accelerator == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"recipe {args.recipe}, {args.kimg} kimg per run, {device}, torch {torch.__version__}")
    results = []
    for name in args.precisions:
        results.append(run(name, args))
        r = results[-1]
        skipped = ", ".join(f"{net[0].upper()} skipped {r[f'{net}_skipped_rate']:.2%} (scale {r[f'{net}_scale']:g})"
                            for net in ("discriminator", "generator") if f"{net}_scale" in r)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in r["metrics"].items() if k in SHOWN)
        print(f"{name:13s} {r['img_per_s']:8.1f} img/s (x{r['img_per_s'] / results[0]['img_per_s']:.2f}) | "
              f"{shown} | {skipped or 'no loss scaling'}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
