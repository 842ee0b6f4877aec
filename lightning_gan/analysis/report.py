"""The ``lightning-gan diagnose`` report: every diagnostic of this package applied to one trained (or fresh) model.

:func:`load_networks` rebuilds a run's generator (EMA when there is one), discriminator and data from a
checkpoint, or a fresh pair from a config/recipe; :func:`diagnose` measures, per section:

* **layers**: each layer's largest singular value (exact: SVD for linear layers, the per-frequency value
  for convs at their input size; equalized-lr gains included), a conv's orthogonality deviation D, and
  the product of a network's layer norms (a bound on its Lipschitz constant);
* **stability**: the linearized game at the run's learning rates (:func:`stability_summary`);
* **spectra** (images only): radially averaged power spectra of real and generated images, their
  low/high-frequency energy split and the spectral gap;
* **autocorrelation** (images only): AR(1) coefficients along rows and columns of real and generated images
  and of D's first feature maps;
* **demodulation** (style-based generators): per-layer activation variance ratios;
* **gradient flow**: the gradient norm reaching each D layer for hinge and non-saturating losses, with and
  without R1;
* **class leakage** (conditional generators with batch norm): per class, the RMS difference between samples
  generated in a pure-class batch and the same latents in a mixed batch with the training batches' class mix
  (the data's class proportions; equal shares with balanced batches)
  (:func:`lightning_gan.analysis.leakage.measure_leakage`);

and writes ``report.json`` plus PNG plots (singular values per layer, the per-frequency singular-value map
of D's conv with the largest operator norm, spectra, gradient flow, variance ratios) to one folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lightning_gan import registry
from lightning_gan.analysis.autocorrelation import ar1_phi
from lightning_gan.analysis.demodulation import activation_variance_ratios, find_modulated_convs, plot_variance_ratios
from lightning_gan.analysis.gradient_flow import discriminator_gradient_flow
from lightning_gan.analysis.leakage import has_batch_norm, measure_leakage
from lightning_gan.analysis.orthogonality import conv_frequency_singular_values, orthogonality_deviation
from lightning_gan.analysis.plots import heatmap, line_plot
from lightning_gan.analysis.spectra import energy_split, plot_spectra, radial_power_spectrum, spectral_gap
from lightning_gan.analysis.stability import (
    convergence_factor,
    jacobian_spectral_norm,
    layer_spectral_norms,
    max_stable_lr,
)
from lightning_gan.checkpoint import load_checkpoint, resolve_recorded
from lightning_gan.errors import ConfigError

__all__ = ["Networks", "diagnose", "load_networks", "networks_from_config", "stability_summary"]

NETWORKS = ("discriminator", "generator")


@dataclass
class Networks:
    """A generator/discriminator pair to diagnose and what is known about its run."""

    generator: nn.Module
    discriminator: nn.Module
    architecture: dict[str, Any]
    source: str
    datamodule: Any = None
    lrs: dict[str, float] = field(default_factory=dict)  # per network, as the optimizers last had them
    r1_gamma: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


def _r1_gamma(regularizers: Sequence[Any] | None, callbacks: dict[str, Any] | None = None) -> float:
    for reg in regularizers or ():
        if isinstance(reg, dict) and str(reg.get("class_path", "")).rsplit(".", 1)[-1].lower() == "r1":
            return float((reg.get("init_args") or {}).get("gamma", 10.0))
    for key, state in (callbacks or {}).items():
        if key.startswith("LazyR1") and isinstance(state, dict) and "gamma" in state:
            return float(state["gamma"])
    return 0.0


def _build_datamodule(data: dict[str, Any] | None) -> Any:
    if data is None:
        return None
    try:
        return registry.resolve("datasets", data)
    except Exception as exc:  # noqa: BLE001 - the report goes on without real data, and says so
        raise ConfigError(f"cannot rebuild the run's data ({data.get('class_path')}): {exc}") from exc


def load_networks(path: str | os.PathLike[str], *, ema: bool = True) -> Networks:
    """Generator (EMA by default), discriminator, data, learning rates and R1 gamma of a GANModule checkpoint."""
    ckpt = load_checkpoint(path)
    hparams = ckpt.get("hyper_parameters") or {}
    if "architecture" not in hparams or "state_dict" not in ckpt:
        raise ConfigError(f"{path} is not a GANModule checkpoint (no architecture hyperparameters or state_dict)")
    plugins = (ckpt.get("lightning_gan") or {}).get("plugins")
    pair = resolve_recorded("architectures", hparams["architecture"], kind="architecture", source=path,
                            plugins=plugins).build()
    state = ckpt["state_dict"]
    use_ema = ema and any(k.startswith("generator_ema.") for k in state)
    for net, prefix in ((pair.generator, "generator_ema." if use_ema else "generator."),
                        (pair.discriminator, "discriminator.")):
        weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        result = net.load_state_dict(weights, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ConfigError(f"{path}: the weights do not fit the architecture they record (missing "
                              f"{result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})")
    lrs = {}
    for name, opt_state in zip(NETWORKS, ckpt.get("optimizer_states") or []):  # GANModule: [D, G]
        groups = opt_state.get("param_groups") or []
        if groups and "lr" in groups[0]:
            lrs[name] = float(groups[0]["lr"])
    extra = state.get("_extra_state") or {}
    info = {"iteration": extra.get("iteration"), "kimg": (extra.get("images_seen") or 0) / 1000, "ema": use_ema}
    data = (ckpt.get("lightning_gan") or {}).get("data")
    return Networks(generator=pair.generator.eval(), discriminator=pair.discriminator.eval(),
                    architecture=hparams["architecture"], source=str(path), datamodule=_build_datamodule(data),
                    lrs=lrs, r1_gamma=_r1_gamma(hparams.get("regularizers"), ckpt.get("callbacks")), info=info)


def networks_from_config(config: str | os.PathLike[str]) -> Networks:
    """A freshly initialised pair from a YAML config or recipe name (``model.architecture``, ``data``)."""
    import yaml

    path = registry.recipe_path(str(config)) if not Path(config).is_file() else Path(config)
    cfg = yaml.safe_load(Path(path).read_text()) or {}
    model = cfg.get("model") or {}
    if "architecture" not in model:
        raise ConfigError(f"{path} has no model.architecture")
    seed = cfg.get("seed_everything")
    torch.manual_seed(seed if isinstance(seed, int) and not isinstance(seed, bool) else 0)  # the recipe's initial weights
    pair = registry.resolve("architectures", model["architecture"]).build()
    lrs = {}
    for name, key in (("discriminator", "d_optimizer"), ("generator", "g_optimizer")):
        opt = model.get(key)
        lr = (opt or {}).get("init_args", {}).get("lr") if isinstance(opt, dict) else None
        lrs[name] = float(lr) if lr is not None else 0.002  # GANModule's default Adam
    callbacks = {f"LazyR1{i}": cb.get("init_args", {}) for i, cb in enumerate((cfg.get("trainer") or {}).get("callbacks") or [])
                 if isinstance(cb, dict) and str(cb.get("class_path", "")).endswith("LazyR1")}
    return Networks(generator=pair.generator.eval(), discriminator=pair.discriminator.eval(),
                    architecture=model["architecture"], source=f"{path} (untrained)",
                    datamodule=_build_datamodule(cfg.get("data")), lrs=lrs,
                    r1_gamma=_r1_gamma(model.get("regularizers"), callbacks), info={"kimg": 0.0})


# -- stability --------------------------------------------------------------------------------------------


def stability_summary(generator: nn.Module, discriminator: nn.Module, real: Tensor, real_c: Tensor | None,
                      z: Tensor, c: Tensor | None, lrs: dict[str, float], alpha: float, *,
                      iterations: int = 20) -> dict[str, float]:
    """The linearized game (docs/theory.md#stability-of-the-linearized-game) at the networks' current weights.

    ``s_max`` is estimated as ``|J_D| |J_G|``: the spectral norms of D's input Jacobian at ``real`` and of G's
    Jacobian at ``z`` (power iteration, the largest over the batch's samples), i.e. a bound on the gain of
    ``z -> D(G(z))``, the coupling between the players in input space. ``alpha`` is the damping (R1's gamma
    damps D; 0 without it). For each network's learning rate ``eta``: ``r = (1 - eta alpha)^2 + (eta s_max)^2``
    (stable iff r < 1), and ``eta* = 2 alpha / (alpha^2 + s_max^2)`` (0 when alpha = 0: no step size makes the
    undamped linear game converge). These are the linear model's verdicts with an estimated s_max, not a proof
    about the nonlinear game.
    """
    modes = (generator.training, discriminator.training)
    generator.eval()
    discriminator.eval()
    try:
        j_d = jacobian_spectral_norm(lambda x: discriminator(x, real_c), real, iterations=iterations)
        j_g = jacobian_spectral_norm(lambda v: generator(v, c), z, iterations=iterations)
    finally:
        generator.train(modes[0])
        discriminator.train(modes[1])
    s_max = j_d * j_g
    out = {"jacobian_norm/D": j_d, "jacobian_norm/G": j_g, "s_max": s_max, "alpha": float(alpha),
           "eta_star": max_stable_lr(alpha, s_max) if alpha > 0 and s_max > 0 else 0.0}
    for name, lr in lrs.items():
        out[f"r/{name[0].upper()}"] = convergence_factor(lr, alpha, s_max)
        out[f"lr/{name[0].upper()}"] = lr
    return out


# -- the report -------------------------------------------------------------------------------------------


def _gain(module: nn.Module) -> float:
    gain = getattr(module, "weight_gain", 1.0)
    return float(gain) if isinstance(gain, (int, float)) else 1.0


def _layers(net: nn.Module, input_shape: Sequence[int], extra: Sequence[Any]) -> tuple[list[dict[str, Any]], Any]:
    records = layer_spectral_norms(net, tuple(input_shape), extra_inputs=tuple(extra))
    modules = dict(net.named_modules())
    rows, widest = [], None
    for rec in records:
        row = {"name": rec.name, "kind": rec.kind, "shape": list(rec.shape), "gain": rec.gain,
               "sigma_max": rec.sigma_max, "method": rec.method, "input_size": rec.input_size}
        if rec.kind == "conv2d" and rec.input_size is not None:
            weight = modules[rec.name].weight.detach().double() * _gain(modules[rec.name])
            row["orthogonality_deviation"] = float(orthogonality_deviation(weight, rec.input_size))
            if widest is None or rec.sigma_max > widest[1]:
                widest = (rec.name, rec.sigma_max, weight, rec.input_size)
        rows.append(row)
    return rows, widest


def _batch(datamodule: Any, n: int, seed: int) -> tuple[Tensor | None, Tensor | None]:
    if datamodule is None:
        return None, None
    from lightning_gan.metrics.base import iter_real

    images, labels = [], []
    for x, y in iter_real(datamodule, n, seed=seed, batch_size=n):
        images.append(x)
        labels.append(y)
    y = None if labels[0] is None else torch.cat(labels)
    return torch.cat(images).float(), y


def _one_hot(labels: Tensor | None, c_dim: int) -> Tensor | None:
    if not c_dim or labels is None:
        return None
    return labels.float() if labels.dim() == 2 else torch.nn.functional.one_hot(labels.long(), c_dim).float()


def diagnose(nets: Networks, out_dir: str | os.PathLike[str], *, num_samples: int = 256, seed: int = 0,
             plots: bool = True, step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure everything listed in the module docstring; write ``report.json`` and the PNGs to ``out_dir``.

    Args:
        nets: the networks (:func:`load_networks`, :func:`networks_from_config`).
        out_dir: the folder for ``report.json`` and the plots.
        num_samples: real and generated samples for spectra, autocorrelation and gradient flow.
        seed: seed of the samples.
        plots: write the PNGs.
        step: called with each section's name before it runs (progress display).
    """
    from lightning_gan.metrics.base import generate_images

    step = step or (lambda name: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    G, D = nets.generator, nets.discriminator
    c_dim = int(getattr(G, "c_dim", 0) or 0)
    z_dim = int(G.z_dim)
    report: dict[str, Any] = {"source": nets.source, "architecture": nets.architecture, "info": nets.info,
                              "r1_gamma": nets.r1_gamma, "plots": {}, "notes": []}
    gen = torch.Generator().manual_seed(seed)
    real, labels = _batch(nets.datamodule, num_samples, seed)
    if real is None:
        report["notes"].append("no data recorded: sections that compare with real samples are skipped")
    real_c = _one_hot(labels, c_dim)
    fake_c = None if not c_dim else torch.nn.functional.one_hot(torch.arange(num_samples) % c_dim, c_dim).float()
    fake = generate_images(G, num_samples, seed=seed, labels=None if fake_c is None else fake_c.argmax(1)).float()
    images = fake.dim() == 4

    step("layers")
    report["layers"] = {}
    widest = {}
    c2 = None if not c_dim else torch.eye(c_dim)[:2]
    for name, net, shape in (("generator", G, (2, z_dim)), ("discriminator", D, (2, *fake.shape[1:]))):
        rows, widest[name] = _layers(net, shape, () if c2 is None else (c2,))
        bound = math.prod(r["sigma_max"] for r in rows) if rows else float("nan")
        report["layers"][name] = {"rows": rows, "lipschitz_bound": bound}
    if plots:
        series = {f"{n[0].upper()} ({len(v['rows'])} layers)": (list(range(len(v["rows"]))), [r["sigma_max"] for r in v["rows"]])
                  for n, v in report["layers"].items() if v["rows"]}
        line_plot(series, out / "singular_values.png", "layer (module order)", "largest singular value",
                  "Largest singular value per layer", logy=True, hlines=(1.0,))
        report["plots"]["singular_values"] = str(out / "singular_values.png")
        if widest.get("discriminator"):
            lname, sigma, weight, size = widest["discriminator"]
            sv = torch.fft.fftshift(conv_frequency_singular_values(weight, size)[..., 0], dim=(0, 1))
            h, w = size
            heatmap(sv.numpy(), out / "conv_frequency_sigma.png",
                    f"D {lname}: sigma_1(u, v) at {h}x{w} (max {sigma:.3g})", "largest singular value",
                    xlabel="horizontal frequency (cycles/pixel)", ylabel="vertical frequency",
                    extent=(-0.5, 0.5 - 1 / w, 0.5 - 1 / h, -0.5))
            report["plots"]["conv_frequency_sigma"] = str(out / "conv_frequency_sigma.png")

    step("stability")
    z = torch.randn(8, z_dim, generator=gen)
    probe_real = real[:8] if real is not None else fake[:8]
    probe_c = (real_c[:8] if real_c is not None else fake_c[:8]) if c_dim else None
    report["stability"] = stability_summary(G, D, probe_real, probe_c, z, None if not c_dim else fake_c[:8],
                                            nets.lrs or {"discriminator": 0.002, "generator": 0.002}, nets.r1_gamma)

    if images and real is not None:
        step("spectra")
        fr, pr = radial_power_spectrum(real)
        ff, pf = radial_power_spectrum(fake)
        report["spectra"] = {"gap_decades": spectral_gap((fr, pr), (ff, pf)), "real": energy_split(real),
                             "generated": energy_split(fake), "frequency": fr.tolist(),
                             "power_real": pr.tolist(), "power_generated": pf.tolist()}
        if plots:
            plot_spectra({"real": (fr, pr), "generated": (ff, pf)}, out / "spectra.png",
                         title=f"Radially averaged power spectra (gap {report['spectra']['gap_decades']:.3f} decades)")
            report["plots"]["spectra"] = str(out / "spectra.png")

        step("autocorrelation")
        with torch.no_grad():
            first = _first_conv_output(D, real[:64], None if real_c is None else real_c[:64])
        report["autocorrelation"] = {
            "real": {"rows": ar1_phi(real, -1, demean="map"), "columns": ar1_phi(real, -2, demean="map")},
            "generated": {"rows": ar1_phi(fake, -1, demean="map"), "columns": ar1_phi(fake, -2, demean="map")},
        }
        if first is not None:
            report["autocorrelation"]["D first feature maps (real)"] = {
                "rows": ar1_phi(first, -1, demean="map"), "columns": ar1_phi(first, -2, demean="map")}
    elif not images:
        report["notes"].append("samples are not images: spectra and autocorrelation are skipped")

    if find_modulated_convs(G):
        step("demodulation")
        rows = activation_variance_ratios(G, num_samples=min(num_samples, 64), seed=seed)
        report["demodulation"] = [dataclasses.asdict(r) if dataclasses.is_dataclass(r) else r._asdict() for r in rows]
        if plots:
            plot_variance_ratios(rows, out / "variance_ratios.png")
            report["plots"]["variance_ratios"] = str(out / "variance_ratios.png")

    if c_dim >= 2 and has_batch_norm(G):
        step("class leakage")
        balanced = bool(getattr(nets.datamodule, "balance_classes", False))
        proportions = None if balanced else getattr(nets.datamodule, "class_proportions", None)
        batch = max(num_samples, c_dim)
        rows = measure_leakage(G, batch_size=batch, proportions=proportions, seed=seed)
        names = list(getattr(nets.datamodule, "classes", None) or range(c_dim))
        report["leakage"] = {"batch_size": batch, "proportions": None if proportions is None else list(proportions),
                             "rows": [{**dataclasses.asdict(r), "class": str(names[r.label]) if r.label < len(names)
                                       else str(r.label)} for r in rows]}

    step("gradient flow")
    gamma = nets.r1_gamma or 10.0
    flow_real = real if real is not None else fake
    flow: dict[str, list[dict[str, Any]]] = {}
    for loss in ("non_saturating", "hinge"):
        for g in (0.0, gamma):
            rows = discriminator_gradient_flow(D, flow_real[:64], fake[:64], loss, g,
                                               real_c=None if not c_dim else (real_c if real_c is not None else fake_c)[:64],
                                               fake_c=None if not c_dim else fake_c[:64])
            flow[f"{loss}{f' + R1({g:g})' if g else ''}"] = [r._asdict() for r in rows]
    report["gradient_flow"] = flow
    if plots:
        series = {name: (list(range(len(rows))), [r["grad_norm"] for r in rows]) for name, rows in flow.items()}
        line_plot(series, out / "gradient_flow.png", "D layer (input -> output)", "gradient norm",
                  "Gradient norm reaching each D layer", logy=True)
        report["plots"]["gradient_flow"] = str(out / "gradient_flow.png")

    (out / "report.json").write_text(json.dumps(report, indent=2, default=_json_default))
    report["json"] = str(out / "report.json")
    return report


def _json_default(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def _first_conv_output(discriminator: nn.Module, x: Tensor, c: Tensor | None) -> Tensor | None:
    """The output of the first 4-D-weight layer D runs on ``x`` (a hook; None if there is none)."""
    captured: list[Tensor] = []
    handles = []
    for _, module in discriminator.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, Tensor) and weight.dim() == 4:
            handles.append(module.register_forward_hook(
                lambda m, i, o: captured.append(o.detach().float()) if not captured and o.dim() == 4 else None))
    mode = discriminator.training
    discriminator.eval()
    try:
        discriminator(x, c)
    finally:
        discriminator.train(mode)
        for h in handles:
            h.remove()
    return captured[0] if captured else None


def print_report(report: dict[str, Any], console: Any = None) -> None:
    """The report as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    info = report.get("info") or {}
    kimg = info.get("kimg")
    console.print(f"[bold]lightning-gan diagnose[/bold]: {report['source']}"
                  + (f" ({kimg:.1f} kimg{', EMA generator' if info.get('ema') else ''})" if kimg is not None else ""))
    for note in report.get("notes", []):
        console.print(f"  note: {note}")
    for net, data in report["layers"].items():
        table = Table(title=f"{net}: largest singular value per layer (product {data['lipschitz_bound']:.3g})")
        for col in ("layer", "kind", "weight shape", "gain", "sigma_max", "orth. deviation D", "at"):
            table.add_column(col, justify="left" if col in ("layer", "kind") else "right")
        for r in data["rows"]:
            dev = r.get("orthogonality_deviation")
            size = r.get("input_size")
            table.add_row(r["name"], r["kind"], "x".join(map(str, r["shape"])), f"{r['gain']:.3g}",
                          f"{r['sigma_max']:.4g}", "-" if dev is None else f"{dev:.3f}",
                          "-" if size is None else f"{size[0]}x{size[1]}")
        console.print(table)
    st = report["stability"]
    table = Table(title="linearized game (r < 1: the linear model contracts)")
    for col in ("quantity", "value"):
        table.add_column(col)
    table.add_row("|J_D| (input Jacobian, real samples)", f"{st['jacobian_norm/D']:.4g}")
    table.add_row("|J_G| (latent Jacobian)", f"{st['jacobian_norm/G']:.4g}")
    table.add_row("s_max ~ |J_D| |J_G|", f"{st['s_max']:.4g}")
    table.add_row("alpha (R1 gamma; 0 = undamped)", f"{st['alpha']:.4g}")
    for key in ("D", "G"):
        if f"r/{key}" in st:
            r = st[f"r/{key}"]
            shown = f"{r:.6f}" if abs(r - 1) >= 1e-4 else f"1 {'+' if r >= 1 else '-'} {abs(r - 1):.2e}"
            table.add_row(f"r at {key}'s lr {st[f'lr/{key}']:.3g}", f"{shown} {'(contracts)' if r < 1 else '[red](does not contract)[/red]'}")
    table.add_row("largest stable lr eta*", f"{st['eta_star']:.4g}")
    console.print(table)
    if "spectra" in report:
        sp = report["spectra"]
        table = Table(title=f"energy split; spectral gap {sp['gap_decades']:.3f} decades")
        for col in ("", "low (structure)", "high (texture)"):
            table.add_column(col)
        for k in ("real", "generated"):
            table.add_row(k, f"{sp[k]['low']:.3f}", f"{sp[k]['high']:.3f}")
        console.print(table)
    if "autocorrelation" in report:
        table = Table(title="AR(1) phi_hat (per-map mean removed)")
        for col in ("maps", "rows", "columns"):
            table.add_column(col)
        for k, v in report["autocorrelation"].items():
            table.add_row(k, f"{v['rows']:.3f}", f"{v['columns']:.3f}")
        console.print(table)
    if "demodulation" in report:
        table = Table(title="modulated convs: Var(out)/Var(in)")
        for col in ("layer", "ratio", "before demod.", "running product"):
            table.add_column(col, justify="left" if col == "layer" else "right")
        for r in report["demodulation"]:
            table.add_row(r["name"], f"{r['ratio']:.3f}", f"{r['modulated_ratio']:.3f}", f"{r['cumulative']:.3f}")
        console.print(table)
    if "leakage" in report:
        lk = report["leakage"]
        mix = "equal shares" if lk["proportions"] is None else "the data's class proportions"
        table = Table(title=f"class leakage of batch statistics: pure-class batch vs a mixed batch of {lk['batch_size']} "
                            f"({mix}); 0 with per-sample or class-grouped statistics")
        for col in ("class", "in mixed batch", "RMS difference", "relative"):
            table.add_column(col, justify="left" if col == "class" else "right")
        for r in lk["rows"]:
            table.add_row(r["class"], str(r["count"]), f"{r['rms_difference']:.4g}", f"{r['relative']:.3f}")
        console.print(table)
    flow = report["gradient_flow"]
    names = list(flow)
    table = Table(title="gradient norm reaching each D layer")
    table.add_column("layer")
    for n in names:
        table.add_column(n, justify="right")
    for i, row in enumerate(flow[names[0]]):
        table.add_row(row["name"], *(f"{flow[n][i]['grad_norm']:.3g}" for n in names))
    console.print(table)
    for name, path in report.get("plots", {}).items():
        console.print(f"{name + ':':24s}{path}", soft_wrap=True, highlight=False)
    console.print(f"{'report:':24s}{report.get('json')}", soft_wrap=True, highlight=False)
