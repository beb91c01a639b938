"""The notebook-03 exercise checks reject wrong answers and report unfinished ones (the solutions notebook covers passing)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field, field_validator

from course_lib.apps.async_pitfall import create_pitfall_app, health_under_load
from course_lib.apps.iris_fastapi import create_app
from course_lib.apps.iris_schemas import IrisFeatures
from course_lib.exercises import checks_03
from course_lib.servers import serve


def not_implemented(*args, **kwargs):
    raise NotImplementedError()


def measured_p99(app) -> float:
    """A correct measurement, as the solution writes it."""
    with serve(app) as server:
        return health_under_load(server.url, n=15, clients=4).p99


def test_unfinished_exercises_are_reported_as_not_implemented():
    class Unfinished(IrisFeatures):
        @field_validator("features")
        @classmethod
        def at_most_30_cm(cls, features):
            raise NotImplementedError()

    with pytest.raises(NotImplementedError):
        checks_03.check_plausible_schema(Unfinished)
    with pytest.raises(NotImplementedError):
        checks_03.check_limited_batch(not_implemented)
    with pytest.raises(NotImplementedError):
        checks_03.check_fixed_endpoint(not_implemented, measured_p99)


def test_schema_check_fails_without_the_30_cm_rule():
    with pytest.raises(AssertionError, match="35 cm"):
        checks_03.check_plausible_schema(IrisFeatures)


def test_schema_check_fails_for_the_lax_source_style_schema():
    class Lax(BaseModel):
        features: list[float] = Field(min_length=4, max_length=4)

        @field_validator("features")
        @classmethod
        def at_most_30_cm(cls, features):
            for i, value in enumerate(features):
                if value > 30:
                    raise ValueError(f"features[{i}] must be at most 30 cm")
            return features

    with pytest.raises(AssertionError, match="NaN"):
        checks_03.check_plausible_schema(Lax)


def test_batch_check_fails_without_the_row_limit():
    with pytest.raises(AssertionError, match="413"):
        checks_03.check_limited_batch(lambda model, max_rows=10: create_app(model))


def test_fixed_endpoint_check_fails_for_the_blocking_app():
    with pytest.raises(AssertionError, match="大差ありません"):
        checks_03.check_fixed_endpoint(lambda model, work_s=0.05: create_pitfall_app("blocking", model, work_s), measured_p99)


def test_fixed_endpoint_check_fails_when_the_slow_work_is_removed():
    with pytest.raises(AssertionError, match="slow_predict"):
        checks_03.check_fixed_endpoint(lambda model, work_s=0.05: create_pitfall_app("def", model, 0.0), measured_p99)


def test_fixed_endpoint_check_fails_for_a_made_up_measurement():
    with pytest.raises(AssertionError, match="p99"):
        checks_03.check_fixed_endpoint(lambda model, work_s=0.05: create_pitfall_app("def", model, work_s), lambda app: 1.0)
