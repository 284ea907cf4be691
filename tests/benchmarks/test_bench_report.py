"""The benchmark report's verdicts: issue 12's "must" and "goal" per row."""

from __future__ import annotations

import math

import pytest

from benchmarks.report import Goal, Row, summary


@pytest.mark.parametrize(
    ("ratio", "verdict"),
    [(0.75, "goal"), (0.70, "goal"), (0.55, "must"), (0.46, "must (within 10% noise)"),
     (0.40, "**FAIL**"), (math.nan, "n/a")],
)  # fmt: skip
def test_a_throughput_ratio_is_judged_against_must_then_goal(ratio: float, verdict: str) -> None:
    assert Goal(">=", 0.50, 0.70).verdict(ratio) == verdict


@pytest.mark.parametrize(
    ("ratio", "verdict"),
    [(1.2, "goal"), (1.7, "must"), (2.1, "must (within 10% noise)"), (2.5, "**FAIL**")],
)
def test_a_cost_ratio_is_judged_downwards(ratio: float, verdict: str) -> None:
    assert Goal("<=", 2.0, 1.4).verdict(ratio) == verdict


def test_a_row_without_a_separate_goal_has_only_its_must() -> None:
    assert str(Goal(">=", 1.6)) == "≥ 1.60x"
    assert str(Goal("<=", 3.0, 2.0)) == "≤ 3.00x (goal ≤ 2.00x)"
    assert Goal(">=", 1.6).verdict(2.0) == "must"


def test_the_summary_counts_rows_by_verdict() -> None:
    rows = [Row("a", goal=Goal(">=", 0.5, 0.7)), Row("b", goal=Goal(">=", 0.5, 0.7)), Row("c")]
    rows[0].add(8.0, 10.0)
    rows[1].add(1.0, 10.0)
    rows[2].add(1.0, 1.0)
    assert summary(rows) == "1 FAIL, 1 goal, 1 info"
