"""course_lib.deployment_patterns: the batch job scores every row as the model does, in chunks, and times the whole job;
the Japanese summary and the reading table show each time with its unit; the table shows each pattern's own
statistic; the plot draws every pattern."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import math
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from course_lib.bench import LatencyStats
from course_lib.data import IRIS_CLASSES, IRIS_FEATURES
from course_lib.deployment_patterns import (
    PATTERN_LABELS,
    SOURCE_ORDERS,
    BatchResult,
    describe_latency,
    format_ms,
    pattern_table,
    plot_patterns,
    score_batch_file,
    table_for_reading,
    write_batch_file,
)
from tests.helpers import draw_strictly

CALL_S = 0.03


class RecordingModel:
    """The real forest, with CALL_S of extra time per predict_proba call and a record of each call's row count."""

    def __init__(self, model) -> None:
        self.model = model
        self.classes_ = model.classes_
        self.batch_sizes: list[int] = []

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        self.batch_sizes.append(len(features))
        time.sleep(CALL_S)
        return self.model.predict_proba(features)


def test_batch_file_has_ids_and_the_four_features_and_is_reproducible(tmp_path):
    path = write_batch_file(tmp_path / "in" / "rows.csv", 1234, seed=1)
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["id", *IRIS_FEATURES]
    assert len(frame) == 1234 and frame["id"].tolist() == list(range(1234))
    assert (frame[IRIS_FEATURES] >= 0).all().all()
    assert write_batch_file(tmp_path / "again.csv", 1234, seed=1).read_text() == path.read_text()
    assert write_batch_file(tmp_path / "other.csv", 1234, seed=2).read_text() != path.read_text()


@pytest.mark.parametrize("chunk_rows", [1000, 333, 7])
def test_batch_scoring_matches_the_model_row_by_row(tmp_path, forest, chunk_rows):
    path = write_batch_file(tmp_path / "rows.csv", 1000, seed=2)
    result = score_batch_file(forest, path, tmp_path / "out" / "scored.csv", chunk_rows=chunk_rows)
    scored = pd.read_csv(result.output)
    features = pd.read_csv(path)[IRIS_FEATURES].to_numpy(dtype=np.float32)
    expected = forest.predict(features)
    assert result.rows == len(scored) == 1000
    assert scored["id"].tolist() == list(range(1000))
    assert scored["class_id"].tolist() == expected.tolist()
    assert scored["prediction"].tolist() == [IRIS_CLASSES[c] for c in expected]
    assert len(set(expected)) == 3  # the file exercises every class, so a constant answer would fail
    probabilities = scored[[f"p_{name}" for name in IRIS_CLASSES]].to_numpy()
    np.testing.assert_allclose(probabilities, forest.predict_proba(features), atol=1e-4)


def test_batch_job_scores_in_chunks_and_its_time_spans_every_chunk(tmp_path, forest):
    recording = RecordingModel(forest)
    path = write_batch_file(tmp_path / "rows.csv", 1000, seed=3)
    started = time.perf_counter()
    result = score_batch_file(recording, path, tmp_path / "scored.csv", chunk_rows=120)
    outer_s = time.perf_counter() - started
    assert recording.batch_sizes == [120] * 8 + [40]  # never the whole file at once
    assert len(pd.read_csv(result.output)) == 1000
    # every chunk's model call is inside the job's time (timing only one chunk would give about a ninth of it)
    assert CALL_S * 9 <= result.seconds <= outer_s
    assert result.rows_per_s == pytest.approx(1000 / result.seconds)
    assert result.ms_per_row == pytest.approx(result.seconds * 1000 / 1000)


def test_table_shows_each_pattern_s_own_statistic(tmp_path, forest):
    path = write_batch_file(tmp_path / "rows.csv", 500, seed=4)
    batch = score_batch_file(forest, path, tmp_path / "scored.csv")
    # Skewed samples: mean, p50 and p95 differ, so a table that shows the wrong statistic fails.
    realtime = LatencyStats.from_seconds([0.003, 0.004, 0.005, 0.006, 0.100], wall_s=0.2)
    edge = LatencyStats.from_seconds([0.0001, 0.0002, 0.0003, 0.0004, 0.0100], wall_s=0.02)
    in_process = LatencyStats.from_seconds([0.001, 0.001, 0.002, 0.009], wall_s=0.04)
    table = pattern_table(batch, realtime, edge, in_process=in_process)
    assert list(table.index) == ["batch", "real-time", "edge", "(reference) scikit-learn in process"]
    assert table.loc["batch", "wait_ms"] == pytest.approx(batch.seconds * 1000)  # the whole job is the wait
    assert table.loc["batch", "ms_per_prediction"] == pytest.approx(batch.seconds * 1000 / 500)
    assert table.loc["batch", "predictions_per_s"] == pytest.approx(500 / batch.seconds)
    assert math.isnan(table.loc["batch", "p95_ms"])
    for name, stats in [("real-time", realtime), ("edge", edge), ("(reference) scikit-learn in process", in_process)]:
        assert stats.p50 != pytest.approx(float(stats.samples_ms.mean()))  # the samples tell p50 and mean apart
        assert table.loc[name, "wait_ms"] == pytest.approx(stats.p50)
        assert table.loc[name, "p95_ms"] == pytest.approx(stats.p95)
        assert table.loc[name, "predictions_per_s"] == pytest.approx(stats.n / stats.wall_s)
    assert table.loc["real-time", "wait_ms"] == pytest.approx(5.0)
    assert table.loc["edge", "p95_ms"] == pytest.approx(0.4 + 0.8 * 9.6)
    assert [table.loc[name, "source_order"] for name in SOURCE_ORDERS] == [text for *_, text in SOURCE_ORDERS.values()]


def test_plot_draws_every_pattern_within_its_axes(tmp_path, forest):
    path = write_batch_file(tmp_path / "rows.csv", 200, seed=5)
    batch = score_batch_file(forest, path, tmp_path / "scored.csv")
    realtime = LatencyStats.from_seconds([0.004, 0.005, 0.006], wall_s=0.015)
    edge = LatencyStats.from_seconds([0.0001, 0.0002, 0.0003], wall_s=0.0006)
    table = pattern_table(batch, realtime, edge)
    fig = plot_patterns(table)
    wait_ax, rate_ax = fig.axes
    assert [label.get_text() for label in wait_ax.get_yticklabels()] == [PATTERN_LABELS[name] for name in table.index]
    low, high = wait_ax.get_xlim()
    assert low < min(table["wait_ms"]) and max(table["wait_ms"]) < high
    assert wait_ax.get_xscale() == rate_ax.get_xscale() == "log"
    low, high = rate_ax.get_xlim()
    assert low < min(table["predictions_per_s"]) and max(table["predictions_per_s"]) < high
    assert len(rate_ax.patches) == len(table)  # one throughput bar per pattern
    draw_strictly(fig)  # its Japanese labels and format_ms's "µs" have every glyph


@pytest.mark.parametrize(
    ("ms", "text"),
    [(2500.0, "2.50 s"), (81.2, "81.2 ms"), (1.0, "1.0 ms"), (0.3, "300 µs"), (0.0125, "12.5 µs"), (-0.5, "-500 µs")],
)
def test_format_ms_picks_the_unit(ms, text):
    assert format_ms(ms) == text


def test_describe_latency_is_one_japanese_line_with_units():
    stats = LatencyStats.from_seconds([0.001, 0.002, 0.003, 0.004, 0.100], wall_s=0.5)
    line = describe_latency(stats)
    assert line.startswith("5 回: 平均 22.0 ms、中央値 3.0 ms、p95 80.8 ms、")
    assert "最小 1.0 ms、最大 100.0 ms" in line and line.endswith("、1 秒あたり 10 回")
    assert "1 秒あたり" not in describe_latency(LatencyStats.from_seconds([0.001, 0.002]))  # no wall time: no rate


def test_table_for_reading_has_japanese_labels_a_dash_for_the_batch_p95_and_units_on_every_time():
    batch = BatchResult(rows=500, seconds=2.5, output=Path("scored.csv"))
    realtime = LatencyStats.from_seconds([0.003, 0.004, 0.005, 0.006, 0.100], wall_s=0.2)
    edge = LatencyStats.from_seconds([0.0001, 0.0002, 0.0003, 0.0004, 0.0100], wall_s=0.02)
    shown = table_for_reading(pattern_table(batch, realtime, edge))
    assert list(shown.index) == ["バッチ", "リアルタイム", "エッジ"] and shown.index.name == "パターン"
    assert list(shown.columns) == ["測り方", "答えまでの時間", "p95", "1 推論あたり", "推論/秒", "教科書の目安"]
    assert shown.loc["バッチ", "p95"] == "—"  # a batch job has one duration, no distribution
    assert shown.loc["バッチ", "答えまでの時間"] == "2.50 s" and shown.loc["バッチ", "1 推論あたり"] == "5.0 ms"
    assert shown.loc["リアルタイム", "答えまでの時間"] == "5.0 ms" and shown.loc["リアルタイム", "p95"] == "81.2 ms"
    assert shown.loc["エッジ", "答えまでの時間"] == "300 µs"
    times = [shown.loc[name, column] for name in shown.index for column in ["答えまでの時間", "p95", "1 推論あたり"]]
    assert all(re.fullmatch(r"\d+\.?\d* (s|ms|µs)", t) for t in times if t != "—"), times
    assert shown.loc["バッチ", "推論/秒"] == "200" and shown.loc["リアルタイム", "推論/秒"] == "25"
    with_reference = table_for_reading(pattern_table(batch, realtime, edge, in_process=edge))
    assert list(with_reference.index)[-1] == "（参考）scikit-learn"
