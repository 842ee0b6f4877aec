"""GANCLI: the LightningCLI behind ``lightning-gan fit/validate/test/predict``.

Kept apart from ``lightning_gan.cli`` (the entry point) so that ``lightning-gan plugins`` and
``lightning-gan recipes`` start without importing torch and Lightning; module-level classes so that
``ddp_spawn`` can pickle the trainer and its callbacks.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path
from typing import Any

import torch
from jsonargparse import ActionConfigFile
from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from rich.console import Console
from rich.table import Table

from lightning_gan import registry
from lightning_gan.cli import COMMANDS_HELP, fail, one_line
from lightning_gan.errors import ConfigError
from lightning_gan.module import GANModule

__all__ = ["GANArgumentParser", "GANCLI", "RecipeAction"]


class RecipeAction(argparse.Action):
    """``--recipe NAME``: load a registered recipe as if it were given with ``--config``."""

    def __call__(self, parser: Any, cfg: Any, values: Any, option_string: str | None = None) -> None:
        ActionConfigFile.apply_config(parser, cfg, "config", str(registry.recipe_path(values)))


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
        kwargs["parser_kwargs"].setdefault("epilog", COMMANDS_HELP)
        kwargs["parser_kwargs"].setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
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

    def _parse_ckpt_path(self) -> None:
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


def _print_run_summary(trainer: Any, model: Any) -> None:
    """A table of the run's numbers, then one plain line per file (easy to copy, never truncated)."""
    if not trainer.is_global_zero:
        return
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
