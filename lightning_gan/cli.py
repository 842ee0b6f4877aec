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
from pathlib import Path
from typing import Any

from lightning_gan import registry
from lightning_gan.errors import ConfigError

__all__ = ["GANCLI", "main", "registry_names_in_jsonargparse"]

_COMMANDS_HELP = """\
other commands:
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


def _one_line(message: str, ex: BaseException | None) -> str:
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


def _make_parser_class() -> type:
    from jsonargparse import ActionConfigFile
    from lightning.pytorch.cli import LightningArgumentParser

    class RecipeAction(argparse.Action):
        """``--recipe NAME``: load a registered recipe as if it were given with ``--config``."""

        def __call__(self, parser: Any, cfg: Any, values: Any, option_string: str | None = None) -> None:
            ActionConfigFile.apply_config(parser, cfg, "config", str(registry.recipe_path(values)))

    class GANArgumentParser(LightningArgumentParser):
        def error(self, message: str, ex: Exception | None = None) -> Any:
            if not self.exit_on_error:
                return super().error(message, ex)
            sys.stderr.write(f"lightning-gan: error: {_one_line(message, ex)}\n")
            sys.stderr.write("(run with --help for the accepted options)\n")
            raise SystemExit(2)

    GANArgumentParser.RecipeAction = RecipeAction
    return GANArgumentParser


def _cli_class() -> type:
    from lightning.pytorch import LightningDataModule
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.utilities.exceptions import MisconfigurationException

    from lightning_gan.module import GANModule

    parser_class = _make_parser_class()

    class GANCLI(LightningCLI):
        """LightningCLI for GANModule with ``--recipe``, registry names and one-line errors."""

        def __init__(self, **kwargs: Any) -> None:
            kwargs.setdefault("parser_kwargs", {})
            kwargs["parser_kwargs"].setdefault("prog", "lightning-gan")
            kwargs["parser_kwargs"].setdefault("epilog", _COMMANDS_HELP)
            kwargs["parser_kwargs"].setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
            kwargs.setdefault("save_config_kwargs", {"overwrite": True})
            super().__init__(
                GANModule, LightningDataModule, subclass_mode_data=True, parser_class=parser_class,
                auto_configure_optimizers=False, **kwargs,
            )

        def init_parser(self, **kwargs: Any) -> Any:
            parser = super().init_parser(**kwargs)
            parser.add_argument(
                "--recipe", action=parser_class.RecipeAction, metavar="NAME",
                help="A registered recipe (see `lightning-gan recipes`), applied like --config.",
            )
            return parser

        def parse_arguments(self, parser: Any, args: Any) -> None:
            super().parse_arguments(parser, args)
            # With --ckpt_path, LightningCLI then replaces the model's options by the checkpoint's
            # hyperparameters; remember what the command line set so that it wins (e.g. a longer
            # --model.total_kimg to continue a finished run).
            self._parsed = self.config.clone()
            argv = sys.argv[1:] if args is None else (args if isinstance(args, list) else [])
            self._explicit_model_keys = sorted({
                a[len("--model."):].split("=")[0].split(".")[0].rstrip("+")
                for a in argv if isinstance(a, str) and a.startswith("--model.")
            })

        def before_instantiate_classes(self) -> None:
            ckpt = self.config.get(f"{self.subcommand}.ckpt_path") if self.subcommand else None
            if ckpt and ckpt not in ("last", "best", "hpc", "registry") and "://" not in str(ckpt) \
                    and not Path(ckpt).is_file():
                _fail(f"--ckpt_path: no checkpoint file at {ckpt}")
            prefix = f"{self.subcommand}.model" if self.subcommand else "model"
            for key in self._explicit_model_keys:
                self.config[f"{prefix}.{key}"] = self._parsed[f"{prefix}.{key}"]

        def instantiate_classes(self) -> None:
            try:
                super().instantiate_classes()
            except (registry.PluginError, ConfigError, MisconfigurationException) as exc:
                _fail(str(exc))  # a configuration that parses but cannot be built: one line

        def after_fit(self) -> None:
            _print_run_summary(self.trainer, self.model)

        def predict(self, **kwargs: Any) -> None:
            """Samples for the datamodule's seeds, saved as one tensor [N, ...] in the run folder."""
            import torch

            batches = self.trainer.predict(**kwargs)
            if not self.trainer.is_global_zero or not batches:
                return
            out = Path(self.trainer.default_root_dir if self.trainer.logger is None else self.trainer.logger.log_dir)
            out.mkdir(parents=True, exist_ok=True)
            torch.save(torch.cat([b.cpu() for b in batches]), out / "predictions.pt")
            print(f"{'samples:':<12}{out / 'predictions.pt'}  (seed i -> row i; torch.load(..., weights_only=True))")

    return GANCLI


def _fail(message: str) -> None:
    sys.stderr.write(f"lightning-gan: error: {message}\n")
    raise SystemExit(2)


def _print_run_summary(trainer: Any, model: Any) -> None:
    """A table of the run's numbers, then one plain line per file (easy to copy, never truncated)."""
    if not trainer.is_global_zero:
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="lightning-gan run", show_header=False)
    table.add_row("iterations", str(getattr(model, "iteration", "?")))
    table.add_row("kimg", f"{getattr(model, 'kimg', 0.0):.1f}")
    for name, value in sorted(getattr(model, "final_metrics", {}).items()):
        table.add_row(name, f"{value:.4g}")
    Console().print(table)
    files = [("metrics", getattr(model, "metrics_path", None))]
    for cb in trainer.callbacks:
        files.append(("samples", getattr(cb, "last_path", None)))
        files.append(("checkpoint", getattr(cb, "last_model_path", None) or getattr(cb, "best_model_path", None)))
    for label, path in files:
        if path:
            print(f"{label + ':':<12}{path}")


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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lightning-gan`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    commands = {"plugins": plugins_command, "recipes": recipes_command}
    if args and args[0] in commands:
        return commands[args[0]](args[1:])
    cli_class = _cli_class()
    try:
        with registry_names_in_jsonargparse():
            cli_class(args=argv)  # None: LightningCLI reads sys.argv itself
    except (registry.PluginError, ConfigError) as exc:
        _fail(str(exc))
    return 0


def __getattr__(name: str) -> Any:
    if name == "GANCLI":
        return _cli_class()
    raise AttributeError(name)


if __name__ == "__main__":
    raise SystemExit(main())
