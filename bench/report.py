"""Result rows shared by every benchmark, and the table that `make bench` prints and saves."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One measured figure: a ratio or a value, from one benchmark, measured in this run."""

    benchmark: str
    metric: str
    value: float
    unit: str = "×"
    goal: str = ""

    def cells(self) -> list[str]:
        """The row as table cells."""
        value = f"{self.value:.2f}" if 0.1 <= abs(self.value) < 1e4 or self.value == 0 else f"{self.value:.3g}"
        return [self.benchmark, self.metric, f"{value} {self.unit}".strip(), self.goal]


def machine_line() -> str:
    """Core count and library versions, printed above every table."""
    versions = []
    for name in ("torch", "onnxruntime", "fastapi", "uvicorn", "flask", "scikit-learn"):
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; " + ", ".join(versions)


def markdown_table(rows: list[Row]) -> str:
    """Rows as a Markdown table under the machine line."""
    lines = [machine_line(), "", "| benchmark | metric | measured | goal |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)
