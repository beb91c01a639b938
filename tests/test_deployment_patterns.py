"""course_lib.deployment_patterns: the batch job scores every row correctly; table and plot are well formed."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from course_lib.bench import LatencyStats
from course_lib.data import IRIS_CLASSES, IRIS_FEATURES
from course_lib.deployment_patterns import BatchResult, pattern_table, plot_patterns, score_batch_file, write_batch_file
from course_lib.models import train_iris_forest


@pytest.fixture(scope="module")
def model():
    return train_iris_forest()[0]


def test_batch_file_has_ids_and_the_four_features(tmp_path):
    path = write_batch_file(tmp_path / "in" / "rows.csv", 1234, seed=1)
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["id", *IRIS_FEATURES]
    assert len(frame) == 1234 and frame["id"].tolist() == list(range(1234))
    assert (frame[IRIS_FEATURES] >= 0).all().all()
    assert write_batch_file(tmp_path / "again.csv", 1234, seed=1).read_text() == path.read_text()


@pytest.mark.parametrize("chunk_rows", [1000, 333, 7])
def test_batch_scoring_matches_the_model_row_by_row(tmp_path, model, chunk_rows):
    path = write_batch_file(tmp_path / "rows.csv", 1000, seed=2)
    result = score_batch_file(model, path, tmp_path / "out" / "scored.csv", chunk_rows=chunk_rows)
    assert result.rows == 1000 and result.seconds > 0 and result.rows_per_s > 0
    scored = pd.read_csv(result.output)
    features = pd.read_csv(path)[IRIS_FEATURES].to_numpy(dtype=np.float32)
    expected = model.predict(features)
    assert scored["id"].tolist() == list(range(1000))
    assert scored["class_id"].tolist() == expected.tolist()
    assert scored["prediction"].tolist() == [IRIS_CLASSES[c] for c in expected]
    probabilities = scored[[f"p_{name}" for name in IRIS_CLASSES]].to_numpy()
    np.testing.assert_allclose(probabilities, model.predict_proba(features), atol=1e-4)


def test_table_and_plot(tmp_path):
    batch = BatchResult(rows=1000, seconds=0.5, output=tmp_path / "x.csv")
    realtime = LatencyStats.from_seconds([0.004, 0.005, 0.006], wall_s=0.015)
    edge = LatencyStats.from_seconds([0.0001, 0.0002, 0.0003], wall_s=0.0006)
    table = pattern_table(batch, realtime, edge, in_process=edge)
    assert list(table.index) == ["batch", "real-time", "edge", "(reference) scikit-learn in process"]
    assert table.loc["batch", "predictions_per_s"] == pytest.approx(2000)
    assert table.loc["batch", "wait_ms"] == pytest.approx(500)
    assert table.loc["real-time", "wait_ms"] == pytest.approx(5.0)
    assert table.loc["edge", "source_order"].startswith("ms")
    fig = plot_patterns(table)
    assert len(fig.axes[0].get_yticklabels()) == 4
