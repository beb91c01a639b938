"""Checks for the exercises of notebook 06 (making the image API fast): real onnxruntime sessions, a real int8
quantization with the learner's calibration reader, and a real headless locust run against a real server."""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
from fastapi import FastAPI, Request

from course_lib.apps.image_api import create_app
from course_lib.bench import run_locust
from course_lib.serialization import export_onnx, onnx_session
from course_lib.serialization.onnx_export import SPINNING_KEY
from course_lib.servers import serve
from course_lib.vision.classifier import Classifier
from course_lib.vision.digits import digits_tensors
from course_lib.vision.quantize import BatchReader, check_parity, parity_inputs, quantize_onnx

OUTPUT_TOLERANCE = 1e-4  # the same fp32 graph on the same CPU: only the summation order may differ
LOCUST_SECONDS = 5
LOCUST_USERS = 2


def fp32_model(classifier: Classifier, folder: str | Path) -> Path:
    """The classifier exported to ONNX (dynamic batch) in folder."""
    return export_onnx(classifier.model, classifier.example_input(2), Path(folder) / f"{classifier.name}.onnx")


# --- exercise 1: a session with chosen threads, spinning off, every graph optimization ---------------------------


def _spinning(options: onnxruntime.SessionOptions) -> str | None:
    """The session's spinning entry, or None when it was never set (onnxruntime's default: spinning on)."""
    try:
        return options.get_session_config_entry(SPINNING_KEY)
    except RuntimeError:
        return None


def _check_options(session: Any, threads: int) -> None:
    """The session's own options: intra-op threads, spinning off, ORT_ENABLE_ALL, the CPU provider."""
    assert isinstance(session, onnxruntime.InferenceSession), (
        f"onnxruntime.InferenceSession を返してください（{type(session).__name__} でした）"
    )
    options = session.get_session_options()
    assert options.intra_op_num_threads == threads, (
        f"threads={threads} のとき intra_op_num_threads を {threads} にしてください"
        f"（{options.intra_op_num_threads} でした。0 は onnxruntime におまかせ）"
    )
    assert _spinning(options) == "0", (
        f"スピン待ちを止めてください: add_session_config_entry({SPINNING_KEY!r}, '0')"
        f"（いまの値: {_spinning(options) or '未設定 = スピンする'}）"
    )
    level = options.graph_optimization_level
    assert level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL, (
        f"グラフの最適化は ORT_ENABLE_ALL にしてください（{level.name} でした）"
    )
    assert session.get_providers() == ["CPUExecutionProvider"], f"CPU で動かしてください（{session.get_providers()}）"


def check_session_builder(make_session: Callable[[str, int], Any], classifier: Classifier) -> None:
    """Exercise 1: make_session(path, threads) reads path with the asked options and computes the reference's output."""
    inputs = parity_inputs(classifier)[:64]
    with tempfile.TemporaryDirectory(prefix="course-ex06-") as tmp:
        path = fp32_model(classifier, tmp)
        reference = onnx_session(path)
        expected = reference.run(None, {reference.get_inputs()[0].name: inputs})[0]
        for threads in (1, 2):
            session = make_session(str(path), threads)
            _check_options(session, threads)
            got = session.run(None, {session.get_inputs()[0].name: inputs})[0]
            assert got.shape == expected.shape and np.allclose(got, expected, atol=OUTPUT_TOLERANCE), (
                "出力が、同じファイルを読んだ onnx_session(path) の出力と一致しません"
                "（渡された path を読んでいますか？）"
            )


# --- exercise 2: a calibration data reader over the digits training split -----------------------------------------


def _row_counts(x: np.ndarray) -> Counter[bytes]:
    """How often each row (one image, as float32 bytes) occurs."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return Counter(row.tobytes() for row in x.reshape(len(x), -1))


def _collect_feeds(reader: Any, input_name: str, shape: tuple[int, ...], limit: int) -> np.ndarray:
    """Every batch the reader gives until None, validated, as one array; a reader that never ends fails."""
    batches = []
    for _ in range(limit + 1):
        feed = reader.get_next()
        if feed is None:
            break
        assert isinstance(feed, dict) and list(feed) == [input_name], (
            f"get_next() は {{{input_name!r}: バッチ}} の辞書を返してください（キーはモデルの入力名。"
            f"{list(feed) if isinstance(feed, dict) else type(feed).__name__} でした）"
        )
        batch = feed[input_name]
        assert isinstance(batch, np.ndarray) and batch.dtype == np.float32, (
            "バッチは float32 の NumPy 配列にしてください（torch のテンソルなら .numpy()）"
        )
        assert batch.ndim == 4 and batch.shape[1:] == shape, (
            f"バッチの形は (枚数, {', '.join(map(str, shape))}) — 前処理の後の形 — にしてください"
            f"（{batch.shape} でした。8×8 の生の画素ではなく、サーバーと同じ前処理をした入力です）"
        )
        batches.append(batch)
    else:
        raise AssertionError(
            f"get_next() が {limit} 回を超えても None を返しません（最後まで渡したら None を返します）"
        )
    assert batches, "get_next() が最初から None を返しました"
    return np.concatenate(batches)


def check_calibration_reader(make_reader: Callable[[str], Any], classifier: Classifier) -> None:
    """Exercise 2: make_reader(input_name) feeds the digits training split; int8 with it agrees with fp32."""
    from onnxruntime.quantization import CalibrationDataReader

    x_train = digits_tensors()[0].numpy()
    with tempfile.TemporaryDirectory(prefix="course-ex06-") as tmp:
        path = fp32_model(classifier, tmp)
        fp32 = onnx_session(path)
        input_name = fp32.get_inputs()[0].name
        reader = make_reader(input_name)
        assert isinstance(reader, CalibrationDataReader), (
            "onnxruntime.quantization.CalibrationDataReader を継承したクラスのインスタンスを返してください"
        )
        fed = _collect_feeds(reader, input_name, tuple(x_train.shape[1:]), limit=len(x_train))
        assert _row_counts(fed) == _row_counts(x_train), (
            f"学習用の分割（digits_tensors() の最初の要素、{len(x_train)} 枚）を 1 枚ずつ、すべて渡してください"
            f"（渡されたのは {len(fed)} 枚で、中身が学習用の分割と一致しません。テスト用の分割や、前処理をしていない"
            "画素ではありませんか？）"
        )
        int8_path = quantize_onnx(path, Path(tmp) / "int8.onnx", BatchReader(input_name, fed))
        check_parity(fp32, onnx_session(int8_path), parity_inputs(classifier))


# --- exercise 3: a locust user that posts an image to /predict ----------------------------------------------------


def counting_app(classifier: Classifier) -> tuple[FastAPI, Counter[str]]:
    """The course's image API, with a counter of the answers it sent (method, path, status)."""
    app = create_app(classifier)
    seen: Counter[str] = Counter()

    @app.middleware("http")
    async def count(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        seen[f"{request.method} {request.url.path} {response.status_code}"] += 1
        return response

    return app, seen


def check_locust_user(locustfile_source: Callable[[], str], classifier: Classifier) -> None:
    """Exercise 3: the locustfile's user posts a sample image to /predict; a short headless run has no failure."""
    source = locustfile_source()
    assert isinstance(source, str) and "HttpUser" in source, (
        "locustfile の中身（HttpUser を継承したクラス）を文字列で返してください"
    )
    app, seen = counting_app(classifier)
    with tempfile.TemporaryDirectory(prefix="course-ex06-") as tmp, serve(app) as server:
        locustfile = Path(tmp) / "locustfile.py"
        locustfile.write_text(source)
        # On a loaded machine the first request can take seconds; a run the server saw nothing of is repeated
        # once, longer, before it counts as "sends nothing".
        for seconds in (LOCUST_SECONDS, 4 * LOCUST_SECONDS):
            try:
                result = run_locust(locustfile, server.url, LOCUST_USERS, seconds)
            except RuntimeError as error:
                raise AssertionError(f"locust が統計を書かずに終わりました: {error}") from None
            if seen:
                break
    answered_otherwise = {request: n for request, n in seen.items() if request != "POST /predict 200"}
    assert not answered_otherwise, (
        f"{sum(answered_otherwise.values())} 件のリクエストが失敗しました。サーバーが受けたリクエスト: {dict(seen)}"
        "（POST で /predict に、multipart の file フィールドで画像を送っていますか？）"
    )
    assert result.requests > 0, "locust がリクエストを 1 件も送りませんでした（@task を付けたメソッドはありますか？）"
    assert result.failures == 0, f"locust の {result.requests} 件のうち {result.failures} 件が失敗しました"
