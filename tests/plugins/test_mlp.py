"""MLP plugin (toy 2-D data): the conformance kit, parameter counts and PacGAN packing."""

from __future__ import annotations

import pytest
import torch

from lightning_gan import registry
from lightning_gan.testing import check_architecture
from lightning_gan_dcgan.mlp import MLPArchitecture

SMALL = dict(g_hidden=8, g_depth=2, d_hidden=8, d_depth=2)


@pytest.mark.parametrize(("pack", "c_dim", "g_batch_norm", "batch_size"), [
    (1, 0, False, 4), (4, 0, False, 8), (1, 3, False, 4), (4, 2, False, 8),
    (1, 3, True, 4),  # batch norm: hidden Linear layers carry no bias (BatchNorm would cancel it)
])
def test_conformance(pack: int, c_dim: int, g_batch_norm: bool, batch_size: int) -> None:
    spec = MLPArchitecture(pack=pack, c_dim=c_dim, g_batch_norm=g_batch_norm, **SMALL)
    check_architecture(spec, batch_size=batch_size)


def test_conformance_from_the_registered_name_with_defaults() -> None:
    assert registry.load("architectures", "mlp") is MLPArchitecture
    check_architecture("mlp")


def test_parameter_count_matches_a_hand_computation() -> None:
    spec = MLPArchitecture(data_dim=2, z_dim=2, g_hidden=4, g_depth=2, d_hidden=3, d_depth=1)
    g, d = spec.build()
    g_expected = (2 * 4 + 4) + (4 * 4 + 4) + (4 * 2 + 2)  # z -> 4 -> 4 -> 2
    d_expected = (2 * 3 + 3) + (3 * 1 + 1)  # x -> 3 -> logit
    assert sum(p.numel() for p in g.parameters()) == g_expected == 42
    assert sum(p.numel() for p in d.parameters()) == d_expected == 13
    _, d4 = MLPArchitecture(data_dim=2, z_dim=2, d_hidden=3, d_depth=1, pack=4, c_dim=1).build()
    assert sum(p.numel() for p in d4.parameters()) == ((2 + 1) * 4 * 3 + 3) + (3 + 1)  # 4 packed (x, c) pairs


def test_packing_gives_each_group_of_m_samples_one_shared_logit() -> None:
    torch.manual_seed(0)
    _, d = MLPArchitecture(pack=2, **SMALL).build()
    x = torch.randn(6, 2)
    logits = d(x)
    assert logits.shape == (6,)
    assert torch.equal(logits[0::2], logits[1::2])
    assert torch.allclose(logits[2:4], d(x[2:4]))  # a group is judged on its own samples only
    with pytest.raises(ValueError, match="multiple of pack=2"):
        d(torch.randn(3, 2))


def test_invalid_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="activation must be one of"):
        MLPArchitecture(activation="tanh")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pack must be >= 1"):
        MLPArchitecture(pack=0)
