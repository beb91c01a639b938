"""The notebook-02 exercise checks reject wrong answers and report unfinished ones (the solutions notebook covers passing)."""

from __future__ import annotations

import pytest

from course_lib.apps.iris_flask import create_app, parse_features
from course_lib.exercises import checks_02


def not_implemented(*args, **kwargs):
    raise NotImplementedError()


@pytest.mark.parametrize(
    "check", [checks_02.check_model_info, checks_02.check_batch_predict, checks_02.check_plausible_measurements]
)
def test_an_unfinished_exercise_is_reported_as_not_implemented(check):
    with pytest.raises(NotImplementedError):
        check(not_implemented)


def test_model_info_check_fails_without_the_endpoint():
    with pytest.raises(AssertionError, match="/model-info"):
        checks_02.check_model_info(lambda model: create_app(model))


def test_batch_check_fails_without_the_endpoint():
    with pytest.raises(AssertionError, match="200"):
        checks_02.check_batch_predict(lambda model, max_rows=100: create_app(model))


def test_range_check_fails_without_the_range_rule():
    with pytest.raises(AssertionError, match="範囲外"):
        checks_02.check_plausible_measurements(parse_features)


def test_range_check_fails_when_the_format_rules_are_skipped():
    from course_lib.apps.iris_flask import InputError

    def range_only(payload):
        features = payload["features"]
        for i, value in enumerate(features):
            if not isinstance(value, (int, float)) or not 0 < value <= 30:
                raise InputError(f"features[{i}] out of range", "out_of_range")
        return [float(v) for v in features]

    with pytest.raises(AssertionError):
        checks_02.check_plausible_measurements(range_only)
