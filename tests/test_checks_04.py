"""The notebook-04 exercise checks reject wrong answers and report unfinished ones (the solutions notebook covers passing)."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch

from course_lib.data import IRIS_CLASSES, IRIS_FEATURES, iris_rows
from course_lib.exercises import checks_04
from course_lib.serialization import (
    Format,
    export_onnx,
    get_format,
    measure_format,
    model_metadata,
    onnx_run,
    onnx_session,
    read_metadata,
    save_metadata,
    sklearn_predictor,
    version_mismatches,
)


def not_implemented(*args, **kwargs):
    raise NotImplementedError()


def test_unfinished_exercises_are_reported_as_not_implemented():
    for call in (
        lambda: checks_04.check_onnx_parity(not_implemented),
        lambda: checks_04.check_metadata_guard(not_implemented, not_implemented),
        lambda: checks_04.check_my_format(not_implemented),
    ):
        with pytest.raises(NotImplementedError):
            call()


def parity_report(model, path: Path, dynamic: bool = True, fake_diff: float | None = None) -> dict:
    export_onnx(model, torch.zeros(1, 4), path, dynamic_batch=dynamic)
    X = iris_rows(50, seed=4)
    session = onnx_session(path)
    rows = X if dynamic else X[:1]
    with torch.inference_mode():
        expected = model(torch.from_numpy(rows)).numpy()
    got = onnx_run(session, rows)[0]
    diff = float(np.abs(got - expected).max())
    return {"max_abs_diff": diff if fake_diff is None else fake_diff, "labels_equal": True}


def test_onnx_check_accepts_a_correct_answer():
    checks_04.check_onnx_parity(parity_report)


def test_onnx_check_rejects_a_fixed_batch_axis():
    with pytest.raises(AssertionError, match="固定"):
        checks_04.check_onnx_parity(lambda model, path: parity_report(model, path, dynamic=False))


def test_onnx_check_rejects_a_made_up_difference():
    with pytest.raises(AssertionError, match="合いません"):
        checks_04.check_onnx_parity(lambda model, path: parity_report(model, path, fake_diff=1e-4 - 1e-6))


def test_onnx_check_rejects_a_different_model_written_to_the_file():
    def wrong_model(model, path):
        export_onnx(checks_04.deeper_net(seed=1), torch.zeros(1, 4), path)
        return {"max_abs_diff": 0.0, "labels_equal": True}

    with pytest.raises(AssertionError, match="最大誤差"):
        checks_04.check_onnx_parity(wrong_model)


def save_model(model, path: Path, metrics: dict) -> Path:
    joblib.dump(model, path)
    return save_metadata(path, model_metadata(IRIS_FEATURES, IRIS_CLASSES, metrics))


def load_checked(path: Path):
    mismatches = version_mismatches(read_metadata(path)["versions"])
    if mismatches:
        raise ValueError(f"versions differ: {mismatches}")
    return joblib.load(path)


def test_metadata_check_accepts_a_correct_answer():
    checks_04.check_metadata_guard(save_model, load_checked)


def test_metadata_check_rejects_a_loader_that_ignores_versions():
    with pytest.raises(AssertionError, match="読み込めてしまいました"):
        checks_04.check_metadata_guard(save_model, lambda path: joblib.load(path))


def test_metadata_check_rejects_missing_fields():
    def save_without_classes(model, path, metrics):
        meta_path = save_model(model, path, metrics)
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        del meta["class_names"]
        meta_path.write_text(json.dumps(meta), encoding="utf-8")
        return meta_path

    with pytest.raises(AssertionError, match="class_names"):
        checks_04.check_metadata_guard(save_without_classes, load_checked)


def measure_with(save) -> callable:
    def measure(model, folder: Path):
        fmt = Format("mine", "sklearn", ".bin", save, lambda p: sklearn_predictor(joblib.load(p)), "", "", "")
        return measure_format(fmt, model, folder, iris_rows(64), n=3, load_repeats=1)

    return measure


def test_format_check_accepts_a_compressed_format():
    checks_04.check_my_format(measure_with(lambda model, path: joblib.dump(model, path, compress=("gzip", 3))))


def test_format_check_rejects_an_uncompressed_format():
    with pytest.raises(AssertionError, match="小さくなっていません"):
        checks_04.check_my_format(measure_with(lambda model, path: joblib.dump(model, path)))


def test_format_check_rejects_plain_joblib_under_its_own_name():
    def measure(model, folder):
        return measure_format(get_format("joblib (compress=3)"), model, folder, iris_rows(64), n=3, load_repeats=1)

    checks_04.check_my_format(measure)  # a compressed format from the notebook is allowed…
    with pytest.raises(AssertionError, match="新しい形式"):
        checks_04.check_my_format(
            lambda model, folder: measure_format(get_format("joblib"), model, folder, iris_rows(64), n=3, load_repeats=1)
        )
