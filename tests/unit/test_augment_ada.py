"""ADA's pipeline: identity at p = 0, each transform at p = 1 against its definition, the paper's distributions,
forward = the pure functions with the drawn parameters, gradients, errors and config."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_gan.augment import ADA, DiffAugment
from lightning_gan.augment.ada import BLIT, COLOUR, GEOMETRIC
from lightning_gan.augment.transforms import apply_blit, apply_colour, apply_geometric
from lightning_gan.interfaces import Augmentation

ALL = BLIT + GEOMETRIC + COLOUR


def only(*names: str, **kwargs: object) -> ADA:
    """An ADA with only the named transforms on (multiplier 1), the others off."""
    return ADA(**{name: float(name in names) for name in ALL}, **kwargs)


def images(n: int = 8, c: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, c, size, size, generator=torch.Generator().manual_seed(seed))


def test_is_an_augmentation() -> None:
    assert isinstance(ADA(), Augmentation)


@pytest.mark.parametrize("ada", [ADA(), ADA(fixed_p=0.0), ADA(initial_p=0.0, xflip=5.0)], ids=["adaptive", "fixed",
                                                                                                   "multiplier"])
def test_p_zero_is_the_identity(ada: ADA) -> None:
    torch.manual_seed(0)
    for c in (1, 3):
        x = images(c=c)
        assert torch.equal(ada(x), x)


def test_untouched_samples_stay_bit_exact() -> None:
    """At a small p most samples draw nothing: exactly those come back unchanged (the others differ)."""
    ada = ADA(fixed_p=0.1)
    x = images(n=64)
    torch.manual_seed(1)
    out = ada(x)
    torch.manual_seed(1)
    params = ada.sample_parameters(64, 16, 16, 3)
    untouched = ~(params.blit | params.geometric_selected | params.colour_selected)
    assert 5 < int(untouched.sum()) < 64
    assert torch.equal(out[untouched], x[untouched])
    assert ((out - x).flatten(1).abs().amax(1)[~untouched] > 0).all()


@pytest.mark.parametrize("c", [1, 3])
def test_forward_is_the_pure_functions_with_the_drawn_parameters(c: int) -> None:
    ada = ADA(fixed_p=0.3)
    x = images(n=32, c=c)
    torch.manual_seed(3)
    out = ada(x)
    torch.manual_seed(3)
    params = ada.sample_parameters(32, 16, 16, c)
    def where(selected: torch.Tensor, changed: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        return torch.where(selected[:, None, None, None], changed, kept)

    blitted = apply_blit(x, xflip=params.xflip, rotations=params.rotations, shifts=params.shifts)
    warped = apply_geometric(blitted, params.geometric, up_filter=ada.up_filter, down_filter=ada.down_filter)
    warped = where(params.geometric_selected, warped, blitted)
    expected = where(params.colour_selected, apply_colour(warped, params.colour), warped)
    assert not params.geometric_selected.all() and not params.colour_selected.all()  # both kinds of rows
    assert torch.allclose(out, expected, atol=1e-5)


# -- p = 1: each transform against its definition ------------------------------------------------------
def test_xflip_at_p1_flips_every_image() -> None:
    x = images()
    assert torch.equal(only("xflip", fixed_p=1.0)(x), torch.flip(x, dims=[-1]))


def test_rotate90_at_p1_turns_each_image_by_a_uniform_quarter() -> None:
    torch.manual_seed(0)
    x = images(n=200, c=1, size=4)
    out = only("rotate90", fixed_p=1.0)(x)
    turns = []
    for i in range(len(x)):
        matches = [k for k in range(4) if torch.equal(out[i], torch.rot90(x[i], k, dims=(-2, -1)))]
        assert len(matches) == 1
        turns.append(matches[0])
    counts = torch.bincount(torch.tensor(turns), minlength=4)
    assert (counts > 30).all()  # k uniform in {0, 1, 2, 3}: 50 each expected


def test_xint_at_p1_shifts_each_image_by_whole_pixels_up_to_an_eighth() -> None:
    torch.manual_seed(0)
    size = 16  # shifts round(U(-0.125, 0.125) * 16): -2 .. 2 pixels
    x = images(n=100, c=1, size=size)
    out = only("xint", fixed_p=1.0)(x)
    candidates = torch.tensor([(tx, ty) for tx in range(-3, 4) for ty in range(-3, 4)])  # [49, 2]
    seen = set()
    for i in range(len(x)):
        shifted = apply_blit(x[i:i + 1].expand(len(candidates), -1, -1, -1), shifts=candidates)
        matches = [tuple(candidates[k].tolist()) for k in range(len(candidates)) if torch.equal(shifted[k], out[i])]
        assert len(matches) == 1 and max(map(abs, matches[0])) <= 2
        seen.add(matches[0])
    assert len(seen) >= 20  # most of the 25 shifts occur


def test_geometric_distributions_are_the_papers() -> None:
    """Single transforms at p = 1 (p = 0.5 for the rotation gate), read back from the drawn matrices, N = 20000."""
    torch.manual_seed(0)
    n, size = 20000, 32

    def draw(name: str, p: float = 1.0) -> torch.Tensor:
        return only(name, fixed_p=p).sample_parameters(n, size, size, 3).geometric  # [N, 3, 3]

    log_s = torch.log2(draw("scale")[:, 0, 0])
    assert abs(float(log_s.std()) - 0.2) < 0.006 and abs(float(log_s.mean())) < 0.006
    g = draw("aniso")
    assert torch.allclose(g[:, 0, 0] * g[:, 1, 1], torch.ones(n))
    assert abs(float(torch.log2(g[:, 0, 0]).std()) - 0.2) < 0.006
    t = draw("xfrac")[:, :2, 2] / size
    assert (abs(t.std(0) - 0.125) < 0.004).all()
    g = draw("rotate", p=1.0)  # both rotations at p = 1: the sum of two uniform angles, uniform on the circle
    angle = torch.atan2(g[:, 1, 0], g[:, 0, 0])
    assert abs(float(torch.cos(angle).mean())) < 0.03 and abs(float(torch.cos(2 * angle).mean())) < 0.03
    g = draw("rotate", p=0.5)  # two gates of 1 - sqrt(1 - p): some rotation with probability p
    rotated = g[:, 1, 0] != 0
    assert abs(float(rotated.float().mean()) - 0.5) < 0.015
    assert torch.equal(g[~rotated], torch.eye(3).expand(int((~rotated).sum()), 3, 3))


def test_colour_at_p1_each_transform() -> None:
    torch.manual_seed(0)
    n = 20000
    x = images(n=6, size=4)
    # Brightness: a constant per image, N(0, 0.2^2).
    out = only("brightness", fixed_p=1.0)(x)
    diff = (out - x).flatten(1)
    assert torch.allclose(diff, diff[:, :1].expand_as(diff), atol=1e-6)
    b = only("brightness", fixed_p=1.0).sample_parameters(n, 4, 4, 3).colour[:, 0, 3]
    assert abs(float(b.std()) - 0.2) < 0.006
    # Contrast: a factor per image, 2^N(0, 0.5^2).
    c = only("contrast", fixed_p=1.0).sample_parameters(n, 4, 4, 3).colour[:, 0, 0]
    assert abs(float(torch.log2(c).std()) - 0.5) < 0.015
    # Luma flip at p = 1: a fair coin, mirroring along grey.
    params = only("lumaflip", fixed_p=1.0).sample_parameters(n, 4, 4, 3)
    flipped = params.colour_selected
    assert abs(float(flipped.float().mean()) - 0.5) < 0.015
    mirror = torch.eye(4)
    mirror[:3, :3] -= 2 / 3
    assert torch.allclose(params.colour[flipped], mirror.expand(int(flipped.sum()), 4, 4), atol=1e-6)
    assert torch.equal(params.colour[~flipped], torch.eye(4).expand(int((~flipped).sum()), 4, 4))
    # Hue: a rotation about grey (grey kept, orthogonal to it length kept), angle uniform in [-pi, pi].
    m = only("hue", fixed_p=1.0).sample_parameters(n, 4, 4, 3).colour[:, :3, :3]
    grey = torch.ones(3) / math.sqrt(3)
    assert torch.allclose(m @ grey, grey.expand(n, 3), atol=1e-5)
    assert torch.allclose(m @ m.transpose(1, 2), torch.eye(3).expand(n, 3, 3), atol=1e-5)
    cos = (torch.diagonal(m, dim1=1, dim2=2).sum(1) - 1) / 2  # trace = 1 + 2 cos(theta)
    assert abs(float(cos.mean())) < 0.03
    # Saturation: the part orthogonal to grey scaled by 2^N(0, 1).
    m = only("saturation", fixed_p=1.0).sample_parameters(n, 4, 4, 3).colour[:, :3, :3]
    s = m[:, 0, 0] * 3 / 2 - 0.5  # v v^T + s (I - v v^T): diagonal 1/3 + 2 s / 3
    assert abs(float(torch.log2(s).std()) - 1.0) < 0.03


def test_grey_images_skip_hue_and_saturation() -> None:
    x = images(c=1)
    torch.manual_seed(0)
    assert torch.equal(only("hue", "saturation", fixed_p=1.0)(x), x)
    assert not only("hue", "saturation", fixed_p=1.0).sample_parameters(64, 8, 8, 1).colour_selected.any()
    out = only("lumaflip", fixed_p=1.0)(images(n=64, c=1))
    x = images(n=64, c=1)
    negated = torch.isclose(out, -x, atol=1e-6).flatten(1).all(1)
    kept = torch.equal(out[~negated], x[~negated])
    assert kept and 10 < int(negated.sum()) < 54


def test_probabilities_follow_p() -> None:
    """At p = 0.3, each transform fires on a share p of the images (x-flip counted, N = 20000)."""
    torch.manual_seed(0)
    params = ADA(fixed_p=0.3).sample_parameters(20000, 8, 8, 3)
    assert abs(float(params.xflip.float().mean()) - 0.3) < 0.012
    params = only("xflip", fixed_p=0.3, initial_p=0.0).sample_parameters(20000, 8, 8, 3, p=torch.tensor(0.6))
    assert abs(float(params.xflip.float().mean()) - 0.6) < 0.012


def test_gradients_flow_through_the_whole_pipeline() -> None:
    torch.manual_seed(0)
    ada = ADA(fixed_p=0.8)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    params = ada.sample_parameters(2, 6, 6, 3)
    assert bool(params.geometric_selected.all() and params.colour_selected.all())
    assert torch.autograd.gradcheck(lambda y: ada.apply(y, params), (x,), fast_mode=True)
    out = ada(x)
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_float_types_and_shapes_kept() -> None:
    torch.manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        x = images(n=4, size=12).to(dtype)
        out = ADA(fixed_p=1.0)(x)
        assert out.dtype == dtype and out.shape == x.shape


def test_bad_images_give_one_line_errors() -> None:
    with pytest.raises(ValueError, match=r"square images.*rotate90=0"):
        ADA(fixed_p=0.5)(torch.zeros(2, 3, 8, 12))
    with pytest.raises(ValueError, match=r"1 or 3 channels.*brightness=contrast=lumaflip=hue=saturation=0"):
        ADA(fixed_p=0.5)(torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        ADA(fixed_p=0.5)(torch.zeros(3, 8, 8))
    only("xflip", "xint", fixed_p=1.0)(torch.zeros(2, 5, 8, 12))  # blit without rotations: any shape


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"initial_p": 1.0}, "initial_p must be a probability"),
    ({"initial_p": -0.1}, "initial_p must be a probability"),
    ({"fixed_p": 1.5}, "fixed_p must be a probability"),
    ({"target": 1.0}, "target must lie strictly between 0 and 1"),
    ({"interval": 0}, "interval must be an integer"),
    ({"interval": 2.5}, "interval must be an integer"),
    ({"ada_kimg": 0}, "ada_kimg must be positive"),
    ({"xflip": -1.0}, "xflip must be a number >= 0"),
    ({"scale_std": float("nan")}, "scale_std must be a number >= 0"),
    ({"filter_taps": 7}, "filter_taps must be an even integer"),
])
def test_bad_arguments_give_one_line_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        ADA(**kwargs)
    assert "\n" not in str(info.value)


def test_config_round_trips() -> None:
    ada = ADA(initial_p=0.1, target=0.7, interval=8, ada_kimg=100, rotate90=0.0, hue=0.5, saturation_std=0.5)
    config = ada.config()
    assert config["class_path"] == "lightning_gan.augment.ada.ADA"
    again = ADA(**config["init_args"])
    assert again.config() == config
    assert ADA(fixed_p=0.25).config()["init_args"]["fixed_p"] == 0.25
    assert repr(ADA()).startswith("ADA(initial_p=0.0, fixed_p=None, target=0.6")
    diff = DiffAugment(policy=["translation", "color"])
    assert DiffAugment(**diff.config()["init_args"]).config() == diff.config()


def test_autocast_keeps_the_drawn_matrices_in_float32() -> None:
    ada = ADA(fixed_p=0.7)
    torch.manual_seed(0)
    plain = ada.sample_parameters(16, 8, 8, 3)
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = ada.sample_parameters(16, 8, 8, 3)
        out = ada(images(n=4, size=8))
    assert mixed.geometric.dtype == mixed.colour.dtype == torch.float32
    assert torch.equal(plain.geometric, mixed.geometric) and torch.equal(plain.colour, mixed.colour)
    assert out.dtype == torch.float32


@pytest.mark.parametrize("augment", [ADA(fixed_p=0.5), DiffAugment()], ids=["ada", "diffaugment"])
def test_draws_come_from_the_given_generator(augment: Augmentation) -> None:
    """The same generator state gives the same transforms, and the global RNG is neither used nor advanced."""
    x = images(n=16)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    first = augment(x, generator=torch.Generator().manual_seed(7))
    torch.manual_seed(123)  # another global state: no influence
    second = augment(x, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, second)
    torch.manual_seed(0)
    augment(x, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), state)
    assert not torch.equal(augment(x, generator=torch.Generator().manual_seed(8)), first)
