"""The ``lightning-gan`` command: LightningCLI for GANModule plus ``plugins`` and ``recipes``.

* ``lightning-gan fit --recipe quickstart`` (or ``--config my.yaml``); every option overridable,
  ``--print_config`` works. ``validate``, ``test`` and ``predict`` the same way.
* Registry names work wherever a plugin type is expected: ``--model.loss=hinge``,
  ``--model.architecture=dcgan --model.architecture.resolution=64``, ``--data=shapes``,
  ``class_path: r1`` in a YAML file.
* ``lightning-gan plugins`` prints the installed plugins, ``lightning-gan recipes`` the recipes;
  ``evaluate``, ``generate``, ``export`` and ``diagnose`` work on a checkpoint (``lightning_gan.commands``).
* ``lightning-gan --help`` lists every command; ``lightning-gan --version`` prints the versions of the core and
  of each installed plugin distribution.

Bad options end in one line on stderr (exit status 2), not a traceback. A run stopped by a signal exits with
128 + the signal number, as a shell reports it: 143 for SIGTERM, 130 for Ctrl-C (SIGINT), after saving
``interrupted.ckpt`` (``lightning_gan.callbacks.InterruptCheckpoint``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from lightning_gan import registry
from lightning_gan.cli_messages import fail, version_report
from lightning_gan.errors import ConfigError
from lightning_gan.quiet import silence_dependency_noise

__all__ = ["COMMANDS", "main", "registry_names_in_jsonargparse"]


def _groups_for(typehint: Any) -> list[str]:
    """Registry groups whose base type a jsonargparse type hint accepts."""
    hints = typehint if isinstance(typehint, tuple) else (typehint,)
    groups = []
    for group, (base_path, _) in registry.GROUPS.items():
        if base_path is None:  # recipes are files, not classes
            continue
        try:
            base = registry.import_target(base_path)
        except ImportError:
            continue
        if any(isinstance(h, type) and issubclass(base, h) for h in hints):
            groups.append(group)
    return groups


@contextlib.contextmanager
def registry_names_in_jsonargparse() -> Iterator[None]:
    """Let jsonargparse accept registry names (``hinge``, ``mlp``) where it expects a class path.

    jsonargparse resolves a short class name only among subclasses that are already imported; plugins
    are imported lazily, so a registered name is translated to its import path (loading that one plugin).
    An unknown name that matches no imported class either raises the registry's error, which lists
    the available names and the closest matches.
    """
    import jsonargparse._typehints as typehints

    original = typehints.resolve_class_path_by_name

    def resolve(cls: Any, name: str) -> str:
        if isinstance(name, str) and "." not in name:
            groups = _groups_for(cls)
            for group in groups:
                reg = registry.get_registry(group)
                if name in reg:
                    return reg.import_path(name)
            resolved = original(cls, name)
            if "." not in resolved and groups:
                reg = registry.get_registry(groups[0])
                raise registry.UnknownPluginError(groups[0], name, reg.names())
            return resolved
        return original(cls, name)

    patched = [m for name, m in list(sys.modules.items())
               if name.startswith("jsonargparse._")  # the implementation modules, not deprecated aliases
               and getattr(m, "resolve_class_path_by_name", None) is original]
    for module in patched:
        module.resolve_class_path_by_name = resolve
    try:
        yield
    finally:
        for module in patched:
            module.resolve_class_path_by_name = original


def plugins_command(argv: list[str]) -> int:
    """``lightning-gan plugins [--group G] [--no-load]``: a rich table of every plugin."""
    parser = argparse.ArgumentParser(prog="lightning-gan plugins", description=plugins_command.__doc__)
    parser.add_argument("--group", choices=list(registry.GROUPS), action="append",
                        help="only these groups (repeatable)")
    parser.add_argument("--no-load", action="store_true",
                        help="read metadata only; do not import plugins to check them")
    args = parser.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    rows = registry.list_plugins(args.group, load=not args.no_load)
    if not args.group:  # entry points in misspelled groups (lightning_gan.architecture), which nothing reads
        rows += registry.unknown_group_entries()
    table = Table(title="lightning-gan plugins")
    for column in ("group", "name", "target", "distribution", "status"):
        table.add_column(column, overflow="fold")
    for entry, status in rows:
        style = "red" if status.startswith(("broken", "conflict", "ignored")) else ("green" if status == "loaded" else "")
        table.add_row(entry.group, entry.name, entry.target, entry.provider, f"[{style}]{status}[/]" if style else status)
    console = Console(width=max(Console().width, 140))
    console.print(table)
    for entry, status in rows:  # one unwrapped line each for what nothing reads
        if status.startswith("ignored: "):
            console.print(f"{entry.provider} declares {entry.name!r} in an {status.removeprefix('ignored: ')}",
                          soft_wrap=True, markup=False, highlight=False)
    if registry.AUTOLOAD_ENV and not registry.autoload_enabled():
        console.print(f"{registry.AUTOLOAD_ENV} is set: only lightning-gan's own entry points are listed.")
    return 1 if any(s.startswith(("broken", "conflict", "ignored")) for _, s in rows) else 0


def recipes_command(argv: list[str]) -> int:
    """``lightning-gan recipes``: the recipes ``--recipe`` accepts, with their descriptions and the plugins they need."""
    argparse.ArgumentParser(prog="lightning-gan recipes", description=recipes_command.__doc__).parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    reg = registry.get_registry("recipes")
    table = Table(title="lightning-gan recipes")
    for column in ("recipe", "description", "needs", "file", "shipped by"):
        table.add_column(column, overflow="fold")
    status, missing = 0, []
    for entry in reg.entries():
        try:
            path = reg.load(entry.name)
            needs = registry.recipe_needs(path)
        except registry.PluginError as exc:
            table.add_row(entry.name, f"[red]broken: {exc}[/]", "", entry.target, entry.provider)
            status = 1
            continue
        plugins = ", ".join(needs.plugins) or "-"
        if needs.missing:
            plugins = f"[yellow]{plugins} (missing)[/]"
            missing.append(needs.message(entry.name))
        table.add_row(entry.name, registry.recipe_description(path), plugins, str(path), entry.provider)
    console = Console(width=max(Console().width, 140))
    console.print(table)
    for line in missing:  # one unwrapped line each: what to install
        console.print(line, soft_wrap=True, markup=False, highlight=False)
    return status


def _tool(name: str) -> Callable[[list[str]], int]:
    """A command of ``lightning_gan.commands``, imported (with torch) only when it runs."""

    def run(argv: list[str]) -> int:
        from lightning_gan import commands  # imports torch: only when the command runs

        return getattr(commands, name)(argv)
    return run


def _prepare(argv: list[str]) -> int:
    from lightning_gan.prepare import prepare_command  # imports torch: only when the command runs

    return prepare_command(argv)


# The commands run here, before (and without) LightningCLI; ``lightning-gan --help`` lists them (TOOL_COMMANDS).
COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "plugins": plugins_command, "recipes": recipes_command,
    "evaluate": _tool("evaluate_command"), "generate": _tool("generate_command"),
    "export": _tool("export_command"), "diagnose": _tool("diagnose_command"), "project": _tool("project_command"),
    "prepare": _prepare,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lightning-gan`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    silence_dependency_noise()  # Lightning's advertisements and its own deprecation warnings
    if args and args[0] in COMMANDS:
        return COMMANDS[args[0]](args[1:])
    if args == ["--version"]:  # answered without importing torch; the parser's --version prints the same
        print(version_report())
        return 0
    from lightning_gan.lightning_cli import GANCLI  # imports torch and lightning: only for Trainer commands

    try:
        with registry_names_in_jsonargparse():
            GANCLI(args=argv)  # None: LightningCLI reads sys.argv itself
    except (registry.PluginError, ConfigError) as exc:
        fail(str(exc))
    except (SystemExit, KeyboardInterrupt) as exc:  # a signal's stop: 128 + its number (SIGTERM 143, Ctrl-C 130)
        from lightning_gan.callbacks.interrupt import exit_status

        status = exit_status(exc)
        if status is None:
            raise
        return status
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
