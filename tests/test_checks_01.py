"""The notebook-01 exercise checks reject wrong answers and report unfinished ones (the solutions notebook covers passing)."""

from __future__ import annotations

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
    [checks_01.check_batch_scoring, checks_01.check_concurrent_client, checks_01.check_onnx_predict,
     checks_01.check_choose_pattern],
)
def test_an_unfinished_exercise_is_reported_as_not_implemented(check):
    with pytest.raises(NotImplementedError):
        check(not_implemented)


def test_batch_check_rejects_a_scorer_that_drops_rows(tmp_path):
    def first_half(model, in_path, out_path):
        frame = pd.read_csv(in_path).iloc[:2500]
        ids = model.predict(frame[IRIS_FEATURES].to_numpy(dtype=np.float32))
        out_path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"id": frame["id"], "prediction": np.asarray(IRIS_CLASSES)[ids]}).to_csv(out_path, index=False)
        return {"rows": 2500, "seconds": 1.0, "rows_per_s": 2500.0}

    with pytest.raises(AssertionError, match="5000"):
        checks_01.check_batch_scoring(first_half)


def test_batch_check_rejects_class_ids_instead_of_names():
    def ids_only(model, in_path, out_path):
        frame = pd.read_csv(in_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        ids = model.predict(frame[IRIS_FEATURES].to_numpy(dtype=np.float32))
        pd.DataFrame({"id": frame["id"], "prediction": ids}).to_csv(out_path, index=False)
        return {"rows": len(frame), "seconds": 1.0, "rows_per_s": float(len(frame))}

    with pytest.raises(AssertionError, match="prediction"):
        checks_01.check_batch_scoring(ids_only)


def test_concurrent_check_rejects_answers_in_completion_order():
    from concurrent.futures import ThreadPoolExecutor, as_completed

    def completion_order(url, rows, workers=4):
        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(requests.post, url + "/predict", json={"features": r}, timeout=10) for r in rows]
            answers = [f.result().json()["prediction"] for f in as_completed(futures)]
        return sorted(answers)  # deterministic, and certainly not the input order for mixed classes

    with pytest.raises(AssertionError, match="順番"):
        checks_01.check_concurrent_client(completion_order)


def test_choose_pattern_check_rejects_a_rule_that_ignores_the_network():
    def latency_only(answer_within_ms, network):
        if answer_within_ms is None or answer_within_ms >= 60_000:
            return "batch"
        return "edge" if answer_within_ms < 10 else "real-time"

    with pytest.raises(AssertionError, match="圏外"):
        checks_01.check_choose_pattern(latency_only)
