"""What the ``lightning-gan`` commands print to the user: one-line errors and the list of commands.

Shared by the entry point (``lightning_gan.cli``), the Trainer commands (``lightning_gan.lightning_cli``)
and the checkpoint tools (``lightning_gan.commands``), which all import it; it imports none of them, so
the command modules depend downwards only. It imports neither torch nor Lightning.
"""

from __future__ import annotations

import difflib
import inspect
import re
import sys

from lightning_gan import registry

__all__ = ["DESCRIPTION", "TOOL_COMMANDS", "TRAINER_COMMANDS", "fail", "one_line", "plugin_distributions",
           "version_report"]

# LightningCLI's Trainer commands, with the line ``lightning-gan --help`` shows for each (Lightning's own
# docstrings speak of "your data" and get cut off mid-sentence).
TRAINER_COMMANDS: dict[str, str] = {
    "fit": "Train a GAN: --recipe NAME or --config FILE, then any option, e.g. --model.loss=hinge.",
    "validate": "Compute the model's metrics once: --recipe NAME --ckpt_path RUN.ckpt.",
    "test": "Compute the model's metrics once, logged as test/*: --recipe NAME --ckpt_path RUN.ckpt.",
    "predict": "Samples for the datamodule's seeds, saved as predictions.pt: --recipe NAME --ckpt_path RUN.ckpt.",
}

# The commands that ``lightning_gan.cli`` runs itself, beside LightningCLI's fit/validate/test/predict, with the
# line ``lightning-gan --help`` shows for each.
TOOL_COMMANDS: dict[str, str] = {
    "evaluate": "Score a trained generator: --ckpt RUN.ckpt --metrics fid,kid,pr,coverage.",
    "generate": "Sample grids, truncation sweep, interpolation GIF, class rows: --ckpt RUN.ckpt.",
    "export": "EMA generator to safetensors + JSON config: --ckpt RUN.ckpt --out G.safetensors.",
    "diagnose": "Singular values, stability factor, spectra, AR(1), gradient flow + plots: --ckpt RUN.ckpt.",
    "project": "Find the latent of an image (GAN inversion): --ckpt RUN.ckpt --image a.png.",
    "plugins": "List installed plugins (group, name, target, distribution, status).",
    "recipes": "List the training recipes usable with --recipe.",
    "prepare": "Image folder or zip to LitData's format for --data=image_stream: --input DIR --output OUT --resolution R.",
}

DESCRIPTION = ("Train, evaluate and inspect GANs built from plugins. Start with `lightning-gan fit --recipe "
               "quickstart`; `lightning-gan COMMAND --help` shows the options of a command.")


def one_line(message: str, ex: BaseException | None) -> str:
    """The most useful single line of a (possibly nested, multi-line) parser error.

    jsonargparse reports a bad value of a class's option as a tree (``Parser key "model.architecture":``
    ... ``- Problem with given class_path 'X':`` ... ``Parser key "g_hidden":`` ... the reason); the line
    keeps the full option name and the reason at the bottom of that tree, e.g.
    ``--model.architecture.g_hidden: expected int, got 'abc'``.
    """
    seen = set()
    while ex is not None and id(ex) not in seen:
        seen.add(id(ex))
        if isinstance(ex, registry.PluginError):
            return str(ex)
        ex = ex.__cause__ or ex.__context__
    raw = [ln.rstrip() for ln in message.splitlines() if ln.strip()]
    for ln in raw:  # a registry error nested in jsonargparse's union report
        ln = ln.strip()
        if ln.startswith(("Unknown ", "Plugin ")) or "is provided more than once" in ln:
            return ln.rstrip(".") + "."
    if not raw:
        return message
    commands = [*TRAINER_COMMANDS, *TOOL_COMMANDS]
    if re.match(r'expected "subcommand" to be one of', raw[0].strip()):
        return f"give a command: {', '.join(commands)} (`lightning-gan --help` says what each does)"
    bad = re.search(r"argument \{fit,[^}]*\}: invalid choice: '([^']*)'", raw[0])
    if bad:
        close = difflib.get_close_matches(bad.group(1), commands, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown command {bad.group(1)!r}; {hint}the commands are {', '.join(commands)}"
    return _condense(raw)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _condense(raw: list[str]) -> str:
    """One line from one jsonargparse error report (its lines with their indentation)."""
    lines = [ln.strip() for ln in raw]
    key = re.match(r'Parser key "([^"]+)":\s*(.*)', lines[0])
    where = f"--{key.group(1)}" if key else lines[0].rstrip(":")
    if key and key.group(2):  # the whole error on one line
        return f"{where}: {_reason(key.group(2))}"
    # A class's option with a bad value or name: follow the tree down to the option and its reason.
    for i, ln in enumerate(lines):
        cls = re.match(r"- Problem with given class_path '([^']+)'", ln)
        if not cls or i + 1 >= len(lines):
            continue
        block = raw[i + 1:]
        end = next((j for j, b in enumerate(block) if _indent(b) <= _indent(raw[i])), len(block))
        block = block[:end]
        if not block:
            continue
        nested = _condense(block) if lines[i + 1].startswith("Parser key ") else None
        if nested and nested.startswith("--"):
            option = nested[2:]
            option = option[len("init_args."):] if option.startswith("init_args.") else option
            return f"{where}.{option}"
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
    detail = next((_reason(ln.lstrip("- ")) for ln in lines[1:] if not ln.endswith(":")), "")
    return f"{where}: {detail}" if detail else where


def _reason(text: str) -> str:
    """jsonargparse's ``Expected a <class 'int'>. Got value: abc`` as ``expected int, got 'abc'``."""
    m = re.fullmatch(r"Expected a <class '([^']+)'>\.? Got value: (.*)", text.strip())
    return f"expected {m.group(1)}, got {m.group(2)!r}" if m else text


def _close_parameters(class_path: str, name: str) -> str:
    try:
        params = list(inspect.signature(registry.import_target(class_path)).parameters)
    except (ImportError, AttributeError, TypeError, ValueError):
        return ""
    close = difflib.get_close_matches(name, params, n=3, cutoff=0.5)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else f"; it accepts {', '.join(params)}"


def fail(message: str) -> None:
    """Print ``lightning-gan: error: MESSAGE`` on stderr and exit with status 2."""
    sys.stderr.write(f"lightning-gan: error: {message}\n")
    raise SystemExit(2)


def plugin_distributions() -> list[tuple[str, str]]:
    """``(name, version)`` of every installed distribution other than lightning-gan that declares entry points in a
    ``lightning_gan.*`` group (the plugins), sorted by name; read from the package metadata, nothing is imported."""
    from importlib import metadata

    found: dict[str, tuple[str, str]] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] or ""
        key = re.sub(r"[-_.]+", "-", name).lower()
        if not key or key == "lightning-gan" or key in found:
            continue  # the core itself; a distribution seen twice on sys.path: the first one is the one imported
        if any(ep.group.startswith("lightning_gan.") for ep in dist.entry_points):
            found[key] = (name, dist.version)
    return [found[k] for k in sorted(found)]


def version_report() -> str:
    """What ``lightning-gan --version`` prints: the core's version, each plugin distribution's, and the versions
    of Python, torch and Lightning (the lines a bug report needs)."""
    import platform
    from importlib import metadata

    from lightning_gan import __version__

    def version(name: str, default: str = "not installed") -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return default

    lines = [f"lightning-gan {version('lightning-gan', __version__)}"]
    plugins = plugin_distributions()
    lines += [f"  plugin {name} {ver}" for name, ver in plugins] or ["  no plugin distributions installed"]
    lines.append(f"python {platform.python_version()}, torch {version('torch')}, lightning {version('lightning')}")
    return "\n".join(lines)
