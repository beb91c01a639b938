"""Checks for the exercises of notebook 01 (lifecycle and deployment patterns): real files, servers and ONNX sessions."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from course_lib.data import IRIS_CLASSES, IRIS_FEATURES, iris_rows
from course_lib.deployment_patterns import write_batch_file
from course_lib.models import train_iris_forest


@lru_cache(maxsize=1)
def _model() -> Any:
    """The source's forest, trained once per kernel."""
    return train_iris_forest()[0]


def check_batch_scoring(score_file: Callable[[Any, Path, Path], dict[str, float]]) -> None:
    """Exercise 1: score_file(model, in_path, out_path) writes id,prediction for every row and reports throughput."""
    model = _model()
    with tempfile.TemporaryDirectory() as folder:
        in_path = write_batch_file(Path(folder) / "rows.csv", 5000, seed=11)
        out_path = Path(folder) / "out" / "scored.csv"
        report = score_file(model, in_path, out_path)
        assert out_path.exists(), "出力ファイル（out_path）が作られていません（フォルダも作りましたか？）"
        scored = pd.read_csv(out_path)
        features = pd.read_csv(in_path)[IRIS_FEATURES].to_numpy(dtype=np.float32)
    for column in ("id", "prediction"):
        assert column in scored.columns, f"出力に {column} 列がありません: {list(scored.columns)}"
    assert len(scored) == 5000, f"出力は 5000 行のはずですが {len(scored)} 行でした"
    assert scored["id"].tolist() == list(range(5000)), "id 列は入力と同じ順番（0, 1, 2, ...）にしてください"
    expected = [IRIS_CLASSES[c] for c in model.predict(features)]
    wrong = int((scored["prediction"].to_numpy() != np.asarray(expected)).sum())
    assert wrong == 0, f"prediction 列の {wrong} 行がモデルの予測（クラス名）と違います"
    assert isinstance(report, dict), f"戻り値は dict にしてください（{type(report).__name__} でした）"
    for key in ("rows", "seconds", "rows_per_s"):
        assert key in report, f"戻り値に \"{key}\" がありません: {report}"
    assert report["rows"] == 5000, f"rows は 5000 のはずですが {report['rows']} でした"
    assert report["seconds"] > 0, "seconds は処理にかかった秒数（0 より大きい）にしてください"
    assert abs(report["rows_per_s"] - report["rows"] / report["seconds"]) <= 1e-6 * report["rows_per_s"], (
        "rows_per_s は rows / seconds にしてください"
    )


def check_concurrent_client(predict_concurrently: Callable[..., list[str]]) -> None:
    """Exercise 2: predict_concurrently(url, rows, workers) answers every row over HTTP, in the input order."""
    from course_lib.apps.iris_flask import create_app
    from course_lib.servers import serve

    model = _model()
    rows = iris_rows(40, seed=12).tolist()
    expected = [IRIS_CLASSES[c] for c in model.predict(np.asarray(rows, dtype=np.float32))]
    with serve(create_app(model)) as server:
        answers = predict_concurrently(server.url, rows, workers=4)
        single = predict_concurrently(server.url, rows[:1], workers=1)
    assert isinstance(answers, list), f"戻り値はリストにしてください（{type(answers).__name__} でした）"
    assert len(answers) == len(rows), f"{len(rows)} 行に対して {len(answers)} 件の答えが返りました"
    assert answers == expected, (
        "答えがモデルの予測と違うか、順番が入力と違います（並列に送っても、答えは入力の順に並べてください）"
    )
    assert single == expected[:1], f"1 行だけのときの答えが違います: {single}"


def check_onnx_predict(onnx_predict: Callable[[Any, Any], np.ndarray]) -> None:
    """Exercise 3: onnx_predict(session, rows) gives the model's class ids for float64 arrays and plain lists."""
    from course_lib.serialization import export_sklearn_onnx, onnx_session

    model = _model()
    rows = iris_rows(200, seed=13).astype(np.float64)
    with tempfile.TemporaryDirectory() as folder:
        session = onnx_session(export_sklearn_onnx(model, Path(folder) / "iris.onnx", n_features=4))
        many = onnx_predict(session, rows)
        one = onnx_predict(session, [[5.1, 3.5, 1.4, 0.2]])
    many = np.asarray(many)
    assert many.shape == (200,), f"200 行に対して形 (200,) の配列を返してください（{many.shape} でした）"
    assert np.issubdtype(many.dtype, np.integer), f"クラス番号（整数）を返してください（dtype {many.dtype}）"
    wrong = int((many != model.predict(rows.astype(np.float32))).sum())
    assert wrong == 0, f"{wrong} 行の予測が scikit-learn のモデルと違います"
    assert np.asarray(one).tolist() == [0], f"[[5.1, 3.5, 1.4, 0.2]]（リスト）の答えは [0] のはずですが {one} でした"


SCENARIOS = [
    ("毎晩、全顧客の解約スコアを更新する", None, True, "batch"),
    ("週に一度の需要予測レポート（24 時間以内に出ればよい）", 86_400_000, True, "batch"),
    ("決済のたびに不正検知（200 ms 以内）", 200, True, "real-time"),
    ("EC サイトのレコメンド（100 ms 以内）", 100, True, "real-time"),
    ("圏外でも動くスマホのカメラアプリ", 100, False, "edge"),
    ("工場の機器で 5 ms 以内に異常を判定", 5, True, "edge"),
]


def check_choose_pattern(choose_pattern: Callable[[float | None, bool], str]) -> None:
    """Exercise 4: choose_pattern(answer_within_ms, network) follows the rules stated in the exercise."""
    for title, within_ms, network, expected in SCENARIOS:
        got = choose_pattern(within_ms, network)
        assert got == expected, (
            f"「{title}」（answer_within_ms={within_ms}, network={network}）は \"{expected}\" のはずですが \"{got}\" でした"
        )
