"""Checks for the exercises of notebook 05 (image classification API): each calls the learner's code over HTTP."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from course_lib.servers import serve
from course_lib.vision import sample_images
from course_lib.vision.classifier import Classifier

def _file(name: str) -> tuple[str, bytes, str]:
    mime = "image/jpeg" if name.endswith(".jpg") else "image/png"
    return (name, sample_images()[name], mime)


def _check_top_list(entries: Any, k: int, categories: list[str]) -> None:
    assert isinstance(entries, list), f"top_k はリストにしてください（{type(entries).__name__} でした）"
    assert len(entries) == k, f"top_k={k} のとき {k} 件を期待しましたが {len(entries)} 件でした"
    probabilities = [entry["probability"] for entry in entries]
    assert probabilities == sorted(probabilities, reverse=True), "確率の大きい順に並べてください"
    assert all(entry["class"] in categories for entry in entries), "class にはカテゴリ名を入れてください"


def check_top_k(create_app: Callable[[Classifier], Any], classifier: Classifier) -> None:
    """Exercise 1: POST /predict?top_k=N returns N classes (default 5); invalid top_k gives 422."""
    n_classes = len(classifier.categories)
    name = "china.jpg"
    with serve(create_app(classifier)) as server:
        url = server.url + "/predict"

        def post(params: dict | None = None) -> requests.Response:
            return requests.post(url, params=params, files={"file": _file(name)}, timeout=60)

        default = post()
        assert default.status_code == 200, f"top_k なしで {default.status_code} が返りました（200 を期待）"
        body = default.json()
        _check_top_list(body.get("top_k"), 5, classifier.categories)
        expected = classifier.predict(sample_images()[name])["top_class"]
        assert body.get("top_class") == expected, f"top_class が {body.get('top_class')!r} です（{expected!r} を期待）"
        for k in (1, 3, n_classes):
            response = post({"top_k": k})
            assert response.status_code == 200, f"top_k={k} で {response.status_code} が返りました"
            _check_top_list(response.json().get("top_k"), k, classifier.categories)
        for bad in (0, -1, n_classes + 1, "abc"):
            response = post({"top_k": bad})
            assert response.status_code == 422, f"top_k={bad!r} には 422 を期待しましたが {response.status_code} でした"
        broken = requests.post(url, files={"file": ("x.png", b"not an image", "image/png")}, timeout=30)
        assert 400 <= broken.status_code < 500, f"画像でないファイルに {broken.status_code} が返りました（4xx を期待）"


def check_batch(create_app: Callable[[Classifier], Any], classifier: Classifier) -> None:
    """Exercise 2: POST /predict/batch with 1–8 `files` answers one result per file, in order; limits give 4xx."""
    names = ["digit_0.png", "china.jpg", "digit_2.png", "digit_0.png"]  # the same file name twice is allowed
    with serve(create_app(classifier)) as server:
        url = server.url + "/predict/batch"
        response = requests.post(url, files=[("files", _file(n)) for n in names], timeout=60)
        assert response.status_code == 200, f"{len(names)} 枚で {response.status_code} が返りました: {response.text[:200]}"
        results = response.json().get("results")
        assert isinstance(results, list) and len(results) == len(names), (
            f"{len(names)} 枚を送ったので results に {len(names)} 件を期待しました"
            f"（{len(results) if isinstance(results, list) else results!r}）: {response.text[:300]}"
        )
        for position, (name, result) in enumerate(zip(names, results, strict=True), start=1):
            expected = classifier.predict(sample_images()[name])
            assert result.get("filename") == name, (
                f"{position} 件目の filename が {result.get('filename')!r} です（{name!r} を期待、送った順に）"
            )
            assert result.get("top_class") == expected["top_class"], f"{name} の top_class が違います: {result}"
            assert math.isclose(result.get("confidence", -1), expected["confidence"], abs_tol=1e-3), f"{name} の confidence が違います"
        eight = requests.post(url, files=[("files", _file("digit_1.png"))] * 8, timeout=120)
        assert eight.status_code == 200, f"8 枚（上限ちょうど）に {eight.status_code} が返りました（200 を期待）"
        assert len(eight.json().get("results") or []) == 8, "8 枚を送ったので results に 8 件を期待しました"
        too_many = requests.post(url, files=[("files", _file("digit_1.png"))] * 9, timeout=120)
        assert 400 <= too_many.status_code < 500, f"9 枚に {too_many.status_code} が返りました（上限 8 枚、4xx を期待）"
        bad = requests.post(url, files=[("files", _file("digit_1.png")), ("files", ("x.png", b"broken", "image/png"))], timeout=60)
        assert 400 <= bad.status_code < 500, (
            f"壊れた画像を含むバッチに {bad.status_code} が返りました（4xx を期待。読めない画像を黙って飛ばさないでください）"
        )
        empty = requests.post(url, timeout=30)
        assert empty.status_code == 422, f"ファイルなしに {empty.status_code} が返りました（422 を期待）"


# The check's server holds a few requests back on purpose (arrival number → extra seconds), so that the slowest
# requests are spread out: P95 of 40 lies between the 38th and 39th smallest time, far from P50, P99 and the maximum.
SLOW_REQUESTS = {10: 1.0, 20: 1.0, 30: 3.0}
CLIENT_SLACK_MS = 500.0  # a client's time for a request may exceed the server's by at most this much


class _Recorder:
    """ASGI middleware around the real API: counts /predict requests, concurrency and each one's server-side time."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.count = 0
        self.active = 0
        self.max_active = 0
        self.durations_ms: list[float] = []
        self.lock = threading.Lock()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Pass the request on (after the planned delay for slow ones) and record how long it took."""
        if scope["type"] != "http" or scope["path"] != "/predict":
            await self.app(scope, receive, send)
            return
        with self.lock:
            self.count += 1
            number = self.count
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        started = time.perf_counter()
        try:
            await asyncio.sleep(SLOW_REQUESTS.get(number, 0.0))
            await self.app(scope, receive, send)
        finally:
            with self.lock:
                self.active -= 1
                self.durations_ms.append((time.perf_counter() - started) * 1000)


def check_p95_client(p95_with_clients: Callable[..., float], classifier: Classifier) -> None:
    """Exercise 3: p95_with_clients(url, image, clients=4, n=40) sends n requests from 4 threads and returns P95 in ms.

    Each request's time seen by the client is at least the server's time for it and at most CLIENT_SLACK_MS more,
    so the P95 of the client's times lies between the 38th smallest server time and the 39th plus the slack
    (any usual P95 definition: linear interpolation, nearest rank, …).
    """
    from course_lib.apps.image_api import create_app

    n = 40
    recorder = _Recorder(create_app(classifier))
    image = sample_images()["digit_0.png"]
    with serve(recorder) as server:
        p95 = p95_with_clients(server.url, image, clients=4, n=n)
    assert isinstance(p95, float), f"float を返してください（{type(p95).__name__} でした）"
    assert recorder.count == n, (
        f"/predict へのリクエストが {recorder.count} 件でした（ウォームアップも含めて合計ちょうど {n} 件を期待）"
    )
    assert recorder.max_active >= 2, "リクエストが同時に送られていません（4 つのスレッドから並行に送ってください）"
    server_ms = sorted(recorder.durations_ms)
    low, high = server_ms[37] - 1.0, server_ms[38] + CLIENT_SLACK_MS
    assert low <= p95 <= high, (
        f"P95 = {p95:.1f} ですが、サーバーが記録した各リクエストの時間から見て {low:.0f}〜{high:.0f} ms の範囲のはずです"
        "（このチェックは一部のリクエストをわざと遅くしています。95 パーセンタイルを計算していますか？ 単位はミリ秒ですか？）"
    )
