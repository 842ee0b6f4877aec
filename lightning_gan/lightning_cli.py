"""GANCLI: the LightningCLI behind ``lightning-gan fit/validate/test/predict``.

Kept apart from ``lightning_gan.cli`` (the entry point) so that ``lightning-gan plugins`` and
``lightning-gan recipes`` start without importing torch and Lightning; module-level classes so that
``ddp_spawn`` can pickle the trainer and its callbacks.

A class chosen on the command line (``--model.architecture=dcgan`` on a recipe whose architecture is ``mlp``)
starts from its own defaults plus the options given with it, in either order
(:func:`new_class_starts_from_its_defaults`, :func:`class_options_after_their_class`).
"""

from __future__ import annotations

import argparse
import contextlib
import pickle
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from jsonargparse import ActionConfigFile, Namespace
from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from rich.console import Console
from rich.table import Table

from lightning_gan import registry
from lightning_gan.cli_messages import DESCRIPTION, TOOL_COMMANDS, TRAINER_COMMANDS, fail, one_line, version_report
from lightning_gan.errors import ConfigError
from lightning_gan.module import GANModule

__all__ = ["GANArgumentParser", "GANCLI", "RecipeAction", "VersionAction", "class_options_after_their_class",
           "new_class_starts_from_its_defaults"]


class RecipeAction(argparse.Action):
    """``--recipe NAME``: load a registered recipe as if it were given with ``--config``."""

    def __call__(self, parser: Any, cfg: Any, values: Any, option_string: str | None = None) -> None:
        ActionConfigFile.apply_config(parser, cfg, "config", str(registry.recipe_path(values)))


class VersionAction(argparse.Action):
    """``--version``: print lightning-gan's version and its installed plugins', then exit."""

    def __init__(self, option_strings: list[str], dest: str = "version", **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: Any, cfg: Any, values: Any, option_string: str | None = None) -> None:
        print(version_report())
        raise SystemExit(0)


class GANArgumentParser(LightningArgumentParser):
    """LightningArgumentParser whose errors are one line on stderr (exit status 2)."""

    def error(self, message: str, ex: Exception | None = None) -> Any:
        if not self.exit_on_error:
            return super().error(message, ex)
        sys.stderr.write(f"lightning-gan: error: {one_line(message, ex)}\n")
        sys.stderr.write("(run with --help for the accepted options)\n")
        raise SystemExit(2)


class GANCLI(LightningCLI):
    """LightningCLI for GANModule with ``--recipe``, registry names and one-line errors."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("parser_kwargs", {})
        kwargs["parser_kwargs"].setdefault("prog", "lightning-gan")
        kwargs["parser_kwargs"].setdefault("description", DESCRIPTION)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        super().__init__(
            GANModule, LightningDataModule, subclass_mode_data=True, parser_class=GANArgumentParser,
            auto_configure_optimizers=False, **kwargs,
        )

    def init_parser(self, **kwargs: Any) -> Any:
        parser = super().init_parser(**kwargs)
        parser.add_argument(
            "--recipe", action=RecipeAction, metavar="NAME",
            help="A registered recipe (see `lightning-gan recipes`), applied like --config.",
        )
        parser.add_argument("--version", action=VersionAction, help="Print the versions of lightning-gan and its "
                                                                      "installed plugins, then exit.")
        return parser

    def _add_subcommands(self, parser: Any, **kwargs: Any) -> None:
        """LightningCLI's fit/validate/test/predict, listed in ``--help`` together with the commands
        ``lightning_gan.cli`` runs itself (evaluate, generate, export, diagnose, plugins, recipes)."""
        super()._add_subcommands(parser, **kwargs)
        action = parser._subcommands_action
        names = [*action.choices, *TOOL_COMMANDS]
        action.metavar = "{" + ",".join(names) + "}"
        for listed in action._choices_actions:
            listed.help = TRAINER_COMMANDS.get(listed.dest, listed.help)
        for name, summary in TOOL_COMMANDS.items():  # listed only: cli.main runs them before this parser
            action._choices_actions.append(argparse._SubParsersAction._ChoicesPseudoAction(name, (), summary))

    def parse_arguments(self, parser: Any, args: Any) -> None:
        """LightningCLI's parsing, where a class chosen on the command line starts from its own defaults."""
        with new_class_starts_from_its_defaults():
            if args is None:  # what LightningCLI does, with the class options moved after their class
                self.config = parser.parse_args(class_options_after_their_class(sys.argv[1:]))
            else:
                super().parse_arguments(parser, class_options_after_their_class(args) if isinstance(args, list) else args)
        # With --ckpt_path, LightningCLI then replaces the model's options by the checkpoint's
        # hyperparameters; remember what the command line set so that it wins (e.g. a longer
        # --model.total_kimg to continue a finished run).
        self._parsed = self.config.clone()
        argv = sys.argv[1:] if args is None else (args if isinstance(args, list) else [])
        self._explicit_model_keys = sorted({
            a[len("--model."):].split("=")[0].split(".")[0].rstrip("+")
            for a in argv if isinstance(a, str) and a.startswith("--model.")
        })

    def _parse_ckpt_path(self) -> None:
        ckpt_path = self.config[self.config.subcommand].get("ckpt_path") if self.config.get("subcommand") else None
        if ckpt_path and Path(ckpt_path).is_file():  # a plugin class the checkpoint needs but is not installed: one line
            from lightning_gan.checkpoint import MissingPluginError, require_run_plugins

            try:
                ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
            except Exception:  # noqa: BLE001 - unreadable or unsafe: Lightning's parse below, then the clear error
                ckpt = None
            try:
                if isinstance(ckpt, dict):
                    require_run_plugins(ckpt, ckpt_path)
            except MissingPluginError as exc:
                fail(str(exc))
        try:
            super()._parse_ckpt_path()
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
            from lightning_gan.checkpoint import load_checkpoint

            ckpt = self.config[self.config.subcommand].get("ckpt_path")
            try:
                load_checkpoint(ckpt)  # raises the clear error (unsafe / unreadable file)
            except ConfigError as clear:
                fail(str(clear))
            raise exc

    def before_instantiate_classes(self) -> None:
        if self.subcommand and self.config.get(f"{self.subcommand}.weights_only", True) is None:
            self.config[f"{self.subcommand}.weights_only"] = True  # checkpoints are plain data: never unpickle code
        ckpt = self.config.get(f"{self.subcommand}.ckpt_path") if self.subcommand else None
        if ckpt and ckpt not in ("last", "best", "hpc", "registry") and "://" not in str(ckpt) \
                and not Path(ckpt).is_file():
            fail(f"--ckpt_path: no checkpoint file at {ckpt}")
        prefix = f"{self.subcommand}.model" if self.subcommand else "model"
        for key in self._explicit_model_keys:
            self.config[f"{prefix}.{key}"] = self._parsed[f"{prefix}.{key}"]

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except (registry.PluginError, ConfigError, MisconfigurationException) as exc:
            fail(str(exc))  # a configuration that parses but cannot be built: one line
        except (TypeError, ValueError) as exc:  # jsonargparse wraps what a class's __init__ raised (e.g. a callback's)
            cause = _config_error_in_chain(exc)
            if cause is None:
                raise
            fail(str(cause))

    def after_fit(self) -> None:
        _print_run_summary(self.trainer, self.model)

    def predict(self, **kwargs: Any) -> None:
        """Samples for the datamodule's seeds, saved as one tensor [N, ...] in the run folder."""
        batches = self.trainer.predict(**kwargs)
        if not self.trainer.is_global_zero or not batches:
            return
        out = Path(self.trainer.default_root_dir if self.trainer.logger is None else self.trainer.logger.log_dir)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(torch.cat([b.cpu() for b in batches]), out / "predictions.pt")
        print(f"{'samples:':<12}{out / 'predictions.pt'}  (seed i -> row i; torch.load(..., weights_only=True))")


@contextlib.contextmanager
def new_class_starts_from_its_defaults() -> Iterator[None]:
    """Within it, an option switched to another class (``--model.architecture=dcgan`` on a recipe whose architecture
    is ``mlp``, ``--data=shapes``, ``--model.loss=hinge``, a second ``--config``) drops the previous class's
    ``init_args``: the new class gets its own defaults plus what is set after the switch.

    jsonargparse carries over every previous argument the new class also accepts, so that, e.g., the quickstart
    recipe's ``z_dim: 2`` silently replaced DCGAN's default ``z_dim``. Giving the same class again keeps them.
    """
    import jsonargparse._typehints as typehints

    original = typehints.adapt_class_type

    def adapt_class_type(value: Any, *args: Any, prev_val: Any = None, **kwargs: Any) -> Any:
        switched = bool(_class_path(prev_val) and _class_path(value) and _class_path(prev_val) != _class_path(value))
        if switched and isinstance(prev_val, Namespace) and "init_args" in prev_val:
            del prev_val["init_args"]  # prev_val is the parsed config's own entry: drop them there too
        return original(value, *args, prev_val=None if switched else prev_val, **kwargs)

    typehints.adapt_class_type = adapt_class_type
    try:
        yield
    finally:
        typehints.adapt_class_type = original


def _config_error_in_chain(exc: BaseException) -> BaseException | None:
    """The first ``ConfigError`` / ``PluginError`` among ``exc``'s causes and contexts, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, (ConfigError, registry.PluginError)):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _class_path(spec: Any) -> str | None:
    if isinstance(spec, str):
        return spec
    try:
        return spec.get("class_path") if spec is not None else None
    except AttributeError:
        return None


_CONFIG_OPTIONS = {"config", "c", "recipe"}


def class_options_after_their_class(argv: list[str]) -> list[str]:
    """``argv`` with each option of a class given before that class is chosen moved right after the choice.

    ``--model.architecture.z_dim=4 --model.architecture=dcgan`` becomes ``--model.architecture=dcgan
    --model.architecture.z_dim=4``, so that both orders mean the same (a new class starts from its defaults;
    see :func:`new_class_starts_from_its_defaults`). Nothing moves across ``--config``, ``--recipe`` or a
    subcommand, and ``--key+=...`` (append to a list) is not a choice of class.
    """
    items: list[tuple[str | None, list[str]]] = []  # (option key or None, its tokens)
    i = 0
    while i < len(argv):
        token = str(argv[i])
        if not token.startswith("-") or re.fullmatch(r"-[\d.].*", token):
            items.append((None, [token]))
            i += 1
            continue
        key, eq, _ = token.lstrip("-").partition("=")
        takes_next = not eq and i + 1 < len(argv) and (
            not str(argv[i + 1]).startswith("-") or re.fullmatch(r"-[\d.].*", str(argv[i + 1])) is not None)
        if key in ("h", "help", "print_config") or key.startswith("print_config"):
            takes_next = False  # flags (--print_config takes its flags only as --print_config=...)
        items.append((key, argv[i:i + 2] if takes_next else [argv[i]]))
        i += 2 if takes_next else 1
    out: list[tuple[str | None, list[str]]] = []
    for key, tokens in items:
        if key and key not in _CONFIG_OPTIONS and not key.endswith("+"):
            start = len(out)
            while start > 0 and out[start - 1][0] is not None and out[start - 1][0] not in _CONFIG_OPTIONS:
                start -= 1
            earlier = [item for item in out[start:] if item[0] and item[0].startswith(key + ".")]
            if earlier:
                out[start:] = [item for item in out[start:] if not (item[0] and item[0].startswith(key + "."))]
                out.append((key, tokens))
                out.extend(earlier)
                continue
        out.append((key, tokens))
    return [t for _, tokens in out for t in tokens]


def _print_run_summary(trainer: Any, model: Any) -> None:
    """A table of the run's numbers, then one plain line per file (easy to copy, never truncated)."""
    if not trainer.is_global_zero:
        return
    table = Table(title="lightning-gan run", show_header=False)
    table.add_row("iterations", str(getattr(model, "iteration", "?")))
    table.add_row("kimg", f"{getattr(model, 'kimg', 0.0):.1f}")
    for name, value in sorted(getattr(model, "final_metrics", {}).items()):
        table.add_row(name, str(int(value)) if float(value).is_integer() else f"{value:.4g}")  # ids and counts exact
    for name, text in sorted(getattr(model, "metric_notes", {}).items()):
        table.add_row(name, text)
    summary = model.training_summary() if callable(getattr(model, "training_summary", None)) else {}
    for name, value in summary.items():  # e.g. ADA's final augmentation probability
        table.add_row(name, f"{value:.4g}")
    Console().print(table)
    files = [("metrics", getattr(model, "metrics_path", None))]
    for cb in trainer.callbacks:
        files.append(("samples", getattr(cb, "last_path", None)))
        files.append(("checkpoint", getattr(cb, "last_model_path", None) or getattr(cb, "best_model_path", None)))
    for label, path in files:
        if path:
            print(f"{label + ':':<12}{path}")
