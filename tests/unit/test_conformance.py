"""The conformance kit: it passes the built-ins and the tiny architecture, and catches deliberate faults.

The broken plugins live at module level so that their ``config()`` class paths import.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule
from lightning.pytorch.plugins.precision import Precision
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_gan.interfaces import AdversarialLoss, NetworkPair, PenaltyInputs, Regularizer
from lightning_gan.losses import HingeLoss, NonSaturatingLoss
from lightning_gan.metrics.base import GeneratorMetric
from lightning_gan.precision.plugins import GANPrecision
from lightning_gan.testing import (
    ConformanceError,
    TinyArchitecture,
    TinyDiscriminator,
    TinyGenerator,
    check_architecture,
    check_datamodule,
    check_loss,
    check_metric,
    check_precision,
    check_recipe,
    check_regularizer,
)


# -- the kit passes what conforms ---------------------------------------------------------------
@pytest.mark.parametrize("c_dim", [0, 3])
def test_tiny_architecture_conforms(c_dim: int) -> None:
    g, d = check_architecture(TinyArchitecture(c_dim=c_dim))
    assert (g.z_dim, g.c_dim, g.output_shape, d.input_shape) == (2, c_dim, (2,), (2,))


def test_tiny_architecture_is_tiny() -> None:
    g, d = TinyArchitecture(data_dim=2, z_dim=2, hidden=8).build()
    assert sum(p.numel() for p in g.parameters()) == (2 * 8 + 8) + (8 * 2 + 2)
    assert sum(p.numel() for p in d.parameters()) == (2 * 8 + 8) + (8 + 1)


def test_accepts_a_config_mapping_and_returns_the_checked_pair() -> None:
    pair = check_architecture({"class_path": "lightning_gan.testing.tiny.TinyArchitecture",
                               "init_args": {"data_dim": 3, "hidden": 4}})
    assert isinstance(pair, NetworkPair) and pair.generator.output_shape == (3,)


def test_leaves_the_global_rng_untouched() -> None:
    torch.manual_seed(123)
    state = torch.get_rng_state()
    check_architecture(TinyArchitecture())
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("name", ["non_saturating", "hinge", "wasserstein", "least_squares", "relativistic_pairing"])
def test_builtin_losses_conform(name: str) -> None:
    check_loss(name)


@pytest.mark.parametrize("name", ["r1", "r2", "gradient_penalty"])
@pytest.mark.parametrize("c_dim", [0, 2])
def test_builtin_regularizers_conform(name: str, c_dim: int) -> None:
    reg = check_regularizer(name, architecture=TinyArchitecture(c_dim=c_dim))
    assert reg.network == "discriminator"


def test_conformance_error_is_an_assertion_error() -> None:
    assert issubclass(ConformanceError, AssertionError)


# -- broken architectures ------------------------------------------------------------------------
class _WrongShapeGenerator(TinyGenerator):
    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        return super().forward(z, c)[:, :1]  # declares (2,), makes [N, 1]


class _UnusedParameterGenerator(TinyGenerator):
    def __init__(self, **kwargs: int) -> None:
        super().__init__(**kwargs)
        self.unused = nn.Linear(2, 2)  # never called in forward


class _CancelledBiasGenerator(TinyGenerator):
    def __init__(self, **kwargs: int) -> None:
        super().__init__(**kwargs)
        self.offset = nn.Parameter(torch.zeros(2))
        self.norm = nn.BatchNorm1d(2, affine=False)  # removes the per-feature mean, and with it `offset`

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        return self.norm(super().forward(z, c) + self.offset)


class _NaNGenerator(TinyGenerator):
    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        return super().forward(z, c) * float("nan")


class _HiddenStateGenerator(TinyGenerator):
    def __init__(self, **kwargs: int) -> None:
        super().__init__(**kwargs)
        self.shift = torch.randn(2)  # a plain attribute: neither parameter nor buffer

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        return super().forward(z, c) + self.shift


class _LenientGenerator(TinyGenerator):
    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        if c is None:
            c = torch.zeros(z.shape[0], self.c_dim)  # silently unconditional: the bug under test
        return super().forward(z, c)


class _ColumnDiscriminator(TinyDiscriminator):
    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        return super().forward(x, c).unsqueeze(1)  # [N, 1] instead of [N]


class _SwappedGenerator(TinyArchitecture):
    """Builds ``generator_class`` (set by subclasses) with TinyArchitecture's discriminator."""

    generator_class: type[TinyGenerator] = TinyGenerator
    discriminator_class: type[TinyDiscriminator] = TinyDiscriminator

    def build(self) -> NetworkPair:
        return NetworkPair(
            self.generator_class(z_dim=self.z_dim, c_dim=self.c_dim, data_dim=self.data_dim, hidden=self.hidden),
            self.discriminator_class(c_dim=self.c_dim, data_dim=self.data_dim, hidden=self.hidden),
        )


class WrongShapeSpec(_SwappedGenerator):
    generator_class = _WrongShapeGenerator


class UnusedParameterSpec(_SwappedGenerator):
    generator_class = _UnusedParameterGenerator


class CancelledBiasSpec(_SwappedGenerator):
    generator_class = _CancelledBiasGenerator


class NaNSpec(_SwappedGenerator):
    generator_class = _NaNGenerator


class HiddenStateSpec(_SwappedGenerator):
    generator_class = _HiddenStateGenerator


class LenientSpec(_SwappedGenerator):
    generator_class = _LenientGenerator


class ColumnLogitsSpec(_SwappedGenerator):
    discriminator_class = _ColumnDiscriminator


class MismatchedConditionSpec(TinyArchitecture):
    def build(self) -> NetworkPair:
        return NetworkPair(TinyGenerator(z_dim=2, c_dim=3, data_dim=2, hidden=4),
                           TinyDiscriminator(c_dim=0, data_dim=2, hidden=4))


class ForgetfulSpec(TinyArchitecture):
    """Does not keep its argument ``width`` as an attribute of that name."""

    def __init__(self, *, width: int = 4) -> None:
        super().__init__(hidden=width)


class DoublingSpec(TinyArchitecture):
    """Stores a transformed value under the argument's name, so its config does not rebuild it."""

    def __init__(self, *, hidden: int = 4) -> None:
        super().__init__(hidden=hidden * 2)


class GrowingSpec(TinyArchitecture):
    """Reads mutable state outside its arguments: each build is one unit wider than the last."""

    builds = 0

    def build(self) -> NetworkPair:
        GrowingSpec.builds += 1
        return TinyArchitecture(hidden=self.hidden + GrowingSpec.builds).build()


class CachedSpec(TinyArchitecture):
    """Returns the same networks from every build()."""

    def build(self) -> NetworkPair:
        if not hasattr(CachedSpec, "_pair"):
            CachedSpec._pair = super().build()
        return CachedSpec._pair


@pytest.mark.parametrize(("spec", "message"), [
    (WrongShapeSpec(), r"generator\(z, c\) returned shape \[4, 1\], expected \[4, 2\]"),
    (UnusedParameterSpec(), r"generator parameters with no gradient \(None; unused in forward\?\): "
                            r"unused\.weight, unused\.bias"),
    (CancelledBiasSpec(), r"generator parameters with an all-zero gradient .*: offset"),
    (NaNSpec(), r"generator\(z, c\) returned 8 non-finite values"),
    (HiddenStateSpec(), r"generator rebuilt from spec\.config\(\) .* computes different outputs"),
    (LenientSpec(c_dim=2), r"conditional generator \(c_dim=2\) accepted c=None"),
    (ColumnLogitsSpec(), r"one logit per sample, shape \[N\] = \[4\]"),
    (MismatchedConditionSpec(), r"discriminator\.c_dim=0 differs from generator\.c_dim=3"),
    (ForgetfulSpec(), r"config\(\) failed: ForgetfulSpec must keep its constructor argument 'width'"),
    (DoublingSpec(hidden=4), r"config does not round-trip: resolve\(config\)\.config\(\) gives "
                             r"\{.*'init_args': \{'hidden': 16\}\}, expected \{.*'init_args': \{'hidden': 8\}\}"),
    (GrowingSpec(), r"the generator rebuilt from spec\.config\(\) has a different state: "
                    r"net\.0\.bias: \((\d+),\) vs \((?!\1\b)\d+,\); net\.0\.weight: "),
    (CachedSpec(), r"two build\(\) calls share parameters"),
])
def test_catches_broken_architectures(spec: TinyArchitecture, message: str) -> None:
    with pytest.raises(ConformanceError, match=message) as info:
        check_architecture(spec)
    assert str(info.value).startswith(f"{type(spec).__name__}: ")


# -- broken losses -------------------------------------------------------------------------------
class SummedLoss(NonSaturatingLoss):
    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        return F.softplus(-fake_logits).sum()


class BackwardsLoss(NonSaturatingLoss):
    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        return F.softplus(fake_logits).mean()  # the generator would push its samples towards "fake"


class NaiveLogLoss(NonSaturatingLoss):
    def discriminator_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return -(torch.sigmoid(real_logits).log() + (1 - torch.sigmoid(fake_logits)).log()).mean()


class PerSampleLoss(NonSaturatingLoss):
    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        return F.softplus(-fake_logits)


class ConstantLoss(AdversarialLoss):
    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        return fake_logits.sum() * 0.0

    def discriminator_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return (real_logits - fake_logits).mean()


@pytest.mark.parametrize(("loss", "message"), [
    (SummedLoss(), r"generator_loss is not a batch mean"),
    (BackwardsLoss(), r"generator_loss must fall as D scores the fakes higher"),
    (NaiveLogLoss(), r"discriminator_loss at logits [+-]50 .*non-finite"),
    (PerSampleLoss(), r"must return a scalar tensor .* got \[8\]"),
    (ConstantLoss(), r"generator_loss gives an all-zero gradient"),
])
def test_catches_broken_losses(loss: AdversarialLoss, message: str) -> None:
    with pytest.raises(ConformanceError, match=message):
        check_loss(loss)


# -- broken regularizers -------------------------------------------------------------------------
class DetachedPenalty(Regularizer):
    network = "discriminator"

    def __init__(self, *, weight: float = 1.0, interval: int = 1) -> None:
        super().__init__(weight=weight, interval=interval)

    def forward(self, inputs: PenaltyInputs) -> Tensor:
        with torch.no_grad():
            return self.weight * inputs.discriminator(inputs.real, inputs.real_c).square().mean()


class NowherePenalty(DetachedPenalty):
    network = "both"  # type: ignore[assignment]


class WrongNetworkPenalty(DetachedPenalty):
    """Claims the generator but penalizes the discriminator: nothing of the generator gets a gradient."""

    network = "generator"

    def forward(self, inputs: PenaltyInputs) -> Tensor:
        return self.weight * inputs.discriminator(inputs.real, inputs.real_c).square().mean()


class UnsavedPenalty(DetachedPenalty):
    def __init__(self, *, strength: float = 1.0) -> None:
        super().__init__(weight=strength)

    def forward(self, inputs: PenaltyInputs) -> Tensor:
        return self.weight * inputs.discriminator(inputs.real, inputs.real_c).square().mean()


@pytest.mark.parametrize(("reg", "message"), [
    (DetachedPenalty(), r"does not depend on the discriminator's parameters"),
    (NowherePenalty(), r"`network` must be 'generator' or 'discriminator', got 'both'"),
    (WrongNetworkPenalty(), r"does not depend on the generator's parameters"),
    (UnsavedPenalty(), r"must keep its constructor argument 'strength'"),
])
def test_catches_broken_regularizers(reg: Regularizer, message: str) -> None:
    with pytest.raises(ConformanceError, match=message):
        check_regularizer(reg)


# -- precision plugins ---------------------------------------------------------------------------
class NoStepPrecision(Precision):
    """Runs the closure but never steps the optimizer."""

    def optimizer_step(self, optimizer, model, closure, **kwargs):  # noqa: ANN001, ANN003, ANN201
        return closure()


class _Opaque:
    """A custom object: a checkpoint would have to unpickle code to load it."""


class PickledStatePrecision(Precision):
    def state_dict(self) -> dict:
        return {"scale": _Opaque()}


class AmnesicPrecision(Precision):
    """Counts its state_dict calls and ignores load_state_dict: a resume would not continue the run."""

    def __init__(self) -> None:
        self.calls = 0

    def state_dict(self) -> dict:
        self.calls += 1
        return {"calls": self.calls}


class OneNetworkPrecision(Precision, GANPrecision):
    @contextlib.contextmanager
    def network(self, name: str):  # noqa: ANN201
        if name != "discriminator":
            raise ValueError(f"unknown network {name}")
        yield


@pytest.mark.parametrize("plugin", ["fp32", "bf16-mixed", "fp16-dynamic", Precision()], ids=lambda p: p if isinstance(p, str) else type(p).__name__)
def test_precision_plugins_conform(plugin) -> None:
    """The built-ins and a plain Lightning Precision (fp16-dynamic: float16 autocast on CPU)."""
    assert isinstance(check_precision(plugin), Precision)


@pytest.mark.parametrize(("plugin", "message"), [
    (NoStepPrecision(), r"the generator's parameters did not change in 4 iterations: optimizer_step must run the "
                        r"closure and then optimizer.step\(\)"),
    (PickledStatePrecision(), r"state_dict\(\) does not load with torch.load\(weights_only=True\)"),
    (AmnesicPrecision(), r"load_state_dict\(state_dict\(\)\) changes the state"),
    (OneNetworkPrecision(), r"network\('generator'\) raised ValueError: unknown network generator"),
    (NonSaturatingLoss(), r"not a Precision"),
])
def test_catches_broken_precision_plugins(plugin: object, message: str) -> None:
    with pytest.raises(ConformanceError, match=message):
        check_precision(plugin)


# -- datamodules ---------------------------------------------------------------------------------
class MinimalData(LightningDataModule):
    """What a stranger's datamodule needs: data_shape, num_classes, train_dataset, default_metrics, a loader."""

    data_shape = (1, 8, 8)

    def __init__(self, *, num_classes: int = 2, low: float = -1.0, high: float = 1.0) -> None:
        super().__init__()
        self.num_classes, self.low, self.high = num_classes, low, high
        self.train_dataset = None

    def setup(self, stage: str | None = None) -> None:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(32, *self.data_shape, generator=g) * (self.high - self.low) + self.low
        self.train_dataset = TensorDataset(x, torch.arange(32) % max(self.num_classes, 1))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_dataset, batch_size=8, shuffle=True, drop_last=True)

    def default_metrics(self) -> list:
        return ["fid"]


class NoShapeData(MinimalData):
    data_shape = None  # type: ignore[assignment]


class WrongShapeData(MinimalData):
    data_shape = (1, 16, 16)

    def setup(self, stage: str | None = None) -> None:
        self.train_dataset = TensorDataset(torch.zeros(32, 1, 8, 8), torch.zeros(32, dtype=torch.long))


class LazyData(MinimalData):
    def setup(self, stage: str | None = None) -> None:
        pass  # the data is made in train_dataloader: metrics find no train_dataset


class TypoMetricData(MinimalData):
    def default_metrics(self) -> list:
        return ["fidd"]


class MislabelledData(MinimalData):
    """Says 2 classes, labels 4."""

    def setup(self, stage: str | None = None) -> None:
        self.train_dataset = TensorDataset(torch.zeros(32, *self.data_shape), torch.arange(32) % 4)


class ForgetfulData(MinimalData):
    """Keeps its argument ``size`` under another name, so its stored config rebuilds a different shape."""

    def __init__(self, *, size: int = 8) -> None:
        super().__init__()
        self.side = size
        self.data_shape = (1, size, size)

    def setup(self, stage: str | None = None) -> None:
        self.train_dataset = TensorDataset(torch.zeros(32, *self.data_shape), torch.zeros(32, dtype=torch.long))


def test_datamodules_conform() -> None:
    from lightning_gan.data.shapes import ShapesDataModule

    assert check_datamodule("toy2d").data_shape == (2,)
    assert check_datamodule(ShapesDataModule(resolution=8, num_samples=64, batch_size=16)).num_classes == 6
    dm = check_datamodule(MinimalData())
    assert len(dm.train_dataset) == 32


@pytest.mark.parametrize(("dm", "message"), [
    (NoShapeData(), r"has no `data_shape`"),
    (WrongShapeData(), r"train_dataset\[0\] holds a sample of shape \[1, 8, 8\], expected data_shape \[1, 16, 16\]"),
    (LazyData(), r"`train_dataset` is None after setup\('fit'\)"),
    (TypoMetricData(), r"default_metrics\(\) entry 'fidd' does not resolve to a metric: .*Did you mean 'fid'"),
    (MislabelledData(), r"training batch 0 labels range over 0..3, outside 0..1 \(num_classes = 2\)"),
    (MinimalData(low=0.0, high=255.0), r"training batch 0 has images in \[0.*, 2.*\]; images must lie in \[-1, 1\]"),
    (MinimalData(num_classes=-1), r"`num_classes` must be an int >= 0"),
    (ForgetfulData(size=4), r"rebuilt from its config .* data_shape, num_classes = \(\(1, 8, 8\), 2\), "
                            r"expected \(\(1, 4, 4\), 2\)"),
])
def test_catches_broken_datamodules(dm: LightningDataModule, message: str) -> None:
    with pytest.raises(ConformanceError, match=message):
        check_datamodule(dm)


# -- metrics -------------------------------------------------------------------------------------
class MeanMetric(GeneratorMetric):
    """The mean of 64 samples' first coordinate, from its own seeded generator (a conforming metric)."""

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    def compute(self, generator, datamodule, context=None) -> dict[str, float]:  # noqa: ANN001
        rng = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            x = generator(generator.sample_latents(64, generator=rng), None)
        return {"mean/x0": float(x[:, 0].mean())}


class GlobalRNGMetric(MeanMetric):
    def compute(self, generator, datamodule, context=None) -> dict[str, float]:  # noqa: ANN001
        with torch.no_grad():
            return {"mean/x0": float(generator(torch.randn(64, generator.z_dim))[:, 0].mean())}


class TensorMetric(MeanMetric):
    def compute(self, generator, datamodule, context=None) -> dict:  # noqa: ANN001
        return {"mean/x0": torch.tensor(super().compute(generator, datamodule)["mean/x0"])}


class CapitalMetric(MeanMetric):
    def compute(self, generator, datamodule, context=None) -> dict[str, float]:  # noqa: ANN001
        return {"Mean": super().compute(generator, datamodule)["mean/x0"]}


class EvalModeMetric(MeanMetric):
    def compute(self, generator, datamodule, context=None) -> dict[str, float]:  # noqa: ANN001
        generator.eval()
        return super().compute(generator, datamodule)


class DriftingMetric(MeanMetric):
    def compute(self, generator, datamodule, context=None) -> dict[str, float]:  # noqa: ANN001
        self.seed += 1  # a new seed each time: two evaluations of one generator differ
        return super().compute(generator, datamodule)


def test_metrics_conform() -> None:
    assert check_metric("coverage").num_samples is None
    check_metric("mode_coverage")
    check_metric(MeanMetric(seed=3))


@pytest.mark.parametrize(("metric", "message"), [
    (GlobalRNGMetric(), r"compute\(\) changed the global random state"),
    (TensorMetric(), r"returned 'mean/x0': tensor\(.*\) \(Tensor\); values are Python numbers"),
    (CapitalMetric(), r"returned the key 'Mean'; names are lower-case"),
    (EvalModeMetric(), r"left the generator in eval mode"),
    (DriftingMetric(), r"two computations on the same generator differ"),
    (HingeLoss(), r"not a GeneratorMetric"),
])
def test_catches_broken_metrics(metric: object, message: str) -> None:
    with pytest.raises(ConformanceError, match=message):
        check_metric(metric)


# -- recipes -------------------------------------------------------------------------------------
TINY_RECIPE = """\
# A tiny GAN on the 25-Gaussian grid.
model:
  architecture:
    class_path: lightning_gan.testing.tiny.TinyArchitecture
    init_args: {data_dim: 2}
  loss: hinge
data:
  class_path: toy2d
  init_args: {num_samples: 200, batch_size: 50}
trainer: {max_epochs: 1}
"""


def test_recipes_conform(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert check_recipe("quickstart").model.generator.output_shape == (2,)
    (tmp_path / "tiny.yaml").write_text(TINY_RECIPE)
    assert type(check_recipe(tmp_path / "tiny.yaml").model.loss_fn).__name__ == "HingeLoss"


@pytest.mark.parametrize(("edit", "message"), [
    (("loss: hinge", "loss: hingee"), r"recipe tiny: does not build: Unknown loss 'hingee'. Did you mean 'hinge'"),
    (("init_args: {data_dim: 2}", "init_args: {data_dim: 2, widht: 4}"), r"recipe tiny: does not build: .*widht"),
    (("init_args: {data_dim: 2}", "init_args: {data_dim: 3}"),
     r"its generator makes samples of shape \(3,\) but its data \(Toy2DDataModule\) has data_shape \(2,\)"),
    (("lightning_gan.testing.tiny.TinyArchitecture", "nowhere_pkg.Arch"),
     r"Recipe 'tiny' needs the module 'nowhere_pkg' \(for nowhere_pkg.Arch\), which is not installed"),
    (("# A tiny GAN on the 25-Gaussian grid.\n", ""), r"must start with a '# one-line description' comment"),
])
def test_catches_broken_recipes(edit: tuple[str, str], message: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY_RECIPE.replace(*edit))
    with pytest.raises(ConformanceError, match=message):
        check_recipe(recipe)
