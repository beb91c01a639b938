"""Checks for the exercises of notebook 01 (lifecycle and deployment patterns): real files, servers, ONNX sessions."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from course_lib.data import IRIS_CLASSES, IRIS_FEATURES, iris_rows
from course_lib.deployment_patterns import write_batch_file
from course_lib.models import train_iris_forest

BATCH_ROWS = 5000
# The batch check's model takes at least this long per run (seconds), so a measured time can be told from a typed one:
# no constant is >= the longer delay and <= the whole call with the shorter one.
MODEL_DELAYS_S = (0.1, 1.0)
MAX_MODEL_CALLS = 20  # more calls than this for 5,000 rows is scoring row by row, not a batch
HOLD_S = 1.0  # the concurrency check holds the first request this long unless more than `workers` arrive earlier


@lru_cache(maxsize=1)
def _model() -> Any:
    """The source's forest, trained once per kernel."""
    return train_iris_forest()[0]


class _SlowModel:
    """The real model, made to take at least delay_s per batch job (its first call), and counting its calls."""

    def __init__(self, model: Any, delay_s: float) -> None:
        self._model = model
        self._delay_s = delay_s
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        """Everything else (classes_, n_features_in_, …) is the real model's."""
        return getattr(self._model, name)

    def _called(self) -> None:
        """Count a call, refuse row-by-row scoring, and wait on the first call."""
        self.calls += 1
        assert self.calls <= MAX_MODEL_CALLS, (
            f"モデルが {MAX_MODEL_CALLS} 回を超えて呼ばれました。"
            "1 行ずつではなく、全行（またはチャンクごと）をまとめて推論してください"
        )
        if self.calls == 1:
            time.sleep(self._delay_s)

    def predict(self, X: Any) -> np.ndarray:
        """The real model's class ids."""
        self._called()
        return self._model.predict(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        """The real model's probabilities."""
        self._called()
        return self._model.predict_proba(X)


def _run_scoring(score_file: Callable, in_path: Path, out_path: Path, delay_s: float) -> tuple[Any, float]:
    """Call the learner's score_file with a model that takes delay_s; return its report and the call's duration."""
    started = time.perf_counter()
    try:
        report = score_file(_SlowModel(_model(), delay_s), in_path, out_path)
    except OSError as exc:
        raise AssertionError(f"ファイルの読み書きでエラー（{exc}）。out_path のフォルダを作りましたか？") from exc
    return report, time.perf_counter() - started


def _check_scored_file(out_path: Path, in_path: Path) -> None:
    """The output has exactly id and prediction, every row in input order, with the model's class names."""
    assert out_path.exists(), "出力ファイル（out_path）が作られていません"
    scored = pd.read_csv(out_path)
    assert list(scored.columns) == ["id", "prediction"], (
        f"出力の列は id と prediction の 2 つにしてください（{list(scored.columns)}）。"
        "to_csv に index=False を付けましたか？"
    )
    assert len(scored) == BATCH_ROWS, f"出力は {BATCH_ROWS} 行のはずですが {len(scored)} 行でした"
    assert scored["id"].tolist() == list(range(BATCH_ROWS)), "id 列は入力と同じ順番（0, 1, 2, ...）にしてください"
    features = pd.read_csv(in_path)[IRIS_FEATURES].to_numpy(dtype=np.float32)
    expected = np.asarray(IRIS_CLASSES)[_model().predict(features)]
    wrong = int((scored["prediction"].to_numpy() != expected).sum())
    assert wrong == 0, f"prediction 列の {wrong} 行がモデルの予測（クラス名）と違います"


def _check_report(report: Any, elapsed_s: float, delay_s: float) -> None:
    """rows, seconds and rows_per_s are there; seconds was measured around the work, within this call."""
    assert isinstance(report, dict), f"戻り値は dict にしてください（{type(report).__name__} でした）"
    for key in ("rows", "seconds", "rows_per_s"):
        assert key in report, f'戻り値に "{key}" がありません: {report}'
    assert report["rows"] == BATCH_ROWS, f"rows は {BATCH_ROWS} のはずですが {report['rows']} でした"
    seconds = report["seconds"]
    assert seconds <= elapsed_s, (
        f"seconds = {seconds:.3g} ですが、関数の呼び出し全体でも {elapsed_s:.3g} 秒でした。"
        "time.perf_counter() の差を秒のまま返してください（ミリ秒や、決まった値になっていませんか？）"
    )
    assert seconds >= delay_s, (
        f"seconds = {seconds:.3g} ですが、このチェックのモデルは推論だけで {delay_s} 秒かかるようにしてあります。"
        "読み込みから書き込みまで（推論を含めて）を測ってください"
    )
    assert abs(report["rows_per_s"] - report["rows"] / seconds) <= 1e-6 * report["rows_per_s"], (
        "rows_per_s は rows / seconds にしてください"
    )


def check_batch_scoring(score_file: Callable[[Any, Path, Path], dict[str, float]]) -> None:
    """Exercise 1: score_file(model, in_path, out_path) writes id,prediction for every row and reports its own time."""
    with tempfile.TemporaryDirectory() as folder:
        in_path = write_batch_file(Path(folder) / "rows.csv", BATCH_ROWS, seed=11)
        for run, delay_s in enumerate(MODEL_DELAYS_S):
            out_path = Path(folder) / f"out{run}" / "scored.csv"
            report, elapsed_s = _run_scoring(score_file, in_path, out_path, delay_s)
            _check_scored_file(out_path, in_path)
            _check_report(report, elapsed_s, delay_s)


class _InFlight:
    """WSGI middleware around the real API: the most /predict requests it held at once.

    The first request waits until more than `workers` are in flight or HOLD_S passes, so a client that sends in
    parallel is seen with two or more at once, and a sequential one never is.
    """

    def __init__(self, app: Any, workers: int) -> None:
        self.app = app
        self.workers = workers
        self.count = 0
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()
        self.crowded = threading.Event()

    def __call__(self, environ: dict, start_response: Any) -> Any:
        """Count the request while the app handles it (the answer is sent after this returns)."""
        if environ.get("PATH_INFO") != "/predict":
            return self.app(environ, start_response)
        with self.lock:
            self.count += 1
            first = self.count == 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            if self.active > self.workers:
                self.crowded.set()
        try:
            if first:
                self.crowded.wait(HOLD_S)
            return self.app(environ, start_response)
        finally:
            with self.lock:
                self.active -= 1


def check_concurrent_client(predict_concurrently: Callable[..., list[str]]) -> None:
    """Exercise 2: predict_concurrently(url, rows, workers) answers every row over HTTP in input order, in parallel."""
    from course_lib.apps.iris_flask import create_app
    from course_lib.servers import serve

    rows = iris_rows(40, seed=12).tolist()
    expected = [IRIS_CLASSES[c] for c in _model().predict(np.asarray(rows, dtype=np.float32))]
    recorder = _InFlight(create_app(_model()), workers=4)
    with serve(recorder) as server:
        answers = predict_concurrently(server.url, rows, workers=4)
        single = predict_concurrently(server.url, rows[:1], workers=1)
    assert isinstance(answers, list), f"戻り値はリストにしてください（{type(answers).__name__} でした）"
    assert len(answers) == len(rows), f"{len(rows)} 行に対して {len(answers)} 件の答えが返りました"
    assert all(isinstance(a, str) for a in answers), f"予測したクラス名（文字列）を返してください: {answers[0]!r}"
    assert answers == expected, (
        "答えがモデルの予測と違うか、順番が入力と違います（並列に送っても、答えは入力の順に並べてください）"
    )
    assert single == expected[:1], f"1 行だけのときの答えが違います: {single}"
    assert recorder.max_active >= 2, (
        "サーバーには 1 件ずつしか届きませんでした（workers 本のスレッドから同時に送ってください）"
    )
    assert recorder.max_active <= 4, (
        f"workers=4 なのに、サーバーには同時に {recorder.max_active} 件が届きました"
        "（スレッドは workers 本にしてください）"
    )


def _onnx_labels(onnx_predict: Callable[[Any, Any], Any], session: Any, rows: Any) -> np.ndarray:
    """The learner's answer as an array; ONNX Runtime's input errors become a hint."""
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument

    try:
        return np.asarray(onnx_predict(session, rows))
    except (InvalidArgument, Fail) as exc:
        raise AssertionError(
            f"ONNX Runtime がエラーを返しました（{str(exc)[:160]}）。入力は float32 の 2 次元配列にしましたか？"
        ) from exc


def check_onnx_predict(onnx_predict: Callable[[Any, Any], np.ndarray]) -> None:
    """Exercise 3: onnx_predict(session, rows) gives the model's class ids for float64 arrays and plain lists."""
    from course_lib.serialization import export_sklearn_onnx, onnx_session

    rows = iris_rows(200, seed=13).astype(np.float64)
    with tempfile.TemporaryDirectory() as folder:
        session = onnx_session(export_sklearn_onnx(_model(), Path(folder) / "iris.onnx", n_features=4))
        many = _onnx_labels(onnx_predict, session, rows)
        one = _onnx_labels(onnx_predict, session, [[5.1, 3.5, 1.4, 0.2]])
    assert many.shape == (200,), f"200 行に対して形 (200,) の配列を返してください（{many.shape} でした）"
    assert np.issubdtype(many.dtype, np.integer), f"クラス番号（整数）を返してください（dtype {many.dtype}）"
    wrong = int((many != _model().predict(rows.astype(np.float32))).sum())
    assert wrong == 0, f"{wrong} 行の予測が scikit-learn のモデルと違います"
    assert one.tolist() == [0], f"[[5.1, 3.5, 1.4, 0.2]]（リスト）の答えは [0] のはずですが {one.tolist()} でした"


# (scene, answer_within_ms, network, expected): the rules' typical cases, their boundaries and their order.
SCENARIOS = [
    ("毎晩、全顧客の解約スコアを更新する", None, True, "batch"),
    ("週に一度の需要予測レポート（24 時間以内に出ればよい）", 86_400_000, True, "batch"),
    ("1 分ちょうど（60,000 ms）まで待てる在庫の再計算", 60_000, True, "batch"),
    ("決済のたびに不正検知（200 ms 以内）", 200, True, "real-time"),
    ("EC サイトのレコメンド（100 ms 以内）", 100, True, "real-time"),
    ("1 分弱（59,999 ms）以内に返す問い合わせの自動振り分け", 59_999, True, "real-time"),
    ("構内のサーバーで 10 ms ちょうどまでに判定すればよい検品", 10, True, "real-time"),
    ("圏外でも動くスマホのカメラアプリ", 100, False, "edge"),
    ("工場の機器で 5 ms 以内に異常を判定", 5, True, "edge"),
    ("ネットワークの無い船の上で、夜にまとめて集計する記録計（急がない）", None, False, "edge"),
    ("圏外の山小屋の機器で、1 時間ごとにまとめて判定", 3_600_000, False, "edge"),
]


def check_choose_pattern(choose_pattern: Callable[[float | None, bool], str]) -> None:
    """Exercise 4: choose_pattern(answer_within_ms, network) follows the rules stated in the exercise, in order."""
    for title, within_ms, network, expected in SCENARIOS:
        got = choose_pattern(within_ms, network)
        assert got == expected, (
            f"「{title}」（answer_within_ms={within_ms}, network={network}）は "
            f'"{expected}" のはずですが "{got}" でした'
            "（ルールは上から順に当てはめ、「以上」「未満」の境目に注意）"
        )
