"""Your own images: every shipped image recipe trains on an image folder, with metrics that follow the data.

Each run is the `lightning-gan` command (in-process) on a small generated folder: colour and greyscale, with
and without StyleGAN's dataset.json labels. No Inception weights are reachable (private cache and torch hub
folders), so the image folder's own metric is the sliced Wasserstein distance.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw

from lightning_gan.cli import main

pytestmark = pytest.mark.slow

SMALL_STYLEGAN2 = ["--model.architecture.init_args.channel_base=256", "--model.architecture.init_args.channel_max=32"]
TINY_SWD = "[{class_path: swd, init_args: {num_samples: 64, descriptors_per_image: 4, num_projections: 16}}]"


def make_folder(root: Path, *, count: int, classes: int, channels: int, size: int = 40) -> Path:
    """``count`` images of ``size`` px (a bar whose angle is the class), in one sub-folder per class; with
    ``classes > 1`` a StyleGAN ``dataset.json`` gives the labels."""
    rng = np.random.default_rng(0)
    labels = []
    for i in range(count):
        k = i % max(classes, 1)
        img = Image.new("L" if channels == 1 else "RGB", (size, size), 0 if channels == 1 else (20, 30, 90))
        draw = ImageDraw.Draw(img)
        angle = math.pi * k / max(classes, 1)
        cx, cy = size / 2 + rng.integers(-4, 5), size / 2 + rng.integers(-4, 5)
        dx, dy = 0.3 * size * math.cos(angle), 0.3 * size * math.sin(angle)
        draw.line([cx - dx, cy - dy, cx + dx, cy + dy], fill=255 if channels == 1 else (250, 200, 40), width=4)
        name = f"class{k}/{i:04d}.png"
        (root / f"class{k}").mkdir(parents=True, exist_ok=True)
        img.save(root / name)
        labels.append([name, k])
    if classes > 1:
        (root / "dataset.json").write_text(json.dumps({"labels": labels}))
    return root


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run folder where no Inception weights can be found."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIGHTNING_GAN_CACHE", str(tmp_path / ".cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / ".torch"))
    monkeypatch.delenv("LIGHTNING_GAN_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(sys, "argv", ["lightning-gan"])
    return tmp_path


def fit(args: list[str]) -> Path:
    """Run ``lightning-gan fit ARGS`` in-process; the run's log folder."""
    assert main(["fit", *args]) == 0
    runs = sorted(Path("runs").glob("*/version_*"), key=lambda p: p.stat().st_mtime)
    return runs[-1]


def history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_the_issue_command_trains_a_10_class_greyscale_folder_and_reports_swd(workdir: Path, capsys) -> None:
    data = make_folder(workdir / "digits", count=200, classes=10, channels=1)
    run = fit(["--recipe", "dcgan-shapes32", "--data=image_folder", f"--data.init_args.path={data}",
               "--data.init_args.resolution=32", "--data.init_args.channels=1",
               "--model.architecture.init_args.channels=1", "--model.architecture.init_args.c_dim=10",
               "--model.total_kimg=0.128"])
    out = capsys.readouterr().out
    assert "│ swd " in out and "swd/32" in out and "swd/16" in out  # the run's summary table
    final = json.loads((run / "metrics.json").read_text())
    assert final["swd"] > 0 and final["swd"] == pytest.approx((final["swd/32"] + final["swd/16"]) / 2)
    # the callback followed the data too: swd at the end of fit, and best.ckpt kept by it (the headline)
    assert [set(h) - {"kimg", "iteration"} for h in history(run)] == [{"swd", "swd/32", "swd/16"}]
    assert (run / "checkpoints" / "best.ckpt").is_file()
    # the per-class grid is one `generate` call away: one row per class
    assert main(["generate", "--ckpt", str(run / "checkpoints" / "last.ckpt"), "--out", "grid"]) == 0
    classes = json.loads(Path("grid/generate.json").read_text())["files"]["classes"]
    grid = Image.open(classes["file"])
    assert classes["rows"] == "class 0..c_dim-1" and grid.height / grid.width == pytest.approx(10 / len(classes["columns"]), rel=0.02)


def test_readme_cpu_command_on_a_colour_folder(workdir: Path, capsys) -> None:
    """The README's "Train on your own images" CPU command, with a tiny budget."""
    data = make_folder(workdir / "photos", count=64, classes=0, channels=3)  # one batch of the recipe's 64
    run = fit(["--recipe", "dcgan-folder32", f"--data.init_args.path={data}", "--model.total_kimg=0.064"])
    assert "│ swd " in capsys.readouterr().out
    assert set(history(run)[-1]) >= {"swd", "swd/32", "swd/16"}
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "samples" / "final.png").is_file()


def test_small_folder_recipe_augments_holds_out_and_monitors(workdir: Path, capsys) -> None:
    """``dcgan-folder32-ada``: ADA's p in the summary and metrics.json, 50 images held out, the monitor's figures."""
    data = make_folder(workdir / "small", count=114, classes=0, channels=3)  # 64 for training after 50 held out
    run = fit(["--recipe", "dcgan-folder32-ada", f"--data.init_args.path={data}", "--model.total_kimg=0.128",
               "--model.metrics=[]"])
    out = capsys.readouterr().out
    assert "augment/p" in out and "augment/rt" in out  # the run summary
    final = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= final["augment/p"] < 1.0
    import torch

    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    (monitor,) = [v for k, v in ckpt["callbacks"].items() if k.startswith("OverfittingMonitor")]
    assert [h["kimg"] for h in monitor["history"]] == [0.032]  # the first iteration, then every 5 kimg
    assert 0.0 <= monitor["history"][0]["acc_train"] <= 1.0


@pytest.mark.parametrize(("recipe", "channels", "classes", "extra"), [
    ("stylegan2-shapes32", 1, 0, SMALL_STYLEGAN2),
    ("stylegan2-shapes32-cond", 3, 4, [*SMALL_STYLEGAN2, "--model.architecture.init_args.c_dim=4"]),
    ("stylegan2-ffhq256", 3, 0, ["--model.architecture.init_args.resolution=32",
                                 "--model.architecture.init_args.z_dim=32", "--model.architecture.init_args.w_dim=32",
                                 "--model.architecture.init_args.mapping_layers=2",
                                 "--model.architecture.init_args.channel_base=256",
                                 "--model.architecture.init_args.channel_max=32",
                                 "--data.init_args.num_workers=0"]),
    ("dcgan-folder32", 1, 3, ["--model.architecture.init_args.c_dim=3"]),
])
def test_every_image_recipe_trains_on_an_image_folder(workdir: Path, recipe: str, channels: int, classes: int,
                                                      extra: list[str]) -> None:
    data = make_folder(workdir / "images", count=48, classes=classes, channels=channels)
    arch_channels = [] if channels == 3 else [f"--model.architecture.init_args.channels={channels}"]
    run = fit(["--recipe", recipe, "--data=image_folder", f"--data.init_args.path={data}", "--data.init_args.resolution=32",
               f"--data.init_args.channels={channels}", "--data.init_args.batch_size=16", *arch_channels, *extra,
               f"--model.metrics={TINY_SWD}", "--model.total_kimg=0.032"])
    final = json.loads((run / "metrics.json").read_text())
    assert math.isfinite(final["swd"]) and final["swd"] > 0
    assert set(history(run)[-1]) >= {"swd", "swd/32", "swd/16"}  # the recipe's MetricsCallback follows the model


def test_every_shipped_image_recipe_leaves_its_metrics_to_the_data() -> None:
    from lightning_gan import registry

    image_recipes = [n for n in registry.get_registry("recipes").names() if n != "quickstart"]
    assert {"dcgan-shapes32", "dcgan-folder32", "stylegan2-shapes32", "stylegan2-ffhq256"} <= set(image_recipes)
    for name in image_recipes:
        config = yaml.safe_load(registry.recipe_path(name).read_text())
        assert config["model"].get("metrics") is None, name
        for cb in config["trainer"]["callbacks"]:
            if cb["class_path"].endswith("MetricsCallback"):
                args = cb.get("init_args") or {}
                assert "metrics" not in args and args.get("monitor", "auto") == "auto", name


def test_a_pinned_metric_that_cannot_serve_the_data_is_one_line_before_training(workdir: Path, capsys) -> None:
    data = make_folder(workdir / "images", count=32, classes=0, channels=3)
    with pytest.raises(SystemExit) as info:
        main(["fit", "--recipe", "dcgan-folder32", f"--data.init_args.path={data}", "--model.metrics=[shapes]"])
    assert info.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'shapes'" in err[0] and "--model.metrics=null" in err[0] and "(swd)" in err[0], err
    assert not list(Path("runs").glob("*/version_*/checkpoints/*.ckpt"))  # refused before any training
