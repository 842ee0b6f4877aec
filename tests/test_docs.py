"""Every ``lightning-gan`` command shown in a fenced code block of README.md and docs/**/*.md parses.

Which lines are commands: in a fenced block whose language is empty, ``bash``, ``sh``, ``shell``, ``console``
or ``text``, a line whose first word, after an optional ``$`` prompt and an optional ``.venv/bin/`` prefix, is
``lightning-gan``, joined with the next lines while it ends with a backslash. The line is split like a shell
would (``shlex``, quotes removed, ``# comments`` dropped); a trailing ``> FILE`` is a redirect.

How each is checked: through ``lightning_gan.cli.main`` in one fresh interpreter (a subprocess, so nothing of
the checks leaks into the test process), in document order, in a temporary folder holding a link to the
repository's ``recipes/`` folder (so ``--recipe recipes/NAME.yaml`` resolves as it does from a clone's root):

* ``fit``/``validate``/``test``/``predict``: the command's real parse (the recipe or config, every option)
  and the model and datamodule built from it (registry names are resolved there: ``--model.loss=hingee`` is a
  valid string to the parser), stopped where LightningCLI would build the Trainer. (``--print_config`` is not
  used for the check: it prints a configuration without building or validating it.)
* the other subcommands: their own argparse parser parses the arguments, then the command stops before it
  runs; a command without a subcommand (``--version``, ``--help``) runs as written and must exit 0.
* a command with ``> FILE`` runs as written (``fit ... --print_config > my.yaml``) and its output is written
  to FILE in the folder, so a later command's ``--config my.yaml`` finds it.
* a command followed in its block by a line starting ``lightning-gan: error:`` must fail with exactly that
  line on stderr; every other command must parse.

Principled exceptions, for what only exists after a step the test does not take:

* ``--ckpt_path PATH`` is dropped when PATH does not exist (a checkpoint written by a training run; that a
  missing one is a one-line error is tested in tests/integration/test_cli.py). Other commands' files
  (``--ckpt RUN.ckpt``) are not opened by a parse.
* commands after a ``pip install`` line in the same block need the package that line installs (the plugin
  guide's example package); they are not checked here but by that page's own test, which builds and installs
  the package first (docs/plugins.md: tests/packaging/test_plugin_guide.py). Only that page may have them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import run_process  # tests/conftest.py

ROOT = Path(__file__).resolve().parents[1]
TRAINER_COMMANDS = ("fit", "validate", "test", "predict")
SHELL_LANGUAGES = ("", "bash", "sh", "shell", "console", "text")
ERROR_PREFIX = "lightning-gan: error:"


@dataclass(frozen=True)
class DocCommand:
    """One ``lightning-gan`` command of a document: where it is, its arguments, redirect and expected error."""

    where: str                        # "README.md:42"
    argv: list[str]                   # the arguments after ``lightning-gan``
    redirect: str | None = None       # FILE of a trailing ``> FILE``
    expected_error: str | None = None  # the ``lightning-gan: error: ...`` line shown after it
    after_install: str | None = None   # the ``pip install ...`` line earlier in the same block


def doc_files(root: Path = ROOT) -> list[Path]:
    """README.md and every Markdown file under docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def _command_words(line: str) -> list[str] | None:
    """The arguments of a ``lightning-gan`` command line (prompt, venv prefix and comments removed), else None."""
    line = line.strip().removeprefix("$ ")
    if line.split(maxsplit=1)[:1] not in (["lightning-gan"], [".venv/bin/lightning-gan"]):
        return None  # output lines and other programs: not shell-split at all
    return shlex.split(line, comments=True)[1:]


def extract_commands(text: str, name: str) -> list[DocCommand]:
    """The ``lightning-gan`` commands in the fenced shell blocks of Markdown ``text`` (see the module docstring)."""
    commands: list[DocCommand] = []
    lines = text.splitlines()
    fence: str | None = None
    language = ""
    installed: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        match = re.match(r"^(`{3,}|~{3,})\s*([\w+-]*)", stripped)
        if fence is None:
            if match:
                fence, language = match.group(1), match.group(2).lower()
                installed = None
            i += 1
            continue
        if stripped.startswith(fence) and stripped.strip("`~") == "":
            fence = None
            i += 1
            continue
        if language not in SHELL_LANGUAGES:
            i += 1
            continue
        if re.match(r"^(\$ )?(python3? -m )?pip install ", stripped):
            installed = stripped
        start = i
        joined = line
        while joined.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            joined = joined.rstrip()[:-1] + " " + lines[i].strip()
        i += 1
        words = _command_words(joined)
        if words is None:
            continue
        redirect = None
        if len(words) >= 2 and words[-2] == ">":
            redirect, words = words[-1], words[:-2]
        expected = None
        if i < len(lines) and lines[i].strip().startswith(ERROR_PREFIX):
            expected = lines[i].strip()
        commands.append(DocCommand(f"{name}:{start + 1}", words, redirect, expected, installed))
    return commands


def all_doc_commands(root: Path = ROOT) -> list[DocCommand]:
    """Every documented command, in document order (README first)."""
    commands = []
    for path in doc_files(root):
        commands += extract_commands(path.read_text(encoding="utf-8"), str(path.relative_to(root)))
    return commands


class _Parsed(BaseException):
    """Raised where a command would start doing its work: its command line parsed."""


def _drop_missing_checkpoints(argv: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for k, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "--ckpt_path" and k + 1 < len(argv) and not Path(argv[k + 1]).exists():
            skip = True
            continue
        if arg.startswith("--ckpt_path=") and not Path(arg.split("=", 1)[1]).exists():
            continue
        out.append(arg)
    return out


def check_command(command: DocCommand) -> str | None:
    """Parse one documented command in the current folder; None when it behaves as documented, else why not."""
    from lightning_gan import cli
    from lightning_gan.lightning_cli import GANCLI

    argv = _drop_missing_checkpoints(command.argv)
    stdout, stderr = io.StringIO(), io.StringIO()
    original_parse_args = argparse.ArgumentParser.parse_args
    original_instantiate_trainer = GANCLI.instantiate_trainer

    def parse_then_stop(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        original_parse_args(self, *args, **kwargs)
        raise _Parsed

    def stop(self: Any, **kwargs: Any) -> None:
        raise _Parsed

    code: Any = 0
    try:
        if command.redirect is None:
            if argv and argv[0] in TRAINER_COMMANDS:
                GANCLI.instantiate_trainer = stop  # type: ignore[method-assign]
            elif argv and not argv[0].startswith("-"):
                argparse.ArgumentParser.parse_args = parse_then_stop  # type: ignore[method-assign]
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = cli.main(list(argv))
    except _Parsed:
        code = 0
    except SystemExit as exc:
        code = exc.code
    except Exception as exc:  # noqa: BLE001 - reported with the command that raised it
        code = f"{type(exc).__name__}: {exc}"
    finally:
        GANCLI.instantiate_trainer = original_instantiate_trainer  # type: ignore[method-assign]
        argparse.ArgumentParser.parse_args = original_parse_args  # type: ignore[method-assign]
    errors = [ln.strip() for ln in stderr.getvalue().splitlines() if ln.strip()]
    shown = " ".join(["lightning-gan", *command.argv])
    if command.expected_error is not None:
        if code in (0, None):
            return f"{command.where}: `{shown}` succeeded; the docs show it failing with: {command.expected_error}"
        if command.expected_error not in errors:
            return f"{command.where}: `{shown}` failed with {errors[-1:] or code!r}, the docs show: {command.expected_error}"
        return None
    if code not in (0, None):
        return f"{command.where}: `{shown}` does not parse: {' / '.join(errors[-2:]) or code}"
    if command.redirect is not None:
        Path(command.redirect).write_text(stdout.getvalue(), encoding="utf-8")
    return None


def check_commands(commands: list[DocCommand], workdir: Path) -> list[str | None]:
    """Check each command in order in ``workdir`` (with ``recipes/`` linked from the repository)."""
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    (workdir / "recipes").symlink_to(ROOT / "recipes", target_is_directory=True)
    os.chdir(workdir)
    sys.argv = ["lightning-gan"]
    return [check_command(c) for c in commands]


def run_checks(commands: list[DocCommand], workdir: Path) -> list[str | None]:
    """:func:`check_commands` in a fresh interpreter; one result per command (None: as documented)."""
    script = ("import json, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
              "from test_docs import DocCommand, check_commands; "
              "cmds = [DocCommand(**c) for c in json.loads(Path(sys.argv[2]).read_text())]; "
              "print('RESULTS ' + json.dumps(check_commands(cmds, Path(sys.argv[3]))))")
    spec = workdir / "commands.json"
    spec.write_text(json.dumps([asdict(c) for c in commands]))
    run_dir = workdir / "run"
    run_dir.mkdir()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = run_process([sys.executable, "-c", script, str(Path(__file__).parent), str(spec), str(run_dir)],
                       capture_output=True, text=True, timeout=450, env=env)
    results = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULTS ")]
    assert done.returncode == 0 and results, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(results[-1][len("RESULTS "):])


def test_every_relative_link_and_picture_of_the_docs_exists() -> None:
    missing = []
    for path in doc_files():
        text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)  # not in code blocks
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue  # a web address or an anchor on the same page
            if not (path.parent / target.split("#")[0]).exists():
                missing.append(f"{path.relative_to(ROOT)}: {target}")
    assert not missing, missing


def heading_anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


def test_every_link_to_a_section_of_the_docs_finds_it() -> None:
    broken, links = [], 0
    for path in doc_files():
        text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target) or "#" not in target:
                continue
            page, anchor = target.split("#", 1)
            dest = path.parent / page if page else path
            links += 1
            if dest.suffix == ".md" and dest.is_file() and anchor not in heading_anchors(dest):
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert links >= 10 and not broken, broken


def test_the_extractor_finds_commands_as_a_reader_sees_them() -> None:
    text = "\n".join([
        "Some prose with `lightning-gan fit --inline` (not a block).",
        "```bash",
        ".venv/bin/lightning-gan fit --recipe quickstart \\",
        "    --model.total_kimg=5   # a comment",
        "lightning-gan fit --recipe quickstart --print_config > my.yaml",
        "python benchmarks/recipe_sweep.py --recipe quickstart",
        "```",
        "```python",
        "lightning-gan fit --not-shell",
        "```",
        "```",
        "$ lightning-gan fit --model.loss=hingee",
        "lightning-gan: error: Unknown loss 'hingee'.",
        "```",
        "~~~console",
        "lightning-gan evaluate --ckpt 'a b.ckpt' --data.init_args.classes='[circle, square]'",
        "pip install ./my-gan",
        "lightning-gan plugins",
        "~~~",
        "```",
        "lightning-gan recipes",
        "```",
    ])
    assert extract_commands(text, "x.md") == [
        DocCommand("x.md:3", ["fit", "--recipe", "quickstart", "--model.total_kimg=5"]),
        DocCommand("x.md:5", ["fit", "--recipe", "quickstart", "--print_config"], redirect="my.yaml"),
        DocCommand("x.md:12", ["fit", "--model.loss=hingee"], expected_error="lightning-gan: error: Unknown loss 'hingee'."),
        DocCommand("x.md:16", ["evaluate", "--ckpt", "a b.ckpt", "--data.init_args.classes=[circle, square]"]),
        DocCommand("x.md:18", ["plugins"], after_install="pip install ./my-gan"),
        DocCommand("x.md:21", ["recipes"]),  # a new block installs nothing
    ]
    assert _drop_missing_checkpoints(["fit", "--ckpt_path", "/no/such.ckpt", "--x=1", "--ckpt_path=/no/b.ckpt"]) == [
        "fit", "--x=1"]
    assert _drop_missing_checkpoints(["fit", "--ckpt_path", __file__]) == ["fit", "--ckpt_path", __file__]


@pytest.mark.slow
def test_every_documented_command_parses(tmp_path: Path) -> None:
    documented = [c for c in all_doc_commands() if c.after_install is None]
    left_to_the_guide_test = [c.where for c in all_doc_commands() if c.after_install is not None]
    assert all(where.startswith("docs/plugins.md:") for where in left_to_the_guide_test), left_to_the_guide_test
    readme = [c for c in documented if c.where.startswith("README.md:")]
    assert len(readme) >= 8 and len(documented) >= 25, [c.where for c in documented]
    assert {c.argv[0] for c in documented} >= {"fit", "validate", "evaluate", "generate", "export", "diagnose",
                                                 "plugins", "recipes"}
    # Commands that must NOT pass, checked in the same interpreter: the check itself can fail.
    wrong = [
        DocCommand("wrong:1", ["fit", "--recipe", "quickstart", "--model.loss=hingee"]),
        DocCommand("wrong:2", ["fit", "--recipe", "quickstart", "--model.total_kimgg=5"]),
        DocCommand("wrong:3", ["evaluate", "--ckpt", "RUN.ckpt", "--num-samplez", "5"]),
        DocCommand("wrong:4", ["fit", "--recipe", "quickstart"], expected_error="lightning-gan: error: something"),
        DocCommand("wrong:5", ["fit", "--recipe", "no-such-recipe"]),
    ]
    results = run_checks(wrong + documented, tmp_path)
    assert all(results[: len(wrong)]), results[: len(wrong)]
    failures = [r for r in results[len(wrong):] if r]
    assert not failures, "\n".join(failures)
