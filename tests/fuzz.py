"""Property-based fuzzing helpers: OpenAPI-driven (schemathesis) and Hypothesis JSON bodies."""

from __future__ import annotations

import json

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ_SETTINGS = settings(
    max_examples=60, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


def fuzz_openapi(
    base_url: str, fuzz_settings: settings = FUZZ_SETTINGS, excluded_checks: list | None = None
) -> dict[str, int]:
    """Run schemathesis' checks (no 5xx, responses match their schema…) on every operation; cases per operation."""
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    counts: dict[str, int] = {}
    session = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        counts[label] = 0

        @fuzz_settings
        @given(case=operation.as_strategy())
        def check(case) -> None:
            counts[label] += 1  # noqa: B023 - check() runs to the end inside this iteration
            case.call_and_validate(base_url=base_url, session=session, timeout=30, excluded_checks=excluded_checks)

        check()
    session.close()
    return counts


json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
# Bodies that look like the real thing more often than not, so validation deeper down is exercised too.
feature_lists = st.lists(json_scalars | st.floats(min_value=-1e3, max_value=1e3), min_size=0, max_size=6)
near_valid = st.fixed_dictionaries({"features": feature_lists | json_values}, optional={"extra": json_values})
json_bodies = near_valid | json_values


def dumps(value) -> bytes:
    """JSON text the way a careless client writes it (Python's json allows NaN and Infinity literals)."""
    return json.dumps(value, allow_nan=True).encode()
