"""ADA's controller: ``p <- clip(p + sign(r_t - target) * N / (ada_kimg * 1000), 0, MAX_P)`` every ``interval``
iterations, identical over processes, exact across a ``state_dict`` round trip."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import torch

from lightning_gan.augment import ADA, MAX_P


def one_process(t: torch.Tensor) -> torch.Tensor:
    return t


def logits_with_sign_mean(mean: float, n: int = 10) -> torch.Tensor:
    """n logits whose signs average to ``mean`` (a multiple of 2 / n)."""
    positive = round((mean + 1) / 2 * n)
    return torch.cat([torch.full((positive,), 2.5), torch.full((n - positive,), -0.7)])


def iterate(ada: ADA, sign_mean: float, *, iterations: int, batch: int = 32, d_steps: int = 1,
            reduce: Callable[[torch.Tensor], torch.Tensor] = one_process) -> None:
    for _ in range(iterations):
        for _ in range(d_steps):
            ada.observe(logits_with_sign_mean(sign_mean))
        ada.update(images=batch, reduce=reduce)


@pytest.mark.parametrize(("sign_mean", "direction"), [(1.0, 1), (0.8, 1), (0.4, -1), (-1.0, -1)])
def test_one_adjustment_moves_p_by_the_formula(sign_mean: float, direction: int) -> None:
    ada = ADA(initial_p=0.5, interval=4, target=0.6, ada_kimg=500)
    iterate(ada, sign_mean, iterations=4, batch=32, d_steps=2)
    expected = torch.tensor(0.5, dtype=torch.float32) + direction * torch.tensor(4 * 32 / 500_000.0)
    assert torch.equal(ada.p, expected)
    assert torch.isclose(ada.rt, torch.tensor(sign_mean))
    assert ada.summary().keys() == {"p", "rt"}


def test_the_interval_is_respected() -> None:
    ada = ADA(initial_p=0.5, interval=4, ada_kimg=1)  # steps of 4 * 100 / 1000 = 0.4 per adjustment
    iterate(ada, -1.0, iterations=3, batch=100)
    assert float(ada.p) == 0.5 and float(ada.rt) == 0.0  # nothing yet
    iterate(ada, -1.0, iterations=1, batch=100)
    assert float(ada.p) == pytest.approx(0.1)
    # The next window sees only its own iterations: r_t = mean of 1, 1, 1, -1 = 0.5 < 0.6.
    iterate(ada, 1.0, iterations=3, batch=50)
    assert float(ada.p) == pytest.approx(0.1)
    iterate(ada, -1.0, iterations=1, batch=50)
    assert float(ada.rt) == pytest.approx(0.5)
    assert float(ada.p) == 0.0  # 0.1 - 0.2, clamped at 0


def test_p_is_clamped_below_one() -> None:
    ada = ADA(initial_p=0.99, interval=1, ada_kimg=0.1)
    iterate(ada, 1.0, iterations=3, batch=64)
    assert float(ada.p) == pytest.approx(MAX_P) and float(ada.p) < 1.0
    ada = ADA(initial_p=0.0, interval=1)
    iterate(ada, -1.0, iterations=3)
    assert float(ada.p) == 0.0


def test_an_interval_without_observations_keeps_p() -> None:
    ada = ADA(initial_p=0.3, interval=2, ada_kimg=1)
    for _ in range(4):
        ada.update(images=64, reduce=one_process)
    assert float(ada.p) == pytest.approx(0.3)
    iterate(ada, 1.0, iterations=2, batch=10)  # the images of the empty intervals do not count
    assert float(ada.p) == pytest.approx(0.3 + 2 * 10 / 1000)


def test_two_processes_end_with_identical_p() -> None:
    """Two instances driven in two threads with an all-reduce that sums both: they see different logits and
    end with the same p, the one that the pooled sign mean gives."""
    barrier = threading.Barrier(2)
    slots: list[torch.Tensor | None] = [None, None]

    def all_reduce(rank: int) -> Callable[[torch.Tensor], torch.Tensor]:
        def reduce(t: torch.Tensor) -> torch.Tensor:
            slots[rank] = t.clone()
            barrier.wait()
            total = slots[0] + slots[1]
            barrier.wait()
            return total
        return reduce

    processes = [ADA(initial_p=0.2, interval=4, ada_kimg=10), ADA(initial_p=0.2, interval=4, ada_kimg=10)]
    # Rank 0 sees sign means 1.0, rank 1 sees 0.0: pooled 0.5 < 0.6, so p goes down although rank 0 alone
    # would raise it. Then 1.0 and 0.4: pooled 0.7, up.
    means = [(1.0, 0.0), (1.0, 0.4)]
    errors: list[BaseException] = []

    def run(rank: int) -> None:
        try:
            for window in means:
                iterate(processes[rank], window[rank], iterations=4, batch=2 * 16, reduce=all_reduce(rank))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(rank,)) for rank in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    step = 4 * 32 / 10_000
    assert torch.equal(processes[0].p, processes[1].p)
    assert float(processes[0].p) == pytest.approx(0.2 - step + step)
    assert float(processes[0].rt) == pytest.approx(0.7)
    for name, buffer in processes[0].state_dict().items():
        assert torch.equal(buffer, processes[1].state_dict()[name]), name


def test_state_dict_round_trip_resumes_exactly() -> None:
    """Saved in the middle of an interval and loaded into a fresh instance, the run continues identically."""
    ada = ADA(initial_p=0.1, interval=4, ada_kimg=5)  # steps of 4 * 16 / 5000 = 0.0128
    iterate(ada, 1.0, iterations=6, batch=16)  # one adjustment (up), then 2 iterations into the next window
    state = ada.state_dict()
    assert {"p", "rt", "updates", "sign_sum", "count", "images_seen"} <= state.keys()
    assert state["p"].dtype == torch.float32
    resumed = ADA(initial_p=0.1, interval=4, ada_kimg=5)
    resumed.load_state_dict(state)
    for run in (ada, resumed):
        iterate(run, 0.0, iterations=2, batch=16)  # finishes the window: r_t = (1 + 1 + 0 + 0) / 4 = 0.5 (down)
    assert torch.equal(ada.p, resumed.p) and torch.equal(ada.rt, resumed.rt)
    assert float(resumed.rt) == 0.5
    assert float(resumed.p) == pytest.approx(0.1 + 0.0128 - 0.0128, abs=1e-7)


def test_fixed_p_never_changes_but_rt_is_measured() -> None:
    ada = ADA(fixed_p=0.35, interval=2, ada_kimg=0.01)
    iterate(ada, 1.0, iterations=10)
    assert float(ada.p) == pytest.approx(0.35) and float(ada.rt) == 1.0
    state = ADA(initial_p=0.9).state_dict()
    ada.load_state_dict(state)  # a checkpoint of an adaptive run: the constant still wins
    assert float(ada.p) == pytest.approx(0.35)


def test_no_host_reads_off_the_cpu() -> None:
    """``forward``, ``observe`` and ``update`` run on meta tensors, which have no values: any read on the host
    (a device sync on an accelerator) would raise. Off the CPU the pipeline takes its ``torch.where`` path."""
    ada = ADA(initial_p=0.1).to("meta")
    out = ada(torch.zeros(4, 3, 16, 16, device="meta"))
    assert out.shape == (4, 3, 16, 16) and out.device.type == "meta"
    ada.observe(torch.zeros(8, device="meta"))
    ada.update(images=8, reduce=one_process)
    assert ada.p.device.type == "meta"
