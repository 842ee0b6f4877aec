"""Plugin registry: entry-point discovery plus in-process registration, one registry per group.

Plugins (architectures, losses, regularizers, precision strategies, datasets, recipes) are found
through Python entry points, the same way for the core's own built-ins, the first-party plugins
under ``plugins/`` and a stranger's package::

    [project.entry-points."lightning_gan.architectures"]
    my_arch = "my_package.arch:MyArchitecture"

Listing reads installed metadata only and imports nothing; loading a name imports exactly one
plugin. Set ``LIGHTNING_GAN_DISABLE_PLUGIN_AUTOLOAD=1`` to ignore every distribution's entry points
except the core's own (in-process :func:`register` calls still count).

Recipes are YAML files. The core ships every first-party recipe (the repository's top-level
``recipes/`` folder, installed as the package ``lightning_gan.recipes``): each ``<name>.yaml`` there is
the recipe ``<name>`` without an entry point; other distributions add theirs through the
``lightning_gan.recipes`` group. What a recipe needs is read from its class paths and registry names
(:func:`recipe_needs`), and a name of a first-party plugin that is not installed gets an error that says
which distribution to install (:data:`FIRST_PARTY_PLUGINS`).

This module imports neither torch nor lightning, so ``lightning-gan plugins`` stays fast.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as metadata
import importlib.util
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
    "FIRST_PARTY_PLUGINS",
    "GROUPS",
    "BrokenPluginError",
    "DuplicatePluginError",
    "PluginEntry",
    "PluginError",
    "RecipeNeeds",
    "Registry",
    "UnknownPluginError",
    "get_registry",
    "import_target",
    "list_plugins",
    "load",
    "recipe_needs",
    "recipe_path",
    "refresh",
    "register",
    "resolve",
    "unknown_group_entries",
]

AUTOLOAD_ENV = "LIGHTNING_GAN_DISABLE_PLUGIN_AUTOLOAD"
CORE_DISTRIBUTION = "lightning-gan"
ENTRY_POINT_PREFIX = "lightning_gan."

# group -> (import path of the base type every loaded object must satisfy, what it is)
GROUPS: dict[str, tuple[str | None, str]] = {
    "architectures": ("lightning_gan.interfaces:ArchitectureSpec", "generator/discriminator pair builders"),
    "losses": ("lightning_gan.interfaces:AdversarialLoss", "adversarial losses"),
    "regularizers": ("lightning_gan.interfaces:Regularizer", "regularizers (R1, GP, path length, ...)"),
    "augmentations": ("lightning_gan.interfaces:Augmentation", "discriminator augmentations (ADA, DiffAugment)"),
    "precision": ("lightning.pytorch.plugins.precision:Precision", "precision strategies"),
    "datasets": ("lightning.pytorch:LightningDataModule", "datamodules"),
    "metrics": ("lightning_gan.metrics.base:GeneratorMetric", "generator metrics (FID, KID, coverage, PPL, ...)"),
    "recipes": (None, "training recipes (YAML configs)"),
}

# The first-party plugins (plugins/ in the repository): distributions of their own that the core never
# imports. Their names are known here, and only here, so that a message can say which one to install.
FIRST_PARTY_PLUGINS: dict[str, dict[str, tuple[str, ...]]] = {
    "lightning-gan-dcgan": {"architectures": ("dcgan", "mlp")},
    "lightning-gan-stylegan2": {"architectures": ("stylegan2",), "regularizers": ("path_length",)},
    "lightning-gan-progan": {"architectures": ("progan",)},
    "lightning-gan-biggan": {"architectures": ("biggan",)},
}

CORE_RECIPES_PACKAGE = "lightning_gan.recipes"  # the top-level recipes/ folder, as installed

_NAME_RE = re.compile(r"^[a-z][a-z0-9_\-]*$")


class PluginError(Exception):
    """Base class of every registry error."""


class UnknownPluginError(PluginError, ImportError, LookupError):
    """No plugin of that name in the group. The message says what to install, or lists what is available."""

    def __init__(self, group: str, name: str, available: list[str]) -> None:
        close = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
        self.group, self.plugin_name, self.available, self.close_matches = group, name, available, close
        unknown = f"Unknown {_singular(group)} {name!r}"
        provider = first_party_distribution(name, group)
        misplaced = _declared_in_unknown_group(group, name)
        if provider is not None:
            super().__init__(f"{unknown}: it is provided by {distribution_problem(provider)}.")
        elif misplaced is not None:
            entry, good = misplaced
            super().__init__(f"{unknown}: {entry.provider} declares it in the entry-point group {entry.group!r}, "
                             f"which lightning-gan does not read; rename the group to {good!r} and reinstall it.")
        else:
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            listing = ", ".join(available) if available else ("(none installed)" if autoload_enabled() else "(none)")
            plural = "precision strategies" if group == "precision" else group
            off = (f" ({AUTOLOAD_ENV} is set: only lightning-gan's own plugins and register() calls count; "
                   f"unset it to use installed plugins.)" if not autoload_enabled() else "")
            super().__init__(f"{unknown}.{hint} Available {plural}: {listing}.{off}")


class BrokenPluginError(PluginError, ImportError):
    """A plugin's entry point failed to import or does not point at the right kind of object."""


class DuplicatePluginError(PluginError, LookupError):
    """Two distributions (or an entry point and an in-process registration) claim the same name."""


def first_party_distribution(name: str, group: str | None = None) -> str | None:
    """The first-party plugin distribution that provides ``name`` (in ``group``, or in any group), or None."""
    for distribution, groups in FIRST_PARTY_PLUGINS.items():
        for g, names in groups.items():
            if name in names and (group is None or g == group):
                return distribution
    return None


def _first_party_of_module(module: str) -> str | None:
    """``lightning_gan_stylegan2.networks`` -> ``lightning-gan-stylegan2`` (a first-party plugin's package)."""
    top = module.split(".")[0]
    return next((d for d in FIRST_PARTY_PLUGINS if d.replace("-", "_") == top), None)


def installed_version(distribution: str) -> str | None:
    """The installed version of a distribution, None when it is not installed (reads metadata only)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def distribution_problem(distribution: str) -> str:
    """Why a plugin distribution's names are not available, and what to do: the clause every message shares.

    E.g. ``lightning-gan-dcgan, which is not installed: pip install lightning-gan-dcgan``.
    """
    version = installed_version(distribution)
    if version is None:
        return f"{distribution}, which is not installed: pip install {distribution}"
    if not autoload_enabled():
        return (f"{distribution} {version}, whose entry points are ignored because {AUTOLOAD_ENV} is set: "
                f"unset it (or register the plugin in-process with lightning_gan.register)")
    return (f"{distribution} {version}, which is installed but does not declare it: "
            f"reinstall it (pip install --force-reinstall --no-deps {distribution})")


def _singular(group: str) -> str:
    return {"architectures": "architecture", "losses": "loss", "regularizers": "regularizer",
            "augmentations": "augmentation", "datasets": "dataset", "recipes": "recipe",
            "metrics": "metric"}.get(group, group)


@dataclass(frozen=True)
class PluginEntry:
    """One registered name: where it points and who provides it. Creating one imports nothing."""

    group: str
    name: str
    target: str  # "module:attr" for entry points and registered objects
    distribution: str | None  # None for in-process registrations
    version: str | None
    origin: str  # "entry-point" | "register" | "package-data" (a recipe file shipped by the core)
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
                if self.group == "recipes":  # the core's recipe files, no entry point needed
                    for entry in _core_recipe_entries():
                        found.setdefault(entry.name, []).append(entry)
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
            if entry.origin in ("register", "package-data"):
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


def _core_recipe_entries() -> list[PluginEntry]:
    """One entry per ``*.yaml`` file of the core's recipes package (found without importing it)."""
    try:
        spec = importlib.util.find_spec(CORE_RECIPES_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    folders = (spec.submodule_search_locations or []) if spec is not None else []
    version = installed_version(CORE_DISTRIBUTION)
    files = sorted({p.stem: p for folder in folders for p in Path(folder).glob("*.yaml")}.items())
    return [PluginEntry(group="recipes", name=name, target=CORE_RECIPES_PACKAGE, distribution=CORE_DISTRIBUTION,
                        version=version, origin="package-data", obj=path) for name, path in files]


def _closest_group(group: str) -> str:
    """The known entry-point group closest to ``group`` (``lightning_gan.architecture`` -> ``...architectures``)."""
    short = group[len(ENTRY_POINT_PREFIX):]
    close = difflib.get_close_matches(short, list(GROUPS), n=1, cutoff=0.0)
    return ENTRY_POINT_PREFIX + close[0]


def unknown_group_entries() -> list[tuple[PluginEntry, str]]:
    """Entry points in groups that start with ``lightning_gan.`` but that lightning-gan does not read.

    A typo such as ``lightning_gan.architecture`` would otherwise be ignored without a word. Each comes
    with a status naming the closest known group. Reads metadata only.
    """
    rows: list[tuple[PluginEntry, str]] = []
    seen: set[tuple[str, str, str | None]] = set()
    known = {ENTRY_POINT_PREFIX + g for g in GROUPS}
    for dist in metadata.distributions():
        for ep in dist.entry_points:
            if not ep.group.startswith(ENTRY_POINT_PREFIX) or ep.group in known:
                continue
            dist_name = dist.metadata["Name"]
            key = (ep.group, ep.name, _canonical(dist_name))
            if key in seen:
                continue
            seen.add(key)
            entry = PluginEntry(group=ep.group, name=ep.name, target=ep.value, distribution=dist_name,
                                version=dist.version, origin="entry-point", entry_point=ep)
            rows.append((entry, f"ignored: unknown group {ep.group!r}; did you mean {_closest_group(ep.group)!r}?"))
    return sorted(rows, key=lambda row: (row[0].group, row[0].name))


def _declared_in_unknown_group(group: str, name: str) -> tuple[PluginEntry, str] | None:
    """An entry point named ``name`` in a misspelled group whose closest known group is ``group``."""
    for entry, _ in unknown_group_entries():
        if entry.name == name and _closest_group(entry.group) == ENTRY_POINT_PREFIX + group:
            return entry, ENTRY_POINT_PREFIX + group
    return None


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


@dataclass(frozen=True)
class RecipeNeeds:
    """The plugin distributions a recipe needs, read from its class paths and registry names.

    ``plugins``: the distributions other than lightning-gan that provide what it names (sorted);
    ``missing``: one clause per distribution or module that is not available, saying what to install.
    """

    plugins: tuple[str, ...]
    missing: tuple[str, ...]

    def message(self, recipe: str) -> str:
        """One line: what the recipe needs and what to install (empty when nothing is missing)."""
        return f"Recipe {recipe!r} needs {'; '.join(self.missing)}." if self.missing else ""


# Keys whose plain string values are registry names (``loss: hinge``, ``regularizers: [r1]``, ``data: toy2d``).
_NAME_KEYS = frozenset({"architecture", "loss", "regularizers", "augment", "metrics", "plugins", "data"})


def _named_plugins(node: Any, key: str | None = None) -> Iterator[str]:
    """Every ``class_path`` value of a parsed YAML config, and plain names under the keys that take plugins."""
    if isinstance(node, Mapping):
        class_path = node.get("class_path")
        if isinstance(class_path, str):
            yield class_path
        for k, value in node.items():
            if k != "class_path":
                yield from _named_plugins(value, str(k))
    elif isinstance(node, list):
        for value in node:
            yield from _named_plugins(value, key)
    elif isinstance(node, str) and key in _NAME_KEYS:
        yield node


def _module_available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _provider_of(value: str) -> tuple[str | None, str | None]:
    """(plugin distribution that provides ``value`` or None, what is missing or None) for a name or class path."""
    if _is_import_path(value):
        module = value.partition(":")[0] if ":" in value else value.rpartition(".")[0]
        top = module.split(".")[0]
        distribution = _first_party_of_module(top)
        if _module_available(top):
            return distribution, None
        if distribution is not None:
            return distribution, distribution_problem(distribution)
        return None, f"the module {top!r} (for {value}), which is not installed"
    for group in GROUPS:
        if group == "recipes":
            continue
        candidates = get_registry(group)._candidates(value)
        if candidates:
            distribution = candidates[0].distribution
            return (None if _canonical(distribution) in (None, CORE_DISTRIBUTION) else distribution), None
    distribution = first_party_distribution(value)
    if distribution is not None:
        return distribution, distribution_problem(distribution)
    return None, None  # not a registry name: left to the config parser (a short class name, say)


def recipe_needs(path: str | os.PathLike[str]) -> RecipeNeeds:
    """What the recipe file at ``path`` needs beyond lightning-gan, and what of it is missing (reads metadata only).

    Raises ``BrokenPluginError`` when the file is not a YAML mapping.
    """
    import yaml  # a dependency of the core; imported here so that listing plugins does not need it

    try:
        config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise BrokenPluginError(f"Recipe file {str(path)!r} cannot be read as YAML: {exc}") from exc
    if not isinstance(config, Mapping):
        raise BrokenPluginError(f"Recipe file {str(path)!r} is not a YAML mapping of options")
    plugins: set[str] = set()
    missing: dict[str, None] = {}
    for value in _named_plugins(config):
        distribution, problem = _provider_of(value)
        if distribution is not None:
            plugins.add(distribution)
        if problem is not None:
            missing[problem] = None
    return RecipeNeeds(plugins=tuple(sorted(plugins)), missing=tuple(missing))


def recipe_description(path: Path) -> str:
    """First comment line of a recipe file (its one-line description)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""

