"""The notebook-05 exercise checks reject wrong answers and report unfinished ones (the solutions notebook covers passing)."""

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

import numpy as np
import pytest
import requests
from fastapi import FastAPI, File, HTTPException, Query, UploadFile

from course_lib.exercises import checks_05
from course_lib.vision import ImageError, decode_image, load_classifier, prediction


@pytest.fixture(scope="module")
def classifier():
    return load_classifier("digits")


def not_implemented(*args, **kwargs):
    raise NotImplementedError()


def test_unfinished_exercises_are_reported_as_not_implemented(classifier):
    for call in (
        lambda: checks_05.check_top_k(not_implemented, classifier),
        lambda: checks_05.check_batch(not_implemented, classifier),
        lambda: checks_05.check_p95_client(not_implemented, classifier),
    ):
        with pytest.raises(NotImplementedError):
            call()


def decoded(upload: UploadFile):
    """The uploaded file as an RGB image, or the decoder's 4xx as an HTTPException."""
    try:
        return decode_image(upload.file.read())
    except ImageError as error:
        raise HTTPException(status_code=error.status, detail=error.message) from None


# Exercise 1: top_k


def top_k_app(classifier, validate: bool = True, honour_k: bool = True) -> FastAPI:
    app = FastAPI()
    n_classes = len(classifier.categories)
    TopK = Annotated[int, Query(ge=1, le=n_classes)] if validate else int  # noqa: N806

    @app.post("/predict")
    def predict(file: UploadFile = File(...), top_k: TopK = 5):
        probs = classifier.probabilities(classifier.batch([decoded(file)]))[0]
        answer = prediction(probs, classifier.categories, top_k if honour_k else 5, 0.0, classifier.name)
        return {"top_class": answer["top_class"], "confidence": answer["confidence"], "top_k": answer["top_5"]}

    return app


def test_top_k_check_accepts_a_correct_answer(classifier):
    checks_05.check_top_k(top_k_app, classifier)


def test_top_k_check_rejects_missing_validation(classifier):
    # prediction() clamps k into 1…classes, so top_k=0 would quietly answer 1 class instead of 422
    with pytest.raises(AssertionError, match="422"):
        checks_05.check_top_k(lambda c: top_k_app(c, validate=False), classifier)


def test_top_k_check_rejects_an_ignored_parameter(classifier):
    with pytest.raises(AssertionError, match="top_k=1 のとき 1 件"):
        checks_05.check_top_k(lambda c: top_k_app(c, honour_k=False), classifier)


# Exercise 2: batch endpoint


def batch_app(classifier, limit: int | None = 8, skip_unreadable: bool = False, drop_last: bool = False, order=list):
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
        probs = classifier.probabilities(classifier.batch(images))
        results = [
            {"filename": upload.filename, **{k: v for k, v in prediction(p, classifier.categories, 1, 0.0, "").items()
                                              if k in ("top_class", "confidence")}}
            for upload, p in zip(kept, probs, strict=True)
        ]
        return {"results": order(results[:-1] if drop_last else results)}

    return app


def test_batch_check_accepts_a_correct_answer(classifier):
    checks_05.check_batch(batch_app, classifier)


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


# Exercise 3: P95 under 4 concurrent clients


def client_times_ms(url: str, image: bytes, clients: int, n: int) -> list[float]:
    """Send n uploads from `clients` threads (one session each) and return every request's time in ms."""

    def worker(count: int) -> list[float]:
        times = []
        with requests.Session() as session:
            for _ in range(count):
                started = time.perf_counter()
                session.post(url + "/predict", files={"file": ("d.png", image, "image/png")}, timeout=60).raise_for_status()
                times.append((time.perf_counter() - started) * 1000)
        return times

    with ThreadPoolExecutor(clients) as pool:
        return [t for times in pool.map(worker, [n // clients + (i < n % clients) for i in range(clients)]) for t in times]


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
