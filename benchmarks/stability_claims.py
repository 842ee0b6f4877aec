"""The stability theory's claims measured on this project's networks: lr tolerance, skip/residual paths, growing.

Three subcommands, each prints a table and writes a plot to ``docs/images/stability-claims-*.png``:

- ``lr``: learning-rate tolerance of a recipe (``quickstart``; ``dcgan-shapes32`` works the same way, slowly).
  Both learning rates are multiplied by each ``--factors`` value; every factor runs without a controller and
  with a ``StabilityController(mode="lr")`` per ``--adam`` treatment of Adam, for each seed, ``--kimg``
  thousand images each. A run *diverged* when a parameter becomes NaN/inf, or when its metric at the end is
  worse than at 10% of the budget (toy2d: fewer modes captured; shapes: a larger shapes FD). Metrics are the
  data's own (toy2d: ``ModeCoverage``, PacGAN protocol; shapes: shapes FD on 2000 samples), on the EMA
  generator.
- ``arch``: StyleGAN2 ``orig`` vs ``skip`` vs ``resnet`` (the generator's and the discriminator's architecture
  set together) at small widths on the shapes data: s_max and alpha of the game (``estimate_game``,
  ``--iterations`` power-iteration steps from a random start, Adam treated as plain as the controller's
  default, R1's curvature in alpha_D) at initialization and every ``--every`` kimg of training, and the plain
  game's largest stable learning rate ``eta* = 2 alpha / (alpha^2 + s_max^2)``.
- ``grow``: ProGAN growing 4 -> 32 px vs fixed at 32 px (small widths, WGAN-GP as ``progan-shapes64``): s_max,
  alpha (the gradient penalty's curvature in alpha_D), r and eta* every ``--every`` kimg.

Runs are cached in a JSON-lines file (``--cache``): rerunning the command skips the runs already done, so a
sweep can be stopped and continued. ``--parallel`` runs at once, one thread each::

    OMP_NUM_THREADS=1 python benchmarks/stability_claims.py lr --recipe quickstart --kimg 200 \\
        --factors 0.3 1 3 10 30 --seeds 0 1 --parallel 2
    OMP_NUM_THREADS=1 python benchmarks/stability_claims.py arch --kimg 2 --every 0.5 --seeds 0 1 --iterations 20
    OMP_NUM_THREADS=1 python benchmarks/stability_claims.py grow --kimg 12 --every 1 --stage-kimg 3 --seeds 0 1 \
        --iterations 20
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch import Callback, Trainer, seed_everything

from lightning_gan import registry
from lightning_gan.analysis import convergence_factor, estimate_game, line_plot, max_stable_lr
from lightning_gan.callbacks import LazyR1, StabilityController
from lightning_gan.module import GANModule

IMAGES = Path("docs/images")


def _quiet() -> None:
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)


def _trainer(callbacks: list[Callback]) -> Trainer:
    return Trainer(max_epochs=-1, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                   enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
                   limit_val_batches=0, callbacks=callbacks)


def _cached(cache: Path, jobs: list[dict[str, Any]], worker: Callable[[dict[str, Any]], dict[str, Any]],
            parallel: int) -> list[dict[str, Any]]:
    """Every job's result, running (``parallel`` at a time) those not yet in ``cache``."""
    done: dict[str, dict[str, Any]] = {}
    if cache.exists():
        for line in cache.read_text().splitlines():
            row = json.loads(line)
            done[row["key"]] = row
    todo = [job for job in jobs if job["key"] not in done]
    cache.parent.mkdir(parents=True, exist_ok=True)
    if todo:
        with ProcessPoolExecutor(max_workers=parallel, mp_context=get_context("spawn"), initializer=_quiet) as pool:
            for row in pool.map(worker, todo):
                done[row["key"]] = row
                with cache.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"  done {row['key']}", flush=True)
    return [done[job["key"]] for job in jobs]


def build(recipe: str | dict[str, Any], *, lr_factor: float = 1.0, seed: int = 0, num_samples: int = 10000,
          ) -> tuple[GANModule, Any, list[Callback]]:
    """A recipe's model (architecture, loss, R1, Adam at ``lr_factor`` times its lrs), data and LazyR1 callback."""
    cfg = yaml.safe_load(registry.recipe_path(recipe).read_text()) if isinstance(recipe, str) else recipe
    seed_everything(seed)
    model = cfg["model"]
    opts = {}
    for key in ("g_optimizer", "d_optimizer"):
        args = dict(model[key]["init_args"])
        opts[key] = partial(torch.optim.Adam, lr=float(args["lr"]) * lr_factor,
                            betas=tuple(args.get("betas", (0.0, 0.99))), eps=float(args.get("eps", 1e-8)))
    module = GANModule(architecture=model["architecture"], loss=model.get("loss", "non_saturating"),
                       regularizers=model.get("regularizers"), ema_kimg=model.get("ema_kimg", 10.0),
                       ema_rampup=model.get("ema_rampup", 0.05), **opts)
    callbacks: list[Callback] = [LazyR1(**cb.get("init_args", {})) for cb in cfg["trainer"].get("callbacks", [])
                                 if isinstance(cb, dict) and str(cb.get("class_path", "")).endswith("LazyR1")]
    data_cfg = cfg["data"]
    data = registry.resolve("datasets", {"class_path": data_cfg["class_path"],
                                            "init_args": {**data_cfg.get("init_args", {}),
                                                          "num_samples": num_samples}})
    return module, data, callbacks


# -- lr: learning-rate tolerance -------------------------------------------------------------------------------
def _metric(module: GANModule, data: Any) -> dict[str, float]:
    """The data's own figures on the EMA generator: toy2d mode coverage, or the shapes metrics."""
    G = module.sampling_generator
    was = G.training
    G.eval()
    try:
        if getattr(data, "modes", None) is not None:
            from lightning_gan.metrics.mode_coverage import ModeCoverage

            return ModeCoverage().compute(G, data)
        from lightning_gan.metrics.shapes import ShapesMetrics

        metric = ShapesMetrics(num_samples=2000)
        metric.setup(data)
        return {k: v for k, v in metric.compute(G, data).items() if k == "shapes/fd"}
    finally:
        G.train(was)


def _worse(end: dict[str, float], early: dict[str, float]) -> bool:
    """The metric at the end worse than at 10% of the budget (see the module docstring)."""
    if "coverage/modes" in end:
        return end["coverage/modes"] < early["coverage/modes"]
    return end["shapes/fd"] > early["shapes/fd"]


class _Watch(Callback):
    """Stops a run whose parameters became non-finite; takes the metric at 10% of the budget and at the end."""

    def __init__(self, total_kimg: float) -> None:
        self.total_kimg = total_kimg
        self.early: dict[str, float] | None = None
        self.nan_kimg: float | None = None
        self.series: list[tuple[float, float]] = []  # (kimg, controller's lr scale)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not all(torch.isfinite(p).all() for p in pl_module.generator.parameters()) or \
                not all(torch.isfinite(p).all() for p in pl_module.discriminator.parameters()):
            self.nan_kimg = pl_module.kimg
            trainer.should_stop = True
            return
        if self.early is None and pl_module.kimg >= 0.1 * self.total_kimg:
            self.early = _metric(pl_module, trainer.datamodule)


def lr_run(job: dict[str, Any]) -> dict[str, Any]:
    """One run of the lr sweep."""
    module, data, callbacks = build(job["recipe"], lr_factor=job["factor"], seed=job["seed"])
    module.total_kimg = job["kimg"]
    watch = _Watch(job["kimg"])
    controller = StabilityController(mode="lr", every_n_kimg=job["every"], adam=job["controller"]) \
        if job["controller"] else None
    trainer = _trainer([*callbacks, watch, *([controller] if controller else [])])
    trainer.fit(module, data)
    row = {**job, "kimg_done": module.kimg, "nan_kimg": watch.nan_kimg}
    if watch.nan_kimg is None:
        row["early"] = watch.early
        row["end"] = _metric(module, data)
    if controller is not None:
        row["lr_scale"] = controller.scale
        row["r_last"] = controller.last.get("r_uncontrolled", math.nan)
        row["actions"] = controller.actions
    row["diverged"] = watch.nan_kimg is not None or watch.early is None or _worse(row["end"], watch.early)
    return row


def cmd_lr(args: argparse.Namespace) -> None:
    arms = [None, *args.adam]  # no controller, then the controller with each treatment of Adam
    name = {None: "fixed", "plain": "ctrl", "preconditioned": "ctrlpre"}
    jobs = [{"key": f"{args.recipe}/{args.kimg}/x{f:g}/{name[c]}/s{s}", "recipe": args.recipe,
             "kimg": args.kimg, "factor": f, "controller": c, "seed": s, "every": args.every}
            for f in args.factors for c in arms for s in args.seeds]
    rows = _cached(Path(args.cache), jobs, lr_run, args.parallel)
    for r in rows:  # from the stored figures, so that the verdict follows _worse
        r["diverged"] = r["nan_kimg"] is not None or not r.get("early") or _worse(r["end"], r["early"])
    toy = "coverage/modes" in next((r["end"] for r in rows if r.get("end")), {"coverage/modes": 0})
    print(f"\n{args.recipe}: {args.kimg:g} kimg per run, seeds {args.seeds}, controller every {args.every:g} kimg "
          f"(target 0.98, mode lr); lr = factor x the recipe's")
    print("last r: the controller's r at the run's own learning rates at its last estimate (before its action)")
    head = "modes  HQ    rKL " if toy else "shapes FD"
    print(f"{'factor':>6} {'controller':>14} {'seed':>4} | {'diverged':>8} | {head:>18} | {'at 10%':>18} | "
          f"{'lr_scale':>8} {'actions':>7} {'last r':>7}")

    def fmt(m: dict[str, float] | None) -> str:
        if not m:
            return f"{'-':>18}"
        if toy:
            return f"{m['coverage/modes']:5.0f} {m['coverage/high_quality']:5.2f} {m['coverage/reverse_kl']:6.3f}"
        return f"{m['shapes/fd']:18.1f}"

    for r in rows:
        why = f"NaN@{r['nan_kimg']:.0f}" if r["nan_kimg"] is not None else ("worse" if r["diverged"] else "no")
        scale = f"{r['lr_scale']:8.3g} {r['actions']:7d} {r['r_last']:7.4g}" if r["controller"] else \
            f"{'-':>8} {'-':>7} {'-':>7}"
        print(f"{r['factor']:6g} {r['controller'] or 'none':>14} {r['seed']:4d} | {why:>8} | "
              f"{fmt(r.get('end'))} | {fmt(r.get('early'))} | {scale}")
    print("\nsummary per factor and controller (none, or its treatment of Adam): diverged runs, mean final "
          + ("modes and high-quality share" if toy else "shapes FD"))
    series: dict[str, tuple[list[float], list[float]]] = {}
    for c in arms:
        xs, ys = [], []
        for f in args.factors:
            sel = [r for r in rows if r["factor"] == f and r["controller"] == c]
            ok = [r for r in sel if r.get("end")]
            if toy:
                value = sum(r["end"]["coverage/modes"] for r in ok) / len(ok) if ok else 0.0
                hq = sum(r["end"]["coverage/high_quality"] for r in ok) / len(ok) if ok else 0.0
                text = f"{value:5.1f} modes, HQ {hq:.2f}"
            else:
                value = sum(r["end"]["shapes/fd"] for r in ok) / len(ok) if ok else math.nan
                text = f"FD {value:.1f}"
            n_div = sum(r["diverged"] for r in sel)
            scales = [r["lr_scale"] for r in sel if c]
            scale = f", final lr_scale {min(scales):.3g}-{max(scales):.3g}" if scales else ""
            print(f"  x{f:<5g} {c or 'none':>14}: {n_div}/{len(sel)} diverged, {text}{scale}")
            xs.append(math.log10(f))
            ys.append(value)
        label = f"controller, Adam {c}" if c else "fixed lr"
        if c and ys == series["fixed lr"][1]:
            label += " (= fixed lr: no action)"
        series[label] = (xs, ys)
    fixed = [r for r in rows if not r["controller"] and r.get("end")]
    if fixed:
        key = (lambda r: (r["end"]["coverage/modes"], r["end"]["coverage/high_quality"])) if toy else \
            (lambda r: -r["end"]["shapes/fd"])
        best = max(fixed, key=key)
        print(f"best fixed learning rate: x{best['factor']:g} (seed {best['seed']}): {fmt(best['end']).strip()}")
    path = IMAGES / f"stability-claims-lr-{args.recipe}.png"
    line_plot(series, path, "log10(learning rate / recipe's)", "mean final modes captured" if toy else "shapes FD",
              f"{args.recipe}: {args.kimg:g} kimg per run, {len(args.seeds)} seed{'s' if len(args.seeds) != 1 else ''}")
    print(f"wrote {path}")


# -- arch and grow: estimates on image models ------------------------------------------------------------------
def game_estimate(module: GANModule, real: torch.Tensor, *, iterations: int = 30, seed: int = 0,
                  with_r1: bool = True) -> tuple[float, float, float, float]:
    """(s_max, alpha, alpha_G, alpha_D) of the game on this batch (Adam as plain, R1 at its gamma if present).

    Over every parameter of G and D (those of stages not yet grown get no product and drop out); buffers and
    requires_grad flags are restored afterwards.
    """
    from lightning_gan.callbacks.stability_controller import _r1_unit
    from lightning_gan.interfaces import PenaltyInputs
    from lightning_gan.regularizers import R1

    G, D = module.generator, module.discriminator
    g_params, d_params = list(G.parameters()), list(D.parameters())
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p in (*g_params, *d_params):
        p.requires_grad_(True)
    buffers = [(b, b.detach().clone()) for b in module.buffers()]
    gen = torch.Generator().manual_seed(seed)
    with torch.enable_grad():
        z = G.sample_latents(real.shape[0], generator=gen, device=real.device)
        real_logits, fake_logits = D(real, None), D(G(z, None), None)
        loss_d = module.loss_fn.discriminator_loss(real_logits, fake_logits)
        loss_g = module.loss_fn.generator_loss(fake_logits)
        terms = {}
        for reg in module.regularizers:
            if reg.network != "discriminator":
                continue
            inputs = PenaltyInputs(generator=G, discriminator=D, real=real, real_c=None,
                                   latent_sampler=lambda k: (G.sample_latents(k, generator=gen), None),
                                   reduce_mean=lambda t: t)
            inputs.d_logits = (real_logits, fake_logits)
            if isinstance(reg, R1):
                if with_r1:
                    terms["R1"] = (0.5 * _r1_unit(inputs), float(reg.gamma))
            else:
                terms[type(reg).__name__] = (reg(inputs), 1.0)
        est = estimate_game(loss_g, loss_d, g_params, d_params, iterations=iterations, d_terms=terms, seed=seed)
    with torch.no_grad():
        for b, saved in buffers:
            b.copy_(saved)
    for p, flag in flags:
        p.requires_grad_(flag)
    return est.s_max, est.alpha, est.alpha_g, est.alpha_d


class _Estimates(Callback):
    """Estimates the game every ``every`` kimg (and at the first batch) on the training batch."""

    def __init__(self, every: float, num: int, iterations: int, with_r1: bool) -> None:
        self.every, self.num, self.iterations, self.with_r1 = every, num, iterations, with_r1
        self.next = 0.0
        self.rows: list[dict[str, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if pl_module.kimg + 1e-9 < self.next:
            return
        self.next = (int(pl_module.kimg / self.every) + 1) * self.every
        real, _ = pl_module._split_batch(batch)
        s, a, ag, ad = game_estimate(pl_module, real[:self.num].float(), iterations=self.iterations,
                                     seed=len(self.rows), with_r1=self.with_r1)
        fade = float(getattr(pl_module.generator, "alpha", 1.0))
        lr = float(trainer.optimizers[0].param_groups[0]["lr"])
        self.rows.append({"kimg": pl_module.kimg, "res": int(real.shape[-1]), "fade": fade, "s_max": s, "alpha": a,
                          "alpha_G": ag, "alpha_D": ad, "lr": lr, "r": convergence_factor(lr, a, s),
                          "eta_star": max_stable_lr(a, s) if a > 0 else 0.0})


def _image_recipe(architecture: dict[str, Any], *, loss: Any, regularizers: list[Any], lr: float, batch: int,
                  resolution: int, callbacks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    adam = {"class_path": "torch.optim.Adam", "init_args": {"lr": lr, "betas": [0.0, 0.99], "eps": 1e-8}}
    return {"trainer": {"callbacks": callbacks or []},
            "model": {"architecture": architecture, "loss": loss, "regularizers": regularizers,
                      "g_optimizer": adam, "d_optimizer": adam, "ema_kimg": 1.0},
            "data": {"class_path": "shapes", "init_args": {"resolution": resolution, "channels": 3,
                                                            "batch_size": batch}}}


ARCH_LR = 0.0025  # stylegan2-shapes32's learning rate


def _probed_run(cfg: dict[str, Any], job: dict[str, Any], callbacks: list[Callback] | None = None) -> dict[str, Any]:
    """Train ``cfg`` for ``job["kimg"]`` with the estimates probe (every ``job["every"]`` kimg), and return the job
    with the probe's rows. ``callbacks`` replace the recipe's own (None: keep them)."""
    module, data, recipe_callbacks = build(cfg, seed=job["seed"], num_samples=4000)
    module.total_kimg = job["kimg"]
    probe = _Estimates(job["every"], 16, job["iterations"], with_r1=True)
    _trainer([*(recipe_callbacks if callbacks is None else callbacks), probe]).fit(module, data)
    return {**job, "rows": probe.rows}


def arch_run(job: dict[str, Any]) -> dict[str, Any]:
    """One StyleGAN2 pair: estimates at init and every ``every`` kimg over ``kimg`` of training."""
    arch = {"class_path": "stylegan2", "init_args": {
        "resolution": 32, "channels": 3, "z_dim": 64, "w_dim": 64, "mapping_layers": 2,
        "channel_base": job["channel_base"], "channel_max": 64, "g_architecture": job["arch"],
        "d_architecture": job["arch"], "synthesis_input": "linear", "noise_strength": "channel"}}
    cfg = _image_recipe(arch, loss="non_saturating", lr=ARCH_LR, batch=16, resolution=32,
                        regularizers=[{"class_path": "r1", "init_args": {"gamma": 0.05, "interval": 16}}])
    return _probed_run(cfg, job)


def cmd_arch(args: argparse.Namespace) -> None:
    jobs = [{"key": f"arch/{a}/cb{args.channel_base}/{args.kimg:g}/e{args.every:g}/it{args.iterations}/s{s}",
             "arch": a, "seed": s, "kimg": args.kimg, "every": args.every, "iterations": args.iterations,
             "channel_base": args.channel_base} for a in ("orig", "skip", "resnet") for s in args.seeds]
    rows = _cached(Path(args.cache), jobs, arch_run, args.parallel)
    print(f"\nStyleGAN2 32 px on shapes, G and D of the same architecture, channel_base {args.channel_base} "
          f"(channels {min(args.channel_base // 4, 64)}..{args.channel_base // 32} at 4..32 px), batch 16, "
          f"Adam lr {ARCH_LR} (plain), R1 gamma 0.05; estimates on 16 images, {args.iterations} power steps")
    print(f"{'arch':>6} {'seed':>4} {'kimg':>6} | {'s_max':>9} {'alpha':>9} {'alpha_G':>9} {'alpha_D':>9} | "
          f"{'r at lr':>8} {'eta*':>9}")
    series = {}
    for r in rows:
        for e in r["rows"]:
            print(f"{r['arch']:>6} {r['seed']:4d} {e['kimg']:6.2f} | {e['s_max']:9.4g} {e['alpha']:9.3g} "
                  f"{e['alpha_G']:9.3g} {e['alpha_D']:9.3g} | {e['r']:8.4g} {e['eta_star']:9.3g}")
        series[f"{r['arch']} seed {r['seed']}"] = ([e["kimg"] for e in r["rows"]], [e["s_max"] for e in r["rows"]])
    print("\nrange over the seeds, at init and at the last estimate:")
    for a in ("orig", "skip", "resnet"):
        sel = [r["rows"] for r in rows if r["arch"] == a]
        for label, idx in (("init", 0), ("last", -1)):
            ranges = []
            for key in ("s_max", "alpha", "eta_star"):
                v = sorted(x[idx][key] for x in sel)
                ranges.append(f"{key} {v[0]:.3g}-{v[-1]:.3g}")
            print(f"  {a:>6} {label:>4} ({sel[0][idx]['kimg']:.1f} kimg): {', '.join(ranges)}")
    path = IMAGES / "stability-claims-stylegan2-arch.png"
    line_plot(series, path, "kimg", "s_max (plain)", "StyleGAN2 orig / skip / resnet: coupling s_max", logy=True)
    print(f"wrote {path}")


def grow_run(job: dict[str, Any]) -> dict[str, Any]:
    """One ProGAN run, growing 4 -> 32 px or fixed at 32 px, with estimates every ``every`` kimg."""
    arch = {"class_path": "progan", "init_args": {"resolution": 32, "channels": 3, "z_dim": 64,
                                                  "channel_base": 256, "channel_max": 32, "mbstd_group": 4}}
    callbacks = []
    if job["grow"]:
        stage = job["stage_kimg"]
        schedule = [{"resolution": 4, "fade_kimg": 0, "stable_kimg": stage}] + \
            [{"resolution": r, "fade_kimg": stage / 2, "stable_kimg": stage / 2} for r in (8, 16, 32)]
        from lightning_gan.callbacks import ProgressiveGrowing

        callbacks.append(ProgressiveGrowing(schedule=schedule))
    cfg = _image_recipe(arch, loss={"class_path": "wasserstein", "init_args": {"drift": 0.001}}, lr=0.001, batch=32,
                        resolution=32, regularizers=[{"class_path": "gradient_penalty", "init_args": {"weight": 10.0}}])
    return _probed_run(cfg, job, callbacks)


def cmd_grow(args: argparse.Namespace) -> None:
    jobs = [{"key": f"grow/{'grow' if g else 'fixed'}/{args.kimg:g}/st{args.stage_kimg:g}/e{args.every:g}/"
                    f"it{args.iterations}/s{s}", "grow": g, "seed": s, "kimg": args.kimg, "every": args.every,
             "iterations": args.iterations, "stage_kimg": args.stage_kimg}
            for g in (True, False) for s in args.seeds]
    rows = _cached(Path(args.cache), jobs, grow_run, args.parallel)
    print(f"\nProGAN 32 px on shapes (channels 32/32/16/8 at 4/8/16/32 px), WGAN-GP (weight 10, drift 0.001), "
          f"batch 32, Adam lr 0.001 (plain); growing: {args.stage_kimg:g} kimg at 4 px, then per resolution "
          f"{args.stage_kimg / 2:g} kimg fade-in + {args.stage_kimg / 2:g} stable; estimates on 16 images, "
          f"{args.iterations} power steps, GP's curvature in alpha_D")
    print(f"{'run':>6} {'seed':>4} {'kimg':>6} {'res':>4} {'fade':>5} | {'s_max':>9} {'alpha':>9} {'alpha_D':>9} | "
          f"{'r':>8} {'eta*':>9}")
    series = {}
    for r in rows:
        name = "grow" if r["grow"] else "fixed"
        for e in r["rows"]:
            eta = f"{e['eta_star']:9.3g}" if e["alpha"] > 0 else f"{'none':>9}"  # alpha <= 0: no stable step
            print(f"{name:>6} {r['seed']:4d} {e['kimg']:6.2f} {e['res']:4d} {e['fade']:5.2f} | {e['s_max']:9.4g} "
                  f"{e['alpha']:9.3g} {e['alpha_D']:9.3g} | {e['r']:8.4g} {eta}")
        series[f"{name} seed {r['seed']}"] = ([e["kimg"] for e in r["rows"]], [e["s_max"] for e in r["rows"]])
    print("\ns_max of the growing run / of the fixed run at the same estimate (same seed):")
    for seed in args.seeds:
        pair = {r["grow"]: r["rows"] for r in rows if r["seed"] == seed}
        ratios = [f"{g['kimg']:.0f}:{g['res']}px {g['s_max'] / f['s_max']:.2g}"
                  for g, f in zip(pair[True], pair[False])]
        print(f"  seed {seed}: " + ", ".join(ratios))
    path = IMAGES / "stability-claims-progan-growing.png"
    line_plot(series, path, "kimg", "s_max (plain)", "ProGAN growing vs fixed 32 px: coupling s_max", logy=True,
              vlines=[args.stage_kimg * k for k in (1, 2, 3)])
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    lr = sub.add_parser("lr", help="learning-rate tolerance with and without the controller")
    lr.add_argument("--recipe", default="quickstart")
    lr.add_argument("--kimg", type=float, default=200.0, help="thousand images per run")
    lr.add_argument("--factors", type=float, nargs="+", default=[0.3, 1.0, 3.0, 10.0, 30.0])
    lr.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    lr.add_argument("--every", type=float, default=10.0, help="the controller's every_n_kimg")
    lr.add_argument("--adam", nargs="+", default=["plain", "preconditioned"], choices=["plain", "preconditioned"],
                    help="the controller arms: its treatment of Adam")
    arch = sub.add_parser("arch", help="StyleGAN2 orig / skip / resnet: s_max, alpha, eta*")
    arch.add_argument("--kimg", type=float, default=2.0)
    arch.add_argument("--every", type=float, default=1.0, help="kimg between estimates")
    arch.add_argument("--channel-base", type=int, default=256)
    grow = sub.add_parser("grow", help="ProGAN growing vs fixed resolution: s_max and r over training")
    grow.add_argument("--kimg", type=float, default=12.0)
    grow.add_argument("--every", type=float, default=1.0, help="kimg between estimates")
    grow.add_argument("--stage-kimg", type=float, default=3.0, help="kimg per resolution (fade-in + stable)")
    for p in (arch, grow):
        p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
        p.add_argument("--iterations", type=int, default=30, help="power-iteration steps of each estimate")
    for p in (lr, arch, grow):
        p.add_argument("--parallel", type=int, default=2, help="runs at once (one thread each)")
        p.add_argument("--cache", default=None, help="JSON-lines file of finished runs (default runs/stability_claims/"
                                                     "COMMAND.jsonl)")
    args = parser.parse_args()
    args.cache = args.cache or f"runs/stability_claims/{args.command}.jsonl"
    _quiet()
    {"lr": cmd_lr, "arch": cmd_arch, "grow": cmd_grow}[args.command](args)


if __name__ == "__main__":
    main()
