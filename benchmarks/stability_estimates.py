"""Cost and values of the StabilityController's online estimates, next to the StabilityMonitor's proxies.

Trains a recipe's model (its architecture, loss, optimizers, R1; the recipe's data at a reduced size) for
``--kimg`` thousand images and, every ``--every`` iterations, on that iteration's batch:

- the controller's estimate (``StabilityController.estimate``: s_max and alpha of the game by Hessian-vector
  products, warm-started, ``--iterations`` power-iteration steps; Adam treated as "plain", the default), timed,
  and r at the learning rates;
- with ``--converged N``, the same estimate from the same start vector with N power-iteration steps (untimed), to
  show how far the warm estimate is from converged;
- the same estimate with Adam "preconditioned" (``1 / (sqrt(v_hat) + eps)``) and its r (untimed);
- the monitor's figures (``StabilityMonitor.measure``: ``s_max ~ |J_D| |J_G|`` from the input Jacobians and the
  largest per-layer singular value of each network), timed.

Training iterations are timed from ``on_train_batch_start`` to ``on_train_batch_end`` (the estimates run after
that), and the script prints the median iteration time, the median time of one warm estimate and of the first
(cold, ``--first-iterations`` steps), their ratio (the cost of one estimate in training iterations), and the
series, then writes a plot of s_max (each series divided by its value at the first estimate) over kimg. Run
it on one thread beside other work::

    OMP_NUM_THREADS=1 python benchmarks/stability_estimates.py --recipe quickstart --kimg 100 --every 40 --converged 50
    OMP_NUM_THREADS=1 python benchmarks/stability_estimates.py --recipe dcgan-shapes32 --kimg 3 --every 10 --converged 30
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch import Callback, Trainer, seed_everything

from lightning_gan import registry
from lightning_gan.analysis import convergence_factor, line_plot
from lightning_gan.callbacks import LazyR1, StabilityController, StabilityMonitor
from lightning_gan.module import GANModule


def build(recipe: str) -> tuple[GANModule, Any, list[Callback]]:
    cfg = yaml.safe_load(registry.recipe_path(recipe).read_text())
    seed_everything(int(cfg.get("seed_everything", 0)))
    model = cfg["model"]
    opts = {}
    for key in ("g_optimizer", "d_optimizer"):
        args = dict(model[key]["init_args"])
        args.pop("fused", None)
        opts[key] = partial(torch.optim.Adam, lr=float(args["lr"]), betas=tuple(args.get("betas", (0.0, 0.99))))
    module = GANModule(architecture=model["architecture"], loss=model.get("loss", "non_saturating"),
                       regularizers=model.get("regularizers"), ema_kimg=model.get("ema_kimg", 10.0), **opts)
    callbacks = [LazyR1(**cb.get("init_args", {})) for cb in cfg["trainer"].get("callbacks", [])
                 if isinstance(cb, dict) and str(cb.get("class_path", "")).endswith("LazyR1")]
    data_cfg = cfg["data"]
    data = registry.resolve("datasets", {"class_path": data_cfg["class_path"],
                                            "init_args": {**data_cfg.get("init_args", {}), "num_samples": 10000}})
    return module, data, callbacks


class Probe(Callback):
    """Times training iterations; every ``every`` iterations measures and times the estimates."""

    def __init__(self, every: int, iterations: int, first_iterations: int, converged: int) -> None:
        self.every = every
        self.controller = StabilityController(iterations=iterations, first_iterations=first_iterations)
        self.reference = StabilityController(iterations=converged, first_iterations=converged) if converged else None
        self.pre = StabilityController(iterations=iterations, first_iterations=first_iterations, adam="preconditioned")
        self.monitor = StabilityMonitor()
        self.iteration_s: list[float] = []
        self.rows: list[dict[str, float]] = []
        self._t0 = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.iteration_s.append(time.perf_counter() - self._t0)
        if (pl_module.iteration - 1) % self.every:
            return
        real, real_c = pl_module._split_batch(batch)
        start = self.controller.u
        t0 = time.perf_counter()
        found = self.controller.estimate(trainer, pl_module, real, real_c)
        estimate_s = time.perf_counter() - t0
        if found is None:
            return
        est, lr_g, lr_d = found
        cold = start is None
        self.controller.u = est.u
        ref = None
        if self.reference is not None:  # the same batch, latents and start vector, more steps
            self.reference.u = start
            ref, _, _ = self.reference.estimate(trainer, pl_module, real, real_c)
        pre, _, _ = self.pre.estimate(trainer, pl_module, real, real_c)
        self.pre.u = pre.u
        t0 = time.perf_counter()
        with torch.enable_grad():
            proxy = self.monitor.measure(trainer, pl_module, real, real_c)
        monitor_s = time.perf_counter() - t0
        r = max(convergence_factor(lr, est.alpha, est.s_max) for lr in (lr_g, lr_d))
        self.rows.append({"kimg": pl_module.kimg, "cold": float(cold), "estimate_s": estimate_s, "monitor_s": monitor_s,
                          "s_max": est.s_max, "alpha": est.alpha, "r": r, "s_max_pre": pre.s_max,
                          "alpha_pre": pre.alpha, "s_ref": math.nan if ref is None else ref.s_max,
                          "alpha_ref": math.nan if ref is None else ref.alpha,
                          "r_pre": max(convergence_factor(lr, pre.alpha, pre.s_max) for lr in (lr_g, lr_d)),
                          "proxy_s_max": proxy["s_max"], "proxy_r": max(proxy["r/G"], proxy["r/D"]),
                          "layer_G": proxy.get("sigma_max_layer/G", math.nan),
                          "layer_D": proxy.get("sigma_max_layer/D", math.nan)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="quickstart")
    parser.add_argument("--kimg", type=float, default=20.0)
    parser.add_argument("--every", type=int, default=10, help="iterations between estimates")
    parser.add_argument("--iterations", type=int, default=3, help="power-iteration steps of a warm estimate")
    parser.add_argument("--first-iterations", type=int, default=20)
    parser.add_argument("--converged", type=int, default=0,
                        help="power-iteration steps of a reference estimate from the same start (0: none)")
    parser.add_argument("--plot", default=None, help="PNG path (default docs/images/stability-estimates-RECIPE.png)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    module, data, callbacks = build(args.recipe)
    module.total_kimg = args.kimg
    probe = Probe(args.every, args.iterations, args.first_iterations, args.converged)
    trainer = Trainer(max_epochs=-1, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
                      limit_val_batches=0, callbacks=[*callbacks, probe])
    trainer.fit(module, data)

    rows = probe.rows
    iteration = statistics.median(probe.iteration_s[1:])
    warm = [row["estimate_s"] for row in rows if not row["cold"]]
    cold = [row["estimate_s"] for row in rows if row["cold"]]
    monitor = statistics.median(row["monitor_s"] for row in rows)
    print(f"{args.recipe}: {module.iteration} iterations, {len(rows)} estimates, "
          f"torch threads {torch.get_num_threads()}")
    print(f"median training iteration        {iteration * 1e3:8.1f} ms")
    print(f"warm estimate ({args.iterations} power steps)    {statistics.median(warm) * 1e3:8.1f} ms = "
          f"{statistics.median(warm) / iteration:.1f} iterations")
    print(f"first estimate ({args.first_iterations} power steps)  {cold[0] * 1e3:8.1f} ms = "
          f"{cold[0] / iteration:.1f} iterations")
    print(f"StabilityMonitor.measure         {monitor * 1e3:8.1f} ms = {monitor / iteration:.1f} iterations")
    if args.converged:
        ratios = [row["s_max"] / row["s_ref"] for row in rows if not row["cold"]]
        gaps = [abs(row["alpha"] - row["alpha_ref"]) / abs(row["alpha_ref"]) for row in rows if not row["cold"]]
        print(f"warm s_max / s_max after {args.converged} steps: {min(ratios):.4f} to {max(ratios):.4f} (median "
              f"{statistics.median(ratios):.4f}); |alpha - alpha_ref| / |alpha_ref|: median "
              f"{statistics.median(gaps):.3g}, largest {max(gaps):.3g}")
    print()
    print("plain / preconditioned: the controller's estimate with Adam treated as plain (default) or preconditioned;")
    print("monitor: s_max ~ |J_D| |J_G| with alpha = R1's gamma, and the largest layer singular value of G and D")
    print(f"{'kimg':>6} | {'s_max':>8} {'alpha':>8} {'r':>7} | {'s_max':>8} {'alpha':>8} {'r':>9} | "
          f"{'|J_D||J_G|':>10} {'r':>7} {'layer G':>7} {'layer D':>7}")
    print(f"{'':>6} | {'plain':^25} | {'preconditioned':^27} | {'monitor':^35}")
    for row in rows:
        print(f"{row['kimg']:6.2f} | {row['s_max']:8.3g} {row['alpha']:8.3g} {row['r']:7.4f} | {row['s_max_pre']:8.3g} "
              f"{row['alpha_pre']:8.3g} {row['r_pre']:9.3g} | {row['proxy_s_max']:10.3g} {row['proxy_r']:7.4f} "
              f"{row['layer_G']:7.3g} {row['layer_D']:7.3g}")
    kimg = [row["kimg"] for row in rows]
    series = {}
    for name, key in (("s_max, plain (HVP)", "s_max"), ("s_max, Adam-preconditioned (HVP)", "s_max_pre"),
                      ("|J_D| |J_G| (monitor)", "proxy_s_max"),
                      ("largest layer sigma, G x D", None)):
        values = [row["layer_G"] * row["layer_D"] for row in rows] if key is None else [row[key] for row in rows]
        series[name] = (kimg, [v / values[0] for v in values])
    path = Path(args.plot or f"docs/images/stability-estimates-{args.recipe}.png")
    line_plot(series, path, "kimg", "relative to the first estimate", f"{args.recipe}: coupling estimates", logy=True)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
