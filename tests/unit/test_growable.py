"""The growable-network protocol: its resampling and fade maths, the stage state, the tiny growable pair, and
``check_growable`` passing on it and failing, with a message naming the broken promise, on broken variants."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_gan.interfaces import (
    GROWTH_MEMBERS,
    ContractError,
    Growable,
    GrowableGenerator,
    growth_gaps,
    require_growable,
)
from lightning_gan.ops.growth import downsample_average, fade, fade_resolutions, upsample_nearest
from lightning_gan.testing import ConformanceError, check_architecture, check_growable, tiny
from lightning_gan.testing.tiny import (
    TinyArchitecture,
    TinyGrowableArchitecture,
    TinyGrowableDiscriminator,
    TinyGrowableGenerator,
)


# -- resampling and fading ------------------------------------------------------------------------
def test_upsample_nearest_repeats_each_pixel_two_by_two() -> None:
    x = torch.randn(2, 3, 4, 5)
    y = upsample_nearest(x)
    i, j = torch.arange(8)[:, None], torch.arange(10)[None, :]
    assert y.shape == (2, 3, 8, 10)
    assert torch.equal(y, x[:, :, i // 2, j // 2])  # y[..., i, j] = x[..., i // 2, j // 2]
    assert torch.equal(upsample_nearest(x[0]), y[0])  # [C, H, W] and [..., H, W] alike
    five = torch.randn(2, 2, 3, 4, 5)
    assert torch.equal(upsample_nearest(five), five[..., i // 2, j // 2])  # only H and W are doubled
    cl = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(upsample_nearest(cl), y)


def test_downsample_average_is_the_mean_of_each_two_by_two_block() -> None:
    x = torch.randn(2, 3, 6, 8, dtype=torch.float64)
    reference = x.reshape(2, 3, 3, 2, 4, 2).mean(dim=(3, 5))
    assert torch.allclose(downsample_average(x), reference, rtol=0, atol=1e-15)
    assert torch.allclose(downsample_average(x), F.avg_pool2d(x, 2), rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="even height and width"):
        downsample_average(torch.zeros(1, 1, 5, 4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_downsample_average_undoes_upsample_nearest_exactly(dtype: torch.dtype) -> None:
    x = (torch.randn(4, 3, 32, 32, dtype=torch.float64) * 1e3).to(dtype)
    assert torch.equal(downsample_average(upsample_nearest(x)), x)


def test_fade_returns_the_branches_themselves_at_the_ends_and_interpolates_between() -> None:
    old, new = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    new_inf = new.clone()
    new_inf[0, 0, 0, 0] = float("inf")
    assert fade(old, new_inf, 0.0) is old  # the new branch contributes nothing, not even a NaN
    assert fade(old, new, 1.0) is new
    assert torch.allclose(fade(old, new, 0.25), 0.75 * old + 0.25 * new, atol=1e-6)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
            fade(old, new, bad)
    with pytest.raises(ValueError, match="one shape"):
        fade(old, new[:, :1], 0.5)


def test_fade_resolutions_blends_the_half_resolution_image_into_the_full_one() -> None:
    x = torch.randn(2, 1, 8, 8)
    half = upsample_nearest(downsample_average(x))
    assert torch.equal(fade_resolutions(x, 1.0), x)
    assert torch.equal(fade_resolutions(x, 0.0), half)
    assert torch.allclose(fade_resolutions(x, 0.4), 0.6 * half + 0.4 * x, atol=1e-6)


# -- the stage state ------------------------------------------------------------------------------
def test_a_fresh_growable_pair_stands_at_its_last_stage() -> None:
    g, d = TinyGrowableArchitecture(resolutions=(4, 8, 16), channels=3).build()
    for net in (g, d):
        assert isinstance(net, Growable)
        assert (net.resolutions, net.resolution, net.alpha, net.stage_index) == ((4, 8, 16), 16, 1.0, 2)
    assert g.output_shape == d.input_shape == (3, 16, 16)
    assert g(g.sample_latents(2)).shape == (2, 3, 16, 16)
    assert not isinstance(TinyArchitecture().build().generator, Growable)


def test_set_stage_moves_the_shapes_and_the_buffers() -> None:
    g, d = TinyGrowableArchitecture(channels=3).build()
    for net in (g, d):
        net.set_stage(8, 0.3)
    alpha32 = float(torch.tensor(0.3, dtype=torch.float32))  # stored as float32, reported as stored
    assert (g.resolution, g.alpha, g.stage_index) == (8, alpha32, 1)
    assert g.output_shape == d.input_shape == (3, 8, 8)
    assert g.full_output_shape == d.full_input_shape == (3, 16, 16)
    image = g(g.sample_latents(5))
    assert image.shape == (5, 3, 8, 8)
    assert d(image).shape == (5,)
    state = g.state_dict()
    assert int(state["stage_resolution"]) == 8 and float(state["stage_alpha"]) == alpha32


def test_set_stage_rejects_what_is_not_a_stage() -> None:
    g, _ = TinyGrowableArchitecture().build()
    with pytest.raises(ValueError, match="no stage at resolution 32; its stages are 4, 8, 16"):
        g.set_stage(32, 1.0)
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\], got 1.5"):
        g.set_stage(8, 1.5)
    with pytest.raises(ValueError, match="first stage and has nothing to fade from"):
        g.set_stage(4, 0.5)
    assert (g.resolution, g.alpha) == (16, 1.0)  # unchanged by the rejected calls


def test_the_stage_survives_a_state_dict_round_trip_and_a_bad_one_is_refused() -> None:
    spec = TinyGrowableArchitecture()
    g, d = spec.build()
    g.set_stage(8, 0.6)
    d.set_stage(8, 0.6)
    g2, d2 = spec.build()
    g2.load_state_dict(g.state_dict())
    d2.load_state_dict(d.state_dict())
    assert (g2.resolution, g2.alpha, g2.output_shape) == (g.resolution, g.alpha, g.output_shape)
    assert (d2.resolution, d2.alpha, d2.input_shape) == (d.resolution, d.alpha, d.input_shape)
    bad = g.state_dict()
    bad["stage_resolution"] = torch.tensor(32)
    with pytest.raises(RuntimeError, match="no valid stage"):
        g2.load_state_dict(bad)


def test_copying_the_buffers_moves_the_stage_as_an_ema_update_does() -> None:
    import copy

    from lightning_gan.ema import update_ema

    g, _ = TinyGrowableArchitecture().build()
    ema = copy.deepcopy(g)
    g.set_stage(8, 0.5)
    assert (ema.resolution, ema.alpha) == (16, 1.0)
    update_ema(ema, g, beta=0.9)  # copies the buffers in place, as it does every iteration
    assert (ema.resolution, ema.alpha, ema.output_shape) == (8, 0.5, (1, 8, 8))
    z = g.sample_latents(3)
    assert ema(z).shape == (3, 1, 8, 8)
    ema.load_state_dict(g.state_dict())  # and with the same weights it computes what g computes
    assert torch.equal(ema(z), g(z))


def test_resolutions_must_double_and_match_the_full_shape() -> None:
    with pytest.raises(ValueError, match="must double"):
        TinyGrowableGenerator(z_dim=2, channels=1, width=2, resolutions=(4, 8, 12))
    with pytest.raises(ValueError, match=r"must end in the last resolution twice, \(16, 16\)"):
        GrowableGenerator(z_dim=2, output_shape=(1, 8, 8), resolutions=(4, 8, 16))


def test_at_alpha_zero_the_discriminator_sees_faded_reals_as_the_previous_stage_sees_the_downsampled_ones() -> None:
    """ProGAN fades the real images too: D@(r, 0)(fade_resolutions(x, 0)) == D@(q, 1)(downsample_average(x))."""
    _, d = TinyGrowableArchitecture().build()
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    d.set_stage(16, 0.0)
    faded = d(fade_resolutions(x, 0.0))
    d.set_stage(8, 1.0)
    assert torch.equal(faded, d(downsample_average(x)))


# -- what a pair lacks ----------------------------------------------------------------------------
def test_growth_gaps_name_every_missing_member_of_a_fixed_resolution_pair() -> None:
    g, d = TinyArchitecture().build()
    gaps = growth_gaps(g, d)
    assert gaps == [
        f"its generator TinyGenerator lacks {', '.join(GROWTH_MEMBERS)} (subclass lightning_gan.interfaces."
        f"GrowableGenerator)",
        f"its discriminator TinyDiscriminator lacks {', '.join(GROWTH_MEMBERS)} (subclass lightning_gan.interfaces."
        f"GrowableDiscriminator)",
    ]
    assert GROWTH_MEMBERS == ("resolutions", "resolution", "alpha", "set_stage")
    assert growth_gaps(*TinyGrowableArchitecture().build()) == []


def test_growth_gaps_name_only_what_is_missing_and_mismatched_stages() -> None:
    g, d = TinyArchitecture().build()
    g.resolutions = (4, 8)  # a partial attempt: the other members are still missing
    g.set_stage = "not callable"
    assert growth_gaps(g, d)[0].startswith("its generator TinyGenerator lacks resolution, alpha, set_stage (")
    g16, _ = TinyGrowableArchitecture(resolutions=(4, 8, 16)).build()
    _, d8 = TinyGrowableArchitecture(resolutions=(4, 8)).build()
    assert growth_gaps(g16, d8) == ["its generator grows through resolutions (4, 8, 16) but its discriminator "
                                    "through (4, 8)"]


def test_require_growable_refuses_in_one_line_naming_the_architecture() -> None:
    with pytest.raises(ContractError) as info:
        require_growable(*TinyArchitecture().build(), architecture="TinyArchitecture")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("architecture TinyArchitecture cannot grow progressively: its generator TinyGenerator "
                              "lacks resolutions, resolution, alpha, set_stage")
    require_growable(*TinyGrowableArchitecture().build())  # a growable pair passes


# -- the conformance check ------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [TinyGrowableArchitecture(),
                                  TinyGrowableArchitecture(resolutions=(2, 4, 8, 16), channels=3, c_dim=3)],
                         ids=["unconditional", "conditional"])
def test_check_growable_and_check_architecture_pass_on_the_tiny_growable_pair(spec: TinyGrowableArchitecture) -> None:
    g, d = check_growable(spec)
    assert (g.resolution, g.alpha, d.resolution, d.alpha) == (spec.resolutions[-1], 1.0, spec.resolutions[-1], 1.0)
    check_architecture(spec)  # every parameter is reached at some stage; the config round-trips


def _fails(spec: object, pattern: str) -> None:
    with pytest.raises(ConformanceError, match=pattern) as info:
        check_growable(spec)
    assert "\n" not in str(info.value)


def test_check_growable_refuses_a_fixed_resolution_architecture() -> None:
    _fails(TinyArchitecture(), r"^TinyArchitecture: cannot grow progressively: its generator TinyGenerator lacks "
                               r"resolutions, resolution, alpha, set_stage")


def test_check_growable_catches_a_new_block_that_leaks_at_alpha_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    def leaky(old: Tensor, new: Tensor, alpha: float) -> Tensor:
        return torch.lerp(old, new, max(alpha, 1e-3))

    monkeypatch.setattr(tiny, "fade", leaky)
    _fails(TinyGrowableArchitecture(), re.escape("at stage (8, alpha=0) the generator's output is not the previous "
                                                 "stage's (4, alpha=1) output upsampled"))


def test_check_growable_catches_wrong_upsampling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiny, "upsample_nearest",
                        lambda x: F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
    _fails(TinyGrowableArchitecture(), r"generator's output is not the previous stage's .* upsampled with "
                                       r"lightning_gan\.ops\.upsample_nearest \(largest difference")


def test_check_growable_catches_wrong_downsampling_in_the_discriminator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiny, "downsample_average",
                        lambda x: F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True))
    _fails(TinyGrowableArchitecture(), re.escape("at stage (8, alpha=0) the discriminator's logits differ from the "
                                                 "previous stage's (4, alpha=1) logits"))


def test_check_growable_catches_a_new_block_that_is_never_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiny, "fade", lambda old, new, alpha: old)
    _fails(TinyGrowableArchitecture(), re.escape("at stage (8, alpha=0.5) the generator's output equal those at "
                                                 "alpha=0: the new block of stage 8 is not used"))


class _StuckShapeGenerator(TinyGrowableGenerator):
    """Broken on purpose: output_shape stays at the full resolution whatever the stage."""

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.full_output_shape

    @output_shape.setter
    def output_shape(self, shape: tuple[int, ...]) -> None:
        self.full_output_shape = tuple(shape)


class _ForgetfulGenerator(TinyGrowableGenerator):
    """Broken on purpose: keeps the stage in Python attributes only, so state_dict does not carry it."""

    def set_stage(self, resolution: int, alpha: float = 1.0) -> None:
        self._resolution, self._alpha = self._validated_stage(resolution, alpha)


class _BrokenSpec(TinyGrowableArchitecture):
    generator_class: type[TinyGrowableGenerator] = TinyGrowableGenerator

    def build(self):  # type: ignore[no-untyped-def]
        g = self.generator_class(z_dim=self.z_dim, channels=self.channels, width=self.width,
                                 resolutions=self.resolutions)
        return type(super().build())(g, TinyGrowableDiscriminator(channels=self.channels, width=self.width,
                                                                  resolutions=self.resolutions))


def test_check_growable_catches_an_output_shape_that_does_not_follow_the_stage() -> None:
    spec = _BrokenSpec()
    spec.generator_class = _StuckShapeGenerator
    _fails(spec, re.escape("generator.output_shape is (1, 16, 16) at stage (4, alpha=1), expected (1, 4, 4): "
                           "output_shape must follow the stage"))


def test_check_growable_catches_a_stage_that_does_not_survive_the_state_dict() -> None:
    spec = _BrokenSpec()
    spec.generator_class = _ForgetfulGenerator
    _fails(spec, re.escape("the stage does not survive state_dict: a generator at (8, alpha=0.25) loads into a "
                           "fresh one as (16, alpha=1.0)"))
