"""PPL: interpolation, closed forms on linear generators, outlier rejection, distances (LPIPS without downloads)."""

from __future__ import annotations

import importlib
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from lightning_gan.data.shapes import ShapesDataModule
from lightning_gan.errors import ConfigError
from lightning_gan.interfaces import Generator
from lightning_gan.metrics.features import FeatureExtractor, MissingWeightsError
from lightning_gan.metrics.ppl import (
    PPL,
    FeatureDistance,
    LPIPSDistance,
    PixelDistance,
    lerp,
    lpips_weights_path,
    path_length_samples,
    ppl_from_samples,
    resolve_distance,
    slerp,
)


class LinearGenerator(Generator):
    """``G(z) = A z`` (float64), output [m] or reshaped to ``output_shape``."""

    def __init__(self, a: Tensor, output_shape: tuple[int, ...] | None = None) -> None:
        super().__init__(z_dim=a.shape[1], output_shape=output_shape or (a.shape[0],))
        self.a = nn.Parameter(a.double())

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        return (z @ self.a.T).view(-1, *self.output_shape)


class LinearStyleGenerator(Generator):
    """``w = M z (+ E c)``, ``image = S w (+ noise)`` (float64), images [1, 2, 3]; optionally ``num_ws`` copies of w."""

    def __init__(self, m: Tensor, s: Tensor, *, c_dim: int = 0, num_ws: int = 0, noise: float = 0.0) -> None:
        super().__init__(z_dim=m.shape[1], c_dim=c_dim, output_shape=(1, 2, 3))
        self.m = nn.Parameter(m.double())
        self.s = nn.Parameter(s.double())
        self.e = nn.Parameter(torch.randn(c_dim, m.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(9)) * 10)
        self.num_ws = num_ws
        self.noise = noise

    def mapping(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        w = z @ self.m.T + (c @ self.e if self.c_dim else 0)
        return w.unsqueeze(1).expand(-1, self.num_ws, -1) if self.num_ws else w

    def synthesis(self, w: Tensor) -> Tensor:
        if w.dim() == 3:  # each layer's w drives half of S: S w_0 / 2 + S w_1 / 2 (= S w when all equal)
            w = w.mean(dim=1)
        x = w @ self.s.T
        if self.noise:
            x = x + self.noise * torch.randn_like(x)
        return x.view(-1, *self.output_shape)

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        return self.synthesis(self.mapping(z, c))


def _gaussian(*shape: int, seed: int) -> Tensor:
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _assert_monte_carlo(values: Tensor, expected: float, k: float = 4.0) -> None:
    """The sample mean within ``k`` standard errors (estimated from the samples) of ``expected``."""
    mean, se = float(values.mean()), float(values.std() / math.sqrt(values.numel()))
    assert abs(mean - expected) < k * se, f"mean {mean} vs {expected} (standard error {se})"


# -- interpolation -----------------------------------------------------------------------------------
def test_slerp_moves_at_constant_angular_speed_on_the_unit_sphere() -> None:
    a, b = _gaussian(6, 5, seed=0), _gaussian(6, 5, seed=1)
    unit_a, unit_b = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    angle = torch.acos((unit_a * unit_b).sum(dim=1))
    t = torch.tensor([0.0, 0.1, 0.25, 0.5, 0.9, 1.0], dtype=torch.float64)
    p = slerp(a, b, t)
    torch.testing.assert_close(p.norm(dim=1), torch.ones(6, dtype=torch.float64))
    torch.testing.assert_close(torch.acos((p * unit_a).sum(dim=1).clamp(-1, 1)), t * angle)
    torch.testing.assert_close(torch.acos((p * unit_b).sum(dim=1).clamp(-1, 1)), (1 - t) * angle)
    torch.testing.assert_close(slerp(a, b, 0.0), unit_a)
    torch.testing.assert_close(slerp(a, b, 1.0), unit_b)


def test_lerp_broadcasts_per_sample_t_over_w_shapes() -> None:
    a, b = _gaussian(3, 4, 5, seed=0), _gaussian(3, 4, 5, seed=1)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    out = lerp(a, b, t)
    torch.testing.assert_close(out[0], a[0])
    torch.testing.assert_close(out[1], (a[1] + b[1]) / 2)
    torch.testing.assert_close(out[2], b[2])


# -- closed forms ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("sampling", ["full", "end"])
def test_z_space_identity_in_2d_gives_pi_squared_over_3(sampling: str) -> None:
    # slerp between two uniform directions in 2-D: the angle theta is U(0, pi); a step eps along the path
    # has length theta * eps, so d / eps^2 = theta^2 and PPL = E[theta^2] = pi^2 / 3.
    generator = LinearGenerator(torch.eye(2))
    values = path_length_samples(generator, 20_000, space="z", sampling=sampling, distance=PixelDistance(),
                                 batch_size=5000)
    _assert_monte_carlo(values, math.pi**2 / 3)
    assert values.max() <= math.pi**2 * (1 + 1e-6)


def test_z_space_linear_map_in_2d() -> None:
    # with G(z) = A z the step is theta * eps * A u, u the unit tangent: uniform on the circle and independent
    # of theta, so E|A u|^2 = tr(A^T A) / 2 and PPL = (pi^2 / 3) tr(A^T A) / 2.
    a = torch.tensor([[1.0, 2.0], [0.5, -1.0]])
    values = path_length_samples(LinearGenerator(a), 20_000, space="z", sampling="full", distance=PixelDistance(),
                                 seed=3, batch_size=5000)
    _assert_monte_carlo(values, math.pi**2 / 3 * float(a.square().sum()) / 2)


@pytest.mark.parametrize("num_ws", [0, 3])
@pytest.mark.parametrize("sampling", ["full", "end"])
def test_w_space_linear_generator_matches_2_trace(sampling: str, num_ws: int) -> None:
    # lerp in W: w(t + eps) - w(t) = eps (w2 - w1) = eps M (z2 - z1), z2 - z1 ~ N(0, 2 I):
    # PPL = E|S M (z2 - z1)|^2 = 2 tr(M^T S^T S M), whatever t.
    m, s = _gaussian(4, 3, seed=0), _gaussian(6, 4, seed=1)
    generator = LinearStyleGenerator(m, s, num_ws=num_ws)
    values = path_length_samples(generator, 10_000, space="w", sampling=sampling, distance=PixelDistance(),
                                 batch_size=2500)
    _assert_monte_carlo(values, 2 * float((s @ m).square().sum()))


def test_conditional_generator_keeps_the_class_and_noise_at_both_ends() -> None:
    # a huge class offset and per-pixel noise both cancel when each path keeps its class and its noise
    m, s = _gaussian(4, 3, seed=0), _gaussian(6, 4, seed=1)
    generator = LinearStyleGenerator(m, s, c_dim=3, noise=0.5)
    expected = 2 * float((s @ m).square().sum())
    for space in ("w", "z"):
        values = path_length_samples(generator, 6000, space=space, sampling="end", distance=PixelDistance(), batch_size=2000)
        if space == "w":
            _assert_monte_carlo(values, expected)
        assert values.max() < 100 * expected  # no class or noise jump on any path


def test_samples_do_not_depend_on_the_batch_size_and_leave_state_alone() -> None:
    generator = LinearStyleGenerator(_gaussian(4, 3, seed=0), _gaussian(6, 4, seed=1))
    generator.train()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = path_length_samples(generator, 50, space="w", sampling="full", distance=PixelDistance(), seed=5, batch_size=7)
    b = path_length_samples(generator, 50, space="w", sampling="full", distance=PixelDistance(), seed=5, batch_size=50)
    torch.testing.assert_close(a, b)
    assert generator.training
    assert torch.equal(torch.get_rng_state(), state)
    c = path_length_samples(generator, 50, space="w", sampling="full", distance=PixelDistance(), seed=6)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("space", ["z", "w"])
def test_float32_round_off_at_eps_1e_4_is_small(space: str) -> None:
    # the same paths (latents and t do not depend on the dtype) in float32 and float64
    m, s = _gaussian(64, 32, seed=0) / 8, _gaussian(6, 64, seed=1) / 8
    exact = path_length_samples(LinearStyleGenerator(m, s), 500, space=space, distance=PixelDistance())
    single = path_length_samples(LinearStyleGenerator(m, s).float(), 500, space=space, distance=PixelDistance())
    relative = (single - exact).abs() / exact
    assert float(relative.median()) < 5e-3 and float(relative.max()) < 5e-2
    assert float(single.mean()) == pytest.approx(float(exact.mean()), rel=2e-3)


def test_ppl_from_samples_drops_outside_the_1st_and_99th_percentiles() -> None:
    values = _gaussian(1001, seed=0).exp()
    lo = np.percentile(values.numpy(), 1, method="lower")
    hi = np.percentile(values.numpy(), 99, method="higher")
    kept = values.numpy()[(values.numpy() >= lo) & (values.numpy() <= hi)]
    assert kept.size == 981
    assert ppl_from_samples(values) == pytest.approx(float(kept.mean()), rel=1e-12)
    assert ppl_from_samples(values, reject_outliers=False) == pytest.approx(float(values.mean()), rel=1e-12)
    assert math.isnan(ppl_from_samples(torch.tensor([1.0, math.inf])))


# -- the metric ------------------------------------------------------------------------------------------
def test_metric_reports_named_value_against_the_closed_form() -> None:
    m, s = _gaussian(4, 3, seed=0), _gaussian(6, 4, seed=1)
    metric = PPL(space="w", sampling="end", distance="pixels", num_samples=10_000, reject_outliers=False, batch_size=5000)
    metric.setup(None)
    result = metric.compute(LinearStyleGenerator(m, s), None)
    assert list(result) == ["ppl_w_end/pixels"]
    expected = 2 * float((s @ m).square().sum())
    assert result["ppl_w_end/pixels"] == pytest.approx(expected, rel=0.05)
    # outlier rejection trims the long right tail of the chi-square-like values: lower mean
    trimmed = PPL(space="w", distance="pixels", num_samples=10_000, batch_size=5000).compute(LinearStyleGenerator(m, s), None)
    assert trimmed["ppl_w_end/pixels"] < result["ppl_w_end/pixels"]


def test_metric_w_space_needs_a_style_based_generator() -> None:
    metric = PPL(space="w", distance="pixels", num_samples=10)
    with pytest.raises(ConfigError, match="mapping"):
        metric.compute(LinearGenerator(torch.eye(2)), None)
    z_metric = PPL(space="z", sampling="full", distance="pixels", num_samples=10)
    assert list(z_metric.compute(LinearGenerator(torch.eye(2)), None)) == ["ppl_z_full/pixels"]


def test_metric_config_and_argument_checks() -> None:
    metric = PPL(space="z", sampling="full", distance="pixels", num_samples=100, seed=3)
    args = metric.config()["init_args"]
    assert args == {"space": "z", "sampling": "full", "epsilon": 1e-4, "num_samples": 100, "distance": "pixels",
                    "reject_outliers": True, "seed": 3, "batch_size": 128}
    assert PPL(distance=nn.Flatten()).config()["init_args"]["distance"].startswith("custom:")
    with pytest.raises(ValueError, match="space"):
        PPL(space="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sampling"):
        PPL(sampling="middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="distance"):
        PPL(distance="euclid")
    with pytest.raises(ConfigError, match="8-bit"):
        PPL(distance="inception")


# -- distances -------------------------------------------------------------------------------------------------
class _TinyExtractor(FeatureExtractor):
    name = "tiny_features"

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, images: Tensor) -> Tensor:
        return self.conv(images).flatten(1)


def test_feature_distance_is_squared_distance_of_normalized_features() -> None:
    torch.manual_seed(0)
    extractor = _TinyExtractor()
    x, y = torch.randn(5, 3, 8, 8), torch.randn(5, 3, 8, 8)
    distance = FeatureDistance(extractor)
    fx, fy = extractor(x), extractor(y)
    expected = (fx / fx.norm(dim=1, keepdim=True) - fy / fy.norm(dim=1, keepdim=True)).square().sum(dim=1)
    torch.testing.assert_close(distance(x, y), expected)
    assert distance.name == "tiny_features"
    assert resolve_distance(extractor).name == "tiny_features"


@pytest.fixture
def no_torch_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub folder, and any download attempt fails loudly."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture
def fake_shapes_classifier(monkeypatch: pytest.MonkeyPatch) -> None:
    """``shapes_classifier_for`` replaced by a tiny untrained extractor named ``shapes_classifier``."""

    class Classifier(_TinyExtractor):
        name = "shapes_classifier"

    def shapes_classifier_for(datamodule: object) -> FeatureExtractor:
        torch.manual_seed(0)
        return Classifier()

    try:
        module = importlib.import_module("lightning_gan.metrics.shapes")
    except ImportError:
        module = types.ModuleType("lightning_gan.metrics.shapes")
        monkeypatch.setitem(sys.modules, "lightning_gan.metrics.shapes", module)
    monkeypatch.setattr(module, "shapes_classifier_for", shapes_classifier_for, raising=False)


def test_lpips_without_local_weights_raises_naming_the_file(no_torch_weights: Path) -> None:
    assert lpips_weights_path("vgg") == no_torch_weights / "vgg16-397923af.pth"
    with pytest.raises(MissingWeightsError, match="vgg16-397923af.pth") as info:
        resolve_distance("lpips")
    assert str(no_torch_weights) in str(info.value)
    with pytest.raises(MissingWeightsError, match="alexnet-owt-7be5be79.pth"):
        PPL(distance="lpips_alex").setup(None)
    assert not no_torch_weights.exists()  # nothing was fetched, not even a folder made


def test_auto_distance_falls_back_to_the_shapes_classifier(no_torch_weights: Path, fake_shapes_classifier: None) -> None:
    datamodule = ShapesDataModule(resolution=8, num_samples=16)
    metric = PPL(space="z", sampling="full", num_samples=20, batch_size=10)
    metric.setup(datamodule)
    assert isinstance(metric.distance_module(), FeatureDistance)
    generator = LinearGenerator(_gaussian(3 * 8 * 8, 4, seed=0) * 0.1, output_shape=(3, 8, 8))
    result = metric.compute(generator, datamodule)
    assert list(result) == ["ppl_z_full/shapes_classifier"]
    assert math.isfinite(result["ppl_z_full/shapes_classifier"]) and result["ppl_z_full/shapes_classifier"] > 0


def test_auto_distance_without_weights_or_shapes_data_is_a_clear_error(no_torch_weights: Path) -> None:
    with pytest.raises(ConfigError, match="vgg16-397923af.pth.*pixels"):
        PPL().setup(object())


def test_lpips_distance_from_local_backbone_weights(no_torch_weights: Path) -> None:
    # a (random) squeezenet backbone file where torchvision looks for it: LPIPS builds and runs offline
    import torchvision

    no_torch_weights.mkdir(parents=True)
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), lpips_weights_path("squeeze"))
    distance = LPIPSDistance("squeeze")
    assert distance.name == "lpips_squeeze"
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    assert torch.equal(distance(x, x), torch.zeros(3))
    d = distance(x, y)
    assert d.shape == (3,) and (d > 0).all()
    assert distance(x[:, :1], y[:, :1]).shape == (3,)  # grey images are repeated to 3 channels
