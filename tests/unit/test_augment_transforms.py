"""ADA's pure transforms (``lightning_gan.augment.transforms``) against their definitions, hand-built results and
the analytic warp of a band-limited image; gradients by ``torch.autograd.gradcheck``."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lightning_gan.analysis.spectra import power_spectrum_2d, radial_frequency
from lightning_gan.augment.transforms import (
    affine_inverse,
    apply_blit,
    apply_colour,
    apply_geometric,
    apply_selected,
    brightness_matrix,
    colour_matrix,
    contrast_matrix,
    geometric_matrix,
    hue_matrix,
    lumaflip_matrix,
    reflect_index,
    rotation_matrix,
    saturation_matrix,
    translation_matrix,
    warp_bilinear,
)
from lightning_gan.ops import kaiser_lowpass, setup_filter, upfirdn2d, upsample2d

F64 = torch.float64
LOWPASS = setup_filter(kaiser_lowpass(12, cutoff=0.5, width=0.5))  # ADA's default filter


def hand_image(n: int = 1, c: int = 2, h: int = 5, w: int = 5) -> torch.Tensor:
    """Distinct values everywhere, so that any misplaced pixel shows."""
    return torch.arange(n * c * h * w, dtype=torch.float32).reshape(n, c, h, w)


def geometric(*, scale: float = 1.0, pre: float = 0.0, aniso: float = 1.0, post: float = 0.0,
              tx: float = 0.0, ty: float = 0.0) -> torch.Tensor:
    """One matrix [1, 3, 3] (float64)."""
    one = lambda v: torch.tensor([v], dtype=F64)  # noqa: E731
    return geometric_matrix(scale=one(scale), pre_angle=one(pre), aniso=one(aniso), post_angle=one(post),
                            translation=torch.tensor([[tx, ty]], dtype=F64))


# -- pixel blitting ---------------------------------------------------------------------------------
def test_reflect_index_is_pad_reflect_and_periodic() -> None:
    size = 5
    x = torch.arange(size, dtype=torch.float32)[None, None]
    padded = F.pad(x, (4, 4), mode="reflect")[0, 0].long()  # reflect, border sample not repeated
    assert torch.equal(reflect_index(torch.arange(-4, size + 4), size), padded)
    far = torch.arange(-30, 30)
    assert torch.equal(reflect_index(far, size), reflect_index(far + 2 * (size - 1), size))
    assert torch.equal(reflect_index(far, 1), torch.zeros_like(far))


@pytest.mark.parametrize("k", [0, 1, 2, 3])
@pytest.mark.parametrize("flip", [False, True])
def test_apply_blit_flip_and_rotation_are_torch_flip_and_rot90(k: int, flip: bool) -> None:
    x = hand_image(n=1, h=6, w=6)
    expected = torch.rot90(torch.flip(x, dims=[-1]) if flip else x, k, dims=(-2, -1))
    out = apply_blit(x, xflip=torch.tensor([flip]), rotations=torch.tensor([k]))
    assert torch.equal(out, expected)


def test_apply_blit_translation_is_reflect_padding_shifted() -> None:
    x = hand_image(n=3, h=5, w=7)
    shifts = torch.tensor([[2, -1], [-3, 4], [0, 0]])  # (tx, ty)
    out = apply_blit(x, shifts=shifts)
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")  # [N, C, 13, 15]
    for i, (tx, ty) in enumerate(shifts.tolist()):  # out[r, c] = x[r - ty, c - tx]
        expected = padded[i, :, 4 - ty:4 - ty + 5, 4 - tx:4 - tx + 7]
        assert torch.equal(out[i], expected)


def test_apply_blit_per_sample_and_in_paper_order() -> None:
    x = hand_image(n=4, h=6, w=6)
    flips = torch.tensor([True, False, True, False])
    turns = torch.tensor([1, 2, 3, 0])
    shifts = torch.tensor([[1, 0], [0, -2], [-1, 1], [0, 0]])
    out = apply_blit(x, xflip=flips, rotations=turns, shifts=shifts)
    for i in range(4):
        y = torch.flip(x[i:i + 1], dims=[-1]) if flips[i] else x[i:i + 1]
        y = torch.rot90(y, int(turns[i]), dims=(-2, -1))
        y = apply_blit(y, shifts=shifts[i:i + 1])
        assert torch.equal(out[i:i + 1], y)


def test_apply_blit_rotation_needs_square_images() -> None:
    with pytest.raises(ValueError, match="square"):
        apply_blit(hand_image(h=4, w=6), rotations=torch.tensor([1]))


# -- geometric --------------------------------------------------------------------------------------
def test_geometric_matrix_is_the_paper_order() -> None:
    # (1, 0): scale 2 -> (2, 0); rotate 90 degrees -> (0, 2); aniso 2 -> (0, 1); rotate -90 -> (1, 0);
    # translate (3, -1) -> (4, -1).
    g = geometric(scale=2.0, pre=math.pi / 2, aniso=2.0, post=-math.pi / 2, tx=3.0, ty=-1.0)
    point = g[0] @ torch.tensor([1.0, 0.0, 1.0], dtype=F64)
    assert torch.allclose(point, torch.tensor([4.0, -1.0, 1.0], dtype=F64), atol=1e-12)
    r = rotation_matrix(torch.tensor([math.pi / 2], dtype=F64))[0]
    assert torch.allclose(r @ torch.tensor([1.0, 0.0, 1.0], dtype=F64), torch.tensor([0.0, 1.0, 1.0], dtype=F64),
                          atol=1e-12)  # x towards y (down): clockwise on screen
    identity = geometric()
    assert torch.equal(identity[0], torch.eye(3, dtype=F64))


def test_affine_inverse_is_the_matrix_inverse() -> None:
    g = torch.cat([geometric(scale=1.3, pre=0.3, aniso=0.8, post=2.0, tx=3.5, ty=-1.2), geometric(),
                   geometric(scale=0.5, pre=-2.5, tx=-9.0)])
    assert torch.allclose(affine_inverse(g), torch.linalg.inv(g), atol=1e-14)
    assert torch.equal(affine_inverse(geometric()), torch.eye(3, dtype=F64)[None])


class BandLimited:
    """A sum of cosines of radial frequency 0.03-0.22 cycles/pixel (below half the Nyquist frequency), on an
    H x H grid, evaluable after any affine map: ``warped(G)`` is the exact image ``out(q) = in(G^-1 q)``."""

    def __init__(self, size: int = 64, waves: int = 12, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        angle = torch.rand(waves, generator=g, dtype=F64) * 2 * math.pi
        radius = 0.03 + torch.rand(waves, generator=g, dtype=F64) * 0.19
        self.freqs = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], 1)  # [K, 2]
        self.phases = torch.rand(waves, generator=g, dtype=F64) * 2 * math.pi
        centres = torch.arange(size, dtype=F64) + 0.5 - size / 2
        self.y, self.x = torch.meshgrid(centres, centres, indexing="ij")

    def warped(self, g: torch.Tensor | None = None) -> torch.Tensor:  # [1, 1, H, H]
        x, y = self.x, self.y
        if g is not None:
            inv = torch.linalg.inv(g)
            x = inv[0, 0] * self.x + inv[0, 1] * self.y + inv[0, 2]
            y = inv[1, 0] * self.x + inv[1, 1] * self.y + inv[1, 2]
        waves = torch.cos(2 * math.pi * (self.freqs[:, 0, None, None] * x + self.freqs[:, 1, None, None] * y)
                          + self.phases[:, None, None])
        return (waves.sum(0) / math.sqrt(len(self.phases) / 2))[None, None]  # unit mean square


def test_apply_geometric_does_not_alias_where_plain_bilinear_does() -> None:
    """Rotate by 45 degrees and zoom by 1.25 a band-limited image (unit RMS, band <= 0.22 cycles/pixel, so
    <= 0.176 after the zoom); in the central 32 x 32 (away from the reflected border):

    - the error against the exact warped image: RMS below 0.02 (measured 0.011; plain bilinear: 0.058);
    - the share of the power (Hann-windowed spectrum) above 0.3 cycles/pixel, where the exact image has only
      the window's leakage (2e-6): below 2e-5 (measured 2.6e-6; plain bilinear, which folds the spectral
      replicas back: 5.5e-4)."""
    image = BandLimited()
    g = geometric(scale=1.25, pre=math.pi / 4)
    exact = image.warped(g[0])
    x = image.warped().float()
    ours = apply_geometric(x, g, up_filter=LOWPASS, down_filter=LOWPASS).double()
    naive = warp_bilinear(x, g).double()
    centre = (..., slice(16, 48), slice(16, 48))
    high = radial_frequency(32, 32) > 0.3

    def rms_error(y: torch.Tensor) -> float:
        return float((y - exact)[centre].square().mean().sqrt())

    def high_share(y: torch.Tensor) -> float:
        power = power_spectrum_2d(y[centre], window=True)
        return float(power[high].sum() / power.sum())

    assert high_share(exact) < 5e-6
    assert rms_error(ours) < 0.02 < rms_error(naive)
    assert high_share(ours) < 2e-5 < high_share(naive)


def test_apply_geometric_identity_and_translation_on_band_limited_image() -> None:
    """The identity, a half-pixel shift and a quarter turn of a band-limited image (unit RMS) match the exact
    image within RMS 0.015 away from the border (measured 0.004, 0.012, 0.004: the filters' and the 2x bilinear
    step's pass-band loss at up to 0.22 cycles/pixel)."""
    image = BandLimited(size=32)
    centre = (..., slice(6, 26), slice(6, 26))
    for g in (geometric(), geometric(tx=0.5, ty=-0.25), geometric(pre=math.pi / 2)):
        out = apply_geometric(image.warped(), g, up_filter=LOWPASS.double(), down_filter=LOWPASS.double())
        assert (out - image.warped(g[0]))[centre].square().mean().sqrt() < 0.015


def test_apply_geometric_reflects_at_any_distance() -> None:
    """A shift by 2.4 image sizes equals the same shift of the explicitly mirrored (periodic) extension."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 12, 12, dtype=F64)
    rows = reflect_index(torch.arange(-66, 78), 12)  # the extension, 144 x 144, x in the middle
    extended = x.index_select(2, rows).index_select(3, rows)
    g = geometric(tx=28.7, ty=-29.3, pre=0.4).expand(2, 3, 3)
    out = apply_geometric(x, g, up_filter=LOWPASS, down_filter=LOWPASS)
    reference = apply_geometric(extended, g, up_filter=LOWPASS, down_filter=LOWPASS)[..., 66:78, 66:78]
    assert torch.allclose(out, reference, atol=1e-10)


def reference_geometric(x: torch.Tensor, g: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """``apply_geometric`` step by step with ``lightning_gan.ops`` on whole images (no per-axis operators): reflect
    padding by 4 pixels, ``upsample2d``, crop to [1/2, W - 1/2], ``grid_sample`` on the 2x grid, ``upfirdn2d``."""
    h, w = x.shape[-2:]
    rows, cols = reflect_index(torch.arange(-4, h + 4), h), reflect_index(torch.arange(-4, w + 4), w)
    up = upsample2d(x.index_select(2, rows).index_select(3, cols), f)[..., 9:9 + 2 * h - 2, 9:9 + 2 * w - 2]
    e = (len(f) - 2) // 2
    inv = torch.linalg.inv(g)
    qx = (torch.arange(2 * w + 2 * e, dtype=x.dtype) - e) / 2 + 0.25 - w / 2  # output 2x samples, centred
    qy = (torch.arange(2 * h + 2 * e, dtype=x.dtype) - e) / 2 + 0.25 - h / 2
    qy, qx = torch.meshgrid(qy, qx, indexing="ij")
    u = inv[:, 0, 0, None, None] * qx + inv[:, 0, 1, None, None] * qy + inv[:, 0, 2, None, None] + w / 2
    v = inv[:, 1, 0, None, None] * qx + inv[:, 1, 1, None, None] * qy + inv[:, 1, 2, None, None] + h / 2
    grid = torch.stack([(u - 0.5) / (w - 1) * 2 - 1, (v - 0.5) / (h - 1) * 2 - 1], -1)
    warped = F.grid_sample(up, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return upfirdn2d(warped, f, down=2)


def test_apply_geometric_is_the_ops_step_by_step() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 2, 10, 14, dtype=F64)
    g = torch.cat([geometric(scale=1.3, pre=0.3, aniso=0.8, post=2.0, tx=3.5, ty=-1.2), geometric(),
                   geometric(pre=-2.5, tx=-9.0)])
    f = LOWPASS.double()
    assert torch.allclose(apply_geometric(x, g, up_filter=f, down_filter=f), reference_geometric(x, g, f), atol=1e-12)


def test_apply_geometric_checks_its_filters() -> None:
    with pytest.raises(ValueError, match="even length"):
        apply_geometric(torch.zeros(1, 1, 8, 8), geometric().float(), up_filter=torch.ones(5) / 5,
                        down_filter=LOWPASS)


# -- colour ---------------------------------------------------------------------------------------
def test_colour_matrices_by_hand() -> None:
    one = lambda v: torch.tensor([v], dtype=F64)  # noqa: E731
    rgb1 = torch.tensor([0.2, -0.4, 0.5, 1.0], dtype=F64)
    assert torch.allclose(brightness_matrix(one(0.3))[0] @ rgb1, torch.tensor([0.5, -0.1, 0.8, 1.0], dtype=F64))
    assert torch.allclose(contrast_matrix(one(2.0))[0] @ rgb1, torch.tensor([0.4, -0.8, 1.0, 1.0], dtype=F64))
    # Luma flip: the grey part (mean 0.1) changes sign, the rest stays: (r, g, b) - 2 * mean.
    assert torch.allclose(lumaflip_matrix(one(1.0))[0] @ rgb1, torch.tensor([0.0, -0.6, 0.3, 1.0], dtype=F64))
    assert torch.equal(lumaflip_matrix(one(0.0))[0], torch.eye(4, dtype=F64))
    # Hue: a third of a turn about grey maps (r, g, b) to (b, r, g).
    assert torch.allclose(hue_matrix(one(2 * math.pi / 3))[0] @ rgb1, torch.tensor([0.5, 0.2, -0.4, 1.0], dtype=F64))
    # Saturation 0: the grey mean; 2: twice the distance from it.
    assert torch.allclose(saturation_matrix(one(0.0))[0] @ rgb1, torch.tensor([0.1, 0.1, 0.1, 1.0], dtype=F64))
    assert torch.allclose(saturation_matrix(one(2.0))[0] @ rgb1, torch.tensor([0.3, -0.9, 0.9, 1.0], dtype=F64))
    # Composed in the paper's order: brightness, contrast, luma flip, hue, saturation.
    m = colour_matrix(brightness=one(0.3), contrast=one(2.0), lumaflip=one(1.0), hue=one(2 * math.pi / 3),
                      saturation=one(2.0))[0]
    step = torch.tensor([0.5, -0.1, 0.8, 1.0], dtype=F64) * torch.tensor([2, 2, 2, 1], dtype=F64)  # B, C
    step = step - 2 * torch.tensor([1, 1, 1, 0], dtype=F64) * step[:3].mean()  # L
    step = step[[2, 0, 1, 3]]  # H
    step = torch.cat([step[:3] + (step[:3] - step[:3].mean()), step[3:]])  # S: mean + 2 (x - mean)
    assert torch.allclose(m @ rgb1, step)
    neutral = colour_matrix(brightness=one(0.0), contrast=one(1.0), lumaflip=one(0.0), hue=one(0.0),
                            saturation=one(1.0))
    assert torch.allclose(neutral[0], torch.eye(4, dtype=F64), atol=1e-15)


def test_apply_colour_rgb_and_grey() -> None:
    torch.manual_seed(0)
    n = 3
    params = dict(brightness=torch.randn(n, dtype=F64) * 0.2, contrast=torch.rand(n, dtype=F64) + 0.5,
                  lumaflip=torch.tensor([1.0, 0.0, 1.0], dtype=F64), hue=torch.rand(n, dtype=F64) * 6,
                  saturation=torch.rand(n, dtype=F64) * 2)
    m = colour_matrix(**params)
    x = torch.randn(n, 3, 4, 5, dtype=F64)
    out = apply_colour(x, m)
    for i in range(n):
        pixels = torch.cat([x[i].reshape(3, -1), torch.ones(1, 20, dtype=F64)])  # [r, g, b, 1] per pixel
        assert torch.allclose(out[i].reshape(3, -1), (m[i] @ pixels)[:3])
    # Grey: the mean of the channels of the grey colour (x, x, x) transformed; hue and saturation keep grey.
    grey = torch.randn(n, 1, 4, 5, dtype=F64)
    assert torch.allclose(apply_colour(grey, m), apply_colour(grey.expand(n, 3, 4, 5), m).mean(1, keepdim=True))
    no_hue = colour_matrix(**{**params, "hue": torch.zeros(n, dtype=F64), "saturation": torch.ones(n, dtype=F64)})
    assert torch.allclose(apply_colour(grey, m), apply_colour(grey, no_hue))
    expected = (grey * params["contrast"][:, None, None, None] + (params["brightness"] * params["contrast"])[
        :, None, None, None]) * (1 - 2 * params["lumaflip"])[:, None, None, None]
    assert torch.allclose(apply_colour(grey, m), expected)
    with pytest.raises(ValueError, match=r"1 \(grey\) or 3 \(RGB\) channels"):
        apply_colour(torch.zeros(n, 2, 4, 4), m)


# -- selection and gradients ----------------------------------------------------------------------
@pytest.mark.parametrize("subset", [True, False])
def test_apply_selected_leaves_the_rest_bit_exact(subset: bool) -> None:
    torch.manual_seed(0)
    x = torch.randn(5, 2, 3, 3)
    offsets = torch.arange(5.0)
    selected = torch.tensor([True, False, True, False, False])
    out = apply_selected(x, selected, lambda y, rows: y * 1.5 + offsets[rows][:, None, None, None], subset=subset)
    assert torch.equal(out[~selected], x[~selected])
    assert torch.allclose(out[selected], x[selected] * 1.5 + offsets[selected][:, None, None, None])
    none = apply_selected(x, torch.zeros(5, dtype=torch.bool), lambda y, rows: y + 1, subset=subset)
    assert torch.equal(none, x)
    if subset:
        assert none is x  # nothing computed


def test_gradients_of_every_transform() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 6, dtype=F64, requires_grad=True)
    blit = dict(xflip=torch.tensor([True, False]), rotations=torch.tensor([1, 3]),
                shifts=torch.tensor([[1, -2], [0, 2]]))
    assert torch.autograd.gradcheck(lambda y: apply_blit(y, **blit), (x,), fast_mode=True)
    g = torch.cat([geometric(scale=1.2, pre=0.5, aniso=0.9, post=-1.0, tx=0.7, ty=-0.2), geometric(pre=2.0)])
    f = LOWPASS.double()
    assert torch.autograd.gradcheck(lambda y: apply_geometric(y, g, up_filter=f, down_filter=f), (x,), fast_mode=True)
    m = colour_matrix(brightness=torch.tensor([0.1, -0.2], dtype=F64), contrast=torch.tensor([1.3, 0.7], dtype=F64),
                      lumaflip=torch.tensor([1.0, 0.0], dtype=F64), hue=torch.tensor([0.4, -2.0], dtype=F64),
                      saturation=torch.tensor([0.5, 1.7], dtype=F64))
    assert torch.autograd.gradcheck(lambda y: apply_colour(y, m), (x,), fast_mode=True)
    assert torch.autograd.gradcheck(lambda y: apply_colour(y, m), (x[:, :1].detach().requires_grad_(),), fast_mode=True)


def test_translation_matrix_moves_points() -> None:
    t = translation_matrix(torch.tensor([2.0]), torch.tensor([-1.0]))[0]
    assert torch.equal(t @ torch.tensor([1.0, 1.0, 1.0]), torch.tensor([3.0, 0.0, 1.0]))
