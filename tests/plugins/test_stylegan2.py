"""StyleGAN2 plugin: the conformance kit on several configurations, and its mathematics pinned by numbers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lightning_gan import registry
from lightning_gan.ops import downsample2d, upsample2d
from lightning_gan.testing import check_architecture, check_regularizer
from lightning_gan_stylegan2 import synthesis as synthesis_module
from lightning_gan_stylegan2.discriminator import StyleGAN2Discriminator
from lightning_gan_stylegan2.layers import (
    EqualConv2d,
    EqualLinear,
    ModulatedConv2d,
    NoiseInjection,
    ar1_matrix,
    ar1_noise,
    conv2d_resample,
    demodulation_coefficients,
    minibatch_stddev,
    modulated_conv2d,
    resample_filter,
)
from lightning_gan_stylegan2.mapping import MappingNetwork
from lightning_gan_stylegan2.networks import StyleGAN2Architecture, StyleGAN2Generator, mix_styles
from lightning_gan_stylegan2.synthesis import SynthesisLayer, fp16_resolutions

SMALL = dict(z_dim=8, w_dim=8, mapping_layers=2, channel_base=128, channel_max=8)


def _gen(**kwargs) -> torch.Generator:
    return torch.Generator().manual_seed(kwargs.get("seed", 0))


# -- conformance -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("resolution", "g_arch", "d_arch", "c_dim", "extra"), [
    (8, "skip", "resnet", 0, {}),
    (16, "orig", "orig", 0, {}),
    (16, "resnet", "skip", 3, {}),
    (32, "skip", "resnet", 2, {"channel_base": 64}),
    (8, "resnet", "orig", 0, {"noise_mode": "const", "noise_phi": 0.5, "fused_modconv": "fused"}),
    (16, "skip", "resnet", 0, {"num_fp16_res": 2, "conv_clamp": 256.0, "channels_last": False}),
    (4, "skip", "skip", 2, {}),
    (16, "orig", "resnet", 3, {"synthesis_input": "linear"}),
    (16, "skip", "resnet", 0, {"low_res_rgb_gain": 0.1}),
])
def test_conformance(resolution: int, g_arch: str, d_arch: str, c_dim: int, extra: dict) -> None:
    spec = StyleGAN2Architecture(resolution=resolution, c_dim=c_dim, g_architecture=g_arch, d_architecture=d_arch,
                                 **{**SMALL, **extra})
    g, d = check_architecture(spec)
    assert g.output_shape == (3, resolution, resolution)
    assert g.num_ws == 2 * int(math.log2(resolution)) - 2


def test_registered_names_and_config() -> None:
    from lightning_gan_stylegan2.path_length import PathLength

    assert registry.load("architectures", "stylegan2") is StyleGAN2Architecture
    assert registry.load("regularizers", "path_length") is PathLength
    config = StyleGAN2Architecture(resolution=16, **SMALL).config()
    assert config["class_path"] == "lightning_gan_stylegan2.networks.StyleGAN2Architecture"
    assert config["init_args"]["g_architecture"] == "skip" and config["init_args"]["style_mixing"] == 0.9
    assert PathLength().config()["init_args"] == {"weight": 2.0, "interval": 4, "batch_shrink": 2, "decay": 0.01,
                                                  "style_mixing": True, "detach_mean": False}


@pytest.mark.parametrize("c_dim", [0, 3])
def test_path_length_and_r1_pass_the_regularizer_kit(c_dim: int) -> None:
    spec = StyleGAN2Architecture(resolution=8, c_dim=c_dim, **SMALL)
    check_regularizer("path_length", architecture=spec)
    check_regularizer({"class_path": "r1", "init_args": {"gamma": 1.0, "interval": 16}}, architecture=spec)


@pytest.mark.parametrize("kwargs", [
    dict(resolution=12), dict(resolution=2048), dict(g_architecture="dense"), dict(noise_mode="loud"),
    dict(style_mixing=1.5), dict(noise_phi=1.0), dict(conv_clamp=0.0), dict(fused_modconv="maybe"), dict(z_dim=0),
    dict(synthesis_input="noise"), dict(low_res_rgb_gain=0.0), dict(g_architecture="orig", low_res_rgb_gain=0.1),
])
def test_spec_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        StyleGAN2Architecture(**{**SMALL, **kwargs})


# -- equalized learning rate -----------------------------------------------------------------------
@pytest.mark.parametrize("lr_mul", [1.0, 0.01])
def test_equal_linear_keeps_unit_variance_at_init(lr_mul: float) -> None:
    torch.manual_seed(0)
    layer = EqualLinear(in_features=512, out_features=512, lr_mul=lr_mul)
    x = torch.randn(4096, 512)
    with torch.no_grad():
        y = layer(x)
    assert abs(float(y.var()) - 1.0) < 0.05  # 512 x 4096 outputs; the weight draw dominates the error (~3%)


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_equal_conv_keeps_unit_variance_at_init(kernel_size: int) -> None:
    torch.manual_seed(0)
    layer = EqualConv2d(in_channels=128, out_channels=128, kernel_size=kernel_size)
    x = torch.randn(32, 128, 12, 12)
    with torch.no_grad():
        y = layer(x)[:, :, 1:-1, 1:-1]  # away from the zero padding
    assert abs(float(y.var()) - 1.0) < 0.05


def test_lrelu_gain_keeps_second_moment() -> None:
    # E[lrelu(y)^2] * 2 = (1 + 0.2^2) / 2 * 2 = 1.04 for y ~ N(0, 1)
    torch.manual_seed(0)
    layer = EqualLinear(in_features=256, out_features=256, activation="lrelu")
    with torch.no_grad():
        y = layer(torch.randn(8192, 256))
    assert abs(float(y.square().mean()) - 1.04) < 0.05


# -- resampling convolutions -----------------------------------------------------------------------
@pytest.mark.parametrize("kernel_size", [1, 3])
@pytest.mark.parametrize("out_channels", [3, 6])
def test_conv2d_resample_matches_dense_reference(kernel_size: int, out_channels: int) -> None:
    """Up: ``conv(upsample2d(x))`` on a zero-extended grid; down: ``downsample2d(conv(x))`` likewise."""
    g = _gen()
    x = torch.randn(2, 5, 8, 8, generator=g, dtype=torch.float64)
    w = torch.randn(out_channels, 5, kernel_size, kernel_size, generator=g, dtype=torch.float64)
    f = resample_filter().double()
    p = kernel_size // 2
    up = conv2d_resample(x, w, f=f, up=2)
    ref_up = F.conv2d(upsample2d(x, f, padding=p), w)  # the upsampled signal extended by p, then valid conv
    assert up.shape == (2, out_channels, 16, 16)
    torch.testing.assert_close(up, ref_up, rtol=0, atol=1e-12)
    down = conv2d_resample(x, w, f=f, down=2)
    ref_down = downsample2d(F.conv2d(x, w, padding=2 * p), f, padding=-p)
    assert down.shape == (2, out_channels, 4, 4)
    torch.testing.assert_close(down, ref_down, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("up", "down", "kernel_size"), [(2, 1, 3), (1, 2, 3), (2, 1, 1), (1, 2, 1)])
def test_second_derivatives_of_resampling_convs_are_exact(up: int, down: int, kernel_size: int) -> None:
    """R1 and path length differentiate twice: gradgradcheck (finite differences) of x and the weight."""
    g = _gen()
    x = torch.randn(1, 2, 6, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, kernel_size, kernel_size, generator=g, dtype=torch.float64, requires_grad=True)
    f = resample_filter().double()
    x_cl = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    for inp in (x, x_cl):
        assert torch.autograd.gradgradcheck(lambda a, b: conv2d_resample(a, b, f=f, up=up, down=down), (inp, w))


def test_upsampling_conv_keeps_a_constant_map() -> None:
    """Zero insertion + the FIR filter with gain 4 preserves DC: a constant input gives sum(w) * c inside."""
    x = torch.full((1, 1, 8, 8), 2.0, dtype=torch.float64)
    w = torch.arange(9, dtype=torch.float64).reshape(1, 1, 3, 3) / 10
    y = conv2d_resample(x, w, f=resample_filter().double(), up=2)
    torch.testing.assert_close(y[..., 3:-3, 3:-3], torch.full_like(y[..., 3:-3, 3:-3], 2.0 * float(w.sum())))


# -- modulation / demodulation ---------------------------------------------------------------------
@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("kernel_size", [1, 3])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_and_plain_modulated_conv_agree(up: int, kernel_size: int, demodulate: bool, channels_last: bool) -> None:
    torch.manual_seed(0)
    layer = ModulatedConv2d(in_channels=6, out_channels=5, kernel_size=kernel_size, w_dim=4, demodulate=demodulate,
                            up=up).double()
    x = torch.randn(3, 6, 8, 8, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(3, 4, dtype=torch.float64)
    fused, plain = layer(x, w, fused="fused"), layer(x, w, fused="plain")
    torch.testing.assert_close(fused, plain, rtol=1e-10, atol=1e-12)
    # and against the definition: per-sample weights w'_oik = s_i w_oik / sqrt(sum_ik w'^2 + eps) with w the
    # stored weight (its gain 1/sqrt(fan-in) cancels and must not scale eps), one conv each; without
    # demodulation w'_oik = s_i w_oik / sqrt(fan-in)
    styles = layer.affine(w)
    for n in range(3):
        wn = layer.weight * styles[n][None, :, None, None]
        if demodulate:
            wn = wn / (wn.square().sum([1, 2, 3], keepdim=True) + 1e-8).sqrt()
        else:
            wn = wn * layer.weight_gain
        ref = conv2d_resample(x[n:n + 1], wn, f=resample_filter().double(), up=up)
        torch.testing.assert_close(plain[n:n + 1], ref, rtol=1e-10, atol=1e-12)


def test_demodulation_coefficients_formula() -> None:
    g = _gen()
    weight, styles = torch.randn(4, 3, 3, 3, generator=g), torch.randn(2, 3, generator=g)
    d = demodulation_coefficients(weight, styles)
    w_prime = weight[None] * styles[:, None, :, None, None]  # [N, O, I, k, k]
    torch.testing.assert_close(d, (w_prime.square().sum([2, 3, 4]) + 1e-8).rsqrt())


def test_demodulated_output_variance_equals_input_variance() -> None:
    """i.i.d. N(0, 1) inputs, 256 -> 256 channels, 3x3, 64 samples with their own random styles: the output
    variance (interior pixels, all channels and samples) is 1 within 5%; without demodulation it is not."""
    torch.manual_seed(0)
    layer = ModulatedConv2d(in_channels=256, out_channels=256, kernel_size=3, w_dim=16)
    x = torch.randn(64, 256, 10, 10)
    w = torch.randn(64, 16) * 3
    with torch.no_grad():
        y = layer(x, w)[:, :, 1:-1, 1:-1]
        styles = layer.affine(w) * layer.weight_gain
        undemodulated = modulated_conv2d(x, layer.weight, styles, demodulate=False)[:, :, 1:-1, 1:-1]
    assert abs(float(y.var()) - 1.0) < 0.05
    assert abs(float(undemodulated.var()) - 1.0) > 0.2


# -- noise -----------------------------------------------------------------------------------------
def _phi_hat(x: torch.Tensor, dim: int) -> float:
    """``sum x_t x_{t-1} / sum x_{t-1}^2`` along ``dim`` after removing the mean."""
    x = x - x.mean()
    n = x.shape[dim]
    now, prev = x.narrow(dim, 1, n - 1), x.narrow(dim, 0, n - 1)
    return float((now * prev).sum() / prev.square().sum())


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9])
def test_ar1_noise_has_the_chosen_coefficient_and_unit_variance(phi: float) -> None:
    """64 maps of 64x64 (about 258k lag pairs per direction): phi_hat within 0.02 of phi along rows and
    columns, variance within 5% of 1 (the stationary AR(1) keeps every pixel at unit variance)."""
    x = ar1_noise(64, 64, 64, phi, generator=_gen(), dtype=torch.float64)
    assert abs(_phi_hat(x, -1) - phi) < 0.02
    assert abs(_phi_hat(x, -2) - phi) < 0.02
    assert abs(float(x.var()) - 1.0) < 0.05
    torch.testing.assert_close(ar1_matrix(16, phi, dtype=torch.float64).square().sum(1),
                               torch.ones(16, dtype=torch.float64))  # exact per-pixel variance 1


def test_noise_modes_and_zero_initial_strength() -> None:
    torch.manual_seed(0)
    layer = SynthesisLayer(in_channels=4, out_channels=4, w_dim=4, resolution=8)
    assert torch.equal(layer.noise.strength, torch.zeros(()))  # one scalar per layer (StyleGAN2)
    with torch.no_grad():
        layer.noise.strength.fill_(1.0)
        x, w = torch.randn(2, 4, 8, 8), torch.randn(2, 4)
        assert torch.equal(layer(x, w, "const"), layer(x, w, "const"))
        assert torch.equal(layer(x, w, "none"), layer(x, w, "none"))
        assert not torch.equal(layer(x, w, "random"), layer(x, w, "random"))
        assert not torch.equal(layer(x, w, "none"), layer(x, w, "const"))
    with pytest.raises(ValueError, match="noise_mode"):
        layer(x, w, "loud")


def test_noise_injection_adds_strength_times_map() -> None:
    torch.manual_seed(0)
    layer = NoiseInjection(channels=3, resolution=4, phi=0.3, strength="channel")
    with torch.no_grad():
        layer.strength.copy_(torch.tensor([0.0, 1.0, -2.0]))
        x = torch.zeros(2, 3, 4, 4)
        y = layer(x, "const")
    torch.testing.assert_close(y, layer.noise_const * layer.strength.view(1, 3, 1, 1) + x)


# -- mapping, truncation, style mixing -------------------------------------------------------------
def test_mapping_normalizes_z_and_tracks_w_avg_in_training_only() -> None:
    torch.manual_seed(0)
    net = MappingNetwork(z_dim=6, w_dim=5, num_ws=3, num_layers=2, w_avg_beta=0.9)
    z = torch.randn(7, 6)
    net.eval()
    w = net(z)
    assert w.shape == (7, 3, 5) and torch.equal(net.w_avg, torch.zeros(5))
    torch.testing.assert_close(net(3.0 * z), w)  # 2nd-moment normalization of z
    net.train()
    w = net(z).detach()
    torch.testing.assert_close(net.w_avg, 0.1 * w[:, 0].mean(0))  # lerp(mean, w_avg=0, beta=0.9)


def test_conditional_mapping_needs_c_and_uses_it() -> None:
    torch.manual_seed(0)
    net = MappingNetwork(z_dim=4, c_dim=3, w_dim=5, num_ws=None, num_layers=1).eval()
    z = torch.randn(2, 4)
    with pytest.raises(ValueError, match="c_dim"):
        net(z)
    a, b = net(z, torch.eye(3)[[0, 0]]), net(z, torch.eye(3)[[1, 1]])
    assert a.shape == (2, 5) and not torch.allclose(a, b)


def test_truncation_with_cutoff_changes_only_the_first_ws() -> None:
    torch.manual_seed(0)
    net = MappingNetwork(z_dim=4, w_dim=5, num_ws=6, num_layers=2).eval()
    net.w_avg.copy_(torch.randn(5))
    z = torch.randn(3, 4)
    w, t = net(z), net(z, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(t[:, :2], net.w_avg + 0.5 * (w[:, :2] - net.w_avg))
    torch.testing.assert_close(t[:, 2:], w[:, 2:])


@pytest.mark.parametrize("synthesis_input", ["const", "linear"])
def test_truncation_psi_zero_returns_the_w_avg_image(synthesis_input: str) -> None:
    torch.manual_seed(0)
    g = StyleGAN2Architecture(resolution=8, synthesis_input=synthesis_input, **SMALL).build().generator
    g.train()
    g(torch.randn(16, 8))  # w_avg moves away from zero
    g.eval()
    assert g.w_avg.abs().sum() > 0
    with torch.no_grad():
        images = g(torch.randn(5, 8), truncation_psi=0.0, noise_mode="const")
        reference = g.synthesis(g.w_avg[None], noise_mode="const")  # one w for every layer
    torch.testing.assert_close(images, reference.expand_as(images), rtol=0, atol=1e-6)


def test_linear_synthesis_input_is_a_unit_variance_map_of_the_first_w() -> None:
    """``synthesis_input="linear"``: the 4x4 input is ``(W / sqrt(w_dim)) w_0`` reshaped to [C, 4, 4], with unit
    variance at init for unit-variance w, and no other w reaches it; the paper's constant ignores every w."""
    torch.manual_seed(0)
    kwargs = dict(resolution=8, z_dim=8, w_dim=256, mapping_layers=2, channel_base=512, channel_max=64)
    inputs = {}

    def capture(name):  # noqa: ANN001, ANN202
        return lambda module, args: inputs.__setitem__(name, args[0].detach().clone())

    nets = {}
    for mode in ("const", "linear"):
        net = StyleGAN2Architecture(synthesis_input=mode, **kwargs).build().generator.synthesis_network
        net.blocks[0].conv1.register_forward_pre_hook(capture(mode))
        nets[mode] = net
    ws = torch.randn(512, nets["linear"].num_ws, 256)
    ws2 = ws.clone()
    ws2[:, 1:] = torch.randn_like(ws2[:, 1:])  # every w but the first changed
    lin = nets["linear"].blocks[0].input
    expected = (ws[:, 0] @ lin.weight.t() / math.sqrt(256)).view(512, 64, 4, 4)
    with torch.no_grad():
        nets["linear"](ws, noise_mode="const")
        first = inputs["linear"]
        torch.testing.assert_close(first, expected, rtol=1e-4, atol=1e-5)
        assert abs(float(first.var()) - 1.0) < 0.05  # 64 x 16 outputs of 256 inputs, 512 samples
        nets["linear"](ws2, noise_mode="const")
        torch.testing.assert_close(inputs["linear"], first)
        nets["linear"](ws[:, [1, 0] + list(range(2, ws.shape[1]))], noise_mode="const")
        assert (inputs["linear"] - first).abs().mean() > 0.5  # another first w: another input
        nets["const"](ws, noise_mode="const")
        torch.testing.assert_close(inputs["const"], nets["const"].blocks[0].const.detach().expand(512, -1, -1, -1))


@pytest.mark.parametrize("gain", [0.1, 0.5])
def test_low_res_rgb_gain_scales_exactly_the_low_resolution_images(gain: float) -> None:
    """Skip generator: ``img = T + gain * L`` with T the last block's ToRGB output and L the upsampled sum of
    the lower ones; the same weights with gain 1 give ``T + L``."""
    kwargs = dict(resolution=16, g_architecture="skip", **SMALL)
    nets = {}
    for g in (1.0, gain):
        torch.manual_seed(0)  # the same weights
        nets[g] = StyleGAN2Architecture(low_res_rgb_gain=g, **kwargs).build().generator.synthesis_network
    assert [b.rgb_gain for b in nets[gain].blocks] == [gain, gain, 1.0]  # 4, 8, 16 px
    top = []
    nets[1.0].blocks[-1].torgb.register_forward_hook(lambda m, a, out: top.append(out.detach().clone()))
    ws = torch.randn(4, nets[1.0].num_ws, SMALL["w_dim"])
    with torch.no_grad():
        full, scaled = nets[1.0](ws, noise_mode="const"), nets[gain](ws, noise_mode="const")
    low = full - top[0]
    assert low.abs().mean() > 0.1 and top[0].abs().mean() > 0.1  # both parts matter
    torch.testing.assert_close(scaled, top[0] + gain * low, rtol=1e-5, atol=1e-5)


def test_synthesis_broadcasts_one_w_to_every_layer() -> None:
    torch.manual_seed(0)
    g = StyleGAN2Architecture(resolution=8, **SMALL).build().generator.eval()
    w = torch.randn(2, 8)
    with torch.no_grad():
        torch.testing.assert_close(g.synthesis(w, noise_mode="const"),
                                   g.synthesis(w[:, None].expand(-1, g.num_ws, -1), noise_mode="const"))
    with pytest.raises(ValueError, match="ws"):
        g.synthesis(torch.randn(2, 3, 8))


def test_ppl_in_w_space_jodi_and_generate_truncation_use_the_style_api() -> None:
    from lightning_gan.commands import _truncated
    from lightning_gan.metrics.jacobian import JODI
    from lightning_gan.metrics.ppl import PixelDistance, path_length_samples

    torch.manual_seed(0)
    g = StyleGAN2Architecture(resolution=8, c_dim=2, **SMALL).build().generator
    values = path_length_samples(g, 6, space="w", distance=PixelDistance(), batch_size=3)
    assert values.shape == (6,) and bool(torch.isfinite(values).all())
    jodi = JODI(map="mapping", num_samples=4).compute(g, None)
    assert 0.0 <= jodi["jodi/mapping"] <= 1.0
    g.eval()
    z, c = torch.randn(3, 8), torch.eye(2)[[0, 1, 0]]
    with torch.no_grad():
        torch.manual_seed(1)
        a = _truncated(g, z, c, 0.5)
        torch.manual_seed(1)
        b = g.synthesis(g.w_avg + 0.5 * (g.mapping(z, c) - g.w_avg))
    torch.testing.assert_close(a, b)


def test_mix_styles_takes_a_suffix_from_the_second_latent() -> None:
    torch.manual_seed(0)
    ws, ws2 = torch.zeros(200, 6, 2), torch.ones(200, 6, 2)
    mixed = mix_styles(ws, ws2, 1.0, "sample")[..., 0]  # [N, num_ws]: 0 before the crossover, 1 after
    cut = (mixed == 0).sum(1)
    assert torch.equal(mixed, (torch.arange(6)[None] >= cut[:, None]).float())  # a prefix/suffix split
    assert set(cut.tolist()) == {1, 2, 3, 4, 5}  # crossover uniform over 1..num_ws-1
    assert torch.equal(mix_styles(ws, ws2, 0.0, "sample"), ws)
    share = float((mix_styles(ws, ws2, 0.9, "sample")[:, -1, 0] == 1).float().mean())
    assert 0.8 < share < 0.97  # 200 samples at p = 0.9


def test_style_mixing_only_in_training_mode() -> None:
    torch.manual_seed(0)
    g = StyleGAN2Architecture(resolution=8, style_mixing=1.0, noise_mode="const", **SMALL).build().generator
    z = torch.randn(4, 8)
    with torch.no_grad():
        g.eval()
        plain = g.synthesis(g.mapping(z))
        torch.testing.assert_close(g(z), plain)
        g.train()
        assert not torch.allclose(g(z), plain)


# -- mixed precision -------------------------------------------------------------------------------
def test_fp16_resolutions_are_the_highest_never_4x4() -> None:
    assert fp16_resolutions(64, 2) == {64, 32}
    assert fp16_resolutions(16, 5) == {16, 8}
    assert fp16_resolutions(16, 0) == set()


def test_fp16_blocks_on_cpu_compute_in_float32_with_clamping(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    spec = dict(resolution=16, conv_clamp=256.0, **SMALL)
    g32, d32 = StyleGAN2Architecture(**spec).build()
    g16, d16 = StyleGAN2Architecture(num_fp16_res=2, **spec).build()
    g16.load_state_dict(g32.state_dict())
    d16.load_state_dict(d32.state_dict())
    for net in (g32, g16):
        net.eval()
    z = torch.randn(4, 8)
    with torch.no_grad():
        x32, x16 = g32(z, noise_mode="const"), g16(z, noise_mode="const")
        assert x16.dtype == torch.float32 and torch.equal(x16, x32)  # CPU: the same float32 computation
        assert torch.equal(d16(x16), d32(x32))
        # the float16 path itself (used on CUDA), forced on CPU: finite and close to float32
        monkeypatch.setattr(synthesis_module, "block_dtype",
                            lambda use_fp16, dtype, device, force_fp32=False: torch.float16 if use_fp16 and not force_fp32 else dtype)
        from lightning_gan_stylegan2 import discriminator as discriminator_module
        monkeypatch.setattr(discriminator_module, "block_dtype", synthesis_module.block_dtype)
        y16 = g16(z, noise_mode="const")
        assert y16.dtype == torch.float32 and bool(torch.isfinite(y16).all())
        torch.testing.assert_close(y16, x32, rtol=0, atol=0.05 * float(x32.abs().max()))
        logits = d16(x32)
        assert bool(torch.isfinite(logits).all())
        torch.testing.assert_close(logits, d32(x32), rtol=0, atol=0.05 * float(d32(x32).abs().max()) + 1e-3)
        assert torch.equal(g16.synthesis(g16.mapping(z), noise_mode="const", force_fp32=True), x32)


def test_conv_clamp_bounds_every_layer_output() -> None:
    torch.manual_seed(0)
    g, d = StyleGAN2Architecture(resolution=8, conv_clamp=0.05, **SMALL).build()
    seen = []

    def hook(module, inputs, output):
        seen.append(float(output.abs().max()))

    for m in [*g.modules(), *d.modules()]:
        if isinstance(m, (SynthesisLayer, EqualConv2d)) and m.conv_clamp is not None:
            m.register_forward_hook(hook)
    with torch.no_grad():
        d(g(torch.randn(4, 8)))
    assert len(seen) > 5 and max(seen) <= 0.05 + 1e-7


# -- discriminator ---------------------------------------------------------------------------------
def test_minibatch_stddev_formula_and_group_fallback() -> None:
    g = _gen()
    x = torch.randn(8, 6, 3, 3, generator=g, dtype=torch.float64)
    y = minibatch_stddev(x, group_size=4, num_channels=2)
    assert y.shape == (8, 8, 3, 3) and torch.equal(y[:, :6], x)
    for n in range(8):
        group = x[n % 2::2]  # samples n, n + N/G, ... (G = 4, N/G = 2)
        for f in range(2):
            sd = group[:, 3 * f:3 * f + 3].std(0, unbiased=False).add(0).square().add(1e-8).sqrt().mean()
            torch.testing.assert_close(y[n, 6 + f], torch.full((3, 3), float(sd), dtype=torch.float64))
    odd = minibatch_stddev(x[:6], group_size=4)  # 6 samples: groups of 3
    group = x[0:6:2]
    torch.testing.assert_close(odd[0, 6, 0, 0], ((group - group.mean(0)).square().mean(0) + 1e-8).sqrt().mean())


def test_conditional_projection_is_the_scaled_inner_product() -> None:
    torch.manual_seed(0)
    d = StyleGAN2Discriminator(c_dim=3, resolution=8, channel_base=64, channel_max=8, cmap_dim=5)
    captured = {}
    d.epilogue.out.register_forward_hook(lambda m, i, o: captured.__setitem__("h", o))
    d.mapping.register_forward_hook(lambda m, i, o: captured.__setitem__("cmap", o))
    x, c = torch.randn(4, 3, 8, 8), torch.eye(3)[[0, 1, 2, 0]]
    with torch.no_grad():
        logits = d(x, c)
    assert captured["h"].shape == (4, 5) and captured["cmap"].shape == (4, 5)
    torch.testing.assert_close(logits, (captured["h"] * captured["cmap"]).sum(1) / math.sqrt(5))


def test_residual_discriminator_block_scales_both_branches() -> None:
    from lightning_gan_stylegan2.discriminator import DiscriminatorBlock

    torch.manual_seed(0)
    block = DiscriminatorBlock(in_channels=4, tmp_channels=4, out_channels=6, resolution=8, img_channels=3)
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        out, _ = block(x, None)
        f = block.resample_filter
        skip = conv2d_resample(x, block.skip.weight * block.skip.weight_gain, f=f, down=2)
        h = F.leaky_relu(F.conv2d(x, block.conv0.weight * block.conv0.weight_gain, block.conv0.bias, padding=1), 0.2)
        h = h * math.sqrt(2)
        main = F.leaky_relu(conv2d_resample(h, block.conv1.weight * block.conv1.weight_gain, f=f, down=2,
                                            bias=block.conv1.bias), 0.2) * math.sqrt(2)
    torch.testing.assert_close(out, (skip + main) * math.sqrt(0.5), rtol=1e-5, atol=1e-6)


# -- path length -----------------------------------------------------------------------------------
class _LinearStyleGenerator(StyleGAN2Generator):
    """mapping(z) = z as 2 ws; synthesis(ws) = A (mean of ws), an image [N, 1, 4, 4]: J^T y = A^T y / 2 per w."""

    def __init__(self) -> None:
        super().__init__(z_dim=3, w_dim=3, resolution=4, channel_base=16, channel_max=1, mapping_layers=1)
        self.a = torch.nn.Parameter(torch.randn(16, 3, dtype=torch.float64))

    def mapping(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None, update_w_avg=True):
        return z[:, None, :].expand(-1, 2, -1) * 1.0

    def synthesis(self, ws, noise_mode=None, force_fp32=False):
        return (ws.mean(1) @ self.a.t()).view(-1, 1, 4, 4)


def test_path_length_penalty_formula_and_running_mean() -> None:
    from lightning_gan.interfaces import PenaltyInputs
    from lightning_gan_stylegan2.path_length import PathLength

    g = _LinearStyleGenerator()
    z = torch.randn(6, 3, dtype=torch.float64)
    reg = PathLength(weight=2.0, batch_shrink=2, decay=0.25, style_mixing=False).double()
    inputs = PenaltyInputs(generator=g, discriminator=None, real=torch.zeros(12, 1, 4, 4), real_c=None,
                           latent_sampler=lambda n: (z[:n], None))
    torch.manual_seed(3)
    penalty = reg(inputs)
    torch.manual_seed(3)
    y = torch.randn(6, 1, 4, 4, dtype=torch.float64) / 4.0  # / sqrt(H W)
    jty = (y.flatten(1) @ g.a.detach()) / 2  # [N, w_dim] for each of the 2 ws
    lengths = jty.square().sum(1).sqrt()  # sqrt(mean over the 2 ws of the sum over w_dim)
    a = 0.25 * lengths.mean()
    torch.testing.assert_close(reg.mean_length, a)
    torch.testing.assert_close(penalty, 2.0 * (lengths - a).square().mean())
    assert "mean_length" in reg.state_dict()


def test_path_length_runs_in_gan_module_and_is_checkpointed(tmp_path) -> None:
    from lightning.pytorch import Trainer

    from lightning_gan.data.shapes import ShapesDataModule
    from lightning_gan.module import GANModule
    from lightning_gan.regularizers import R1
    from lightning_gan_stylegan2.path_length import PathLength

    torch.manual_seed(0)
    module = GANModule(architecture=StyleGAN2Architecture(resolution=8, **SMALL),
                       regularizers=[R1(gamma=1.0, interval=4), PathLength(interval=2)], metrics=[])
    data = ShapesDataModule(resolution=8, batch_size=4, num_samples=16)
    trainer = Trainer(max_steps=6, logger=False, enable_progress_bar=False, enable_checkpointing=False,
                      limit_val_batches=0, num_sanity_val_steps=0, enable_model_summary=False,
                      default_root_dir=tmp_path)
    trainer.fit(module, data)
    assert module.iteration == 2  # 4 + 2 optimizer steps
    assert module.schedule.table(4) == [("Dmain", "Dreg", "Gmain", "Greg"), ("Dmain", "Gmain"),
                                        ("Dmain", "Gmain", "Greg"), ("Dmain", "Gmain")]
    assert float(module.regularizers[1].mean_length) > 0
    assert "regularizers.1.mean_length" in module.state_dict()
    assert float(module.generator.w_avg.abs().sum()) > 0


def _colour_by_class(n: int, red_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """8x8 images whose colour is their class: ``red_class`` is red (+0.8 in channel 0), the other blue."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(2, (n,), generator=g)
    x = torch.full((n, 3, 8, 8), -0.8)
    x[labels == red_class, 0] = 0.8
    x[labels != red_class, 2] = 0.8
    return x + 0.05 * torch.randn(x.shape, generator=g), labels


@pytest.mark.slow
@pytest.mark.parametrize("red_class", [0, 1])
def test_conditional_model_learns_the_class_colour_association(red_class: int) -> None:
    """End to end through GANModule: G follows the labels' colours, and D prefers the matching condition.

    Known answer: red minus blue is +1.6 for the red class and -1.6 for the other. Both label conventions
    are trained from the same seed, so a generator that splits colours by c without D's conditional signal
    (the mapping network gives each class its own w region, hence its own colour, by chance) matches only
    one of them: with D's condition shuffled, both runs make class 0 red. D's margin is the mean logit of
    real images with their own class minus with the swapped class (about 2 here; 0.0 with shuffled c).
    """
    from lightning.pytorch import Trainer
    from torch.utils.data import DataLoader, TensorDataset

    from lightning_gan.module import GANModule
    from lightning_gan.regularizers import R1

    torch.manual_seed(0)
    x, labels = _colour_by_class(2048, red_class, seed=0)
    spec = StyleGAN2Architecture(resolution=8, c_dim=2, z_dim=16, w_dim=16, mapping_layers=2, channel_base=128,
                                 channel_max=16, d_mapping_layers=2, d_mapping_lr_mul=1.0)  # 100 iterations only
    module = GANModule(architecture=spec, regularizers=[R1(gamma=0.1, interval=4)], metrics=[], ema_kimg=None,
                       g_optimizer=lambda p: torch.optim.Adam(p, lr=0.005, betas=(0.0, 0.99)),
                       d_optimizer=lambda p: torch.optim.Adam(p, lr=0.005, betas=(0.0, 0.99)))
    trainer = Trainer(max_steps=200, logger=False, enable_progress_bar=False, enable_checkpointing=False,
                      limit_val_batches=0, num_sanity_val_steps=0, enable_model_summary=False, accelerator="cpu")
    trainer.fit(module, DataLoader(TensorDataset(x, labels), batch_size=16, shuffle=True))  # 100 iterations
    G, D = module.generator.eval(), module.discriminator.eval()
    with torch.no_grad():
        for k in range(2):
            c = F.one_hot(torch.full((256,), k), 2).float()
            img = G(torch.randn(256, 16, generator=_gen(seed=k)), c)
            red_minus_blue = (img[:, 0] - img[:, 2]).mean((1, 2))  # [N]
            expected = 1.6 if k == red_class else -1.6
            assert (red_minus_blue * expected > 0).float().mean() > 0.95, (k, red_minus_blue.mean())
            assert abs(float(red_minus_blue.mean()) - expected) < 0.8, (k, red_minus_blue.mean())
        real, real_labels = _colour_by_class(512, red_class, seed=1)
        own = F.one_hot(real_labels, 2).float()
        margin = (D(real, own) - D(real, 1 - own)).mean()
    assert margin > 0.5
