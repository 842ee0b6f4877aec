"""What `lightning-gan` tells the user: the full reason of a bad option, the hints for mismatched shapes and
classes, every command in --help, the versions, and a class switched on the command line starting afresh."""

from __future__ import annotations

import inspect
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import run_process  # tests/conftest.py
from lightning_gan import cli
from lightning_gan.cli_messages import TOOL_COMMANDS
from lightning_gan.errors import condition_mismatch, shape_mismatch
from lightning_gan.lightning_cli import class_options_after_their_class

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def lightning_gan(monkeypatch, capsys, tmp_path):
    """``lightning-gan ARGS`` in this process: (exit status, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lightning-gan"])  # the arguments are ours, not pytest's

    def run(*args: str) -> tuple[int, str, str]:
        try:
            status = cli.main(list(args))
        except SystemExit as exc:
            status = exc.code
        out = capsys.readouterr()
        return status, out.out, out.err
    return run


def _print_config(run, *args: str) -> dict:
    status, out, err = run("fit", "--recipe", "quickstart", *args, "--print_config")
    assert status == 0, err[-2000:]
    return yaml.safe_load(out)


def _defaults(cls: type) -> dict:
    """A class's constructor defaults as --print_config writes them (YAML has lists, not tuples)."""
    return {n: list(p.default) if isinstance(p.default, tuple) else p.default
            for n, p in inspect.signature(cls.__init__).parameters.items() if p.default is not inspect.Parameter.empty}


# -- a bad value of a class's option keeps jsonargparse's reason --------------------------------------
@pytest.mark.parametrize("args, expected", [
    (["--model.architecture.g_hidden=abc"], "--model.architecture.g_hidden: expected int, got 'abc'"),
    (["--model.architecture.init_args.g_hidden=abc"], "--model.architecture.g_hidden: expected int, got 'abc'"),
    (["--data.num_samples=1.5"], "--data.num_samples: expected int, got '1.5'"),
    (["--model.ema_kimg=abc"], "--model.ema_kimg: expected float or None, got 'abc'"),
])
def test_a_bad_value_of_a_class_option_names_the_option_and_the_reason(lightning_gan, args, expected) -> None:
    status, _, err = lightning_gan("fit", "--recipe", "quickstart", *args, "--print_config")
    errors = [ln for ln in err.splitlines() if ln.startswith("lightning-gan: error:")]
    assert status == 2 and errors == [f"lightning-gan: error: {expected}"], err


def test_a_bad_value_in_a_config_file_reads_the_same(lightning_gan, tmp_path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("model:\n  architecture:\n    class_path: mlp\n    init_args:\n      g_hidden: abc\n")
    status, _, err = lightning_gan("fit", "--recipe", "quickstart", "--config", str(config), "--print_config")
    assert status == 2
    assert "lightning-gan: error: --model.architecture.g_hidden: expected int, got 'abc'" in err.splitlines()


# -- hints that fit the case ----------------------------------------------------------------------------
def test_shape_hint_for_points_names_the_architectures_own_option() -> None:
    from lightning_gan_dcgan.mlp import MLPArchitecture

    from lightning_gan.data.toy2d import Toy2DDataModule

    spec, data = MLPArchitecture(data_dim=3), Toy2DDataModule()
    message = shape_mismatch((3,), tuple(data.data_shape), spec, data)
    assert message == ("The generator makes samples of shape (3,) but Toy2DDataModule yields (2,); "
                       "set --model.architecture.data_dim=2.")


@pytest.mark.parametrize("arch, data, fix", [
    ({"resolution": 64}, {"resolution": 32}, "set --model.architecture.resolution=32 or --data.resolution=64."),
    ({"channels": 1}, {"channels": 3}, "set --model.architecture.channels=3 or --data.channels=1."),
    ({"channels": 1, "resolution": 16}, {}, "set --model.architecture.channels=3 or --data.channels=1, and "
                                            "set --model.architecture.resolution=32 or --data.resolution=16."),
])
def test_shape_hint_for_images_names_what_differs(arch, data, fix) -> None:
    from lightning_gan_dcgan.dcgan import DCGANArchitecture

    from lightning_gan.data.shapes import ShapesDataModule

    spec, dm = DCGANArchitecture(**arch), ShapesDataModule(**data)
    made = (spec.channels, spec.resolution, spec.resolution)
    message = shape_mismatch(made, tuple(dm.data_shape), spec, dm)
    assert message.endswith(f"ShapesDataModule yields {tuple(dm.data_shape)}; {fix}"), message


def test_shape_hint_for_a_generator_of_another_kind_says_to_choose_another_architecture() -> None:
    from lightning_gan.data.toy2d import Toy2DDataModule

    message = shape_mismatch((3, 32, 32), (2,), None, Toy2DDataModule())
    assert "resolution" not in message
    assert message.endswith("this architecture cannot make 1-D samples (2,): choose one that does "
                            "(--model.architecture=NAME).")


def test_condition_hint_for_data_without_classes_and_with_other_classes() -> None:
    from lightning_gan_dcgan.dcgan import DCGANArchitecture

    from lightning_gan.data.shapes import ShapesDataModule
    from lightning_gan.data.toy2d import Toy2DDataModule

    spec = DCGANArchitecture(c_dim=3)
    no_labels = condition_mismatch(3, 0, spec, Toy2DDataModule())
    assert no_labels == ("The architecture is conditional on 3 classes but Toy2DDataModule has no class labels; "
                         "set --model.architecture.c_dim=0 for an unconditional model, or use a datamodule with labels.")
    other = condition_mismatch(3, 6, spec, ShapesDataModule())
    assert other.endswith("ShapesDataModule has 6; set --model.architecture.c_dim=6 (or 0 for an unconditional model).")


def test_the_cli_shows_the_condition_hint_in_one_line(lightning_gan, tmp_path) -> None:
    status, _, err = lightning_gan("fit", "--recipe", "quickstart", "--model.architecture.c_dim=3",
                                   "--trainer.logger=false", "--data.num_samples=100", "--trainer.max_steps=1")
    errors = [ln for ln in err.splitlines() if ln.startswith("lightning-gan: error:")]
    assert status == 2 and len(errors) == 1, err[-2000:]
    assert errors[0].endswith("Toy2DDataModule has no class labels; set --model.architecture.c_dim=0 for an "
                              "unconditional model, or use a datamodule with labels.")


# -- --help and --version -------------------------------------------------------------------------------
def test_help_lists_every_command(lightning_gan) -> None:
    status, out, _ = lightning_gan("--help")
    assert status == 0
    assert sorted(cli.COMMANDS) == sorted(TOOL_COMMANDS)  # a command that main runs is one that --help lists
    every = ["fit", "validate", "test", "predict", *TOOL_COMMANDS]
    usage = re.search(r"\{([a-z,]+)\}", out)
    assert usage and usage.group(1).split(",") == every
    listed = [m.group(1) for m in re.finditer(r"^    ([a-z]+)\s{2,}\S", out, flags=re.M)]
    assert listed == every, out
    assert "It's\n" not in out and "--version" in out


_EVERY = ", ".join(["fit", "validate", "test", "predict", *TOOL_COMMANDS])  # fit, ..., evaluate, generate, ...


@pytest.mark.parametrize("args, expected", [
    ([], f"give a command: {_EVERY} (`lightning-gan --help` says what each does)"),
    (["evalute", "--ckpt", "x.ckpt"], f"unknown command 'evalute'; did you mean 'evaluate'? the commands are {_EVERY}"),
])
def test_a_missing_or_misspelt_command_lists_every_command(lightning_gan, args, expected) -> None:
    status, _, err = lightning_gan(*args)
    assert status == 2
    assert [ln for ln in err.splitlines() if ln.startswith("lightning-gan: error:")] == [f"lightning-gan: error: {expected}"]


def _pyproject_version(path: Path) -> str:
    return tomllib.loads(path.read_text())["project"]["version"]


def test_version_lists_the_core_and_each_plugin_distribution(lightning_gan, fake_distribution) -> None:
    fake_distribution("acme-gan", {"lightning_gan.losses": {"acme": "acme_gan:AcmeLoss"}}, version="2.5.1")
    fake_distribution("not-a-plugin", {"console_scripts": {"nap": "nap:main"}}, version="9.9")
    status, out, _ = lightning_gan("--version")
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == f"lightning-gan {_pyproject_version(ROOT / 'pyproject.toml')}"
    plugins = [ln.strip() for ln in lines[1:] if ln.startswith("  plugin ")]
    first_party = [f"plugin {p.parent.name} {_pyproject_version(p)}" for p in (ROOT / "plugins").glob("*/pyproject.toml")]
    assert len(first_party) >= 2
    assert plugins == sorted(["plugin acme-gan 2.5.1", *first_party])
    assert "not-a-plugin" not in out
    assert re.fullmatch(r"python \d+\.\d+\.\d+\S*, torch \S+, lightning \S+", lines[-1])
    # after other options, the parser's --version prints the same
    assert lightning_gan("--recipe", "quickstart", "--version")[:2] == (0, out)


def test_version_answers_without_importing_torch() -> None:
    code = "import sys; from lightning_gan.cli import main; main(['--version']); print('torch' in sys.modules)"
    result = run_process([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "False"


# -- a class switched on the command line starts from its own defaults -----------------------------------
def test_switching_the_architecture_drops_the_recipes_arguments(lightning_gan) -> None:
    from lightning_gan_dcgan.dcgan import DCGANArchitecture

    config = _print_config(lightning_gan, "--model.architecture=dcgan", "--model.architecture.resolution=64")
    arch = config["model"]["architecture"]
    assert arch["class_path"] == "lightning_gan_dcgan.dcgan.DCGANArchitecture"
    assert arch["init_args"] == {**_defaults(DCGANArchitecture), "resolution": 64}  # z_dim 100, not quickstart's 2


def test_options_given_before_the_switch_still_count(lightning_gan) -> None:
    from lightning_gan_dcgan.dcgan import DCGANArchitecture

    config = _print_config(lightning_gan, "--model.architecture.z_dim=5", "--model.architecture=dcgan",
                           "--model.architecture.resolution=64")
    assert config["model"]["architecture"]["init_args"] == {**_defaults(DCGANArchitecture), "resolution": 64, "z_dim": 5}


def test_switching_the_datamodule_drops_the_recipes_arguments(lightning_gan) -> None:
    from lightning_gan.data.shapes import ShapesDataModule

    config = _print_config(lightning_gan, "--data=shapes", "--data.num_samples=500")
    assert config["data"]["init_args"] == {**_defaults(ShapesDataModule), "num_samples": 500}


def test_the_same_class_again_keeps_the_recipes_arguments(lightning_gan) -> None:
    recipe = yaml.safe_load((ROOT / "recipes" / "quickstart.yaml").read_text())
    config = _print_config(lightning_gan, "--model.architecture=mlp", "--model.architecture.g_hidden=7")
    expected = {**recipe["model"]["architecture"]["init_args"], "g_hidden": 7}
    assert {k: config["model"]["architecture"]["init_args"][k] for k in expected} == expected


@pytest.mark.parametrize("argv, expected", [
    (["fit", "--a.b.x=1", "--a.b=C", "--a.b.y", "2"], ["fit", "--a.b=C", "--a.b.x=1", "--a.b.y", "2"]),
    (["fit", "--a.b.x", "1", "--a.b", "C"], ["fit", "--a.b", "C", "--a.b.x", "1"]),
    (["fit", "--a.b.x=1", "--config", "f.yaml", "--a.b=C"], ["fit", "--a.b.x=1", "--config", "f.yaml", "--a.b=C"]),
    (["fit", "--a.b.x=1", "--recipe", "r", "--a.b=C"], ["fit", "--a.b.x=1", "--recipe", "r", "--a.b=C"]),
    (["fit", "--l.gamma=1", "--l+=r2", "--n", "-1"], ["fit", "--l.gamma=1", "--l+=r2", "--n", "-1"]),
    (["fit", "--a.bc=1", "--a.b=C"], ["fit", "--a.bc=1", "--a.b=C"]),
])
def test_class_options_move_after_their_class_but_never_across_a_config(argv, expected) -> None:
    assert class_options_after_their_class(argv) == expected
