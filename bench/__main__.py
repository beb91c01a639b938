"""`python -m bench [--quick] [names…]`: run every bench/bench_*.py and print one table of ratios."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path

from bench.report import Row, markdown_table

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks, print the table and save it to bench/results/latest.md."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "latest.md", help="where to save the table")
    parser.add_argument("names", nargs="*", help="benchmark module names without bench_ (default: all)")
    args = parser.parse_args(argv)
    modules = sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if m.name.startswith("bench_"))
    if args.names:
        modules = [m for m in modules if m.removeprefix("bench_") in args.names]
    rows: list[Row] = []
    failed: list[str] = []
    for name in modules:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        try:
            rows += importlib.import_module(f"bench.{name}").run(quick=args.quick)
        except Exception:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            failed.append(name)
        print(f"   {name}: {time.perf_counter() - started:.1f} s", flush=True)
    table = markdown_table(rows)
    if failed:
        table += "\n\nfailed: " + ", ".join(failed)
    print("\n" + table)
    out = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table + "\n", encoding="utf-8")
    shown = out.relative_to(HERE.parent) if out.is_relative_to(HERE.parent) else out
    print(f"\nsaved to {shown}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
