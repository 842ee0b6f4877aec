"""StyleGAN2's skip generator and skip/resnet discriminator growing progressively (``growable: true``).

The growth protocol (alpha = 0 is exactly the previous stage, upsampled / on the 2x2-averaged image) through the
conformance kit and by hand, and the networks unchanged when not growing.
"""

from __future__ import annotations

import pytest
import torch

from lightning_gan.interfaces import Growable, growth_gaps
from lightning_gan.ops.growth import downsample_average, upsample_nearest
from lightning_gan.testing import check_architecture, check_growable
from lightning_gan_stylegan2.discriminator import GrowableStyleGAN2Discriminator, StyleGAN2Discriminator
from lightning_gan_stylegan2.networks import GrowableStyleGAN2Generator, StyleGAN2Architecture, StyleGAN2Generator

TINY = dict(resolution=16, channels=3, z_dim=8, w_dim=8, mapping_layers=2, d_mapping_layers=2, channel_base=64,
            channel_max=8)


@pytest.mark.parametrize(("d_architecture", "c_dim"), [("skip", 0), ("resnet", 3)])
def test_conformance_and_growth_at_every_stage(d_architecture: str, c_dim: int) -> None:
    spec = StyleGAN2Architecture(d_architecture=d_architecture, c_dim=c_dim, growable=True, **TINY)
    g, d = check_growable(spec)
    check_architecture(spec)
    assert isinstance(g, GrowableStyleGAN2Generator) and isinstance(d, GrowableStyleGAN2Discriminator)
    assert g.resolutions == d.resolutions == (4, 8, 16)
    assert spec.config()["init_args"]["growable"] is True


@pytest.mark.parametrize("d_architecture", ["skip", "resnet"])
def test_alpha_zero_is_the_previous_stage_in_training_mode_too(d_architecture: str) -> None:
    """Style mixing and noise draw from the global RNG: equally seeded, G@(r, 0) == up(G@(q, 1)) bit for bit."""
    g, d = StyleGAN2Architecture(d_architecture=d_architecture, growable=True, **TINY).build()
    z, x = torch.randn(4, 8), torch.rand(4, 3, 16, 16) * 2 - 1
    for q, r in ((4, 8), (8, 16)):
        xr = x if r == 16 else downsample_average(x)
        for net in (g, d):
            net.set_stage(q, 1.0)
        torch.manual_seed(1)
        previous_image, previous_logits = g(z), d(downsample_average(xr))
        for net in (g, d):
            net.set_stage(r, 0.0)
        torch.manual_seed(1)
        assert torch.equal(g(z), upsample_nearest(previous_image))
        assert torch.equal(d(xr), previous_logits)


def test_the_skip_generator_fades_in_its_highest_rgb_contribution() -> None:
    """Mid-fade: (1 - alpha) * up_nearest(img_8) + alpha * (upsample2d(img_8) + ToRGB_16(x_16)), the full output."""
    g, _ = StyleGAN2Architecture(growable=True, noise_mode="const", **TINY).build()
    g.eval()
    z = torch.randn(3, 8)
    outputs = {}
    for alpha in (0.0, 1.0, 0.25):
        g.set_stage(16, alpha)
        outputs[alpha] = g(z)
    assert torch.allclose(outputs[0.25], 0.75 * outputs[0.0] + 0.25 * outputs[1.0], atol=1e-6)
    g.set_stage(8, 1.0)
    assert torch.equal(outputs[0.0], upsample_nearest(g(z)))


@pytest.mark.parametrize("d_architecture", ["skip", "resnet", "orig"])
def test_not_growing_the_networks_are_unchanged(d_architecture: str) -> None:
    """growable=False builds the usual classes without stage buffers; at its last stage, alpha 1, the growable
    pair loaded with the same weights computes exactly what they compute."""
    spec = StyleGAN2Architecture(d_architecture=d_architecture, **TINY)
    g, d = spec.build()
    assert type(g) is StyleGAN2Generator and type(d) is StyleGAN2Discriminator
    assert not isinstance(g, Growable) and growth_gaps(g, d)
    assert not any("stage_" in k for k in (*g.state_dict(), *d.state_dict()))
    gg, gd = StyleGAN2Architecture(d_architecture=d_architecture, growable=True, **TINY).build()
    gg.load_state_dict(g.state_dict(), strict=False)  # the growable ones only add stage buffers and FromRGB layers
    missing, unexpected = gd.load_state_dict(d.state_dict(), strict=False)
    assert not unexpected and all("stage_" in k or "fromrgb" in k for k in missing)
    for net in (g, d, gg, gd):
        net.eval()
    z, x = torch.randn(4, 8), torch.rand(4, 3, 16, 16) * 2 - 1
    torch.manual_seed(0)
    image = g(z)
    torch.manual_seed(0)
    assert torch.equal(gg(z), image)
    assert torch.equal(gd(x), d(x))


def test_growable_needs_the_skip_generator() -> None:
    with pytest.raises(ValueError, match="growable=True needs g_architecture 'skip'") as info:
        StyleGAN2Architecture(g_architecture="resnet", growable=True, **TINY)
    assert "\n" not in str(info.value)
