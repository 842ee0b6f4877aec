"""Errors for configurations that cannot work, and the one-line messages the CLI shows for them."""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["ConfigError", "condition_mismatch", "shape_mismatch"]

_LATENT_NAMES = ("z_dim", "c_dim", "w_dim")
_SHAPE_WORDS = ("resolution", "channel", "dim", "size")


class ConfigError(ValueError):
    """A configuration that cannot work: wrong shapes between data and model, unsupported strategy, ..."""


def _options_with_value(obj: Any, value: int, words: tuple[str, ...]) -> list[str]:
    """Constructor options of ``obj`` (kept as attributes) whose name holds one of ``words`` and whose value is
    ``value``: the options that set a given size."""
    if obj is None:
        return []
    try:
        params = inspect.signature(type(obj).__init__).parameters
    except (TypeError, ValueError):
        return []
    return [name for name, p in params.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in _LATENT_NAMES
            and any(w in name for w in words) and getattr(obj, name, None) == value]


def shape_mismatch(generator_shape: tuple[int, ...], data_shape: tuple[int, ...], spec: Any = None,
                   datamodule: Any = None) -> str:
    """The one line for a generator whose samples do not have the data's shape, with the options to change.

    For images ``[C, H, W]`` it names the channels and the resolution that differ; for points ``[D]`` the size.
    An option is suggested only where the architecture (or datamodule) has one that holds the size now.
    """
    data_name = type(datamodule).__name__ if datamodule is not None else "the data"
    head = f"The generator makes samples of shape {generator_shape} but {data_name} yields {data_shape}"
    if len(generator_shape) != len(data_shape):
        kind = "images [C, H, W]" if len(data_shape) == 3 else f"{len(data_shape)}-D samples {data_shape}"
        return f"{head}; this architecture cannot make {kind}: choose one that does (--model.architecture=NAME)."
    if len(data_shape) == 3:
        differences = [("channels", generator_shape[0], data_shape[0])]
        if generator_shape[1:] != data_shape[1:]:
            differences.append(("resolution", generator_shape[1], data_shape[1]))
        differences = [d for d in differences if d[1] != d[2]]
    else:
        differences = [("size", g, d) for g, d in zip(generator_shape, data_shape) if g != d][:1]
    fixes = []
    for what, made, wanted in differences:
        arch = [f"--model.architecture.{n}={wanted}" for n in _options_with_value(spec, made, _SHAPE_WORDS)]
        data = [f"--data.{n}={made}" for n in _options_with_value(datamodule, wanted, ("resolution", "channel"))
                ] if len(data_shape) == 3 else []
        if arch or data:
            fixes.append("set " + " or ".join(arch[:1] + data[:1]))
        else:
            fixes.append(f"make the architecture's {what} {wanted}")
    return f"{head}; {', and '.join(fixes)}." if fixes else f"{head}."


def condition_mismatch(c_dim: int, num_classes: int, spec: Any = None, datamodule: Any = None) -> str:
    """The one line for a conditional architecture whose class count is not the data's."""
    data_name = type(datamodule).__name__ if datamodule is not None else "the data"
    option = "--model.architecture.c_dim" if _has_option(spec, "c_dim") else "the architecture's c_dim"
    sep = "=" if option.startswith("--") else " to "
    if not num_classes:
        return (f"The architecture is conditional on {c_dim} classes but {data_name} has no class labels; "
                f"set {option}{sep}0 for an unconditional model, or use a datamodule with labels.")
    return (f"The architecture is conditional on {c_dim} classes but {data_name} has {num_classes}; "
            f"set {option}{sep}{num_classes} (or 0 for an unconditional model).")


def _has_option(obj: Any, name: str) -> bool:
    if obj is None:
        return False
    try:
        return name in inspect.signature(type(obj).__init__).parameters
    except (TypeError, ValueError):
        return False
