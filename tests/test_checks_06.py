"""The notebook-06 exercise checks accept the solutions, reject each likely wrong answer, report unfinished ones."""

import numpy as np
import onnxruntime
import pytest
import torch
from onnxruntime.quantization import CalibrationDataReader

from course_lib.exercises import checks_06
from course_lib.vision.digits import digits_resnet18, digits_tensors


def not_implemented(*args, **kwargs):
    raise NotImplementedError()


def test_unfinished_exercises_are_reported_as_not_implemented(classifier):
    for call in (
        lambda: checks_06.check_session_builder(not_implemented, classifier),
        lambda: checks_06.check_calibration_reader(not_implemented, classifier),
        lambda: checks_06.check_locust_user(not_implemented, classifier),
    ):
        with pytest.raises(NotImplementedError, match="^$"):
            call()


# Exercise 1: a session builder


def session_builder(threads_of=lambda t: t, spinning="0", level="ORT_ENABLE_ALL", other_model=None):
    """The exercise's make_session, with one setting changed for a wrong answer."""

    def make_session(path, threads):
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads_of(threads)
        if spinning is not None:
            options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        options.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel, level)
        model = other_model or path
        return onnxruntime.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])

    return make_session


def test_session_builder_solution_passes(classifier):
    checks_06.check_session_builder(session_builder(), classifier)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (dict(threads_of=lambda t: 0), "intra_op_num_threads"),
        (dict(threads_of=lambda t: 2), "intra_op_num_threads"),
        (dict(spinning=None), "未設定"),
        (dict(spinning="1"), "スピン待ち"),
        (dict(level="ORT_ENABLE_BASIC"), "ORT_ENABLE_ALL"),
        (dict(level="ORT_DISABLE_ALL"), "ORT_ENABLE_ALL"),
    ],
)
def test_session_builder_rejects_wrong_options(classifier, wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks_06.check_session_builder(session_builder(**wrong), classifier)


def test_session_builder_rejects_another_model(classifier, tmp_path):
    torch.manual_seed(1)
    untrained = digits_resnet18().eval()
    path = checks_06.export_onnx(untrained, classifier.example_input(2), tmp_path / "untrained.onnx")
    with pytest.raises(AssertionError, match="出力が"):
        checks_06.check_session_builder(session_builder(other_model=path), classifier)


def test_session_builder_rejects_something_else_than_a_session(classifier):
    with pytest.raises(AssertionError, match="InferenceSession"):
        checks_06.check_session_builder(lambda path, threads: path, classifier)


# Exercise 2: a calibration data reader


class Reader(CalibrationDataReader):
    """Gives inputs in batches of 64 under key; forever when endless."""

    def __init__(self, key, inputs, endless=False):
        self.key, self.inputs, self.endless, self.start = key, inputs, endless, 0

    def get_next(self):
        if self.start >= len(self.inputs):
            if not self.endless:
                return None
            self.start = 0
        batch = self.inputs[self.start : self.start + 64]
        self.start += 64
        return {self.key: batch}


def train_split():
    return digits_tensors()[0].numpy()


def test_calibration_reader_solution_passes(classifier):
    checks_06.check_calibration_reader(lambda name: Reader(name, train_split()), classifier)


def test_a_shuffled_training_split_passes_too(classifier):
    shuffled = np.random.default_rng(0).permutation(train_split())
    checks_06.check_calibration_reader(lambda name: Reader(name, shuffled), classifier)


def raw_pixels():
    """The digits' raw 8×8 pixels (0..16), not preprocessed."""
    from sklearn.datasets import load_digits

    return load_digits().images.astype(np.float32)[:, None]


def raw_pixels_resized():
    """The training split's shape, but undone standardization: roughly the raw 0..16 scale."""
    x = train_split()
    return (x - x.min()) / (x.max() - x.min()) * 16


@pytest.mark.parametrize(
    ("make_reader", "message"),
    [
        (lambda name: Reader(name, raw_pixels()), "前処理の後の形"),
        (lambda name: Reader(name, raw_pixels_resized().astype(np.float32)), "学習用の分割"),
        (lambda name: Reader(name, digits_tensors()[1].numpy()), "学習用の分割"),
        (lambda name: Reader(name, train_split()[:500]), "学習用の分割"),
        (lambda name: Reader("input", train_split()), "入力名"),
        (lambda name: Reader(name, train_split(), endless=True), "None を返しません"),
        (lambda name: Reader(name, train_split().astype(np.float64)), "float32"),
        (lambda name: Reader(name, train_split()[:0]), "最初から None"),
        (lambda name: iter([{name: train_split()}]), "CalibrationDataReader"),
    ],
    ids=["raw-8x8", "unstandardized", "test-split", "part", "wrong-name", "endless", "float64", "empty", "no-reader"],
)
def test_calibration_reader_rejects_wrong_readers(classifier, make_reader, message):
    with pytest.raises(AssertionError, match=message):
        checks_06.check_calibration_reader(make_reader, classifier)


# Exercise 3: a locust user

LOCUST_SOLUTION = """
from locust import HttpUser, constant, task

from course_lib.vision import sample_images

PHOTO = sample_images()["digit_0.png"]


class ImageUser(HttpUser):
    wait_time = constant(0)

    @task
    def predict(self):
        self.client.post("/predict", files={"file": ("digit_0.png", PHOTO, "image/png")})
"""


def test_locust_solution_passes(classifier):
    checks_06.check_locust_user(lambda: LOCUST_SOLUTION, classifier)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (LOCUST_SOLUTION.replace('self.client.post("/predict", files=', 'self.client.get("/predict", params='), "失敗"),
        (LOCUST_SOLUTION.replace('"/predict"', '"/classify"'), "失敗"),
        (LOCUST_SOLUTION.replace('files={"file": ("digit_0.png", PHOTO, "image/png")}', 'json={"x": 1}'), "失敗"),
        (LOCUST_SOLUTION.replace('"file": (', '"image": ('), "失敗"),
        (LOCUST_SOLUTION.replace("    @task\n", ""), "統計を書かずに|1 件も"),
        (LOCUST_SOLUTION.replace("def predict(self):", "def predict(self)"), "統計を書かずに"),
        ("print('no user here')", "HttpUser"),
    ],
    ids=["get", "wrong-path", "json-body", "wrong-field", "no-task", "syntax-error", "no-user"],
)
def test_locust_check_rejects_wrong_users(classifier, source, message):
    with pytest.raises(AssertionError, match=message):
        checks_06.check_locust_user(lambda: source, classifier)
