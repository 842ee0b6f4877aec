"""The conformance kit: it passes the built-ins and the tiny architecture, and catches deliberate faults.

The broken plugins live at module level so that their ``config()`` class paths import.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_gan.interfaces import AdversarialLoss, NetworkPair, PenaltyInputs, Regularizer
from lightning_gan.losses import NonSaturatingLoss
from lightning_gan.testing import (
    ConformanceError,
    TinyArchitecture,
    TinyDiscriminator,
    TinyGenerator,
    check_architecture,
    check_loss,
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
