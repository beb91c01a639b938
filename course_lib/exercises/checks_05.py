"""Checks for the exercises of notebook 05 (image classification API): each calls the learner's code over HTTP."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from course_lib.servers import serve
from course_lib.vision import sample_images
from course_lib.vision.classifier import Classifier

DIGITS = ("digit_0.png", "digit_1.png", "digit_2.png")


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
    """Exercise 2: POST /predict/batch with several `files` answers one result per file, in order; limits give 4xx."""
    names = ["digit_0.png", "china.jpg", "digit_2.png"]
    with serve(create_app(classifier)) as server:
        url = server.url + "/predict/batch"
        response = requests.post(url, files=[("files", _file(n)) for n in names], timeout=60)
        assert response.status_code == 200, f"3 枚で {response.status_code} が返りました: {response.text[:200]}"
        results = response.json().get("results")
        assert isinstance(results, list) and len(results) == 3, f"results に 3 件を期待しました: {response.json()}"
        for name, result in zip(names, results, strict=True):
            expected = classifier.predict(sample_images()[name])
            assert result.get("filename") == name, f"filename が {result.get('filename')!r} です（{name!r} を期待、順番も同じに）"
            assert result.get("top_class") == expected["top_class"], f"{name} の top_class が違います: {result}"
            assert math.isclose(result.get("confidence", -1), expected["confidence"], abs_tol=1e-3), f"{name} の confidence が違います"
        too_many = requests.post(url, files=[("files", _file("digit_1.png"))] * 9, timeout=60)
        assert 400 <= too_many.status_code < 500, f"9 枚に {too_many.status_code} が返りました（上限 8 枚、4xx を期待）"
        bad = requests.post(url, files=[("files", _file("digit_1.png")), ("files", ("x.png", b"broken", "image/png"))], timeout=60)
        assert 400 <= bad.status_code < 500, f"壊れた画像を含むバッチに {bad.status_code} が返りました（4xx を期待）"
        empty = requests.post(url, timeout=30)
        assert empty.status_code == 422, f"ファイルなしに {empty.status_code} が返りました（422 を期待）"


class _Recorder:
    """ASGI middleware counting /predict requests, how many ran at once, and the fastest server-side time."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.count = 0
        self.active = 0
        self.max_active = 0
        self.fastest_ms = math.inf
        self.lock = threading.Lock()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/predict":
            await self.app(scope, receive, send)
            return
        with self.lock:
            self.count += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            with self.lock:
                self.active -= 1
                self.fastest_ms = min(self.fastest_ms, (time.perf_counter() - started) * 1000)


def check_p95_client(p95_with_clients: Callable[..., float], classifier: Classifier) -> None:
    """Exercise 3: p95_with_clients(url, image, clients=4, n=40) sends n requests from 4 threads and returns P95 in ms."""
    from course_lib.apps.image_api import create_app

    recorder = _Recorder(create_app(classifier))
    image = sample_images()["digit_0.png"]
    with serve(recorder) as server:
        started = time.perf_counter()
        p95 = p95_with_clients(server.url, image, clients=4, n=40)
        wall_ms = (time.perf_counter() - started) * 1000
    assert isinstance(p95, float), f"float を返してください（{type(p95).__name__} でした）"
    assert recorder.count >= 40, f"/predict へのリクエストが {recorder.count} 件でした（40 件以上を期待）"
    assert recorder.max_active >= 2, "リクエストが同時に送られていません（4 つのスレッドから並行に送ってください）"
    assert recorder.fastest_ms <= p95 <= wall_ms, (
        f"P95 = {p95:.3f} がおかしな値です（サーバー側の最短 {recorder.fastest_ms:.1f} ms 以上、"
        f"全体の {wall_ms:.0f} ms 以下のはず。単位はミリ秒です）"
    )
