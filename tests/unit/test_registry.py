"""Registry: discovery from entry points, unknown/broken/duplicate names, register(), autoload off."""

from __future__ import annotations

import importlib.metadata
import json
import re
import sys
from pathlib import Path

import pytest

from conftest import run_process  # tests/conftest.py
from lightning_gan import registry
from lightning_gan.interfaces import AdversarialLoss
from lightning_gan.losses import HingeLoss

ACME_SOURCE = """
from lightning_gan.interfaces import AdversarialLoss

class AcmeLoss(AdversarialLoss):
    def __init__(self, *, scale: float = 2.0):
        self.scale = scale
    def generator_loss(self, fake_logits):
        return -self.scale * fake_logits.mean()
    def discriminator_loss(self, real_logits, fake_logits):
        return self.scale * (fake_logits.mean() - real_logits.mean())

class NotALoss:
    pass
"""

ROOT = Path(__file__).resolve().parents[2]


def test_builtins_are_listed_from_the_core_distribution() -> None:
    reg = registry.get_registry("losses")
    assert {"non_saturating", "hinge", "wasserstein", "least_squares"} <= set(reg.names())
    entries = {e.name: e for e in reg.entries()}
    assert entries["hinge"].distribution == "lightning-gan"
    assert entries["hinge"].target == "lightning_gan.losses.adversarial:HingeLoss"
    assert reg.load("hinge") is HingeLoss
    assert set(registry.get_registry("regularizers").names()) >= {"r1", "r2", "gradient_penalty"}


def test_unknown_name_lists_available_and_close_matches() -> None:
    with pytest.raises(registry.UnknownPluginError) as info:
        registry.load("losses", "hingee")
    message = str(info.value)
    assert "Unknown loss 'hingee'" in message
    assert "Did you mean 'hinge'" in message
    for name in ("hinge", "least_squares", "non_saturating", "wasserstein"):
        assert name in message
    assert info.value.close_matches[0] == "hinge"
    assert isinstance(info.value, LookupError)


def test_third_party_entry_point_is_listed_without_import_and_loads(fake_distribution) -> None:
    fake_distribution("acme-gan", {"lightning_gan.losses": {"acme": "acme_gan:AcmeLoss"}},
                      version="2.3", modules={"acme_gan": ACME_SOURCE})
    reg = registry.get_registry("losses")
    assert "acme" in reg.names()
    assert "acme_gan" not in sys.modules  # listing imported nothing
    (entry,) = [e for e in reg.entries() if e.name == "acme"]
    assert (entry.distribution, entry.version, entry.target) == ("acme-gan", "2.3", "acme_gan:AcmeLoss")
    assert reg.status(entry) == "not loaded"
    loss = reg.create("acme", scale=3.0)
    assert isinstance(loss, AdversarialLoss) and loss.scale == 3.0
    assert reg.status(entry) == "loaded"
    # resolve() accepts the plain-data config form that checkpoints store
    rebuilt = registry.resolve("losses", loss.config())
    assert type(rebuilt).__name__ == "AcmeLoss" and rebuilt.scale == 3.0


def test_broken_plugin_names_entry_point_and_distribution_and_others_still_work(fake_distribution) -> None:
    fake_distribution("broken-gan", {"lightning_gan.losses": {"kaput": "broken_gan:Loss"}}, version="0.4",
                      modules={"broken_gan": "import module_that_does_not_exist\n"})
    with pytest.raises(registry.BrokenPluginError) as info:
        registry.load("losses", "kaput")
    message = str(info.value)
    assert "'kaput = broken_gan:Loss'" in message
    assert "broken-gan 0.4" in message
    assert "lightning_gan.losses" in message
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    rows = {(e.group, e.name): status for e, status in registry.list_plugins(["losses"], load=True)}
    assert rows[("losses", "kaput")].startswith("broken: ModuleNotFoundError")
    assert rows[("losses", "hinge")] == "loaded"
    assert registry.load("losses", "hinge") is HingeLoss


def test_entry_point_of_the_wrong_type_is_broken(fake_distribution) -> None:
    fake_distribution("acme-gan", {"lightning_gan.losses": {"notaloss": "acme_gan:NotALoss"}},
                      modules={"acme_gan": ACME_SOURCE})
    with pytest.raises(registry.BrokenPluginError, match="not a AdversarialLoss"):
        registry.load("losses", "notaloss")


def test_same_name_from_two_distributions_names_both(fake_distribution) -> None:
    fake_distribution("acme-gan", {"lightning_gan.losses": {"shared": "acme_gan:AcmeLoss"}},
                      modules={"acme_gan": ACME_SOURCE})
    fake_distribution("other-gan", {"lightning_gan.losses": {"shared": "lightning_gan.losses:HingeLoss"}},
                      version="9.9")
    with pytest.raises(registry.DuplicatePluginError) as info:
        registry.load("losses", "shared")
    assert "acme-gan 1.0" in str(info.value) and "other-gan 9.9" in str(info.value)
    statuses = [s for e, s in registry.list_plugins(["losses"]) if e.name == "shared"]
    assert len(statuses) == 2 and all(s.startswith("conflict") for s in statuses)
    # A full import path picks one of them.
    assert type(registry.resolve("losses", "acme_gan.AcmeLoss")).__name__ == "AcmeLoss"
    assert registry.load("losses", "lightning_gan.losses:HingeLoss") is HingeLoss


def test_register_in_process_and_collisions() -> None:
    reg = registry.Registry("losses")

    @reg.register("my_loss")
    class MyLoss(HingeLoss):
        pass

    assert reg.load("my_loss") is MyLoss
    assert "my_loss" in reg.names()
    with pytest.raises(registry.DuplicatePluginError, match="'my_loss' is already present in the registry"):
        reg.register("my_loss", HingeLoss)
    with pytest.raises(registry.DuplicatePluginError, match="'hinge' is already present"):
        reg.register("hinge", MyLoss)
    reg.register("hinge", MyLoss, replace=True)
    assert reg.load("hinge") is MyLoss
    with pytest.raises(ValueError, match="lower snake case"):
        reg.register("BadName", MyLoss)
    with pytest.raises(registry.BrokenPluginError, match="not a AdversarialLoss"):
        reg.register("not_a_loss", dict)
    reg.unregister("my_loss")
    assert "my_loss" not in reg.names()


def test_autoload_off_keeps_only_core_entry_points(fake_distribution, monkeypatch) -> None:
    fake_distribution("acme-gan", {"lightning_gan.losses": {"acme": "acme_gan:AcmeLoss"}},
                      modules={"acme_gan": ACME_SOURCE})
    assert "acme" in registry.get_registry("losses").names()
    monkeypatch.setenv(registry.AUTOLOAD_ENV, "1")
    registry.refresh()
    names = registry.get_registry("losses").names()
    assert "acme" not in names and "hinge" in names
    assert "mlp" not in registry.get_registry("architectures").names()  # first-party plugins are plugins too
    reg = registry.Registry("losses")
    reg.register("local", HingeLoss)
    assert "local" in reg.names()


def test_recipes_are_the_files_of_the_top_level_recipes_folder() -> None:
    """Every recipes/<name>.yaml is the core's recipe <name> (no entry point), and no recipe hides elsewhere."""
    folder = ROOT / "recipes"
    files = sorted(folder.glob("*.yaml"))
    assert {"quickstart", "dcgan-shapes32", "stylegan2-shapes32"} <= {f.stem for f in files}
    entries = {e.name: e for e in registry.get_registry("recipes").entries()}
    for file in files:
        assert re.fullmatch(r"[a-z][a-z0-9_\-]*", file.stem), f"{file.name}: recipe names are lower case"
        assert registry.recipe_path(file.stem).resolve() == file.resolve()
        assert entries[file.stem].distribution == registry.CORE_DISTRIBUTION
        assert registry.recipe_description(file)
    stray = [p for where in ("lightning_gan", "plugins") for p in (ROOT / where).rglob("*.yaml")]
    assert stray == [], "first-party recipes belong in the top-level recipes/ folder"
    path = registry.recipe_path("quickstart")
    assert registry.recipe_path(str(path)) == path  # a file path is accepted as it is
    with pytest.raises(registry.UnknownPluginError, match="Did you mean 'quickstart'"):
        registry.recipe_path("quickstrat")


def test_first_party_table_matches_the_plugins_entry_points() -> None:
    """FIRST_PARTY_PLUGINS (what the core tells users to install) is exactly what plugins/*/ declare."""
    import tomllib  # requires-python >= 3.11: always there
    declared: dict[str, dict[str, tuple[str, ...]]] = {}
    for pyproject in sorted((ROOT / "plugins").glob("*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        groups = {g.removeprefix(registry.ENTRY_POINT_PREFIX): tuple(sorted(eps))
                  for g, eps in project.get("entry-points", {}).items() if g.startswith(registry.ENTRY_POINT_PREFIX)}
        declared[project["name"]] = groups
    table = {d: {g: tuple(sorted(names)) for g, names in groups.items()}
             for d, groups in registry.FIRST_PARTY_PLUGINS.items()}
    assert table == declared


def test_unknown_first_party_name_says_which_distribution(monkeypatch) -> None:
    monkeypatch.setenv(registry.AUTOLOAD_ENV, "1")
    registry.refresh()
    with pytest.raises(registry.UnknownPluginError) as info:
        registry.load("architectures", "mlp")
    assert str(info.value) == (
        f"Unknown architecture 'mlp': it is provided by lightning-gan-dcgan {importlib.metadata.version('lightning-gan-dcgan')}, "
        f"whose entry points are ignored because {registry.AUTOLOAD_ENV} is set: unset it (or register the plugin "
        f"in-process with lightning_gan.register).")
    with pytest.raises(registry.UnknownPluginError, match=f"Available losses: .*hinge.*{registry.AUTOLOAD_ENV} is set"):
        registry.load("losses", "hingee")
    monkeypatch.delenv(registry.AUTOLOAD_ENV)
    registry.refresh()
    monkeypatch.setitem(registry.FIRST_PARTY_PLUGINS, "lightning-gan-nowhere", {"losses": ("nowhere",)})
    with pytest.raises(registry.UnknownPluginError) as info:
        registry.load("losses", "nowhere")
    assert str(info.value) == ("Unknown loss 'nowhere': it is provided by lightning-gan-nowhere, which is not "
                               "installed: pip install lightning-gan-nowhere.")


def test_entry_points_in_a_misspelled_group_are_listed_with_the_closest_group(fake_distribution, capsys) -> None:
    fake_distribution("typo-gan", {"lightning_gan.architecture": {"typo_arch": "typo_gan:Arch"},
                                   "lightning_gan.loss": {"typo_loss": "typo_gan:Loss"}}, version="0.2")
    rows = {e.name: (e.group, e.provider, status) for e, status in registry.unknown_group_entries()}
    assert rows == {
        "typo_arch": ("lightning_gan.architecture", "typo-gan 0.2",
                      "ignored: unknown group 'lightning_gan.architecture'; did you mean 'lightning_gan.architectures'?"),
        "typo_loss": ("lightning_gan.loss", "typo-gan 0.2",
                      "ignored: unknown group 'lightning_gan.loss'; did you mean 'lightning_gan.losses'?"),
    }
    with pytest.raises(registry.UnknownPluginError) as info:
        registry.load("architectures", "typo_arch")
    assert str(info.value) == ("Unknown architecture 'typo_arch': typo-gan 0.2 declares it in the entry-point group "
                               "'lightning_gan.architecture', which lightning-gan does not read; rename the group to "
                               "'lightning_gan.architectures' and reinstall it.")
    from lightning_gan.cli import plugins_command

    assert plugins_command(["--no-load"]) == 1
    assert ("typo-gan 0.2 declares 'typo_arch' in an unknown group 'lightning_gan.architecture'; did you mean "
            "'lightning_gan.architectures'?") in capsys.readouterr().out.splitlines()


RECIPE_NAMING_PLUGINS = """\
# A recipe that names plugins in every way a recipe can.
model:
  architecture:
    class_path: stylegan2
    init_args: {resolution: 16}
  loss: hinge
  regularizers:
    - class_path: path_length
    - r1
  g_optimizer: {class_path: torch.optim.Adam}
trainer:
  callbacks:
    - class_path: lightning_gan.callbacks.GANProgressBar
data:
  class_path: lightning_gan_dcgan.dcgan.DCGANArchitecture  # any class path of a plugin package counts
"""


def test_recipe_needs_are_read_from_names_and_class_paths(tmp_path, monkeypatch) -> None:
    recipe = tmp_path / "mine.yaml"
    recipe.write_text(RECIPE_NAMING_PLUGINS)
    needs = registry.recipe_needs(recipe)
    assert needs == registry.RecipeNeeds(plugins=("lightning-gan-dcgan", "lightning-gan-stylegan2"), missing=())
    assert needs.message("mine") == ""
    assert registry.recipe_needs(registry.recipe_path("quickstart")).plugins == ("lightning-gan-dcgan",)
    assert registry.recipe_needs(registry.recipe_path("stylegan2-shapes32")).plugins == ("lightning-gan-stylegan2",)

    recipe.write_text(RECIPE_NAMING_PLUGINS + "  init_args: {other: {class_path: nowhere_pkg.mod.Thing}}\n")
    assert registry.recipe_needs(recipe).missing == (
        "the module 'nowhere_pkg' (for nowhere_pkg.mod.Thing), which is not installed",)

    monkeypatch.setenv(registry.AUTOLOAD_ENV, "1")
    registry.refresh()
    recipe.write_text(RECIPE_NAMING_PLUGINS)
    needs = registry.recipe_needs(recipe)
    assert needs.plugins == ("lightning-gan-dcgan", "lightning-gan-stylegan2")
    assert needs.missing == (registry.distribution_problem("lightning-gan-stylegan2"),)  # the dcgan class path imports
    assert needs.message("mine") == f"Recipe 'mine' needs {registry.distribution_problem('lightning-gan-stylegan2')}."
    assert registry.AUTOLOAD_ENV in needs.message("mine")

    recipe.write_text("- just a list\n")
    with pytest.raises(registry.BrokenPluginError, match="is not a YAML mapping"):
        registry.recipe_needs(recipe)


def test_import_lightning_gan_imports_no_plugin_and_no_torch() -> None:
    code = (
        "import sys, json, lightning_gan, lightning_gan.registry as r;"
        "names = r.get_registry('architectures').names();"
        "print(json.dumps({'names': names, 'mods': sorted(m for m in sys.modules if m.startswith(('lightning_gan_', 'torch')))}))"
    )
    out = run_process([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout
    result = json.loads(out)
    assert "mlp" in result["names"]
    assert result["mods"] == []


def test_the_cores_quickstart_with_autoload_off_says_what_to_do(monkeypatch, capsys, tmp_path) -> None:
    """The issue's case: `quickstart` names `mlp`, which another distribution provides."""
    from lightning_gan.cli import main

    monkeypatch.setenv(registry.AUTOLOAD_ENV, "1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lightning-gan"])
    registry.refresh()
    with pytest.raises(SystemExit) as info:
        main(["fit", "--recipe", "quickstart"])
    assert info.value.code == 2
    assert capsys.readouterr().err.splitlines()[0] == (
        f"lightning-gan: error: Unknown architecture 'mlp': it is provided by lightning-gan-dcgan "
        f"{importlib.metadata.version('lightning-gan-dcgan')}, whose entry points are ignored because "
        f"{registry.AUTOLOAD_ENV} is set: unset it (or register the plugin in-process with lightning_gan.register).")
