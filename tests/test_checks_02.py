"""The notebook-02 exercise checks accept the solutions and reject the mistakes a learner is likely to make."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, jsonify

from course_lib.apps.iris_flask import VERSION, InputError, create_app, parse_features, predict_one, read_json_body
from course_lib.data import IRIS_CLASSES
from course_lib.exercises import checks_02


def not_implemented(*args, **kwargs):
    raise NotImplementedError()


@pytest.mark.parametrize(
    "check", [checks_02.check_model_info, checks_02.check_batch_predict, checks_02.check_plausible_measurements]
)
def test_an_unfinished_exercise_is_reported_as_not_implemented(check):
    with pytest.raises(NotImplementedError):
        check(not_implemented)


# Exercise 1: GET /model-info


def info_app(
    model: Any,
    method: str = "GET",
    without: str = "",
    hard_coded: bool = False,
    class_ids: bool = False,
    bare: bool = False,
) -> Flask:
    """The solution of exercise 1; each keyword makes one mistake."""
    app = Flask("bare") if bare else create_app(model)

    @app.route("/model-info", methods=[method])
    def model_info():
        info = {
            "model": type(model).__name__,
            "n_features": int(model.n_features_in_),
            "classes": [int(c) if class_ids else IRIS_CLASSES[int(c)] for c in model.classes_],
            "n_estimators": 100 if hard_coded else int(model.n_estimators),
            "version": VERSION,
        }
        info.pop(without, None)
        return jsonify(info)

    return app


def test_model_info_check_accepts_the_solution():
    checks_02.check_model_info(info_app)


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        (dict(without="version"), '"version" がありません'),
        (dict(hard_coded=True), 'n_estimators=7 のモデルで /model-info の "n_estimators" が 100'),
        (dict(class_ids=True), '"classes" が \\[0, 1, 2\\]'),
        (dict(bare=True), "POST /predict が setosa"),
        (dict(method="POST"), "ステータスが 405"),
    ],
    ids=["no version", "n_estimators hard-coded", "class ids not names", "new Flask app", "POST route"],
)
def test_model_info_check_rejects_a_mistake(mistake, message):
    with pytest.raises(AssertionError, match=message):
        checks_02.check_model_info(lambda model: info_app(model, **mistake))


def test_model_info_check_rejects_a_missing_endpoint():
    with pytest.raises(AssertionError, match="ステータスが 404"):
        checks_02.check_model_info(lambda model: create_app(model))


# Exercise 2: POST /predict/batch


def batch_app(
    model: Any,
    max_rows: int = 100,
    *,
    limit: str = ">",
    base: int = 0,
    keep_reason: bool = True,
    keep_code: bool = True,
    skip_bad: bool = False,
    sort_rows: bool = False,
    allow_empty: bool = False,
    assume_object: bool = False,
    own_parser: bool = False,
) -> Flask:
    """The solution of exercise 2; each keyword makes one mistake."""
    app = create_app(model)
    too_many = {
        ">": lambda n: n > max_rows,
        ">=": lambda n: n >= max_rows,
        "100": lambda n: n > 100,
        "none": lambda n: False,
    }[limit]

    def parse_row(i: int, row: Any) -> list[float]:
        if own_parser:  # float() by hand: true/false become 1.0/0.0
            return [float(v) for v in row]
        try:
            return parse_features({"features": row})
        except InputError as error:
            message = f"instances[{i + base}]: {error.message}" if keep_reason else f"instances[{i + base}] is invalid"
            raise InputError(message, error.code if keep_code else "invalid_request") from None

    @app.post("/predict/batch")
    def predict_batch():
        payload = read_json_body()
        instances = (
            payload.get("instances")
            if assume_object
            else (payload.get("instances") if isinstance(payload, dict) else None)
        )
        if not isinstance(instances, list) or (not instances and not allow_empty):
            raise InputError('send JSON such as {"instances": [[5.1, 3.5, 1.4, 0.2]]}', "invalid_instances")
        if too_many(len(instances)):
            raise InputError(f"at most {max_rows} rows per request, got {len(instances)}", "too_many_rows")
        rows = []
        for i, row in enumerate(instances):
            try:
                rows.append(parse_row(i, row))
            except InputError:
                if not skip_bad:
                    raise
        if sort_rows:
            rows.sort()
        return jsonify(predictions=[predict_one(model, row) for row in rows])

    return app


def test_batch_check_accepts_the_solution():
    checks_02.check_batch_predict(batch_app)


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        (dict(limit=">="), "正しい 8 行のバッチに 400"),
        (dict(limit="100"), "max_rows=8 のアプリへの 9 行"),
        (dict(limit="none"), "max_rows=8 のアプリへの 9 行"),
        (dict(base=1), "位置 instances\\[1\\]（0 から数える）.*instances\\[2\\]: features"),
        (dict(keep_reason=False), "parse_features が見つけた理由"),
        (dict(keep_code=False), '"invalid_features" にしてください'),
        (dict(skip_bad=True), "\\[400\\] のどれかを期待しましたが 200"),
        (dict(sort_rows=True), "入力と同じ順番"),
        (dict(allow_empty=True), "空の instances に \\[400\\]"),
        (dict(assume_object=True), "本文がオブジェクトでなく配列 に \\[400\\] のどれかを期待しましたが 500"),
        (dict(own_parser=True), "instances\\[1\\] がだめなバッチ .* 500"),
    ],
    ids=[
        "limit off by one",
        "limit hard-coded",
        "no limit",
        "1-based positions",
        "reason dropped",
        "code dropped",
        "bad rows skipped",
        "rows reordered",
        "empty batch accepted",
        "array body crashes",
        "own parser",
    ],
)
def test_batch_check_rejects_a_mistake(mistake, message):
    with pytest.raises(AssertionError, match=message):
        checks_02.check_batch_predict(lambda model, max_rows=100: batch_app(model, max_rows, **mistake))


def test_batch_check_rejects_a_missing_endpoint():
    with pytest.raises(AssertionError, match="200 を期待"):
        checks_02.check_batch_predict(lambda model, max_rows=100: create_app(model))


# Exercise 3: the range rule 0 ≤ x ≤ 30 cm


def in_range(low_ok: bool = True, high_ok: bool = True, high: float = 30):
    """The solution of exercise 3; the arguments move its boundaries."""

    def plausible_measurements(payload):
        features = parse_features(payload)
        for i, value in enumerate(features):
            above_low = value >= 0 if low_ok else value > 0
            below_high = value <= high if high_ok else value < high
            if not (above_low and below_high):
                raise InputError(f"features[{i}] must be between 0 and 30 cm, got {value}", "out_of_range")
        return features

    return plausible_measurements


def test_range_check_accepts_the_solution():
    checks_02.check_plausible_measurements(in_range())


def value_error(payload):
    features = parse_features(payload)
    if not all(0 <= v <= 30 for v in features):
        raise ValueError("out of range")
    return features


def always_first(payload):
    features = parse_features(payload)
    if not all(0 <= v <= 30 for v in features):
        raise InputError("features[0] is out of range", "out_of_range")
    return features


def no_code(payload):
    features = parse_features(payload)
    for i, value in enumerate(features):
        if not 0 <= value <= 30:
            raise InputError(f"features[{i}] out of range")
    return features


def range_only(payload):
    features = payload["features"]
    for i, value in enumerate(features):
        if not isinstance(value, (int, float)) or not 0 <= value <= 30:
            raise InputError(f"features[{i}] out of range", "out_of_range")
    return [float(v) for v in features]


def returns_nothing(payload):
    in_range()(payload)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (in_range(low_ok=False), "範囲内（0 以上 30 以下。0 と 30 ちょうども含む）ですが InputError"),
        (in_range(high_ok=False), "範囲内（0 以上 30 以下。0 と 30 ちょうども含む）ですが InputError"),
        (in_range(high=31), "範囲外（0 以上 30 以下でない）の \\[30.01"),
        (parse_features, "範囲外"),
        (value_error, "範囲外.* 500"),
        (always_first, "features\\[1\\]"),
        (no_code, '"out_of_range" にしてください'),
        (range_only, "parse_features を先に呼びましたか"),
        (returns_nothing, "float のリスト"),
    ],
    ids=[
        "0 refused",
        "30 refused",
        "30.01 accepted",
        "no range rule",
        "ValueError is a 500",
        "position always 0",
        "no code",
        "format rules skipped",
        "returns None",
    ],
)
def test_range_check_rejects_a_mistake(answer, message):
    with pytest.raises(AssertionError, match=message):
        checks_02.check_plausible_measurements(answer)
