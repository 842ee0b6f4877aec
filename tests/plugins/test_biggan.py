"""BigGAN plugin: conditional BN against its formula, class-grouped statistics, SN, self-attention, conformance."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from PIL import Image

from lightning_gan import registry
from lightning_gan.metrics.base import GeneratorMetric
from lightning_gan.testing import check_architecture
from lightning_gan.utils.standing_stats import standing_statistics
from lightning_gan_biggan.layers import ConditionalBatchNorm2d, DBlock, GBlock, SelfAttention2d, class_grouped_moments
from lightning_gan_biggan.networks import (
    BigGANArchitecture,
    BigGANDiscriminator,
    BigGANGenerator,
    default_d_widths,
    default_g_widths,
)

SMALL = dict(z_dim=12, shared_dim=6, channel_multiplier=2)


def one_hot(labels: list[int], k: int) -> torch.Tensor:
    return F.one_hot(torch.tensor(labels), k).float()


@pytest.mark.parametrize(("resolution", "c_dim", "bn_statistics"),
                         [(32, 0, "batch"), (32, 3, "batch"), (64, 0, "batch"), (64, 4, "batch"),
                          (32, 3, "class_grouped")])
def test_conformance(resolution: int, c_dim: int, bn_statistics: str) -> None:
    spec = BigGANArchitecture(resolution=resolution, c_dim=c_dim, bn_statistics=bn_statistics, **SMALL)
    g, d = check_architecture(spec)
    assert g.output_shape == (3, resolution, resolution) and d.c_dim == c_dim


def test_conformance_without_sn_and_other_inits() -> None:
    check_architecture(BigGANArchitecture(resolution=32, c_dim=2, g_spectral_norm=False, d_spectral_norm=False,
                                          init="normal", hierarchical_z=False, d_final_resolution=8,
                                          d_extra_blocks=2, **SMALL))


def test_registered_as_biggan_and_paper_sizes_at_128px() -> None:
    assert registry.load("architectures", "biggan") is BigGANArchitecture
    # BigGAN at 128 px, ch = 96, 1000 classes: 70.4M generator and 88.0M discriminator parameters (paper, Table 4)
    with torch.device("meta"):  # shapes only: no memory, no initialization
        g = BigGANGenerator(z_dim=120, c_dim=1000, resolution=128, widths=default_g_widths(128, 96), attention=64)
        d = BigGANDiscriminator(c_dim=1000, resolution=128, widths=default_d_widths(128, 96), attention=64)
    assert round(sum(p.numel() for p in g.parameters()) / 1e6, 1) == 70.4
    assert round(sum(p.numel() for p in d.parameters()) / 1e6, 1) == 88.0


def test_widths_and_hierarchical_chunks() -> None:
    g, d = BigGANArchitecture(resolution=64, c_dim=3, z_dim=10, shared_dim=4, g_widths=[8, 8, 6, 4, 2],
                              d_widths=[2, 4, 6, 8, 8]).build()
    assert [b.out_channels for b in g.blocks] == [8, 6, 4, 2]
    assert [b.out_channels for b in d.blocks] == [2, 4, 6, 8, 8]
    assert [b.downsample for b in d.blocks] == [True, True, True, True, False]
    # z = 10 in 5 chunks of 2: the input layer reads 2, every block's cBN reads shared (4) + 2
    assert g.linear.in_features == 2
    assert all(b.bn1.cond_dim == 6 and b.bn2.cond_dim == 6 for b in g.blocks)
    with pytest.raises(ValueError, match="needs 5 widths"):
        BigGANArchitecture(resolution=64, g_widths=[8, 8])
    with pytest.raises(ValueError, match="attention=5"):
        BigGANArchitecture(resolution=32, attention=5)
    with pytest.raises(ValueError, match="class_grouped.*c_dim > 0"):
        BigGANArchitecture(resolution=32, bn_statistics="class_grouped")


def test_conditional_bn_equals_formula_with_the_class_embedding() -> None:
    torch.manual_seed(0)
    g = BigGANGenerator(z_dim=12, c_dim=3, resolution=32, widths=[4, 4, 4, 4], shared_dim=5)
    block = g.blocks[1]
    x = torch.randn(6, 4, 8, 8)
    z = torch.randn(6, 12)
    c = one_hot([0, 1, 2, 2, 1, 0], 3)
    e = c @ g.shared.weight.t()  # the shared embedding: a lookup of the one-hot class [6, 5]
    chunk = torch.tensor_split(z, 4, dim=1)[2]  # block 1 reads chunk 2 (chunk 0 goes to the input layer)
    cond = torch.cat([e, chunk], 1)
    bn = block.bn1
    out = bn(x, cond)
    mu = x.mean((0, 2, 3), keepdim=True)
    var = x.var((0, 2, 3), unbiased=False, keepdim=True)
    gain = 1 + cond @ bn.gain_map.weight.t()  # [6, 4]
    bias = cond @ bn.bias_map.weight.t()
    expected = gain[:, :, None, None] * (x - mu) / torch.sqrt(var + bn.eps) + bias[:, :, None, None]
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    # running statistics: momentum 0.1 towards the batch mean and the unbiased variance
    torch.testing.assert_close(bn.running_mean, 0.1 * mu.flatten())
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * x.var((0, 2, 3), unbiased=True))
    # and the generator feeds exactly this vector to the block: hook its input
    seen = {}
    block.bn1.register_forward_hook(lambda m, args, o: seen.update(cond=args[1]))  # returns None: output kept
    g(z, c)
    torch.testing.assert_close(seen["cond"], cond)


def test_class_grouped_statistics_are_per_class_by_hand() -> None:
    torch.manual_seed(1)
    x = torch.randn(7, 3, 4, 4) + torch.arange(7.0)[:, None, None, None]
    labels = torch.tensor([0, 2, 0, 2, 2, 0, 0])
    mean, var, count = class_grouped_moments(x, labels, 3)
    for k in (0, 2):
        xs = x[labels == k]
        torch.testing.assert_close(mean[k], xs.mean((0, 2, 3)))
        torch.testing.assert_close(var[k], xs.var((0, 2, 3), unbiased=False))
    assert count.tolist() == [4, 0, 3] and mean[1].abs().max() == 0

    bn = ConditionalBatchNorm2d(3, statistics="class_grouped", num_classes=3)
    out = bn(x, None, labels)
    for k in (0, 2):
        xs = x[labels == k]
        ref = (xs - xs.mean((0, 2, 3), keepdim=True)) / torch.sqrt(xs.var((0, 2, 3), unbiased=False, keepdim=True) + bn.eps)
        torch.testing.assert_close(out[labels == k], ref, rtol=1e-5, atol=1e-5)
    # running statistics per class; class 1 (absent) untouched
    n = 4 * 16
    torch.testing.assert_close(bn.running_mean[0], 0.1 * x[labels == 0].mean((0, 2, 3)))
    torch.testing.assert_close(bn.running_var[0], 0.9 + 0.1 * var[0] * n / (n - 1))
    assert bn.running_mean[1].abs().max() == 0 and bn.running_var[1].eq(1).all()
    assert bn.num_batches_tracked.tolist() == [1, 0, 1]
    # eval: each sample normalized with its class's running statistics
    bn.eval()
    out = bn(x, None, labels)
    rm, rv = bn.running_mean[labels], bn.running_var[labels]
    torch.testing.assert_close(out, (x - rm[:, :, None, None]) / torch.sqrt(rv[:, :, None, None] + bn.eps))


def test_class_grouped_output_does_not_depend_on_other_classes() -> None:
    torch.manual_seed(2)
    spec = BigGANArchitecture(resolution=32, c_dim=3, bn_statistics="class_grouped", **SMALL)
    g, _ = spec.build()
    z = torch.randn(8, 12)
    labels = [0, 0, 0, 1, 1, 2, 2, 2]
    out = g(z, one_hot(labels, 3))
    z2 = z.clone()
    z2[3:] = torch.randn(5, 12)  # other classes' samples changed (and their count too: drop one)
    out2 = g(z2[:7], one_hot(labels[:7], 3))
    torch.testing.assert_close(out2[:3], out[:3], rtol=1e-4, atol=1e-5)
    # with shared batch statistics the same change moves class 0's samples (the leakage class_grouped removes)
    g_batch, _ = BigGANArchitecture(resolution=32, c_dim=3, **SMALL).build()
    a, b = g_batch(z, one_hot(labels, 3)), g_batch(z2[:7], one_hot(labels[:7], 3))
    assert (a[:3] - b[:3]).abs().max() > 1e-3


def test_every_sn_weight_has_unit_spectral_norm_after_power_iterations() -> None:
    torch.manual_seed(3)
    g, d = BigGANArchitecture(resolution=32, c_dim=3, attention=16, sn_power_iterations=10, **SMALL).build()
    c = one_hot([0, 1, 2, 0], 3)
    for _ in range(5):  # power iterations run on training forward passes
        d(g(torch.randn(4, 12), c), c)
    checked = 0
    for net in (g, d):
        for name, m in net.named_modules():
            if hasattr(m, "parametrizations") and "weight" in m.parametrizations:
                w = m.weight.detach()
                sigma = torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2)
                assert abs(float(sigma) - 1) < 1e-2, (name, float(sigma))
                checked += 1
    convs = sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for net in (g, d) for m in net.modules())
    assert checked == convs - 1  # everything but the generator's shared embedding
    assert not hasattr(g.shared, "parametrizations")


def test_self_attention_is_identity_at_init_and_attends_after() -> None:
    torch.manual_seed(4)
    attn = SelfAttention2d(16)
    x = torch.randn(2, 16, 8, 8)
    assert float(attn.gamma.detach()) == 0
    torch.testing.assert_close(attn(x), x, rtol=0, atol=0)
    with torch.no_grad():
        attn.gamma.fill_(1.0)
    # by hand: queries at every position, keys/values 2x2 max-pooled, softmax over the pooled positions
    q = attn.query(x).flatten(2)
    k = F.max_pool2d(attn.key(x), 2).flatten(2)
    v = F.max_pool2d(attn.value(x), 2).flatten(2)
    beta = torch.softmax(torch.einsum("nci,ncj->nij", q, k), dim=-1)
    o = torch.einsum("ncj,nij->nci", v, beta).reshape(2, -1, 8, 8)
    torch.testing.assert_close(attn(x), x + attn.out(o), rtol=1e-5, atol=1e-5)
    # in the networks: gamma = 0 everywhere at init, so a pair with attention equals the same pair without it
    g1, d1 = BigGANArchitecture(resolution=32, attention=16, g_spectral_norm=False, d_spectral_norm=False,
                                **SMALL).build()
    assert g1.attn is not None and d1.attn is not None
    z = torch.randn(4, 12)
    x1 = g1(z)
    d_out = d1(x1)
    g1.attention_after = d1.attention_after = None  # skip the attention layers
    torch.testing.assert_close(g1(z), x1)
    torch.testing.assert_close(d1(x1), d_out)


def test_blocks_shapes_and_skips() -> None:
    block = GBlock(in_channels=4, out_channels=2)
    assert block(torch.randn(3, 4, 4, 4)).shape == (3, 2, 8, 8)
    d = DBlock(in_channels=2, out_channels=2, downsample=False)
    assert d.skip is None  # identity skip: same channels, no pooling
    x = torch.randn(3, 2, 4, 4)
    torch.testing.assert_close(d(x), d.conv2(F.relu(d.conv1(F.relu(x)))) + x)
    opt = DBlock(in_channels=3, out_channels=4, optimized=True)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(opt(x), F.avg_pool2d(opt.conv2(F.relu(opt.conv1(x))), 2) + opt.skip(F.avg_pool2d(x, 2)))


def test_discriminator_projection_head() -> None:
    torch.manual_seed(5)
    d = BigGANDiscriminator(c_dim=3, resolution=32, widths=[4, 4, 4, 4])
    x, c = torch.randn(5, 3, 32, 32), one_hot([0, 1, 2, 1, 0], 3)
    h = d.features(x)
    torch.testing.assert_close(d(x, c), (h @ d.linear.weight.t()).squeeze(1) + d.linear.bias
                               + (h * (c @ d.embed.weight.t())).sum(1))


def test_standing_statistics_reach_the_conditional_bn() -> None:
    torch.manual_seed(6)
    g, _ = BigGANArchitecture(resolution=32, c_dim=3, bn_statistics="class_grouped", **SMALL).build()
    g.eval()
    before = g.blocks[0].bn1.running_mean.clone()
    assert standing_statistics(g, num_batches=3, batch_size=8) == 2 * 3 + 1
    assert not torch.equal(g.blocks[0].bn1.running_mean, before)
    assert g.blocks[0].bn1.momentum == 0.1 and not g.training  # restored
    assert int(g.blocks[0].bn1.num_batches_tracked.max()) <= 3


class _LatentRange(GeneratorMetric):
    """Records the largest latent component the generator draws (to see truncation reach the metrics)."""

    def compute(self, generator, datamodule, context=None) -> dict[str, float]:
        z = generator.sample_latents(2000, generator=torch.Generator().manual_seed(0))
        return {"latent/max_abs": float(z.abs().max())}


def test_a_tiny_run_samples_truncated_and_generate_uses_standing_stats(tmp_path) -> None:
    import json

    import lightning.pytorch as pl

    from lightning_gan.callbacks import MetricsCallback, SampleGrid, StandingStatistics
    from lightning_gan.cli import main
    from lightning_gan.data.shapes import ShapesDataModule
    from lightning_gan.module import GANModule

    spec = BigGANArchitecture(resolution=32, c_dim=6, z_dim=8, shared_dim=4, g_widths=[4, 4, 4, 4], d_widths=[4, 4, 4, 4])
    module = GANModule(architecture=spec, loss="hinge", d_steps=2, ema_kimg=0.01, metrics=[_LatentRange()])
    standing = StandingStatistics(num_batches=2, batch_size=12, every_n_kimg=None)
    metrics = MetricsCallback(metrics=[_LatentRange()], every_n_kimg=1e9, truncation=0.5, monitor=None)
    trainer = pl.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                         limit_val_batches=0, num_sanity_val_steps=0,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                         callbacks=[standing, SampleGrid(every_n_kimg=None, truncation=0.5, samples_per_class=2,
                                                         dirpath=tmp_path / "samples"), metrics])
    trainer.fit(module, ShapesDataModule(num_samples=32, batch_size=8))
    assert standing.updates == 1  # at the end of fit, before the grid and the metrics
    row = metrics.history[-1]
    assert row["truncation"] == 0.5 and 0.45 < row["latent/max_abs"] <= 0.5  # the record says so
    assert module.evaluate_metrics([_LatentRange()])["latent/max_abs"] > 2.5  # untruncated by default
    assert float(module.sample(64, truncation=0.3, seed=1).abs().max()) <= 1.0
    assert (tmp_path / "samples" / "final.png").exists()

    ckpt = tmp_path / "run.ckpt"
    trainer.save_checkpoint(ckpt)
    out = tmp_path / "gen"
    assert main(["generate", "--ckpt", str(ckpt), "--out", str(out), "--seeds", "0-5", "--truncation", "0.5",
                 "--standing-stats", "2", "--frames", "1", "--keyframes", "2", "--psi", "1,0.5"]) == 0
    manifest = json.loads((out / "generate.json").read_text())
    assert manifest["truncation"] == 0.5 and manifest["standing_stats"] == 2
    assert 6 * 64 < Image.open(out / "classes.png").size[1] < 7 * 64  # one row per class (64 px each, padded)
    with pytest.raises(SystemExit):
        main(["generate", "--ckpt", str(ckpt), "--out", str(out), "--truncation", "0"])
