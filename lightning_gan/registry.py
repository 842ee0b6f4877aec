"""Plugin registry: entry-point discovery plus in-process registration, one registry per group.

Plugins (architectures, losses, regularizers, precision strategies, datasets, recipes) are found
through Python entry points, the same way for the core's own built-ins, the first-party plugins
under ``plugins/`` and a stranger's package::

    [project.entry-points."lightning_gan.architectures"]
    my_arch = "my_package.arch:MyArchitecture"

Listing reads installed metadata only and imports nothing; loading a name imports exactly one
plugin. Set ``LIGHTNING_GAN_DISABLE_PLUGIN_AUTOLOAD=1`` to ignore every distribution's entry points
except the core's own (in-process :func:`register` calls still count).

This module imports neither torch nor lightning, so ``lightning-gan plugins`` stays fast.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as metadata
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "AUTOLOAD_ENV",
    "CORE_DISTRIBUTION",
    "GROUPS",
    "BrokenPluginError",
    "DuplicatePluginError",
    "PluginEntry",
    "PluginError",
    "Registry",
    "UnknownPluginError",
    "get_registry",
    "import_target",
    "list_plugins",
    "load",
    "refresh",
    "register",
    "resolve",
]

AUTOLOAD_ENV = "LIGHTNING_GAN_DISABLE_PLUGIN_AUTOLOAD"
CORE_DISTRIBUTION = "lightning-gan"
ENTRY_POINT_PREFIX = "lightning_gan."

# group -> (import path of the base type every loaded object must satisfy, what it is)
GROUPS: dict[str, tuple[str | None, str]] = {
    "architectures": ("lightning_gan.interfaces:ArchitectureSpec", "generator/discriminator pair builders"),
    "losses": ("lightning_gan.interfaces:AdversarialLoss", "adversarial losses"),
    "regularizers": ("lightning_gan.interfaces:Regularizer", "regularizers (R1, GP, path length, ...)"),
    "precision": ("lightning.pytorch.plugins.precision:Precision", "precision strategies"),
    "datasets": ("lightning.pytorch:LightningDataModule", "datamodules"),
    "metrics": ("lightning_gan.metrics.base:GeneratorMetric", "generator metrics (FID, KID, coverage, PPL, ...)"),
    "recipes": (None, "training recipes (YAML configs)"),
}

_NAME_RE = re.compile(r"^[a-z][a-z0-9_\-]*$")


class PluginError(Exception):
    """Base class of every registry error."""


class UnknownPluginError(PluginError, ImportError, LookupError):
    """No plugin of that name in the group. The message lists what is available."""

    def __init__(self, group: str, name: str, available: list[str]) -> None:
        close = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        listing = ", ".join(available) if available else "(none installed)"
        plural = "precision strategies" if group == "precision" else group
        super().__init__(f"Unknown {_singular(group)} {name!r}.{hint} Available {plural}: {listing}.")
        self.group, self.plugin_name, self.available, self.close_matches = group, name, available, close


class BrokenPluginError(PluginError, ImportError):
    """A plugin's entry point failed to import or does not point at the right kind of object."""


class DuplicatePluginError(PluginError, LookupError):
    """Two distributions (or an entry point and an in-process registration) claim the same name."""


def _singular(group: str) -> str:
    return {"architectures": "architecture", "losses": "loss", "regularizers": "regularizer",
            "datasets": "dataset", "recipes": "recipe", "metrics": "metric"}.get(group, group)


@dataclass(frozen=True)
class PluginEntry:
    """One registered name: where it points and who provides it. Creating one imports nothing."""

    group: str
    name: str
    target: str  # "module:attr" for entry points and registered objects
    distribution: str | None  # None for in-process registrations
    version: str | None
    origin: str  # "entry-point" | "register"
    entry_point: metadata.EntryPoint | None = field(default=None, compare=False, repr=False)
    obj: Any = field(default=None, compare=False, repr=False)

    @property
    def provider(self) -> str:
        if self.distribution is None:
            return "in-process register()"
        return f"{self.distribution} {self.version or '?'}"


def _import_path(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or "?"
    return f"{module}:{getattr(obj, '__qualname__', repr(obj))}"


def import_target(target: str) -> Any:
    """Import ``"pkg.mod:attr.sub"`` or ``"pkg.mod.attr"``."""
    if ":" in target:
        module_name, _, attr = target.partition(":")
    else:
        module_name, _, attr = target.rpartition(".")
        if not module_name:
            raise ImportError(f"{target!r} is not an import path (expected 'package.module:Name')")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


def _is_import_path(value: str) -> bool:
    return ":" in value or ("." in value and not value.endswith((".yaml", ".yml")))


def autoload_enabled() -> bool:
    return os.environ.get(AUTOLOAD_ENV, "").strip().lower() not in {"1", "true", "yes", "on"}


class Registry:
    """Names of one plugin group, discovered lazily from entry points and cached.

    ``names()``/``entries()`` read metadata only; ``load(name)`` imports one plugin, checks it is of
    the group's base type and caches it; ``create(name, **kwargs)`` instantiates it.
    """

    def __init__(self, group: str) -> None:
        if group not in GROUPS:
            raise ValueError(f"Unknown plugin group {group!r}; groups are {', '.join(GROUPS)}")
        self.group = group
        self.entry_point_group = ENTRY_POINT_PREFIX + group
        self._base_path, self.description = GROUPS[group]
        self._registered: dict[str, PluginEntry] = {}
        self._discovered: dict[str, list[PluginEntry]] | None = None
        self._loaded: dict[str, Any] = {}
        self._errors: dict[str, BaseException] = {}
        self._lock = threading.RLock()

    # -- discovery (metadata only) --------------------------------------------------------
    def _discover(self) -> dict[str, list[PluginEntry]]:
        with self._lock:
            if self._discovered is None:
                found: dict[str, list[PluginEntry]] = {}
                autoload = autoload_enabled()
                for ep in metadata.entry_points(group=self.entry_point_group):
                    dist = getattr(ep, "dist", None)
                    dist_name = dist.metadata["Name"] if dist is not None else None
                    if not autoload and _canonical(dist_name) != CORE_DISTRIBUTION:
                        continue
                    entry = PluginEntry(
                        group=self.group, name=ep.name, target=ep.value, distribution=dist_name,
                        version=dist.version if dist is not None else None, origin="entry-point",
                        entry_point=ep,
                    )
                    same = found.setdefault(ep.name, [])
                    if not any(_canonical(e.distribution) == _canonical(dist_name) for e in same):
                        same.append(entry)
                self._discovered = found
            return self._discovered

    def _candidates(self, name: str) -> list[PluginEntry]:
        entries = list(self._discover().get(name, []))
        if name in self._registered:
            entries.insert(0, self._registered[name])
        return entries

    def names(self) -> list[str]:
        """Sorted names available in this group (metadata only; imports nothing)."""
        return sorted(set(self._discover()) | set(self._registered))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self._candidates(name))

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def entries(self) -> list[PluginEntry]:
        """Every entry, duplicates included, sorted by name (metadata only)."""
        out = list(self._registered.values())
        for entries in self._discover().values():
            out.extend(entries)
        return sorted(out, key=lambda e: (e.name, e.origin != "register", e.distribution or ""))

    def status(self, entry: PluginEntry) -> str:
        """'loaded', 'not loaded', 'broken: <reason>' or 'conflict: <other providers>'."""
        others = [e for e in self._candidates(entry.name) if e is not entry]
        if others:
            return "conflict: also " + ", ".join(o.provider for o in others)
        if entry.name in self._errors:
            err = self._errors[entry.name]
            cause = err.__cause__ or err
            return f"broken: {type(cause).__name__}: {cause}"
        if entry.name in self._loaded:
            return "loaded"
        return "not loaded"

    # -- loading --------------------------------------------------------------------------
    def load(self, name: str) -> Any:
        """Import and return the object registered as ``name`` (or at the import path ``name``)."""
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            candidates = self._candidates(name)
            if not candidates:
                if _is_import_path(name):  # a full path picks one object directly, registry or not
                    return self._check(name, import_target(name), f"import path {name!r}")
                raise UnknownPluginError(self.group, name, self.names())
            if len(candidates) > 1:
                providers = "; ".join(f"{c.provider} -> {c.target}" for c in candidates)
                raise DuplicatePluginError(
                    f"{_singular(self.group).capitalize()} {name!r} is provided more than once: {providers}. "
                    f"Uninstall one, or pick one by its full path (e.g. {candidates[0].target.replace(':', '.')!r})."
                )
            (entry,) = candidates
            if entry.origin == "register":
                obj = entry.obj
            else:
                try:
                    obj = entry.entry_point.load() if entry.entry_point is not None else import_target(entry.target)
                except Exception as exc:
                    err = BrokenPluginError(
                        f"Plugin {name!r} (entry point '{name} = {entry.target}' in group "
                        f"{self.entry_point_group!r}, distribution {entry.provider}) failed to import: "
                        f"{type(exc).__name__}: {exc}"
                    )
                    err.__cause__ = exc
                    self._errors[name] = err
                    raise err from exc
            try:
                obj = self._check(name, obj, f"entry point '{name} = {entry.target}' ({entry.provider})")
            except BrokenPluginError as err:
                self._errors[name] = err
                raise
            self._loaded[name] = obj
            self._errors.pop(name, None)
            return obj

    def _check(self, name: str, obj: Any, where: str) -> Any:
        if self.group == "recipes":
            return _recipe_path(name, obj, where)
        if self._base_path is None:
            return obj
        base = import_target(self._base_path)
        if not (isinstance(obj, type) and issubclass(obj, base)) and not isinstance(obj, base):
            raise BrokenPluginError(
                f"{where} points at {obj!r}, which is not a {base.__name__} (group {self.entry_point_group!r})"
            )
        return obj

    def create(self, name: str, /, **kwargs: Any) -> Any:
        """Instantiate the class registered as ``name`` with keyword arguments."""
        cls = self.load(name)
        return cls(**kwargs) if isinstance(cls, type) else cls

    def resolve(self, value: Any) -> Any:
        """An instance from an instance, a name/import path, or ``{"class_path": ..., "init_args": {...}}``."""
        if isinstance(value, str):
            return self.create(value)
        if isinstance(value, Mapping):
            if "class_path" not in value:
                raise ValueError(f"A {_singular(self.group)} mapping needs a 'class_path' key, got {dict(value)!r}")
            return self.create(value["class_path"], **dict(value.get("init_args") or {}))
        if isinstance(value, type):
            return self._check(value.__name__, value, f"class {value.__qualname__}")()
        return self._check(type(value).__name__, value, f"object {value!r}")

    def import_path(self, name: str) -> str:
        """The dotted import path (``pkg.mod.Class``) of a registered name, loading it."""
        obj = self.load(name)
        return f"{obj.__module__}.{obj.__qualname__}"

    # -- in-process registration ----------------------------------------------------------
    def register(self, name: str, obj: Any = None, *, replace: bool = False) -> Any:
        """Register ``obj`` under ``name`` in this process. Usable as a decorator (``obj`` omitted)."""
        if not _NAME_RE.match(name):
            raise ValueError(f"Plugin names are lower snake case (letters, digits, '_', '-'), got {name!r}")

        def _do(target: Any) -> Any:
            with self._lock:
                existing = self._candidates(name)
                if existing and not replace:
                    raise DuplicatePluginError(
                        f"{_singular(self.group).capitalize()} {name!r} is already present in the registry "
                        f"({existing[0].provider} -> {existing[0].target}); pass replace=True to override it."
                    )
                self._check(name, target, f"register({name!r})")
                self._registered[name] = PluginEntry(
                    group=self.group, name=name, target=_import_path(target), distribution=None,
                    version=None, origin="register", obj=target,
                )
                if replace:
                    self._discover().pop(name, None)
                self._loaded.pop(name, None)
                self._errors.pop(name, None)
            return target

        return _do if obj is None else _do(obj)

    def unregister(self, name: str) -> None:
        with self._lock:
            if name not in self._registered:
                raise UnknownPluginError(self.group, name, sorted(self._registered))
            del self._registered[name]
            self._loaded.pop(name, None)

    def refresh(self) -> None:
        """Forget discovered entry points and loaded objects (call after installing a plugin)."""
        with self._lock:
            self._discovered = None
            self._loaded = {k: v for k, v in self._loaded.items() if k in self._registered}
            self._errors.clear()


def _canonical(dist_name: str | None) -> str | None:
    return None if dist_name is None else re.sub(r"[-_.]+", "-", dist_name).lower()


def _recipe_path(name: str, obj: Any, where: str) -> Path:
    """Recipes are YAML files: an entry point names a package holding ``<name>.yaml``."""
    if isinstance(obj, (str, os.PathLike)) and Path(obj).is_file():
        return Path(obj)
    directory = getattr(obj, "__path__", None)
    if directory is None:
        raise BrokenPluginError(f"{where} must point at a package holding {name}.yaml, got {obj!r}")
    for folder in directory:
        path = Path(folder) / f"{name}.yaml"
        if path.is_file():
            return path
    raise BrokenPluginError(f"{where}: package {obj.__name__!r} has no file {name}.yaml")


_REGISTRIES: dict[str, Registry] = {}


def get_registry(group: str) -> Registry:
    """The process-wide registry of one group."""
    if group not in _REGISTRIES:
        _REGISTRIES[group] = Registry(group)
    return _REGISTRIES[group]


def register(group: str, name: str, obj: Any = None, *, replace: bool = False) -> Any:
    """``register("losses", "my_loss", MyLoss)`` or ``@register("losses", "my_loss")``."""
    return get_registry(group).register(name, obj, replace=replace)


def load(group: str, name: str) -> Any:
    return get_registry(group).load(name)


def resolve(group: str, value: Any) -> Any:
    return get_registry(group).resolve(value)


def list_plugins(groups: list[str] | None = None, *, load: bool = False) -> list[tuple[PluginEntry, str]]:
    """Every entry of the given groups with its status; ``load=True`` imports each to find broken ones."""
    rows: list[tuple[PluginEntry, str]] = []
    for group in groups or list(GROUPS):
        reg = get_registry(group)
        for entry in reg.entries():
            if load and reg.status(entry) == "not loaded":
                try:
                    reg.load(entry.name)
                except PluginError:
                    pass  # recorded as broken in reg.status
            rows.append((entry, reg.status(entry)))
    return rows


def refresh() -> None:
    """Re-read installed metadata for every group (after installing plugins or changing sys.path)."""
    importlib.invalidate_caches()
    for reg in _REGISTRIES.values():
        reg.refresh()


def recipe_path(name_or_path: str) -> Path:
    """The YAML file of a recipe name, or the path itself if it is an existing file."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} and path.is_file():
        return path
    return get_registry("recipes").load(name_or_path)


def recipe_description(path: Path) -> str:
    """First comment line of a recipe file (its one-line description)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""

