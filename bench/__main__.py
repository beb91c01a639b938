"""`python -m bench [--quick] [names…]`: run every bench/bench_*.py, print one table of ratios and judge the goals.

Each row with a goal gets ✅ or ❌, a row without one says "report only", and the run ends with a summary that lists
every unmet goal. Exit status: 0 when every selected benchmark ran, even with unmet goals — for an instructor the
run is a report to read, and a figure that misses its goal on a loaded machine is information, not a crash; 1 when
a benchmark raised (its figures are missing); 2 for a name on the command line that matches no benchmark.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.report import Row, goal_summary, markdown_table

HERE = Path(__file__).resolve().parent

Runner = Callable[..., list[Row]]


def benchmark_names() -> list[str]:
    """Names of the benchmarks in bench/ (module names without the bench_ prefix), sorted."""
    modules = pkgutil.iter_modules([str(HERE)])
    return sorted(m.name.removeprefix("bench_") for m in modules if m.name.startswith("bench_"))


def run_all(runners: dict[str, Runner], quick: bool) -> tuple[list[Row], list[str]]:
    """Run each benchmark in turn; return all rows and the names of the benchmarks that raised."""
    rows: list[Row] = []
    failed: list[str] = []
    for name, run in runners.items():
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        try:
            rows += run(quick=quick)
        except Exception:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            failed.append(name)
        print(f"   {name}: {time.perf_counter() - started:.1f} s", flush=True)
    return rows, failed


def report(rows: list[Row], failed: Sequence[str]) -> str:
    """The table, the failed benchmarks if any, and the goal summary with the unmet goals last."""
    text = markdown_table(rows)
    if failed:
        text += "\n\nfailed: " + ", ".join(failed)
    return text + "\n\n" + goal_summary(rows)


def run_and_report(runners: dict[str, Runner], quick: bool, out: Path) -> int:
    """Run the benchmarks, print the report, save it to out; the exit status (see the module docstring)."""
    rows, failed = run_all(runners, quick=quick)
    text = report(rows, failed)
    print("\n" + text)
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n", encoding="utf-8")
    shown = out.relative_to(HERE.parent) if out.is_relative_to(HERE.parent) else out
    print(f"\nsaved to {shown}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, refuse unknown benchmark names, run the selected benchmarks and report."""
    names = benchmark_names()
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "latest.md", help="where to save the report")
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all): {', '.join(names)}")
    args = parser.parse_args(argv)
    wanted = {name.removeprefix("bench_") for name in args.names}
    unknown = [name for name in args.names if name.removeprefix("bench_") not in names]
    if unknown:
        parser.error(f"no benchmark named {', '.join(map(repr, unknown))}; the benchmarks are: {', '.join(names)}")
    selected = [name for name in names if name in wanted] if wanted else names
    runners = {name: importlib.import_module(f"bench.bench_{name}").run for name in selected}
    return run_and_report(runners, quick=args.quick, out=args.out)


if __name__ == "__main__":
    sys.exit(main())
