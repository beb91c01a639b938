"""Checks for the exercises of notebook 06 (making the image API fast): real onnxruntime sessions, a real int8
quantization with the learner's calibration reader, and a real headless locust run against a real server."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
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
CHECKED_BATCH_SIZES = (100, 500)  # neither divides the 1,437 training images: a last, shorter batch each
LOCUST_SECONDS = 5
LOCUST_USERS = 2
WAIT_SAMPLES = 20  # between() and poisson() are random: the longest of 20 is far above 0 for any think time
SUBPROCESS_LIMIT_S = 120  # only against a hang: loading a locustfile takes a second or two
_USER_FACTS = f"""
import json, sys, time, types
from locust.util.load_locustfile import load_locustfile

users = load_locustfile(sys.argv[1])[0]


def fresh():
    # A user just after a task that took no time: constant_pacing's state, new for each sample (without the task's
    # time in between, its wait would grow with every call)
    return types.SimpleNamespace(_cp_last_run=time.perf_counter(), _cp_last_wait_time=0.0)


facts = {{}}
for name, user in users.items():
    facts[name] = {{"tasks": len(user.tasks), "wait": 0.0}}
    try:
        facts[name]["wait"] = max(float(user.wait_time(fresh())) for _ in range({WAIT_SAMPLES}))
    except Exception:  # a wait_time of the learner's own that needs a running user: the run shows the rest
        continue
print("\\n" + json.dumps(facts))
"""


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


def _collect_feeds(reader: Any, input_name: str, shape: tuple[int, ...], limit: int) -> list[np.ndarray]:
    """Every batch the reader gives until None, validated; a reader that never ends fails."""
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
    return batches


def _check_rows(batches: list[np.ndarray], x_train: np.ndarray) -> None:
    """The reader gave every image of the training split once, in any order; a hint for the likely mistake."""
    given, wanted = _row_counts(np.concatenate(batches)), _row_counts(x_train)
    if given == wanted:
        return
    missing = sum((wanted - given).values())
    foreign = sum(count for row, count in given.items() if row not in wanted)
    repeated = sum((given - wanted).values()) - foreign
    sizes = {len(batch) for batch in batches}
    if not foreign and not repeated and len(sizes) == 1 and missing < min(sizes):
        hint = "最後の端数のバッチ（batch_size に満たない残り）を落としていませんか？ 最後のバッチは短くてかまいません"
    elif not foreign and not missing:
        hint = "同じ画像を 2 回以上渡しています（バッチの切り出しが重なっていませんか？）"
    else:
        hint = "テスト用の分割や、前処理をしていない画素ではありませんか？"
    raise AssertionError(
        f"学習用の分割（digits_tensors() の最初の要素、{len(x_train)} 枚）を 1 枚ずつ、すべて渡してください"
        f"（渡されたのは {sum(given.values())} 枚で、学習用の分割のうち {missing} 枚が足りず、学習用の分割にない画像が"
        f" {foreign} 枚、2 回目以降の画像が {repeated} 枚ありました。{hint}）"
    )


def _check_batch_sizes(make_reader: Callable[..., Any], input_name: str, x_train: np.ndarray) -> None:
    """make_reader(input_name, batch_size=b) gives batches of b images, the last one with the rest."""
    n, shape = len(x_train), tuple(x_train.shape[1:])
    for batch_size in CHECKED_BATCH_SIZES:
        try:
            reader = make_reader(input_name, batch_size=batch_size)
        except TypeError as error:
            raise AssertionError(
                f"DigitsCalibrationReader(input_name, batch_size={batch_size}) が作れません（{error}）。"
                "引数 batch_size を消さずに受け取ってください"
            ) from None
        sizes = [len(batch) for batch in _collect_feeds(reader, input_name, shape, limit=n)]
        expected = [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
        if sizes == expected:
            continue
        shown = f"batch_size={batch_size} で、バッチの大きさが {_sizes_shown(sizes)}"
        assert len(sizes) > 1, (
            f"{shown} でした。全部を 1 つのバッチで渡しています。batch_size 枚ずつに分けてください"
            "（量子化は受け取ったバッチを一度にモデルに通して各層の値を記録するので、大きなデータを一度に渡すと"
            f"メモリーがそのぶん要ります。{n} 枚なら {_sizes_shown(expected)}）"
        )
        raise AssertionError(
            f"{shown} でした（{_sizes_shown(expected)} のはず）。引数の batch_size を使って、inputs[i : i + batch_size]"
            " を range(0, len(inputs), batch_size) の i について渡してください"
        )


def _sizes_shown(sizes: list[int]) -> str:
    """Batch sizes as a learner reads them: 100 × 14, 37."""
    runs = [(size, len(list(group))) for size, group in itertools.groupby(sizes)]
    return "、".join(f"{size} × {count}" if count > 1 else str(size) for size, count in runs)


def check_calibration_reader(make_reader: Callable[..., Any], classifier: Classifier) -> None:
    """Exercise 2: make_reader(input_name, batch_size=64) feeds the digits training split in batches of batch_size;
    int8 with it agrees with fp32."""
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
        batches = _collect_feeds(reader, input_name, tuple(x_train.shape[1:]), limit=len(x_train))
        _check_rows(batches, x_train)
        _check_batch_sizes(make_reader, input_name, x_train)
        fed = np.concatenate(batches)
        int8_path = quantize_onnx(path, Path(tmp) / "int8.onnx", BatchReader(input_name, fed))
        check_parity(fp32, onnx_session(int8_path), parity_inputs(classifier))


# --- exercise 3: a locust user that posts an image to /predict ----------------------------------------------------


def counting_app(classifier: Classifier) -> tuple[FastAPI, Counter[str]]:
    """The course's image API, with a counter of the answers it sent (method, path, status)."""
    app = create_app(classifier, backend="torch")
    seen: Counter[str] = Counter()

    @app.middleware("http")
    async def count(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        seen[f"{request.method} {request.url.path} {response.status_code}"] += 1
        return response

    return app, seen


def _user_facts(locustfile: Path) -> dict[str, dict[str, float]]:
    """Each user class's number of tasks and the longest of a few waits its wait_time gives, read by locust's own
    loader in a subprocess (an import of locust patches the standard library with gevent); {} when the file does not
    load (the run says why)."""
    done = subprocess.run(
        [sys.executable, "-c", _USER_FACTS, str(locustfile)],
        capture_output=True,
        timeout=SUBPROCESS_LIMIT_S,
        check=False,
        cwd=locustfile.parent,
    )
    if done.returncode != 0:
        return {}
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def _check_users(locustfile: Path) -> None:
    """Each user has a task, and no think time: it sends its next request as soon as the answer came (wait_time 0,
    locust's default)."""
    facts = _user_facts(locustfile)
    idle = [name for name, fact in facts.items() if fact["tasks"] == 0]
    assert not idle, (
        f"{', '.join(idle)} にタスクがありません。リクエストを送るメソッドに @task を付けてください"
        "（付けないと、locust はそのユーザーで何も送れません）"
    )
    name, wait = next(((name, fact["wait"]) for name, fact in facts.items() if fact["wait"] > 0), ("", 0.0))
    if wait > 0:
        raise AssertionError(
            f"{name} の wait_time が、タスクとタスクの間に待ち時間（最大 {wait:.2f} 秒）を入れています。この演習は、"
            "返事が来たらすぐ次を送る閉じたループです: wait_time = constant(0)（書かなければ locust の既定も 0）。"
            "between(...) のような考える時間（think time）があると、2 ユーザーでは API がほとんど待っているだけになり、"
            "サーバーがさばける量ではなく、ユーザーの待ち時間を測ることになります"
        )


def check_locust_user(locustfile_source: Callable[[], str], classifier: Classifier) -> None:
    """Exercise 3: the locustfile's user posts a sample image to /predict with no think time; a short headless run has
    no failure."""
    source = locustfile_source()
    assert isinstance(source, str) and "HttpUser" in source, (
        "locustfile の中身（HttpUser を継承したクラス）を文字列で返してください"
    )
    app, seen = counting_app(classifier)
    with tempfile.TemporaryDirectory(prefix="course-ex06-") as tmp, serve(app) as server:
        locustfile = Path(tmp) / "locustfile.py"
        locustfile.write_text(source)
        _check_users(locustfile)
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
