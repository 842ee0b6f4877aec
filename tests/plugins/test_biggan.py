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


def _record_passes(g: BigGANGenerator) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[torch.Tensor]]:
    """Hooks that record (z, c) of every forward pass of ``g`` and the input of ``g.blocks[1].bn2``."""
    passes: list[tuple[torch.Tensor, torch.Tensor]] = []
    deep: list[torch.Tensor] = []
    g.register_forward_pre_hook(lambda m, args: passes.append((args[0].clone(), args[1].clone())))
    g.blocks[1].bn2.register_forward_pre_hook(lambda m, args: deep.append(args[0].clone()))
    return passes, deep


def _expected_running(xs: list[torch.Tensor], labels: list[torch.Tensor], statistics: str,
                      k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Standing statistics by hand: the mean over the passes of each pass's mean and unbiased variance per channel
    (``batch``), or per class over the passes that held the class (``class_grouped``)."""
    if statistics == "batch":
        means = torch.stack([x.mean((0, 2, 3)) for x in xs])
        variances = torch.stack([x.transpose(0, 1).flatten(1).var(1, unbiased=True) for x in xs])
        return means.mean(0), variances.mean(0), torch.tensor(len(xs))
    c = xs[0].shape[1]
    mean, var, tracked = torch.zeros(k, c), torch.ones(k, c), torch.zeros(k, dtype=torch.long)
    for j in range(k):
        held = [x[y == j] for x, y in zip(xs, labels) if (y == j).any()]
        if held:
            mean[j] = torch.stack([h.mean((0, 2, 3)) for h in held]).mean(0)
            var[j] = torch.stack([h.transpose(0, 1).flatten(1).var(1, unbiased=True) for h in held]).mean(0)
            tracked[j] = len(held)
    return mean, var, tracked


@pytest.mark.parametrize("statistics", ["batch", "class_grouped"])
def test_standing_statistics_of_the_conditional_bn_equal_a_hand_computation(statistics: str) -> None:
    torch.manual_seed(6)
    g, _ = BigGANArchitecture(resolution=32, c_dim=3, bn_statistics=statistics, **SMALL).build()
    g.eval()
    passes, deep = _record_passes(g)
    shares = [0.1, 0.3, 0.6]
    assert standing_statistics(g, num_batches=3, batch_size=8, class_shares=shares) == 2 * 3 + 1
    assert g.blocks[0].bn1.momentum == 0.1 and not g.training and not g.blocks[0].bn1.training  # restored
    labels = [c.argmax(1) for _, c in passes]
    # the passes' classes in the given shares: n_k = 1 + floor(p_k (24 - 3)) + largest remainders = [3, 7, 14]
    assert torch.bincount(torch.cat(labels), minlength=3).tolist() == [3, 7, 14]
    # the first BN's input by hand: the input layer on z's first chunk, [N, C_4, 4, 4]
    with torch.no_grad():
        first = [g.linear(torch.tensor_split(z, 4, dim=1)[0]).view(len(z), g.widths[0], 4, 4) for z, _ in passes]
    for bn, xs in ((g.blocks[0].bn1, first), (g.blocks[1].bn2, deep)):
        mean, var, tracked = _expected_running(xs, labels, statistics, 3)
        torch.testing.assert_close(bn.running_mean, mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bn.running_var, var, rtol=1e-4, atol=1e-5)
        assert torch.equal(bn.num_batches_tracked, tracked)


def test_class_grouped_standing_statistics_reach_every_class() -> None:
    torch.manual_seed(7)
    g, _ = BigGANArchitecture(resolution=32, c_dim=20, bn_statistics="class_grouped", **SMALL).build()
    shares = [0.002] + [0.998 / 19] * 19  # a class at 0.2% still gets a sample of its own
    standing_statistics(g.eval(), num_batches=2, batch_size=16, class_shares=shares)  # 32 labels, 20 classes
    for m in g.modules():
        if isinstance(m, ConditionalBatchNorm2d):
            assert (m.num_batches_tracked >= 1).all()
            assert (m.running_var != 1).all(dim=1).all()  # an estimate for every class, none left at (0, 1)


def test_class_grouped_classes_without_samples_keep_their_estimate_and_warn() -> None:
    torch.manual_seed(8)
    g, _ = BigGANArchitecture(resolution=32, c_dim=10, bn_statistics="class_grouped", **SMALL).build()
    bn = g.blocks[0].bn1
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn_like(bn.running_mean))
        bn.running_var.copy_(torch.rand_like(bn.running_var) + 0.5)
        bn.num_batches_tracked.fill_(40)
    before = bn.running_mean.clone(), bn.running_var.clone()
    shares = [0.0] + [1 / 9] * 9  # class 0 has no share; 4 labels cannot reach the other 9 either
    with pytest.warns(UserWarning, match=r"standing statistics: class\(es\) 0, .* drew no sample .* keep the previous"):
        standing_statistics(g.eval(), num_batches=1, batch_size=4, class_shares=shares)
    seen = bn.num_batches_tracked == 1
    assert int(seen.sum()) == 4 and not bool(seen[0])
    torch.testing.assert_close(bn.running_mean[~seen], before[0][~seen], rtol=0, atol=0)
    torch.testing.assert_close(bn.running_var[~seen], before[1][~seen], rtol=0, atol=0)
    assert bn.num_batches_tracked[~seen].eq(40).all()
    assert not torch.equal(bn.running_mean[seen], before[0][seen])  # the classes drawn: re-estimated


def test_without_hierarchical_z_the_blocks_read_the_class_embedding_alone() -> None:
    torch.manual_seed(9)
    g, _ = BigGANArchitecture(resolution=32, c_dim=3, hierarchical_z=False, **SMALL).build()
    assert g.linear.in_features == 12  # the whole z into the input layer
    assert all(b.bn1.cond_dim == b.bn2.cond_dim == 6 for b in g.blocks)  # shared_dim, no z
    seen: list[torch.Tensor] = []
    for block in g.blocks:
        block.bn1.register_forward_hook(lambda m, args, o: seen.append(args[1]))
    c = one_hot([0, 1, 2, 1], 3)
    g(torch.randn(4, 12), c)
    g(torch.randn(4, 12), c)  # other z, same classes: the same conditioning in every block
    for a, b in zip(seen[:3], seen[3:]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(a, c @ g.shared.weight.t())


class _LatentRange(GeneratorMetric):
    """Records the largest latent component the generator draws (to see truncation reach the metrics)."""

    def compute(self, generator, datamodule, context=None) -> dict[str, float]:
        z = generator.sample_latents(2000, generator=torch.Generator().manual_seed(0))
        return {"latent/max_abs": float(z.abs().max())}


def test_a_tiny_run_samples_truncated_and_generate_uses_standing_stats(tmp_path, monkeypatch, capsys) -> None:
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
    dm = ShapesDataModule(num_samples=32, batch_size=8, class_proportions=[0.5, 0.1, 0.1, 0.1, 0.1, 0.1])
    trainer.fit(module, dm)
    assert standing.updates == 1  # at the end of fit, before the grid and the metrics
    shares = dm.class_shares()
    assert float(shares[0]) > 0.3  # the data's mix, far from equal shares
    torch.testing.assert_close(standing.class_shares, shares)  # the callback draws the data's class mix
    row = metrics.history[-1]
    assert row["truncation"] == 0.5 and 0.45 < row["latent/max_abs"] <= 0.5  # the record says so
    assert module.evaluate_metrics([_LatentRange()])["latent/max_abs"] > 2.5  # untruncated by default
    assert float(module.sample(64, truncation=0.3, seed=1).abs().max()) <= 1.0
    assert (tmp_path / "samples" / "final.png").exists()

    import lightning_gan.utils.standing_stats as standing_module

    drawn: list[object] = []  # the class shares every standing-statistics call gets
    original = standing_module.standing_statistics
    monkeypatch.setattr(standing_module, "standing_statistics",
                        lambda g, **kw: drawn.append(kw.get("class_shares")) or original(g, **kw))
    ckpt = tmp_path / "run.ckpt"
    trainer.save_checkpoint(ckpt)
    out = tmp_path / "gen"
    assert main(["generate", "--ckpt", str(ckpt), "--out", str(out), "--seeds", "0-5", "--truncation", "0.5",
                 "--standing-stats", "2", "--frames", "1", "--keyframes", "2", "--psi", "1,0.5"]) == 0
    manifest = json.loads((out / "generate.json").read_text())
    assert manifest["truncation"] == 0.5 and manifest["standing_stats"] == 2
    assert manifest["standing_stats_classes"] == "the data's shares"
    torch.testing.assert_close(drawn[-1], shares)  # rebuilt from the checkpoint's data config
    assert main(["generate", "--ckpt", str(ckpt), "--out", str(out), "--seeds", "0-1", "--standing-stats", "2",
                 "--standing-stats-classes", "uniform", "--frames", "1", "--keyframes", "2", "--psi", "1"]) == 0
    assert drawn[-1] is None
    assert main(["evaluate", "--ckpt", str(ckpt), "--metrics", "shapes", "--num-samples", "60", "--standing-stats", "2",
                 "--out", str(tmp_path / "eval.json")]) == 0
    torch.testing.assert_close(drawn[-1], shares)
    assert "the data's shares" in json.loads((tmp_path / "eval.json").read_text())["notes"]["standing_stats"]
    from lightning_gan.checkpoint import export_generator

    exported = tmp_path / "G.safetensors"  # a generator exported without its data: equal shares, one line says so
    export_generator(module.sampling_generator, exported, architecture=spec.config())
    capsys.readouterr()
    assert main(["generate", "--ckpt", str(exported), "--out", str(out), "--seeds", "0-1", "--standing-stats", "2",
                 "--frames", "1", "--keyframes", "2", "--psi", "1"]) == 0
    assert drawn[-1] is None
    err = capsys.readouterr().err
    assert "standing statistics: classes in equal shares (the run's data could not be rebuilt" in err
    assert len(err.strip().splitlines()) == 1
    assert 6 * 64 < Image.open(out / "classes.png").size[1] < 7 * 64  # one row per class (64 px each, padded)
    with pytest.raises(SystemExit):
        main(["generate", "--ckpt", str(ckpt), "--out", str(out), "--truncation", "0"])
