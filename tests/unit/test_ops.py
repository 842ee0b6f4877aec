"""``lightning_gan.ops``: upfirdn2d against its dense definition, resampling quality, FIR design."""

from __future__ import annotations

import copy
import importlib
import math

import pytest
import torch
from torch import nn

from lightning_gan.ops import (
    binomial_filter,
    downsample2d,
    filter2d,
    kaiser_atten,
    kaiser_beta,
    kaiser_lowpass,
    register_filter,
    setup_filter,
    upfirdn2d,
    upsample2d,
)


_impl = importlib.import_module("lightning_gan.ops.upfirdn2d")  # the module (its name is also a function's)


SEPARABLE_PATHS = ["matmul", "conv_outer", "conv_1d"]


def force_separable_path(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    """Make every separable (1-D) filter take one implementation: band-matrix GEMMs per axis, one
    depthwise convolution with outer(f, f), or two 1-D depthwise convolutions ("-": the size-based choice)."""
    if path == "-":
        return
    monkeypatch.setattr(_impl, "_separable_as_matmul", lambda *args: path == "matmul")
    monkeypatch.setattr(_impl, "_OUTER_MAX_TAPS", 0 if path == "conv_1d" else 10**9)


@pytest.fixture(params=SEPARABLE_PATHS)
def separable_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    force_separable_path(monkeypatch, request.param)
    return request.param


def with_paths(cases: list[tuple]) -> list[tuple]:
    """Each case whose first item is an int (a 1-D filter) once per separable path, others once."""
    return [(path, *case) for case in cases for path in (SEPARABLE_PATHS if isinstance(case[0], int) else ["-"])]


def dense_upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up=1, down=1, padding=0, flip_filter=False,
                    gain=1.0) -> torch.Tensor:
    """The definition, one step at a time: zero insertion, zero padding (negative crops), a sum over
    the filter taps of shifted copies (true convolution unless ``flip_filter``), subsampling."""
    upx, upy = (up, up) if isinstance(up, int) else up
    downx, downy = (down, down) if isinstance(down, int) else down
    if isinstance(padding, int):
        padding = (padding,) * 4
    elif len(padding) == 2:
        padding = (padding[0], padding[0], padding[1], padding[1])
    px0, px1, py0, py1 = padding
    n, c, h, w = x.shape
    u = x.new_zeros(n, c, h * upy, w * upx)
    u[:, :, ::upy, ::upx] = x
    ph, pw = h * upy + py0 + py1, w * upx + px0 + px1
    padded = u.new_zeros(n, c, ph, pw)  # padded[j] = u[j - p0] where that exists, else 0
    ys, ye = max(py0, 0), min(ph, py0 + h * upy)
    xs, xe = max(px0, 0), min(pw, px0 + w * upx)
    padded[:, :, ys:ye, xs:xe] = u[:, :, ys - py0:ye - py0, xs - px0:xe - px0]
    if f is None:
        f = torch.ones(1, 1, dtype=x.dtype)
    f = f.to(x.dtype)
    if f.ndim == 1:
        f = torch.outer(f, f)
    fh, fw = f.shape
    if not flip_filter:
        f = f.flip([0, 1])  # convolution = correlation with the flipped filter
    out_h, out_w = padded.shape[2] - fh + 1, padded.shape[3] - fw + 1
    v = padded.new_zeros(n, c, out_h, out_w)
    for ky in range(fh):
        for kx in range(fw):
            v += f[ky, kx] * padded[:, :, ky:ky + out_h, kx:kx + out_w]
    return (v * gain)[:, :, ::downy, ::downx]


def out_size(h: int, up: int, p0: int, p1: int, k: int, down: int) -> int:
    return (h * up + p0 + p1 - k) // down + 1


CASES = [
    # (filter shape: int = 1-D taps, (fh, fw) = 2-D, None), up, down, padding
    (4, 1, 1, 0),
    (4, 1, 1, (2, 1, 2, 1)),
    (4, 2, 1, (2, 1, 2, 1)),
    (4, 1, 2, 1),
    (4, 2, 2, (1, 2, 0, 3)),
    (3, 1, 1, 1),
    (5, 2, 1, (3, 2, 1, 4)),
    (5, 1, 2, (2, 2, 1, 1)),
    (3, 3, 1, (2, 0, 1, 3)),
    (3, 1, 3, (1, 2, 3, 0)),
    (4, (2, 1), (1, 2), (2, 1, 1, 1)),
    (6, 2, 1, (-1, 2, 3, -2)),
    (4, 1, 1, (-1, -2, 2, 0)),
    (4, 2, 1, (5, 6, 0, 7)),
    (4, 2, 1, (-3, -2, -4, -1)),
    ((3, 4), 1, 1, (1, 2, 2, 1)),
    ((4, 3), 2, 1, (2, 1, 1, 2)),
    ((2, 5), 1, 2, (0, 3, 1, 1)),
    ((3, 3), 2, 2, (-1, 2, 1, 0)),
    (None, 2, 1, (0, 1, 1, 0)),
    (None, 1, 2, (1, -1, 0, 2)),
    (1, 1, 1, 0),
    (8, 2, 1, (4, 3, 4, 3)),
    (7, 1, 2, (3, 3, 2, 4)),
]


def _case_filter(shape, generator: torch.Generator) -> torch.Tensor | None:
    if shape is None:
        return None
    size = (shape,) if isinstance(shape, int) else shape
    return torch.rand(size, dtype=torch.float64, generator=generator) + 0.1


@pytest.mark.parametrize("flip_filter,gain", [(False, 1.0), (True, 2.5), (False, -0.7)])
@pytest.mark.parametrize("path,shape,up,down,padding", with_paths(CASES))
def test_upfirdn2d_matches_dense_definition(path, shape, up, down, padding, flip_filter, gain, monkeypatch):
    force_separable_path(monkeypatch, path)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64, generator=g)
    f = _case_filter(shape, g)
    x.requires_grad_(True)
    expected = dense_upfirdn2d(x, f, up, down, padding, flip_filter, gain)
    got = upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    # the gradient (the adjoint upfirdn2d) against autograd through the definition
    dy = torch.randn(expected.shape, dtype=torch.float64, generator=g)
    (grad,) = torch.autograd.grad(got, x, dy)
    (grad_expected,) = torch.autograd.grad(expected, x, dy)
    torch.testing.assert_close(grad, grad_expected, rtol=1e-12, atol=1e-12)
    x = x.detach()
    # float32 follows the float64 result
    got32 = upfirdn2d(x.float(), None if f is None else f.float(), up=up, down=down, padding=padding,
                      flip_filter=flip_filter, gain=gain)
    assert got32.dtype == torch.float32
    torch.testing.assert_close(got32.double(), expected, rtol=1e-5, atol=1e-5)


def test_output_size_formula():
    x = torch.randn(1, 2, 11, 6)
    f = torch.rand(5, 3)  # [fh, fw]
    for up, down, (px0, px1, py0, py1) in [(1, 1, (0, 0, 0, 0)), (2, 1, (1, 2, 3, 4)), (3, 2, (0, 1, -1, 2)), (1, 3, (2, 2, 2, 2))]:
        y = upfirdn2d(x, f, up=up, down=down, padding=(px0, px1, py0, py1))
        assert y.shape == (1, 2, out_size(11, up, py0, py1, 5, down), out_size(6, up, px0, px1, 3, down))


def test_empty_output_and_bad_arguments_fail_clearly():
    x = torch.randn(1, 1, 4, 4)
    with pytest.raises(ValueError, match="empty output"):
        upfirdn2d(x, torch.ones(6), padding=0)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        upfirdn2d(x[0], torch.ones(2))
    with pytest.raises(ValueError, match="up and down"):
        upfirdn2d(x, torch.ones(2), up=0)


@pytest.mark.parametrize("taps", [(1, 3, 3, 1), (1, 2, 1), (1, 1), (1, 4, 6, 4, 1)])
@pytest.mark.parametrize("separable", [True, False])
def test_wrappers_sizes_and_dense_equivalence(taps, separable, separable_path):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 8, 12, dtype=torch.float64, generator=g)
    f = setup_filter(taps, separable=separable).double()
    k = len(taps)
    # filter2d: same size, centered (fw // 2 before, (fw - 1) // 2 after)
    y = filter2d(x, f, padding=(1, 0, 0, 2))
    assert y.shape == (2, 3, 10, 13)
    torch.testing.assert_close(y, dense_upfirdn2d(x, f, padding=(1 + k // 2, (k - 1) // 2, k // 2, 2 + (k - 1) // 2)))
    # upsample2d: exactly H * up, gain up**2
    y = upsample2d(x, f)
    assert y.shape == (2, 3, 16, 24)
    torch.testing.assert_close(y, dense_upfirdn2d(x, f, up=2, padding=((k + 1) // 2, (k - 2) // 2) * 2, gain=4.0))
    # downsample2d: exactly H / down
    y = downsample2d(x, f)
    assert y.shape == (2, 3, 4, 6)
    torch.testing.assert_close(y, dense_upfirdn2d(x, f, down=2, padding=((k - 1) // 2, (k - 2) // 2) * 2))
    y = upsample2d(x, f, up=3)
    assert y.shape == (2, 3, 24, 36) or k < 3


def test_constant_signal_is_preserved():
    f = binomial_filter()
    x = torch.full((1, 2, 16, 16), 3.0, dtype=torch.float64)
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))
    for y in (upsample2d(x, f), downsample2d(x, f), filter2d(x, f), upsample2d(x, setup_filter([1, 1, 1, 1]), up=4),
              downsample2d(x, f, down=4), upsample2d(x, setup_filter([1, 3, 3, 1], separable=False))):
        torch.testing.assert_close(y[inner], torch.full_like(y[inner], 3.0))


@pytest.mark.parametrize("taps", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("factor", [2, 3])
def test_resampling_pixel_alignment_follows_the_documented_formula(taps, factor):
    f = setup_filter([1.0] * taps).double()  # symmetric: its response is centred on its middle
    # upsample2d: input pixel i lands where output pixel o satisfies (o + 1/2) / up - 1/2 - s = i, found as
    # the centroid of the response to an impulse at i
    impulse = torch.zeros(1, 1, 3, 16, dtype=torch.float64)
    impulse[..., 7] = 1.0
    row = upsample2d(impulse, f, up=factor)[0, 0].sum(0)  # x profile
    o = torch.arange(row.numel(), dtype=torch.float64)
    s = ((taps + factor) % 2) / (2 * factor)
    assert (row * o).sum() / row.sum() == pytest.approx((7 + 0.5 + s) * factor - 0.5)
    # downsample2d: output pixel o is centred on input position down * o + (down - 1) / 2 (- 1/2 when
    # taps - down is odd); a symmetric normalized filter reproduces a ramp, which shows that position
    ramp = torch.arange(24, dtype=torch.float64).expand(1, 1, 24, 24)  # value = x coordinate
    down = downsample2d(ramp, f, down=factor)[0, 0, 4]
    o = torch.arange(24 // factor, dtype=torch.float64)
    shift = 0.0 if (taps - factor) % 2 == 0 else -0.5
    torch.testing.assert_close(down[2:-2], (factor * o + (factor - 1) / 2 + shift)[2:-2])


def test_channels_last_input_gives_same_values_and_keeps_layout(separable_path):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 8, 9, 10, generator=g)
    xc = x.contiguous(memory_format=torch.channels_last)
    f = binomial_filter()
    for fn in (lambda t: upsample2d(t, f), lambda t: downsample2d(t, f), lambda t: filter2d(t, f),
               lambda t: upfirdn2d(t, f, up=2, padding=(-1, 2, 3, 0)), lambda t: upsample2d(t, torch.outer(f, f))):
        y, yc = fn(x), fn(xc)
        torch.testing.assert_close(yc, y, rtol=1e-6, atol=1e-6)
        assert yc.stride(1) == 1  # channels innermost (a crop may leave a view)


GRADIENT_CASES = [  # (filter taps, kwargs)
    ((1, 3, 3, 1), dict(up=2, padding=(2, 1, 2, 1))),
    ((1, 3, 3, 1), dict(down=2, padding=1)),
    ((1, 2, 1), dict(padding=(1, 1, 0, 2), flip_filter=True, gain=2.0)),
    (((1, 2), (3, 5), (1, 1)), dict(up=2, down=(1, 2), padding=(0, 1, 2, -1))),
    (None, dict(up=2, padding=1)),
]


@pytest.mark.parametrize("path,taps,kwargs", [
    (path, taps, kwargs) for taps, kwargs in GRADIENT_CASES
    for path in (SEPARABLE_PATHS if taps is not None and isinstance(taps[0], int) else ["-"])])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_gradients_to_any_order(path, taps, kwargs, layout, monkeypatch):
    force_separable_path(monkeypatch, path)
    f = None if taps is None else torch.tensor(taps, dtype=torch.float64)
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_(True)
    fn = lambda t: upfirdn2d(t, f, **kwargs)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_learned_filter_gets_gradients_and_outputs_can_be_modified_in_place():
    x = torch.randn(1, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    for f in (torch.rand(4, dtype=torch.float64, requires_grad=True), torch.rand(3, 2, dtype=torch.float64, requires_grad=True)):
        assert torch.autograd.gradcheck(lambda t, w: upfirdn2d(t, w, up=2, down=(1, 2), padding=(1, 2, 0, 1)), (x, f))
    y = upsample2d(x, binomial_filter().double())
    y.mul_(2.0).sum().backward()  # an in-place op on the output keeps autograd intact
    inner = x.grad[..., 1:-1, 1:-1]  # d sum(2 * upsample2d(x)) / dx = 2 * gain 4 * sum(f)**2 away from the borders
    torch.testing.assert_close(inner, torch.full_like(inner, 8.0))


def test_double_backward_through_a_penalty():
    # R1-style: d/dw of |d out / d x|^2, where out depends on x through up/down-sampling and w
    f = binomial_filter().double()
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    out = downsample2d(torch.nn.functional.conv2d(upsample2d(x, f), w, padding=1), f).square().sum()
    (grad_x,) = torch.autograd.grad(out, x, create_graph=True)
    grad_x.square().sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


def _plane_wave(size: int, fx: float, fy: float, shift: float = 0.0) -> torch.Tensor:
    i = torch.arange(size, dtype=torch.float64) + shift
    return torch.cos(2 * math.pi * (fx * i[None, :] + fy * i[:, None]))[None, None]  # [1, 1, H, W]


def test_upsample_downsample_round_trip_of_a_band_limited_signal():
    f = binomial_filter().double()
    fx, fy = 0.05, 0.03  # cycles/pixel, far below Nyquist (0.5)
    x = _plane_wave(64, fx, fy)
    y = downsample2d(upsample2d(x, f), f)
    assert y.shape == x.shape
    inner = (..., slice(8, -8), slice(8, -8))
    # No shift: the result is x times the two filters' response, cos(pi f / 2)**6 per axis (each filter
    # is cos(pi f')**3 at f' = f / 2 cycles per upsampled pixel), plus a folded-back image term that is
    # smaller than sin(pi f / 2)**6.
    response = (math.cos(math.pi * fx / 2) * math.cos(math.pi * fy / 2)) ** 6
    assert (y - response * x)[inner].abs().max() < 1e-6  # measured: 2.4e-7
    assert (y - x)[inner].abs().max() < 0.03  # measured: 0.025 (the response is 0.975)
    # the same with a 2-D filter
    f2 = setup_filter([1, 3, 3, 1], separable=False).double()
    assert (downsample2d(upsample2d(x, f2), f2) - response * x)[inner].abs().max() < 1e-6
    # An odd filter is not centred on the pixel grid with an even factor: the round trip shifts by half
    # a pixel on both axes (y[o] ~ x at o - 0.5), with the response cos(pi f / 2)**4 per axis of [1, 2, 1].
    f3 = setup_filter([1, 2, 1]).double()
    y3 = downsample2d(upsample2d(x, f3), f3)
    shifted = _plane_wave(64, fx, fy, shift=-0.5)
    response3 = (math.cos(math.pi * fx / 2) * math.cos(math.pi * fy / 2)) ** 4
    assert (y3 - response3 * shifted)[inner].abs().max() < 1e-4  # measured: 4.3e-5


def _energy(t: torch.Tensor, border: int = 6) -> float:
    return t[..., border:-border, border:-border].square().mean().item()


def test_anti_aliasing_filter_attenuates_a_near_nyquist_sinusoid():
    x = _plane_wave(96, 0.45, 0.0)  # just below Nyquist; after 2x subsampling it aliases to 0.1 cycles/pixel
    strided = _energy(x[..., ::2, ::2])
    assert strided == pytest.approx(0.5, rel=0.01)  # plain striding keeps the full (aliased) energy
    # binomial [1,3,3,1]: amplitude response cos(pi * 0.45)**3 = 3.8e-3 -> mean square 0.5 * 3.8e-3**2 = 7.3e-6
    binomial = _energy(downsample2d(x, binomial_filter().double()))
    assert binomial == pytest.approx(0.5 * math.cos(math.pi * 0.45) ** 6, rel=1e-6)
    assert strided / binomial > 50_000  # measured: 6.8e4 (48 dB)
    # Kaiser-windowed sinc, cutoff at the new Nyquist (0.25 cycles/pixel), transition 0.2 wide
    kaiser = _energy(downsample2d(x, kaiser_lowpass(12, 0.25, 0.2, fs=1.0)))
    assert strided / kaiser > 20_000  # measured: 4.7e4 (47 dB)
    # a diagonal wave is attenuated along both axes
    d = _plane_wave(96, 0.45, 0.45)
    assert _energy(d[..., ::2, ::2]) / _energy(downsample2d(d, binomial_filter().double())) > 1e9  # measured: 4.6e9


def test_binomial_filter_and_setup_filter():
    f = binomial_filter()
    assert f.dtype == torch.float32 and f.shape == (4,)
    torch.testing.assert_close(f, torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8)
    assert binomial_filter((1, 2, 1)).sum().item() == pytest.approx(1.0)
    f2 = setup_filter([1, 3, 3, 1], separable=False)
    assert f2.shape == (4, 4) and f2.sum().item() == pytest.approx(1.0)
    torch.testing.assert_close(f2, torch.outer(f, f))
    torch.testing.assert_close(setup_filter([1, 3, 3, 1], gain=4.0), f * 2)  # sqrt(gain) per axis
    torch.testing.assert_close(setup_filter([1, 3, 3, 1], separable=False, gain=4.0), torch.outer(f, f) * 4)
    torch.testing.assert_close(setup_filter([1, 2, 5], flip=True), torch.tensor([5.0, 2.0, 1.0]) / 8)
    torch.testing.assert_close(setup_filter([1.0, 3.0], normalize=False), torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(setup_filter(torch.tensor([[1.0, 1.0], [1.0, 1.0]])), torch.full((2, 2), 0.25))
    with pytest.raises(ValueError, match="sum to zero"):
        setup_filter([1, -1])
    with pytest.raises(ValueError, match="1-D filter"):
        setup_filter([[1, 2], [3, 4]], separable=True)
    # a separable filter is the outer product: same result as the 2-D filter
    x = torch.randn(1, 2, 9, 9)
    torch.testing.assert_close(upsample2d(x, f), upsample2d(x, f2), rtol=1e-5, atol=1e-6)


def test_register_filter_is_a_non_persistent_buffer_by_default():
    m = nn.Module()
    register_filter(m, "resample_filter", [1, 3, 3, 1])
    register_filter(m, "kept", [1, 2, 1], persistent=True)
    register_filter(m, "none", None)
    assert "resample_filter" not in m.state_dict() and "kept" in m.state_dict()
    assert torch.equal(m.resample_filter, binomial_filter()) and m.none is None
    m64 = copy.deepcopy(m).double()
    assert m64.resample_filter.dtype == torch.float64  # follows .to(); deep copies carry it
    assert {name for name, _ in m.named_buffers()} == {"resample_filter", "kept"}


# scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs) computed with scipy 1.17.1, so that the design
# is checked even where scipy is not installed.
FIRWIN_REFERENCE = {
    (9, 0.45, 0.6, 2.0): [-0.005428109481149562, -0.03428948403122647, 0.032402016426809115, 0.28340223598987707,
                          0.44782668219137967, 0.28340223598987707, 0.032402016426809115, -0.03428948403122647,
                          -0.005428109481149562],
    (12, 0.25, 0.1, 1.0): [0.02945678295503316, 0.03963207879594805, -0.05485479627410132, -0.08103026198578503,
                           0.13986710632406318, 0.426929090184842, 0.426929090184842, 0.13986710632406318,
                           -0.08103026198578503, -0.05485479627410132, 0.03963207879594805, 0.02945678295503316],
    (13, 0.5, 0.5, 2.0): [9.647070264341689e-19, 0.01100724040109674, -6.97678844060482e-18, -0.06138646730256733,
                          1.5405769327498594e-17, 0.3004216990390471, 0.4999150557248472, 0.3004216990390471,
                          1.5405769327498594e-17, -0.06138646730256733, -6.97678844060482e-18, 0.01100724040109674,
                          9.647070264341689e-19],  # attenuation 51 dB: the A > 50 branch of kaiser_beta
    (6, 32.0, 20.0, 256.0): [0.1055356736992385, 0.17589278949873086, 0.21857153680203067, 0.21857153680203067,
                             0.17589278949873086, 0.1055356736992385],  # beta = 0 (rectangular window), fs != 2
}
KAISER_BETA_REFERENCE = {10.0: 0.0, 21.0: 0.0, 35.0: 2.782893370471638, 50.0: 4.533514120981248, 80.0: 7.85726}

KAISER_CASES = [(7, 0.3, 0.4, 2.0), (12, 0.25, 0.1, 1.0), (6, 32.0, 20.0, 256.0), (1, 0.5, 0.2, 2.0),
                (2, 0.5, 0.2, 2.0), (31, 0.2, 0.05, 2.0), (16, 10.0, 4.0, 64.0), (9, 0.45, 0.6, 2.0),
                (64, 0.25, 0.3, 2.0), (24, 8.0, 8.0, 64.0), (13, 0.5, 0.5, 2.0), (12, 0.5, 0.4, 2.0)]


@pytest.mark.parametrize("case", list(FIRWIN_REFERENCE))
def test_kaiser_lowpass_matches_stored_firwin_values(case):
    numtaps, cutoff, width, fs = case
    h = kaiser_lowpass(numtaps, cutoff, width, fs=fs)
    assert h.dtype == torch.float64
    torch.testing.assert_close(h, torch.tensor(FIRWIN_REFERENCE[case], dtype=torch.float64), rtol=0, atol=1e-14)


def test_kaiser_formulas_match_stored_scipy_values():
    for atten, beta in KAISER_BETA_REFERENCE.items():
        assert kaiser_beta(atten) == pytest.approx(beta, rel=1e-14, abs=1e-15)
    assert kaiser_atten(13, 0.5) == pytest.approx(51.02123528071607, rel=1e-14)


@pytest.mark.parametrize("case", KAISER_CASES)
def test_kaiser_lowpass_equals_scipy_firwin(case):
    signal = pytest.importorskip("scipy.signal")
    numtaps, cutoff, width, fs = case
    expected = torch.from_numpy(signal.firwin(numtaps, cutoff, width=width, fs=fs))
    torch.testing.assert_close(kaiser_lowpass(numtaps, cutoff, width, fs=fs), expected, rtol=0, atol=1e-14)
    nyq = fs / 2
    assert kaiser_atten(numtaps, width / nyq) == pytest.approx(signal.kaiser_atten(numtaps, width / nyq), rel=1e-14)
    for atten in KAISER_BETA_REFERENCE:
        assert kaiser_beta(atten) == pytest.approx(signal.kaiser_beta(atten), rel=1e-14, abs=1e-15)


def test_kaiser_lowpass_properties():
    h = kaiser_lowpass(24, 8.0, 8.0, fs=64.0)
    assert h.sum().item() == pytest.approx(1.0)  # unit DC gain
    torch.testing.assert_close(h, h.flip(0), rtol=0, atol=1e-15)  # symmetric: linear phase
    # the stop band (beyond cutoff + width / 2 = 12 of fs = 64) is attenuated at least as Kaiser predicts, minus a margin
    freqs = torch.linspace(12.5, 32.0, 200, dtype=torch.float64) / 64.0
    n = torch.arange(24, dtype=torch.float64) - 11.5
    response = (h[None] * torch.cos(2 * math.pi * freqs[:, None] * n[None])).sum(1).abs()
    assert 20 * math.log10(response.max().item()) < -(kaiser_atten(24, 8.0 / 32.0) - 6)
    with pytest.raises(ValueError, match="cutoff"):
        kaiser_lowpass(8, 1.0, 0.1)
    with pytest.raises(ValueError, match="width"):
        kaiser_lowpass(8, 0.5, 0.0)
