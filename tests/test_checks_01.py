"""The notebook-01 exercise checks accept a correct answer, reject each likely mistake with a Japanese message that
says what is wrong, and report unfinished exercises."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from course_lib.data import IRIS_CLASSES, IRIS_FEATURES
from course_lib.exercises import checks_01


def not_implemented(*args, **kwargs):
    raise NotImplementedError()


@pytest.mark.parametrize(
    "check",
    [
        checks_01.check_batch_scoring,
        checks_01.check_concurrent_client,
        checks_01.check_onnx_predict,
        checks_01.check_choose_pattern,
    ],
)
def test_an_unfinished_exercise_is_reported_as_not_implemented(check):
    with pytest.raises(NotImplementedError):
        check(not_implemented)


# Exercise 1: batch scoring. Mistakes: rows dropped, class ids, the index written, ids reordered, row by row, a typed
# time, milliseconds, only the writing timed, rows_per_s inverted, no folder created.


def names(model, frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(IRIS_CLASSES)[model.predict(frame[IRIS_FEATURES].to_numpy(dtype=np.float32))]


def score_file(model, in_path: Path, out_path: Path) -> dict:
    started = time.perf_counter()
    frame = pd.read_csv(in_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": frame["id"], "prediction": names(model, frame)}).to_csv(out_path, index=False)
    seconds = time.perf_counter() - started
    return {"rows": len(frame), "seconds": seconds, "rows_per_s": len(frame) / seconds}


def test_batch_check_accepts_a_correct_answer():
    checks_01.check_batch_scoring(score_file)


def test_batch_check_accepts_scoring_in_chunks():
    def chunked(model, in_path, out_path):
        started = time.perf_counter()
        out_path.parent.mkdir(parents=True, exist_ok=True)
        rows = 0
        for i, chunk in enumerate(pd.read_csv(in_path, chunksize=1000)):
            result = pd.DataFrame({"id": chunk["id"], "prediction": names(model, chunk)})
            result.to_csv(out_path, mode="a" if i else "w", header=i == 0, index=False)
            rows += len(chunk)
        seconds = time.perf_counter() - started
        return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds}

    checks_01.check_batch_scoring(chunked)


def test_batch_check_rejects_a_scorer_that_drops_rows():
    def first_half(model, in_path, out_path):
        started = time.perf_counter()
        frame = pd.read_csv(in_path, nrows=2500)  # a test run's limit, left in
        out_path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"id": frame["id"], "prediction": names(model, frame)}).to_csv(out_path, index=False)
        seconds = time.perf_counter() - started
        return {"rows": len(frame), "seconds": seconds, "rows_per_s": len(frame) / seconds}

    with pytest.raises(AssertionError, match="5000 行のはずですが 2500 行"):
        checks_01.check_batch_scoring(first_half)


def test_batch_check_rejects_class_ids_instead_of_names():
    def ids_only(model, in_path, out_path):
        started = time.perf_counter()
        frame = pd.read_csv(in_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        ids = model.predict(frame[IRIS_FEATURES].to_numpy(dtype=np.float32))
        pd.DataFrame({"id": frame["id"], "prediction": ids}).to_csv(out_path, index=False)
        seconds = time.perf_counter() - started
        return {"rows": len(frame), "seconds": seconds, "rows_per_s": len(frame) / seconds}

    with pytest.raises(AssertionError, match="prediction 列の .* 行がモデルの予測（クラス名）と違います"):
        checks_01.check_batch_scoring(ids_only)


def test_batch_check_rejects_the_index_written_as_a_column():
    def with_index(model, in_path, out_path):
        started = time.perf_counter()
        frame = pd.read_csv(in_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"id": frame["id"], "prediction": names(model, frame)}).to_csv(out_path)
        seconds = time.perf_counter() - started
        return {"rows": len(frame), "seconds": seconds, "rows_per_s": len(frame) / seconds}

    with pytest.raises(AssertionError, match="index=False"):
        checks_01.check_batch_scoring(with_index)


def test_batch_check_rejects_rows_sorted_by_prediction():
    def grouped(model, in_path, out_path):
        report = score_file(model, in_path, out_path)
        pd.read_csv(out_path).sort_values("prediction", kind="stable").to_csv(out_path, index=False)
        return report

    with pytest.raises(AssertionError, match="id 列は入力と同じ順番"):
        checks_01.check_batch_scoring(grouped)


def test_batch_check_rejects_scoring_row_by_row():
    def row_by_row(model, in_path, out_path):
        started = time.perf_counter()
        frame = pd.read_csv(in_path)
        predictions = [
            IRIS_CLASSES[model.predict(row.reshape(1, -1))[0]]
            for row in frame[IRIS_FEATURES].to_numpy(dtype=np.float32)
        ]
        out_path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"id": frame["id"], "prediction": predictions}).to_csv(out_path, index=False)
        seconds = time.perf_counter() - started
        return {"rows": len(frame), "seconds": seconds, "rows_per_s": len(frame) / seconds}

    with pytest.raises(AssertionError, match="まとめて推論してください"):
        checks_01.check_batch_scoring(row_by_row)


@pytest.mark.parametrize("typed_seconds", [0.05, 0.5, 2.0])
def test_batch_check_rejects_a_typed_time(typed_seconds):
    def typed(model, in_path, out_path):
        report = score_file(model, in_path, out_path)
        return {"rows": report["rows"], "seconds": typed_seconds, "rows_per_s": report["rows"] / typed_seconds}

    with pytest.raises(AssertionError, match="seconds = "):
        checks_01.check_batch_scoring(typed)


def test_batch_check_rejects_milliseconds():
    def in_ms(model, in_path, out_path):
        report = score_file(model, in_path, out_path)
        ms = report["seconds"] * 1000
        return {"rows": report["rows"], "seconds": ms, "rows_per_s": report["rows"] / ms}

    with pytest.raises(AssertionError, match="ミリ秒"):
        checks_01.check_batch_scoring(in_ms)


def test_batch_check_rejects_timing_only_the_writing():
    def writing_only(model, in_path, out_path):
        frame = pd.read_csv(in_path)
        result = pd.DataFrame({"id": frame["id"], "prediction": names(model, frame)})
        started = time.perf_counter()
        out_path.parent.mkdir(parents=True, exist_ok=True)
        result.to_csv(out_path, index=False)
        seconds = time.perf_counter() - started
        return {"rows": len(frame), "seconds": seconds, "rows_per_s": len(frame) / seconds}

    with pytest.raises(AssertionError, match="推論を含めて"):
        checks_01.check_batch_scoring(writing_only)


def test_batch_check_rejects_an_inverted_rate():
    def inverted(model, in_path, out_path):
        report = score_file(model, in_path, out_path)
        return report | {"rows_per_s": report["seconds"] / report["rows"]}

    with pytest.raises(AssertionError, match="rows_per_s は rows / seconds"):
        checks_01.check_batch_scoring(inverted)


def test_batch_check_explains_a_missing_folder():
    def no_folder(model, in_path, out_path):
        frame = pd.read_csv(in_path)
        pd.DataFrame({"id": frame["id"], "prediction": names(model, frame)}).to_csv(out_path, index=False)
        return {"rows": len(frame), "seconds": 1.0, "rows_per_s": len(frame) / 1.0}

    with pytest.raises(AssertionError, match="フォルダを作りましたか"):
        checks_01.check_batch_scoring(no_folder)


# Exercise 2: concurrent client. Mistakes: answers in completion order, a sequential loop, a thread per row
# (ignoring workers), whole JSON answers instead of class names.


def ask(url: str, row: list[float]) -> dict:
    response = requests.post(url + "/predict", json={"features": row}, timeout=30)
    response.raise_for_status()
    return response.json()


def predict_concurrently(url, rows, workers=4):
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda row: ask(url, row)["prediction"], rows))


def test_concurrent_check_accepts_a_correct_answer():
    checks_01.check_concurrent_client(predict_concurrently)


def test_concurrent_check_rejects_answers_in_completion_order():
    def completion_order(url, rows, workers=4):
        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(ask, url, row) for row in rows]
            return sorted(f.result()["prediction"] for f in as_completed(futures))  # certainly not the input order

    with pytest.raises(AssertionError, match="順番が入力と違います"):
        checks_01.check_concurrent_client(completion_order)


def test_concurrent_check_rejects_a_sequential_loop():
    def sequential(url, rows, workers=4):
        return [ask(url, row)["prediction"] for row in rows]

    with pytest.raises(AssertionError, match="1 件ずつしか届きませんでした"):
        checks_01.check_concurrent_client(sequential)


def test_concurrent_check_rejects_a_thread_per_row():
    def thread_per_row(url, rows, workers=4):
        with ThreadPoolExecutor(max_workers=len(rows)) as pool:
            return list(pool.map(lambda row: ask(url, row)["prediction"], rows))

    with pytest.raises(AssertionError, match="スレッドは workers 本"):
        checks_01.check_concurrent_client(thread_per_row)


def test_concurrent_check_rejects_whole_answers():
    def whole_answers(url, rows, workers=4):
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda row: ask(url, row), rows))

    with pytest.raises(AssertionError, match="クラス名（文字列）を返してください"):
        checks_01.check_concurrent_client(whole_answers)


# Exercise 3: ONNX Runtime. Mistakes: float64 passed as is, the probabilities returned, labels as floats.


def onnx_predict(session, rows):
    X = np.asarray(rows, dtype=np.float32).reshape(-1, len(IRIS_FEATURES))
    return np.asarray(session.run(None, {session.get_inputs()[0].name: X})[0], dtype=np.int64)


def test_onnx_check_accepts_a_correct_answer():
    checks_01.check_onnx_predict(onnx_predict)


def test_onnx_check_rejects_float64_input():
    def as_given(session, rows):
        return session.run(None, {session.get_inputs()[0].name: np.asarray(rows)})[0]

    with pytest.raises(AssertionError, match="float32 の 2 次元配列"):
        checks_01.check_onnx_predict(as_given)


def test_onnx_check_rejects_probabilities():
    def probabilities(session, rows):
        return session.run(None, {session.get_inputs()[0].name: np.asarray(rows, dtype=np.float32)})[1]

    with pytest.raises(AssertionError, match=r"形 \(200,\)"):
        checks_01.check_onnx_predict(probabilities)


def test_onnx_check_rejects_float_labels():
    def float_labels(session, rows):
        return onnx_predict(session, rows).astype(np.float64)

    with pytest.raises(AssertionError, match="クラス番号（整数）"):
        checks_01.check_onnx_predict(float_labels)


# Exercise 4: choosing a pattern. Mistakes: the network ignored, each boundary on the wrong side, the rules in the
# wrong order (a job without a deadline sent to "batch" although there is no network).


def choose_pattern(answer_within_ms, network):
    if not network:
        return "edge"
    if answer_within_ms is None or answer_within_ms >= 60_000:
        return "batch"
    return "edge" if answer_within_ms < 10 else "real-time"


def test_choose_pattern_check_accepts_a_correct_answer():
    checks_01.check_choose_pattern(choose_pattern)


def latency_only(answer_within_ms, network):
    if answer_within_ms is None or answer_within_ms >= 60_000:
        return "batch"
    return "edge" if answer_within_ms < 10 else "real-time"


def batch_only_over_a_minute(answer_within_ms, network):
    if not network:
        return "edge"
    if answer_within_ms is None or answer_within_ms > 60_000:
        return "batch"
    return "edge" if answer_within_ms < 10 else "real-time"


def edge_up_to_10_ms(answer_within_ms, network):
    if not network:
        return "edge"
    if answer_within_ms is None or answer_within_ms >= 60_000:
        return "batch"
    return "edge" if answer_within_ms <= 10 else "real-time"


def batch_first(answer_within_ms, network):
    if answer_within_ms is None:
        return "batch"
    return choose_pattern(answer_within_ms, network)


@pytest.mark.parametrize(
    ("wrong", "scene"),
    [
        (latency_only, "圏外でも動くスマホのカメラアプリ"),
        (batch_only_over_a_minute, "1 分ちょうど"),
        (edge_up_to_10_ms, "10 ms ちょうど"),
        (batch_first, "ネットワークの無い船の上"),
    ],
)
def test_choose_pattern_check_rejects_a_wrong_rule(wrong, scene):
    with pytest.raises(AssertionError, match=scene):
        checks_01.check_choose_pattern(wrong)
