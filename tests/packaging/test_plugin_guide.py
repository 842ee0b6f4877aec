"""docs/plugins.md, followed to the letter: its files make a plugin package that passes the kit and trains.

Every fenced block of the guide whose first line is ``# file: PATH`` is written to PATH (without that line).
The package is built as a wheel and installed into a temporary folder (not the project's environment);
then its own conformance tests (the guide's tests/test_my_gan.py) run, the listings show its plugins, and
a short ``lightning-gan fit --recipe my_mlp-ring`` trains with all seven of them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from conftest import run_process  # tests/conftest.py
from wheel_env import ROOT, build_wheel

from lightning_gan.phases import PhaseSchedule
from lightning_gan.regularizers import R1

pytestmark = pytest.mark.slow

GUIDE = ROOT / "docs" / "plugins.md"
BLOCK = re.compile(r"^```[a-z]*\n# file: (?P<path>\S+)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)
KINDS = {  # entry-point group -> the name the guide registers in it
    "lightning_gan.architectures": "my_mlp", "lightning_gan.losses": "my_hinge",
    "lightning_gan.regularizers": "my_drift", "lightning_gan.precision": "my_counting",
    "lightning_gan.datasets": "my_ring", "lightning_gan.metrics": "my_radius",
    "lightning_gan.recipes": "my_mlp-ring",
}


def write_guide_files(dest: Path) -> list[str]:
    """Write every ``# file:`` block of the guide under ``dest``; return the relative paths."""
    paths = []
    for match in BLOCK.finditer(GUIDE.read_text(encoding="utf-8")):
        path = dest / match["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(match["body"], encoding="utf-8")
        paths.append(match["path"])
    return paths


def run(args: list[str], cwd: Path, site: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTNING_GAN")}
    env["PYTHONPATH"] = str(site)
    env["LIGHTNING_GAN_CACHE"] = str(cwd / ".cache")
    env["TORCH_HOME"] = str(cwd / ".torch")  # no weights from this machine's torch hub cache
    return run_process([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(work folder, the guide's package source, the folder it is installed into) after a wheel install."""
    work = tmp_path_factory.mktemp("guide")
    files = write_guide_files(work)
    assert len(files) == len(set(files)), "two blocks of the guide write the same file"
    source = work / "my-gan"
    wheel = build_wheel(source, work / "dist")
    with zipfile.ZipFile(wheel) as whl:
        assert "my_gan/recipes/my_mlp-ring.yaml" in whl.namelist()  # the guide's package-data lines
    site = work / "site"
    result = run_process([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
                          str(site), str(wheel)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return work, source, site


def test_the_guide_writes_a_complete_package_with_one_plugin_of_each_kind(installed_plugin) -> None:
    import tomllib  # requires-python >= 3.11: always there
    work, source, _ = installed_plugin
    project = tomllib.loads((source / "pyproject.toml").read_text())["project"]
    declared = {group: sorted(eps) for group, eps in project["entry-points"].items()}
    assert declared == {group: [name] for group, name in KINDS.items()}
    for group, name in KINDS.items():
        if group != "lightning_gan.recipes":
            module = project["entry-points"][group][name].partition(":")[0]
            assert (source / (module.replace(".", "/") + ".py")).is_file(), module


def test_the_guides_own_conformance_tests_pass_against_the_installed_wheel(installed_plugin) -> None:
    work, source, site = installed_plugin
    result = run(["-m", "pytest", str(source / "tests"), "-q", "-p", "no:cacheprovider", "-W", "ignore"], work, site)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\b5 passed\b", result.stdout), result.stdout[-2000:]
    probe = run(["-c", "import my_gan, lightning_gan; print(my_gan.__file__)"], work, site)
    assert Path(probe.stdout.strip()).is_relative_to(site)  # the installed copy, not the source folder


RUN_COMMANDS = """
import json, sys
from lightning_gan.cli import main

codes = []
for argv in json.loads(sys.argv[1]):
    sys.argv = ["lightning-gan", *argv]
    try:
        codes.append(main(argv))
    except SystemExit as exc:
        codes.append(exc.code)
print("CODES", json.dumps(codes))

from lightning_gan import registry as r  # what the listings showed, as data

rows = [(e.group, e.name, s) for e, s in r.list_plugins() if e.distribution == "my-gan"]
needs = r.recipe_needs(r.recipe_path("my_mlp-ring"))
print("LISTING", json.dumps({"rows": rows, "needs": [needs.plugins, needs.missing]}))
"""


def documented_commands() -> list[list[str]]:
    """The ``lightning-gan`` commands of the guide's block that starts with ``pip install ./my-gan``."""
    for block in re.finditer(r"^```bash\n(.*?)^```$", GUIDE.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL):
        lines = block[1].splitlines()
        if lines and lines[0].startswith("pip install ./my-gan"):
            return [shlex.split(line, comments=True)[1:] for line in lines if line.startswith("lightning-gan ")]
    raise AssertionError("docs/plugins.md has no bash block that starts with `pip install ./my-gan`")


def test_the_guides_commands_run_and_a_short_fit_uses_every_plugin(installed_plugin, tmp_path) -> None:
    """The guide's commands after the install, each fit shortened to 1 kimg (4 iterations of 256 points).

    The listings show my-gan's seven plugins, loaded, and its recipe needing my-gan. The counting precision plugin of the guide's recipe saw one G backward per iteration and one D backward
    per iteration plus one per lazy Dreg phase (interval 4), as the phase schedule says.
    """
    _, _, site = installed_plugin
    commands = documented_commands()
    assert [c[0] for c in commands] == ["plugins", "recipes", "fit", "fit"]
    commands = [c + ["--model.total_kimg=1"] if c[0] == "fit" else c for c in commands]
    result = run(["-c", RUN_COMMANDS, json.dumps(commands)], tmp_path, site)
    codes = [json.loads(ln[len("CODES "):]) for ln in result.stdout.splitlines() if ln.startswith("CODES ")]
    assert codes == [[0, 0, 0, 0]], result.stdout[-3000:] + result.stderr[-4000:]
    (listing,) = [json.loads(ln[len("LISTING "):]) for ln in result.stdout.splitlines() if ln.startswith("LISTING ")]
    assert {(group, name): status for group, name, status in listing["rows"]} == {
        (group.removeprefix("lightning_gan."), name): "loaded" for group, name in KINDS.items()}
    assert listing["needs"] == [["my-gan"], []]

    run_dir = tmp_path / "runs" / "my_mlp-ring" / "version_0"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    iterations = metrics["iteration"]
    assert iterations == 4  # ceil(1000 / 256)
    assert isinstance(metrics["radius/error"], float) and metrics["radius/error"] >= 0  # the data's default metric
    (ckpt_path,) = (run_dir / "checkpoints").glob("*.ckpt")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    schedule = PhaseSchedule([R1(gamma=0.001, interval=4)])  # a D penalty with the recipe's interval
    phases = [p.network for i in range(iterations) for p in schedule.phases(i)]
    assert ckpt["CountingPrecision"] == {"discriminator": phases.count("discriminator"),
                                         "generator": phases.count("generator")}
    assert ckpt["CountingPrecision"] == {"discriminator": 4 + 1, "generator": 4}
    mixed = tmp_path / "runs" / "quickstart" / "version_0"  # a core recipe with my loss and my penalty
    assert json.loads((mixed / "metrics.json").read_text())["iteration"] == 4
    model = yaml.safe_load((mixed / "config.yaml").read_text())["model"]
    assert model["loss"]["class_path"] == "my_gan.losses.MyHingeLoss"
    assert [r["class_path"] for r in model["regularizers"]] == ["my_gan.penalties.LogitDrift"]
