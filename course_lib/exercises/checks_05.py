"""Checks for the exercises of notebook 05 (image classification API): each calls the learner's code over HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import requests
import torch
from torch import nn

from course_lib.servers import serve
from course_lib.vision import decode_image, sample_images
from course_lib.vision.classifier import Classifier

PROBABILITY_TOLERANCE = 1e-3  # answers may round probabilities (3 decimals or more); the model itself is the same


def _file(name: str) -> tuple[str, bytes, str]:
    mime = "image/jpeg" if name.endswith(".jpg") else "image/png"
    return (name, sample_images()[name], mime)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _true_probabilities(classifier: Classifier, name: str) -> np.ndarray:
    """The classifier's own probabilities for a sample image, computed here in process."""
    return classifier.probabilities(classifier.batch([decode_image(sample_images()[name])]))[0]


def _check_top_list(entries: Any, k: int, classifier: Classifier, probs: np.ndarray) -> None:
    """entries must be the k most likely classes, most likely first, each name with its own probability."""
    assert isinstance(entries, list), f"top_k はリストにしてください（{type(entries).__name__} でした）"
    assert len(entries) == k, f"top_k={k} のとき {k} 件を期待しましたが {len(entries)} 件でした"
    assert all(isinstance(e, dict) and {"class", "probability"} <= set(e) for e in entries), (
        'top_k の各要素は {"class": クラス名, "probability": 確率} の辞書にしてください'
    )
    assert all(_is_number(e["probability"]) for e in entries), "probability は数（float）にしてください"
    unused = list(range(len(classifier.categories)))  # ImageNet repeats a few names ("crane"): match an index each
    chosen = []
    for entry in entries:
        name, probability = entry["class"], entry["probability"]
        candidates = [i for i in unused if classifier.categories[i] == name]
        assert candidates, f"class {name!r} はカテゴリ名ではないか、2 回出てきます"
        index = min(candidates, key=lambda i: abs(probs[i] - probability))
        assert abs(probs[index] - probability) <= PROBABILITY_TOLERANCE, (
            f"{name!r} の probability が {probability} ですが、モデルが出すこのクラスの確率は {probs[index]:.6f} です"
            "（クラス名と、そのクラスの確率を組にしていますか？ softmax の後の 0〜1 の値ですか？）"
        )
        unused.remove(index)
        chosen.append(index)
    reported = [entry["probability"] for entry in entries]
    assert reported == sorted(reported, reverse=True), "確率の大きい順に並べてください"
    left_out = max((probs[i] for i in unused), default=-1.0)
    weakest = min(probs[i] for i in chosen)
    assert weakest >= left_out - 1e-6, (
        f"上位 {k} クラスになっていません: 返さなかったクラスに確率 {left_out:.6f} のものがあり、"
        f"返したクラスの確率 {weakest:.6f} より大きいです（確率の大きいほうから {k} 個を選んでください）"
    )


def check_top_k(create_app: Callable[[Classifier], Any], classifier: Classifier) -> None:
    """Exercise 1: POST /predict?top_k=N returns the N most likely classes (default 5); invalid top_k gives 422."""
    n_classes = len(classifier.categories)
    name = "china.jpg"
    probs = _true_probabilities(classifier, name)
    with serve(create_app(classifier)) as server:
        url = server.url + "/predict"

        def post(params: dict | None = None) -> requests.Response:
            return requests.post(url, params=params, files={"file": _file(name)}, timeout=60)

        default = post()
        assert default.status_code == 200, f"top_k なしで {default.status_code} が返りました（200 を期待）"
        body = default.json()
        assert "top_k" in body, f'応答に "top_k" がありません（キー: {sorted(body)}）'
        _check_top_list(body["top_k"], 5, classifier, probs)
        best = int(np.argmax(probs))
        assert body.get("top_class") == classifier.categories[best], (
            f"top_class が {body.get('top_class')!r} です（{classifier.categories[best]!r} を期待）"
        )
        confidence = body.get("confidence")
        assert _is_number(confidence) and abs(confidence - probs[best]) <= PROBABILITY_TOLERANCE, (
            f"confidence が {confidence!r} です（top_class の確率 {probs[best]:.6f} を期待）"
        )
        for k in (1, 3, n_classes):
            response = post({"top_k": k})
            assert response.status_code == 200, f"top_k={k} で {response.status_code} が返りました"
            _check_top_list(response.json().get("top_k"), k, classifier, probs)
        for bad in (0, -1, n_classes + 1, "abc"):
            response = post({"top_k": bad})
            assert response.status_code == 422, f"top_k={bad!r} には 422 を期待しましたが {response.status_code} でした"
        broken = requests.post(url, files={"file": ("x.png", b"not an image", "image/png")}, timeout=30)
        assert 400 <= broken.status_code < 500, f"画像でないファイルに {broken.status_code} が返りました（4xx を期待）"


class CountingModel(nn.Module):
    """The classifier's real network, recording the batch size of every forward call (to see batching)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.batch_sizes: list[int] = []
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Record how many images this call carries, then run the real model."""
        self.batch_sizes.append(int(x.shape[0]))
        return self.model(x)


def check_batch(create_app: Callable[[Classifier], Any], classifier: Classifier) -> None:
    """Exercise 2: POST /predict/batch with 1–8 `files` answers one result per file, in order, from ONE inference.

    The app gets the classifier with its network wrapped in CountingModel, so the check sees how many times the
    model ran for a request and with how many images.
    """
    names = ["digit_0.png", "china.jpg", "digit_2.png", "digit_0.png"]  # the same file name twice is allowed
    counting = CountingModel(classifier.model)
    with serve(create_app(dataclasses.replace(classifier, model=counting))) as server:
        url = server.url + "/predict/batch"
        counting.batch_sizes.clear()  # calls while the app was built (a warm-up) do not count
        response = requests.post(url, files=[("files", _file(n)) for n in names], timeout=60)
        assert response.status_code == 200, (
            f"{len(names)} 枚で {response.status_code} が返りました: {response.text[:200]}"
        )
        results = response.json().get("results")
        assert isinstance(results, list) and len(results) == len(names), (
            f"{len(names)} 枚を送ったので results に {len(names)} 件を期待しました"
            f"（{len(results) if isinstance(results, list) else results!r}）: {response.text[:300]}"
        )
        for position, (name, result) in enumerate(zip(names, results, strict=True), start=1):
            probs = _true_probabilities(classifier, name)
            best = int(np.argmax(probs))
            assert result.get("filename") == name, (
                f"{position} 件目の filename が {result.get('filename')!r} です（{name!r} を期待、送った順に）"
            )
            assert result.get("top_class") == classifier.categories[best], f"{name} の top_class が違います: {result}"
            assert math.isclose(result.get("confidence", -1), probs[best], abs_tol=PROBABILITY_TOLERANCE), (
                f"{name} の confidence が {result.get('confidence')!r} です（{probs[best]:.6f} を期待）"
            )
        assert counting.batch_sizes, "モデルが呼ばれませんでした（classifier のモデルで推論してください）"
        assert counting.batch_sizes == [len(names)], (
            f"{len(names)} 枚のリクエストでモデルが {len(counting.batch_sizes)} 回、"
            f"バッチの大きさ {counting.batch_sizes} で呼ばれました"
            f"（1 回の推論で {len(names)} 枚をまとめて処理してください: classifier.batch(images)）"
        )
        eight = requests.post(url, files=[("files", _file("digit_1.png"))] * 8, timeout=120)
        assert eight.status_code == 200, f"8 枚（上限ちょうど）に {eight.status_code} が返りました（200 を期待）"
        assert len(eight.json().get("results") or []) == 8, "8 枚を送ったので results に 8 件を期待しました"
        too_many = requests.post(url, files=[("files", _file("digit_1.png"))] * 9, timeout=120)
        assert 400 <= too_many.status_code < 500, f"9 枚に {too_many.status_code} が返りました（上限 8 枚、4xx を期待）"
        bad_files = [("files", _file("digit_1.png")), ("files", ("x.png", b"broken", "image/png"))]
        bad = requests.post(url, files=bad_files, timeout=60)
        assert 400 <= bad.status_code < 500, (
            f"壊れた画像を含むバッチに {bad.status_code} が返りました"
            "（4xx を期待。読めない画像を黙って飛ばさないでください）"
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
    recorder = _Recorder(create_app(classifier, backend="torch"))
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
        f"P95 = {p95:.1f} ですが、サーバーが記録した各リクエストの時間から見て"
        f" {low:.0f}〜{high:.0f} ms の範囲のはずです（このチェックは一部のリクエストをわざと遅くしています。"
        "95 パーセンタイルを計算していますか？ 単位はミリ秒ですか？）"
    )
