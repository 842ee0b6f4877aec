"""A first run's log: `make demo`'s command with its output redirected to a file, as `nohup` or CI would.

The log must hold Lightning's plain start-up lines, the bar's plain progress lines and the run summary, and
nothing a user of this command cannot act on: no Lightning advertisement (``💡 Tip: ... litlogger``), no
deprecation warning raised inside a dependency, and no rich rendering of the bar after the plain lines.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import isolated_env, run_process  # tests/conftest.py


def lightning_gan_command() -> list[str]:
    """The installed console script next to this interpreter (what `make demo` runs), else the module."""
    script = Path(sys.executable).with_name("lightning-gan")
    return [str(script)] if script.exists() else [sys.executable, "-m", "lightning_gan.cli"]


@pytest.mark.slow
def test_redirected_quickstart_log_has_no_noise(tmp_path: Path) -> None:
    log = tmp_path / "log"
    env = {k: v for k, v in isolated_env(tmp_path).items() if k not in ("PYTHONWARNINGS", "COLUMNS", "FORCE_COLOR", "TERM")}
    with log.open("w") as out:
        done = run_process([*lightning_gan_command(), "fit", "--recipe", "quickstart", "--model.total_kimg=5"],
                           cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=300)
    text = log.read_text()
    assert done.returncode == 0, text
    lines = text.splitlines()

    assert "Tip:" not in text and "litlogger" not in text and "litmodels" not in text, text
    # a warning raised in a dependency names its file under site-packages (or the category, Python's format)
    assert not re.search(r"(Deprecation|Future)Warning|is deprecated", text), text
    assert not [ln for ln in lines if "site-packages" in ln], text

    plain = [i for i, ln in enumerate(lines) if ln.startswith("kimg: ")]
    assert plain, text  # at least the final count
    assert lines[plain[-1]].startswith("kimg: 5.1/5 · ") and " img/s · eta 0m00s" in lines[plain[-1]], text
    after = lines[plain[-1] + 1:]
    # after the last plain line: the sample note and the summary table only; no bar (its "Epoch", "it/s")
    assert not [ln for ln in after if "Epoch" in ln or "it/s" in ln or "·" in ln], text
    title = next(i for i, ln in enumerate(after) if ln.strip() == "lightning-gan run")
    assert all(ln.startswith("Samples at ") for ln in after[:title]), text
    assert after[-1].startswith("checkpoint: "), text
