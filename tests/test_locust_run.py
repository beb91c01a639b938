"""course_lib.bench.run_locust runs a real headless locust against a real server and reports its final statistics."""

import math

import pytest
from test_checks_06 import LOCUST_SOLUTION as USER  # the exercise's solution: a user posting a digit

from course_lib.bench import _histogram_percentile, locust_result, run_locust
from course_lib.exercises.checks_06 import counting_app
from course_lib.servers import free_port, serve


def entry(method, name, times, failures=0, start=100.0, last=104.0):
    """One endpoint as locust's --json-file writes it (response times as a {ms: count} histogram)."""
    return {
        "method": method,
        "name": name,
        "num_requests": sum(times.values()),
        "num_failures": failures,
        "response_times": {str(ms): count for ms, count in times.items()},
        "start_time": start,
        "last_request_timestamp": last,
    }


def test_locust_result_aggregates_every_endpoint():
    result = locust_result(
        [entry("POST", "/predict", {10: 90, 20: 5}, failures=1), entry("GET", "/health", {1: 4, 500: 1}, last=110.0)]
    )
    assert (result.requests, result.failures) == (100, 1)
    assert result.by_endpoint == {"POST /predict": 95, "GET /health": 5}
    # 100 requests: 4 at 1 ms, 90 at 10 ms, 5 at 20 ms, 1 at 500 ms
    assert (result.p50_ms, result.p95_ms, result.p99_ms) == (10.0, 20.0, 20.0)
    assert result.throughput == pytest.approx(100 / 10.0)  # first request at 100 s, last at 110 s


def test_locust_result_percentiles_count_every_sample():
    assert locust_result([entry("GET", "/", {1: 99, 900: 1})]).p99_ms == 1.0  # 99 of 100 at or below 1 ms
    assert locust_result([entry("GET", "/", {1: 98, 900: 2})]).p99_ms == 900.0
    assert _histogram_percentile({1.0: 99, 900.0: 1}, 100) == 900.0


def test_locust_result_of_no_requests_has_no_percentiles():
    result = locust_result([])
    assert (result.requests, result.failures, result.by_endpoint) == (0, 0, {})
    assert math.isnan(result.p50_ms) and math.isnan(result.throughput)


def test_run_locust_counts_every_request_the_server_answered(classifier, tmp_path):
    path = tmp_path / "locustfile.py"
    path.write_text(USER)
    app, seen = counting_app(classifier)
    with serve(app) as server:
        # 8 s: a run of 3 s answered nothing once on a loaded 2-core CI machine (locust's users start slowly there)
        result = run_locust(path, server.url, users=2, seconds=8)
    answered = seen["POST /predict 200"]
    assert set(seen) == {"POST /predict 200"}, (dict(seen), result)
    assert result.by_endpoint == {"POST /predict": result.requests} and result.failures == 0
    # the final statistics: at most the 2 requests in flight when locust stopped are missing (a once-a-second
    # snapshot, like locust's --csv files, would miss up to a second of requests)
    assert answered - 2 <= result.requests <= answered, (result.requests, answered)
    assert 0 < result.p50_ms <= result.p95_ms <= result.p99_ms
    assert result.throughput > 0


def test_run_locust_reports_a_closed_port_as_failures(tmp_path):
    path = tmp_path / "locustfile.py"
    path.write_text(USER)
    result = run_locust(path, f"http://127.0.0.1:{free_port()}", users=1, seconds=2)
    assert result.requests > 0 and result.failures == result.requests


def test_run_locust_raises_with_locusts_error_when_it_writes_no_statistics(tmp_path):
    path = tmp_path / "locustfile.py"
    path.write_text(USER.replace("def predict(self):", "def predict(self)"))
    with pytest.raises(RuntimeError, match="(?s)without statistics.*SyntaxError"):
        run_locust(path, "http://127.0.0.1:9", users=1, seconds=2)
