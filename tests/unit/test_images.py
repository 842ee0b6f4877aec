"""Image helpers: exact byte conversion, grid geometry, and the scatter plot's coordinate map."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_gan.utils.images import (
    PointSet,
    data_to_pixel,
    make_grid_image,
    nice_ticks,
    plot_box,
    scatter_plot,
    square_bounds,
    to_uint8,
)


def test_to_uint8_known_values():
    x = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0, -2.0, 2.0, float("nan")])
    # floor((x + 1) * 127.5 + 0.5): -0.5 -> floor(64.25) = 64, 0 -> 128 (127.5 rounds up), 0.5 -> floor(191.75) = 191
    assert to_uint8(x).tolist() == [0, 64, 128, 191, 255, 0, 255, 128]
    assert to_uint8(x).dtype == torch.uint8


def test_to_uint8_inverts_the_byte_to_float_map():
    v = torch.arange(256)
    assert torch.equal(to_uint8(v.float() / 127.5 - 1.0), v.to(torch.uint8))
    assert torch.equal(to_uint8(v.to(torch.uint8)), v.to(torch.uint8))  # uint8 passes through


def test_grid_places_each_tile_at_its_computed_offset():
    h, w, pad, nrow = 3, 4, 2, 3
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (10, 20, 30), (200, 100, 50)]
    images = torch.stack([torch.tensor(c, dtype=torch.uint8).view(3, 1, 1).expand(3, h, w) for c in colours])
    grid = np.asarray(make_grid_image(images, nrow, padding=pad, pad_value=7))
    # 3 columns, 2 rows: width 2 + 3 * (4 + 2) = 20, height 2 + 2 * (3 + 2) = 12
    assert grid.shape == (12, 20, 3)
    for i, colour in enumerate(colours):
        y, x = pad + (i // nrow) * (h + pad), pad + (i % nrow) * (w + pad)
        assert (grid[y:y + h, x:x + w] == colour).all(), f"tile {i}"
        assert (grid[y - pad:y, x:x + w] == 7).all() and (grid[y:y + h, x - pad:x] == 7).all()
    assert (grid[7:10, 14:18] == 7).all()  # the empty sixth cell is padding colour
    assert (grid[:, -pad:] == 7).all() and (grid[-pad:] == 7).all()


def test_grid_greyscale_and_default_layout():
    images = torch.linspace(-1, 1, 9).view(9, 1, 1, 1).expand(9, 1, 2, 2)
    img = make_grid_image(images, padding=1)  # nrow = ceil(sqrt(9)) = 3
    assert img.mode == "L" and img.size == (1 + 3 * 3, 1 + 3 * 3)
    a = np.asarray(img)
    assert a[1, 1] == 0 and a[7, 7] == 255 and a[4, 4] == 128  # first, last and middle image
    with pytest.raises(ValueError, match="C = 1 or 3"):
        make_grid_image(torch.zeros(2, 2, 4, 4))


def test_data_to_pixel_maps_corners_and_centre():
    bounds, box = (-5.0, 5.0, -5.0, 5.0), (100, 50, 500, 450)
    px = data_to_pixel([[0, 0], [-5, -5], [5, 5], [2.5, -1]], bounds, box)
    np.testing.assert_allclose(px, [[300, 250], [100, 450], [500, 50], [400, 290]])


def test_scatter_point_lands_at_its_pixel():
    bounds, size = (-5.0, 5.0, -5.0, 5.0), (400, 420)
    red = (220, 0, 0)
    img = np.asarray(scatter_plot([PointSet(torch.tensor([[1.0, 2.0], [9.0, 9.0]]), red, "", radius=0)],
                                  bounds=bounds, size=size))
    box = plot_box(size)
    assert box[2] - box[0] == box[3] - box[1]  # square plot area: circles stay round
    x, y = np.rint(data_to_pixel([[1.0, 2.0]], bounds, box)[0]).astype(int)
    assert tuple(img[y, x]) == red
    reds = np.argwhere((img == red).all(axis=2))
    assert reds.tolist() == [[y, x]]  # one marker pixel; the point at (9, 9) lies outside and is not drawn


def test_scatter_plot_draws_modes_and_title():
    modes = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    img = scatter_plot([PointSet(torch.zeros(0, 2), (0, 0, 255), "generated")], modes=modes, mode_radius=0.15,
                       title="kimg 1.0 | modes 0/2")
    assert img.size == (640, 650) and img.mode == "RGB"
    a = np.asarray(img).astype(int)
    assert (a.sum(axis=2) < 100).any()  # dark crosses and text exist


def test_nice_ticks_and_square_bounds():
    assert nice_ticks(-5.3, 5.3) == [-4, -2, 0, 2, 4]
    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert square_bounds([[0, 0], [2, 1]], margin=0.0) == (0.0, 2.0, -0.5, 1.5)
