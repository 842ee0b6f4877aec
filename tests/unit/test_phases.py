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


# -- several discriminator steps per iteration (d_steps) ------------------------------------------------------


@pytest.mark.parametrize("d_steps", [1, 2, 5])
def test_d_steps_table_without_regularizers(d_steps: int) -> None:
    schedule = PhaseSchedule([], d_steps=d_steps)
    assert schedule.table(3) == [("Dmain",) * d_steps + ("Gmain",)] * 3
    phases = schedule.phases(0)
    # D step i sees the i-th real batch of the iteration; G's phase the last one
    assert [p.batch for p in phases] == [*range(d_steps), d_steps - 1]
    assert all(p.adversarial and p.gain == 1 and p.regularizers == () for p in phases)
    assert f"d_steps={d_steps}" in repr(schedule)


def test_d_steps_tables_pinned_with_lazy_regularizers() -> None:
    """StyleGAN2's intervals (R1 every 16, G every 4) with 2 D steps, and WGAN-GP-like 5 D steps with R1 every 4."""
    two = PhaseSchedule([R1(gamma=10.0, interval=16), GReg(weight=2.0, interval=4)], d_steps=2)
    table = two.table(17)
    assert table[0] == ("Dmain", "Dmain", "Dreg", "Gmain", "Greg")
    assert table[1] == ("Dmain", "Dmain", "Gmain")
    assert table[4] == ("Dmain", "Dmain", "Gmain", "Greg")
    assert table[16] == ("Dmain", "Dmain", "Dreg", "Gmain", "Greg")
    assert two.cycle_length == 16  # intervals count iterations, not D steps

    five = PhaseSchedule([R1(gamma=1.0, interval=4)], d_steps=5)
    assert five.table(5) == [("Dmain",) * 5 + ("Dreg", "Gmain")] + [("Dmain",) * 5 + ("Gmain",)] * 3 \
        + [("Dmain",) * 5 + ("Dreg", "Gmain")]
    dreg = five.phases(0)[5]
    assert dreg.name == "Dreg" and dreg.batch == 4 and dreg.gain == 4  # after the last D step, on its batch

    folded = PhaseSchedule([GradientPenalty(interval=1)], d_steps=5)  # WGAN-GP: the penalty in every D step
    assert folded.table(2) == [("Dmain",) * 5 + ("Gmain",)] * 2
    assert all(len(p.regularizers) == 1 for p in folded.phases(0)[:5])


@pytest.mark.parametrize("d_steps", [1, 2, 5])
@pytest.mark.parametrize("d_interval", [1, 4, 16])
@pytest.mark.parametrize("g_interval", [1, 3])
def test_d_steps_table_follows_the_rule(d_steps: int, d_interval: int, g_interval: int) -> None:
    schedule = PhaseSchedule([R1(gamma=1.0, interval=d_interval), GReg(weight=1.0, interval=g_interval)],
                             d_steps=d_steps)
    iterations = 48
    for i in range(iterations):
        expected = ["Dmain"] * d_steps
        if d_interval > 1 and i % d_interval == 0:
            expected.append("Dreg")
        expected.append("Gmain")
        if g_interval > 1 and i % g_interval == 0:
            expected.append("Greg")
        phases = schedule.phases(i)
        assert tuple(p.name for p in phases) == tuple(expected), (i, phases)
        assert [p.batch for p in phases] == [*range(d_steps)] + [d_steps - 1] * (len(phases) - d_steps)
    # D's optimizer steps over the run: n per iteration plus one every k iterations (when lazy)
    d_phases = [p for i in range(iterations) for p in schedule.phases(i) if p.network == "discriminator"]
    lazy_steps = iterations // d_interval if d_interval > 1 else 0
    assert len(d_phases) == d_steps * iterations + lazy_steps


@pytest.mark.parametrize(
    "interval, main_steps, expected",
    [(1, 1, 1.0), (1, 5, 1.0), (16, 1, 16 / 17), (16, 2, 32 / 33), (4, 5, 20 / 21), (4, 2, 8 / 9)],
)
def test_adam_ratio_with_several_main_steps(interval: int, main_steps: int, expected: float) -> None:
    """n main steps per iteration and one reg step every k: the main share is n k / (n k + 1)."""
    assert lazy_ratio(interval, main_steps) == pytest.approx(expected, rel=1e-12)
    lr, betas = corrected_adam(0.002, (0.5, 0.99), interval, main_steps)
    assert lr == pytest.approx(0.002 * expected, rel=1e-12)
    assert betas == pytest.approx((0.5 ** expected, 0.99 ** expected), rel=1e-12)


@pytest.mark.parametrize("d_steps", [1, 2, 5])
@pytest.mark.parametrize("interval", [1, 4, 16])
def test_schedule_adam_ratio_is_the_share_of_main_steps_in_the_table(d_steps: int, interval: int) -> None:
    """The correction the schedule applies equals the share of D's optimizer steps that are main steps, counted
    over one cycle of its own table; G's is unaffected by d_steps."""
    schedule = PhaseSchedule([R1(gamma=1.0, interval=interval)], d_steps=d_steps)
    d_phases = [p for i in range(schedule.cycle_length) for p in schedule.phases(i) if p.network == "discriminator"]
    share = sum(p.adversarial for p in d_phases) / len(d_phases)
    assert schedule.adam_ratio("discriminator") == pytest.approx(share, rel=1e-12)
    assert schedule.adam_ratio("generator") == 1.0
    p = torch.nn.Parameter(torch.zeros(2))
    adam = torch.optim.Adam([p], lr=0.002, betas=(0.0, 0.99))
    schedule.correct_optimizer(adam, "discriminator")
    assert adam.param_groups[0]["lr"] == pytest.approx(0.002 * share)
    assert adam.param_groups[0]["betas"] == pytest.approx((0.0, 0.99 ** share))


@pytest.mark.parametrize("d_steps", [0, -1, 1.5, True])
def test_d_steps_must_be_a_positive_integer(d_steps) -> None:
    with pytest.raises(ValueError, match=r"^d_steps \(discriminator steps per iteration\) must be an integer >= 1"):
        PhaseSchedule([], d_steps=d_steps)
