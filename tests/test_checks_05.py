"""The notebook-05 exercise checks accept the solutions, reject each likely wrong answer, report unfinished ones."""

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

import numpy as np
import pytest
import requests
import torch
from fastapi import FastAPI, File, HTTPException, Query, UploadFile

from course_lib.exercises import checks_05
from course_lib.vision import ImageError, decode_image, top_k


def not_implemented(*args, **kwargs):
    raise NotImplementedError()


def test_unfinished_exercises_are_reported_as_not_implemented(classifier):
    for call in (
        lambda: checks_05.check_top_k(not_implemented, classifier),
        lambda: checks_05.check_batch(not_implemented, classifier),
        lambda: checks_05.check_p95_client(not_implemented, classifier),
    ):
        with pytest.raises(NotImplementedError, match="^$"):
            call()


def decoded(upload: UploadFile):
    """The uploaded file as an RGB image, or the decoder's 4xx as an HTTPException."""
    try:
        return decode_image(upload.file.read())
    except ImageError as error:
        raise HTTPException(status_code=error.status, detail=error.message) from None


# Exercise 1: top_k


def correct_answer(probs, k, categories):
    """The right body: the library's top_k (most likely first), its first entry as top_class and confidence."""
    top = top_k(probs, categories, k)
    return {"top_class": top[0]["class"], "confidence": top[0]["probability"], "top_k": top}


def answer_with(top):
    """A body built from (class name, probability) pairs, with top_class and confidence from the first pair."""
    entries = [{"class": name, "probability": float(p)} for name, p in top]
    return {"top_class": entries[0]["class"], "confidence": entries[0]["probability"], "top_k": entries}


def top_k_app(classifier, answer=correct_answer, max_k=None, logits=False) -> FastAPI:
    """The exercise's app; `answer` builds the body from the probabilities, `max_k` is the validated upper bound."""
    app = FastAPI()
    n_classes = len(classifier.categories)
    top_limit = Annotated[int, Query(ge=1, le=n_classes if max_k is None else max_k)]

    @app.post("/predict")
    def predict(file: UploadFile = File(...), top_k: top_limit = 5):
        batch = classifier.batch([decoded(file)])
        if logits:  # the raw model output instead of softmax probabilities
            with torch.inference_mode():
                probs = classifier.model(batch)[0].numpy()
        else:
            probs = classifier.probabilities(batch)[0]
        return answer(probs, top_k, classifier.categories)

    return app


def test_top_k_check_accepts_a_correct_answer(classifier):
    checks_05.check_top_k(top_k_app, classifier)


def test_top_k_check_accepts_probabilities_rounded_to_three_decimals(classifier):
    def rounded(probs, k, categories):
        order = np.argsort(-probs, kind="stable")[:k]
        return answer_with([(categories[i], round(float(probs[i]), 3)) for i in order])

    checks_05.check_top_k(lambda c: top_k_app(c, rounded), classifier)


def test_top_k_check_rejects_missing_validation(classifier):
    # unvalidated, top_k=0 reaches the library's top_k, whose ValueError becomes a 500 instead of the 422
    with pytest.raises(AssertionError, match="422"):
        checks_05.check_top_k(lambda c: top_k_app(c, max_k=10_000), classifier)


def test_top_k_check_rejects_an_upper_bound_one_too_small(classifier):
    with pytest.raises(AssertionError, match=f"top_k={len(classifier.categories)} で 422"):
        checks_05.check_top_k(lambda c: top_k_app(c, max_k=len(c.categories) - 1), classifier)


def test_top_k_check_rejects_an_ignored_parameter(classifier):
    with pytest.raises(AssertionError, match="top_k=1 のとき 1 件"):
        checks_05.check_top_k(lambda c: top_k_app(c, lambda probs, k, cats: correct_answer(probs, 5, cats)), classifier)


def test_top_k_check_rejects_sorted_probabilities_paired_with_the_first_names(classifier):
    def first_names(probs, k, categories):
        return answer_with(zip(categories[:k], sorted(probs, reverse=True)[:k], strict=True))

    with pytest.raises(AssertionError, match="クラス名と、そのクラスの確率を組に"):
        checks_05.check_top_k(lambda c: top_k_app(c, first_names), classifier)


def test_top_k_check_rejects_the_least_likely_classes_in_descending_order(classifier):
    def least_likely(probs, k, categories):
        order = probs.argsort()[:k][::-1]
        return answer_with([(categories[i], probs[i]) for i in order])

    with pytest.raises(AssertionError, match="上位 5 クラスになっていません"):
        checks_05.check_top_k(lambda c: top_k_app(c, least_likely), classifier)


def test_top_k_check_rejects_ascending_order(classifier):
    def ascending(probs, k, categories):
        order = np.argsort(-probs)[:k][::-1]
        return answer_with([(categories[i], probs[i]) for i in order])

    with pytest.raises(AssertionError, match="確率の大きい順に並べてください"):
        checks_05.check_top_k(lambda c: top_k_app(c, ascending), classifier)


def test_top_k_check_rejects_logits_instead_of_probabilities(classifier):
    with pytest.raises(AssertionError, match="softmax の後の 0〜1 の値"):
        checks_05.check_top_k(lambda c: top_k_app(c, logits=True), classifier)


def test_top_k_check_rejects_percentages(classifier):
    def percent(probs, k, categories):
        return correct_answer(probs * 100, k, categories)

    with pytest.raises(AssertionError, match="softmax の後の 0〜1 の値"):
        checks_05.check_top_k(lambda c: top_k_app(c, percent), classifier)


def test_top_k_check_rejects_the_source_key_top_5(classifier):
    def source_key(probs, k, categories):
        body = correct_answer(probs, k, categories)
        body["top_5"] = body.pop("top_k")
        return body

    with pytest.raises(AssertionError, match='応答に "top_k" がありません'):
        checks_05.check_top_k(lambda c: top_k_app(c, source_key), classifier)


def test_top_k_check_rejects_a_wrong_confidence(classifier):
    def last_confidence(probs, k, categories):
        body = correct_answer(probs, k, categories)
        return {**body, "confidence": body["top_k"][-1]["probability"]}

    with pytest.raises(AssertionError, match="confidence が"):
        checks_05.check_top_k(lambda c: top_k_app(c, last_confidence), classifier)


# Exercise 2: batch endpoint


def batch_app(
    classifier,
    limit: int | None = 8,
    skip_unreadable: bool = False,
    drop_last: bool = False,
    order=list,
    one_by_one: bool = False,
):
    app = FastAPI()

    @app.post("/predict/batch")
    def predict_batch(files: list[UploadFile] = File(...)):
        if limit is not None and len(files) > limit:
            raise HTTPException(status_code=413, detail=f"at most {limit} files")
        kept, images = [], []
        for upload in files:
            try:
                images.append(decoded(upload))
                kept.append(upload)
            except HTTPException:
                if not skip_unreadable:
                    raise
        if one_by_one:  # one inference per file instead of one batch
            probs = [classifier.probabilities(classifier.batch([image]))[0] for image in images]
        else:
            probs = classifier.probabilities(classifier.batch(images))
        results = [
            {
                "filename": upload.filename,
                "top_class": classifier.categories[int(p.argmax())],
                "confidence": float(p.max()),
            }
            for upload, p in zip(kept, probs, strict=True)
        ]
        return {"results": order(results[:-1] if drop_last else results)}

    return app


def test_batch_check_accepts_a_correct_answer(classifier):
    checks_05.check_batch(batch_app, classifier)


def test_batch_check_rejects_one_inference_per_file(classifier):
    with pytest.raises(AssertionError, match=r"モデルが 4 回、バッチの大きさ \[1, 1, 1, 1\]"):
        checks_05.check_batch(lambda c: batch_app(c, one_by_one=True), classifier)


def test_batch_check_rejects_an_endpoint_that_drops_a_file(classifier):
    with pytest.raises(AssertionError, match="results に 4 件"):
        checks_05.check_batch(lambda c: batch_app(c, drop_last=True), classifier)


def test_batch_check_rejects_results_out_of_order(classifier):
    with pytest.raises(AssertionError, match="送った順"):
        checks_05.check_batch(lambda c: batch_app(c, order=lambda r: r[::-1]), classifier)


def test_batch_check_rejects_silently_skipped_broken_images(classifier):
    with pytest.raises(AssertionError, match="壊れた画像"):
        checks_05.check_batch(lambda c: batch_app(c, skip_unreadable=True), classifier)


def test_batch_check_rejects_a_missing_or_too_small_limit(classifier):
    with pytest.raises(AssertionError, match="9 枚"):
        checks_05.check_batch(lambda c: batch_app(c, limit=None), classifier)
    with pytest.raises(AssertionError, match="8 枚"):
        checks_05.check_batch(lambda c: batch_app(c, limit=5), classifier)


def test_batch_check_rejects_results_keyed_by_file_name(classifier):
    def by_name(results):
        return list({r["filename"]: r for r in results}.values())  # the repeated digit_0.png collapses

    with pytest.raises(AssertionError, match="results に 4 件"):
        checks_05.check_batch(lambda c: batch_app(c, order=by_name), classifier)


# Exercise 3: P95 under 4 concurrent clients


def client_times_ms(url: str, image: bytes, clients: int, n: int) -> list[float]:
    """Send n uploads from `clients` threads (one session each) and return every request's time in ms."""

    def worker(count: int) -> list[float]:
        times = []
        with requests.Session() as session:
            for _ in range(count):
                started = time.perf_counter()
                files = {"file": ("d.png", image, "image/png")}
                session.post(url + "/predict", files=files, timeout=60).raise_for_status()
                times.append((time.perf_counter() - started) * 1000)
        return times

    with ThreadPoolExecutor(clients) as pool:
        counts = [n // clients + (i < n % clients) for i in range(clients)]
        return [t for times in pool.map(worker, counts) for t in times]


def p95_client(summary):
    """A p95_with_clients answer that summarises the client's times with `summary` (the right one: P95)."""
    return lambda url, image, clients=4, n=40: float(summary(client_times_ms(url, image, clients, n)))


def test_p95_check_accepts_the_usual_percentile_definitions(classifier):
    checks_05.check_p95_client(p95_client(lambda t: np.percentile(t, 95)), classifier)
    checks_05.check_p95_client(p95_client(lambda t: np.percentile(t, 95, method="nearest")), classifier)
    checks_05.check_p95_client(p95_client(lambda t: sorted(t)[int(np.ceil(0.95 * len(t))) - 1]), classifier)


@pytest.mark.parametrize(
    "summary",
    [
        pytest.param(lambda t: np.percentile(t, 50), id="median"),
        pytest.param(lambda t: np.mean(t), id="mean"),
        pytest.param(lambda t: np.percentile(t, 90), id="p90"),
        pytest.param(lambda t: np.percentile(t, 99), id="p99"),
        pytest.param(max, id="max"),
        pytest.param(lambda t: np.percentile(t, 95) / 1000, id="seconds"),
    ],
)
def test_p95_check_rejects_the_wrong_statistic(classifier, summary):
    with pytest.raises(AssertionError, match="P95"):
        checks_05.check_p95_client(p95_client(summary), classifier)


def test_p95_check_rejects_a_sequential_client(classifier):
    with pytest.raises(AssertionError, match="同時"):
        checks_05.check_p95_client(
            lambda url, image, clients=4, n=40: float(np.percentile(client_times_ms(url, image, 1, n), 95)), classifier
        )


def test_p95_check_rejects_the_wrong_number_of_requests(classifier):
    with pytest.raises(AssertionError, match="ちょうど 40 件"):
        checks_05.check_p95_client(
            lambda url, image, clients=4, n=40: float(np.percentile(client_times_ms(url, image, clients, n // 2), 95)),
            classifier,
        )
