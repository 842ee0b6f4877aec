"""The ``lightning-gan`` command: LightningCLI for GANModule plus ``plugins`` and ``recipes``.

* ``lightning-gan fit --recipe quickstart`` (or ``--config my.yaml``); every option overridable,
  ``--print_config`` works. ``validate``, ``test`` and ``predict`` the same way.
* Registry names work wherever a plugin type is expected: ``--model.loss=hinge``,
  ``--model.architecture=dcgan --model.architecture.resolution=64``, ``--data=shapes``,
  ``class_path: r1`` in a YAML file.
* ``lightning-gan plugins`` prints the installed plugins, ``lightning-gan recipes`` the recipes.

Bad options end in one line on stderr (exit status 2), not a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import inspect
import re
import sys
from collections.abc import Iterator
from typing import Any

from lightning_gan import registry
from lightning_gan.errors import ConfigError

__all__ = ["main", "registry_names_in_jsonargparse"]

COMMANDS_HELP = """\
other commands:
  evaluate              score a trained generator: --ckpt RUN.ckpt --metrics fid,kid,pr,coverage
  generate              sample grids, truncation sweep, interpolation GIF, class rows: --ckpt RUN.ckpt
  export                EMA generator to safetensors + JSON config: --ckpt RUN.ckpt --out G.safetensors
  diagnose              singular values, stability factor, spectra, AR(1), gradient flow + plots: --ckpt RUN.ckpt
  plugins               list installed plugins (group, name, target, distribution, status)
  recipes               list the training recipes usable with --recipe
"""


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


def one_line(message: str, ex: BaseException | None) -> str:
    """The most useful single line of a (possibly nested, multi-line) parser error."""
    seen = set()
    while ex is not None and id(ex) not in seen:
        seen.add(id(ex))
        if isinstance(ex, registry.PluginError):
            return str(ex)
        ex = ex.__cause__ or ex.__context__
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    for ln in lines:  # a registry error nested in jsonargparse's union report
        if ln.startswith(("Unknown ", "Plugin ")) or "is provided more than once" in ln:
            return ln.rstrip(".") + "."
    if not lines:
        return message
    key = re.match(r'Parser key "([^"]+)":\s*(.*)', lines[0])
    where = f"--{key.group(1)}" if key else lines[0].rstrip(":")
    if key and key.group(2):  # the whole error on one line
        return f"{where}: {key.group(2)}"
    # A nested option that the chosen class does not accept: name the class and the close matches.
    for i, ln in enumerate(lines):
        cls = re.match(r"- Problem with given class_path '([^']+)'", ln)
        if cls and i + 1 < len(lines):
            detail = lines[i + 1]
            bad = re.match(r"Option '([^']+)' is not accepted", detail)
            if bad:
                detail += f" by {cls.group(1)}" + _close_parameters(cls.group(1), bad.group(1))
            return f"{where}: {detail}"
    given = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Given value:")), None)
    if any(ln.startswith("- Expected a dot import path string") for ln in lines):
        return (f"{where}: {given!r} is neither a registered name nor an imported class; "
                f"give its full class path (package.module.Class)")
    expected = [m.group(1) for ln in lines for m in [re.match(r"- Expected a <class '([^']+)'>", ln)] if m]
    if expected:
        names = " or ".join("None" if e == "NoneType" else e for e in expected)
        return f"{where}: expected {names}" + (f", got {given!r}" if given is not None else "")
    detail = next((ln.lstrip("- ") for ln in lines[1:] if not ln.endswith(":")), "")
    return f"{where}: {detail}" if detail else where


def _close_parameters(class_path: str, name: str) -> str:
    try:
        params = list(inspect.signature(registry.import_target(class_path)).parameters)
    except (ImportError, AttributeError, TypeError, ValueError):
        return ""
    close = difflib.get_close_matches(name, params, n=3, cutoff=0.5)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else f"; it accepts {', '.join(params)}"


def fail(message: str) -> None:
    sys.stderr.write(f"lightning-gan: error: {message}\n")
    raise SystemExit(2)


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
    table = Table(title="lightning-gan plugins")
    for column in ("group", "name", "target", "distribution", "status"):
        table.add_column(column, overflow="fold")
    for entry, status in rows:
        style = "red" if status.startswith(("broken", "conflict")) else ("green" if status == "loaded" else "")
        table.add_row(entry.group, entry.name, entry.target, entry.provider, f"[{style}]{status}[/]" if style else status)
    console = Console(width=max(Console().width, 140))
    console.print(table)
    if registry.AUTOLOAD_ENV and not registry.autoload_enabled():
        console.print(f"{registry.AUTOLOAD_ENV} is set: only lightning-gan's own entry points are listed.")
    return 1 if any(s.startswith(("broken", "conflict")) for _, s in rows) else 0


def recipes_command(argv: list[str]) -> int:
    """``lightning-gan recipes``: the recipes ``--recipe`` accepts, with their descriptions."""
    argparse.ArgumentParser(prog="lightning-gan recipes", description=recipes_command.__doc__).parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    reg = registry.get_registry("recipes")
    table = Table(title="lightning-gan recipes")
    for column in ("recipe", "description", "file", "distribution"):
        table.add_column(column, overflow="fold")
    status = 0
    for entry in reg.entries():
        try:
            path = reg.load(entry.name)
            table.add_row(entry.name, registry.recipe_description(path), str(path), entry.provider)
        except registry.PluginError as exc:
            table.add_row(entry.name, f"[red]broken: {exc}[/]", entry.target, entry.provider)
            status = 1
    Console(width=max(Console().width, 140)).print(table)
    return status


def _tool(name: str) -> Any:
    def run(argv: list[str]) -> int:
        from lightning_gan import commands  # imports torch: only when the command runs

        return getattr(commands, name)(argv)
    return run


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lightning-gan`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    commands = {"plugins": plugins_command, "recipes": recipes_command,
                "evaluate": _tool("evaluate_command"), "generate": _tool("generate_command"),
                "export": _tool("export_command"), "diagnose": _tool("diagnose_command")}
    if args and args[0] in commands:
        return commands[args[0]](args[1:])
    from lightning_gan.lightning_cli import GANCLI  # imports torch and lightning: only for Trainer commands

    try:
        with registry_names_in_jsonargparse():
            GANCLI(args=argv)  # None: LightningCLI reads sys.argv itself
    except (registry.PluginError, ConfigError) as exc:
        fail(str(exc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
