"""Contracts every plugin implements: Generator, Discriminator, ArchitectureSpec, AdversarialLoss, Regularizer.

A plugin subclasses one of these and registers it under an entry-point group (see ``registry``).
Configurable objects (specs, losses, regularizers) keep each constructor argument as an attribute
of the same name; ``config()`` then describes them as plain data ``{"class_path", "init_args"}``,
which is what checkpoints store (no pickled objects) and what the CLI prints.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Literal, NamedTuple

import torch
from torch import Tensor, nn

__all__ = [
    "AdversarialLoss",
    "ArchitectureSpec",
    "Configurable",
    "Discriminator",
    "Generator",
    "NetworkPair",
    "PenaltyInputs",
    "Regularizer",
    "require_condition",
]

NetworkName = Literal["generator", "discriminator"]


class Configurable:
    """Mixin: ``config()`` returns the constructor arguments as plain data, read back from attributes."""

    def config(self) -> dict[str, Any]:
        init_args: dict[str, Any] = {}
        for name, param in inspect.signature(type(self).__init__).parameters.items():
            if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            if not hasattr(self, name):
                raise TypeError(
                    f"{type(self).__qualname__} must keep its constructor argument {name!r} as an attribute "
                    f"of the same name so that it can be saved and rebuilt"
                )
            init_args[name] = _plain(getattr(self, name))
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
    raise TypeError(f"Cannot store {value!r} in a config: only plain values and Configurable objects")


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

    Args:
        generator: the trained generator.
        discriminator: the trained discriminator.
        real: the real batch, [N, ...].
        real_c: its conditions, [N, c_dim], or None.
        latent_sampler: ``n -> (z, c)`` drawing latents (and conditions) from the training distribution.
    """

    def __init__(self, *, generator: Generator, discriminator: Discriminator, real: Tensor,
                 real_c: Tensor | None, latent_sampler: Callable[[int], tuple[Tensor, Tensor | None]]) -> None:
        self.generator = generator
        self.discriminator = discriminator
        self.real = real
        self.real_c = real_c
        self.latent_sampler = latent_sampler
        self._fake: tuple[Tensor, Tensor | None] | None = None

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
