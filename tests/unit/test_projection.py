"""Projection: recovering latents the generator itself produced; the noise regularizer against its formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightning_gan import registry
from lightning_gan.errors import ConfigError
from lightning_gan.projection import (learning_rate_ramp, multiscale_pixel_distance, noise_regularization, project,
                                      project_many, psnr, w_noise_scale)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks run fastest on one thread (and do not fight a busy machine's other processes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(name: str, **kwargs) -> torch.nn.Module:
    """A tiny generator whose images depend on the latent (StyleGAN2's noise strengths stay 0, as at init)."""
    torch.manual_seed(0)
    init = {"stylegan2": dict(resolution=16, z_dim=8, w_dim=8, mapping_layers=2, channel_base=64, channel_max=8),
            "dcgan": dict(resolution=16, z_dim=8, base_channels=4, max_channels=8)}[name] | kwargs
    g = registry.resolve("architectures", {"class_path": name, "init_args": init}).build().generator.eval()
    if name == "dcgan":  # DCGAN's N(0, 0.02) init makes nearly constant images; He init makes them vary
        for m in g.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return g


def test_stylegan2_projection_recovers_an_image_it_made() -> None:
    g = tiny("stylegan2")
    with torch.no_grad():
        w = g.mapping(torch.randn(1, 8, generator=torch.Generator().manual_seed(1)))
        target = g.synthesis(w, noise_mode="const")[0]  # [3, 16, 16]
    result = project(g, target, steps=150, distance="multiscale_pixels", num_w_samples=500, frame_every=50)
    assert result.distance_name == "multiscale_pixels" and result.space == "w"
    assert result.history[0] > 0.5  # the start, w_avg, is far from the target
    assert result.distance < 1e-2
    assert result.psnr > 30.0
    assert result.latent.shape == (1, g.num_ws, 8)
    assert torch.equal(result.latent[:, 0], result.latent[:, -1])  # W: one w for every layer
    assert len(result.frames) == 150 // 50 + 1
    for n in result.noise:  # re-normalized after every step
        assert abs(float(n.mean())) < 1e-5 and abs(float(n.std(unbiased=False)) - 1) < 1e-4
    for p, q in zip(g.parameters(), tiny("stylegan2").parameters()):  # the generator itself is left alone
        assert torch.equal(p, q)


def test_stylegan2_w_plus_has_one_w_per_layer() -> None:
    g = tiny("stylegan2")
    target = g.synthesis(g.mapping(torch.randn(1, 8)), noise_mode="const")[0].detach()
    result = project(g, target, space="w+", steps=20, distance="multiscale_pixels", num_w_samples=200)
    assert result.space == "w+" and result.latent.shape == (1, g.num_ws, 8)
    assert not torch.equal(result.latent[:, 0], result.latent[:, -1])


def test_dcgan_projection_recovers_an_image_it_made() -> None:
    g = tiny("dcgan")
    with torch.no_grad():
        target = g(torch.randn(1, 8, generator=torch.Generator().manual_seed(1)))[0]
    result = project(g, target, steps=150, distance="multiscale_pixels")
    assert result.space == "z" and result.latent.shape == (1, 8)
    assert result.history[0] > 1e-2
    assert result.distance < 1e-4
    assert result.psnr > 40.0
    with torch.no_grad():
        torch.testing.assert_close(g(result.latent)[0], result.image)


def test_conditional_projection_picks_the_class_of_the_target() -> None:
    g = tiny("dcgan", c_dim=4)
    with torch.no_grad():
        target = g(torch.randn(1, 8), torch.nn.functional.one_hot(torch.tensor([2]), 4).float())[0]
    result = project(g, target, steps=60, distance="multiscale_pixels", num_starts=8)
    assert int(result.c.argmax()) == 2
    with torch.no_grad():
        torch.testing.assert_close(g(result.latent, result.c)[0], result.image)


def test_a_batch_projects_each_image_as_if_alone() -> None:
    g = tiny("dcgan", c_dim=3)
    with torch.no_grad():
        targets = g(torch.randn(2, 8), torch.eye(3)[[0, 2]])
    together = project_many(g, targets, steps=20, distance="multiscale_pixels", num_starts=4)
    for i in range(2):  # Z: the same starts (same seed), no other draws: the same trajectory as alone
        alone = project(g, targets[i], steps=20, distance="multiscale_pixels", num_starts=4)
        torch.testing.assert_close(together[i].latent, alone.latent, atol=1e-5, rtol=1e-5)
        assert together[i].history == pytest.approx(alone.history, rel=1e-4, abs=1e-7)


def test_noise_regularization_matches_its_formula_by_hand() -> None:
    rng = np.random.default_rng(0)
    maps = [rng.standard_normal((2, 1, 32, 32)), rng.standard_normal((2, 1, 8, 8))]
    maps[0] += np.roll(maps[0], 1, axis=3)  # correlated along x: a large term

    def by_hand(n: np.ndarray) -> float:
        total = 0.0
        while True:
            for axis in (3, 2):
                # (1 / r^2) sum_xy n(x, y) n(x - 1, y) per sample, squared, averaged over the samples
                shifted = np.take(n, [(i - 1) % n.shape[axis] for i in range(n.shape[axis])], axis=axis)
                total += np.mean(np.mean(n * shifted, axis=(1, 2, 3)) ** 2)
            if n.shape[2] <= 8:
                return total
            n = n.reshape(n.shape[0], 1, n.shape[2] // 2, 2, n.shape[3] // 2, 2).mean((3, 5)) * 2

    want = sum(by_hand(n) for n in maps)
    got = noise_regularization([torch.from_numpy(n) for n in maps])
    assert math.isclose(float(got), want, rel_tol=1e-10)
    assert want > 0.5  # n + its x shift: lag-one product about 1, so its x term alone is about 1
    # white noise: each term is about 1 / (H W), 2 (1/64^2 + 1/32^2 + 1/16^2 + 1/8^2) = 0.042 in all
    white = float(noise_regularization([torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))]))
    assert white < 0.15


def test_schedules() -> None:
    assert learning_rate_ramp(0.0) == 0.0
    assert learning_rate_ramp(0.025) == pytest.approx(0.5)  # halfway up the 5% ramp
    assert learning_rate_ramp(0.5) == pytest.approx(1.0)
    assert learning_rate_ramp(0.875) == pytest.approx(0.5)  # halfway down the cosine over the last 25%
    assert learning_rate_ramp(1.0) == pytest.approx(0.0)
    assert w_noise_scale(0.0, 2.0) == pytest.approx(0.1)  # sigma_w * 0.05
    assert w_noise_scale(0.375, 2.0) == pytest.approx(0.1 * 0.25)
    assert w_noise_scale(0.8, 2.0) == 0.0


def test_distances() -> None:
    x, y = torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16)
    y[:, :, :8] = 0.5  # half the image off by 0.5: mean sq 0.125 at 16 px and again at 8 px
    assert float(multiscale_pixel_distance(x, y)) == pytest.approx(0.25)
    assert psnr(x, y) == pytest.approx(10 * math.log10(4 / 0.125))


def test_bad_input_is_refused_in_one_line() -> None:
    g = tiny("dcgan")
    with pytest.raises(ValueError, match=r"\[3, 16, 16\]"):
        project(g, torch.zeros(3, 32, 32), steps=1)
    with pytest.raises(ConfigError, match="no W space"):
        project(g, torch.zeros(3, 16, 16), space="w", steps=1)
    with pytest.raises(ValueError, match="not conditional"):
        project(g, torch.zeros(3, 16, 16), class_index=2, steps=1)
