"""bench.report and the `python -m bench` runner (the runner itself is exercised by `make bench`)."""

from __future__ import annotations

import os

from bench.__main__ import main
from bench.report import Row, machine_line, markdown_table


def test_table_names_the_machine_and_formats_rows():
    table = markdown_table([Row("onnx_vs_eager", "eager p50 / onnxruntime p50", 2.345, goal="≥ 1.5")])
    lines = table.splitlines()
    assert lines[0] == machine_line() and f"{os.cpu_count()} cores" in lines[0]
    assert lines[-1] == "| onnx_vs_eager | eager p50 / onnxruntime p50 | 2.35 × | ≥ 1.5 |"


def test_runner_with_no_matching_benchmark_prints_an_empty_table(capsys, tmp_path):
    out_file = tmp_path / "table.md"
    assert main(["--out", str(out_file), "no-such-benchmark"]) == 0
    out = capsys.readouterr().out
    assert "| benchmark | metric | measured | goal |" in out and f"saved to {out_file}" in out
    assert out_file.read_text(encoding="utf-8").startswith(machine_line())
