"""Conformance checks a plugin author runs on an architecture, loss or regularizer before publishing it.

Each check builds the plugin through the registry (so a name, an import path, a config mapping or an
instance all work), exercises the contract of ``lightning_gan.interfaces`` the way ``GANModule`` will,
and raises :class:`ConformanceError` (an ``AssertionError``, so pytest reports it as a failed test)
with a message that says which promise is broken::

    from lightning_gan.testing import check_architecture, check_loss, check_regularizer

    def test_my_plugin():
        check_architecture(MyArchitecture(resolution=16, base_channels=4))
        check_loss("my_loss")
        check_regularizer("my_penalty", architecture=MyArchitecture(resolution=16, base_channels=4))

Every check seeds its own random numbers and leaves the caller's global RNG state untouched.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from lightning_gan import registry
from lightning_gan.interfaces import (
    AdversarialLoss,
    ArchitectureSpec,
    Discriminator,
    Generator,
    NetworkPair,
    PenaltyInputs,
    Regularizer,
)

__all__ = ["ConformanceError", "check_architecture", "check_loss", "check_regularizer"]

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


def _check_gradient_flow(label: str, g: Generator, d: Discriminator, z: Tensor, c: Tensor | None) -> None:
    """One backward of D(G(z)) must reach every parameter of both networks with a nonzero gradient.

    It runs on float64 copies where the networks allow it, so that a gradient which is zero in exact
    arithmetic (a bias cancelled by a normalization) is not hidden by float32 rounding noise.
    """
    weights = torch.randn(z.shape[0], device=z.device)  # a generic direction, not only the sum of logits
    copies, rtol = _float64_copies(g, d), 1e-9
    if copies is not None:
        g64, d64 = copies
        try:
            c64 = None if c is None else c.double()
            logits = d64(g64(z.double(), c64), c64)
            nets = (g64, d64)
        except Exception:  # an op without float64 support: fall back to float32 and exact zeros
            copies = None
    if copies is None:
        logits, nets, rtol = d(g(z, c), c), (g, d), 0.0
    for net in nets:
        net.requires_grad_(True)
        net.zero_grad(set_to_none=True)
    (logits.reshape(-1) * weights.to(logits.dtype)).sum().backward()
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
