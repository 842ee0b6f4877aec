"""ProGAN plugin: the conformance kit (growth included) on several configurations, and its layers by their formulas."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lightning_gan import registry
from lightning_gan.interfaces import GrowableDiscriminator, GrowableGenerator, growth_gaps
from lightning_gan.ops.growth import downsample_average, upsample_nearest
from lightning_gan.testing import check_architecture, check_growable
from lightning_gan_progan import layers as progan_layers
from lightning_gan_progan.layers import (
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStdDev,
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


def _std_tolerance(n: int) -> float:
    """4 standard errors of the sample std of n draws of N(0, 1): sd(s) ~= 1 / sqrt(2 (n - 1))."""
    return 4.0 / math.sqrt(2.0 * (n - 1))


def test_equalized_layers_scale_unit_normal_weights_by_hes_constant_at_run_time() -> None:
    conv = EqualizedConv2d(in_channels=3, out_channels=2, kernel_size=3, activation="linear")
    assert conv.scale == pytest.approx(math.sqrt(2) / math.sqrt(3 * 9)) == he_constant(27)
    torch.manual_seed(0)
    big = EqualizedConv2d(in_channels=16, out_channels=32, kernel_size=3)  # stored ~ N(0, 1): n = 4608 draws
    n = big.weight.numel()
    assert big.weight.mean().item() == pytest.approx(0.0, abs=4 / math.sqrt(n))
    assert big.weight.std().item() == pytest.approx(1.0, abs=_std_tolerance(n))
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
    n = plain.weight.numel()
    assert plain.scale == 1.0
    assert plain.weight.std().item() / he_constant(576) == pytest.approx(1.0, abs=_std_tolerance(n))


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


def test_the_discriminator_says_which_batch_sizes_keep_its_groups_full() -> None:
    _, d = ProGANArchitecture(resolution=8, channels=3, **SMALL).build()  # mbstd_group 4
    assert [n for n in range(1, 17) if d.batch_size_problem(n) is None] == [4, 8, 12, 16]
    assert d.batch_size_problem(14) == ("its minibatch standard deviation groups of 4 do not divide a batch of 14 "
                                        "(they would shrink to 2); use a multiple of 4 or an mbstd_group that "
                                        "divides the batch")
    for options in (dict(mbstd_group=0), dict(mbstd=False)):  # the whole batch, or no statistic: any size
        _, d = ProGANArchitecture(resolution=8, channels=3, **SMALL, **options).build()
        assert all(d.batch_size_problem(n) is None for n in range(1, 17))


def test_a_smaller_group_is_said_once_in_the_log(monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[str] = []
    monkeypatch.setattr(progan_layers, "rank_zero_info", said.append)
    layer = MinibatchStdDev(group_size=4)
    layer(torch.randn(8, 2, 4, 4))
    assert said == []
    short = torch.randn(6, 2, 4, 4, dtype=torch.float64)
    y = layer(short)
    torch.testing.assert_close(y, minibatch_stddev(short, group_size=3))  # groups of 3, the largest divisor
    layer(torch.randn(7, 2, 4, 4))
    layer(torch.randn(6, 2, 4, 4))
    assert said == ["MinibatchStdDev: a batch of 6 uses groups of 3 instead of 4 (said once)"]


def _progan_recipe_check(path):  # noqa: ANN001, ANN202
    """Build a recipe's architecture and check its growth schedule as ProgressiveGrowing does at fit start."""
    import yaml

    from lightning_gan.callbacks.progressive import GrowthSchedule

    config = yaml.safe_load(path.read_text())
    model = config["model"]
    pair = registry.resolve("architectures", model["architecture"]).build()
    [growing] = [c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("ProgressiveGrowing")]
    schedule = GrowthSchedule(growing["init_args"]["schedule"])
    schedule.check(pair.generator.resolutions, d_steps=model.get("d_steps", 1),
                   batch_size_problem=pair.discriminator.batch_size_problem,
                   data_batch_size=config["data"]["init_args"]["batch_size"],
                   discriminator=type(pair.discriminator).__name__)
    return schedule


RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("progan-*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_the_shipped_recipes_batches_keep_the_stddev_groups_full(path) -> None:  # noqa: ANN001
    assert len(RECIPES) >= 2
    schedule = _progan_recipe_check(path)
    assert len(schedule.rows) >= 2


def test_a_schedule_whose_batch_the_group_does_not_divide_is_refused_at_fit_start(tmp_path) -> None:
    from lightning.pytorch import Trainer

    from lightning_gan.callbacks import ProgressiveGrowing
    from lightning_gan.data.shapes import ShapesDataModule
    from lightning_gan.errors import ConfigError
    from lightning_gan.module import GANModule

    module = GANModule(architecture=ProGANArchitecture(resolution=8, channels=1, **SMALL), metrics=[])
    growing = ProgressiveGrowing(schedule=[{"resolution": 4, "fade_kimg": 0, "stable_kimg": 1},
                                           {"resolution": 8, "fade_kimg": 1, "stable_kimg": 1, "batch_size": 14}])
    trainer = Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[growing],
                      default_root_dir=tmp_path)
    with pytest.raises(ConfigError) as info:
        trainer.fit(module, ShapesDataModule(resolution=8, channels=1, num_samples=32, batch_size=8))
    assert str(info.value) == ("ProgressiveGrowing schedule row 2 (resolution 8): batch_size 14 does not suit "
                               "ProGANDiscriminator: its minibatch standard deviation groups of 4 do not divide a "
                               "batch of 14 (they would shrink to 2); use a multiple of 4 or an mbstd_group that "
                               "divides the batch")
    assert module.iteration == 0


def test_the_generator_normalizes_the_latent_so_its_scale_does_not_matter() -> None:
    g, _ = ProGANArchitecture(resolution=8, channels=3, **SMALL).build()
    z = g.sample_latents(3)
    assert torch.allclose(g(z), g(5.0 * z), atol=1e-5)
    # with no normalization at all, zero biases and leaky ReLUs make G positively homogeneous: G(5z) = 5 G(z)
    g2, _ = ProGANArchitecture(resolution=8, channels=3, normalize_latent=False, pixel_norm=False, **SMALL).build()
    assert torch.allclose(g2(5.0 * z), 5.0 * g2(z), atol=1e-4)
