"""Small statistics: medians, percentiles and ``median [min-max]`` cells."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], pct: float) -> float:
    """Return the ``pct`` percentile (nearest rank, as latency tools report it)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    """Median of the finite values, NaN when there are none."""
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def fmt(value: float, digits: int | None = None) -> str:
    """Format a number compactly: thousands separators for big values."""
    if math.isnan(value):
        return "n/a"
    if digits is None:
        digits = 0 if abs(value) >= 100 else (1 if abs(value) >= 10 else 2)
    return f"{value:,.{digits}f}"


def cell(values: Sequence[float], unit: str = "", digits: int | None = None) -> str:
    """``median [min-max]`` (just the value for a single run)."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return "n/a"
    mid = fmt(median(finite), digits) + unit
    if len(finite) == 1:
        return mid
    return f"{mid} [{fmt(min(finite), digits)}-{fmt(max(finite), digits)}]"
