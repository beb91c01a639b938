"""Result rows shared by every benchmark, their goals, and the table and verdict that `make bench` prints and saves."""

from __future__ import annotations

import operator
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass

from course_lib.lock import installed_versions

MET, UNMET, REPORT_ONLY = "✅", "❌", "report only"

_COMPARISONS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "<=": (operator.le, "≤"),
    "<": (operator.lt, "<"),
    ">=": (operator.ge, "≥"),
    ">": (operator.gt, ">"),
}


@dataclass(frozen=True)
class Goal:
    """A machine-readable goal: the measured value compared with a threshold, e.g. Goal("<=", 1.10)."""

    op: str
    threshold: float

    def __post_init__(self) -> None:
        if self.op not in _COMPARISONS:
            raise ValueError(f"goal comparison must be one of {sorted(_COMPARISONS)}, got {self.op!r}")

    def met(self, value: float) -> bool:
        """Whether value reaches the goal (a NaN never does)."""
        return _COMPARISONS[self.op][0](value, self.threshold)

    def __str__(self) -> str:
        return f"{_COMPARISONS[self.op][1]} {self.threshold:g}"


@dataclass(frozen=True)
class Row:
    """One measured figure: a ratio or a value, from one benchmark, measured in this run; goal=None is report only."""

    benchmark: str
    metric: str
    value: float
    unit: str = "×"
    goal: Goal | None = None

    @property
    def verdict(self) -> str:
        """✅ when the goal is met, ❌ when it is not, "report only" when the row has no goal."""
        if self.goal is None:
            return REPORT_ONLY
        return MET if self.goal.met(self.value) else UNMET

    @property
    def measured(self) -> str:
        """The value with its unit: 2 decimals in the usual range, 3 significant digits outside it, and more digits
        when the rounded value would seem to contradict the verdict (1.1008 against ≤ 1.1 is not "1.10 ❌")."""
        usual = 0.1 <= abs(self.value) < 1e4 or self.value == 0
        for digits in range(2, 7):
            value = f"{self.value:.{digits}f}" if usual else f"{self.value:.{digits + 1}g}"
            if self.goal is None or self.goal.met(float(value)) == self.goal.met(self.value):
                break
        return f"{value} {self.unit}".strip()

    def cells(self) -> list[str]:
        """The row as table cells."""
        return [self.benchmark, self.metric, self.measured, "—" if self.goal is None else str(self.goal), self.verdict]


def machine_line() -> str:
    """Core count and library versions, printed above every table."""
    versions = installed_versions(("torch", "onnxruntime", "fastapi", "uvicorn", "flask", "scikit-learn"))
    listed = ", ".join(f"{name} {version}" for name, version in versions.items())
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; " + listed


def markdown_table(rows: list[Row]) -> str:
    """Rows as a Markdown table under the machine line."""
    lines = [machine_line(), "", "| benchmark | metric | measured | goal | met |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def unmet(rows: list[Row]) -> list[Row]:
    """The rows whose goal was not reached."""
    return [row for row in rows if row.verdict == UNMET]


def goal_summary(rows: list[Row]) -> str:
    """Counts of met / unmet / report-only rows, then one line per unmet goal (what was measured, what was wanted)."""
    judged = [row for row in rows if row.goal is not None]
    missed = unmet(rows)
    head = f"goals: {len(judged) - len(missed)} met, {len(missed)} unmet, {len(rows) - len(judged)} report only"
    if not missed:
        return head + (" — every goal met" if judged else "")
    lines = [head, "", f"{UNMET} unmet goals:"]
    lines += [f"- {row.benchmark}: {row.metric} = {row.measured}, goal {row.goal}" for row in missed]
    return "\n".join(lines)
