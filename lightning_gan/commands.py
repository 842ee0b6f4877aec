"""``lightning-gan evaluate``, ``generate``, ``export`` and ``project``: work on a trained run's checkpoint.

* ``evaluate --ckpt RUN.ckpt --metrics fid,kid,pr,coverage --num-samples N`` scores the sampling (EMA)
  generator against the run's own data, prints a table and writes JSON.
* ``generate --ckpt RUN.ckpt`` writes a grid of samples with their seeds, a truncation sweep, a latent
  interpolation (animated GIF) and, for class-conditional models, one row per class; ``--direction K`` a sweep
  along a closed-form direction (``lightning_gan.directions``), ``--style-mixing ROWS COLS`` a style-mixing grid
  (``lightning_gan.style_mixing``) instead.
* ``export --ckpt RUN.ckpt --out G.safetensors`` writes the EMA generator as safetensors plus a JSON
  config; ``lightning_gan.checkpoint.load_generator`` rebuilds it and reproduces its samples bit for bit.
  ``--format onnx`` writes an ONNX graph checked against PyTorch (``lightning_gan.onnx_export``).
* ``project --ckpt RUN.ckpt --image a.png`` finds the latent of an image (``lightning_gan.projection``).

Every command reads checkpoints with ``weights_only=True`` (``lightning_gan.checkpoint``) and takes an
exported ``.safetensors`` generator wherever it takes a checkpoint. Bad input ends in one line on stderr.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lightning_gan import registry
from lightning_gan.cli_messages import fail
from lightning_gan.errors import ConfigError

__all__ = ["evaluate_command", "export_command", "generate_command", "parse_seeds", "project_command"]

_USER_ERRORS = (ConfigError, registry.PluginError, TypeError, ValueError, FloatingPointError, FileNotFoundError)


def _guard(command: Callable[[list[str]], int]) -> Callable[[list[str]], int]:
    def run(argv: list[str]) -> int:
        import warnings

        def show(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
            sys.stderr.write(f"lightning-gan: warning: {message}\n")

        try:
            with warnings.catch_warnings():
                warnings.showwarning = show  # one line per warning, no source path
                return command(argv)
        except _USER_ERRORS as exc:
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return 2
    run.__doc__ = command.__doc__
    return run


def parse_seeds(text: str) -> list[int]:
    """``"0-7"``, ``"1,5,9"`` or a mix (``"0-3,10"``) to a list of non-negative seeds."""
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                seeds.extend(range(a, b + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise ValueError(f"--seeds: cannot read {part!r}; use e.g. 0-15 or 1,5,9") from None
    if not seeds or min(seeds) < 0:
        raise ValueError(f"--seeds: need at least one non-negative seed, got {text!r}")
    return seeds


def _floats(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{option}: expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise ValueError(f"{option}: expected at least one number")
    return values


def _device(name: str | None) -> Any:
    import torch

    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"--device: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    return device


def _data_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs or ():
        if "=" not in pair:
            raise ValueError(f"--data: expected KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def _accepts(cls: type, name: str) -> bool:
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        if name in params:
            return True
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return False
    return False


def _options(cls: type) -> list[str]:
    """The keyword options a class's constructor accepts, following ``**kwargs`` up its bases (no ``*args``,
    ``**kwargs`` or ``self``): what ``--set NAME.KEY=VALUE`` can set."""
    options: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = list(inspect.signature(init).parameters.values())
        options += [p.name for p in params if p.name != "self"
                    and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return list(dict.fromkeys(options))


def _metric_overrides(pairs: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs or ():
        key, eq, value = pair.partition("=")
        name, dot, arg = key.partition(".")
        if not (eq and dot and name and arg):
            raise ValueError(f"--set: expected METRIC.KEY=VALUE (e.g. ppl.space=z), got {pair!r}")
        out.setdefault(name.strip(), {})[arg.strip()] = _data_overrides([f"{arg}={value}"])[arg]
    return out


def _metric(spec: Any, overrides: dict[str, Any], strict: set[str] = frozenset()) -> Any:
    """A metric from a name or config, with the command's overrides where the metric takes them
    (``strict`` ones must be accepted: they were asked for that metric by name)."""
    reg = registry.get_registry("metrics")
    if isinstance(spec, str):
        cls = reg.load(spec.strip())
        init_args: dict[str, Any] = {}
    else:
        cls = registry.import_target(spec["class_path"]) if "." in spec["class_path"] else reg.load(spec["class_path"])
        init_args = dict(spec.get("init_args") or {})
    for key, value in overrides.items():
        if key in strict and not _accepts(cls, key):
            options = _options(cls)
            close = difflib.get_close_matches(key, options, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"--set: {cls.__name__} takes no {key!r}; {hint}its options are {', '.join(options)}")
        if value is not None and _accepts(cls, key):
            init_args[key] = value
    return reg.resolve({"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args})


@_guard
def evaluate_command(argv: list[str]) -> int:
    """``lightning-gan evaluate --ckpt RUN.ckpt [--metrics fid,kid,pr,coverage] [--num-samples N]``."""
    parser = argparse.ArgumentParser(
        prog="lightning-gan evaluate", description="Score a trained generator (the EMA one) against its run's data.")
    parser.add_argument("--ckpt", required=True, help="run checkpoint (.ckpt) or exported generator (.safetensors)")
    parser.add_argument("--metrics", help="comma-separated metric names (see `lightning-gan plugins --group metrics`); "
                                          "default: the run's configured metrics, else `coverage`")
    parser.add_argument("--num-samples", type=int, help="generated samples per metric (default: each metric's own)")
    parser.add_argument("--seed", type=int, help="seed of the samples (default: each metric's own)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    parser.add_argument("--inception-weights", help="local Inception-v3 weights file for fid/kid/is/pr")
    parser.add_argument("--extractor", choices=["inception", "shapes"],
                        help="feature space of fid/kid/is/pr: Inception-v3 (default) or the shapes classifier (no download)")
    parser.add_argument("--set", action="append", default=[], metavar="METRIC.KEY=VALUE", dest="metric_args",
                        help="an init arg of one metric, e.g. ppl.space=z or kid.subset_size=500; repeatable")
    parser.add_argument("--data", action="append", default=[], metavar="KEY=VALUE",
                        help="override an init arg of the run's datamodule (e.g. path=/data/ffhq.zip); repeatable")
    parser.add_argument("--out", help="JSON file for the results (default: <ckpt>-metrics.json next to the checkpoint)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--no-ema", action="store_true", help="score the trained generator, not its EMA")
    parser.add_argument("--truncation", type=float, metavar="T",
                        help="draw the latents truncated to [-T, T] by resampling (BigGAN's truncation trick); "
                             "the record says so")
    parser.add_argument("--standing-stats", type=int, default=0, metavar="N",
                        help="re-estimate the generator's batch-norm statistics over N batches first (BigGAN)")
    parser.add_argument("--standing-stats-classes", choices=["data", "uniform"], default="data",
                        help="class shares of the standing-statistics batches: the run's data's (default) or equal")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from lightning_gan.checkpoint import load_sampler
    from lightning_gan.metrics.base import EvaluationContext

    loaded = load_sampler(args.ckpt, ema=not args.no_ema)
    datamodule = loaded.build_datamodule(_data_overrides(args.data))
    overrides = {"num_samples": args.num_samples, "seed": args.seed, "inception_weights": args.inception_weights,
                 "extractor": args.extractor}
    if args.metrics:
        specs: list[Any] = [m for m in args.metrics.split(",") if m.strip()]
    else:
        defaults = datamodule.default_metrics() if hasattr(datamodule, "default_metrics") else []
        specs = list(loaded.metrics or []) or list(defaults) or ["coverage"]
        specs = [s.config() if hasattr(s, "config") else s for s in specs]
        for spec in loaded.metrics or []:  # the run's metric plugins: one line naming any that is missing
            loaded.require(spec, "metric")
    per_metric = _metric_overrides(args.metric_args)
    names = [s if isinstance(s, str) else s["class_path"].rsplit(".", 1)[-1] for s in specs]
    unused = sorted(set(per_metric) - {n.strip() for n in names})
    if unused:
        raise ValueError(f"--set names {', '.join(unused)}, which --metrics does not include ({', '.join(names)})")
    metrics = [_metric(s, {**overrides, **per_metric.get(n.strip(), {})}, strict=set(per_metric.get(n.strip(), {})))
               for s, n in zip(specs, names)]
    for metric in metrics:  # every weights file and classifier before any sampling
        metric.setup(datamodule)

    device = _device(args.device)
    shares = _standing_shares(loaded, args.standing_stats, args.standing_stats_classes, datamodule)
    generator = _prepare_sampler(loaded.generator.to(device), args.truncation, args.standing_stats,
                                 class_shares=shares)
    context = EvaluationContext(batch_size=args.batch_size, progress=sys.stderr.isatty())
    console = Console(stderr=False)
    results: dict[str, float] = {}
    timings: dict[str, float] = {}
    for metric in metrics:
        start = time.perf_counter()
        results.update(metric.compute(generator, datamodule, context))
        timings[type(metric).__name__] = time.perf_counter() - start

    table = Table(title=f"lightning-gan evaluate: {loaded.source.name}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    notes = {k: v for metric in metrics for k, v in metric.notes().items()}
    if args.truncation is not None:
        notes["truncation"] = f"latents truncated to [-{args.truncation:g}, {args.truncation:g}] by resampling"
    if args.standing_stats:
        notes["standing_stats"] = (f"batch-norm statistics re-estimated over {args.standing_stats} batches, classes "
                                   f"in {_mix(args.standing_stats, shares)}")
    for name, value in results.items():
        table.add_row(name, f"{value:.6g}")
    for name, text in notes.items():
        table.add_row(name, text)
    console.print(table)
    kimg = loaded.info.get("kimg")
    out = Path(args.out) if args.out else loaded.source.with_name(f"{loaded.source.stem}-metrics.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "checkpoint": str(loaded.source), "ema": loaded.ema, "kimg": kimg, "iteration": loaded.info.get("iteration"),
        "data": loaded.data, "metrics": {k: (v if math.isfinite(v) else str(v)) for k, v in results.items()},
        "notes": notes, "truncation": args.truncation, "standing_stats": args.standing_stats,
        "metric_configs": [m.config() for m in metrics], "seconds": timings,
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    console.print(f"{'generator:':<12}{'EMA' if loaded.ema else 'trained'}" + (f", {kimg:.1f} kimg" if kimg is not None else ""))
    print(f"{'results:':<12}{out}")
    return 0


# -- generate ----------------------------------------------------------------------------------------
def _truncated(generator: Any, z: Any, c: Any, psi: float) -> Any:
    """Samples at truncation ``psi``: the generator's own ``truncation_psi`` if it takes one; for style-based
    generators with ``w_avg``, ``w = w_avg + psi (w - w_avg)``; otherwise the latents scaled by ``psi``."""
    if psi == 1.0:
        return generator(z, c)
    if "truncation_psi" in inspect.signature(generator.forward).parameters:
        return generator(z, c, truncation_psi=psi)
    if all(hasattr(generator, a) for a in ("mapping", "synthesis", "w_avg")):
        w = generator.mapping(z, c)
        w_avg = generator.w_avg.to(w.dtype)
        return generator.synthesis(w_avg + psi * (w - w_avg))
    return generator(z * psi, c)


def _seed_latents(generator: Any, seeds: Sequence[int], device: Any, truncation: float | None = None) -> Any:
    import torch

    from lightning_gan.ops.truncation import truncated_normal

    def one(seed: int) -> Any:
        rng = torch.Generator(device=device).manual_seed(int(seed))
        if truncation is None:
            return generator.sample_latents(1, generator=rng, device=device)
        return truncated_normal((1, generator.z_dim), truncation, generator=rng, device=device)

    return torch.cat([one(s) for s in seeds])


def _standing_shares(loaded: Any, standing_stats: int, classes: str, datamodule: Any = None) -> Any:
    """The class shares of the standing-statistics batches: the run's training data's (``datamodule``, else
    rebuilt from the checkpoint's data config), None (equal shares) for ``classes="uniform"``, an unconditional
    generator, or data that cannot be rebuilt (one line on stderr)."""
    from lightning_gan.utils.standing_stats import data_class_shares

    if not standing_stats or classes == "uniform" or not getattr(loaded.generator, "c_dim", 0):
        return None
    reason = "the run's data gives no class shares"
    try:
        shares = data_class_shares(datamodule if datamodule is not None else loaded.build_datamodule())
    except (ConfigError, registry.PluginError, TypeError, ValueError, KeyError, OSError) as exc:
        detail = (str(exc).splitlines() or [type(exc).__name__])[0]
        shares, reason = None, f"the run's data could not be rebuilt: {detail}"
    if shares is None:
        print(f"standing statistics: classes in equal shares ({reason})", file=sys.stderr)
    return shares


def _mix(standing_stats: int, shares: Any) -> str | None:
    """What the records say about the classes of the standing statistics."""
    return None if not standing_stats else "equal shares" if shares is None else "the data's shares"


def _prepare_sampler(generator: Any, truncation: float | None, standing_stats: int, *, wrap: bool = True,
                     class_shares: Any = None) -> Any:
    """The generator after ``standing_stats`` batches of standing statistics (classes in ``class_shares``, None:
    equal shares), wrapped (``wrap``) so that its ``sample_latents`` draws latents truncated to
    [-truncation, truncation]."""
    from lightning_gan.ops.truncation import TruncatedGenerator, check_threshold
    from lightning_gan.utils.standing_stats import standing_statistics

    if truncation is not None:
        check_threshold(truncation)
    if standing_stats < 0:
        raise ValueError(f"--standing-stats must be >= 0 batches, got {standing_stats}")
    if standing_stats and not standing_statistics(generator, num_batches=standing_stats, truncation=truncation,
                                                  class_shares=class_shares):
        print("standing statistics: the generator has no batch norm; nothing re-estimated", file=sys.stderr)
    return generator if truncation is None or not wrap else TruncatedGenerator(generator, truncation)


def _slerp(a: Any, b: Any, t: float) -> Any:
    """Spherical interpolation of the latents' directions, with their norms interpolated linearly."""
    import torch

    na, nb = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
    ua, ub = a / na, b / nb
    omega = torch.acos((ua * ub).sum(1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    s = torch.sin(omega)
    direction = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / s
    return direction * ((1 - t) * na + t * nb)


@_guard
def generate_command(argv: list[str]) -> int:
    """``lightning-gan generate --ckpt RUN.ckpt [--seeds 0-15] [--psi 1,0.7,0.5] [--out DIR]``."""
    parser = argparse.ArgumentParser(
        prog="lightning-gan generate",
        description="Pictures from a trained generator: a seed grid, a truncation sweep, a latent interpolation "
                    "(GIF) and, for class-conditional models, one row per class.")
    parser.add_argument("--ckpt", required=True, help="run checkpoint (.ckpt) or exported generator (.safetensors)")
    parser.add_argument("--out", help="output folder (default: generated-<ckpt name> next to the checkpoint)")
    parser.add_argument("--seeds", default="0-15", help="seeds of the grid, e.g. 0-15 or 1,5,9 (default 0-15)")
    parser.add_argument("--psi", default="1,0.8,0.6,0.4,0.2,0", help="truncation values of the sweep (default 1,0.8,...,0)")
    parser.add_argument("--frames", type=int, default=16, help="interpolation frames between two key latents (default 16)")
    parser.add_argument("--keyframes", type=int, default=4, help="key latents the interpolation loops through (default 4)")
    parser.add_argument("--fps", type=float, default=12.0, help="frames per second of the GIF (default 12)")
    parser.add_argument("--scale", type=int, default=0, help="pixel upscaling of the pictures (default: to at least 64 px)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--no-ema", action="store_true", help="sample the trained generator, not its EMA")
    parser.add_argument("--truncation", type=float, metavar="T",
                        help="draw every latent truncated to [-T, T] by resampling (BigGAN's truncation trick, in Z; "
                             "--psi is StyleGAN's, in W)")
    parser.add_argument("--standing-stats", type=int, default=0, metavar="N",
                        help="re-estimate the generator's batch-norm statistics over N batches of random latents "
                             "before sampling (BigGAN's standing statistics; default 0: off)")
    parser.add_argument("--standing-stats-classes", choices=["data", "uniform"], default="data",
                        help="class shares of the standing-statistics batches: the run's data's (default) or equal")
    edits = parser.add_argument_group("edits (written instead of the pictures above)")
    edits.add_argument("--direction", type=int, metavar="K",
                       help="sweep along closed-form direction K (SeFa, 0 = strongest): one row per seed (or "
                            "--latent), one column per strength")
    edits.add_argument("--strength", default="-3:3", metavar="A:B",
                       help="strengths of the --direction sweep: A:B (--steps values), A:B:S or a,b,c (default -3:3)")
    edits.add_argument("--steps", type=int, default=7, help="columns of an A:B --strength (default 7)")
    edits.add_argument("--latent", metavar="FILE.safetensors",
                       help="edit this latent (written by `lightning-gan project`) instead of the seeds' ones")
    edits.add_argument("--style-mixing", nargs=2, metavar=("ROWS", "COLS"),
                       help="style-mixing grid of row seeds and column seeds, e.g. 0-3 10-13 (style-based generators)")
    edits.add_argument("--mix-layers", default="coarse",
                       help="the layers the column seeds' w takes over: coarse (default), middle, fine or A-B (ws "
                            "indices); at 64 px and up coarse is 4-8 px, middle 16-32 px, fine 64 px to the output")
    args = parser.parse_args(_attach_negative(argv, ("--strength",)))
    seeds = parse_seeds(args.seeds)
    psis = _floats(args.psi, "--psi")
    if args.frames < 1 or args.keyframes < 2:
        raise ValueError("--frames must be >= 1 and --keyframes >= 2")

    import torch
    from PIL import Image

    from lightning_gan.checkpoint import load_sampler
    from lightning_gan.utils.images import make_grid_image

    loaded = load_sampler(args.ckpt, ema=not args.no_ema)
    device = _device(args.device)
    # truncated latents come from _seed_latents: the generator stays unwrapped for the --psi sweep's W space
    shares = _standing_shares(loaded, args.standing_stats, args.standing_stats_classes)
    gen = _prepare_sampler(loaded.generator.to(device), args.truncation, args.standing_stats, wrap=False,
                           class_shares=shares).eval()
    out = Path(args.out) if args.out else loaded.source.with_name(f"generated-{loaded.source.stem}")
    out.mkdir(parents=True, exist_ok=True)
    if args.direction is not None or args.style_mixing:  # an edit instead of the usual pictures
        return _write_edits(args, loaded, gen, seeds, device, out)
    written: dict[str, Any] = {}
    c_dim = gen.c_dim

    def onehot(labels: Sequence[int]) -> Any:
        return None if not c_dim else torch.nn.functional.one_hot(torch.tensor(list(labels), device=device) % c_dim, c_dim).float()

    def run(z: Any, c: Any, psi: float = 1.0, seed: int = 0) -> Any:
        with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)  # noise inputs inside the generator, if any
            return _truncated(gen, z, c, psi).float().cpu()

    def save(image: Image.Image, name: str, scale: int) -> Path:
        if scale > 1:
            image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
        path = out / name
        image.save(path)
        return path

    z = _seed_latents(gen, seeds, device, args.truncation)
    labels = [s % c_dim for s in seeds] if c_dim else None
    if len(gen.output_shape) != 3:  # points (toy 2-D data): a scatter plot of many samples instead of pictures
        from lightning_gan.utils.images import PALETTE, REAL_COLOR, PointSet, scatter_plot

        many = run(_seed_latents(gen, range(seeds[0], seeds[0] + 2500), device, args.truncation), onehot(range(2500)))
        if many.dim() != 2 or many.shape[1] != 2:
            raise ValueError(f"generate draws images [C, H, W] or 2-D points; this generator makes {tuple(gen.output_shape)}")
        sets, modes, sigma = [], None, None
        try:
            dm = loaded.build_datamodule()
            dm.setup("fit")
            real = dm.train_dataset[:2500][0] if hasattr(dm.train_dataset, "__getitem__") else None
            modes, sigma = getattr(dm, "modes", None), getattr(dm, "sigma", None)
            if real is not None:
                sets.append(PointSet(real.numpy(), REAL_COLOR, "real"))
        except (ConfigError, TypeError, ValueError, IndexError, KeyError):
            pass  # no data recorded: samples only
        sets.append(PointSet(many.numpy(), PALETTE[0], f"samples (seeds {seeds[0]}..)"))
        path = out / "samples.png"
        scatter_plot(sets, modes=modes, mode_radius=None if sigma is None else 3 * sigma,
                     title=f"{loaded.source.name}" + (f" | kimg {loaded.info['kimg']:.1f}" if loaded.info.get("kimg") is not None else "")
                     ).save(path)
        written["samples"] = str(path)
    else:
        h = gen.output_shape[1]
        scale = args.scale or max(1, math.ceil(64 / h))
        nrow = math.ceil(math.sqrt(len(seeds)))
        written["samples"] = str(save(make_grid_image(run(z, onehot(labels or [])), nrow), "samples.png", scale))
        written["seeds"] = {"order": "row-major", "nrow": nrow, "seeds": seeds, "labels": labels}
        # truncation sweep: one row per seed (at most 8), one column per psi
        rows = seeds[:8]
        zs = z[:len(rows)]
        cs = onehot(labels[:len(rows)]) if labels else None
        columns = [run(zs, cs, psi) for psi in psis]
        sweep = torch.stack(columns, dim=1).flatten(0, 1)  # [rows * len(psis)]
        written["truncation"] = {"file": str(save(make_grid_image(sweep, len(psis)), "truncation.png", scale)),
                                 "rows": rows, "psi": psis, "method": _truncation_method(gen)}
        # class rows: the same latent per column, one row per class
        if c_dim:
            cols = seeds[:10]
            zc = z[:len(cols)].repeat(c_dim, 1)
            cc = onehot([k for k in range(c_dim) for _ in cols])
            written["classes"] = {"file": str(save(make_grid_image(run(zc, cc), len(cols)), "classes.png", scale)),
                                  "rows": "class 0..c_dim-1", "columns": cols}
        # interpolation: every grid cell loops through `keyframes` latents (seed s, s + 1000, s + 2000, ...)
        tracks = seeds[:16]
        keys = [_seed_latents(gen, [s + 1000 * k for s in tracks], device, args.truncation)
                for k in range(args.keyframes)]
        ct = onehot([s % c_dim for s in tracks]) if c_dim else None
        frames = []
        n_track = math.ceil(math.sqrt(len(tracks)))
        for k in range(args.keyframes):
            a, b = keys[k], keys[(k + 1) % args.keyframes]
            for f in range(args.frames):
                image = make_grid_image(run(_slerp(a, b, f / args.frames), ct), n_track)
                if scale > 1:
                    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
                frames.append(image.convert("P", palette=Image.ADAPTIVE) if image.mode == "RGB" else image)
        gif = out / "interpolation.gif"
        frames[0].save(gif, save_all=True, append_images=frames[1:], duration=max(20, int(1000 / args.fps)), loop=0)
        written["interpolation"] = {"file": str(gif), "frames": len(frames), "tracks": tracks,
                                    "keyframe_seeds": "s + 1000 k", "path": "slerp in Z (directions), norms linear"}
    manifest = out / "generate.json"
    manifest.write_text(json.dumps({"checkpoint": str(loaded.source), "ema": loaded.ema, **loaded.info,
                                    "truncation": args.truncation, "standing_stats": args.standing_stats,
                                    "standing_stats_classes": _mix(args.standing_stats, shares), "files": written},
                                   indent=2, default=str) + "\n")
    for key, value in written.items():
        path = value if isinstance(value, str) else value.get("file") if isinstance(value, dict) else None
        if path:
            print(f"{key + ':':<16}{path}")
    print(f"{'manifest:':<16}{manifest}")
    return 0


def _attach_negative(argv: list[str], options: Sequence[str]) -> list[str]:
    """``--strength -3:3`` as ``--strength=-3:3``: argparse would take a value starting with ``-`` for an option."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in options and arg.startswith("-") and len(arg) > 1 and (arg[1].isdigit() or arg[1] == "."):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def _edit_latents(args: argparse.Namespace, gen: Any, seeds: Sequence[int], device: Any) -> tuple[Any, Any, list[str]]:
    """``(latents, c, row labels)`` of an edit: the ``--latent`` file's, or the seeds' (w = mapping(z) for
    style-based generators, z otherwise; classes ``seed % c_dim``)."""
    import torch

    from lightning_gan.directions import edit_space

    space = edit_space(gen)
    if args.latent:
        from lightning_gan.latents import load_latent

        kind, latent, c = load_latent(args.latent)
        if (kind == "z") != (space == "z"):
            raise ConfigError(f"--latent: {args.latent} holds a {kind} latent, this generator is edited in "
                              f"{space.upper()} space")
        if c is None and gen.c_dim:
            raise ConfigError(f"--latent: {args.latent} holds no class and the generator is conditional")
        return latent.to(device), (None if c is None else c.to(device)), [Path(args.latent).name] * len(latent)
    z = _seed_latents(gen, seeds, device, args.truncation)
    c = torch.nn.functional.one_hot(torch.tensor([s % gen.c_dim for s in seeds], device=device),
                                    gen.c_dim).float() if gen.c_dim else None
    with torch.no_grad():
        latents = gen.mapping(z, c) if space == "w" else z
    return latents, c, [f"seed {s}" for s in seeds]


def _write_edits(args: argparse.Namespace, loaded: Any, gen: Any, seeds: Sequence[int], device: Any,
                 out: Path) -> int:
    """``generate --direction K`` or ``--style-mixing ROWS COLS``: the grid, a manifest, the paths printed."""
    from PIL import Image

    from lightning_gan.directions import (direction_sweep, edit_space, factorizable_weights, parse_strengths,
                                          sefa_directions)
    from lightning_gan.utils.images import make_grid_image

    if args.direction is not None and args.style_mixing:
        raise ValueError("--direction and --style-mixing: one edit at a time")
    if args.style_mixing:
        from lightning_gan.style_mixing import require_style_based

        require_style_based(gen)
    else:
        factorizable_weights(gen)  # one line for an architecture without closed-form directions
    if len(gen.output_shape) != 3:
        raise ValueError(f"generate edits images [C, H, W]; this generator makes {tuple(gen.output_shape)}")
    scale = args.scale or max(1, math.ceil(64 / gen.output_shape[1]))
    written: dict[str, Any] = {}
    if args.style_mixing:
        written["style_mixing"] = _style_mixing_grid(args, gen, device, out, scale)
        return _write_manifest(loaded, out, written)
    latents, c, rows = _edit_latents(args, gen, seeds, device)
    if args.steps < 2:
        raise ValueError(f"--steps must be >= 2, got {args.steps}")
    strengths = parse_strengths(args.strength, args.steps)
    dim = gen.w_dim if edit_space(gen) == "w" else gen.z_dim
    if not 0 <= args.direction < dim:
        raise ValueError(f"--direction: K must be between 0 and {dim - 1} (the latent size), got {args.direction}")
    directions, eigenvalues = sefa_directions(gen, args.direction + 1)
    images = direction_sweep(gen, latents, directions[args.direction].to(device), strengths, c)  # [N, S, C, H, W]
    grid = make_grid_image(images.flatten(0, 1).float().cpu(), len(strengths))
    path = out / f"direction-{args.direction}.png"
    if scale > 1:
        grid = grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)
    grid.save(path)
    written["direction"] = {"file": str(path), "k": args.direction, "eigenvalue": float(eigenvalues[-1]),
                            "space": edit_space(gen), "rows": rows, "strengths": strengths,
                            "method": "SeFa: top eigenvectors of A^T A (A: the generator's factorizable_weights)"}
    return _write_manifest(loaded, out, written)


def _style_mixing_grid(args: argparse.Namespace, gen: Any, device: Any, out: Path, scale: int) -> dict[str, Any]:
    """``generate --style-mixing ROWS COLS``: write style-mixing.png, return its record."""
    import torch
    from PIL import Image

    from lightning_gan.style_mixing import mix_layers, style_mixing_grid, ws_resolution
    from lightning_gan.utils.images import make_grid_image

    row_seeds, col_seeds = parse_seeds(args.style_mixing[0]), parse_seeds(args.style_mixing[1])
    layers = mix_layers(args.mix_layers, num_ws=gen.num_ws, resolution=gen.output_shape[1])

    def ws(seeds: list[int]) -> Any:
        z = _seed_latents(gen, seeds, device, args.truncation)
        c = torch.nn.functional.one_hot(torch.tensor([s % gen.c_dim for s in seeds], device=device),
                                        gen.c_dim).float() if gen.c_dim else None
        with torch.no_grad():
            return gen.mapping(z, c)  # [N, num_ws, w_dim]

    grid = style_mixing_grid(gen, ws(row_seeds), ws(col_seeds), layers)  # [R + 1, C + 1, ch, H, W]
    image = make_grid_image(grid.flatten(0, 1).float().cpu(), len(col_seeds) + 1)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    path = out / "style-mixing.png"
    image.save(path)
    return {"file": str(path), "rows": row_seeds, "columns": col_seeds, "mix_layers": args.mix_layers,
            "ws_indices": layers, "resolutions": sorted({ws_resolution(i) for i in layers}),
            "cells": "row seed's w, the column seed's w in ws_indices; top row: column seeds, left column: row seeds"}


def _write_manifest(loaded: Any, out: Path, written: dict[str, Any]) -> int:
    """generate.json for an edit, and the paths printed."""
    manifest = out / "generate.json"
    manifest.write_text(json.dumps({"checkpoint": str(loaded.source), "ema": loaded.ema, **loaded.info,
                                    "files": written}, indent=2, default=str) + "\n")
    for key, value in written.items():
        print(f"{key + ':':<16}{value['file']}")
    print(f"{'manifest:':<16}{manifest}")
    return 0


def _truncation_method(gen: Any) -> str:
    if "truncation_psi" in inspect.signature(gen.forward).parameters:
        return "the generator's truncation_psi"
    if all(hasattr(gen, a) for a in ("mapping", "synthesis", "w_avg")):
        return "w = w_avg + psi (w - w_avg)"
    return "latent scaling z * psi (the generator has no W space)"


# -- export ------------------------------------------------------------------------------------------
@_guard
def export_command(argv: list[str]) -> int:
    """``lightning-gan export --ckpt RUN.ckpt [--format safetensors|onnx] [--out G.safetensors|G.onnx]``."""
    parser = argparse.ArgumentParser(
        prog="lightning-gan export",
        description="Write the sampling (EMA) generator as safetensors plus a JSON config to rebuild it, or as an "
                    "ONNX graph (z[, c][, psi]) -> images checked against PyTorch with onnxruntime.")
    parser.add_argument("--ckpt", required=True, help="run checkpoint (.ckpt) or exported generator (.safetensors)")
    parser.add_argument("--format", choices=["safetensors", "onnx"], default="safetensors",
                        help="safetensors (default: weights + JSON config) or onnx (needs pip install "
                             "'lightning-gan[onnx]')")
    parser.add_argument("--out", help="output file (default: <ckpt>-G.safetensors or <ckpt>-G.onnx next to the "
                                      "checkpoint)")
    parser.add_argument("--no-ema", action="store_true", help="export the trained generator, not its EMA")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--noise", choices=["const", "none"], default="const",
                        help="ONNX, StyleGAN2: the noise inputs baked into the graph: the generator's fixed maps "
                             "(const, default) or none")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="ONNX: largest absolute difference from PyTorch allowed on the check (default 1e-4)")
    parser.add_argument("--standing-stats", type=int, default=0, metavar="N",
                        help="re-estimate the generator's batch-norm statistics over N batches before exporting "
                             "(BigGAN's standing statistics; default 0: the checkpoint's own)")
    args = parser.parse_args(argv)

    import torch

    from lightning_gan.checkpoint import export_generator, load_generator, load_sampler
    from lightning_gan.metrics.base import generate_images

    if args.format == "onnx":
        from lightning_gan.onnx_export import require_onnx

        require_onnx()  # one line saying what to install, before loading anything
    loaded = load_sampler(args.ckpt, ema=not args.no_ema)
    if args.standing_stats:
        shares = _standing_shares(loaded, args.standing_stats, "data")
        _prepare_sampler(loaded.generator, None, args.standing_stats, wrap=False, class_shares=shares)
    if args.format == "onnx":
        return _export_onnx(loaded, args)
    out = Path(args.out) if args.out else loaded.source.with_name(f"{loaded.source.stem}-G.safetensors")
    info = {**loaded.info, "ema": loaded.ema, "source": str(loaded.source)}
    weights, config = export_generator(loaded.generator, out, architecture=loaded.architecture, data=loaded.data, info=info)
    # Check the round trip now rather than let a user find out later.
    before = generate_images(loaded.generator, 4, seed=0)
    after = generate_images(load_generator(weights), 4, seed=0)
    if not torch.equal(before, after):
        raise ConfigError(f"the exported generator at {weights} does not reproduce the checkpoint's samples")
    print(f"{'weights:':<10}{weights}")
    print(f"{'config:':<10}{config}")
    print(f"{'checked:':<10}reloaded generator reproduces the checkpoint's samples bit for bit "
          f"(lightning_gan.checkpoint.load_generator)")
    return 0


def _export_onnx(loaded: Any, args: argparse.Namespace) -> int:
    """``export --format onnx``: write, check against PyTorch, print what the graph takes."""
    from lightning_gan.onnx_export import export_onnx

    out = Path(args.out) if args.out else loaded.source.with_name(f"{loaded.source.stem}-G.onnx")
    name = str(loaded.architecture.get("class_path", "?")).rsplit(".", 1)[-1] if isinstance(
        loaded.architecture, dict) else str(loaded.architecture)
    generator = loaded.generator
    has_bn = any(getattr(m, "running_mean", None) is not None for m in generator.modules())
    if has_bn and not args.standing_stats:
        print("batch norm: the graph uses the checkpoint's running statistics (a run with the StandingStatistics "
              "callback saved its last standing statistics); --standing-stats N re-estimates them first",
              file=sys.stderr)
    result = export_onnx(generator, out, opset=args.opset, noise=args.noise, tolerance=args.tolerance,
                         architecture=name)
    shapes = {"z": f"[N, {generator.z_dim}]", "c": f"[N, {generator.c_dim}] one-hot", "psi": "[] truncation in W"}
    print(f"{'onnx:':<10}{result.path} (opset {result.opset})")
    print(f"{'inputs:':<10}" + ", ".join(f"{n} {shapes[n]}" for n in result.inputs)
          + f" -> images [N, {', '.join(map(str, generator.output_shape))}]")
    if "psi" in result.inputs:
        print(f"{'noise:':<10}{result.noise} (fixed in the graph)")
    print(f"{'checked:':<10}onnxruntime vs PyTorch on seeds {result.seeds[0]}-{result.seeds[-1]}"
          + (f", psi {', '.join(f'{p:g}' for p in result.psi)}" if "psi" in result.inputs else "")
          + f": max abs difference {result.max_abs_diff:.3g} (tolerance {args.tolerance:g})")
    return 0


# -- project -----------------------------------------------------------------------------------------
@_guard
def project_command(argv: list[str]) -> int:
    """``lightning-gan project --ckpt RUN.ckpt --image a.png [b.png ...] [--space w|w+] [--steps 1000]``."""
    parser = argparse.ArgumentParser(
        prog="lightning-gan project",
        description="Find the latent whose image is closest to each given image (GAN inversion): StyleGAN2 in W or "
                    "W+ with its noise maps, other generators in Z. Writes the projection next to the target (png), "
                    "the latent (safetensors, for generate --latent), a GIF of the optimization and the distance.")
    parser.add_argument("--ckpt", required=True, help="run checkpoint (.ckpt) or exported generator (.safetensors)")
    parser.add_argument("--image", nargs="+", required=True, metavar="IMAGE", help="target image files")
    parser.add_argument("--out", help="output folder (default: each image's own folder)")
    parser.add_argument("--space", choices=["w", "w+", "z"],
                        help="latent to optimize: w (one for all layers, default for StyleGAN2), w+ (one per layer) "
                             "or z (the default, and the only choice, for other generators)")
    parser.add_argument("--steps", type=int, default=1000, help="optimization steps (default 1000, as the paper)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default 0.1 in W/W+, 0.05 in Z)")
    parser.add_argument("--distance", choices=["auto", "lpips", "multiscale_pixels"], default="auto",
                        help="image distance: LPIPS (VGG) when its weights are on this machine, else multi-scale "
                             "pixels (auto, default); lpips requires the weights")
    parser.add_argument("--noise-weight", type=float, default=1e5,
                        help="weight of the noise maps' autocorrelation penalty (StyleGAN2; default 1e5)")
    parser.add_argument("--class", type=int, dest="class_index", metavar="K",
                        help="the class of a conditional generator (default: picked with the start, the closest)")
    parser.add_argument("--resize", action="store_true", help="resize images to the generator's size first")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random draws (default 0)")
    parser.add_argument("--fps", type=float, default=12.0, help="frames per second of the GIF (default 12)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--no-ema", action="store_true", help="project with the trained generator, not its EMA")
    args = parser.parse_args(argv)
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    images = [Path(p) for p in args.image]
    for path in images:
        if not path.is_file():
            raise FileNotFoundError(f"--image: no file at {path}")

    import torch

    from lightning_gan.checkpoint import load_sampler
    from lightning_gan.metrics.base import progress_bar
    from lightning_gan.projection import project_many

    loaded = load_sampler(args.ckpt, ema=not args.no_ema)
    gen = loaded.generator.to(_device(args.device)).eval()
    if len(gen.output_shape) != 3:
        raise ValueError(f"project takes images [C, H, W]; this generator makes {tuple(gen.output_shape)}")
    targets = torch.stack([_target_image(path, gen.output_shape, args.resize) for path in images])  # [N, C, H, W]
    what = images[0].name if len(images) == 1 else f"{len(images)} images"
    with progress_bar(sys.stderr.isatty(), args.steps, f"projecting {what}") as advance:  # all at once
        results = project_many(gen, targets, space=args.space, steps=args.steps, lr=args.lr, distance=args.distance,
                               noise_weight=args.noise_weight, class_index=args.class_index, seed=args.seed,
                               frame_every=max(1, args.steps // 50), progress=advance)
    for path, result in zip(images, results):
        files = _write_projection(result, path, Path(args.out) if args.out else path.parent, loaded, args)
        print(f"{path.name}: {result.distance_name} distance {result.distance:.4g}, PSNR {result.psnr:.2f} dB "
              f"({result.space})")
        for key, file in files.items():
            print(f"  {key + ':':<10}{file}")
    return 0


def _target_image(path: Path, shape: Sequence[int], resize: bool) -> Any:
    """The image at ``path`` as [C, H, W] in [-1, 1] with the generator's channels; its size checked (or resized)."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    channels, h, w = shape
    try:
        image = Image.open(path)
        image = image.convert("L" if channels == 1 else "RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"--image: cannot read {path} as an image ({exc})") from None
    if image.size != (w, h):
        if not resize:
            raise ValueError(f"--image: {path} is {image.width}x{image.height}, the generator makes {w}x{h} images; "
                             f"pass --resize to resize it")
        image = image.resize((w, h), Image.LANCZOS)
    array = np.asarray(image, dtype=np.float32).reshape(h, w, -1)  # [H, W, C]
    if array.shape[2] != channels:
        raise ValueError(f"--image: the generator makes {channels}-channel images, {path} has {array.shape[2]}")
    return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1  # [C, H, W]


def _write_projection(result: Any, image: Path, out: Path, loaded: Any, args: argparse.Namespace) -> dict[str, str]:
    """``<stem>-projected.png`` (target | projection), ``-latent.safetensors``, ``-projection.gif``, ``.json``."""
    import torch
    from PIL import Image

    from lightning_gan.latents import save_latent
    from lightning_gan.utils.images import make_grid_image

    out.mkdir(parents=True, exist_ok=True)
    stem = image.stem
    scale = max(1, math.ceil(64 / result.image.shape[1]))

    def picture(tensor: Any) -> Image.Image:
        grid = make_grid_image(tensor.float(), tensor.shape[0])
        return grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST) if scale > 1 else grid

    files = {"compare": out / f"{stem}-projected.png", "latent": out / f"{stem}-latent.safetensors",
             "gif": out / f"{stem}-projection.gif", "record": out / f"{stem}-projection.json"}
    picture(torch.stack([result.target, result.image])).save(files["compare"])
    save_latent(files["latent"], space=result.space, latent=result.latent, c=result.c,
                metadata={"source": str(loaded.source), "image": str(image), "distance": f"{result.distance:.6g}"})
    frames = [picture(torch.stack([result.target, f])) for f in result.frames]
    frames = [f.convert("P", palette=Image.ADAPTIVE) if f.mode == "RGB" else f for f in frames]
    frames[0].save(files["gif"], save_all=True, append_images=frames[1:], duration=max(20, int(1000 / args.fps)),
                   loop=0)
    files["record"].write_text(json.dumps({
        "image": str(image), "checkpoint": str(loaded.source), "ema": loaded.ema, "space": result.space,
        "steps": args.steps, "distance_name": result.distance_name, "distance": result.distance,
        "psnr_db": result.psnr, "class": None if result.c is None else int(result.c.argmax()),
        "files": {k: str(v) for k, v in files.items()}}, indent=2) + "\n")
    return {k: str(v) for k, v in files.items()}


@_guard
def diagnose_command(argv: list[str]) -> int:
    """``lightning-gan diagnose --ckpt RUN.ckpt [--out DIR]`` (or ``--config FILE|RECIPE`` for an untrained model)."""
    parser = argparse.ArgumentParser(
        prog="lightning-gan diagnose",
        description="Measure a model against the theory: singular values and orthogonality per layer, the linearized "
                    "game's convergence factor, spectra, AR(1) fits, demodulation, gradient flow, class leakage of conditional "
                    "batch norm; tables and PNG plots.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", help="a GANModule run checkpoint (.ckpt)")
    source.add_argument("--config", help="a YAML config or recipe name: diagnose the freshly initialised model")
    parser.add_argument("--out", help="folder for report.json and the plots (default: <ckpt stem>-diagnose/ next to the "
                                      "checkpoint, ./diagnose-<recipe>/ for --config)")
    parser.add_argument("--num-samples", type=int, default=256, help="real and generated samples (default 256)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-ema", action="store_true", help="the trained generator instead of its EMA")
    parser.add_argument("--no-plots", action="store_true", help="tables and report.json only")
    args = parser.parse_args(argv)
    if args.num_samples < 8:
        raise ValueError(f"--num-samples must be >= 8, got {args.num_samples}")

    from rich.console import Console

    from lightning_gan.analysis.report import diagnose, load_networks, networks_from_config, print_report

    if args.ckpt:
        if not Path(args.ckpt).is_file():
            raise FileNotFoundError(f"--ckpt: no checkpoint file at {args.ckpt}")
        nets = load_networks(args.ckpt, ema=not args.no_ema)
        out = Path(args.out) if args.out else Path(args.ckpt).with_name(f"{Path(args.ckpt).stem}-diagnose")
    else:
        nets = networks_from_config(args.config)
        out = Path(args.out) if args.out else Path(f"diagnose-{Path(args.config).stem}")
    console = Console(stderr=True)
    start = time.perf_counter()
    with console.status("diagnosing") as status:
        report = diagnose(nets, out, num_samples=args.num_samples, seed=args.seed, plots=not args.no_plots,
                          step=lambda name: status.update(f"diagnosing: {name}"))
    out_console = Console(width=max(Console().width, 120))
    print_report(report, out_console)
    out_console.print(f"{'time:':24s}{time.perf_counter() - start:.1f} s")
    return 0
