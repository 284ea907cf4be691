"""The results table: medians, per-rep ratios, goals and verdicts, as markdown."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from benchmarks.stats import cell, fmt, median

NOISE = 0.10  # perf-anchors §3: fail only when the median ratio misses by more than 10%


@dataclass(frozen=True)
class Goal:
    """Bounds on the ratio: ``ratio >= must`` (or ``<=``), and a stricter ``goal`` to aim for.

    Issue 12's table gives each row a "must" and a "goal"; a row without a separate
    goal has only the must.  The verdict names the best bound the median ratio meets.
    """

    op: str
    must: float
    goal: float | None = None

    def __str__(self) -> str:
        """Like ``≥ 0.50x (goal ≥ 0.70x)``."""
        sign = "≥" if self.op == ">=" else "≤"
        text = f"{sign} {self.must:.2f}x"
        return text if self.goal is None else f"{text} (goal {sign} {self.goal:.2f}x)"

    def _meets(self, ratio: float, bound: float) -> bool:
        return ratio >= bound if self.op == ">=" else ratio <= bound

    def verdict(self, ratio: float) -> str:
        """goal, must, must within the 10% noise band, or FAIL."""
        if math.isnan(ratio):
            return "n/a"
        if self.goal is not None and self._meets(ratio, self.goal):
            return "goal"
        if self._meets(ratio, self.must):
            return "must"
        slack = self.must * (1 - NOISE) if self.op == ">=" else self.must * (1 + NOISE)
        return "must (within 10% noise)" if self._meets(ratio, slack) else "**FAIL**"


@dataclass
class Row:
    """One metric: TaskForge and baseline values per rep, and how to judge them."""

    metric: str
    unit: str = ""
    goal: Goal | None = None
    taskforge: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    # Per-rep ratios when they are not simply taskforge / baseline (e.g. scaling rows).
    explicit_ratios: list[float] | None = None
    note: str = ""
    skipped: str | None = None
    # A scaling goal is only judged when the baseline itself scaled at least this much
    # (on a machine whose second core is taken by others, neither side can scale).
    baseline_must_reach: float | None = None

    def add(self, taskforge: float, baseline: float) -> None:
        """Record one rep's pair of values."""
        self.taskforge.append(taskforge)
        self.baseline.append(baseline)

    @property
    def ratios(self) -> list[float]:
        """Per-rep ratios (paired within a rep, so drift between reps cancels)."""
        if self.explicit_ratios is not None:
            return self.explicit_ratios
        return [
            t / b if b and not math.isnan(t) and not math.isnan(b) else math.nan
            for t, b in zip(self.taskforge, self.baseline, strict=False)
        ]

    @property
    def verdict(self) -> str:
        """The goal's verdict, ``(info)`` without a goal, or why it cannot be judged."""
        if self.goal is None:
            return "(info)"
        floor = self.baseline_must_reach
        if floor is not None and median(self.baseline) < floor:
            return f"inconclusive: raw Celery itself scaled only {median(self.baseline):.2f}x"
        return self.goal.verdict(self.ratio)

    @property
    def ratio(self) -> float:
        """Median of the per-rep ratios."""
        return median(self.ratios)

    def cells(self) -> list[str]:
        """The markdown cells of this row."""
        if self.skipped:
            return [self.metric, "-", "-", "-", str(self.goal or "-"), f"skipped: {self.skipped}"]
        ratio = cell(self.ratios, "x", 2)
        verdict = self.verdict
        metric = f"{self.metric} ({self.unit})" if self.unit else self.metric
        if self.note:
            metric += f" — {self.note}"
        return [
            metric,
            cell(self.taskforge),
            cell(self.baseline),
            ratio,
            str(self.goal) if self.goal else "-",
            verdict,
        ]


HEADER = ["Metric", "TaskForge", "Baseline", "Ratio TF/baseline", "Goal", "Verdict"]


DIAGNOSTIC_HEADER = ["Diagnostic", "Variant", "Reference", "Ratio variant/reference", "", ""]


def table(rows: Sequence[Row], header: Sequence[str] = HEADER) -> str:
    """Render the rows as a markdown table."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def summary(rows: Sequence[Row]) -> str:
    """Count the verdicts, e.g. ``3 goal, 4 must, 1 FAIL, 2 info``."""
    counts: dict[str, int] = {}
    for row in rows:
        if row.skipped:
            key = "skipped"
        elif row.goal is None:
            key = "info"
        else:
            key = row.verdict.split(":")[0].strip("*")
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))


__all__ = ["DIAGNOSTIC_HEADER", "Goal", "Row", "fmt", "summary", "table"]
