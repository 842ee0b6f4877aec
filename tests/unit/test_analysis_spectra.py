"""Spectral diagnostics against closed forms: rings, Parseval, energy splits, gaps; plots; textures; demodulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from lightning_gan.analysis.demodulation import (
    activation_variance_ratios,
    find_modulated_convs,
    format_variance_ratios,
    plot_variance_ratios,
)
from lightning_gan.analysis.plots import heatmap, line_plot, viridis
from lightning_gan.analysis.spectra import (
    energy_split,
    hann_window_2d,
    plot_spectra,
    power_spectrum_2d,
    radial_power_spectrum,
    ring_index,
    spectral_gap,
)
from lightning_gan.data.shapes import ShapesDataset
from lightning_gan.data.textures import TEXTURES, TexturesDataModule, TexturesDataset, render_textures
from lightning_gan.interfaces import Generator
from lightning_gan.metrics.base import generate_images
from lightning_gan.utils.images import PALETTE

N = 32  # image side of most tests


def sinusoid(kx: int, ky: int, size: int = N, phase: float = 0.3) -> Tensor:
    """cos(2 pi (kx x + ky y) / size + phase) [1, 1, size, size]: kx, ky cycles per image."""
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                          indexing="ij")
    return torch.cos(2 * math.pi * (kx * x + ky * y) / size + phase)[None, None]


def checkerboard(size: int = N) -> Tensor:
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (((x + y) % 2) * 2 - 1).to(torch.float64)[None, None]


def ring_counts(size: int = N) -> Tensor:
    return torch.bincount(ring_index(size, size).flatten())


# -- spectra ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kx", "ky", "ring"), [(3, 4, 5), (5, 0, 5), (0, 7, 7), (11, 0, 11)])
def test_integer_cycle_sinusoid_puts_all_its_power_in_its_ring(kx, ky, ring):
    x = sinusoid(kx, ky)
    freq, power = radial_power_spectrum(x)
    assert freq.shape == (N // 2,) and torch.allclose(freq, torch.arange(1, N // 2 + 1, dtype=torch.float64) / N)
    # Parseval: the ring's energy (mean power * frequencies in the ring) is sum x^2 = N^2 / 2.
    assert power[ring - 1] * ring_counts()[ring] == pytest.approx(N * N / 2, rel=1e-12)
    others = torch.cat([power[:ring - 1], power[ring:]])
    assert others.max() < 1e-12 * power[ring - 1]  # float64 round-off only
    assert freq[ring - 1] == pytest.approx(math.hypot(kx, ky) / N, abs=0.5 / N)


def test_white_noise_is_flat_at_its_variance_and_parseval_is_exact():
    sigma = 2.0
    x = sigma * torch.randn(16, 2, N, N, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    p2d = power_spectrum_2d(x)
    centred = x - x.mean(dim=(2, 3), keepdim=True)
    # Parseval, exactly: sum over frequencies = mean over (n, c) of sum over pixels of (x - mean)^2.
    assert float(p2d.sum()) == pytest.approx(float(centred.square().sum(dim=(2, 3)).mean()), rel=1e-12)
    assert float(p2d.mean()) == pytest.approx(float(centred.square().mean()), rel=1e-12)  # = pixel variance
    freq, power = radial_power_spectrum(x)
    # Flat at sigma^2: each ring pools 32 images x (8 .. 100) frequencies of chi^2_2 / 2 power.
    assert power.min() > 0.75 * sigma**2 and power.max() < 1.25 * sigma**2  # measured 0.95 .. 1.09 x sigma^2
    weighted = (power * ring_counts()[1:N // 2 + 1]).sum() / ring_counts()[1:N // 2 + 1].sum()
    assert float(weighted) == pytest.approx(sigma**2, rel=0.03)
    slope = np.polyfit(freq.numpy(), power.numpy() / sigma**2, 1)[0]
    assert abs(slope) < 0.5  # no trend over 0..0.5 cycles/pixel


def test_hann_window_keeps_the_noise_level_and_localises_a_sinusoid():
    w = hann_window_2d(N, N)
    assert float(w.square().mean()) == pytest.approx(1.0, rel=1e-12)
    x = torch.randn(16, 1, N, N, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert float(power_spectrum_2d(x, window=True).mean()) == pytest.approx(1.0, rel=0.05)
    # A non-integer frequency (5.5 cycles/image) leaks everywhere without the window, stays near ring 5-6 with it.
    y, xx = torch.meshgrid(torch.arange(N, dtype=torch.float64), torch.arange(N, dtype=torch.float64), indexing="ij")
    leaky = torch.cos(2 * math.pi * 5.5 * xx / N)[None, None]
    counts = ring_counts()[1:N // 2 + 1]
    share_far = {}
    for window in (False, True):
        _, power = radial_power_spectrum(leaky, window=window)
        energy = power * counts
        share_far[window] = float(energy[9:].sum() / energy.sum())  # rings >= 10
    assert share_far[True] < 1e-3 < share_far[False]  # measured 1.3e-5 vs 3.5e-2


def test_energy_split_structure_vs_texture():
    low = energy_split(sinusoid(2, 1))  # f = 0.07 cycles/pixel
    assert low["low"] == pytest.approx(1.0, abs=1e-12) and low["high"] == pytest.approx(0.0, abs=1e-12)
    high = energy_split(checkerboard())  # all at (0.5, 0.5), f = 0.707
    assert high["high"] == pytest.approx(1.0, abs=1e-12)
    assert energy_split(sinusoid(8, 0))["low"] == pytest.approx(1.0, abs=1e-12)  # f = 0.25: the cutoff is "low"
    assert energy_split(sinusoid(9, 0))["high"] == pytest.approx(1.0, abs=1e-12)
    # Equal energy at 0.0625 and 0.375 cycles/pixel: half and half; the 2-D spectrum gives the same split.
    both = sinusoid(2, 0) + sinusoid(0, 12)
    split = energy_split(both)
    assert split["low"] == pytest.approx(0.5, abs=1e-12) and split["high"] == pytest.approx(0.5, abs=1e-12)
    assert energy_split(power_spectrum_2d(both)) == split
    assert energy_split(both, cutoff=0.4)["low"] == pytest.approx(1.0, abs=1e-12)
    flat = energy_split(torch.ones(2, 3, 8, 8))
    assert math.isnan(flat["low"]) and math.isnan(flat["high"])


def test_spectral_gap_is_mean_absolute_log10_difference():
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert spectral_gap(x, x) == 0.0
    assert spectral_gap(x, 2 * x) == pytest.approx(math.log10(4), rel=1e-9)  # power x4 in every ring
    assert spectral_gap(x, x + 5.0) == pytest.approx(0.0, abs=1e-12)  # the mean (DC) is ignored
    real = radial_power_spectrum(x)
    fake = (real[0], real[1] * torch.where(torch.arange(8) < 4, 10.0, 1.0).double())  # 1 decade on half the rings
    assert spectral_gap(real, fake) == pytest.approx(0.5, rel=1e-12)
    with pytest.raises(ValueError, match="different frequencies"):
        spectral_gap(x, torch.randn(4, 3, 32, 32))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        radial_power_spectrum(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="empty"):
        power_spectrum_2d(torch.zeros(0, 3, 8, 8))
    with pytest.raises(ValueError, match="num_bins"):
        radial_power_spectrum(torch.zeros(1, 1, 8, 8), num_bins=7)  # rings reach round(8 * 0.707) = 6
    assert radial_power_spectrum(torch.randn(1, 1, 8, 8), num_bins=6)[0].shape == (6,)  # corners included
    with pytest.raises(ValueError, match="cutoff"):
        energy_split(torch.zeros(1, 1, 8, 8), cutoff=0.0)
    with pytest.raises(ValueError, match="power spectrum"):
        energy_split(torch.zeros(8))
    with pytest.raises(ValueError, match="frequency and power"):
        spectral_gap((torch.zeros(3), torch.zeros(2)), (torch.zeros(3), torch.zeros(3)))


# -- plots --------------------------------------------------------------------------------------------
def _near(image: Image.Image, color: tuple[int, int, int], tol: int = 40) -> int:
    a = np.asarray(image.convert("RGB")).astype(np.int64)
    return int((np.abs(a - np.array(color)).sum(axis=2) < tol).sum())


def test_plot_spectra_writes_a_png_of_the_requested_size_with_both_lines(tmp_path):
    x = torch.randn(4, 1, N, N, generator=torch.Generator().manual_seed(3))
    smooth = x.cumsum(3).cumsum(2)
    path = tmp_path / "sub" / "spectra.png"
    plot_spectra({"noise": radial_power_spectrum(x), "smooth": radial_power_spectrum(smooth)}, path)
    image = Image.open(path)
    assert image.format == "PNG" and image.size == (640, 420)
    a = np.asarray(image.convert("RGB"))
    assert (a.min(axis=2) < 200).mean() > 0.02  # ink: axes, text, lines (measured 3.8 %)
    assert _near(image, PALETTE[0]) > 100 and _near(image, PALETTE[1]) > 100  # one colour per line


def test_line_plot_log_axis_skips_non_positive_points_and_heatmap_draws_a_colour_bar(tmp_path):
    img = line_plot({"a": ([0, 1, 2, 3], [1e-3, 0.0, 1.0, 10.0]), "b": ([0, 3], [1.0, 1.0])}, None, "x", "y", "t",
                    logy=True, hlines=(1.0,), size=(400, 300))
    assert img.size == (400, 300)
    with pytest.raises(ValueError, match="at least one series"):
        line_plot({}, None, "x", "y", "t")
    with pytest.raises(ValueError, match="x has 2 values but y has 3"):
        line_plot({"a": ([0, 1], [1, 2, 3])}, None, "x", "y", "t")
    values = torch.linspace(0, 1, 64).view(8, 8)
    path = tmp_path / "heat.png"
    heatmap(values, path, "singular values", "sigma", xlabel="u", ylabel="v", extent=(-0.5, 0.5, -0.5, 0.5))
    image = Image.open(path)
    assert image.size == (560, 480)
    assert _near(image, tuple(viridis(0.0)), 12) > 200 and _near(image, tuple(viridis(1.0)), 12) > 200
    assert viridis(float("nan")).tolist() == [200, 200, 200]
    with pytest.raises(ValueError, match="2-D"):
        heatmap(torch.zeros(5), None, "t", "c")


# -- textures -------------------------------------------------------------------------------------------
def test_textures_are_deterministic_by_index_and_texture_heavy():
    x, labels = render_textures(range(48), resolution=N, seed=5)
    x2, labels2 = render_textures([7, 3], resolution=N, seed=5)
    assert torch.equal(x2, x[[7, 3]]) and torch.equal(labels2, labels[[7, 3]])
    assert not torch.equal(render_textures([7], resolution=N, seed=6)[0], x[[7]])
    assert x.dtype == torch.float32 and x.shape == (48, 3, N, N) and x.min() >= -1 and x.max() <= 1
    assert set(labels.tolist()) == set(range(len(TEXTURES)))
    shapes, _ = ShapesDataset(num_samples=48, resolution=N).__getitems__(list(range(48)))
    tex, struct = energy_split(x), energy_split(shapes)
    assert tex["high"] > 0.9 and struct["low"] > 0.9  # measured 0.957 and 0.964
    grey, _ = render_textures(range(4), resolution=16, channels=1, classes=["checkerboard"])
    assert grey.shape == (4, 1, 16, 16) and energy_split(grey)["high"] > 0.99


def test_textures_datamodule_mirrors_the_shapes_api():
    dm = TexturesDataModule(resolution=16, channels=3, num_samples=40, batch_size=8, seed=1,
                            classes=["grating", "noise"])
    assert dm.data_shape == (3, 16, 16) and dm.num_classes == 2
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 16, 16) and y.max() <= 1
    ds = TexturesDataset(num_samples=4, resolution=16)
    assert ds[3][0].shape == (3, 16, 16)
    with pytest.raises(IndexError):
        ds.__getitems__([4])
    with pytest.raises(ValueError, match="Unknown texture"):
        TexturesDataModule(classes=["wood"])
    with pytest.raises(ValueError, match="frequency_range"):
        TexturesDataModule(frequency_range=(0.3, 0.6))


# -- demodulation ------------------------------------------------------------------------------------
class _ConvGenerator(Generator):
    """A non-style generator: linear + plain conv."""

    def __init__(self) -> None:
        super().__init__(z_dim=4, output_shape=(1, 4, 4))
        self.fc = nn.Linear(4, 16)
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        return self.conv(self.fc(z).view(-1, 1, 4, 4))


def test_non_style_generator_is_refused():
    with pytest.raises(ValueError, match="style-based generator"):
        activation_variance_ratios(_ConvGenerator(), 4)
    with pytest.raises(ValueError, match="num_samples"):
        activation_variance_ratios(_ConvGenerator(), 0)


def test_demodulation_keeps_unit_variance_for_iid_unit_inputs():
    pytest.importorskip("lightning_gan_stylegan2")
    from lightning_gan_stylegan2.layers import ModulatedConv2d

    torch.manual_seed(0)
    c, size = 32, 48
    x = torch.randn(4, c, size, size)  # i.i.d. N(0, 1)
    w = torch.randn(4, 32)
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))  # zero padding shortens the border sums
    demod = ModulatedConv2d(in_channels=c, out_channels=c, kernel_size=3, w_dim=32, demodulate=True)
    with torch.no_grad():
        y = demod(x, w)
        assert float(y[inner].var()) == pytest.approx(1.0, rel=0.05)  # Var(out) = Var(in); measured 1.002
        demod.affine.bias.mul_(7.0)  # larger styles: the demodulated output keeps its scale
        assert float(demod(x, w)[inner].var()) == pytest.approx(1.0, rel=0.05)  # measured 1.004
        # Without demodulation the variance is the mean squared norm of the modulated weights: sum_{i,k} w'^2.
        plain = ModulatedConv2d(in_channels=c, out_channels=c, kernel_size=3, w_dim=32, demodulate=False)
        styles = plain.affine(w) * plain.weight_gain  # [N, I]
        expected = (styles.square() @ plain.weight.square().sum([2, 3]).t()).mean()  # mean over (n, o)
        assert float(plain(x, w)[inner].var()) == pytest.approx(float(expected), rel=0.05)  # 1.697 vs 1.684


class _OneLayerGenerator(Generator):
    """i.i.d. N(0, 1) feature maps straight from z into one StyleGAN2 synthesis layer (which calls
    ``conv.forward_unscaled``, bypassing forward hooks)."""

    def __init__(self, layer: nn.Module, channels: int, size: int) -> None:
        super().__init__(z_dim=channels * size * size, output_shape=(channels, size, size))
        self.layer, self.shape = layer, (channels, size, size)

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        return self.layer(z.view(-1, *self.shape), z[:, :32], noise_mode="none")


def test_activation_variance_ratio_of_one_layer_on_iid_inputs():
    pytest.importorskip("lightning_gan_stylegan2")
    from lightning_gan_stylegan2.synthesis import SynthesisLayer

    torch.manual_seed(0)
    layer = SynthesisLayer(in_channels=32, out_channels=32, w_dim=32, resolution=48)
    rows = activation_variance_ratios(_OneLayerGenerator(layer, 32, 48), num_samples=4, seed=0)
    assert [r.name for r in rows] == ["layer.conv"]
    (row,) = rows
    assert row.demodulate and not row.to_image
    assert row.input_variance == pytest.approx(1.0, rel=0.02)
    # Zero padding: border pixels (8 % of a 48 x 48 map) see only 6 or 4 of the 9 taps; measured ratio 0.977.
    assert row.ratio == pytest.approx(1.0, rel=0.05)
    assert row.cumulative == row.ratio
    assert "forward_unscaled" not in vars(layer.conv)  # the wrapper is gone


def test_activation_variance_ratios_through_a_tiny_stylegan2():
    pytest.importorskip("lightning_gan_stylegan2")
    from lightning_gan_stylegan2.networks import StyleGAN2Architecture

    torch.manual_seed(0)
    generator = StyleGAN2Architecture(resolution=16, channels=3, channel_base=256, channel_max=32, z_dim=32,
                                      w_dim=32, mapping_layers=2).build().generator
    generator.train()
    before = generate_images(generator, 8, seed=3)
    rows = activation_variance_ratios(generator, num_samples=16, seed=0)
    names = [name for name, _ in find_modulated_convs(generator)]
    assert [r.name for r in rows] == names  # 3 blocks: conv1 + torgb, then conv0, conv1, torgb twice
    assert len(rows) == 8 and [r.to_image for r in rows] == ["torgb" in n for n in names]
    assert [r.demodulate for r in rows] == ["torgb" not in n for n in names]
    chain = 1.0
    for r in rows:
        assert r.ratio == pytest.approx(r.output_variance / r.input_variance, rel=1e-12)
        assert r.cumulative == pytest.approx(chain * r.ratio, rel=1e-12)
        if not r.to_image:
            chain *= r.ratio
            assert math.isfinite(r.modulated_ratio)  # the plain path exposes the pre-demodulation output
        else:
            assert r.modulated_ratio == pytest.approx(r.ratio, rel=1e-9)  # no demodulation: the same thing
        assert 0.1 < r.ratio < 10.0
    assert rows == activation_variance_ratios(generator, num_samples=16, seed=0)  # seeded
    assert rows != activation_variance_ratios(generator, num_samples=16, seed=1)
    assert generator.training  # mode restored, instrumentation removed, outputs unchanged
    assert not any("forward_unscaled" in vars(m) for m in generator.modules())
    assert torch.equal(generate_images(generator, 8, seed=3), before)
    table = format_variance_ratios(rows)
    assert "blocks.0.conv1.conv" in table and "(to image)" in table


def test_plot_variance_ratios(tmp_path):
    pytest.importorskip("lightning_gan_stylegan2")
    from lightning_gan_stylegan2.networks import StyleGAN2Architecture

    torch.manual_seed(0)
    generator = StyleGAN2Architecture(resolution=8, channels=1, channel_base=64, channel_max=8, z_dim=8,
                                      w_dim=8, mapping_layers=1).build().generator
    path = tmp_path / "ratios.png"
    plot_variance_ratios(activation_variance_ratios(generator, num_samples=4), path)
    assert Image.open(path).size == (640, 420)
