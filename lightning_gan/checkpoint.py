"""Safe loading of run checkpoints and exported generators; rebuilding the sampling generator from them.

* Checkpoints are read with ``torch.load(..., weights_only=True)`` only: tensors, numbers, strings and
  containers. A file that would run code when unpickled is refused with ``UnsafeCheckpointError`` (one
  line naming the file and the object it tried to build); lightning-gan never falls back to full pickle.
* ``export_generator`` writes a generator's weights with safetensors (no code at all) next to a small JSON
  config (``G.json`` for ``G.safetensors``; a copy is also embedded in the safetensors header) from which
  ``load_generator`` rebuilds it through the registry: the same architecture plugin must be installed.
* ``load_sampler`` takes either kind of file and returns the generator used for sampling (the EMA one
  by default) plus what is known about the run (its data config, kimg).
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lightning_gan import registry
from lightning_gan.errors import ConfigError
from lightning_gan.interfaces import Generator

__all__ = [
    "EXPORT_FORMAT",
    "LoadedGenerator",
    "UnsafeCheckpointError",
    "datamodule_config",
    "export_generator",
    "load_checkpoint",
    "load_generator",
    "load_sampler",
]

EXPORT_FORMAT = "lightning-gan-generator"
EXPORT_VERSION = 1


class UnsafeCheckpointError(ConfigError):
    """The file holds pickled Python objects beyond plain data; loading it could execute code."""


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint as plain data, read with ``weights_only=True``; clear errors for missing, corrupt or unsafe files."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no checkpoint file at {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        culprit = next((ln for ln in lines if "GLOBAL" in ln), None)
        if culprit is None:  # not a pickle of objects: bytes that are no checkpoint at all
            detail = next((ln for ln in lines if "error:" in ln), lines[0] if lines else "")
            raise ConfigError(f"{path} is not a readable PyTorch checkpoint ({detail})") from exc
        raise UnsafeCheckpointError(
            f"refusing to load {path}: it holds pickled Python objects that could run code when loaded ({culprit}); "
            f"lightning-gan only reads plain tensors and containers (torch.load weights_only=True). "
            f"Re-save the state you need as plain data from a trusted session"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if not isinstance(ckpt, dict):
        raise ConfigError(f"{path} holds a {type(ckpt).__name__}, not a checkpoint dictionary")
    return ckpt


def datamodule_config(datamodule: Any) -> dict[str, Any] | None:
    """``{"class_path", "init_args"}`` of a datamodule, read back from attributes named like its
    constructor's parameters; None when some required one cannot be read (then commands ask for the data)."""
    import inspect

    cls = type(datamodule)
    init_args: dict[str, Any] = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if not hasattr(datamodule, name):
            if param.default is inspect.Parameter.empty:
                return None
            continue
        value = getattr(datamodule, name)
        if isinstance(value, tuple):
            value = list(value)
        if value is not None and not isinstance(value, (bool, int, float, str, list)):
            if param.default is inspect.Parameter.empty:
                return None
            continue
        init_args[name] = value
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args}


@dataclass
class LoadedGenerator:
    """A generator rebuilt from a checkpoint or an export, and what is known about its run."""

    generator: Generator
    architecture: dict[str, Any]
    source: Path
    ema: bool
    data: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)  # iteration, kimg, ...
    metrics: list[Any] | None = None  # the run's configured metrics (configs), if any

    def build_datamodule(self, overrides: dict[str, Any] | None = None) -> Any:
        """The run's datamodule (rebuilt from its saved config), with ``overrides`` of its init args."""
        if self.data is None:
            raise ConfigError(f"{self.source} does not record its datamodule; pass the data explicitly")
        init_args = {**(self.data.get("init_args") or {}), **(overrides or {})}
        return registry.resolve("datasets", {"class_path": self.data["class_path"], "init_args": init_args})


def _build_generator(architecture: dict[str, Any]) -> Generator:
    spec = registry.resolve("architectures", architecture)
    return spec.build().generator


def load_sampler(path: str | os.PathLike[str], *, ema: bool = True, map_location: Any = "cpu") -> LoadedGenerator:
    """The sampling generator of a run checkpoint (``.ckpt``) or of an exported ``.safetensors`` generator.

    Args:
        path: a GANModule checkpoint or a file written by ``export_generator``.
        ema: take the EMA generator when the run has one (checkpoints only; an export holds one generator).
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_generator(path, map_location=map_location, _with_info=True)
    ckpt = load_checkpoint(path, map_location=map_location)
    hparams = ckpt.get("hyper_parameters") or {}
    if "architecture" not in hparams or "state_dict" not in ckpt:
        raise ConfigError(f"{path} is not a GANModule checkpoint (no architecture hyperparameters or state_dict)")
    generator = _build_generator(hparams["architecture"])
    state = ckpt["state_dict"]
    use_ema = ema and any(k.startswith("generator_ema.") for k in state)
    prefix = "generator_ema." if use_ema else "generator."
    weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    _load_state(generator, weights, path)
    extra = state.get("_extra_state") or {}
    ours = ckpt.get("lightning_gan") or {}
    info = {"iteration": extra.get("iteration"), "kimg": None if extra.get("images_seen") is None else extra["images_seen"] / 1000}
    return LoadedGenerator(generator=generator.eval(), architecture=hparams["architecture"], source=path, ema=use_ema,
                           data=ours.get("data"), info=info, metrics=hparams.get("metrics"))


def _load_state(generator: torch.nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
    result = generator.load_state_dict(weights, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ConfigError(
            f"{path}: the weights do not fit the architecture they record (missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}); was the plugin changed since the run?"
        )


def export_generator(generator: Generator, path: str | os.PathLike[str], *, architecture: dict[str, Any],
                     data: dict[str, Any] | None = None, info: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``generator``'s weights to ``path`` (safetensors) and its config to ``path`` with ``.json``.

    Returns both paths. ``architecture`` is the registry config (``{"class_path", "init_args"}``) that builds
    the pair the generator belongs to; ``data`` the datamodule config (so ``evaluate`` can compare with
    the training data); ``info`` anything else worth keeping (kimg, source checkpoint).
    """
    from safetensors.torch import save_model

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ConfigError(f"export path must end in .safetensors, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "format": EXPORT_FORMAT, "version": EXPORT_VERSION, "network": "generator",
        "architecture": architecture, "data": data,
        "z_dim": generator.z_dim, "c_dim": generator.c_dim, "output_shape": list(generator.output_shape),
        "info": info or {},
    }
    text = json.dumps(config, indent=2, default=str)
    save_model(generator, str(path), metadata={"lightning_gan": json.dumps(config, default=str)})
    json_path = path.with_suffix(".json")
    json_path.write_text(text + "\n")
    return path, json_path


def load_generator(path: str | os.PathLike[str], *, map_location: Any = "cpu", _with_info: bool = False) -> Any:
    """The generator exported to ``path`` (eval mode), rebuilt through the registry from its config.

    The config is read from the ``.json`` next to the weights, or from the copy in the safetensors header.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_model

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no exported generator at {path}")
    json_path = path.with_suffix(".json")
    try:
        if json_path.is_file():
            config = json.loads(json_path.read_text())
        else:
            with safe_open(str(path), framework="pt") as f:
                config = json.loads((f.metadata() or {}).get("lightning_gan", "null"))
    except (SafetensorError, json.JSONDecodeError, OSError) as exc:
        raise ConfigError(f"{path} is not a readable lightning-gan export ({type(exc).__name__}: {exc})") from exc
    if not isinstance(config, dict) or config.get("format") != EXPORT_FORMAT:
        raise ConfigError(f"{path} has no lightning-gan generator config (expected {json_path.name} or header metadata)")
    if int(config.get("version", 0)) > EXPORT_VERSION:
        raise ConfigError(f"{path} was exported by a newer lightning-gan (format version {config['version']})")
    generator = _build_generator(config["architecture"])
    try:
        missing, unexpected = load_model(generator, str(path), strict=False, device=str(map_location))
    except SafetensorError as exc:
        raise ConfigError(f"{path} is not a readable safetensors file ({exc})") from exc
    if missing or unexpected:
        raise ConfigError(f"{path}: the weights do not fit the architecture in its config (missing {sorted(missing)[:5]}, "
                          f"unexpected {sorted(unexpected)[:5]})")
    generator.eval()
    if not _with_info:
        return generator
    return LoadedGenerator(generator=generator, architecture=config["architecture"], source=path, ema=True,
                           data=config.get("data"), info=dict(config.get("info") or {}))
