"""Style mixing: the grid's cells equal the synthesis network on the mixed ws built by hand; layer groups."""

from __future__ import annotations

import pytest
import torch

from lightning_gan import registry
from lightning_gan.errors import ConfigError
from lightning_gan.style_mixing import group_resolutions, mix_layers, style_mixing_grid, ws_resolution


def tiny_stylegan2(resolution: int = 16) -> torch.nn.Module:
    torch.manual_seed(0)
    init = dict(resolution=resolution, z_dim=8, w_dim=8, mapping_layers=2, channel_base=64, channel_max=4)
    g = registry.resolve("architectures", {"class_path": "stylegan2", "init_args": init}).build().generator.eval()
    for p in g.parameters():
        if p.dim() <= 1:
            p.data.normal_(0, 0.3)
    return g


def test_grid_cells_equal_synthesis_of_the_mixed_ws_by_hand() -> None:
    g = tiny_stylegan2()
    rows, cols = g.mapping(torch.randn(2, 8)), g.mapping(torch.randn(3, 8))  # [N, num_ws = 6, 8]
    layers = mix_layers("coarse", num_ws=g.num_ws, resolution=16)
    assert layers == [0, 1]  # 16 px: coarse is the 4x4 layers
    grid = style_mixing_grid(g, rows, cols, layers)
    assert grid.shape == (3, 4, 3, 16, 16)
    assert torch.all(grid[0, 0] == -1)
    for j in range(3):
        torch.testing.assert_close(grid[0, j + 1], g.synthesis(cols[j:j + 1], noise_mode="const")[0])
    for i in range(2):
        torch.testing.assert_close(grid[i + 1, 0], g.synthesis(rows[i:i + 1], noise_mode="const")[0])
        for j in range(3):
            per_layer = [cols[j, k] if k in (0, 1) else rows[i, k] for k in range(g.num_ws)]
            by_hand = g.synthesis(torch.stack(per_layer)[None], noise_mode="const")[0]
            torch.testing.assert_close(grid[i + 1, j + 1], by_hand, atol=1e-5, rtol=1e-5)
    # the mixed cells differ from both parents
    assert (grid[1, 1] - grid[1, 0]).abs().max() > 1e-3 and (grid[1, 1] - grid[0, 1]).abs().max() > 1e-3


def test_all_layers_from_the_column_give_the_column_image() -> None:
    g = tiny_stylegan2()
    rows, cols = g.mapping(torch.randn(1, 8)), g.mapping(torch.randn(2, 8))
    grid = style_mixing_grid(g, rows, cols, mix_layers(f"0-{g.num_ws - 1}", num_ws=g.num_ws, resolution=16))
    torch.testing.assert_close(grid[1, 1:], grid[0, 1:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("resolution,coarse,middle,fine", [
    (1024, [0, 1, 2, 3], [4, 5, 6, 7], list(range(8, 18))),  # the paper's 4-8, 16-32, 64-1024
    (32, [0, 1, 2, 3], [4, 5], [6, 7]),
    (16, [0, 1], [2, 3], [4, 5]),
])
def test_layer_groups_at_each_resolution(resolution, coarse, middle, fine) -> None:
    num_ws = 2 * (resolution.bit_length() - 1) - 2
    got = [mix_layers(g, num_ws=num_ws, resolution=resolution) for g in ("coarse", "middle", "fine")]
    assert got == [coarse, middle, fine]
    assert sorted(sum(got, [])) == list(range(num_ws))  # the groups cover every layer once
    assert ws_resolution(num_ws - 1) == resolution


def test_bad_layers_are_refused_in_one_line() -> None:
    assert "middle" not in group_resolutions(8)
    with pytest.raises(ValueError, match="no middle layers"):
        mix_layers("middle", num_ws=4, resolution=8)
    with pytest.raises(ValueError, match="0 <= A <= B <= 5"):
        mix_layers("2-9", num_ws=6, resolution=16)
    with pytest.raises(ValueError, match="coarse, middle, fine or A-B"):
        mix_layers("fin", num_ws=6, resolution=16)


def test_a_generator_without_mapping_and_synthesis_is_refused() -> None:
    g = registry.resolve("architectures", {"class_path": "dcgan", "init_args": dict(resolution=8, z_dim=4,
                                                                                   base_channels=2)}).build().generator
    with pytest.raises(ConfigError, match="style-based generator"):
        style_mixing_grid(g, torch.zeros(1, 1, 4), torch.zeros(1, 1, 4), [0])
