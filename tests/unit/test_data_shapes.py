"""ShapesDataModule: determinism by (seed, index), value range, geometry of each class, labels, factors."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_gan.data.shapes import (
    SHAPES,
    ShapeFactors,
    ShapesDataModule,
    ShapesDataset,
    render_shapes,
    shape_factors,
)

# Area of each shape at circumradius 1, from its geometry (independent of the renderer's code).
_W = 0.25  # cross arm half width
_L = math.sqrt(1 - _W**2)
_STAR_INNER = math.sin(math.radians(18)) / math.sin(math.radians(54))
UNIT_AREA = {
    "circle": math.pi,
    "ring": math.pi * (1 - 0.5**2),
    "square": 2.0,
    "triangle": 3 * math.sqrt(3) / 4,
    "cross": 2 * (2 * _L) * (2 * _W) - (2 * _W) ** 2,
    "star": 10 * 0.5 * _STAR_INNER * math.sin(math.radians(36)),
}


def _factors(shape: str, *, size: float, x: float = 0.0, y: float = 0.0, rotation: float = 0.0) -> ShapeFactors:
    """One white shape on black, grey, with known factors."""
    return ShapeFactors(
        label=torch.zeros(1, dtype=torch.long), shape=torch.tensor([SHAPES.index(shape)]),
        size=torch.tensor([size]), position=torch.tensor([[x, y]]), rotation=torch.tensor([rotation]),
        color=torch.ones(1, 1), background=torch.zeros(1, 1),
    )


def _coverage(shape: str, resolution: int = 64, **kw: float) -> torch.Tensor:
    """Fraction of each pixel the shape covers, [R, R]."""
    return (render_shapes(_factors(shape, **kw), resolution=resolution)[0, 0] + 1) / 2


def _pixel_centres(resolution: int) -> torch.Tensor:
    return (torch.arange(resolution, dtype=torch.float64) * 2 + 1) / resolution - 1


# -- determinism ----------------------------------------------------------------------------------------
def test_same_seed_same_images_different_seed_different_images():
    idx = list(range(16))
    a = ShapesDataset(resolution=16, seed=3).__getitems__(idx)
    b = ShapesDataset(resolution=16, seed=3).__getitems__(idx)
    c = ShapesDataset(resolution=16, seed=4).__getitems__(idx)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert (a[0] - c[0]).abs().mean() > 0.1  # a different data set, not a perturbation


@pytest.mark.parametrize("resolution", [16, 256])  # 256: one image is rendered in several row blocks
def test_image_depends_only_on_seed_and_index(resolution):
    ds = ShapesDataset(resolution=resolution, num_samples=100)
    idx = [7, 3, 99, 7, 42, 0] if resolution == 16 else [5, 2]
    x, y = ds.__getitems__(idx)
    for j, i in enumerate(idx):  # alone, in any batch, in any order: bit-identical
        xi, yi = ds[i]
        assert torch.equal(xi, x[j]) and yi == y[j]
    x_rev, _ = ds.__getitems__(idx[::-1])
    assert torch.equal(x_rev.flip(0), x)


def test_datamodule_batches_are_reproducible_and_typed():
    def first_batch():
        dm = ShapesDataModule(resolution=8, num_samples=64, batch_size=16, seed=5)
        return next(iter(dm.train_dataloader()))

    (x1, y1), (x2, y2) = first_batch(), first_batch()
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape == (16, 3, 8, 8) and x1.dtype == torch.float32 and y1.dtype == torch.int64


# -- shapes, ranges, arguments --------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_range_and_labels(channels):
    ds = ShapesDataset(resolution=32, channels=channels, num_samples=200)
    x, y = ds.__getitems__(list(range(48)))
    assert x.shape == (48, channels, 32, 32) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert x.amin(dim=(1, 2, 3)).max() < -0.3 and x.amax(dim=(1, 2, 3)).min() > 0.3  # dark bg, bright shape
    assert y.dtype == torch.int64 and set(y.tolist()) <= set(range(len(SHAPES)))


def test_every_power_of_two_resolution_from_8_to_256():
    for r in (8, 16, 32, 64, 128, 256):
        dm = ShapesDataModule(resolution=r, channels=1)
        dm.setup()
        x, y = dm.train_dataset.__getitems__([0, 1])
        assert dm.data_shape == (1, r, r) and x.shape == (2, 1, r, r)
    for bad in (12, 4, 512, 0, 48):
        with pytest.raises(ValueError, match="power of two from 8 to 256"):
            ShapesDataModule(resolution=bad)


def test_bad_arguments_are_rejected_clearly():
    with pytest.raises(ValueError, match=r"Unknown shape class.*hexagon.*available"):
        ShapesDataModule(classes=["circle", "hexagon"])
    with pytest.raises(ValueError, match="repeat"):
        ShapesDataModule(classes=["circle", "circle"])
    with pytest.raises(ValueError, match="channels"):
        ShapesDataModule(channels=2)
    with pytest.raises(ValueError, match="size_range"):
        ShapesDataModule(size_range=(0.5, 1.5))


# -- geometry: areas, positions, orientation, symmetry ------------------------------------------------
def test_centred_square_covers_its_area():
    s = 0.6  # circumradius: half side s / sqrt(2), area 2 s^2 of the image's 4
    assert _coverage("square", size=s).mean().item() == pytest.approx(s**2 / 2, rel=0.005)
    # Rotated by 30 degrees: same area, but now reaching further along the diagonal's old direction.
    assert _coverage("square", size=s, rotation=math.radians(30)).mean().item() == pytest.approx(s**2 / 2, rel=0.01)


def test_circle_covers_pi_r_squared():
    for s, res in ((0.5, 64), (0.8, 32)):
        assert _coverage("circle", resolution=res, size=s).mean().item() == pytest.approx(math.pi * s**2 / 4, rel=0.01)


@pytest.mark.parametrize("shape", SHAPES)
def test_each_shape_has_its_area_and_centroid(shape):
    s, x0, y0 = 0.5, 0.3, -0.2
    cov = _coverage(shape, size=s, x=x0, y=y0, rotation=0.4).double()
    assert cov.mean().item() == pytest.approx(UNIT_AREA[shape] * s**2 / 4, rel=0.015)
    u = _pixel_centres(64)
    total = cov.sum()
    assert (cov.sum(0) * u).sum() / total == pytest.approx(x0, abs=0.01)  # x: columns
    assert (cov.sum(1) * u).sum() / total == pytest.approx(y0, abs=0.01)  # y: rows


def test_orientation_at_rotation_zero_and_ring_hole():
    r, s = 64, 0.8
    row = lambda y: int((y + 1) / 2 * r)  # noqa: E731 - pixel row containing normalized y
    centre_col = r // 2
    for shape in ("triangle", "star"):  # a tip up (-y), none down
        cov = _coverage(shape, resolution=r, size=s)
        assert cov[row(-0.8 * s), centre_col] > 0.99 and cov[row(0.8 * s), centre_col] < 0.01
    square = _coverage("square", resolution=r, size=s)  # axis-aligned: the corner region is filled
    assert square[row(-0.65 * s), row(-0.65 * s)] > 0.99
    ring = _coverage("ring", resolution=r, size=s)
    assert ring[r // 2, r // 2] == 0 and ring[r // 2, row(0.75 * s)] == 1


@pytest.mark.parametrize(("shape", "period"), [("square", 4), ("triangle", 3), ("cross", 4), ("star", 5)])
def test_rotation_by_the_symmetry_period_changes_nothing(shape, period):
    a = _coverage(shape, resolution=32, size=0.7, rotation=0.3)
    b = _coverage(shape, resolution=32, size=0.7, rotation=0.3 + 2 * math.pi / period)
    c = _coverage(shape, resolution=32, size=0.7, rotation=0.3 + math.pi / period)
    assert (a - b).abs().max() < 1e-4
    assert (a - c).abs().max() > 0.2  # half a period is a different image


# -- labels and factors --------------------------------------------------------------------------------
@pytest.mark.parametrize("classes", [None, ["star", "circle", "cross"]])
def test_label_is_the_rendered_class(classes):
    """Measure each image's shape area (in units of size^2) and centroid from its pixels: the area
    identifies the class, which must be the label's, and the centroid must be the position factor."""
    ds = ShapesDataset(resolution=64, channels=3, classes=classes, num_samples=1000, seed=11)
    names = ds.classes
    idx = list(range(0, 600, 10))
    x, y = ds.__getitems__(idx)
    f = ds.factors(idx)
    assert torch.equal(f.label, y)
    u = _pixel_centres(64)
    for j in range(len(idx)):
        c = int((f.color[j] - f.background[j]).abs().argmax())  # the channel with the most contrast
        cov = (((x[j, c] + 1) / 2 - f.background[j, c]) / (f.color[j, c] - f.background[j, c])).double()
        unit_area = cov.sum().item() * (2 / 64) ** 2 / f.size[j].item() ** 2
        nearest = min(names, key=lambda n: abs(math.log(UNIT_AREA[n] / unit_area)))
        assert nearest == names[int(y[j])]
        assert unit_area == pytest.approx(UNIT_AREA[nearest], rel=0.04)
        assert (cov.sum(0) * u).sum().item() / cov.sum().item() == pytest.approx(f.position[j, 0].item(), abs=0.02)
        assert (cov.sum(1) * u).sum().item() / cov.sum().item() == pytest.approx(f.position[j, 1].item(), abs=0.02)


def test_factor_distributions():
    f = shape_factors(range(6000), seed=1, size_range=(0.3, 0.7))
    counts = torch.bincount(f.label, minlength=6).double() / 6000
    assert (counts - 1 / 6).abs().max() < 0.025
    assert torch.equal(f.shape, f.label)  # default classes are SHAPES in order
    assert f.size.min() >= 0.3 and f.size.max() <= 0.7 and f.size.std() > 0.1
    assert (f.position.abs() + f.size[:, None] <= 1 + 1e-6).all()  # shapes lie inside the image
    order = torch.tensor([1, 4, 3, 4, 1, 5])[f.shape]
    assert (f.rotation >= 0).all() and (f.rotation < 2 * math.pi / order + 1e-6).all()
    assert f.color.shape == (6000, 3) and f.color.amax(1).min() >= 0.7 - 1e-6 and f.background.amax(1).max() <= 0.3
    sub = shape_factors(range(100), seed=1, classes=["ring", "square"])
    assert set(sub.label.tolist()) == {0, 1}
    assert torch.equal(torch.tensor([SHAPES.index("ring"), SHAPES.index("square")])[sub.label], sub.shape)


def test_datamodule_exposes_factors_and_class_count():
    dm = ShapesDataModule(resolution=8, channels=1, classes=["triangle", "star"], seed=2)
    assert dm.num_classes == 2 and dm.data_shape == (1, 8, 8) and dm.default_metrics() == ["shapes"]
    dm.setup()
    f = dm.factors([0, 1, 2])
    assert torch.equal(f.label, dm.train_dataset.__getitems__([0, 1, 2])[1])
    assert f.color.shape == (3, 1)


def test_registered_as_the_shapes_dataset():
    from lightning_gan.registry import get_registry

    assert get_registry("datasets").load("shapes") is ShapesDataModule


def test_worker_processes_and_validation_subset_give_the_same_images():
    dm = ShapesDataModule(resolution=8, num_samples=32, batch_size=8, seed=9)
    in_process = list(dm.train_dataloader())
    dm.num_workers = 2
    in_workers = list(dm.train_dataloader())
    assert len(in_process) == len(in_workers) == 4
    for (xa, ya), (xb, yb) in zip(in_process, in_workers):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    xv, yv = next(iter(dm.val_dataloader()))  # a Subset forwards __getitems__: still one batch tuple
    assert torch.equal(xv, dm.train_dataset.__getitems__(list(range(8)))[0]) and yv.shape == (8,)
