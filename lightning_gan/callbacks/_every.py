"""The "every N kimg" schedule the periodic callbacks share (metrics, sample grids, monitors, the controller)."""

from __future__ import annotations

import math

KIMG_EPS = 1e-9  # kimg comparisons: 0.1 * 3 must count as reaching 0.3


def reached(kimg: float, threshold: float) -> bool:
    """Whether ``kimg`` thousand images have reached ``threshold`` (up to float rounding)."""
    return kimg + KIMG_EPS >= threshold


def next_multiple(kimg: float, every: float) -> float:
    """The first multiple of ``every`` strictly after ``kimg`` (a multiple that ``kimg`` has reached counts as
    passed): 0.3 after 0.1 * 3 at ``every=0.1``, 20 after 10 or 19.99 at ``every=10``."""
    return (math.floor(kimg / every + KIMG_EPS) + 1) * every
