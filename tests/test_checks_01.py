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


def mistakes(check, *cases: tuple) -> list:
    """(wrong answer, expected message) pairs for one check, as (check, wrong, message) named "exercise: wrong"."""
    exercise = check.__name__.removeprefix("check_")
    return [pytest.param(check, wrong, message, id=f"{exercise}: {wrong.__name__}") for wrong, message in cases]


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


def write(out_path: Path, frame: pd.DataFrame, predictions, index: bool = False) -> None:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": frame["id"], "prediction": predictions}).to_csv(out_path, index=index)


def report(rows: int, started: float) -> dict:
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds}


def score_file(model, in_path: Path, out_path: Path) -> dict:
    started = time.perf_counter()
    frame = pd.read_csv(in_path)
    write(out_path, frame, names(model, frame))
    return report(len(frame), started)


def chunked(model, in_path, out_path):
    started = time.perf_counter()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    for i, chunk in enumerate(pd.read_csv(in_path, chunksize=1000)):
        result = pd.DataFrame({"id": chunk["id"], "prediction": names(model, chunk)})
        result.to_csv(out_path, mode="a" if i else "w", header=i == 0, index=False)
        rows += len(chunk)
    return report(rows, started)


@pytest.mark.parametrize("answer", [score_file, chunked], ids=["whole file", "in chunks"])
def test_batch_check_accepts_a_correct_answer(answer):
    checks_01.check_batch_scoring(answer)


def first_half(model, in_path, out_path):
    started = time.perf_counter()
    frame = pd.read_csv(in_path, nrows=2500)  # a test run's limit, left in
    write(out_path, frame, names(model, frame))
    return report(len(frame), started)


def ids_only(model, in_path, out_path):
    started = time.perf_counter()
    frame = pd.read_csv(in_path)
    write(out_path, frame, model.predict(frame[IRIS_FEATURES].to_numpy(dtype=np.float32)))
    return report(len(frame), started)


def with_index(model, in_path, out_path):
    started = time.perf_counter()
    frame = pd.read_csv(in_path)
    write(out_path, frame, names(model, frame), index=True)
    return report(len(frame), started)


def grouped(model, in_path, out_path):
    answer = score_file(model, in_path, out_path)
    pd.read_csv(out_path).sort_values("prediction", kind="stable").to_csv(out_path, index=False)
    return answer


def row_by_row(model, in_path, out_path):
    started = time.perf_counter()
    frame = pd.read_csv(in_path)
    features = frame[IRIS_FEATURES].to_numpy(dtype=np.float32)
    write(out_path, frame, [IRIS_CLASSES[model.predict(row.reshape(1, -1))[0]] for row in features])
    return report(len(frame), started)


def typed(seconds: float):
    def typed_time(model, in_path, out_path):
        rows = score_file(model, in_path, out_path)["rows"]
        return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds}

    typed_time.__name__ = f"typed_{seconds}_s"
    return typed_time


def in_ms(model, in_path, out_path):
    answer = score_file(model, in_path, out_path)
    ms = answer["seconds"] * 1000
    return {"rows": answer["rows"], "seconds": ms, "rows_per_s": answer["rows"] / ms}


def writing_only(model, in_path, out_path):
    frame = pd.read_csv(in_path)
    predictions = names(model, frame)
    started = time.perf_counter()
    write(out_path, frame, predictions)
    return report(len(frame), started)


def inverted(model, in_path, out_path):
    answer = score_file(model, in_path, out_path)
    return answer | {"rows_per_s": answer["seconds"] / answer["rows"]}


def no_folder(model, in_path, out_path):
    frame = pd.read_csv(in_path)
    pd.DataFrame({"id": frame["id"], "prediction": names(model, frame)}).to_csv(out_path, index=False)
    return {"rows": len(frame), "seconds": 1.0, "rows_per_s": len(frame) / 1.0}


BATCH_MISTAKES = mistakes(
    checks_01.check_batch_scoring,
    (first_half, "5000 行のはずですが 2500 行"),
    (ids_only, "prediction 列の .* 行がモデルの予測（クラス名）と違います"),
    (with_index, "index=False"),
    (grouped, "id 列は入力と同じ順番"),
    (row_by_row, "まとめて推論してください"),
    (typed(0.05), "seconds = "),
    (typed(0.5), "seconds = "),
    (typed(2.0), "seconds = "),
    (in_ms, "ミリ秒"),
    (writing_only, "推論を含めて"),
    (inverted, "rows_per_s は rows / seconds"),
    (no_folder, "フォルダを作りましたか"),
)


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


def completion_order(url, rows, workers=4):
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(ask, url, row) for row in rows]
        return sorted(f.result()["prediction"] for f in as_completed(futures))  # certainly not the input order


def sequential(url, rows, workers=4):
    return [ask(url, row)["prediction"] for row in rows]


def thread_per_row(url, rows, workers=4):
    with ThreadPoolExecutor(max_workers=len(rows)) as pool:
        return list(pool.map(lambda row: ask(url, row)["prediction"], rows))


def whole_answers(url, rows, workers=4):
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda row: ask(url, row), rows))


CONCURRENT_MISTAKES = mistakes(
    checks_01.check_concurrent_client,
    (completion_order, "順番が入力と違います"),
    (sequential, "1 件ずつしか届きませんでした"),
    (thread_per_row, "スレッドは workers 本"),
    (whole_answers, "クラス名（文字列）を返してください"),
)


# Exercise 3: ONNX Runtime. Mistakes: float64 passed as is, the probabilities returned, labels as floats.


def onnx_predict(session, rows):
    X = np.asarray(rows, dtype=np.float32).reshape(-1, len(IRIS_FEATURES))
    return np.asarray(session.run(None, {session.get_inputs()[0].name: X})[0], dtype=np.int64)


def test_onnx_check_accepts_a_correct_answer():
    checks_01.check_onnx_predict(onnx_predict)


def float64_as_given(session, rows):
    return session.run(None, {session.get_inputs()[0].name: np.asarray(rows)})[0]


def probabilities(session, rows):
    return session.run(None, {session.get_inputs()[0].name: np.asarray(rows, dtype=np.float32)})[1]


def float_labels(session, rows):
    return onnx_predict(session, rows).astype(np.float64)


ONNX_MISTAKES = mistakes(
    checks_01.check_onnx_predict,
    (float64_as_given, "float32 の 2 次元配列"),
    (probabilities, r"形 \(200,\)"),
    (float_labels, "クラス番号（整数）"),
)


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


CHOOSE_PATTERN_MISTAKES = mistakes(
    checks_01.check_choose_pattern,
    (latency_only, "圏外でも動くスマホのカメラアプリ"),
    (batch_only_over_a_minute, "1 分ちょうど"),
    (edge_up_to_10_ms, "10 ms ちょうど"),
    (batch_first, "ネットワークの無い船の上"),
)


@pytest.mark.parametrize(
    ("check", "wrong", "message"), BATCH_MISTAKES + CONCURRENT_MISTAKES + ONNX_MISTAKES + CHOOSE_PATTERN_MISTAKES
)
def test_a_check_rejects_a_mistake(check, wrong, message):
    with pytest.raises(AssertionError, match=message):
        check(wrong)
