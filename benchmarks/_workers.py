"""Run a benchmark's variants as worker processes, a few at a time (shared by the benchmark scripts)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def run_workers(commands: Mapping[str, Sequence[str]], *, parallel: int, env: Mapping[str, str], log_dir: Path,
                echo_log: bool = False) -> list[str]:
    """Start ``commands[name]`` for each name in order, at most ``parallel`` at once, each writing stdout and
    stderr to ``log_dir/NAME.log``; wait for all; return the names whose process exited non-zero."""
    queue, running, failed = list(commands), {}, []
    while queue or running:
        while queue and len(running) < parallel:
            name = queue.pop(0)
            log = (log_dir / f"{name}.log").open("w")
            running[name] = (subprocess.Popen(list(commands[name]), stdout=log, stderr=subprocess.STDOUT,
                                              env=dict(env)), log)
            print(f"started {name}" + (f" (log: {log_dir / (name + '.log')})" if echo_log else ""), flush=True)
        time.sleep(1)
        for name, (proc, log) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                del running[name]
                print(f"finished {name}: exit {proc.returncode}", flush=True)
                if proc.returncode:
                    failed.append(name)
    return failed
