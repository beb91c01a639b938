"""Deployment patterns of notebook 01 on the same iris forest: batch file scoring, HTTP (iris_flask), ONNX in process.

The three single-row paths (HTTP request, scikit-learn call, ONNX Runtime call) take turns call by call
(course_lib.bench.interleaved_calls), so they see the same machine load; the batch job runs right after them in the same
process.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import requests

from bench.report import Goal, Row
from course_lib.apps.iris_flask import create_app
from course_lib.bench import interleaved_calls
from course_lib.deployment_patterns import score_batch_file, write_batch_file
from course_lib.models import train_iris_forest
from course_lib.serialization import export_sklearn_onnx, onnx_session
from course_lib.servers import serve

NAME = "deployment_patterns"
BODY = {"features": [5.1, 3.5, 1.4, 0.2]}


def run(quick: bool = False) -> list[Row]:
    """Measure the three patterns; quick = fewer calls and a smaller batch file."""
    n, n_rows = (40, 20_000) if quick else (300, 200_000)
    model, _ = train_iris_forest()
    row = np.asarray([BODY["features"]], dtype=np.float32)
    with tempfile.TemporaryDirectory() as folder:
        session = onnx_session(export_sklearn_onnx(model, Path(folder) / "iris.onnx"))
        name = session.get_inputs()[0].name
        with serve(create_app(model)) as server, requests.Session() as http:
            url = server.url + "/predict"
            calls = {
                "sklearn": lambda: model.predict_proba(row),
                "onnx": lambda: session.run(None, {name: row}),
                "http": lambda: http.post(url, json=BODY, timeout=30).raise_for_status(),
            }
            stats = interleaved_calls(calls, n=n, progress=True, desc="sklearn / onnx / http")
        batch = score_batch_file(model, write_batch_file(Path(folder) / "rows.csv", n_rows), Path(folder) / "out.csv")
    p50 = {label: s.p50 for label, s in stats.items()}
    return [
        Row(NAME, "real-time HTTP p50 / batch ms per row", p50["http"] / batch.ms_per_row, goal=Goal(">=", 100)),
        Row(NAME, "real-time HTTP p50 / in-process scikit-learn p50 (HTTP overhead)", p50["http"] / p50["sklearn"]),
        Row(
            NAME,
            "scikit-learn p50 / ONNX Runtime p50 (single row, edge)",
            p50["sklearn"] / p50["onnx"],
            goal=Goal(">=", 10),
        ),
        Row(NAME, f"batch throughput ({n_rows:,} rows, CSV in and out)", batch.rows_per_s, unit="rows/s"),
        Row(NAME, "real-time HTTP p50, 1 client (source: tens of ms – s)", p50["http"], unit="ms"),
        Row(NAME, "edge ONNX Runtime p50, 1 row (source: ms)", p50["onnx"] * 1000.0, unit="µs"),
    ]
