"""Registry: discovery from entry points, unknown/broken/duplicate names, register(), autoload off."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

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


def test_recipes_are_files_shipped_with_the_package() -> None:
    path = registry.recipe_path("quickstart")
    assert path.name == "quickstart.yaml" and path.is_file()
    assert registry.recipe_description(path)
    with pytest.raises(registry.UnknownPluginError, match="Did you mean 'quickstart'"):
        registry.recipe_path("quickstrat")


def test_import_lightning_gan_imports_no_plugin_and_no_torch() -> None:
    code = (
        "import sys, json, lightning_gan, lightning_gan.registry as r;"
        "names = r.get_registry('architectures').names();"
        "print(json.dumps({'names': names, 'mods': sorted(m for m in sys.modules if m.startswith(('lightning_gan_', 'torch')))}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    assert "mlp" in result["names"]
    assert result["mods"] == []
