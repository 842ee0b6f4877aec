"""Closed-form directions (SeFa): the eigenvectors of A^T A by hand, edits along them and along null directions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_gan import registry
from lightning_gan.directions import (direction_sweep, edit_space, factorizable_weights, parse_strengths,
                                      sefa_directions)
from lightning_gan.errors import ConfigError
from lightning_gan.testing import TinyArchitecture


def tiny(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    init = {
        "stylegan2": dict(resolution=16, z_dim=8, w_dim=64, mapping_layers=2, channel_base=64, channel_max=4),
        "dcgan": dict(resolution=8, z_dim=8, c_dim=2, base_channels=4, max_channels=4),
        "biggan": dict(resolution=32, z_dim=40, c_dim=3, shared_dim=4, g_widths=[4, 4, 4, 4], d_widths=[4, 4, 4, 4]),
    }[name] | kwargs
    g = registry.resolve("architectures", {"class_path": name, "init_args": init}).build().generator.eval()
    for p in g.parameters():
        if p.dim() <= 1:  # noise strengths and biases start at 0: make every path matter
            p.data.normal_(0, 0.3)
    return g


def _by_hand(a: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    values, vectors = np.linalg.eigh(a.T @ a)
    order = np.argsort(values)[::-1][:k]
    return vectors[:, order].T, values[order]


@pytest.mark.parametrize("name", ["stylegan2", "dcgan", "biggan"])
def test_directions_are_the_top_eigenvectors_of_a_transpose_a(name: str) -> None:
    g = tiny(name)
    a = factorizable_weights(g).double().numpy()
    directions, eigenvalues = sefa_directions(g, 5)
    want, want_values = _by_hand(a, 5)
    assert directions.shape == (5, a.shape[1]) and eigenvalues.shape == (5,)
    np.testing.assert_allclose(eigenvalues.numpy(), want_values, rtol=1e-5)
    assert (np.diff(eigenvalues.numpy()) <= 0).all()  # largest first
    overlap = np.abs((directions.double().numpy() * want).sum(1))  # |<n_i, v_i>| = 1: equal up to sign
    np.testing.assert_allclose(overlap, 1.0, atol=1e-5)
    # the eigenvalue is the squared gain of A along the direction
    np.testing.assert_allclose(np.linalg.norm(a @ directions.double().numpy().T, axis=0) ** 2, want_values, rtol=1e-5)


def test_stylegan2_a_stacks_every_style_affine_of_the_synthesis_network() -> None:
    from lightning_gan_stylegan2.layers import ModulatedConv2d

    g = tiny("stylegan2")
    layers = [m for m in g.synthesis_network.modules() if isinstance(m, ModulatedConv2d)]
    blocks = g.synthesis_network.blocks
    assert len(layers) == sum(b.num_conv for b in blocks) + len(blocks)  # the convs, plus a ToRGB per block (skip)
    w = torch.randn(3, g.w_dim)
    styles = torch.cat([m.affine(w) for m in layers], dim=1)  # every layer's styles for w
    bias = torch.cat([m.affine(torch.zeros(1, g.w_dim)) for m in layers], dim=1)
    torch.testing.assert_close(styles, w @ factorizable_weights(g).T + bias, atol=1e-5, rtol=1e-5)


def test_biggan_a_is_the_first_linear_layer_on_the_first_z_chunk() -> None:
    g = tiny("biggan")
    a = factorizable_weights(g)
    chunk = g.linear.in_features
    assert chunk < g.z_dim and torch.all(a[:, chunk:] == 0)
    z = torch.randn(2, chunk)
    torch.testing.assert_close(z @ a[:, :chunk].T + g.linear.bias, g.linear(z), atol=1e-5, rtol=1e-5)


def test_moving_along_a_direction_changes_the_output_and_along_a_null_direction_does_not() -> None:
    g = tiny("stylegan2")
    assert edit_space(g) == "w"
    a = factorizable_weights(g).double().numpy()
    assert a.shape[0] < a.shape[1]  # 8 affines x 4 channels = 32 rows < w_dim = 64: A has a null space
    null = torch.from_numpy(np.linalg.svd(a)[2][-1]).float()  # a right singular vector of singular value 0
    assert np.abs(a @ null.double().numpy()).max() < 1e-8
    top = sefa_directions(g, 1)[0][0]
    ws = g.mapping(torch.randn(2, g.z_dim))
    images = direction_sweep(g, ws, top, [0.0, 3.0])
    still = direction_sweep(g, ws, null, [0.0, 3.0])
    assert images.shape == (2, 2, 3, 16, 16)
    assert (images[:, 1] - images[:, 0]).abs().max() > 1e-2
    torch.testing.assert_close(still[:, 1], still[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(images[:, 0], g.synthesis(ws, noise_mode="const"))


def test_z_space_sweep_is_the_generator_at_the_moved_latent() -> None:
    g = tiny("dcgan")
    assert edit_space(g) == "z"
    z, c = torch.randn(2, 8), torch.eye(2)
    n = sefa_directions(g, 2)[0][1]
    images = direction_sweep(g, z, n, [-2.0, 1.5], c)
    torch.testing.assert_close(images[:, 0], g(z - 2.0 * n, c))
    torch.testing.assert_close(images[:, 1], g(z + 1.5 * n, c))


def test_an_architecture_without_the_hook_is_refused_in_one_line() -> None:
    g = TinyArchitecture(hidden=8).build().generator
    with pytest.raises(ConfigError) as info:
        sefa_directions(g, 1)
    assert len(str(info.value).splitlines()) == 1 and "factorizable_weights" in str(info.value)


def test_parse_strengths() -> None:
    assert parse_strengths("-3:3") == [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    assert parse_strengths("-1:1:3") == [-1.0, 0.0, 1.0]
    assert parse_strengths("-2,0,2.5") == [-2.0, 0.0, 2.5]
    with pytest.raises(ValueError, match="--strength"):
        parse_strengths("a:b")
