"""Run-time contracts: the first iteration checks shapes and finiteness, later NaN stops the run before
metrics, plugin objects that break their contract and files whose plugin is missing fail with one clear line."""

from __future__ import annotations

import importlib.metadata as metadata
import json

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from conftest import make_trainer  # tests/conftest.py
from lightning_gan.callbacks import LazyR1
from lightning_gan.checkpoint import (
    MissingPluginError,
    export_generator,
    load_generator,
    plugin_distributions,
    require_plugin,
)
from lightning_gan.data.toy2d import Toy2DDataModule
from lightning_gan.errors import ConfigError
from lightning_gan.interfaces import ArchitectureSpec, ContractError, NetworkPair
from lightning_gan.module import GANModule, NonFiniteError
from lightning_gan.phases import PhaseSchedule
from lightning_gan.regularizers import R1, R2
from lightning_gan.testing import TinyArchitecture
from lightning_gan.testing.tiny import TinyDiscriminator, TinyGenerator


def toy(num_samples: int = 200, batch_size: int = 20) -> Toy2DDataModule:
    return Toy2DDataModule(num_samples=num_samples, batch_size=batch_size)


class WideGenerator(TinyGenerator):
    """Declares ``(data_dim,)`` but appends one more column."""

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        out = super().forward(z, c)
        return torch.cat([out, out[:, :1]], dim=1)


class ColumnDiscriminator(TinyDiscriminator):
    """Returns logits [N, 1] instead of [N]."""

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        return super().forward(x, c)[:, None]


class NaNGenerator(TinyGenerator):
    """NaN from its ``after``-th training-mode call on (0: from the first call)."""

    def __init__(self, *, after: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.after, self.calls = after, 0

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        out = super().forward(z, c)
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                return out * float("nan")
        return out


class BrokenArchitecture(TinyArchitecture):
    """TinyArchitecture with one network swapped for a broken variant."""

    def __init__(self, *, broken: str = "wide", after: int = 0) -> None:
        super().__init__()
        self.broken, self.after = broken, after

    def build(self) -> NetworkPair:
        g, d = super().build()
        kw = dict(z_dim=self.z_dim, data_dim=self.data_dim, hidden=self.hidden)
        if self.broken == "wide":
            g = WideGenerator(**kw)
        elif self.broken == "column":
            d = ColumnDiscriminator(data_dim=self.data_dim, hidden=self.hidden)
        elif self.broken == "nan":
            g = NaNGenerator(after=self.after, **kw)
        return NetworkPair(g, d)


def tensor_data(x: Tensor) -> pl.LightningDataModule:
    """A datamodule without ``data_shape``: only the batches tell what the data is."""
    return pl.LightningDataModule.from_datasets(train_dataset=TensorDataset(x), batch_size=20)


@pytest.mark.parametrize(("broken", "data", "error", "message", "iteration"), [
    ("wide", None, ContractError,
     r"^WideGenerator \(architecture BrokenArchitecture\) declares output_shape \(2,\) but returned a tensor of "
     r"shape \[20, 3\]; make forward return \[N, \*output_shape\]", 0),
    ("column", None, ContractError,
     r"^ColumnDiscriminator \(architecture BrokenArchitecture\) returned logits of shape \[20, 1\] for 20 samples; "
     r"a discriminator returns one logit per sample, shape \[N\] = \[20\]", 0),
    ("nan", None, NonFiniteError, r"^NaNGenerator's output is NaN/inf on its first call, before any update", 1),
    ("none", torch.randn(100, 3), ConfigError, r"generator makes samples of shape \(2,\) but the data's batches "
                                               r"hold \(3,\) \(batch \[20, 3\]\)", 0),
    ("none", torch.full((100, 2), float("nan")), NonFiniteError, r"^The real batch holds NaN/inf at iteration 0", 1),
])
def test_the_first_iteration_checks_the_contracts(tmp_path, broken, data, error, message, iteration) -> None:
    module = GANModule(architecture=BrokenArchitecture(broken=broken), metrics=[], log_every_n_iterations=50)
    datamodule = toy() if data is None else tensor_data(data)
    with pytest.raises(error, match=message) as info:
        make_trainer(tmp_path).fit(module, datamodule)
    assert "\n" not in str(info.value) and isinstance(info.value, ConfigError)  # one line, shown by the CLI
    assert module.iteration == iteration  # refused on the first iteration, not at the first log (50)


def test_the_checks_cost_one_host_sync_on_the_first_iteration_only(tmp_path, monkeypatch) -> None:
    """Between logs no value leaves the device: the finiteness check runs on the first iteration, at each log and
    at the end of the run (here: iteration 0, the log after iterations 4 and 9, the stop, the epoch end)."""
    checks: list[int] = []
    original = GANModule._check_finite

    def spy(self, *, first: bool = False) -> None:
        checks.append(self.iteration)
        original(self, first=first)

    monkeypatch.setattr(GANModule, "_check_finite", spy)
    module = GANModule(architecture=TinyArchitecture(), metrics=[], log_every_n_iterations=5, total_kimg=0.2)
    make_trainer(tmp_path).fit(module, toy())
    assert module.iteration == 10
    assert checks[:3] == [1, 5, 10] and set(checks[3:]) == {10}  # then the stop, epoch end and train end


def test_nan_after_a_few_steps_stops_the_run_before_checkpoints_and_metrics(tmp_path) -> None:
    """Non-finite values that appear at iteration 3 of a 10-iteration run (shorter than the log interval of 50):
    the run stops with the window named, writes no checkpoint and reports no metrics."""
    module = GANModule(architecture=BrokenArchitecture(broken="nan", after=6), total_kimg=0.2)  # 2 G calls/iteration
    checkpoints = tmp_path / "ckpt"
    trainer = make_trainer(tmp_path, enable_checkpointing=True, callbacks=[ModelCheckpoint(dirpath=checkpoints)])
    with pytest.raises(NonFiniteError, match=r"^Non-finite loss/Dmain, loss/Gmain.* at an iteration in 1-9 "
                                             r"\(0.2 kimg\): the game diverged"):
        trainer.fit(module, toy())
    assert module.iteration == 10
    assert module.final_metrics == {} and not list(checkpoints.glob("*.ckpt"))


def test_lazy_intervals_of_one_network_conflict_in_one_line(tmp_path) -> None:
    assert "all lazy regularizers (interval > 1) of one network share one" in " ".join(PhaseSchedule.__doc__.split())
    with pytest.raises(ConfigError, match=r"^Lazy regularizers of the discriminator must share one interval \(one "
                                          r"interval per network: one Dreg phase\), got R1\(interval=16\), "
                                          r"R2\(interval=4\); give them the same interval"):
        PhaseSchedule([R1(gamma=1.0, interval=16), R2(gamma=1.0, interval=4)])
    # a plugin's regularizer every 8 iterations plus the LazyR1 callback every 4: refused when fit sets up
    module = GANModule(architecture=TinyArchitecture(), regularizers=[R2(gamma=1.0, interval=8)], metrics=[])
    with pytest.raises(ConfigError, match=r"got R2\(interval=8\), R1\(interval=4\)"):
        make_trainer(tmp_path, callbacks=[LazyR1(gamma=1.0, interval=4)]).fit(module, toy())


class ForgetfulArchitecture(ArchitectureSpec):
    def __init__(self, *, width: int = 8) -> None:
        self._width = width

    def build(self) -> NetworkPair:
        return TinyArchitecture(hidden=self._width).build()


def test_an_architecture_that_forgets_its_arguments_is_told_what_to_do() -> None:
    with pytest.raises(ContractError, match=r"^ForgetfulArchitecture must keep its constructor argument 'width' as "
                                            r"an attribute .*: add `self.width = width` to its __init__$"):
        GANModule(architecture=ForgetfulArchitecture(), metrics=[])


# -- files whose plugin is not installed ---------------------------------------------------------------------
def test_checkpoints_record_the_distribution_of_each_plugin_class() -> None:
    record = plugin_distributions({"architecture": {"class_path": "lightning_gan_dcgan.mlp.MLPArchitecture"},
                                   "loss": {"class_path": "lightning_gan.losses.adversarial.HingeLoss"}})
    assert record == {"lightning_gan_dcgan.mlp.MLPArchitecture":
                      f"lightning-gan-dcgan {metadata.version('lightning-gan-dcgan')}"}  # the core is not listed


@pytest.mark.parametrize(("class_path", "plugins", "message"), [
    ("stranger_gan_xyz.arch.StrangerArchitecture", {"stranger_gan_xyz.arch.StrangerArchitecture": "stranger-gan 0.3"},
     r"^RUN.ckpt needs the architecture stranger_gan_xyz.arch.StrangerArchitecture from the plugin distribution "
     r"stranger-gan, which is not installed \(the run used 0.3\); install it \(pip install stranger-gan\)"),
    ("lightning_gan_xyz.layers.XyzArchitecture", None,  # first-party naming: module lightning_gan_<x>
     r"^RUN.ckpt needs the architecture lightning_gan_xyz.layers.XyzArchitecture from the plugin distribution "
     r"lightning-gan-xyz, which is not installed; install it \(pip install lightning-gan-xyz\)"),
    ("stranger_gan_xyz.arch.StrangerArchitecture", None,
     r"^RUN.ckpt needs the architecture stranger_gan_xyz.arch.StrangerArchitecture, but no module named "
     r"'stranger_gan_xyz' is installed; install the plugin distribution that provides 'stranger_gan_xyz'"),
])
def test_a_missing_plugin_is_named_with_its_distribution(class_path, plugins, message) -> None:
    with pytest.raises(MissingPluginError, match=message):
        require_plugin({"class_path": class_path, "init_args": {}}, kind="architecture", source="RUN.ckpt",
                       plugins=plugins)


def test_a_plugin_whose_own_dependency_is_missing_names_that_module(tmp_path, monkeypatch) -> None:
    (tmp_path / "needs_dep_xyz.py").write_text("import missing_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingPluginError, match=r"needs the metric needs_dep_xyz.Metric, which imports the module "
                                                 r"'missing_dependency_xyz', not installed here"):
        require_plugin("needs_dep_xyz.Metric", kind="metric", source="RUN.ckpt")


def test_load_generator_of_an_export_whose_plugin_is_missing(tmp_path) -> None:
    generator = TinyArchitecture().build().generator
    weights, config_path = export_generator(generator, tmp_path / "G.safetensors",
                                            architecture=TinyArchitecture().config())
    assert load_generator(weights).z_dim == 2  # the plugin here: loads
    config = json.loads(config_path.read_text())
    config["architecture"]["class_path"] = "stranger_gan_xyz.arch.StrangerArchitecture"
    config["plugins"] = {"stranger_gan_xyz.arch.StrangerArchitecture": "stranger-gan 0.3"}
    config_path.write_text(json.dumps(config))
    with pytest.raises(MissingPluginError, match=r"G.safetensors needs the architecture stranger_gan_xyz.arch."
                                                 r"StrangerArchitecture from the plugin distribution stranger-gan"):
        load_generator(weights)
