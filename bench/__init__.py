"""Benchmarks: each bench_*.py module has run(quick) -> list of result rows; `python -m bench` runs them all."""
