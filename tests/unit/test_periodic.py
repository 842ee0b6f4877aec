"""The "every N kimg" schedule of the periodic callbacks (``lightning_gan.callbacks._periodic``)."""

import pytest

from lightning_gan.callbacks._periodic import next_multiple, reached


@pytest.mark.parametrize(("kimg", "every", "expected"), [
    (0.0, 5.0, 5.0),
    (10.0, 10.0, 20.0),  # a multiple reached counts as passed
    (19.99, 10.0, 20.0),
    (0.1 * 3, 0.1, 0.4),  # 0.30000000000000004
    (0.7 * 3, 0.7, 2.8),  # 2.0999999999999996: int(kimg / every) would give 2, so 2.1 and a second run at once
    (2.5, 0.5, 3.0),
])
def test_next_multiple_is_the_first_multiple_strictly_after(kimg, every, expected) -> None:
    assert next_multiple(kimg, every) == pytest.approx(expected, abs=1e-12)
    assert not reached(kimg, next_multiple(kimg, every))


def test_reached_tolerates_float_rounding_only() -> None:
    assert reached(0.1 * 3, 0.3) and reached(0.7 * 3, 2.1) and reached(5.0, 5.0)
    assert not reached(0.2999, 0.3) and not reached(2.1 - 1e-6, 2.1)
