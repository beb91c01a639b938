"""The notebook-06 exercise checks accept the solutions notebook's answers (run from solutions/06 itself, so the test
and the notebook cannot drift apart), reject each likely wrong answer with its own Japanese message, and report
unfinished ones. The wrong answers are the solution with one mistake each, written here as the solution's twins."""

from collections.abc import Callable
from typing import Any

import numpy as np
import onnxruntime
import pytest
import torch
from helpers import solution_namespace
from onnxruntime.quantization import CalibrationDataReader

from course_lib.exercises import checks_06
from course_lib.vision import sample_images
from course_lib.vision.digits import digits_resnet18, digits_tensors

SOLUTION_NAMES = ("make_session", "DigitsCalibrationReader", "locustfile_source")


@pytest.fixture(scope="module")
def solution() -> dict[str, Any]:
    """The solutions notebook's definitions."""
    return solution_namespace("06", SOLUTION_NAMES)


def not_implemented(*args, **kwargs):
    raise NotImplementedError()


def test_every_exercise_accepts_the_solution(solution, classifier):
    checks_06.check_session_builder(solution["make_session"], classifier)
    checks_06.check_calibration_reader(solution["DigitsCalibrationReader"], classifier)
    checks_06.check_locust_user(solution["locustfile_source"], classifier)


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
    """Gives inputs in batches of batch_size under key: forever when endless, without the last short batch when
    drop_last, each batch starting `overlap` images before the previous one ended."""

    def __init__(self, key, inputs, batch_size=64, endless=False, drop_last=False, overlap=0):
        stop = len(inputs) - batch_size + 1 if drop_last else len(inputs)
        self.batches = [inputs[i : i + batch_size] for i in range(0, max(stop, 0), batch_size - overlap)]
        self.key, self.endless, self.position = key, endless, 0

    def get_next(self):
        if self.position >= len(self.batches):
            if not self.endless:
                return None
            self.position = 0
        self.position += 1
        return {self.key: self.batches[self.position - 1]}


def train_split():
    return digits_tensors()[0].numpy()


def reader_of(inputs=train_split, key=None, size=lambda batch_size: batch_size, **options):
    """A make_reader(input_name, batch_size=64) over inputs(), with one thing changed for a wrong answer."""
    return lambda name, batch_size=64: Reader(key or name, inputs(), size(batch_size), **options)


def test_calibration_reader_solution_passes(classifier):
    checks_06.check_calibration_reader(reader_of(), classifier)


def test_a_shuffled_training_split_passes_too(classifier):
    shuffled = reader_of(lambda: np.random.default_rng(0).permutation(train_split()))
    checks_06.check_calibration_reader(shuffled, classifier)


def raw_pixels():
    """The digits' raw 8×8 pixels (0..16), not preprocessed."""
    from sklearn.datasets import load_digits

    return load_digits().images.astype(np.float32)[:, None]


def raw_pixels_resized():
    """The training split's shape, but undone standardization: roughly the raw 0..16 scale."""
    x = train_split()
    return ((x - x.min()) / (x.max() - x.min()) * 16).astype(np.float32)


@pytest.mark.parametrize(
    ("make_reader", "message"),
    [
        (reader_of(raw_pixels), "前処理の後の形"),
        (reader_of(raw_pixels_resized), "学習用の分割にない画像が 1437 枚.*前処理をしていない画素"),
        (reader_of(lambda: digits_tensors()[1].numpy()), "学習用の分割にない画像が 360 枚.*テスト用の分割"),
        (reader_of(lambda: train_split()[:500]), "937 枚が足りず.*テスト用の分割"),
        (reader_of(key="input"), "入力名"),
        (reader_of(endless=True), "None を返しません"),
        (reader_of(lambda: train_split().astype(np.float64)), "float32"),
        (reader_of(lambda: train_split()[:0]), "最初から None"),
        (lambda name, batch_size=64: iter([{name: train_split()}]), "CalibrationDataReader"),
        (reader_of(size=lambda batch_size: len(train_split())), "全部を 1 つのバッチ"),
        (reader_of(size=lambda batch_size: 64), r"batch_size=100 で、バッチの大きさが 64 × 22、29 でした"),
        (reader_of(size=lambda batch_size: 1), r"バッチの大きさが 1 × 1437 でした.*引数の batch_size"),
        (lambda name: Reader(name, train_split()), "batch_size を消さずに"),
        (reader_of(drop_last=True), "29 枚が足りず.*最後の端数のバッチ"),
        (reader_of(overlap=1), "2 回目以降の画像が 22 枚.*重なって"),
    ],
    ids=[
        "raw-8x8",
        "unstandardized",
        "test-split",
        "part",
        "wrong-name",
        "endless",
        "float64",
        "empty",
        "no-reader",
        "one-batch",
        "batch-size-hard-coded",
        "one-image-at-a-time",
        "no-batch-size-parameter",
        "drops-the-last-short-batch",
        "overlapping-batches",
    ],
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


@pytest.fixture(scope="module")
def light(tmp_path_factory) -> Callable[[str], str]:
    """A locustfile's source with the photo read from a file instead of through course_lib.vision: locust's
    process then starts without importing torch (about 7 s here, twice per check). For the cases about other things."""
    photo = tmp_path_factory.mktemp("locust") / "digit_0.png"
    photo.write_bytes(sample_images()["digit_0.png"])
    heavy = 'from course_lib.vision import sample_images\n\nPHOTO = sample_images()["digit_0.png"]'
    assert heavy in LOCUST_SOLUTION
    return lambda source: source.replace(heavy, f"PHOTO = open({str(photo)!r}, 'rb').read()")


def test_locust_solution_passes(classifier):
    checks_06.check_locust_user(lambda: LOCUST_SOLUTION, classifier)


def test_a_locust_user_without_a_wait_time_passes_too(classifier, light):
    """locust's default wait_time is constant(0): the closed loop the exercise asks for."""
    checks_06.check_locust_user(lambda: light(LOCUST_SOLUTION.replace("    wait_time = constant(0)\n", "")), classifier)


def with_wait_time(wait_time: str) -> str:
    """The solution's locustfile with another wait_time (every locust wait-time function imported)."""
    source = LOCUST_SOLUTION.replace("import HttpUser, constant, task", "import *")
    return source.replace("wait_time = constant(0)", f"wait_time = {wait_time}")


@pytest.mark.parametrize(
    ("wait_time", "message"),
    [
        ("between(1, 3)", r"ImageUser の wait_time が.*最大 [123]\.\d\d 秒"),  # the longest of 20 random waits
        ("between(0.1, 0.5)", r"最大 0\.[1-5]\d 秒"),
        ("constant(1)", r"最大 1\.00 秒"),
        ("constant_throughput(2)", r"最大 0\.[45]\d 秒"),
        ("poisson(2)", "think time"),
    ],
    ids=["between-1-3", "between-short", "constant-1", "constant-throughput", "poisson"],
)
def test_locust_check_rejects_a_think_time(classifier, light, wait_time, message):
    with pytest.raises(AssertionError, match=message):
        checks_06.check_locust_user(lambda: light(with_wait_time(wait_time)), classifier)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (LOCUST_SOLUTION.replace('self.client.post("/predict", files=', 'self.client.get("/predict", params='), "失敗"),
        (LOCUST_SOLUTION.replace('"/predict"', '"/classify"'), "失敗"),
        (LOCUST_SOLUTION.replace('files={"file": ("digit_0.png", PHOTO, "image/png")}', 'json={"x": 1}'), "失敗"),
        (LOCUST_SOLUTION.replace('"file": (', '"image": ('), "失敗"),
        (LOCUST_SOLUTION.replace("    @task\n", ""), "@task を付けて"),
        (LOCUST_SOLUTION.replace("def predict(self):", "def predict(self)"), "統計を書かずに"),
        ("print('no user here')", "HttpUser"),
    ],
    ids=["get", "wrong-path", "json-body", "wrong-field", "no-task", "syntax-error", "no-user"],
)
def test_locust_check_rejects_wrong_users(classifier, light, source, message):
    with pytest.raises(AssertionError, match=message):
        checks_06.check_locust_user(lambda: light(source), classifier)
