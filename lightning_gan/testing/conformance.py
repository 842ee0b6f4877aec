"""Conformance checks a plugin author runs on each kind of plugin (and on a recipe) before publishing it.

Each check builds the plugin through the registry (so a name, an import path, a config mapping or an
instance all work), exercises the contract of ``lightning_gan.interfaces`` the way ``GANModule`` will,
and raises :class:`ConformanceError` (an ``AssertionError``, so pytest reports it as a failed test)
with a message that says which promise is broken::

    from lightning_gan.testing import (check_architecture, check_augmentation, check_datamodule, check_growable,
                                       check_loss, check_metric, check_precision, check_recipe, check_regularizer)

    def test_my_plugin():
        check_architecture(MyArchitecture(resolution=16, base_channels=4))
        check_growable(MyArchitecture(resolution=16, base_channels=4))  # only for one that grows progressively
        check_loss("my_loss")
        check_regularizer("my_penalty", architecture=MyArchitecture(resolution=16, base_channels=4))
        check_augmentation("my_augment")          # shapes, gradients, its random stream, state, a tiny fit
        check_precision("my_precision")          # trains a tiny GAN with it for a few iterations
        check_datamodule(MyData(batch_size=8))   # the attributes and batches lightning-gan reads
        check_metric("my_metric")                # on a tiny generator and toy data (or pass your own)
        check_recipe("my_arch-mydata32")         # parses, names resolve, builds a model that fits its data

Every check seeds its own random numbers and leaves the caller's global RNG state untouched.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import math
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from lightning_gan import registry
from lightning_gan.interfaces import (
    AdversarialLoss,
    ArchitectureSpec,
    Augmentation,
    Discriminator,
    Generator,
    NetworkPair,
    PenaltyInputs,
    Regularizer,
    growth_gaps,
)
from lightning_gan.ops.growth import downsample_average, upsample_nearest

__all__ = [
    "ConformanceError",
    "check_architecture",
    "check_augmentation",
    "check_datamodule",
    "check_growable",
    "check_loss",
    "check_metric",
    "check_precision",
    "check_recipe",
    "check_regularizer",
]

_EXTREME_LOGIT = 50.0


class ConformanceError(AssertionError):
    """A plugin breaks a promise of the lightning-gan contracts; the message says which."""


# -- helpers -------------------------------------------------------------------------------------
@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's RNG inside the block and restore the caller's state afterwards."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _fail(label: str, message: str, cause: BaseException | None = None) -> ConformanceError:
    err = ConformanceError(f"{label}: {message}")
    if cause is not None:
        err.__cause__ = cause
    return err


def _call(label: str, what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, turning an exception into a ConformanceError that names the call."""
    try:
        return fn(*args)
    except ConformanceError:
        raise
    except Exception as exc:
        raise _fail(label, f"{what} raised {type(exc).__name__}: {exc}", exc) from exc


def _one_hot(n: int, c_dim: int, device: torch.device) -> Tensor | None:
    """Conditions [n, c_dim] cycling through the classes (as GANModule passes them: float one-hot)."""
    if not c_dim:
        return None
    return torch.nn.functional.one_hot(torch.arange(n, device=device) % c_dim, c_dim).float()


def _shape(t: Any) -> str:
    return str(list(t.shape)) if isinstance(t, Tensor) else f"a {type(t).__name__}, not a Tensor"


def _check_tensor(label: str, what: str, value: Any, expected: tuple[int, ...]) -> Tensor:
    if not isinstance(value, Tensor):
        raise _fail(label, f"{what} must return a Tensor, got {type(value).__name__}")
    if tuple(value.shape) != expected:
        raise _fail(label, f"{what} returned shape {list(value.shape)}, expected {list(expected)}")
    if not value.is_floating_point():
        raise _fail(label, f"{what} returned dtype {value.dtype}, expected a floating-point tensor")
    if not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise _fail(label, f"{what} returned {bad} non-finite values (inf/nan) out of {value.numel()}")
    return value


def _check_scalar(label: str, what: str, value: Any) -> Tensor:
    if not isinstance(value, Tensor) or value.dim() != 0:
        raise _fail(label, f"{what} must return a scalar tensor (a mean over the batch), got {_shape(value)}")
    return _check_tensor(label, what, value, ())


def _gradient_report(net: nn.Module, *, rtol: float = 0.0) -> tuple[list[str], list[str], list[str]]:
    """Names of the parameters whose gradient is None, zero (up to ``rtol`` of the largest), or non-finite."""
    grads = {name: p.grad for name, p in net.named_parameters()}
    largest = max((float(g.abs().max()) for g in grads.values() if g is not None and g.numel()), default=0.0)
    missing, zero, nonfinite = [], [], []
    for name, grad in grads.items():
        if grad is None:
            missing.append(name)
        elif not bool(torch.isfinite(grad).all()):
            nonfinite.append(name)
        elif grad.numel() == 0 or float(grad.abs().max()) <= rtol * largest:
            zero.append(name)
    return missing, zero, nonfinite


def _roundtrip_config(label: str, group: str, obj: Any) -> tuple[dict[str, Any], Any]:
    """``obj.config()`` through JSON (as checkpoints and the CLI store it) and back through the registry."""
    try:
        config = obj.config()
    except TypeError as exc:
        raise _fail(label, f"config() failed: {exc}", exc) from exc
    try:
        config = json.loads(json.dumps(config))
    except (TypeError, ValueError) as exc:
        raise _fail(label, f"config() is not plain JSON-able data: {exc}", exc) from exc
    try:
        rebuilt = registry.resolve(group, config)
    except Exception as exc:
        raise _fail(label, f"cannot be rebuilt from its config {config!r} through lightning_gan.registry."
                           f"resolve({group!r}, config): {type(exc).__name__}: {exc}", exc) from exc
    again = rebuilt.config()
    if again != config:
        raise _fail(label, f"config does not round-trip: resolve(config).config() gives {again!r}, "
                           f"expected {config!r}; keep every constructor argument unchanged as an attribute")
    return config, rebuilt


# -- architectures -------------------------------------------------------------------------------
def _build(label: str, spec: ArchitectureSpec, device: torch.device) -> NetworkPair:
    pair = _call(label, "build()", spec.build)
    if not (isinstance(pair, tuple) and len(pair) == 2 and hasattr(pair, "generator")
            and hasattr(pair, "discriminator")):
        raise _fail(label, f"build() must return a lightning_gan.NetworkPair(generator, discriminator), "
                           f"got {type(pair).__name__}")
    return NetworkPair(pair.generator.to(device), pair.discriminator.to(device))


def _check_types(label: str, g: Any, d: Any) -> None:
    if not isinstance(g, Generator):
        raise _fail(label, f"the generator is a {type(g).__name__}; subclass lightning_gan.interfaces.Generator")
    if not isinstance(d, Discriminator):
        raise _fail(label, f"the discriminator is a {type(d).__name__}; "
                           f"subclass lightning_gan.interfaces.Discriminator")
    for name in ("z_dim", "c_dim"):
        value = getattr(g, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(label, f"generator.{name} must be an int, got {value!r}")
    if g.z_dim < 1 or g.c_dim < 0:
        raise _fail(label, f"generator needs z_dim >= 1 and c_dim >= 0, got z_dim={g.z_dim}, c_dim={g.c_dim}")
    if not isinstance(g.output_shape, tuple) or not all(isinstance(s, int) and s > 0 for s in g.output_shape):
        raise _fail(label, f"generator.output_shape must be a tuple of positive ints, got {g.output_shape!r}")
    if d.c_dim != g.c_dim:
        raise _fail(label, f"discriminator.c_dim={d.c_dim} differs from generator.c_dim={g.c_dim}")
    if tuple(d.input_shape) != tuple(g.output_shape):
        raise _fail(label, f"discriminator.input_shape={tuple(d.input_shape)} differs from "
                           f"generator.output_shape={g.output_shape}")


def _check_latents(label: str, g: Generator, n: int, device: torch.device) -> Tensor:
    z = _call(label, f"generator.sample_latents({n})", lambda: g.sample_latents(n, device=device))
    _check_tensor(label, f"generator.sample_latents({n})", z, (n, g.z_dim))
    z1, z2 = (g.sample_latents(n, generator=torch.Generator(device=device).manual_seed(7), device=device)
              for _ in range(2))
    if not torch.equal(z1, z2):
        raise _fail(label, "generator.sample_latents(n, generator=...) must draw from the torch.Generator "
                           "it is given (two calls with equally seeded generators differ)")
    return z


def _float64_copies(g: Generator, d: Discriminator) -> tuple[Generator, Discriminator] | None:
    try:
        return copy.deepcopy(g).double(), copy.deepcopy(d).double()
    except Exception:  # e.g. a module that cannot be copied; the float32 originals are checked instead
        return None


def _growth_stages(g: Any, d: Any) -> list[tuple[int, float]] | None:
    """For a growable pair, every stage mid-fade (the first at alpha 1); None for a fixed-resolution pair."""
    if growth_gaps(g, d):
        return None
    first, *later = g.resolutions
    return [(first, 1.0), *((r, 0.5) for r in later)]


def _check_gradient_flow(label: str, g: Generator, d: Discriminator, z: Tensor, c: Tensor | None) -> None:
    """One backward of D(G(z)) must reach every parameter of both networks with a nonzero gradient.

    It runs on float64 copies where the networks allow it, so that a gradient which is zero in exact
    arithmetic (a bias cancelled by a normalization) is not hidden by float32 rounding noise. A growable
    pair uses some layers at some stages only (the previous stage's toRGB): its gradients are summed over
    one backward per stage, each mid-fade, and every parameter must be reached at some stage.
    """
    weights = torch.randn(z.shape[0], device=z.device)  # a generic direction, not only the sum of logits
    stages = _growth_stages(g, d)

    def logits_of(gen: Generator, disc: Discriminator, zz: Tensor, cc: Tensor | None) -> list[Tensor]:
        if stages is None:
            return [disc(gen(zz, cc), cc)]
        out = []
        for resolution, alpha in stages:
            gen.set_stage(resolution, alpha)
            disc.set_stage(resolution, alpha)
            out.append(disc(gen(zz, cc), cc))
        return out

    final = None if stages is None else (g.resolution, g.alpha)
    copies, rtol = _float64_copies(g, d), 1e-9
    if copies is not None:
        g64, d64 = copies
        try:
            c64 = None if c is None else c.double()
            all_logits = logits_of(g64, d64, z.double(), c64)
            nets = (g64, d64)
        except Exception:  # an op without float64 support: fall back to float32 and exact zeros
            copies = None
    if copies is None:
        all_logits, nets, rtol = logits_of(g, d, z, c), (g, d), 0.0
        if final is not None:
            g.set_stage(*final)
            d.set_stage(*final)
    for net in nets:
        net.requires_grad_(True)
        net.zero_grad(set_to_none=True)
    sum((logits.reshape(-1) * weights.to(logits.dtype)).sum() for logits in all_logits).backward()
    problems = []
    for which, net in zip(("generator", "discriminator"), nets):
        missing, zero, nonfinite = _gradient_report(net, rtol=rtol)
        if missing:
            problems.append(f"{which} parameters with no gradient (None; unused in forward?): {', '.join(missing)}")
        if zero:
            problems.append(f"{which} parameters with an all-zero gradient (e.g. a bias right before a "
                            f"normalization that cancels it): {', '.join(zero)}")
        if nonfinite:
            problems.append(f"{which} parameters with non-finite gradients: {', '.join(nonfinite)}")
        net.zero_grad(set_to_none=True)
    if problems:
        raise _fail(label, "gradients of D(G(z, c), c) do not reach every parameter; "
                    + "; ".join(problems) + ". Remove unused parameters or keep constants in buffers.")


def _check_rejects_missing_condition(label: str, g: Generator, d: Discriminator, z: Tensor, x: Tensor) -> None:
    for which, fn, arg in (("generator", g, z), ("discriminator", d, x)):
        try:
            with torch.no_grad():
                fn(arg, None)
        except (ValueError, TypeError) as exc:
            text = str(exc).lower()
            if "c_dim" not in text and "condition" not in text:
                raise _fail(label, f"conditional {which}(..., c=None) raised {type(exc).__name__}: {exc!s}, whose "
                                   f"message names neither 'c_dim' nor 'condition'; say that c is required") from exc
        except Exception as exc:
            raise _fail(label, f"conditional {which}(..., c=None) must raise a ValueError saying that c is required "
                               f"(c_dim={g.c_dim}), got {type(exc).__name__}: {exc}", exc) from exc
        else:
            raise _fail(label, f"conditional {which} (c_dim={g.c_dim}) accepted c=None; it must raise a "
                               f"ValueError saying that c is required")


def _compare_state_shapes(label: str, which: str, a: nn.Module, b: nn.Module) -> None:
    sa = {k: tuple(v.shape) for k, v in a.state_dict().items()}
    sb = {k: tuple(v.shape) for k, v in b.state_dict().items()}
    if sa == sb:
        return
    diffs = [f"{k}: {sa[k]} vs {sb[k]}" for k in sorted(sa.keys() & sb.keys()) if sa[k] != sb[k]]
    diffs += [f"{k} missing after rebuild" for k in sorted(sa.keys() - sb.keys())]
    diffs += [f"{k} only after rebuild" for k in sorted(sb.keys() - sa.keys())]
    raise _fail(label, f"the {which} rebuilt from spec.config() has a different state: {'; '.join(diffs[:10])}"
                       f"{' ...' if len(diffs) > 10 else ''}. Keep every constructor argument unchanged as an "
                       f"attribute of the same name.")


def check_architecture(spec_or_name: ArchitectureSpec | str | dict[str, Any], *, batch_size: int = 4,
                       seed: int = 0, device: torch.device | str = "cpu") -> NetworkPair:
    """Check an architecture plugin against the Generator/Discriminator contracts; return the pair it built.

    Checks: the pair's types and attributes (int ``z_dim``/``c_dim``, tuple ``output_shape``, matching
    ``c_dim`` and ``input_shape``); ``sample_latents`` shape and seeding; ``G(z, c)`` has shape
    [N, *output_shape] and ``D(x, c)`` shape [N], both finite; one backward of D(G(z)) gives every
    parameter of both networks a nonzero finite gradient; G works in eval mode on one sample; two
    builds share no parameter; ``spec.config()`` survives JSON and rebuilds through the registry into a
    pair with the same state shapes, whose state_dict loads strictly and computes the same outputs;
    conditional networks reject ``c=None`` with a ValueError.

    Args:
        spec_or_name: an ArchitectureSpec, a registered name, an import path or a config mapping.
        batch_size: samples per test batch (a multiple of any packing the discriminator does).
        seed: seed of every random draw in the check.
        device: where to run the networks.
    """
    device = torch.device(device)
    spec = registry.resolve("architectures", spec_or_name)
    label = type(spec).__name__
    with _seeded(seed, device):
        g, d = _build(label, spec, device)
        _check_types(label, g, d)
        g.train()
        d.train()
        n = batch_size
        c = _one_hot(n, g.c_dim, device)
        z = _check_latents(label, g, n, device)

        x = _call(label, "generator(z, c)", g, z, c)
        _check_tensor(label, "generator(z, c)", x, (n, *g.output_shape))
        logits = _call(label, "discriminator(G(z, c), c)", d, x, c)
        if isinstance(logits, Tensor) and tuple(logits.shape) == (n, 1):
            raise _fail(label, f"discriminator returned shape {[n, 1]}; it must return one logit per sample, "
                               f"shape [N] = [{n}] (squeeze the last dimension)")
        _check_tensor(label, "discriminator(x, c)", logits, (n,))
        _check_gradient_flow(label, g, d, z, c)

        if g.c_dim:
            _check_rejects_missing_condition(label, g, d, z, x.detach())

        g.eval()
        one = _call(label, "generator(z, c) in eval mode on one sample", g, z[:1], None if c is None else c[:1])
        _check_tensor(label, "generator(z, c) in eval mode on one sample", one, (1, *g.output_shape))

        g2, d2 = _build(label, spec, device)
        shared = {id(p) for p in g2.parameters()} | {id(p) for p in d2.parameters()}
        if any(id(p) in shared for p in (*g.parameters(), *d.parameters())):
            raise _fail(label, "two build() calls share parameters; build() must return a fresh pair")

        _, spec2 = _roundtrip_config(label, "architectures", spec)
        g2, d2 = _build(label, spec2, device)
        for which, a, b in (("generator", g, g2), ("discriminator", d, d2)):
            _compare_state_shapes(label, which, a, b)
            try:
                b.load_state_dict(a.state_dict(), strict=True)
            except RuntimeError as exc:
                raise _fail(label, f"the {which}'s state_dict does not load strictly into a rebuilt one: {exc}",
                            exc) from exc
        for net in (g, d, g2, d2):
            net.eval()
        with torch.no_grad():
            outputs = []
            for gen, disc in ((g, d), (g2, d2)):
                torch.manual_seed(seed + 1)  # the same noise for both, should the networks draw any
                sample = gen(z, c)
                outputs.append((sample, disc(sample, c)))
        for which, i in (("generator", 0), ("discriminator", 1)):
            if not torch.allclose(outputs[0][i], outputs[1][i], rtol=1e-4, atol=1e-5):
                raise _fail(label, f"a {which} rebuilt from spec.config() with the original's state_dict computes "
                                   f"different outputs: some state lives outside parameters and buffers")
        g.train()
        d.train()
    return NetworkPair(g, d)


# -- growable architectures ----------------------------------------------------------------------
def _max_difference(a: Tensor, b: Tensor) -> str:
    if a.shape != b.shape:
        return f"shapes {list(a.shape)} vs {list(b.shape)}"
    return f"largest difference {float((a.double() - b.double()).abs().max()):.3g}"


def _set_pair_stage(label: str, g: Any, d: Any, resolution: int, alpha: float) -> None:
    for which, net in (("generator", g), ("discriminator", d)):
        _call(label, f"{which}.set_stage({resolution}, {alpha})", net.set_stage, resolution, alpha)
        if (net.resolution, net.alpha) != (resolution, alpha):
            raise _fail(label, f"after {which}.set_stage({resolution}, {alpha}) it reports resolution "
                               f"{net.resolution!r} and alpha {net.alpha!r}")


def _stage_outputs(label: str, g: Any, d: Any, stage: tuple[int, float], z: Tensor, c: Tensor | None,
                   x: Tensor, seed: int) -> tuple[Tensor, Tensor]:
    """G(z, c) and D(x, c) at ``stage`` (eval mode, no grad, the same seed before each call), shapes checked."""
    resolution, alpha = stage
    _set_pair_stage(label, g, d, resolution, alpha)
    full = tuple(g.full_output_shape) if hasattr(g, "full_output_shape") else None
    expected = (*(full or g.output_shape)[:-2], resolution, resolution)
    where = f"at stage ({resolution}, alpha={alpha:g})"
    if tuple(g.output_shape) != expected:
        raise _fail(label, f"generator.output_shape is {tuple(g.output_shape)} {where}, expected {expected}: "
                           f"output_shape must follow the stage (GrowableGenerator does)")
    if tuple(d.input_shape) != expected:
        raise _fail(label, f"discriminator.input_shape is {tuple(d.input_shape)} {where}, expected {expected}: "
                           f"input_shape must follow the stage (GrowableDiscriminator does)")
    n = z.shape[0]
    with torch.no_grad():
        torch.manual_seed(seed)  # the same noise at every stage, should the networks draw any
        image = _call(label, f"generator(z, c) {where}", g, z, c)
        _check_tensor(label, f"generator(z, c) {where}", image, (n, *expected))
        torch.manual_seed(seed)
        logits = _call(label, f"discriminator(x, c) {where}", d, x, c)
        _check_tensor(label, f"discriminator(x, c) {where}", logits, (n,))
    return image, logits


def check_growable(spec_or_name: ArchitectureSpec | str | dict[str, Any], *, batch_size: int = 4, seed: int = 0,
                   device: torch.device | str = "cpu") -> NetworkPair:
    """Check an architecture against the growable-network protocol of ``lightning_gan.interfaces``; return its pair.

    Checks, on a freshly built pair (networks in eval mode, the same seed before every call, should they
    draw noise): both networks have the members of ``GROWTH_MEMBERS`` and the same ``resolutions``, which
    double; they start at the last stage with alpha 1; ``set_stage`` rejects a resolution that is not a
    stage; at every stage ``output_shape`` / ``input_shape`` follow the stage and the outputs have those
    shapes; for every stage ``r`` after the first, with ``q`` the one before,
    ``G@(r, 0)(z) == upsample_nearest(G@(q, 1)(z))`` and ``D@(r, 0)(x) == D@(q, 1)(downsample_average(x))``
    exactly (``lightning_gan.ops.growth``), while at alpha 1 and 0.5 both networks differ from alpha 0 (the
    new block is used); a stage set mid-fade survives ``state_dict`` -> ``load_state_dict`` into a fresh
    pair, with the same outputs. Run ``check_architecture`` as well for the rest of the contracts.

    Args:
        spec_or_name: an ArchitectureSpec, a registered name, an import path or a config mapping.
        batch_size: samples per test batch.
        seed: seed of every random draw in the check.
        device: where to run the networks.
    """
    device = torch.device(device)
    spec = registry.resolve("architectures", spec_or_name)
    label = type(spec).__name__
    with _seeded(seed, device):
        g, d = _build(label, spec, device)
        _check_types(label, g, d)
        gaps = growth_gaps(g, d)
        if gaps:
            raise _fail(label, f"cannot grow progressively: {'; '.join(gaps)}")
        stages = tuple(g.resolutions)
        if not stages or any(b != 2 * a for a, b in zip(stages, stages[1:])):
            raise _fail(label, f"resolutions must double from one stage to the next, got {stages}")
        if (g.resolution, g.alpha, d.resolution, d.alpha) != (stages[-1], 1.0, stages[-1], 1.0):
            raise _fail(label, f"a freshly built pair must stand at its last stage ({stages[-1]}, alpha=1), so that "
                               f"it works as a full-resolution network; the generator is at ({g.resolution}, "
                               f"alpha={g.alpha}), the discriminator at ({d.resolution}, alpha={d.alpha})")
        for which, net in (("generator", g), ("discriminator", d)):
            bad = 2 * stages[-1]
            try:
                net.set_stage(bad, 1.0)
            except ValueError:
                pass
            except Exception as exc:
                raise _fail(label, f"{which}.set_stage({bad}, 1.0) must raise a ValueError (no such stage), got "
                                   f"{type(exc).__name__}: {exc}", exc) from exc
            else:
                raise _fail(label, f"{which}.set_stage({bad}, 1.0) accepted a resolution that is not one of its "
                                   f"stages {stages}; raise a ValueError naming them")
            net.set_stage(stages[-1], 1.0)
        g.eval()
        d.eval()
        n = batch_size
        c = _one_hot(n, g.c_dim, device)
        z = g.sample_latents(n, device=device)
        channels_shape = tuple(g.output_shape[:-2])
        big = torch.rand(n, *channels_shape, stages[-1], stages[-1], device=device) * 2 - 1  # images in [-1, 1]
        reals = {stages[-1]: big}
        for r in reversed(stages[:-1]):
            reals[r] = downsample_average(reals[2 * r])
        previous = _stage_outputs(label, g, d, (stages[0], 1.0), z, c, reals[stages[0]], seed + 1)
        for q, r in zip(stages, stages[1:]):
            start = _stage_outputs(label, g, d, (r, 0.0), z, c, reals[r], seed + 1)
            previous_d = _stage_outputs(label, g, d, (q, 1.0), z, c, downsample_average(reals[r]), seed + 1)[1]
            expected_g = upsample_nearest(previous[0])
            if not torch.equal(start[0], expected_g):
                raise _fail(label, f"at stage ({r}, alpha=0) the generator's output is not the previous stage's ({q}, "
                                   f"alpha=1) output upsampled with lightning_gan.ops.upsample_nearest "
                                   f"({_max_difference(start[0], expected_g)}): at alpha 0 the new block must "
                                   f"contribute nothing and the old image must be repeated 2x2 (use ops.fade and "
                                   f"ops.upsample_nearest)")
            if not torch.equal(start[1], previous_d):
                raise _fail(label, f"at stage ({r}, alpha=0) the discriminator's logits differ from the previous "
                                   f"stage's ({q}, alpha=1) logits on the input downsampled with "
                                   f"lightning_gan.ops.downsample_average ({_max_difference(start[1], previous_d)}): "
                                   f"at alpha 0 the new block must contribute nothing and the image must be "
                                   f"2x2-averaged (use ops.fade and ops.downsample_average)")
            for alpha in (0.5, 1.0):
                other = _stage_outputs(label, g, d, (r, alpha), z, c, reals[r], seed + 1)
                for which, i in (("generator's output", 0), ("discriminator's logits", 1)):
                    if torch.equal(other[i], start[i]):
                        raise _fail(label, f"at stage ({r}, alpha={alpha:g}) the {which} equal those at alpha=0: "
                                           f"the new block of stage {r} is not used as alpha grows")
            previous = other  # stage (r, 1)

        mid = stages[len(stages) // 2] if len(stages) > 1 else stages[0]
        alpha = 0.25 if mid != stages[0] else 1.0
        before = _stage_outputs(label, g, d, (mid, alpha), z, c, reals[mid], seed + 1)
        g2, d2 = _build(label, spec, device)
        for which, a, b in (("generator", g, g2), ("discriminator", d, d2)):
            try:
                b.load_state_dict(a.state_dict(), strict=True)
            except RuntimeError as exc:
                raise _fail(label, f"the {which}'s state_dict does not load strictly into a freshly built one: {exc}",
                            exc) from exc
            if (b.resolution, b.alpha) != (a.resolution, a.alpha):
                raise _fail(label, f"the stage does not survive state_dict: a {which} at ({a.resolution}, "
                                   f"alpha={a.alpha}) loads into a fresh one as ({b.resolution}, alpha={b.alpha}); "
                                   f"keep the stage in buffers (GrowableGenerator/GrowableDiscriminator do)")
            shape_attr = "output_shape" if which == "generator" else "input_shape"
            if tuple(getattr(b, shape_attr)) != tuple(getattr(a, shape_attr)):
                raise _fail(label, f"after load_state_dict the {which}'s {shape_attr} is "
                                   f"{tuple(getattr(b, shape_attr))}, expected {tuple(getattr(a, shape_attr))}")
        g2.eval()
        d2.eval()
        after = _stage_outputs(label, g2, d2, (mid, alpha), z, c, reals[mid], seed + 1)
        for which, i in (("generator", 0), ("discriminator", 1)):
            if not torch.equal(before[i], after[i]):
                raise _fail(label, f"a {which} loaded from the state_dict of one at stage ({mid}, alpha={alpha:g}) "
                                   f"computes different outputs ({_max_difference(before[i], after[i])}): some state "
                                   f"lives outside parameters and buffers")

        for net in (g, d):
            net.set_stage(stages[-1], 1.0)
            net.train()
    return NetworkPair(g, d)


# -- losses --------------------------------------------------------------------------------------
def _loss_grad(label: str, what: str, fn: Callable[..., Tensor], *logits: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
    leaves = [t.detach().clone().requires_grad_(True) for t in logits]
    value = _check_scalar(label, what, _call(label, what, fn, *leaves))
    if not value.requires_grad:
        raise _fail(label, f"{what} is not differentiable with respect to the logits")
    grads = torch.autograd.grad(value, leaves, allow_unused=True)
    out = []
    for i, grad in enumerate(grads):
        if grad is None:
            raise _fail(label, f"{what} does not depend on its argument {i + 1}")
        if not bool(torch.isfinite(grad).all()):
            raise _fail(label, f"{what} has non-finite gradients with respect to its argument {i + 1}")
        out.append(grad)
    return value, tuple(out)


def check_loss(loss_or_name: AdversarialLoss | str | dict[str, Any], *, batch_size: int = 8,
               seed: int = 0) -> AdversarialLoss:
    """Check an adversarial loss plugin; return the loss object.

    Checks: ``generator_loss(fake_logits)`` and ``discriminator_loss(real_logits, fake_logits)`` return
    finite scalars with finite, not all-zero gradients w.r.t. the logits, also at extreme logits
    (+-50: use softplus, not log(sigmoid)); they are batch means (a batch repeated twice gives the same
    loss); they point the right way (the generator's loss falls as D scores fakes higher, the
    discriminator's as it scores reals higher or fakes lower); ``config()`` round-trips. A relativistic loss
    (``generator_needs_real = True``) gets fixed real logits ~ N(0, 1) as the partners of the fakes in
    ``generator_loss(fake_logits, real_logits)``.

    Args:
        loss_or_name: an AdversarialLoss, a registered name, an import path or a config mapping.
        batch_size: logits per test batch.
        seed: seed of the random logits.
    """
    loss = registry.resolve("losses", loss_or_name)
    label = type(loss).__name__
    d_loss = loss.discriminator_loss
    with _seeded(seed, torch.device("cpu")):
        real, fake = torch.randn(batch_size), torch.randn(batch_size)
        if getattr(loss, "generator_needs_real", False):
            def g_loss(fake_logits: Tensor) -> Tensor:  # the same real partners, tiled to the fakes' length
                return loss.generator_loss(fake_logits, real.repeat(fake_logits.numel() // batch_size))
        else:
            g_loss = loss.generator_loss
        value, (g_grad,) = _loss_grad(label, "generator_loss(fake_logits)", g_loss, fake)
        if not bool(g_grad.any()):
            raise _fail(label, "generator_loss gives an all-zero gradient w.r.t. fake logits ~ N(0, 1)")
        d_value, (d_real, d_fake) = _loss_grad(label, "discriminator_loss(real_logits, fake_logits)", d_loss,
                                               real, fake)
        if not bool(d_real.any()) or not bool(d_fake.any()):
            which = "real" if not bool(d_real.any()) else "fake"
            raise _fail(label, f"discriminator_loss gives an all-zero gradient w.r.t. {which} logits ~ N(0, 1)")

        for sign in (1.0, -1.0):
            big = torch.full((batch_size,), sign * _EXTREME_LOGIT)
            _loss_grad(label, f"generator_loss at logits {sign * _EXTREME_LOGIT:+g}", g_loss, big)
            _loss_grad(label, f"discriminator_loss at logits {sign * _EXTREME_LOGIT:+g}", d_loss, big, -big)

        with torch.no_grad():
            twice = (g_loss(fake.repeat(2)), d_loss(real.repeat(2), fake.repeat(2)))
        for what, once, again in (("generator_loss", value.detach(), twice[0]),
                                  ("discriminator_loss", d_value.detach(), twice[1])):
            if not torch.allclose(once, again, rtol=1e-5, atol=1e-6):
                raise _fail(label, f"{what} is not a batch mean: the batch repeated twice gives {float(again):.6g} "
                                   f"instead of {float(once):.6g}")

        ones = torch.ones(batch_size)
        _, (g_dir,) = _loss_grad(label, "generator_loss", g_loss, -ones)
        if not float(g_dir.sum()) < 0:
            raise _fail(label, "generator_loss must fall as D scores the fakes higher (d loss / d fake_logits summed "
                               f"at logits -1 is {float(g_dir.sum()):+.4g}, expected < 0)")
        _, (dr_dir, df_dir) = _loss_grad(label, "discriminator_loss", d_loss, -ones, ones)
        if not float(dr_dir.sum()) < 0 or not float(df_dir.sum()) > 0:
            raise _fail(label, "discriminator_loss must fall as D scores reals higher and fakes lower (at real "
                               f"logits -1, fake logits +1: d/d real = {float(dr_dir.sum()):+.4g}, expected < 0; "
                               f"d/d fake = {float(df_dir.sum()):+.4g}, expected > 0)")
    _roundtrip_config(label, "losses", loss)
    return loss


# -- regularizers --------------------------------------------------------------------------------
def check_regularizer(reg_or_name: Regularizer | str | dict[str, Any], *,
                      architecture: ArchitectureSpec | str | dict[str, Any] | None = None, batch_size: int = 4,
                      seed: int = 0, device: torch.device | str = "cpu") -> Regularizer:
    """Check a regularizer plugin on a freshly built architecture; return the regularizer.

    Checks: ``network`` is "generator" or "discriminator", ``weight`` a finite float and ``interval`` an
    int >= 1; with only that network trainable (as in GANModule's phases) ``reg(inputs)`` returns a
    finite scalar whose gradient reaches that network's parameters and is finite; ``config()`` round-trips.

    Args:
        reg_or_name: a Regularizer, a registered name, an import path or a config mapping.
        architecture: the pair to regularize (default: ``TinyArchitecture()``); pick one with the
            structure the regularizer needs (e.g. a style-based generator for path length).
        batch_size: samples per test batch.
        seed: seed of every random draw in the check.
        device: where to run the networks.
    """
    from lightning_gan.testing.tiny import TinyArchitecture

    device = torch.device(device)
    reg = registry.resolve("regularizers", reg_or_name)
    label = type(reg).__name__
    network = getattr(reg, "network", None)
    if network not in ("generator", "discriminator"):
        raise _fail(label, f"the class attribute `network` must be 'generator' or 'discriminator', got {network!r}")
    weight, interval = getattr(reg, "weight", None), getattr(reg, "interval", None)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
        raise _fail(label, f"weight must be a finite number, got {weight!r}")
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise _fail(label, f"interval must be an int >= 1, got {interval!r}")

    spec = registry.resolve("architectures", architecture if architecture is not None else TinyArchitecture())
    with _seeded(seed, device):
        g, d = _build(label, spec, device)
        reg = reg.to(device)
        g.train()
        d.train()
        g.requires_grad_(network == "generator")
        d.requires_grad_(network == "discriminator")
        n = batch_size
        real = torch.rand(n, *g.output_shape, device=device) * 2 - 1
        real_c = _one_hot(n, g.c_dim, device)

        def latent_sampler(k: int) -> tuple[Tensor, Tensor | None]:
            return g.sample_latents(k, device=device), _one_hot(k, g.c_dim, device)

        inputs = PenaltyInputs(generator=g, discriminator=d, real=real, real_c=real_c, latent_sampler=latent_sampler)
        value = _check_scalar(label, "regularizer(inputs)", _call(label, "regularizer(inputs)", reg, inputs))
        net = g if network == "generator" else d
        if not value.requires_grad:
            raise _fail(label, f"the penalty does not depend on the {network}'s parameters (no autograd graph); "
                               f"is it computed on detached tensors or under torch.no_grad()?")
        value.backward()
        missing, zero, nonfinite = _gradient_report(net)
        if nonfinite:
            raise _fail(label, f"non-finite gradients reach the {network}'s parameters: {', '.join(nonfinite)}")
        if len(missing) + len(zero) == sum(1 for _ in net.parameters()):
            raise _fail(label, f"no gradient reaches any of the {network}'s parameters")
        g.requires_grad_(True)
        d.requires_grad_(True)
    _roundtrip_config(label, "regularizers", reg)
    return reg


# -- augmentations -----------------------------------------------------------------------------------
def check_augmentation(augment_or_name: Augmentation | str | dict[str, Any], *, channels: Sequence[int] = (1, 3),
                       resolution: int = 16, batch_size: int = 6, iterations: int = 3, seed: int = 0) -> Augmentation:
    """Check a discriminator-augmentation plugin; return it.

    Checks: it is an ``Augmentation``; on images [N, C, R, R] in [-1, 1] for each of ``channels`` it returns a finite
    tensor of the same shape and dtype; gradients flow through it to its input (at least one non-zero input
    gradient); the same ``torch.Generator`` state draws the same transforms (the ``generator`` argument is used,
    so every process can draw its own and a resumed run continues the stream); ``observe``, ``update`` (with a
    ``reduce`` that sums over a single process) and ``summary`` (scalar tensors) work; its ``state_dict`` loads with
    ``torch.load(weights_only=True)`` and back; ``config()`` round-trips; and a GANModule with it trains
    ``iterations`` iterations of a tiny image GAN.

    Args:
        augment_or_name: an Augmentation, a registered name, an import path or a config mapping.
        channels: the image channel counts to try.
        resolution: side of the test images.
        batch_size: images per test batch.
        iterations: GAN iterations of the tiny fit (0 skips it).
        seed: seed of every random draw in the check.
    """
    augment = _resolve("augmentations", augment_or_name)
    label = type(augment).__name__
    if not isinstance(augment, Augmentation):
        raise _fail(label, "it is not a lightning_gan.interfaces.Augmentation (subclass it)")
    device = torch.device("cpu")
    with _seeded(seed, device):
        for c in channels:
            x = (torch.rand(batch_size, c, resolution, resolution) * 2 - 1).requires_grad_(True)
            rng = torch.Generator().manual_seed(seed)
            y = _check_tensor(label, f"augment(images [N, {c}, {resolution}, {resolution}])",
                              _call(label, "augment(images, generator)", augment, x, rng),
                              (batch_size, c, resolution, resolution))
            if y.dtype != x.dtype:
                raise _fail(label, f"it returned {y.dtype} for {x.dtype} images; keep the dtype")
            if not torch.isfinite(y).all():
                raise _fail(label, f"it returned non-finite values for {c}-channel images in [-1, 1]")
            if not y.requires_grad:
                raise _fail(label, "its output has no autograd graph: the transforms must be differentiable "
                                   "(G is trained through them)")
            (grad,) = torch.autograd.grad(y.sum(), x, allow_unused=True)
            if grad is None or not torch.isfinite(grad).all() or not grad.abs().sum() > 0:
                raise _fail(label, "no finite, non-zero gradient reaches the input images through it")
            again = augment(x.detach(), torch.Generator().manual_seed(seed))
            if not torch.equal(again, augment(x.detach(), torch.Generator().manual_seed(seed))):
                raise _fail(label, "two calls with generators in the same state drew different transforms: draw "
                                   "every random number from the `generator` argument")
        _call(label, "observe(real_logits)", augment.observe, torch.randn(batch_size))
        _call(label, "update(images=..., reduce=...)", lambda: augment.update(images=batch_size, reduce=lambda t: t))
        summary = _call(label, "summary()", augment.summary)
        if not isinstance(summary, Mapping) or not all(isinstance(v, Tensor) and v.numel() == 1
                                                       for v in summary.values()):
            raise _fail(label, f"summary() must return {{name: scalar tensor}}, got {summary!r}")
        state = _check_weights_only_state(label, "its state_dict()", augment.state_dict())
        copy.deepcopy(augment).load_state_dict(state)
    _roundtrip_config(label, "augmentations", augment)
    if iterations:
        from lightning_gan.data.shapes import ShapesDataModule
        from lightning_gan.module import GANModule
        from lightning_gan.testing.tiny import TinyGrowableArchitecture

        with _seeded(seed, device):
            module = GANModule(architecture=TinyGrowableArchitecture(resolutions=(8, 16), channels=3),
                               augment=copy.deepcopy(augment), metrics=[], ema_kimg=None)
            datamodule = ShapesDataModule(resolution=16, channels=3, num_samples=batch_size * iterations,
                                          batch_size=batch_size)
            _tiny_fit(label, module, datamodule, iterations=iterations, plugins=[])
    return augment


# -- precision plugins ---------------------------------------------------------------------------
def _resolve(group: str, value: Any) -> Any:
    """``registry.resolve(group, value)``, a registry error (unknown name, wrong type) as a ConformanceError."""
    try:
        return registry.resolve(group, value)
    except registry.PluginError as exc:
        label = value if isinstance(value, str) else type(value).__name__
        raise _fail(str(label), str(exc), exc) from exc


@contextmanager
def _quiet_trainer() -> Iterator[None]:
    """Lightning's info lines (GPU available, Trainer stopped, ...) off while the kit trains."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _same_state(a: Any, b: Any) -> bool:
    """Plain-data equality of two state dicts (tensors compared by value)."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b))
    return bool(a == b)


def _check_weights_only_state(label: str, what: str, state: Any) -> Any:
    """``state`` through ``torch.save`` and ``torch.load(weights_only=True)``, as checkpoints load it."""
    buffer = io.BytesIO()
    try:
        torch.save(state, buffer)
        buffer.seek(0)
        return torch.load(buffer, weights_only=True)
    except Exception as exc:
        raise _fail(label, f"{what} does not load with torch.load(weights_only=True), as checkpoints are loaded: "
                           f"keep it plain tensors, numbers, strings, lists and dicts ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''})", exc) from exc


def _tiny_fit(label: str, module: Any, datamodule: Any, *, iterations: int, plugins: list[Any]) -> None:
    """``iterations`` GAN iterations of ``module`` on CPU with no logger, checkpoint or progress bar."""
    import lightning.pytorch as pl

    with tempfile.TemporaryDirectory() as root, _quiet_trainer():
        trainer = pl.Trainer(accelerator="cpu", devices=1, plugins=plugins, max_epochs=1,
                             limit_train_batches=iterations, limit_val_batches=0, num_sanity_val_steps=0,
                             logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, default_root_dir=root)
        _call(label, f"a {iterations}-iteration fit", trainer.fit, module, datamodule)


def check_precision(plugin_or_name: Any, *, architecture: ArchitectureSpec | str | dict[str, Any] | None = None,
                    datamodule: Any = None, iterations: int = 4, seed: int = 0) -> Any:
    """Check a precision plugin by training a tiny GAN with it; return the plugin.

    Checks: it is a Lightning ``Precision`` (a plain one works; a ``GANPrecision`` also gets GANModule's
    per-network hooks, and its ``network(name)`` must accept "generator" and "discriminator" and its
    ``scalers`` map those names); ``iterations`` GAN iterations with a lazy R1 phase (an autograd penalty)
    train without error and change the parameters of both networks, which stay finite; its
    ``state_dict()`` loads with ``torch.load(weights_only=True)`` (as checkpoints are loaded) and back
    through ``load_state_dict``.

    Args:
        plugin_or_name: a Precision plugin, a registered name (``fp16-dynamic``), an import path or a config mapping.
        architecture: what to train (default: ``TinyArchitecture()``, 2-D points).
        datamodule: what to train on, matching the architecture (default: a small ``toy2d``, batches of 64).
        iterations: GAN iterations to train (a dynamic loss scaler may skip the first steps).
        seed: seed of the networks and the data.
    """
    from lightning.pytorch.plugins.precision import Precision

    from lightning_gan.data.toy2d import Toy2DDataModule
    from lightning_gan.module import GANModule
    from lightning_gan.precision.plugins import GANPrecision
    from lightning_gan.regularizers import R1
    from lightning_gan.testing.tiny import TinyArchitecture

    plugin = _resolve("precision", plugin_or_name)
    label = type(plugin).__name__
    if not isinstance(plugin, Precision):
        raise _fail(label, "is not a lightning.pytorch.plugins.precision.Precision; subclass it (or GANPrecision too)")
    if isinstance(plugin, GANPrecision):
        for name in ("discriminator", "generator"):
            def enter(name: str = name) -> None:
                with plugin.network(name):
                    pass
            _call(label, f"network({name!r})", enter)
        _call(label, "end_iteration() outside training", plugin.end_iteration)
        scalers = getattr(plugin, "scalers", None)
        if not isinstance(scalers, Mapping) or not set(scalers) <= {"generator", "discriminator"}:
            raise _fail(label, f"`scalers` must map 'generator'/'discriminator' to loss scalers, got {scalers!r}")
    with _seeded(seed, torch.device("cpu")):
        module = GANModule(architecture=architecture if architecture is not None else TinyArchitecture(),
                           regularizers=[R1(gamma=0.1, interval=2)], ema_kimg=None, metrics=[], seed=seed)
        before = {name: p.detach().clone() for name, p in module.named_parameters()}
        data = (Toy2DDataModule(num_samples=64 * iterations, batch_size=64, seed=seed) if datamodule is None
                else _resolve("datasets", datamodule))
        _tiny_fit(label, module, data, iterations=iterations, plugins=[plugin])
    for network in ("generator", "discriminator"):
        params = {n: p for n, p in module.named_parameters() if n.startswith(network + ".")}
        bad = [n for n, p in params.items() if not bool(torch.isfinite(p).all())]
        if bad:
            raise _fail(label, f"training left non-finite {network} parameters: {', '.join(bad)}")
        if all(torch.equal(p, before[n]) for n, p in params.items()):
            raise _fail(label, f"the {network}'s parameters did not change in {iterations} iterations: "
                               f"optimizer_step must run the closure and then optimizer.step() (unless it skips "
                               f"a step on purpose, e.g. on overflow)")
    state = _call(label, "state_dict()", plugin.state_dict)
    loaded = _check_weights_only_state(label, "state_dict()", state)
    _call(label, "load_state_dict(state_dict())", plugin.load_state_dict, loaded)
    if not _same_state(_call(label, "state_dict()", plugin.state_dict), state):
        raise _fail(label, "load_state_dict(state_dict()) changes the state: a resumed run would not continue this one")
    return plugin


# -- datamodules ---------------------------------------------------------------------------------
def _split(batch: Any) -> tuple[Any, Any]:
    """``(x, labels)`` of a batch as GANModule reads it: ``x`` alone, or a tuple/list ``(x, labels, ...)``."""
    if isinstance(batch, (tuple, list)):
        return batch[0], (batch[1] if len(batch) > 1 else None)
    return batch, None


def _check_labels(label: str, what: str, labels: Any, n: int, num_classes: int) -> None:
    if labels is None:
        raise _fail(label, f"{what} carries no labels, but num_classes = {num_classes}: yield (x, labels)")
    if not isinstance(labels, Tensor):
        raise _fail(label, f"{what} labels must be a Tensor, got {type(labels).__name__}")
    if labels.dim() == 2:  # one-hot rows
        if tuple(labels.shape) != (n, num_classes):
            raise _fail(label, f"{what} one-hot labels have shape {list(labels.shape)}, expected [{n}, {num_classes}]")
        return
    if labels.shape != (n,) or labels.is_floating_point():
        raise _fail(label, f"{what} labels must be class indices, an integer tensor [{n}] (or one-hot [{n}, "
                           f"{num_classes}]), got {labels.dtype} {list(labels.shape)}")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise _fail(label, f"{what} labels range over {int(labels.min())}..{int(labels.max())}, outside 0.."
                           f"{num_classes - 1} (num_classes = {num_classes})")


def check_datamodule(datamodule_or_name: Any, *, batches: int = 2, seed: int = 0) -> Any:
    """Check a datamodule against what lightning-gan reads from it; return it (set up for fit).

    Checks: ``data_shape`` is a tuple of positive ints (one sample's shape, checked against the
    generator's ``output_shape`` before training); ``num_classes`` is an int >= 0 (a conditional
    architecture's ``c_dim`` must equal it); ``default_metrics()`` returns a list of metrics or registered
    metric names that resolve (what GANModule evaluates when no metrics are given); after ``setup("fit")``,
    ``train_dataset`` is a non-empty dataset whose items are ``x`` or ``(x, label)`` (metrics that compare
    with real data read it); the first ``batches`` batches of ``train_dataloader()`` are ``x`` or
    ``(x, labels)`` with ``x`` a finite float tensor [B, *data_shape] (images in [-1, 1]) and, when
    ``num_classes > 0``, class indices [B] in 0..num_classes-1 (or one-hot rows); a config read back from
    its constructor arguments (what checkpoints store for ``lightning-gan evaluate``) rebuilds a
    datamodule with the same ``data_shape`` and ``num_classes``.

    Args:
        datamodule_or_name: a LightningDataModule, a registered name (``toy2d``), an import path or a config mapping.
        batches: training batches to inspect.
        seed: seed of anything random the datamodule draws from the global RNG.
    """
    from lightning_gan.checkpoint import datamodule_config

    dm = _resolve("datasets", datamodule_or_name)
    label = type(dm).__name__
    shape = getattr(dm, "data_shape", None)
    if shape is None:
        raise _fail(label, "has no `data_shape`: set it to one sample's shape, e.g. (3, 32, 32) or (2,), so that "
                           "GANModule can check the architecture against the data")
    if not isinstance(shape, tuple) or not shape or not all(isinstance(s, int) and s > 0 for s in shape):
        raise _fail(label, f"`data_shape` must be a tuple of positive ints, got {shape!r}")
    classes = getattr(dm, "num_classes", None)
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 0:
        raise _fail(label, f"`num_classes` must be an int >= 0 (0 = no classes), got {classes!r}")
    defaults = _call(label, "default_metrics()", dm.default_metrics) if hasattr(dm, "default_metrics") else []
    if not isinstance(defaults, (list, tuple)):
        raise _fail(label, f"default_metrics() must return a list, got {type(defaults).__name__}")
    for metric in defaults:
        try:
            registry.resolve("metrics", metric)
        except Exception as exc:
            raise _fail(label, f"default_metrics() entry {metric!r} does not resolve to a metric: "
                               f"{type(exc).__name__}: {exc}", exc) from exc
    with _seeded(seed, torch.device("cpu")):
        _call(label, "setup('fit')", dm.setup, "fit")
        dataset = getattr(dm, "train_dataset", None)
        if dataset is None:
            raise _fail(label, "`train_dataset` is None after setup('fit'); metrics that compare with real data "
                               "read their real samples from it")
        size = _call(label, "len(train_dataset)", len, dataset)
        if size < 1:
            raise _fail(label, "`train_dataset` is empty after setup('fit')")
        x, _ = _split(_call(label, "train_dataset[0]", dataset.__getitem__, 0))
        if not isinstance(x, Tensor) or tuple(x.shape) != shape:
            raise _fail(label, f"train_dataset[0] holds a sample of shape {_shape(x)}, expected data_shape "
                               f"{list(shape)}")
        loader = _call(label, "train_dataloader()", dm.train_dataloader)
        seen = 0
        for i, batch in enumerate(loader):
            if i >= batches:
                break
            what = f"training batch {i}"
            x, labels = _split(batch)
            if not isinstance(x, Tensor) or x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape:
                raise _fail(label, f"{what} has samples of shape {_shape(x)}, expected [B, *data_shape] = "
                                   f"[B, {', '.join(map(str, shape))}]")
            _check_tensor(label, what, x, tuple(x.shape))
            if len(shape) == 3 and (float(x.min()) < -1.0 - 1e-4 or float(x.max()) > 1.0 + 1e-4):
                raise _fail(label, f"{what} has images in [{float(x.min()):.3g}, {float(x.max()):.3g}]; images must "
                                   f"lie in [-1, 1] (metrics and sample grids map -1 to black and 1 to white)")
            if classes:
                _check_labels(label, what, labels, x.shape[0], classes)
            seen += 1
        if not seen:
            raise _fail(label, "train_dataloader() yields no batch (fewer samples than one batch with drop_last?)")
    config = datamodule_config(dm)
    if config is not None:
        try:
            config = json.loads(json.dumps(config))
            rebuilt = registry.resolve("datasets", config)
        except Exception as exc:
            raise _fail(label, f"cannot be rebuilt from the config read back from its attributes {config!r}: "
                               f"{type(exc).__name__}: {exc}; keep every constructor argument unchanged as an "
                               f"attribute of the same name", exc) from exc
        again = (tuple(getattr(rebuilt, "data_shape", ())), getattr(rebuilt, "num_classes", None))
        if again != (shape, classes):
            raise _fail(label, f"rebuilt from its config {config!r} it has data_shape, num_classes = {again}, expected "
                               f"{(shape, classes)}; keep every constructor argument unchanged as an attribute")
    return dm


# -- metrics -------------------------------------------------------------------------------------
def _check_results(label: str, what: str, results: Any) -> dict[str, float]:
    if not isinstance(results, Mapping) or not results:
        raise _fail(label, f"{what} must return a non-empty dict {{name: value}}, got {results!r}")
    for key, value in results.items():
        if not isinstance(key, str) or not key or key != key.lower():
            raise _fail(label, f"{what} returned the key {key!r}; names are lower-case strings such as 'fid' or "
                               f"'coverage/modes'")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(label, f"{what} returned {key!r}: {value!r} ({type(value).__name__}); values are Python "
                               f"numbers (float(tensor))")
        if math.isnan(value):
            raise _fail(label, f"{what} returned NaN for {key!r}")
    return dict(results)


def check_metric(metric_or_name: Any, *, datamodule: Any = None,
                 architecture: ArchitectureSpec | str | dict[str, Any] | None = None, seed: int = 0) -> Any:
    """Check a generator metric on a freshly built generator; return the metric.

    Checks: it is a ``lightning_gan.metrics.base.GeneratorMetric``; ``setup(datamodule)`` and
    ``compute(generator, datamodule, context)`` run; the result is a non-empty dict of lower-case names to
    Python numbers (no NaN); computing leaves the global RNG state and the generator's train/eval mode as
    they were (the training run continues exactly); a second computation gives the same result (its
    samples come from its own seeded ``torch.Generator``); ``config()`` round-trips.

    Args:
        metric_or_name: a GeneratorMetric, a registered name (``coverage``), an import path or a config mapping.
        datamodule: the data it scores against (default: a small ``toy2d``).
        architecture: builds the generator to score (default: ``TinyArchitecture()``, 2-D points).
        seed: seed of the generator's weights.
    """
    from lightning_gan.metrics.base import EvaluationContext, GeneratorMetric
    from lightning_gan.testing.tiny import TinyArchitecture

    metric = _resolve("metrics", metric_or_name)
    label = type(metric).__name__
    if not isinstance(metric, GeneratorMetric):
        raise _fail(label, "is not a lightning_gan.metrics.base.GeneratorMetric; subclass it")
    if datamodule is None:
        from lightning_gan.data.toy2d import Toy2DDataModule

        datamodule = Toy2DDataModule(num_samples=2000, batch_size=100, seed=seed)
    dm = _resolve("datasets", datamodule)
    spec = _resolve("architectures", architecture if architecture is not None else TinyArchitecture())
    with _seeded(seed, torch.device("cpu")):
        g, _ = _build(label, spec, torch.device("cpu"))
    g.train()
    _call(label, "setup(datamodule)", metric.setup, dm)
    state = torch.get_rng_state()
    first = _check_results(label, "compute(generator, datamodule, context)",
                           _call(label, "compute(generator, datamodule, context)", metric.compute, g, dm,
                                 EvaluationContext()))
    if not torch.equal(torch.get_rng_state(), state):
        raise _fail(label, "compute() changed the global random state, so evaluating would change the training run: "
                           "draw samples from a torch.Generator of your own (or inside torch.random.fork_rng)")
    if not g.training:
        raise _fail(label, "compute() left the generator in eval mode; restore its mode (train) when done")
    second = _check_results(label, "a second compute()", metric.compute(g, dm, EvaluationContext()))
    if first != second:  # no NaN in either (checked above), so equality is exact
        raise _fail(label, f"two computations on the same generator differ ({first} vs {second}): seed the samples "
                           f"(a torch.Generator seeded from the metric's seed)")
    _roundtrip_config(label, "metrics", metric)
    return metric


# -- recipes -------------------------------------------------------------------------------------
def check_recipe(name_or_path: str | os.PathLike[str], *, overrides: Sequence[str] = ()) -> Any:
    """Check a recipe: it parses, every name in it resolves, and it builds a model that fits its data.

    Checks: the file is a YAML mapping that starts with a ``# one-line description`` comment (what
    ``lightning-gan recipes`` shows); every plugin it names is installed (``registry.recipe_needs``);
    ``lightning-gan`` parses it and instantiates the model, the datamodule and the trainer (so no option
    is misspelled and every name resolves); the generator's ``output_shape`` equals the datamodule's
    ``data_shape``, a conditional generator's ``c_dim`` its ``num_classes``, and two samples come out
    finite. Returns the built ``GANCLI`` (``.model``, ``.datamodule``, ``.trainer``).

    Args:
        name_or_path: a recipe name (``lightning-gan recipes``) or the path of a recipe file.
        overrides: extra command-line options, e.g. ``["--data.init_args.path=/data/faces.zip"]``.
    """
    import contextlib

    import yaml

    from lightning_gan.cli import registry_names_in_jsonargparse
    from lightning_gan.lightning_cli import GANCLI

    try:
        path = registry.recipe_path(str(name_or_path))
    except registry.PluginError as exc:
        raise _fail(str(name_or_path), str(exc), exc) from exc
    label = f"recipe {path.stem}"
    try:
        needs = registry.recipe_needs(path)
    except registry.PluginError as exc:
        raise _fail(label, str(exc), exc) from exc
    if needs.missing:
        raise _fail(label, needs.message(path.stem))
    if not registry.recipe_description(path):
        raise _fail(label, "the file must start with a '# one-line description' comment (lightning-gan recipes shows it)")
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(config.get("model"), Mapping) or "architecture" not in config["model"]:
        raise _fail(label, "has no model.architecture: a recipe names the architecture to train")
    errors, argv = io.StringIO(), sys.argv
    try:
        with contextlib.redirect_stderr(errors), registry_names_in_jsonargparse(), _quiet_trainer(), \
                warnings.catch_warnings():
            # Lightning's own use of deprecated jsonargparse calls: nothing a recipe author can change.
            warnings.filterwarnings("ignore", module=r"lightning\.pytorch\.cli")
            sys.argv = ["lightning-gan"]  # the options are the recipe's, not the calling program's
            cli = GANCLI(args=["--config", str(path), "--trainer.logger=false", *overrides], run=False)
    except SystemExit as exc:
        lines = [ln for ln in errors.getvalue().splitlines() if ln.strip()]
        line = next((ln for ln in lines if ln.startswith("lightning-gan: error: ")), lines[-1] if lines else str(exc))
        raise _fail(label, f"does not build: {line.removeprefix('lightning-gan: error: ')}") from None
    except Exception as exc:
        raise _fail(label, f"does not build: {type(exc).__name__}: {exc}", exc) from exc
    finally:
        sys.argv = argv
    g, dm = cli.model.generator, cli.datamodule
    shape = getattr(dm, "data_shape", None)
    if shape is not None and tuple(shape) != tuple(g.output_shape):
        raise _fail(label, f"its generator makes samples of shape {tuple(g.output_shape)} but its data "
                           f"({type(dm).__name__}) has data_shape {tuple(shape)}")
    classes = getattr(dm, "num_classes", 0)
    if g.c_dim and g.c_dim != classes:
        raise _fail(label, f"its generator is conditional on c_dim={g.c_dim} classes but its data has "
                           f"num_classes={classes}")
    with _seeded(0, torch.device("cpu")), torch.no_grad():
        was_training = g.training
        g.eval()
        out = _call(label, "generator(z, c)", g, g.sample_latents(2), _one_hot(2, g.c_dim, torch.device("cpu")))
        g.train(was_training)
    _check_tensor(label, "generator(z, c)", out, (2, *g.output_shape))
    return cli
