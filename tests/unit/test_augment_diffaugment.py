"""DiffAugment: its functions against hand computations, the paper's ranges, forward = the functions with the drawn
parameters, the empty policy, errors, config and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_gan.augment import DiffAugment
from lightning_gan.augment.diffaugment import cut_out, scale_contrast, scale_saturation, shift_brightness, translate

F64 = torch.float64


def images(n: int = 4, c: int = 3, h: int = 8, w: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_colour_functions_by_hand() -> None:
    pixel = torch.tensor([0.2, -0.4, 0.5]).reshape(1, 3, 1, 1)
    assert torch.allclose(shift_brightness(pixel, torch.tensor([0.3])).flatten(), torch.tensor([0.5, -0.1, 0.8]))
    # Saturation: the pixel's channel mean (0.1) plus s times the deviation.
    assert torch.allclose(scale_saturation(pixel, torch.tensor([2.0])).flatten(), torch.tensor([0.3, -0.9, 0.9]))
    assert torch.allclose(scale_saturation(pixel, torch.tensor([0.0])).flatten(), torch.full((3,), 0.1))
    grey = images(c=1)
    assert torch.allclose(scale_saturation(grey, torch.rand(4) * 2), grey)  # one channel: the identity
    # Contrast: the image's mean over channels and pixels plus c times the deviation.
    x = torch.tensor([[[[1.0, 3.0]], [[-1.0, 5.0]]]])  # [1, 2, 1, 2], mean 2
    assert torch.allclose(scale_contrast(x, torch.tensor([0.5])), torch.tensor([[[[1.5, 2.5]], [[0.5, 3.5]]]]))


def test_translate_is_zero_padding_shifted() -> None:
    x = torch.arange(2 * 1 * 5 * 6, dtype=torch.float32).reshape(2, 1, 5, 6) + 1
    shifts = torch.tensor([[2, -1], [-3, 0]])  # (tx, ty)
    out = translate(x, shifts)
    padded = F.pad(x, (3, 3, 3, 3))
    for i, (tx, ty) in enumerate(shifts.tolist()):  # out[r, c] = x[r - ty, c - tx], 0 outside
        assert torch.equal(out[i], padded[i, :, 3 - ty:3 - ty + 5, 3 - tx:3 - tx + 6])


def test_cut_out_zeroes_one_clipped_rectangle() -> None:
    x = torch.ones(2, 2, 6, 8)
    out = cut_out(x, torch.tensor([[4, 2], [0, 5]]), (3, 4))  # centres (cx, cy), size (height, width)
    expected = torch.ones(2, 2, 6, 8)
    expected[0, :, 1:4, 2:6] = 0  # rows 2 - 1 .. 2 + 1, columns 4 - 2 .. 4 + 1
    expected[1, :, 4:6, 0:2] = 0  # rows 5 - 1 .. 6 (clipped), columns -2 .. 1 (clipped)
    assert torch.equal(out, expected)


def test_empty_policy_is_the_identity() -> None:
    x = images()
    for policy in ("", [], " , "):
        augment = DiffAugment(policy=policy)
        assert augment.policy == "" and augment(x) is x


def test_forward_is_the_functions_with_the_drawn_parameters_in_policy_order() -> None:
    augment = DiffAugment(policy="cutout,color,translation")
    x = images(h=8, w=12)
    torch.manual_seed(0)
    out = augment(x)
    torch.manual_seed(0)
    p = augment.sample_parameters(4, 8, 12)
    assert list(p) == ["cutout", "color", "translation"]
    expected = cut_out(x, p["cutout"]["centres"], (4, 6))
    expected = shift_brightness(expected, p["color"]["brightness"])
    expected = scale_saturation(expected, p["color"]["saturation"])
    expected = scale_contrast(expected, p["color"]["contrast"])
    expected = translate(expected, p["translation"]["shifts"])
    assert torch.equal(out, expected)


def test_parameters_span_the_papers_ranges() -> None:
    torch.manual_seed(0)
    n = 20000
    p = DiffAugment().sample_parameters(n, 32, 16)
    colour = p["color"]
    for name, low, high in (("brightness", -0.5, 0.5), ("saturation", 0.0, 2.0), ("contrast", 0.5, 1.5)):
        values = colour[name]
        assert low <= float(values.min()) < low + 0.01 and high - 0.01 < float(values.max()) < high, name
        assert abs(float(values.mean()) - (low + high) / 2) < 0.01, name
    shifts = p["translation"]["shifts"]  # (tx, ty): up to round(16 / 8) = 2 and round(32 / 8) = 4 pixels
    assert set(shifts[:, 0].tolist()) == set(range(-2, 3)) and set(shifts[:, 1].tolist()) == set(range(-4, 5))
    centres = p["cutout"]["centres"]
    assert set(centres[:, 0].tolist()) == set(range(16)) and set(centres[:, 1].tolist()) == set(range(32))


def test_every_image_every_call() -> None:
    """No probability: cutout zeroes a rectangle on every image, at every call anew."""
    augment = DiffAugment(policy="cutout")
    x = torch.ones(64, 1, 8, 8)
    torch.manual_seed(0)
    first, second = augment(x), augment(x)
    assert ((first == 0).flatten(1).sum(1) >= 4).all()  # a 4 x 4 square, at least a 2 x 2 corner of it inside
    assert not torch.equal(first, second)


def test_bad_policies_give_one_line_errors() -> None:
    with pytest.raises(ValueError, match="unknown DiffAugment policy 'colour'; choose from color, translation, cutout"):
        DiffAugment(policy="colour,cutout")
    with pytest.raises(ValueError, match="twice"):
        DiffAugment(policy=["cutout", "cutout"])
    with pytest.raises(ValueError, match="comma-separated"):
        DiffAugment(policy=[1, 2])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        DiffAugment()(torch.zeros(3, 8, 8))


def test_config_round_trips() -> None:
    augment = DiffAugment(policy=["translation", " color"])
    config = augment.config()
    assert config == {"class_path": "lightning_gan.augment.diffaugment.DiffAugment",
                      "init_args": {"policy": "translation,color"}}
    assert DiffAugment(**config["init_args"]).policies == ("translation", "color")


def test_gradients_of_each_policy() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 6, dtype=F64, requires_grad=True)
    b, s, c = torch.tensor([0.3, -0.2]), torch.tensor([1.5, 0.3]), torch.tensor([0.7, 1.2])
    shifts, centres = torch.tensor([[1, -1], [0, 2]]), torch.tensor([[1, 4], [5, 0]])
    for fn in (lambda y: shift_brightness(y, b), lambda y: scale_saturation(y, s), lambda y: scale_contrast(y, c),
               lambda y: translate(y, shifts), lambda y: cut_out(y, centres, (3, 3))):
        assert torch.autograd.gradcheck(fn, (x,))
    out = DiffAugment()(x)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
