"""BigGAN's orthogonal initialization: ``W W^T = I`` on the smaller side of every [out, in * k * k] weight."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from lightning_gan_biggan.layers import init_weights_, orthogonal_
from lightning_gan_biggan.networks import BigGANArchitecture


def assert_orthonormal_on_the_smaller_side(weight: Tensor, *, atol: float = 1e-5) -> None:
    """Rows orthonormal (``W W^T = I``) when out <= in * k * k, columns (``W^T W = I``) otherwise."""
    w = weight.detach().double().reshape(weight.shape[0], -1)  # [out, in * k * k]
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    torch.testing.assert_close(gram, torch.eye(gram.shape[0], dtype=gram.dtype), rtol=0.0, atol=atol)


# (shape, which side): wide and tall convs, square / wide / tall linears; the float32 branch (tall >= 4 short)
# and the float64 one (squarer matrices) of orthogonal_.
SHAPES = [
    ((8, 3, 3, 3), "rows"),      # 8 x 27, float32
    ((40, 2, 2, 2), "columns"),  # 40 x 8, float32
    ((16, 16), "rows"),          # square, float64
    ((10, 30), "rows"),          # wide, float64
    ((100, 10), "columns"),      # tall linear, float32
    ((12, 7, 1, 1), "columns"),  # tall 1x1 conv, float64
]


@pytest.mark.parametrize("shape, side", SHAPES)
def test_orthogonal_gives_orthonormal_rows_or_columns_whichever_are_fewer(shape, side) -> None:
    torch.manual_seed(0)
    weight = orthogonal_(torch.empty(shape))
    assert_orthonormal_on_the_smaller_side(weight)
    w = weight.double().reshape(shape[0], -1)
    assert (side == "rows") == (w.shape[0] <= w.shape[1])
    # the larger side is not the identity (rank min(m, n) < max(m, n)), so the check above picked the right one
    if w.shape[0] != w.shape[1]:
        larger = w.T @ w if side == "rows" else w @ w.T
        assert torch.linalg.matrix_rank(larger).item() == min(w.shape)
    # random: another draw is another matrix
    assert not torch.allclose(orthogonal_(torch.empty(shape)), weight)


@pytest.mark.parametrize("init", ["orthogonal", "normal"])
def test_init_weights_orthogonalizes_every_conv_and_linear_and_zeroes_biases(init) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(2, 40, 2), nn.Linear(10, 100), nn.Linear(30, 10))
    kept = nn.Linear(4, 4)
    before = kept.weight.detach().clone()
    init_weights_(nn.Sequential(net, kept), init, skip=(kept,))
    torch.testing.assert_close(kept.weight.detach(), before, rtol=0.0, atol=0.0)
    for layer in net:
        assert torch.count_nonzero(layer.bias) == 0
        if init == "orthogonal":
            assert_orthonormal_on_the_smaller_side(layer.weight)
        else:  # N(0, 0.02): far from orthonormal (a row of n entries has squared norm ~ 4e-4 n)
            with pytest.raises(AssertionError):
                assert_orthonormal_on_the_smaller_side(layer.weight)


def test_a_built_biggan_starts_orthogonal() -> None:
    """Every conv and linear weight of G and D (the raw weight under spectral norm), except G's shared embedding."""
    torch.manual_seed(0)
    pair = BigGANArchitecture(resolution=32, c_dim=4, z_dim=12, shared_dim=6, channel_multiplier=2).build()
    checked = 0
    for net in (pair.generator, pair.discriminator):
        for name, module in net.named_modules():
            if not isinstance(module, (nn.Conv2d, nn.Linear)) or name == "shared":
                continue
            parametrizations = getattr(module, "parametrizations", None)
            weight = parametrizations.weight.original if parametrizations is not None else module.weight
            assert_orthonormal_on_the_smaller_side(weight)
            checked += 1
    assert checked > 10
    shared = pair.generator.shared.weight.detach()  # an embedding table: N(0, 1) entries, not orthonormal
    assert shared.square().mean().item() == pytest.approx(1.0, abs=0.5)
