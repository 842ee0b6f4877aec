"""The suite's own rules for subprocesses: each ends before pytest's timeout, and takes its children with it.

pytest-timeout (``timeout`` in pyproject.toml) fails a test that runs too long; a subprocess the test started
(a DDP rank, torchrun, a DataLoader worker) would outlive it. So every command runs in a process group of its
own, through ``conftest.run_process`` (or ``Popen(start_new_session=True)`` and ``conftest.kill_process_group``),
with a timeout below pytest's, and on timeout the whole group is killed.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import PYTEST_TIMEOUT, isolated_env, run_process

TESTS = Path(__file__).resolve().parent
BLOCKING = {"run", "call", "check_call", "check_output"}  # subprocess functions that wait without a process group


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie that nobody reaped yet counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_a_command_past_its_timeout_is_killed_with_its_children(tmp_path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    script = ("import subprocess, sys, time; "
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
              f"open({str(pid_file)!r}, 'w').write(str(child.pid)); time.sleep(120)")
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_process([sys.executable, "-c", script], timeout=8)
    assert time.monotonic() - started < 60
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(grandchild), "the command's own child outlived the timeout"


def test_run_process_returns_like_subprocess_run_and_refuses_pytests_timeout(tmp_path) -> None:
    done = run_process([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"],
                       capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    with pytest.raises(subprocess.CalledProcessError):
        run_process([sys.executable, "-c", "raise SystemExit(1)"], check=True, timeout=60)
    with pytest.raises(ValueError, match="before pytest's limit"):
        run_process([sys.executable, "-c", "pass"], timeout=PYTEST_TIMEOUT)


def test_isolated_env_hides_the_machines_weight_caches(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", "/somewhere/with/inception")
    monkeypatch.setenv("LIGHTNING_GAN_INCEPTION_WEIGHTS", "/somewhere/w.pth")
    env = isolated_env(tmp_path, EXTRA="1")
    assert env["TORCH_HOME"] == str(tmp_path / ".torch") and not (tmp_path / ".torch").exists()
    assert env["LIGHTNING_GAN_CACHE"] == str(tmp_path / ".cache")
    assert "LIGHTNING_GAN_INCEPTION_WEIGHTS" not in env and env["EXTRA"] == "1"


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    where = path.relative_to(TESTS.parent)
    found = []

    def too_long(node: ast.AST) -> bool:
        return isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and node.value >= PYTEST_TIMEOUT

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "subprocess":
            if node.func.attr in BLOCKING and path.name != "conftest.py":
                found.append(f"{where}:{node.lineno}: subprocess.{node.func.attr}: use conftest.run_process")
            if node.func.attr == "Popen" and not any(
                    k.arg == "start_new_session" and isinstance(k.value, ast.Constant) and k.value.value is True
                    for k in node.keywords):
                found.append(f"{where}:{node.lineno}: Popen without start_new_session=True")
        if isinstance(node, ast.Call):
            found += [f"{where}:{node.lineno}: timeout={k.value.value} s" for k in node.keywords
                      if k.arg == "timeout" and too_long(k.value)]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.args + node.args.kwonlyargs
            defaults = [None] * (len(node.args.args) - len(node.args.defaults)) + node.args.defaults + node.args.kw_defaults
            found += [f"{where}:{node.lineno}: {a.arg}={d.value} s" for a, d in zip(args, defaults)
                      if d is not None and "timeout" in a.arg.lower() and too_long(d)]
        if isinstance(node, ast.Assign) and too_long(node.value):
            found += [f"{where}:{node.lineno}: {t.id} = {node.value.value} s" for t in node.targets
                      if isinstance(t, ast.Name) and "TIMEOUT" in t.id and t.id != "PYTEST_TIMEOUT"]
    return found


def test_every_subprocess_of_the_suite_has_a_process_group_and_a_timeout_below_pytests() -> None:
    files = sorted(TESTS.rglob("*.py"))
    assert TESTS / "conftest.py" in files and len(files) > 20
    problems = [problem for path in files for problem in _violations(path)]
    assert not problems, "\n".join(problems)
