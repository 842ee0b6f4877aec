"""ProGAN plugin: the conformance kit (growth included) on several configurations, and its layers by their formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lightning_gan import registry
from lightning_gan.interfaces import GrowableDiscriminator, GrowableGenerator, growth_gaps
from lightning_gan.ops.growth import downsample_average, upsample_nearest
from lightning_gan.testing import check_architecture, check_growable
from lightning_gan_progan.layers import (
    EqualizedConv2d,
    EqualizedLinear,
    group_size_for,
    he_constant,
    minibatch_stddev,
    pixel_norm,
)
from lightning_gan_progan.networks import ProGANArchitecture, channels_at, stage_resolutions

SMALL = dict(z_dim=8, channel_base=64, channel_max=8)


@pytest.mark.parametrize(("resolution", "channels", "c_dim", "options"), [
    (16, 1, 0, {}),
    (16, 3, 3, dict(mbstd_group=2)),
    (8, 3, 0, dict(pixel_norm=False, normalize_latent=False, equalized_lr=False, mbstd=False)),
    (4, 3, 2, {}),
])
def test_conformance_and_growth_at_every_stage(resolution: int, channels: int, c_dim: int, options: dict) -> None:
    spec = ProGANArchitecture(resolution=resolution, channels=channels, c_dim=c_dim, **SMALL, **options)
    g, d = check_architecture(spec)
    check_growable(spec)  # alpha = 0 exactness of G and D at every stage, shapes, state_dict round trip
    assert isinstance(g, GrowableGenerator) and isinstance(d, GrowableDiscriminator)
    assert g.resolutions == d.resolutions == stage_resolutions(resolution)
    assert g.output_shape == (channels, resolution, resolution)


def test_registered_as_progan_and_config_names_the_class() -> None:
    assert registry.load("architectures", "progan") is ProGANArchitecture
    config = ProGANArchitecture(resolution=32, **SMALL).config()
    assert config["class_path"] == "lightning_gan_progan.networks.ProGANArchitecture"
    assert config["init_args"]["resolution"] == 32 and config["init_args"]["mbstd_group"] == 4


@pytest.mark.parametrize("resolution", [0, 2, 12, 2048, 8.0, True])
def test_resolution_must_be_a_power_of_two_from_4_to_1024(resolution: object) -> None:
    with pytest.raises(ValueError, match="power of two between 4 and 1024"):
        ProGANArchitecture(resolution=resolution)  # type: ignore[arg-type]


def test_stages_and_the_papers_channel_widths() -> None:
    assert stage_resolutions(1024) == tuple(2 ** k for k in range(2, 11))
    # channel_base 16384, channel_max 512: 512 up to 32x32, then halving down to 16 at 1024x1024 (Table 2)
    widths = [channels_at(r, channel_base=16384, channel_max=512) for r in stage_resolutions(1024)]
    assert widths == [512, 512, 512, 512, 256, 128, 64, 32, 16]
    g, d = ProGANArchitecture(resolution=16, channels=3, **SMALL).build()  # 64 // r capped at 8: 8, 8, 4
    assert [g.to_rgb[str(r)].in_channels for r in (4, 8, 16)] == [8, 8, 4]
    assert [d.from_rgb[str(r)].out_channels for r in (4, 8, 16)] == [8, 8, 4]
    assert growth_gaps(g, d) == []


def test_each_stage_generates_and_judges_its_own_resolution() -> None:
    g, d = ProGANArchitecture(resolution=16, channels=3, **SMALL).build()
    z = g.sample_latents(4)
    for r in (4, 8, 16):
        for net in (g, d):
            net.set_stage(r, 1.0 if r == 4 else 0.5)
        x = g(z)
        assert x.shape == (4, 3, r, r) and g.output_shape == d.input_shape == (3, r, r)
        assert d(x).shape == (4,)


def test_alpha_zero_is_the_previous_stage_upsampled_and_alpha_one_ignores_the_old_path() -> None:
    """G@(r, 0) == up(G@(q, 1)) and D@(r, 0)(x) == D@(q, 1)(down(x)) bit for bit, also in training mode."""
    g, d = ProGANArchitecture(resolution=16, channels=3, **SMALL).build()
    z, x = g.sample_latents(4), torch.rand(4, 3, 16, 16) * 2 - 1
    for q, r in ((4, 8), (8, 16)):
        xr = x if r == 16 else downsample_average(x)
        g.set_stage(q, 1.0)
        d.set_stage(q, 1.0)
        previous_image, previous_logits = g(z), d(downsample_average(xr))
        g.set_stage(r, 0.0)
        d.set_stage(r, 0.0)
        assert torch.equal(g(z), upsample_nearest(previous_image))
        assert torch.equal(d(xr), previous_logits)
    # at alpha = 1 the previous stage's toRGB / fromRGB take no part: their weights do not matter
    g.set_stage(16, 1.0)
    d.set_stage(16, 1.0)
    before_g, before_d = g(z), d(x)
    with torch.no_grad():
        g.to_rgb["8"].weight.add_(1.0)
        d.from_rgb["8"].weight.add_(1.0)
    assert torch.equal(g(z), before_g) and torch.equal(d(x), before_d)


def test_the_fade_is_the_papers_linear_mix_of_the_two_paths() -> None:
    g, _ = ProGANArchitecture(resolution=8, channels=3, **SMALL).build()
    z = g.sample_latents(3)
    g.set_stage(8, 0.0)
    old = g(z)
    g.set_stage(8, 1.0)
    new = g(z)
    g.set_stage(8, 0.3)
    alpha = g.alpha
    assert torch.allclose(g(z), (1 - alpha) * old + alpha * new, atol=1e-6)


# -- layers against their formulas ---------------------------------------------------------------
def test_pixel_norm_gives_every_pixels_feature_vector_unit_second_moment() -> None:
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64) * 7
    y = pixel_norm(x)
    by_hand = x / torch.sqrt((x ** 2).sum(dim=1, keepdim=True) / 5 + 1e-8)
    assert torch.allclose(y, by_hand, rtol=1e-12)
    assert torch.allclose(y.square().mean(dim=1), torch.ones(2, 3, 4, dtype=torch.float64), atol=1e-9)
    v = torch.tensor([[3.0, 4.0]], dtype=torch.float64)  # mean square 12.5
    assert torch.allclose(pixel_norm(v), v / math.sqrt(12.5 + 1e-8))


def test_equalized_layers_scale_unit_normal_weights_by_hes_constant_at_run_time() -> None:
    conv = EqualizedConv2d(in_channels=3, out_channels=2, kernel_size=3, activation="linear")
    assert conv.scale == pytest.approx(math.sqrt(2) / math.sqrt(3 * 9)) == he_constant(27)
    assert conv.weight.std().item() == pytest.approx(1.0, abs=0.35)  # stored ~ N(0, 1)
    with torch.no_grad():
        conv.bias.copy_(torch.tensor([0.5, -1.0]))
    x = torch.randn(2, 3, 5, 5)
    expected = F.conv2d(x, conv.weight * math.sqrt(2 / 27), conv.bias, padding=1)
    assert torch.allclose(conv(x), expected, atol=1e-6)
    lin = EqualizedLinear(in_features=10, out_features=4, gain=1.0, activation="lrelu")
    v = torch.randn(6, 10)
    assert torch.allclose(lin(v), F.leaky_relu(v @ (lin.weight / math.sqrt(10)).T, 0.2), atol=1e-6)
    # the gradient a weight receives is scaled by c too: Adam then moves every layer at the same relative speed
    conv.weight.grad = None
    conv(x).sum().backward()
    unscaled = torch.nn.Parameter(conv.weight.detach().clone())
    F.conv2d(x, unscaled, padding=1).sum().backward()
    assert torch.allclose(conv.weight.grad, unscaled.grad * math.sqrt(2 / 27), rtol=1e-5)
    # without equalization the same layer is initialized with He's std and used as is
    plain = EqualizedConv2d(in_channels=64, out_channels=64, kernel_size=3, equalized=False)
    assert plain.scale == 1.0 and plain.weight.std().item() == pytest.approx(he_constant(576), rel=0.05)


def test_minibatch_stddev_against_a_loop_over_groups() -> None:
    x = torch.randn(6, 3, 2, 2, dtype=torch.float64)
    y = minibatch_stddev(x, group_size=3)
    assert y.shape == (6, 4, 2, 2) and torch.equal(y[:, :3], x)
    for group in range(2):
        members = x[3 * group:3 * group + 3]  # [3, C, H, W]
        mean = members.mean(dim=0)
        std = torch.sqrt(((members - mean) ** 2).sum(dim=0) / 3 + 1e-8)  # population std per feature and pixel
        s = std.mean()
        assert torch.allclose(y[3 * group:3 * group + 3, 3], s.expand(3, 2, 2), rtol=1e-12)
    # group 0 = the whole batch (sec. 3 of the paper): one number for everybody
    whole = minibatch_stddev(x, group_size=0)[:, 3]
    assert torch.allclose(whole, (x.var(dim=0, unbiased=False) + 1e-8).sqrt().mean().expand(6, 2, 2))
    # identical samples in a group have zero spread: sqrt(eps)
    same = minibatch_stddev(torch.ones(4, 2, 1, 1), group_size=4)[:, 2]
    assert torch.allclose(same, torch.full((4, 1, 1), 1e-4))


def test_group_size_falls_back_to_the_largest_divisor_of_the_batch() -> None:
    assert [group_size_for(n, 4) for n in (1, 2, 3, 4, 6, 7, 8)] == [1, 2, 3, 4, 3, 1, 4]
    assert group_size_for(10, 0) == 10
    with pytest.raises(ValueError, match="group_size must be >= 0"):
        group_size_for(4, -1)


def test_the_generator_normalizes_the_latent_so_its_scale_does_not_matter() -> None:
    g, _ = ProGANArchitecture(resolution=8, channels=3, **SMALL).build()
    z = g.sample_latents(3)
    assert torch.allclose(g(z), g(5.0 * z), atol=1e-5)
    # with no normalization at all, zero biases and leaky ReLUs make G positively homogeneous: G(5z) = 5 G(z)
    g2, _ = ProGANArchitecture(resolution=8, channels=3, normalize_latent=False, pixel_norm=False, **SMALL).build()
    assert torch.allclose(g2(5.0 * z), 5.0 * g2(z), atol=1e-4)
