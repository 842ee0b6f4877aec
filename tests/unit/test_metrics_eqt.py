"""EQ-T: Fourier translation, masks, a perfectly equivariant generator and one with a fixed pattern."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from lightning_gan.interfaces import Generator
from lightning_gan.metrics.equivariance import (
    EQT,
    eqt_psnr,
    fourier_translate,
    psnr,
    translation_error,
    translation_mask,
)

SIZE = 32
PATTERN_FREQ = 8  # cycles per image along x (Nyquist is 16)


class WaveGenerator(Generator):
    """Band-limited periodic images: sums of low-frequency waves whose phases come from ``z``.

    ``forward_translated`` shifts the waves' coordinates, so the images are exactly equivariant. With
    ``pattern > 0`` a fixed (non-translating) wave of frequency ``PATTERN_FREQ`` along x is added,
    ``pattern * cos`` in channel 0 and ``pattern * sin`` in channel 1.
    """

    FREQS = ((1, 0), (0, 2), (3, 1), (2, -3), (5, 4))

    def __init__(self, *, pattern: float = 0.0, c_dim: int = 0) -> None:
        super().__init__(z_dim=len(self.FREQS), c_dim=c_dim, output_shape=(3, SIZE, SIZE))
        self.pattern = pattern
        self.gain = nn.Parameter(torch.tensor(0.15))

    def _render(self, z: Tensor, translation: Tensor) -> Tensor:
        v, u = torch.meshgrid(torch.arange(SIZE, dtype=z.dtype), torch.arange(SIZE, dtype=z.dtype), indexing="ij")
        u = u - translation[:, 0].view(-1, 1, 1)
        v = v - translation[:, 1].view(-1, 1, 1)  # [N, H, W]
        channels = []
        for ch in range(3):
            x = sum(torch.cos(2 * math.pi * (fu * u + fv * v) / SIZE + z[:, j].view(-1, 1, 1) * (ch + 1))
                    for j, (fu, fv) in enumerate(self.FREQS))
            channels.append(self.gain * x)
        images = torch.stack(channels, dim=1)
        if self.pattern:
            phase = 2 * math.pi * PATTERN_FREQ * torch.arange(SIZE, dtype=z.dtype) / SIZE
            images[:, 0] += self.pattern * torch.cos(phase)
            images[:, 1] += self.pattern * torch.sin(phase)
        return images

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        return self._render(z, torch.zeros(z.shape[0], 2, dtype=z.dtype))

    def forward_translated(self, z: Tensor, c: Tensor | None, translation: Tensor) -> Tensor:
        return self._render(z, translation)


def test_fourier_translate_matches_roll_and_shifts_a_wave() -> None:
    images = torch.randn(2, 3, 8, 6, dtype=torch.float64)
    shifted = fourier_translate(images, torch.tensor([[2.0, -1.0], [0.0, 3.0]]))
    torch.testing.assert_close(shifted[0], images[0].roll((-1, 2), dims=(1, 2)))
    torch.testing.assert_close(shifted[1], images[1].roll((3, 0), dims=(1, 2)))
    x = torch.arange(16, dtype=torch.float64)
    wave = torch.cos(2 * math.pi * 3 * x / 16).expand(1, 1, 4, 16)
    out = fourier_translate(wave, torch.tensor([[0.37, 0.0]]))
    torch.testing.assert_close(out[0, 0, 0], torch.cos(2 * math.pi * 3 * (x - 0.37) / 16))


def test_translation_mask_removes_the_wrapped_border() -> None:
    mask = translation_mask(6, 8, torch.tensor([[1.5, -0.2], [-2.0, 0.0]]), margin=1)[:, 0]
    assert mask.shape == (2, 6, 8)
    assert not mask[0, :, :3].any() and mask[0, :4, 3:].all() and not mask[0, 4:].any()
    assert mask[1, :, :5].all() and not mask[1, :, 5:].any()


def test_perfectly_equivariant_generator_scores_very_high() -> None:
    value = eqt_psnr(WaveGenerator(), 64, batch_size=32)
    assert value > 100  # float32 round-off only


def test_fixed_pattern_error_matches_the_analytic_value_per_translation() -> None:
    # T_t[G(z)] - G(z; t) = T_t[P] - P; with P = a (cos, sin, 0) of phase 2 pi f u / W the squared error summed over
    # channels is 2 a^2 (1 - cos(2 pi f x / W)) at every pixel: per value (2/3) a^2 (1 - cos(2 pi f x / W)).
    a = 0.3
    generator = WaveGenerator(pattern=a)
    z = torch.randn(5, generator.z_dim)
    translation = torch.tensor([[0.3, 0.0], [1.7, -2.2], [-3.9, 0.5], [2.0, 1.0], [-0.01, 3.3]])
    with torch.no_grad():
        total, count = translation_error(generator, z, None, translation, margin=2)
    per_sample = (2 / 3) * a**2 * (1 - torch.cos(2 * math.pi * PATTERN_FREQ * translation[:, 0].double() / SIZE))
    counts = translation_mask(SIZE, SIZE, translation, margin=2).sum(dim=(1, 2, 3)).double() * 3
    assert count == int(counts.sum())
    assert total == pytest.approx(float((per_sample * counts).sum()), rel=1e-4)


def test_metric_with_a_fixed_pattern_is_close_to_the_expected_psnr() -> None:
    # expected MSE over t ~ U[-W/8, W/8]^2, each sample weighted by its valid pixels (W - ceil|x| - margin) (the
    # y factor cancels): integrated numerically.
    a, margin, max_shift = 0.3, 3, 0.125
    x = (torch.arange(400_000, dtype=torch.float64) + 0.5) / 400_000 * 2 * max_shift * SIZE - max_shift * SIZE
    weight = SIZE - x.abs().ceil() - margin
    error = (2 / 3) * a**2 * (1 - torch.cos(2 * math.pi * PATTERN_FREQ * x / SIZE))
    expected = psnr(float((weight * error).sum() / weight.sum()))
    metric = EQT(num_samples=2000, margin=margin, max_shift=max_shift, batch_size=500)
    value = metric.compute(WaveGenerator(pattern=a), None)["eqt"]
    # Monte-Carlo: relative standard error of the MSE ~ 0.7 / sqrt(2000) = 1.6 %, i.e. ~0.07 dB
    assert value == pytest.approx(expected, abs=0.3)
    assert 10 < value < 20


def test_conditional_generators_and_state() -> None:
    generator = WaveGenerator(c_dim=3)
    generator.train()
    torch.manual_seed(5)
    state = torch.get_rng_state()
    assert EQT(num_samples=6).compute(generator, None)["eqt"] > 100
    assert generator.training
    assert torch.equal(torch.get_rng_state(), state)


def test_generators_without_translation_are_skipped_with_one_warning() -> None:
    class Plain(Generator):
        def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
            return torch.zeros(z.shape[0], 3, 8, 8)

    metric = EQT(num_samples=4)
    generator = Plain(z_dim=2, output_shape=(3, 8, 8))
    with pytest.warns(UserWarning, match="forward_translated"):
        assert metric.compute(generator, None) == {}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert metric.compute(generator, None) == {}
    with pytest.raises(TypeError, match="forward_translated"):
        eqt_psnr(generator, 4)


def test_psnr_and_argument_checks() -> None:
    assert psnr(4.0) == 0.0
    assert psnr(0.04) == pytest.approx(20.0)
    assert psnr(0.0) == math.inf
    with pytest.raises(ValueError, match="max_shift"):
        EQT(max_shift=0.0)
    assert EQT().config()["init_args"] == {"num_samples": 1000, "max_shift": 0.125, "margin": 3, "seed": 0,
                                           "batch_size": 64}
