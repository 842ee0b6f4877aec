"""Trains the pinned shapes judges shipped in ``lightning_gan/metrics/judges/`` (or checks that they reproduce).

The shapes metrics (``shapes/fd``, ``shapes/recognizable``, ...) are measured in the features of a small
classifier, the *judge*. A judge trained on another processor, thread count or a GPU is a slightly
different network, and every Frechet distance moves with it; so the package ships one judge per setting
the recipes use, and the metric loads it whenever the data's settings match (``shapes_classifier_for``).

For each of 32 and 64 px, 1 and 3 channels (all six shape classes, the default size range, the default
training recipe: seed 0, 1300 steps of 64 images), this script trains the judge on the CPU with a fixed
number of threads (``train_shapes_classifier``: deterministic given its arguments and the thread count),
writes ``shapes-<R>px-<C>ch-6cls.safetensors`` (``judge_bytes``: the same bytes for the same weights) and
``shapes-<R>px-<C>ch-6cls.json`` beside it: the file's SHA-256 and judge id, the held-out accuracy (2000
clean shapes) and rejection (1000 negatives), the settings, and how it was made (torch version, threads,
processor, command, rough seconds).

Usage::

    python benchmarks/train_shapes_judge.py              # retrain all four and overwrite the shipped files
    python benchmarks/train_shapes_judge.py --check      # retrain, compare with the shipped hashes, write nothing
    python benchmarks/train_shapes_judge.py --only 32px-3ch --threads 1

``--check`` exits 1 when a retrained judge differs from the shipped one (expected on other processors:
that is why the judges are pinned); run it on the machine that made them to confirm the script is the
recipe. Rewriting the shipped judges changes every documented shapes figure: re-measure them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from lightning_gan.data.shapes import SHAPES
from lightning_gan.metrics import shapes as shapes_module
from lightning_gan.metrics.shapes import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_STEPS,
    PINNED_DIR,
    judge_bytes,
    judge_id,
    train_shapes_classifier,
)

SETTINGS = [(32, 3), (32, 1), (64, 3), (64, 1)]  # (resolution, channels)
SIZE_RANGE = (0.35, 0.85)  # ShapesDataModule's default


def judge_name(resolution: int, channels: int) -> str:
    return f"shapes-{resolution}px-{channels}ch-{len(SHAPES)}cls"


def cpu_model() -> str | None:
    """The processor's model name (Linux ``/proc/cpuinfo``), else ``platform.processor()``, else None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def train_one(resolution: int, channels: int, threads: int) -> tuple[bytes, dict]:
    """The judge file's bytes and its record (without ``file``/``command``)."""
    source = {"resolution": resolution, "channels": channels, "classes": list(SHAPES), "size_range": SIZE_RANGE}
    settings = shapes_module._settings(source, seed=0, steps=DEFAULT_STEPS, batch_size=DEFAULT_BATCH_SIZE)
    start = time.perf_counter()
    model, _ = train_shapes_classifier(resolution=resolution, channels=channels, classes=list(SHAPES),
                                       size_range=SIZE_RANGE, seed=0, steps=DEFAULT_STEPS, batch_size=DEFAULT_BATCH_SIZE)
    seconds = time.perf_counter() - start
    data = judge_bytes(model, settings)
    record = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "judge": judge_id(data, pinned=True),
        "held_out_accuracy": model.accuracy,
        "held_out_rejection": model.rejection,
        "held_out": {"accuracy_images": shapes_module.HELD_OUT, "rejection_images": shapes_module.HELD_OUT // 2,
                     "seed": 0},
        "settings": settings,
        "trained_with": {"torch": torch.__version__, "threads": threads, "device": "cpu",
                         "machine": platform.machine(), "cpu": cpu_model(),
                         "python": platform.python_version(), "seconds_rough": round(seconds, 1)},
    }
    return data, record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="retrain and compare with the shipped judges; write nothing")
    parser.add_argument("--threads", type=int, default=1, help="torch threads while training (default 1)")
    parser.add_argument("--only", nargs="*", default=None, help="e.g. 32px-3ch (default: all four)")
    parser.add_argument("--out", type=Path, default=PINNED_DIR, help="folder for the files (default: the package's)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/train_shapes_judge.py" + "".join(
        f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:]))
    differ = 0
    for resolution, channels in SETTINGS:
        name = judge_name(resolution, channels)
        if args.only and f"{resolution}px-{channels}ch" not in args.only:
            continue
        data, record = train_one(resolution, channels, args.threads)
        line = (f"{name}: {record['judge']} accuracy {record['held_out_accuracy']:.4f} rejection "
                f"{record['held_out_rejection']:.4f} ({record['trained_with']['seconds_rough']} s)")
        if args.check:
            shipped = json.loads((args.out / f"{name}.json").read_text())
            same = shipped["sha256"] == record["sha256"]
            differ += not same
            print(f"{line}: {'identical to' if same else 'DIFFERS from'} the shipped {shipped['judge']}")
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{name}.safetensors").write_bytes(data)
        record = {"file": f"{name}.safetensors", **record, "command": command}
        (args.out / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
        print(f"{line}: written to {args.out / name}.safetensors")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
