"""DCGAN plugin: the conformance kit on several configurations, and its shapes and numbers by hand."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_gan import registry
from lightning_gan.testing import check_architecture
from lightning_gan_dcgan.dcgan import (
    DCGANArchitecture,
    DCGANDiscriminator,
    DCGANGenerator,
    DiscriminatorBlock,
    GeneratorBlock,
    channel_width,
)

SMALL = dict(z_dim=8, base_channels=4, max_channels=16)


@pytest.mark.parametrize(
    ("resolution", "channels", "c_dim", "spectral_norm"),
    [(8, 1, 0, False), (16, 3, 0, True), (32, 3, 0, False), (8, 3, 4, False), (16, 1, 3, True), (32, 3, 2, True)],
)
def test_conformance(resolution: int, channels: int, c_dim: int, spectral_norm: bool) -> None:
    spec = DCGANArchitecture(resolution=resolution, channels=channels, c_dim=c_dim, spectral_norm=spectral_norm,
                             **SMALL)
    g, d = check_architecture(spec)
    assert g.output_shape == (channels, resolution, resolution)


@pytest.mark.parametrize("options", [
    dict(upsample="nearest", d_batch_norm=True),
    dict(c_dim=3, c_embed_dim=5, g_batch_norm=False),
])
def test_conformance_options(options: dict) -> None:
    check_architecture(DCGANArchitecture(resolution=16, **SMALL, **options))


def test_registered_as_dcgan_and_config_names_the_class() -> None:
    assert registry.load("architectures", "dcgan") is DCGANArchitecture
    config = DCGANArchitecture(resolution=16, **SMALL).config()
    assert config["class_path"] == "lightning_gan_dcgan.dcgan.DCGANArchitecture"
    assert config["init_args"]["resolution"] == 16 and config["init_args"]["spectral_norm"] is False


@pytest.mark.parametrize("resolution", [0, 4, 12, 33, 512, 8.0, True])
def test_resolution_must_be_power_of_two_in_range(resolution: object) -> None:
    with pytest.raises(ValueError, match="power of two between 8 and 256"):
        DCGANArchitecture(resolution=resolution)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="power of two"):
        DCGANGenerator(z_dim=4, resolution=resolution)  # type: ignore[arg-type]


@pytest.mark.parametrize("resolution", [8, 16, 32, 64, 128, 256])
def test_number_of_blocks_is_log2_of_resolution_over_4(resolution: int) -> None:
    g, d = DCGANArchitecture(resolution=resolution, z_dim=2, base_channels=1, max_channels=2).build()
    expected = int(math.log2(resolution / 4))
    assert sum(isinstance(m, GeneratorBlock) for m in g.modules()) == expected
    assert sum(isinstance(m, DiscriminatorBlock) for m in d.modules()) == expected


def test_each_block_doubles_or_halves_the_resolution_with_the_documented_widths() -> None:
    # resolution 32, base 4, max 16: width(r) = min(4 * 32 / r, 16) -> 4x4: 16, 8x8: 16, 16x16: 8, 32x32: 4
    assert [channel_width(r, resolution=32, base_channels=4, max_channels=16) for r in (4, 8, 16, 32)] == [16, 16, 8, 4]
    g, d = DCGANArchitecture(resolution=32, channels=3, **SMALL).build()
    shapes: list[tuple[int, ...]] = []
    hooks = [b.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
             for b in (*g.blocks, *d.blocks)]
    x = g(torch.randn(2, 8))
    d(x)
    for h in hooks:
        h.remove()
    assert shapes == [(16, 8, 8), (8, 16, 16), (4, 32, 32),  # generator: 4x4x16 -> ... -> 32x32x4
                      (8, 16, 16), (16, 8, 8), (16, 4, 4)]  # discriminator: 32x32x3 -> ... -> 4x4x16
    assert d.feature_dim == 16 * 4 * 4


def test_parameter_count_matches_a_hand_computation() -> None:
    # resolution 8, 1 channel, z 4, base 2, max 4: widths 4x4: 4, 8x8: 2.
    spec = DCGANArchitecture(resolution=8, channels=1, z_dim=4, base_channels=2, max_channels=4)
    g, d = spec.build()
    g_expected = (4 * 4 * 16  # project: Linear(4, 4 * 4 * 4), no bias (BatchNorm follows)
                  + 2 * 4  # BatchNorm2d(4)
                  + 4 * 2 * 4 * 4  # ConvTranspose2d(4, 2, 4x4), no bias
                  + 2 * 2  # BatchNorm2d(2)
                  + 2 * 1 * 3 * 3 + 1)  # to_image Conv2d(2, 1, 3x3) with bias
    d_expected = (1 * 4 * 4 * 4 + 4  # Conv2d(1, 4, 4x4) with bias (no BatchNorm on the first block)
                  + 4 * 16 + 1)  # output Linear(4 * 4 * 4, 1)
    assert (g_expected, d_expected) == (415, 133)
    assert sum(p.numel() for p in g.parameters()) == g_expected
    assert sum(p.numel() for p in d.parameters()) == d_expected

    g3, d3 = DCGANArchitecture(resolution=8, channels=1, z_dim=4, base_channels=2, max_channels=4, c_dim=3).build()
    assert sum(p.numel() for p in g3.parameters()) == g_expected + 3 * 64  # project reads z ++ one-hot c
    assert sum(p.numel() for p in d3.parameters()) == d_expected + 3 * 64  # embedding [64, 3]


def test_dcgan_initialization() -> None:
    torch.manual_seed(0)
    g = DCGANGenerator(z_dim=100, resolution=8, base_channels=64, max_channels=128)
    w = g.project.weight  # [128 * 16, 100] = 204800 draws
    assert w.numel() == 204_800
    assert w.std().item() == pytest.approx(0.02, rel=0.02)
    assert abs(w.mean().item()) < 2e-4
    assert g.blocks[0].norm.weight.mean().item() == pytest.approx(1.0, abs=0.01)
    assert torch.count_nonzero(g.to_image.bias) == 0
    d = DCGANDiscriminator(resolution=16, base_channels=32, max_channels=128)
    assert d.blocks[1].conv.weight.std().item() == pytest.approx(0.02, rel=0.05)  # [128, 64, 4, 4]


def test_output_is_tanh_bounded() -> None:
    torch.manual_seed(0)
    g = DCGANGenerator(z_dim=8, resolution=8, channels=3, base_channels=4, max_channels=8)
    with torch.no_grad():
        g.to_image.weight.mul_(1e4)  # saturate the tanh
        x = g(torch.randn(4, 8))
    assert x.shape == (4, 3, 8, 8)
    assert x.abs().max().item() <= 1.0
    assert x.abs().max().item() > 0.999


@pytest.mark.parametrize("spectral_norm", [False, True])
def test_projection_term_is_the_embedding_difference_dotted_with_the_features(spectral_norm: bool) -> None:
    torch.manual_seed(0)
    d = DCGANDiscriminator(c_dim=3, resolution=8, channels=3, base_channels=4, max_channels=8,
                           spectral_norm=spectral_norm).eval()  # eval: no power iteration between calls
    x = torch.randn(5, 3, 8, 8)
    c = torch.eye(3)
    c1, c2 = c[[0, 1, 2, 0, 1]], c[[1, 2, 0, 2, 0]]
    with torch.no_grad():
        h = d.features(x)  # [5, 8 * 16]
        embedding = d.embed.weight  # [128, 3], one column per class
        expected = ((embedding @ c1.T).T - (embedding @ c2.T).T).mul(h).sum(1)
        delta = d(x, c1) - d(x, c2)
        assert torch.allclose(delta, expected, atol=1e-5)
        # and the class-independent part is the output layer on the same features
        assert torch.allclose(d(x, c1) - (embedding.T[[0, 1, 2, 0, 1]] * h).sum(1), d.output(h).squeeze(1), atol=1e-5)


def test_conditions_must_have_shape_n_by_c_dim() -> None:
    g, d = DCGANArchitecture(resolution=8, c_dim=3, **SMALL).build()
    with pytest.raises(ValueError, match=r"\[N, c_dim\] = \[2, 3\]"):
        g(torch.randn(2, 8), torch.eye(4)[:2])
    with pytest.raises(ValueError, match="conditional"):
        d(torch.randn(2, 3, 8, 8))


def test_spectral_norm_bounds_every_discriminator_weight() -> None:
    torch.manual_seed(0)
    d = DCGANDiscriminator(c_dim=2, resolution=16, base_channels=2, max_channels=8, spectral_norm=True)
    x, c = torch.randn(2, 3, 16, 16), torch.eye(2)[[0, 1]]
    with torch.no_grad():
        for _ in range(20):  # power iterations run in training mode, one per forward
            d(x, c)
    layers = [*(b.conv for b in d.blocks), d.output, d.embed]
    sigmas = [torch.linalg.matrix_norm(m.weight.flatten(1), ord=2).item() for m in layers]
    assert sigmas == pytest.approx([1.0] * len(layers), abs=1e-3)
    assert all(hasattr(m, "parametrizations") for m in layers)


def test_extra_repr_shows_the_shape_defining_arguments() -> None:
    g, d = DCGANArchitecture(resolution=16, channels=1, c_dim=2, spectral_norm=True, **SMALL).build()
    assert "output_shape=(1, 16, 16)" in repr(g) and "base_channels=4" in repr(g) and "c_dim=2" in repr(g)
    assert "input_shape=(1, 16, 16)" in repr(d) and "spectral_norm=True" in repr(d)
    assert "in_channels=16, out_channels=8, upsample='transposed'" in repr(g.blocks[0])


def test_gan_module_builds_from_the_registered_name() -> None:
    from lightning_gan.module import GANModule

    module = GANModule(architecture={"class_path": "dcgan", "init_args": {"resolution": 8, **SMALL}}, ema_kimg=None)
    assert isinstance(module.generator, DCGANGenerator)
    assert module.hparams["architecture"]["init_args"]["resolution"] == 8
