"""Phase schedule: which phases run when, gains, and the lazy Adam correction."""

from __future__ import annotations

import pytest
import torch

from lightning_gan.phases import PhaseSchedule, corrected_adam, lazy_ratio
from lightning_gan.regularizers import R1, GradientPenalty
from lightning_gan.interfaces import Regularizer


class GReg(Regularizer):
    network = "generator"

    def forward(self, inputs):
        return torch.zeros(())


def test_no_regularizer_runs_main_phases_only() -> None:
    schedule = PhaseSchedule([])
    assert schedule.table(3) == [("Dmain", "Gmain")] * 3


@pytest.mark.parametrize("d_interval", [1, 2, 4, 16])
@pytest.mark.parametrize("g_interval", [1, 3, 4])
def test_lazy_table(d_interval: int, g_interval: int) -> None:
    schedule = PhaseSchedule([R1(gamma=1.0, interval=d_interval), GReg(weight=1.0, interval=g_interval)])
    table = schedule.table(48)
    for i, phases in enumerate(table):
        expected = ["Dmain"]
        if d_interval > 1 and i % d_interval == 0:
            expected.append("Dreg")
        expected.append("Gmain")
        if g_interval > 1 and i % g_interval == 0:
            expected.append("Greg")
        assert phases == tuple(expected), (i, phases)
    # every regularizer runs exactly once per interval in its own phase, or every time folded in
    d_runs = sum("Dreg" in p for p in table) if d_interval > 1 else len(table)
    assert d_runs == 48 // d_interval
    main = {p.name: p for i in range(48) for p in schedule.phases(i)}
    assert (main["Dmain"].regularizers != ()) == (d_interval == 1)
    if d_interval > 1:
        assert main["Dreg"].gain == d_interval and not main["Dreg"].adversarial


def test_explicit_table_for_stylegan2_intervals() -> None:
    schedule = PhaseSchedule([R1(gamma=10.0, interval=16), GReg(weight=2.0, interval=4)])
    table = schedule.table(17)
    assert table[0] == ("Dmain", "Dreg", "Gmain", "Greg")
    assert table[1] == ("Dmain", "Gmain")
    assert table[4] == ("Dmain", "Gmain", "Greg")
    assert table[16] == ("Dmain", "Dreg", "Gmain", "Greg")
    assert schedule.cycle_length == 16


@pytest.mark.parametrize(
    "interval, lr, betas, expected_lr, expected_betas",
    [
        (1, 0.002, (0.0, 0.99), 0.002, (0.0, 0.99)),
        (4, 0.0025, (0.0, 0.99), 0.0025 * 4 / 5, (0.0, 0.99 ** 0.8)),
        (16, 0.002, (0.5, 0.99), 0.002 * 16 / 17, (0.5 ** (16 / 17), 0.99 ** (16 / 17))),
    ],
)
def test_corrected_adam(interval, lr, betas, expected_lr, expected_betas) -> None:
    got_lr, got_betas = corrected_adam(lr, betas, interval)
    assert got_lr == pytest.approx(expected_lr, rel=1e-12)
    assert got_betas == pytest.approx(expected_betas, rel=1e-12)
    assert lazy_ratio(interval) == pytest.approx(interval / (interval + 1) if interval > 1 else 1.0)


def test_correct_optimizer_in_place() -> None:
    p = torch.nn.Parameter(torch.zeros(2))
    adam = torch.optim.Adam([p], lr=0.002, betas=(0.0, 0.99))
    sgd = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule = PhaseSchedule([R1(gamma=1.0, interval=16)])
    schedule.correct_optimizer(adam, "discriminator")
    schedule.correct_optimizer(sgd, "discriminator")
    assert adam.param_groups[0]["lr"] == pytest.approx(0.002 * 16 / 17)
    assert adam.param_groups[0]["betas"] == pytest.approx((0.0, 0.99 ** (16 / 17)))
    assert sgd.param_groups[0]["lr"] == pytest.approx(0.1 * 16 / 17)
    untouched = torch.optim.Adam([p], lr=0.002, betas=(0.0, 0.99))
    schedule.correct_optimizer(untouched, "generator")  # G has no lazy regularizer
    assert untouched.param_groups[0]["lr"] == 0.002


def test_lazy_regularizers_of_one_network_must_share_an_interval() -> None:
    with pytest.raises(ValueError, match="share one interval"):
        PhaseSchedule([R1(gamma=1.0, interval=16), GradientPenalty(interval=4)])
    # folding one in (interval 1) next to a lazy one is fine
    schedule = PhaseSchedule([R1(gamma=1.0, interval=16), GradientPenalty(interval=1)])
    assert schedule.interval("discriminator") == 16
