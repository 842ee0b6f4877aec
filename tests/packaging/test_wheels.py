"""Built wheels (not editable installs) ship every first-party recipe and list what each needs.

The core and the DCGAN plugin are built as wheels and installed into a fresh environment; the StyleGAN2
plugin is not, so its recipes must be listed with the one line that says what to install.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import yaml
from wheel_env import CORE_SOURCES, ROOT, build_wheel, copy_sources, fresh_environment, install, run_in

pytestmark = pytest.mark.slow

MISSING_STYLEGAN2 = "lightning-gan-stylegan2, which is not installed: pip install lightning-gan-stylegan2"

LIST_RECIPES = """
import json, sys, yaml
import lightning_gan
from lightning_gan import registry

out = {"core": lightning_gan.__file__, "recipes": {}}
for name in registry.get_registry("recipes").names():
    path = registry.recipe_path(name)
    needs = registry.recipe_needs(path)
    out["recipes"][name] = {"path": str(path), "keys": sorted(yaml.safe_load(path.read_text())),
                            "plugins": list(needs.plugins), "missing": list(needs.missing)}
print(json.dumps(out))
"""

CHECK_BUILDABLE = """
import sys
from lightning_gan.testing import check_recipe
for name in sys.argv[1:]:
    check_recipe(name)
    print("built", name)
"""


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """(python of a fresh venv holding the core's and lightning-gan-dcgan's wheels, [the two wheels])."""
    root = tmp_path_factory.mktemp("wheels")
    core = build_wheel(copy_sources(ROOT, root / "src" / "lightning-gan", CORE_SOURCES), root / "dist")
    dcgan = build_wheel(copy_sources(ROOT / "plugins" / "lightning-gan-dcgan", root / "src" / "dcgan"), root / "dist")
    python = fresh_environment(root)
    install(python, [core, dcgan])
    return python, [core, dcgan]


def test_the_core_wheel_ships_every_recipe_of_the_top_level_folder(wheel_env) -> None:
    _, (core, dcgan) = wheel_env
    recipes = sorted(p.name for p in (ROOT / "recipes").glob("*.yaml"))
    with zipfile.ZipFile(core) as whl:
        shipped = sorted(Path(n).name for n in whl.namelist() if n.startswith("lightning_gan/recipes/") and n.endswith(".yaml"))
        assert "lightning_gan/recipes/__init__.py" in whl.namelist()
        assert not [n for n in whl.namelist() if n.startswith("recipes/")]  # no top-level package "recipes"
    assert shipped == recipes
    with zipfile.ZipFile(dcgan) as whl:
        assert not [n for n in whl.namelist() if n.endswith(".yaml")]


def test_installed_wheels_list_and_parse_every_recipe(wheel_env, tmp_path) -> None:
    python, _ = wheel_env
    result = run_in(python, ["-c", LIST_RECIPES], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    listing = json.loads(result.stdout)
    site = Path(listing["core"]).parents[1]
    assert ROOT not in Path(listing["core"]).parents  # the wheel's copy, not the checkout
    recipes = listing["recipes"]
    assert sorted(recipes) == sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml"))
    for name, info in recipes.items():
        path = Path(info["path"])
        assert path.parent == site / "lightning_gan" / "recipes", name
        assert yaml.safe_load(path.read_text()) == yaml.safe_load((ROOT / "recipes" / f"{name}.yaml").read_text())
        assert {"model", "data", "trainer"} <= set(info["keys"]), name
        if name.startswith("stylegan2"):
            assert info == {**info, "plugins": ["lightning-gan-stylegan2"], "missing": [MISSING_STYLEGAN2]}, name
        elif name.startswith(("biggan", "progan")):  # other first-party plugins this environment does not hold
            assert info["plugins"] == [f"lightning-gan-{name.split('-')[0]}"] and len(info["missing"]) == 1, name
        else:
            assert info["missing"] == [], name

    listed = run_in(python, ["lightning-gan", "recipes"], tmp_path)
    assert listed.returncode == 0, listed.stderr[-3000:]
    lines = listed.stdout.splitlines()
    for name in recipes:
        assert name in listed.stdout
        if name.startswith("stylegan2"):
            assert f"Recipe {name!r} needs {MISSING_STYLEGAN2}." in lines


def test_a_recipe_whose_plugin_is_missing_fails_with_the_same_line(wheel_env, tmp_path) -> None:
    python, _ = wheel_env
    result = run_in(python, ["lightning-gan", "fit", "--recipe", "stylegan2-shapes32"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        f"lightning-gan: error: Unknown architecture 'stylegan2': it is provided by {MISSING_STYLEGAN2}.")


def test_installed_recipes_build(wheel_env, tmp_path) -> None:
    """The recipes whose plugins are installed parse, resolve every name and build (the conformance kit)."""
    python, _ = wheel_env
    result = run_in(python, ["-c", CHECK_BUILDABLE, "quickstart", "dcgan-shapes32"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["built", "quickstart", "built", "dcgan-shapes32"]
