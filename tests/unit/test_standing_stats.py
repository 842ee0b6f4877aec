"""Standing statistics draw their classes in the training data's shares: counts, labels and statistics by hand."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import Tensor, nn

from lightning_gan.callbacks.standing_stats import StandingStatistics
from lightning_gan.data.base import GANDataModule, TensorPairDataset
from lightning_gan.data.shapes import ShapesDataModule
from lightning_gan.interfaces import Generator
from lightning_gan.utils.standing_stats import standing_class_counts, standing_labels, standing_statistics

OFFSETS = torch.tensor([[0.0, 0.0], [4.0, -2.0], [10.0, 3.0]])  # class k adds OFFSETS[k] before the BN


class _ClassOffsetGenerator(Generator):
    """z [N, 2] + one-hot c [N, 3] -> ``h = z A^T + c OFFSETS`` -> BatchNorm1d: the batch mean follows the class mix."""

    def __init__(self) -> None:
        super().__init__(z_dim=2, c_dim=3, output_shape=(2,))
        self.register_buffer("a", torch.tensor([[1.0, 0.5], [-0.3, 2.0]]))
        self.bn = nn.BatchNorm1d(2)
        self.seen: list[tuple[Tensor, Tensor]] = []  # (z, c) of every forward pass

    def pre_bn(self, z: Tensor, c: Tensor) -> Tensor:
        return z @ self.a.t() + c @ OFFSETS

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        self.seen.append((z.clone(), c.clone()))
        return self.bn(self.pre_bn(z, c))


def test_class_counts_by_hand() -> None:
    # T = 64, three classes with positive shares: n_k = 1 + floor(p_k * 61), then the largest remainders
    # p * 61 = [3.05, 9.15, 48.8] -> [4, 10, 49] (63), one left for class 2 (remainder 0.8)
    assert standing_class_counts([0.05, 0.15, 0.8], 64).tolist() == [4, 10, 50]
    # equal shares: 1 + floor(61 / 3) = 21 each, the one left to the lowest index (ties)
    assert standing_class_counts([1, 1, 1], 64).tolist() == [22, 21, 21]
    # 1,000 classes with the defaults (16 x 64 labels): every class once, 24 twice (drawn independently, about
    # (1 - 1/1000)^1024 = 36% of the classes would get none)
    counts = standing_class_counts([1.0] * 1000, 16 * 64)
    assert int(counts.min()) == 1 and int((counts == 2).sum()) == 24 and int(counts.sum()) == 1024
    # a tiny share still gets one label; a share of 0 none
    assert standing_class_counts([0.001, 0.0, 0.999], 10).tolist() == [1, 0, 9]
    # fewer labels than classes: plain largest remainders of p_k * T (no class guaranteed)
    assert standing_class_counts([0.1, 0.2, 0.3, 0.4], 3).tolist() == [0, 1, 1, 1]
    with pytest.raises(ValueError, match="non-negative and not all 0"):
        standing_class_counts([0.0, 0.0], 4)


def test_labels_follow_the_shares_exactly_and_are_shuffled_across_batches() -> None:
    labels = standing_labels(3, 4, 16, class_shares=[0.05, 0.15, 0.8], generator=torch.Generator().manual_seed(0))
    assert labels.shape == (4, 16)
    assert torch.bincount(labels.flatten(), minlength=3).tolist() == [4, 10, 50]
    # shuffled, not sorted by class: with two equal classes every batch of 16 holds both (a pure batch of a
    # random permutation has probability ~2 * 2^-16)
    halves = standing_labels(2, 8, 16, class_shares=[0.5, 0.5], generator=torch.Generator().manual_seed(1))
    assert all(len(torch.unique(row)) == 2 for row in halves)
    with pytest.raises(ValueError, match="one share per class"):
        standing_labels(3, 1, 4, class_shares=[0.5, 0.5])


@pytest.mark.parametrize(("shares", "counts"), [([0.05, 0.15, 0.8], [4, 10, 50]), (None, [22, 21, 21])])
def test_running_statistics_equal_a_hand_computation_with_the_shares(shares: list[float] | None,
                                                                     counts: list[int]) -> None:
    torch.manual_seed(0)
    g = _ClassOffsetGenerator()
    standing_statistics(g, num_batches=4, batch_size=16, seed=3, class_shares=shares)
    assert len(g.seen) == 4
    z = torch.stack([s[0] for s in g.seen])  # [B, N, 2]
    c = torch.stack([s[1] for s in g.seen])  # [B, N, 3]
    assert c.sum((0, 1)).long().tolist() == counts  # the labels the passes used
    # equal batch sizes: the mean of the batch means is the mean over every sample,
    # running_mean = A mean(z) + sum_k n_k OFFSETS_k / T
    expected_mean = z.reshape(-1, 2).mean(0) @ g.a.t() + torch.tensor(counts, dtype=torch.float) @ OFFSETS / 64
    torch.testing.assert_close(g.bn.running_mean, expected_mean)
    # running_var: the mean over the passes of each batch's unbiased variance of h
    h = z @ g.a.t() + c @ OFFSETS  # [B, N, 2]
    torch.testing.assert_close(g.bn.running_var, h.var(1, unbiased=True).mean(0))


def test_shares_of_the_data_and_of_balanced_batches() -> None:
    proportions = [0.05, 0.19, 0.19, 0.19, 0.19, 0.19]
    dm = ShapesDataModule(num_samples=2000, class_proportions=proportions)
    labels = dm.train_labels()
    torch.testing.assert_close(dm.class_shares(), torch.bincount(labels, minlength=6).double() / 2000)
    balanced = ShapesDataModule(num_samples=2000, class_proportions=proportions, balance_classes=True)
    torch.testing.assert_close(balanced.class_shares(), torch.full((6,), 1 / 6, dtype=torch.float64))

    class _Absent(GANDataModule):  # class 1 never occurs: balanced batches serve only classes 0 and 2
        num_classes = 3

        def setup(self, stage: str | None = None) -> None:
            self.train_dataset = TensorPairDataset(torch.zeros(6, 1), torch.tensor([0, 0, 0, 2, 2, 0]))

    assert _Absent().class_shares().tolist() == [4 / 6, 0.0, 2 / 6]
    assert _Absent(balance_classes=True).class_shares().tolist() == [0.5, 0.0, 0.5]


def test_callback_takes_the_shares_of_the_trainers_datamodule() -> None:
    g = _ClassOffsetGenerator()
    module = SimpleNamespace(sampling_generator=g)
    dm = ShapesDataModule(num_samples=500, classes=["circle", "square", "star"], class_proportions=[0.05, 0.15, 0.8])
    callback = StandingStatistics(num_batches=4, batch_size=16, every_n_kimg=None)
    callback.setup(SimpleNamespace(datamodule=dm), module, "fit")
    torch.testing.assert_close(callback.class_shares, dm.class_shares())
    callback.apply(module)
    counts = standing_class_counts(dm.class_shares(), 64).tolist()
    assert torch.stack([s[1] for s in g.seen]).sum((0, 1)).long().tolist() == counts
    assert counts[0] < 10 < 40 < counts[2]  # the data's mix, not 21 or 22 each
    uniform = StandingStatistics(every_n_kimg=None, classes="uniform")
    uniform.setup(SimpleNamespace(datamodule=dm), module, "fit")
    assert uniform.class_shares is None
    nothing = StandingStatistics(every_n_kimg=None)
    nothing.setup(SimpleNamespace(datamodule=None), module, "fit")  # fit(dataloaders): no datamodule
    assert nothing.class_shares is None
    with pytest.raises(ValueError, match="'data' or 'uniform'"):
        StandingStatistics(classes="balanced")
