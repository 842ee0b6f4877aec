"""Contracts every plugin implements: Generator, Discriminator, ArchitectureSpec, AdversarialLoss, Regularizer,
Augmentation.

A plugin subclasses one of these and registers it under an entry-point group (see ``registry``).
Configurable objects (specs, losses, regularizers) keep each constructor argument as an attribute
of the same name; ``config()`` then describes them as plain data ``{"class_path", "init_args"}``,
which is what checkpoints store (no pickled objects) and what the CLI prints.

Growable networks (progressive growing, Karras et al. 2018). A generator/discriminator pair that can
grow opts in by subclassing ``GrowableGenerator`` and ``GrowableDiscriminator`` (or by offering the same
members, see ``Growable``). The protocol:

1. ``resolutions``: the stages, a tuple of side lengths that double, e.g. ``(4, 8, 16)``; the last one
   is the full resolution, the height and width of the full ``output_shape`` / ``input_shape``. Both
   networks of a pair have the same stages.
2. ``set_stage(resolution, alpha)`` selects a stage: ``resolution`` is one of ``resolutions`` and
   ``alpha`` in [0, 1] is the weight of that stage's freshly added block (1 at the first stage, which
   has nothing to fade from). The current ``resolution`` and ``alpha`` are readable (the base classes
   also offer ``stage_index``, the position of ``resolution`` in ``resolutions``).
3. The shapes follow the stage: the generator's ``output_shape`` and the discriminator's ``input_shape``
   are the full shapes with height and width replaced by ``resolution`` (the framework checks the
   generator's output against ``output_shape`` on the first iteration of a fit).
4. At ``alpha = 0`` the new block contributes nothing, exactly: with ``r`` the stage, ``q = r / 2`` the
   previous one, and ``G@(r, a)``, ``D@(r, a)`` the networks at stage ``r`` with weight ``a``,
   ``G@(r, 0)(z, c) == upsample_nearest(G@(q, 1)(z, c))`` and
   ``D@(r, 0)(x, c) == D@(q, 1)(downsample_average(x), c)``, where ``upsample_nearest`` (pixel repeated
   2x2) and ``downsample_average`` (2x2 mean) are the functions of ``lightning_gan.ops.growth``; between
   the ends the usual way is ``fade(old, new, alpha)`` from the same module on the new block's branch. At
   ``alpha = 1`` the new block is fully in use.
5. The stage is state: it lives in the buffers ``stage_resolution`` (int64) and ``stage_alpha`` (float32),
   so it travels with ``state_dict`` (checkpoints, resumed runs) and whatever copies buffers (an EMA update,
   a DDP buffer broadcast) carries it along; ``load_state_dict`` refuses a stage that is not one. Forward
   passes read Python copies of the buffers, re-read only after something other than ``set_stage`` wrote
   them (no device sync per call). A freshly built network stands at its last stage with ``alpha = 1``:
   until something sets a stage it is an ordinary full-resolution network.

Whoever drives the growing (the ``ProgressiveGrowing`` callback) calls ``set_stage`` on both networks with
the same arguments (an EMA copy of the generator follows at its next update, which copies buffers) and shows
the discriminator real images at the stage's resolution, during a fade ``fade_resolutions(x, alpha)``, the
paper's interpolation between the two resolutions. ``growth_gaps`` / ``require_growable`` say in words what
keeps a pair from growing, and ``lightning_gan.testing.check_growable`` checks all of the above on an
architecture.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal, NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from lightning_gan.errors import ConfigError

__all__ = [
    "AdversarialLoss",
    "ArchitectureSpec",
    "Augmentation",
    "Configurable",
    "ContractError",
    "Discriminator",
    "GROWTH_MEMBERS",
    "Generator",
    "Growable",
    "GrowableDiscriminator",
    "GrowableGenerator",
    "NetworkPair",
    "PenaltyInputs",
    "Regularizer",
    "SyncableBatchNorm",
    "growth_gaps",
    "require_condition",
    "require_growable",
]

NetworkName = Literal["generator", "discriminator"]


class ContractError(ConfigError, TypeError):
    """A plugin object breaks the contract of its base class (attributes, shapes); the CLI shows one line."""


class Configurable:
    """Mixin: ``config()`` returns the constructor arguments as plain data, read back from attributes."""

    def config(self) -> dict[str, Any]:
        init_args: dict[str, Any] = {}
        for name, param in inspect.signature(type(self).__init__).parameters.items():
            if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            if not hasattr(self, name):
                raise ContractError(
                    f"{type(self).__qualname__} must keep its constructor argument {name!r} as an attribute "
                    f"of the same name so that it can be saved and rebuilt: add `self.{name} = {name}` to its __init__"
                )
            try:
                init_args[name] = _plain(getattr(self, name))
            except TypeError as exc:
                raise ContractError(f"{type(self).__qualname__}.{name}: {exc}") from None
        return {"class_path": f"{type(self).__module__}.{type(self).__qualname__}", "init_args": init_args}


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Configurable):
        return value.config()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store {value!r} in a config: keep constructor arguments as plain values (numbers, "
                    f"strings, lists, dicts) or Configurable objects")


def require_condition(c: Tensor | None, c_dim: int, n: int, who: str) -> Tensor:
    """Conditions [n, c_dim] checked for a conditional network; a clear ValueError naming ``c_dim`` otherwise."""
    if c is None:
        raise ValueError(f"this {who} is conditional (c_dim={c_dim}); pass c as one-hot classes [N, {c_dim}]")
    if tuple(c.shape) != (n, c_dim):
        raise ValueError(f"{who} conditions must have shape [N, c_dim] = [{n}, {c_dim}], got {list(c.shape)}")
    return c


class Generator(nn.Module):
    """Maps latents ``z`` [N, z_dim] (and conditions ``c`` [N, c_dim]) to samples [N, *output_shape].

    Style-based generators additionally expose ``mapping(z, c) -> w`` and ``synthesis(w)``.
    """

    def __init__(self, *, z_dim: int, c_dim: int = 0, output_shape: tuple[int, ...]) -> None:
        """
        Args:
            z_dim: size of the latent vector.
            c_dim: size of the condition vector (0 = unconditional; one-hot classes otherwise).
            output_shape: shape of one sample, e.g. ``(3, 32, 32)`` or ``(2,)``.
        """
        super().__init__()
        self.z_dim = int(z_dim)
        self.c_dim = int(c_dim)
        self.output_shape = tuple(int(s) for s in output_shape)

    def sample_latents(self, n: int, *, generator: torch.Generator | None = None,
                       device: torch.device | str | None = None) -> Tensor:
        """Latents from the prior, [n, z_dim]; standard normal unless overridden."""
        return torch.randn(n, self.z_dim, generator=generator, device=device)

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, output_shape={self.output_shape}"


class Discriminator(nn.Module):
    """Maps samples [N, *input_shape] (and conditions [N, c_dim]) to one logit per sample, [N]."""

    def __init__(self, *, c_dim: int = 0, input_shape: tuple[int, ...]) -> None:
        """
        Args:
            c_dim: size of the condition vector (0 = unconditional).
            input_shape: shape of one sample it judges.
        """
        super().__init__()
        self.c_dim = int(c_dim)
        self.input_shape = tuple(int(s) for s in input_shape)

    def extra_repr(self) -> str:
        return f"c_dim={self.c_dim}, input_shape={self.input_shape}"


class NetworkPair(NamedTuple):
    generator: Generator
    discriminator: Discriminator


class ArchitectureSpec(Configurable, ABC):
    """Typed keyword arguments that build a matched generator/discriminator pair."""

    @abstractmethod
    def build(self) -> NetworkPair:
        """A fresh (generator, discriminator) pair."""


class AdversarialLoss(Configurable):
    """The adversarial game: per-batch mean losses from discriminator logits ([N] each).

    A loss whose generator side also needs the logits of real samples (a relativistic loss) sets
    ``generator_needs_real = True``: the framework then calls ``generator_loss(fake_logits, real_logits)``
    with the real batch's logits (computed without a graph: they do not depend on the generator).
    """

    generator_needs_real: bool = False

    def generator_loss(self, fake_logits: Tensor, real_logits: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def discriminator_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config()["init_args"].items())
        return f"{type(self).__name__}({args})"


class PenaltyInputs:
    """What a regularizer may look at in one phase. Fakes are made on first request and cached.

    A penalty that looks at the discriminator's outputs should judge images as training does: through
    ``discriminate(x, c)``, which applies the run's augmentation first (``D(T(x), c)``; plain ``D(x, c)`` when the
    run has none). In the Dmain phase, ``d_logits`` holds that phase's ``(D(T(x_real)), D(T(G(z))))`` with their
    graph, so that a penalty folded into Dmain (e.g. LeCam) need not run D again; it is None in other phases.

    Args:
        generator: the trained generator.
        discriminator: the trained discriminator.
        real: the real batch, [N, ...].
        real_c: its conditions, [N, c_dim], or None.
        latent_sampler: ``n -> (z, c)`` drawing latents (and conditions) from the training distribution.
        augment: the transform applied to every image D sees (``Augmentation``), or None.
        reduce_mean: averages a tensor over processes (the identity on one); for state a penalty keeps, such as
            running anchors, that must stay identical on every process.
    """

    def __init__(self, *, generator: Generator, discriminator: Discriminator, real: Tensor,
                 real_c: Tensor | None, latent_sampler: Callable[[int], tuple[Tensor, Tensor | None]],
                 augment: Callable[[Tensor], Tensor] | None = None,
                 reduce_mean: Callable[[Tensor], Tensor] | None = None) -> None:
        self.generator = generator
        self.discriminator = discriminator
        self.real = real
        self.real_c = real_c
        self.latent_sampler = latent_sampler
        self.augment = augment
        self.reduce_mean: Callable[[Tensor], Tensor] = reduce_mean if reduce_mean is not None else (lambda t: t)
        self.d_logits: tuple[Tensor, Tensor] | None = None
        self._fake: tuple[Tensor, Tensor | None] | None = None

    def discriminate(self, x: Tensor, c: Tensor | None = None, **kwargs: Any) -> Tensor:
        """``D(T(x), c)``: the discriminator's logits [N] on ``x`` as training shows it (augmented, if the run is)."""
        return self.discriminator(self.augment(x) if self.augment is not None else x, c, **kwargs)

    @property
    def batch_size(self) -> int:
        return int(self.real.shape[0])

    def latents(self, n: int | None = None) -> tuple[Tensor, Tensor | None]:
        """Fresh latents ``z`` [n, z_dim] and conditions [n, c_dim] (or None)."""
        return self.latent_sampler(self.batch_size if n is None else n)

    def fakes(self) -> tuple[Tensor, Tensor | None]:
        """A batch of generated samples (no gradient to the generator) and their conditions."""
        if self._fake is None:
            z, c = self.latents()
            with torch.no_grad():
                self._fake = (self.generator(z, c), c)
        return self._fake


class Regularizer(nn.Module, Configurable):
    """A penalty on one network. The maths only: the phase scheduler decides when it runs.

    ``forward`` returns the weighted penalty (a scalar). ``interval`` k > 1 makes it lazy: the
    scheduler runs it every k-th iteration in its own phase, multiplied by k (see ``phases``).
    """

    network: ClassVar[NetworkName]

    def __init__(self, *, weight: float, interval: int = 1) -> None:
        """
        Args:
            weight: multiplier of the penalty (e.g. gamma for R1).
            interval: run every ``interval`` iterations (lazy regularization); 1 = every iteration.
        """
        super().__init__()
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.weight = float(weight)
        self.interval = int(interval)

    def forward(self, inputs: PenaltyInputs) -> Tensor:
        """The weighted penalty, a scalar tensor."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"network={self.network}, weight={self.weight}, interval={self.interval}"


class Augmentation(nn.Module, Configurable):
    """A differentiable transform ``T`` of every image the discriminator sees (ADA, DiffAugment).

    ``GANModule(augment=...)`` applies it in every phase that runs D: ``D(T(x_real))`` and ``D(T(G(z)))`` in
    Dmain, ``D(T(G(z)))`` in Gmain, and penalties through T (R1 is the gradient w.r.t. the un-augmented reals
    of ``D(T(x_real))``, as in StyleGAN2-ADA), so that gradients reach G through T. ``forward(images,
    generator=None)`` draws fresh random transforms at every call from ``generator`` (a ``torch.Generator`` on
    the images' device; the global RNG when None) and keeps the shape [N, C, H, W]. GANModule passes a
    generator of its own per process, so each process draws its own transforms and a resumed run continues
    the stream.

    Adaptive augmentations adjust their strength from D's outputs. ``observe(real_logits)`` receives the logits
    ``D(T(x_real))`` of every Dmain step; ``update(images=..., reduce=...)`` runs once per iteration after all
    phases, with ``images`` the real images of that iteration over all processes and ``reduce`` a function that
    sums a tensor over processes (the identity on one), so whatever it changes is identical on every process.
    State that must survive a resume (a probability, accumulators) lives in buffers: it is saved with the
    module. ``summary()`` returns the figures to log and show (e.g. ``{"p": ..., "rt": ...}``) as tensors.
    """

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:  # [N, C, H, W]
        raise NotImplementedError

    def observe(self, real_logits: Tensor) -> None:
        """D's logits on augmented reals of one Dmain step, [N] (detached); nothing by default."""

    def update(self, *, images: int, reduce: Callable[[Tensor], Tensor]) -> None:
        """End of an iteration: adapt the strength; nothing by default."""

    def summary(self) -> dict[str, Tensor]:
        """Figures to log under ``augment/<name>`` (scalar tensors); none by default."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config()["init_args"].items())
        return f"{type(self).__name__}({args})"


@runtime_checkable
class SyncableBatchNorm(Protocol):
    """A layer with batch statistics of its own that Lightning's ``sync_batchnorm`` (which converts torch's
    ``_BatchNorm`` modules only) cannot reach. With ``--trainer.sync_batchnorm=true`` GANModule calls
    ``set_sync_batchnorm()`` on every submodule that has it (structural: no subclassing needed); from then on the
    layer takes its training statistics over all processes of the group (None: all processes)."""

    def set_sync_batchnorm(self, process_group: Any = None) -> None: ...


# -- progressive growing (see the module docstring for the protocol) ------------------------------
GROWTH_MEMBERS: tuple[str, ...] = ("resolutions", "resolution", "alpha", "set_stage")
"""The members a network needs to grow, in the order ``growth_gaps`` names the missing ones."""


@runtime_checkable
class Growable(Protocol):
    """What a growable network offers (structural: ``isinstance(net, Growable)`` checks the members exist)."""

    resolutions: tuple[int, ...]

    @property
    def resolution(self) -> int: ...

    @property
    def alpha(self) -> float: ...

    def set_stage(self, resolution: int, alpha: float = 1.0) -> None: ...


def _check_resolutions(owner: str, resolutions: Sequence[int], full: tuple[int, ...], what: str) -> tuple[int, ...]:
    """``resolutions`` as a tuple of doubling ints whose last one is the full shape's height and width."""
    stages = tuple(int(r) for r in resolutions)
    if not stages or any(r < 1 for r in stages):
        raise ValueError(f"{owner}: resolutions must be one or more positive ints, got {list(resolutions)}")
    if any(b != 2 * a for a, b in zip(stages, stages[1:])):
        raise ValueError(f"{owner}: each resolution must double the one before (e.g. 4, 8, 16), got {list(stages)}")
    if len(full) < 2 or tuple(full[-2:]) != (stages[-1], stages[-1]):
        raise ValueError(f"{owner}: the full {what} {full} must end in the last resolution twice, "
                         f"({stages[-1]}, {stages[-1]})")
    return stages


class _GrowthStage(nn.Module):
    """The stage of a growable network: validation, the two buffers and their Python copies.

    Shared by ``GrowableGenerator`` and ``GrowableDiscriminator``; ``_init_stages`` runs at the end of their
    ``__init__``.
    """

    resolutions: tuple[int, ...]
    stage_resolution: Tensor
    stage_alpha: Tensor

    def _init_stages(self, resolutions: Sequence[int], full_shape: tuple[int, ...], what: str) -> None:
        self.resolutions = _check_resolutions(type(self).__name__, resolutions, full_shape, what)
        last = self.resolutions[-1]
        # Buffers: the stage is saved with the weights and whatever copies buffers carries it. Forward
        # passes read the Python copies (see _stage), so no device sync per call.
        self.register_buffer("stage_resolution", torch.tensor(last, dtype=torch.int64))
        self.register_buffer("stage_alpha", torch.tensor(1.0, dtype=torch.float32))
        self._resolution, self._alpha = last, 1.0
        self._stage_key = self._buffer_key()

    def _buffer_key(self) -> tuple[int, int, int, int]:
        """Which tensors the buffers are and how often they were written in place (no device sync)."""
        r, a = self.stage_resolution, self.stage_alpha
        return id(r), r._version, id(a), a._version

    def _stage(self) -> tuple[int, float]:
        """(resolution, alpha): the Python copies, re-read from the buffers when anything else wrote them.

        ``set_stage`` keeps both in step; an in-place copy into the buffers (``load_state_dict``, an EMA
        update copying the generator's buffers, a DDP buffer broadcast) or new buffer tensors (``.to()``)
        change the key, and then the buffers are read once (one device sync).
        """
        key = self._buffer_key()
        if key != self._stage_key:
            self._resolution, self._alpha = int(self.stage_resolution), float(self.stage_alpha)
            self._stage_key = key
        return self._resolution, self._alpha

    @property
    def resolution(self) -> int:
        """The current stage's side length, one of ``resolutions``."""
        return self._stage()[0]

    @resolution.setter
    def resolution(self, value: int) -> None:
        """Ignored: a fixed-resolution base class's ``__init__`` may assign its size (``self.resolution = R``);
        in a growable subclass the stage decides the current side, and the full one is ``resolutions[-1]``."""

    @property
    def alpha(self) -> float:
        """The weight of the current stage's new block: 0 = not yet in use, 1 = fully faded in."""
        return self._stage()[1]

    @property
    def stage_index(self) -> int:
        """The position of ``resolution`` in ``resolutions`` (0 = the first, smallest stage)."""
        return self.resolutions.index(self._stage()[0])

    def _validated_stage(self, resolution: Any, alpha: Any) -> tuple[int, float]:
        name = type(self).__name__
        if isinstance(resolution, bool) or int(resolution) != resolution or int(resolution) not in self.resolutions:
            raise ValueError(f"{name} has no stage at resolution {resolution!r}; its stages are "
                             f"{', '.join(map(str, self.resolutions))}")
        r, a = int(resolution), float(alpha)
        if not 0.0 <= a <= 1.0:
            raise ValueError(f"{name}: alpha must lie in [0, 1], got {alpha!r}")
        if r == self.resolutions[0] and a != 1.0:
            raise ValueError(f"{name}: resolution {r} is the first stage and has nothing to fade from; "
                             f"set it with alpha = 1, got {alpha!r}")
        return r, a

    def set_stage(self, resolution: int, alpha: float = 1.0) -> None:
        """Select the stage of side length ``resolution`` with its new block at weight ``alpha``.

        Args:
            resolution: one of ``resolutions``.
            alpha: in [0, 1]; must be 1 at the first stage. Stored rounded to the buffer's dtype
                (float32), so the running value and a checkpoint's value are the same number.
        """
        r, a = self._validated_stage(resolution, alpha)
        a = float(torch.tensor(a, dtype=self.stage_alpha.dtype))  # rounded on the host: no device sync
        if (r, a) != self._stage():
            self.stage_resolution.fill_(r)
            self.stage_alpha.fill_(a)
        self._resolution, self._alpha = r, a
        self._stage_key = self._buffer_key()

    def _load_from_state_dict(self, state_dict: Any, prefix: str, local_metadata: Any, strict: bool,
                              missing_keys: list[str], unexpected_keys: list[str], error_msgs: list[str]) -> None:
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if prefix + "stage_resolution" not in state_dict and prefix + "stage_alpha" not in state_dict:
            return  # nothing loaded (a strict load reports the missing keys)
        try:
            self._validated_stage(int(self.stage_resolution), float(self.stage_alpha))
        except ValueError as exc:
            error_msgs.append(f"{prefix}stage_resolution/stage_alpha hold no valid stage: {exc}")

    def _stage_repr(self) -> str:
        resolution, alpha = self._stage()
        return f"resolutions={self.resolutions}, resolution={resolution}, alpha={alpha:g}"


class GrowableGenerator(_GrowthStage, Generator):
    """A generator that grows through ``resolutions``; ``output_shape`` follows the stage.

    Subclasses build the layers of every stage in ``__init__`` and, in ``forward``, run the stages up to
    ``stage_index``; for ``stage_index > 0`` they return
    ``fade(upsample_nearest(previous_stage_image), new_block_image, self.alpha)`` (``lightning_gan.ops``),
    the previous stage's image being the one ``forward`` returns at that stage with ``alpha = 1``.
    """

    def __init__(self, *, z_dim: int, c_dim: int = 0, output_shape: tuple[int, ...],
                 resolutions: Sequence[int]) -> None:
        """
        Args:
            z_dim: size of the latent vector.
            c_dim: size of the condition vector (0 = unconditional).
            output_shape: shape of one sample at the full (last) resolution, e.g. ``(3, 64, 64)``.
            resolutions: the stages' side lengths, each double the one before, e.g. ``(4, 8, 16, 32, 64)``.
        """
        super().__init__(z_dim=z_dim, c_dim=c_dim, output_shape=output_shape)
        self._init_stages(resolutions, self.full_output_shape, "output_shape")

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of one sample at the current stage: ``full_output_shape`` with H = W = ``resolution``."""
        resolution = self._stage()[0]
        return (*self.full_output_shape[:-2], resolution, resolution)

    @output_shape.setter
    def output_shape(self, shape: tuple[int, ...]) -> None:
        self.full_output_shape = tuple(int(s) for s in shape)

    def extra_repr(self) -> str:
        return (f"z_dim={self.z_dim}, c_dim={self.c_dim}, full_output_shape={self.full_output_shape}, "
                + self._stage_repr())


class GrowableDiscriminator(_GrowthStage, Discriminator):
    """A discriminator that grows through ``resolutions``; ``input_shape`` follows the stage.

    Subclasses build the layers of every stage in ``__init__``; in ``forward``, for ``stage_index > 0``,
    they mix ``fade(old, new, self.alpha)`` where ``new`` is the new block's output on ``x`` and ``old`` is
    what the previous stage's input layer makes of ``downsample_average(x)`` (``lightning_gan.ops``), then
    run the remaining stages as the previous stage would.
    """

    def __init__(self, *, c_dim: int = 0, input_shape: tuple[int, ...], resolutions: Sequence[int]) -> None:
        """
        Args:
            c_dim: size of the condition vector (0 = unconditional).
            input_shape: shape of one sample at the full (last) resolution.
            resolutions: the stages' side lengths, each double the one before; the generator's.
        """
        super().__init__(c_dim=c_dim, input_shape=input_shape)
        self._init_stages(resolutions, self.full_input_shape, "input_shape")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample at the current stage: ``full_input_shape`` with H = W = ``resolution``."""
        resolution = self._stage()[0]
        return (*self.full_input_shape[:-2], resolution, resolution)

    @input_shape.setter
    def input_shape(self, shape: tuple[int, ...]) -> None:
        self.full_input_shape = tuple(int(s) for s in shape)

    def extra_repr(self) -> str:
        return f"c_dim={self.c_dim}, full_input_shape={self.full_input_shape}, " + self._stage_repr()


def _missing_members(net: Any) -> list[str]:
    missing = []
    for name in GROWTH_MEMBERS:
        try:
            value = getattr(net, name)
        except Exception:  # absent, or a property that fails: either way it cannot serve
            missing.append(name)
            continue
        if name == "set_stage" and not callable(value):
            missing.append(name)
    return missing


def growth_gaps(generator: Any, discriminator: Any) -> list[str]:
    """What keeps a generator/discriminator pair from growing, one phrase each; empty when it can grow.

    Names the members of ``GROWTH_MEMBERS`` each network lacks, and different stages in the two networks.
    """
    gaps = []
    for which, net, base in (("generator", generator, "GrowableGenerator"),
                             ("discriminator", discriminator, "GrowableDiscriminator")):
        missing = _missing_members(net)
        if missing:
            gaps.append(f"its {which} {type(net).__name__} lacks {', '.join(missing)} "
                        f"(subclass lightning_gan.interfaces.{base})")
    if not gaps and tuple(generator.resolutions) != tuple(discriminator.resolutions):
        gaps.append(f"its generator grows through resolutions {tuple(generator.resolutions)} but its "
                    f"discriminator through {tuple(discriminator.resolutions)}")
    return gaps


def require_growable(generator: Any, discriminator: Any, *, architecture: str | None = None) -> None:
    """Raise a one-line ``ContractError`` saying what the pair lacks, unless it can grow.

    Args:
        generator: the generator to grow.
        discriminator: the discriminator to grow with it.
        architecture: the architecture's name for the message (e.g. the spec's class name).
    """
    gaps = growth_gaps(generator, discriminator)
    if gaps:
        name = f"architecture {architecture}" if architecture else "this architecture"
        raise ContractError(f"{name} cannot grow progressively: {'; '.join(gaps)}")
