"""Safe loading of run checkpoints and exported generators; rebuilding the sampling generator from them.

* Checkpoints are read with ``torch.load(..., weights_only=True)`` only: tensors, numbers, strings and
  containers. A file that would run code when unpickled is refused with ``UnsafeCheckpointError`` (one
  line naming the file and the object it tried to build); lightning-gan never falls back to full pickle.
* ``export_generator`` writes a generator's weights with safetensors (no code at all) next to a small JSON
  config (``G.json`` for ``G.safetensors``; a copy is also embedded in the safetensors header) from which
  ``load_generator`` rebuilds it through the registry: the same architecture plugin must be installed.
* ``load_sampler`` takes either kind of file and returns the generator used for sampling (the EMA one
  by default) plus what is known about the run (its data config, kimg).
* Both kinds of file record which distribution provided each plugin class (``plugin_distributions``), so
  that a file whose plugin is not installed here ends in one line naming the class and the distribution to
  install (``MissingPluginError``) instead of a ``ModuleNotFoundError`` traceback.
"""

from __future__ import annotations

import functools
import importlib.metadata as metadata
import json
import os
import pickle
from collections.abc import Iterator, Mapping
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
    "MissingPluginError",
    "UnsafeCheckpointError",
    "datamodule_config",
    "export_generator",
    "load_checkpoint",
    "load_generator",
    "load_sampler",
    "plugin_distributions",
    "require_plugin",
    "require_run_plugins",
    "resolve_recorded",
]

EXPORT_FORMAT = "lightning-gan-generator"
EXPORT_VERSION = 1


class UnsafeCheckpointError(ConfigError):
    """The file holds pickled Python objects beyond plain data; loading it could execute code."""


class MissingPluginError(ConfigError):
    """A checkpoint or export names a plugin class whose package is not installed in this environment."""


_CORE_PREFIX = "lightning_gan."
_FIRST_PARTY_PREFIX = "lightning_gan_"  # first-party plugins: module lightning_gan_<x>, distribution lightning-gan-<x>


def _class_paths(config: Any) -> Iterator[str]:
    """Every ``class_path`` string in a nested config (mappings and lists), in order."""
    if isinstance(config, Mapping):
        if isinstance(config.get("class_path"), str):
            yield config["class_path"]
        for value in config.values():
            yield from _class_paths(value)
    elif isinstance(config, (list, tuple)):
        for value in config:
            yield from _class_paths(value)


@functools.lru_cache(maxsize=None)
def _distribution_of(top_module: str) -> str | None:
    """``"name version"`` of the installed distribution that provides the top-level module, if known.

    Entry points come first (they also know editable installs), then the files the distributions list.
    """
    for group in registry.GROUPS:
        for entry in registry.get_registry(group).entries():
            if entry.distribution and entry.target.split(":")[0].split(".")[0] == top_module:
                return f"{entry.distribution} {entry.version or '?'}"
    names = metadata.packages_distributions().get(top_module) or []
    if names:
        try:
            return f"{names[0]} {metadata.version(names[0])}"
        except metadata.PackageNotFoundError:
            return names[0]
    return None


def plugin_distributions(config: Any) -> dict[str, str]:
    """``{class_path: "distribution version"}`` for each plugin class of ``config`` outside the core.

    Checkpoints and exports store it, so that loading one where the plugin is missing can say what to install.
    """
    record: dict[str, str] = {}
    for class_path in _class_paths(config):
        if class_path.startswith(_CORE_PREFIX) or "." not in class_path or class_path in record:
            continue
        dist = _distribution_of(class_path.split(".")[0].split(":")[0])
        if dist is not None:
            record[class_path] = dist
    return record


def _missing_plugin_message(class_path: str, kind: str, source: Any, missing: str,
                            plugins: Mapping[str, str] | None) -> str:
    top = class_path.split(".")[0].split(":")[0]
    if missing.split(".")[0] != top:  # the plugin is there, one of its own dependencies is not
        return (f"{source} needs the {kind} {class_path}, which imports the module {missing!r}, not installed here; "
                f"install the package that provides {missing.split('.')[0]!r} and run again")
    recorded = (plugins or {}).get(class_path)
    if recorded:
        dist, _, version = recorded.partition(" ")
    elif top.startswith(_FIRST_PARTY_PREFIX):
        dist, version = top.replace("_", "-"), ""
    else:
        return (f"{source} needs the {kind} {class_path}, but no module named {top!r} is installed; install the "
                f"plugin distribution that provides {top!r} and run again")
    seen = f" (the run used {version})" if version and version != "?" else ""
    return (f"{source} needs the {kind} {class_path} from the plugin distribution {dist}, which is not installed"
            f"{seen}; install it (pip install {dist}) and run again")


def require_plugin(config: Any, *, kind: str, source: Any, plugins: Mapping[str, str] | None = None) -> None:
    """Import the class of a recorded config; a ``MissingPluginError`` naming it and its distribution if absent.

    Args:
        config: ``{"class_path", "init_args"}``, a class path or a registry name (names are the registry's to check).
        kind: what the class is, for the message (``"architecture"``, ``"datamodule"``, ``"metric"``).
        source: the file that records it, for the message.
        plugins: the file's ``{class_path: "distribution version"}`` record (``plugin_distributions``).
    """
    class_path = config.get("class_path") if isinstance(config, Mapping) else config
    if not isinstance(class_path, str) or not ("." in class_path or ":" in class_path):
        return
    try:
        registry.import_target(class_path)
    except ModuleNotFoundError as exc:
        missing = exc.name or class_path.rpartition(".")[0]
        raise MissingPluginError(_missing_plugin_message(class_path, kind, source, missing, plugins)) from exc
    except AttributeError as exc:
        recorded = (plugins or {}).get(class_path)
        raise MissingPluginError(
            f"{source} needs the {kind} {class_path}, which the installed module does not define ({exc})"
            + (f"; the run used {recorded}" if recorded else "") + ": install the plugin version the run used"
        ) from exc


def require_run_plugins(ckpt: Mapping[str, Any], source: Any) -> None:
    """``require_plugin`` for every plugin class the model hyperparameters of a GANModule checkpoint name."""
    hparams = ckpt.get("hyper_parameters") or {}
    plugins = (ckpt.get("lightning_gan") or {}).get("plugins")
    for key, kind in (("architecture", "architecture"), ("loss", "loss"), ("regularizers", "regularizer"),
                      ("augment", "augmentation"), ("metrics", "metric")):
        configs = hparams.get(key)
        for config in configs if isinstance(configs, (list, tuple)) else [configs]:
            require_plugin(config, kind=kind, source=source, plugins=plugins)


def resolve_recorded(group: str, config: Any, *, kind: str, source: Any,
                     plugins: Mapping[str, str] | None = None) -> Any:
    """``registry.resolve(group, config)`` for a config read from a file, after ``require_plugin``."""
    require_plugin(config, kind=kind, source=source, plugins=plugins)
    return registry.resolve(group, config)


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
    plugins: dict[str, str] = field(default_factory=dict)  # class_path -> "distribution version" (plugin_distributions)

    def require(self, config: Any, kind: str) -> None:
        """``require_plugin`` for a config this file records (e.g. one of its metrics)."""
        require_plugin(config, kind=kind, source=self.source, plugins=self.plugins)

    def build_datamodule(self, overrides: dict[str, Any] | None = None) -> Any:
        """The run's datamodule (rebuilt from its saved config), with ``overrides`` of its init args."""
        if self.data is None:
            raise ConfigError(f"{self.source} does not record its datamodule; pass the data explicitly")
        init_args = {**(self.data.get("init_args") or {}), **(overrides or {})}
        return resolve_recorded("datasets", {"class_path": self.data["class_path"], "init_args": init_args},
                                kind="datamodule", source=self.source, plugins=self.plugins)


def _build_generator(architecture: dict[str, Any], source: Any, plugins: Mapping[str, str] | None) -> Generator:
    spec = resolve_recorded("architectures", architecture, kind="architecture", source=source, plugins=plugins)
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
    ours = ckpt.get("lightning_gan") or {}
    plugins = dict(ours.get("plugins") or {})
    generator = _build_generator(hparams["architecture"], path, plugins)
    state = ckpt["state_dict"]
    use_ema = ema and any(k.startswith("generator_ema.") for k in state)
    prefix = "generator_ema." if use_ema else "generator."
    weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    _load_state(generator, weights, path)
    extra = state.get("_extra_state") or {}
    info = {"iteration": extra.get("iteration"), "kimg": None if extra.get("images_seen") is None else extra["images_seen"] / 1000}
    return LoadedGenerator(generator=generator.eval(), architecture=hparams["architecture"], source=path, ema=use_ema,
                           data=ours.get("data"), info=info, metrics=hparams.get("metrics"), plugins=plugins)


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
        "info": info or {}, "plugins": plugin_distributions([architecture, data]),
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
    plugins = dict(config.get("plugins") or {})
    generator = _build_generator(config["architecture"], path, plugins)
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
                           data=config.get("data"), info=dict(config.get("info") or {}), plugins=plugins)
