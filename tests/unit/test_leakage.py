"""Class leakage of conditional BN: closed form vs Monte Carlo, the trained-model measurement on toys whose
answer is known, class proportions of the shapes data and class-balanced batches."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from lightning_gan.analysis.leakage import (
    batch_statistics,
    confusion,
    has_batch_norm,
    measure_leakage,
    mixed_counts,
    monte_carlo,
    normalized_shift,
    pure_mixed_difference,
)
from lightning_gan.data.base import ClassBalancedSampler
from lightning_gan.data.shapes import ShapesDataModule, ShapesDataset, shape_factors
from lightning_gan.errors import ConfigError
from lightning_gan.interfaces import Generator
from lightning_gan.testing.tiny import TinyGenerator

GRID = (0.05, 0.1, 0.2, 0.3, 0.5)


# -- closed form ----------------------------------------------------------------------------------
@pytest.mark.parametrize("mu_a, mu_b, sigma", [(-1.0, 1.0, 1.0), (0.5, -1.0, 0.7)])
def test_closed_form_matches_monte_carlo_within_one_percent(mu_a, mu_b, sigma) -> None:
    for p in GRID:
        d_a, d_b, scale = normalized_shift(p, mu_a, mu_b, sigma)
        mc = monte_carlo(p, mu_a, mu_b, sigma, batch_size=1024, num_batches=1000, seed=1)
        assert mc["shift_majority"] == pytest.approx(d_a, abs=0.01), p
        assert mc["shift_minority"] == pytest.approx(d_b, abs=0.01), p
        assert mc["scale"] == pytest.approx(scale, abs=0.01), p
        assert mc["confusion_minority"] == pytest.approx(confusion(p, mu_a, mu_b, sigma), abs=0.01), p
        assert mc["confusion_majority"] == pytest.approx(confusion(p, mu_a, mu_b, sigma, which="majority"), abs=0.01), p


@pytest.mark.parametrize("q", [0.05, 1 / 6, 0.5])
def test_running_statistics_of_another_mix_monte_carlo(q: float) -> None:
    """Eval mode after standing statistics over batches of minority share q (the running statistics are the mean
    of the batch means and of the unbiased batch variances), with the layers after the BN fitted to training
    batches of share p = 0.05: the minority's confusion is the closed form at ``sampled_share = q``; 0.159 at
    q = p (the mix training saw), 0.566 at q = 1/2 (two classes in equal shares)."""
    p, n, batches = 0.05, 1024, 400
    g = torch.Generator().manual_seed(5)

    def mixed(share: float) -> Tensor:  # [batches, n], classes A (-1) then B (+1), sigma 1
        x = torch.randn(batches, n, generator=g, dtype=torch.float64)
        x[:, : n - round(share * n)] -= 1.0
        x[:, n - round(share * n):] += 1.0
        return x

    train = mixed(p)
    gain, bias = float(train.var(1, unbiased=False).sqrt().mean()), float(train.mean(1).mean())  # the fitted affine
    standing = mixed(q)
    mean, var = float(standing.mean(1).mean()), float(standing.var(1, unbiased=True).mean())
    minority = torch.randn(200_000, generator=g, dtype=torch.float64) + 1.0
    y = gain * (minority - mean) / math.sqrt(var) + bias
    assert float((y < 0).double().mean()) == pytest.approx(confusion(p, -1.0, 1.0, 1.0, sampled_share=q), abs=0.01)
    assert confusion(p, -1.0, 1.0, 1.0, sampled_share=0.5) == pytest.approx(0.566, abs=5e-4)


def test_closed_form_known_values() -> None:
    # mu_A = -1, mu_B = 1, sigma = 1, p = 0.2: m = -0.6, s^2 = 1 + 0.16 * 4 = 1.64.
    m, s = batch_statistics(0.2, -1.0, 1.0, 1.0)
    assert m == pytest.approx(-0.6) and s == pytest.approx(math.sqrt(1.64))
    d_a, d_b, scale = normalized_shift(0.2, -1.0, 1.0, 1.0)
    assert (d_a, d_b, scale) == pytest.approx((-0.4 / math.sqrt(1.64), 1.6 / math.sqrt(1.64), 1 / math.sqrt(1.64)))
    assert d_b / -d_a == pytest.approx(4.0)  # the minority moves (1 - p) / p times as far
    # Sampled in the mix it was trained on: the classes' own overlap Phi(-|Delta| / (2 sigma)) = Phi(-1).
    overlap = 0.5 * math.erfc(1 / math.sqrt(2))
    assert confusion(0.2, -1.0, 1.0, 1.0, sampled_share=0.2) == pytest.approx(overlap)
    # In a pure minority batch: Phi((1/2 - p) |Delta| / s_p) = Phi(0.6 / sqrt(1.64)).
    assert confusion(0.2, -1.0, 1.0, 1.0) == pytest.approx(0.5 * math.erfc(-0.6 / math.sqrt(1.64) / math.sqrt(2)))
    # Rarer minority, more confusion; at p = 1/2 a pure batch lands on the batch mean, the boundary.
    values = [confusion(p, -1.0, 1.0, 1.0) for p in (0.02, 0.05, 0.1, 0.3, 0.5)]
    assert values == sorted(values, reverse=True) and values[-1] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="share"):
        normalized_shift(1.5, 0.0, 1.0, 1.0)


# -- trained-model measurement ----------------------------------------------------------------------
class LinearBN(Generator):
    """G(z, c) = BN(W [z; c] + b), BN without affine: a linear layer whose class signal passes a BN."""

    def __init__(self, z_dim: int = 3, c_dim: int = 3, out: int = 4, eps: float = 1e-5) -> None:
        super().__init__(z_dim=z_dim, c_dim=c_dim, output_shape=(out,))
        self.fc = nn.Linear(z_dim + c_dim, out)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(out, z_dim + c_dim, generator=torch.Generator().manual_seed(0)) * 2)
        self.bn = nn.BatchNorm1d(out, affine=False, eps=eps)

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        return self.bn(self.fc(torch.cat([z, c], 1)))


class ClassGroupedBN(LinearBN):
    """The same, normalized with each class's own batch statistics (the class-grouped remedy)."""

    bn_statistics = "class_grouped"

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        h = self.fc(torch.cat([z, c], 1))
        out = torch.empty_like(h)
        labels = c.argmax(1)
        for k in labels.unique():
            rows = labels == k
            out[rows] = torch.nn.functional.batch_norm(h[rows], None, None, training=True, eps=self.bn.eps)
        return out


def _normalize(h: Tensor, eps: float) -> Tensor:
    return (h - h.mean(0)) / (h.var(0, unbiased=False) + eps).sqrt()


def test_linear_bn_matches_the_hand_computation() -> None:
    g = LinearBN()
    rows = measure_leakage(g, batch_size=30, proportions=[0.2, 0.3, 0.5], seed=3)
    assert [r.count for r in rows] == mixed_counts([0.2, 0.3, 0.5], 30) == [6, 9, 15]
    # by hand: the same latents and labels as measure_leakage draws them
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(30, 3, generator=gen)
    labels = torch.tensor([0] * 6 + [1] * 9 + [2] * 15)[torch.randperm(30, generator=gen)]
    with torch.no_grad():
        h = g.fc(torch.cat([z, torch.nn.functional.one_hot(labels, 3).float()], 1))
    mixed = _normalize(h, 1e-5)
    for k, row in enumerate(rows):
        pure = _normalize(h[labels == k], 1e-5)
        diff = (pure - mixed[labels == k]).square().mean().sqrt().item()
        assert row.rms_difference == pytest.approx(diff, rel=1e-4)
        assert row.rms_difference > 0.1
        assert row.relative == pytest.approx(diff / mixed[labels == k].square().mean().sqrt().item(), rel=1e-4)


def test_zero_in_eval_mode_and_with_class_grouped_statistics_and_state_untouched() -> None:
    g = LinearBN()
    g.bn.running_mean.fill_(0.3)
    before = {k: v.clone() for k, v in g.state_dict().items()}
    g.eval()
    assert all(r.rms_difference < 1e-6 for r in measure_leakage(g, batch_size=24, train_mode=False))
    assert all(r.rms_difference > 0.1 for r in measure_leakage(g, batch_size=24))
    assert not g.training and all(torch.equal(before[k], v) for k, v in g.state_dict().items())
    grouped = ClassGroupedBN()
    assert has_batch_norm(grouped) and has_batch_norm(g) and not has_batch_norm(TinyGenerator(z_dim=2, c_dim=2, data_dim=2, hidden=4))
    assert all(r.rms_difference < 1e-5 for r in measure_leakage(grouped, batch_size=24, proportions=[1, 2, 5]))


class GaussianFeatureBN(Generator):
    """The closed form's model as a generator: x = mu_c + sigma z_0, then BN without affine."""

    def __init__(self, mu: tuple[float, float], sigma: float) -> None:
        super().__init__(z_dim=1, c_dim=2, output_shape=(1,))
        self.register_buffer("mu", torch.tensor(mu))
        self.sigma = sigma
        self.bn = nn.BatchNorm1d(1, affine=False, eps=1e-8)

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        return self.bn((c @ self.mu)[:, None] + self.sigma * z)


def test_measurement_matches_the_closed_form_on_its_own_model() -> None:
    mu_a, mu_b, sigma, p = -1.0, 1.0, 0.8, 0.2
    rows = measure_leakage(GaussianFeatureBN((mu_a, mu_b), sigma), batch_size=8192, proportions=[1 - p, p], seed=0)
    assert rows[1].rms_difference == pytest.approx(pure_mixed_difference(p, mu_a, mu_b, sigma), rel=0.04)
    assert rows[0].rms_difference == pytest.approx(pure_mixed_difference(p, mu_a, mu_b, sigma, which="majority"), rel=0.04)
    assert rows[1].rms_difference > 3 * rows[0].rms_difference


def test_measure_leakage_refuses_unconditional_generators() -> None:
    with pytest.raises(ValueError, match="conditional generator"):
        measure_leakage(TinyGenerator(z_dim=2, data_dim=2, hidden=4))


# -- class proportions and balanced batches ---------------------------------------------------------
def test_shapes_class_proportions_within_sampling_error() -> None:
    shares = [0.05, 0.19, 0.19, 0.19, 0.19, 0.19]
    n = 20_000
    ds = ShapesDataset(num_samples=n, class_proportions=[5, 19, 19, 19, 19, 19])  # normalized
    counts = torch.bincount(ds.labels, minlength=6).double()
    for share, count in zip(shares, counts):
        assert abs(count / n - share) < 4 * math.sqrt(share * (1 - share) / n)
    # reproducible per index: the labels of any index alone equal the epoch's, and the rendered batch's
    idx = [17, 3, 19_999, 5000]
    assert torch.equal(shape_factors(idx, class_proportions=shares).label, ds.labels[idx])
    assert torch.equal(ds.__getitems__(idx)[1], ds.labels[idx])
    assert torch.equal(ShapesDataset(num_samples=500).labels, shape_factors(range(500)).label)
    with pytest.raises(ValueError, match="one share per class"):
        ShapesDataset(num_samples=10, class_proportions=[0.5, 0.5])


def test_class_balanced_batches() -> None:
    labels = torch.tensor([0] * 30 + [1] * 300 + [2] * 270)  # 5% / 50% / 45%
    sampler = ClassBalancedSampler(labels, seed=4)
    order = list(sampler)
    assert len(order) == len(sampler) == 600
    for start in range(0, 600, 12):  # batches of 12 = 4 rounds: exactly 4 of each class
        assert torch.bincount(labels[order[start:start + 12]], minlength=3).tolist() == [4, 4, 4]
    for start in range(0, 590, 7):  # any window: within 2 of window / K
        counts = torch.bincount(labels[order[start:start + 10]], minlength=3)
        assert (counts - 10 / 3).abs().max() <= 2
    minority = [i for i in order if labels[i] == 0]
    assert sorted(set(minority)) == list(range(30)) and len(minority) == 200  # every one, each ~6.7 times
    again = ClassBalancedSampler(labels, seed=4)
    assert list(again) == order  # depends only on (seed, epoch)
    again.set_epoch(1)
    assert list(again) != order
    # DDP: two processes take alternate rounds: disjoint, both balanced, together the one-process stream's rounds
    ranks = [list(ClassBalancedSampler(labels, seed=4, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 300
    rounds = torch.tensor(order).reshape(-1, 3)
    assert torch.equal(torch.tensor(ranks[0]).reshape(-1, 3), rounds[0::2])
    assert torch.equal(torch.tensor(ranks[1]).reshape(-1, 3), rounds[1::2])


def test_balanced_shapes_loader() -> None:
    dm = ShapesDataModule(num_samples=600, resolution=8, class_proportions=[0.05] + [0.19] * 5, batch_size=12,
                          balance_classes=True)
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, ClassBalancedSampler)
    for _, (_, y) in zip(range(5), loader):
        assert torch.bincount(y, minlength=6).tolist() == [2] * 6
    assert not isinstance(ShapesDataModule(num_samples=600, batch_size=12).train_dataloader().sampler,
                          ClassBalancedSampler)
    with pytest.raises(ConfigError, match="balance_classes needs labelled data with at least 2 classes"):
        ShapesDataModule(num_samples=60, resolution=8, classes=["ring"], batch_size=12,
                         balance_classes=True).train_dataloader()


@pytest.mark.slow
def test_diagnose_reports_the_leakage_of_a_checkpoint(tmp_path, capsys) -> None:
    """`lightning-gan diagnose --ckpt` on a conditional DCGAN (BatchNorm) trained on imbalanced shapes: the
    leakage section equals measure_leakage on the checkpoint's generator with the data's class proportions."""
    import json

    import lightning.pytorch as pl

    from conftest import make_trainer
    from lightning_gan.cli import main
    from lightning_gan.module import GANModule

    pl.seed_everything(0)
    arch = {"class_path": "dcgan", "init_args": {"resolution": 16, "channels": 3, "z_dim": 8, "c_dim": 6,
                                                 "base_channels": 8, "max_channels": 16}}
    module = GANModule(architecture=arch, metrics=[], ema_kimg=None)
    data = ShapesDataModule(resolution=16, batch_size=24, num_samples=96, class_proportions=[0.05] + [0.19] * 5)
    trainer = make_trainer(tmp_path, max_steps=4)
    trainer.fit(module, data)
    ckpt = tmp_path / "cond.ckpt"
    trainer.save_checkpoint(ckpt)
    assert main(["diagnose", "--ckpt", str(ckpt), "--out", str(tmp_path / "d"), "--num-samples", "40",
                 "--no-plots"]) == 0
    report = json.loads((tmp_path / "d" / "report.json").read_text())["leakage"]
    expected = measure_leakage(module.generator, batch_size=40, proportions=data.class_proportions, seed=0)
    assert [r["count"] for r in report["rows"]] == mixed_counts(data.class_proportions, 40) == [e.count for e in expected]
    assert [r["class"] for r in report["rows"]] == list(data.classes)
    for row, e in zip(report["rows"], expected):
        assert row["rms_difference"] == pytest.approx(e.rms_difference, rel=1e-5) and e.rms_difference > 0
    assert "class leakage" in capsys.readouterr().out


def test_any_labelled_datamodule_gets_balanced_batches() -> None:
    """A GANDataModule over a TensorPairDataset (labels from ``y``), and a dataset twice as long as its labels
    (mirrored copies: index i has label i % len(labels))."""
    from lightning_gan.data.base import GANDataModule, TensorPairDataset

    class Pairs(GANDataModule):
        data_shape, num_classes = (2,), 2

        def setup(self, stage: str | None = None) -> None:
            y = torch.tensor([0] * 10 + [1] * 90)
            self.train_dataset = TensorPairDataset(torch.randn(100, 2), y)

    dm = Pairs(batch_size=10, balance_classes=True)
    for _, y in dm.train_dataloader():
        assert torch.bincount(y, minlength=2).tolist() == [5, 5]

    class Mirrored(torch.utils.data.Dataset):
        labels = torch.tensor([0, 1, 1, 1])

        def __len__(self) -> int:
            return 8

    dm.train_dataset = Mirrored()
    assert dm.train_labels().tolist() == [0, 1, 1, 1, 0, 1, 1, 1]


def test_spectral_norm_updates_do_not_count_as_leakage() -> None:
    """Train mode runs spectral norm's power iteration on every forward; each forward starts from the same
    vectors, so a class-grouped generator with SN still measures 0."""

    class WithSN(ClassGroupedBN):
        def __init__(self) -> None:
            super().__init__()
            self.out = nn.Linear(4, 4)
            q, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(0)))
            with torch.no_grad():  # close singular values: one power iteration moves the estimate of sigma
                self.out.weight.copy_(torch.diag(torch.tensor([1.0, 0.9, 0.8, 0.7])) @ q)
            self.out = nn.utils.parametrizations.spectral_norm(self.out)

        def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
            return self.out(super().forward(z, c))

    assert all(r.rms_difference < 1e-5 for r in measure_leakage(WithSN(), batch_size=24, proportions=[1, 2, 5]))
