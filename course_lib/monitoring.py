"""Notebook 08's request monitoring for every course API: Prometheus metrics at GET /metrics and one JSON log
line per request with a request id.

    http_requests_total{method, route, status, version}       requests answered (a counter)
    http_request_duration_seconds{method, route, version}     server-side latency (a histogram)
    http_requests_in_flight                             requests being handled now (a gauge)
    model_info{name, version, ...}                            which model is stable now (a gauge fixed at 1)

`version` is the model version that answered, so a canary's errors and latency are told apart from the stable
version's (a handful of versions at a time: a bounded label).

Labels are bounded: `route` is the route's template ("/predict"), never the raw path, and "unmatched" for
paths no route knows; unknown methods become "other". Otherwise a scanner sending random paths would create
a new time series per request. Scrapes of /metrics are not counted, so a counter moves by exactly the
requests clients sent. Each app has its own registry (several apps in one kernel or test process never mix).

The log line (logger ``course_lib.requests``, silent until the operator configures logging) carries the
request id, method, route, status, latency and model version: no body, no query string, no header values.
The id is the client's `X-Request-ID` when it is a short token, a new one otherwise; the answer returns it.

One process, one registry: with several uvicorn workers each worker has its own counters, so a scrape sees
one of them. Prometheus' multiprocess mode (PROMETHEUS_MULTIPROC_DIR) or one scrape target per worker fixes
that; the course runs one process per server.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "METRICS_PATH",
    "LATENCY_BUCKETS",
    "ApiMetrics",
    "DriftCollector",
    "request_id_from",
    "ObserveASGI",
    "ObserveWSGI",
    "instrument_fastapi",
    "instrument_flask",
    "metrics_of",
    "capture_request_log",
    "parse_metrics",
    "sample_value",
    "histogram_buckets",
    "bucket_of_rank",
    "histogram_quantile",
]

METRICS_PATH = "/metrics"
# Dense where the course's APIs answer (1–100 ms), so a p95 read from the buckets is close to the true one.
LATENCY_BUCKETS = (
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075,
    0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
REQUEST_ID_HEADER = "X-Request-ID"
_TOKEN = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # no spaces, quotes or newlines: safe in a log line and a header

log = logging.getLogger("course_lib.requests")
log.addHandler(logging.NullHandler())
log.setLevel(logging.INFO)


class ApiMetrics:
    """The four metrics of one app in their own registry; `exposition()` is the /metrics body."""

    def __init__(self, model_name: str, model_version: str = "unversioned", **model_labels: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests", "HTTP requests answered", ["method", "route", "status", "version"], registry=self.registry
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time from the request's arrival to the end of its answer, in the server",
            ["method", "route", "version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge("http_requests_in_flight", "HTTP requests being handled now", registry=self.registry)
        # an info metric: the gauge model_info{...} 1 (Prometheus' types: counter, gauge, histogram, summary)
        self.model = Info("model", "The model version that is stable now", registry=self.registry)
        self.model_labels: dict[str, str] = {}
        self.set_model(model_name, model_version, **model_labels)

    def set_model(self, name: str, version: str, **labels: str) -> None:
        """Record which model is served (call again after a promotion or a rollback)."""
        self.model_labels = {"name": name, "version": version, **labels}
        self.model.info(self.model_labels)

    @property
    def model_version(self) -> str:
        """The version of the model being served."""
        return self.model_labels["version"]

    def observe(self, method: str, route: str, status: int | str, seconds: float, version: str) -> None:
        """Count one answered request and its latency, under the model version that answered."""
        method = method if method in METHODS else "other"
        self.requests.labels(method, route, str(status), version).inc()
        self.latency.labels(method, route, version).observe(seconds)

    def watch_drift(self, monitor: Any) -> None:
        """Expose a DriftMonitor's scores at /metrics (see DriftCollector)."""
        self.registry.register(DriftCollector(monitor))

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


class DriftCollector:
    """Exposes a DriftMonitor at each scrape: rows in its window and, once it is full, each feature's scores.

        input_drift_window_rows                  live rows in the window
        input_drift_psi{feature}                 PSI against the training reference
        input_drift_ks_pvalue{feature}           the two-sample KS test's p-value
        input_drifted{feature}                   1 when both agree (the monitor's rule), else 0

    Scores are computed when Prometheus reads them (a few thousand numbers), never on a request's path.
    """

    def __init__(self, monitor: Any) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges, computed from the window as it is now."""
        yield GaugeMetricFamily(
            "input_drift_window_rows", "Live input rows in the drift window", len(self.monitor.live)
        )
        if not self.monitor.full:
            return  # a half-empty window's scores are noise; alert only on full windows
        families = {
            "psi": GaugeMetricFamily("input_drift_psi", "PSI of live inputs vs training", labels=["feature"]),
            "p_value": GaugeMetricFamily("input_drift_ks_pvalue", "KS test p-value vs training", labels=["feature"]),
            "drifted": GaugeMetricFamily(
                "input_drifted", "1 when PSI and the KS test both say drift", labels=["feature"]
            ),
        }
        for score in self.monitor.report():
            for field, family in families.items():
                family.add_metric([score.feature], float(getattr(score, field)))
        yield from families.values()


def request_id_from(value: str | None) -> str:
    """The client's request id when it is a short token; a new random one otherwise (never echo arbitrary text)."""
    if value and _TOKEN.fullmatch(value):
        return value
    return uuid.uuid4().hex


def _log_request(
    request_id: str, method: str, route: str, status: int | str, seconds: float, model_version: str
) -> None:
    """One JSON line for one answered request."""
    if log.isEnabledFor(logging.INFO):
        record = {
            "request_id": request_id,
            "method": method if method in METHODS else "other",
            "route": route,
            "status": status,
            "latency_ms": round(seconds * 1000.0, 3),
            "model_version": model_version,
        }
        log.info(json.dumps(record))


class ObserveASGI:
    """ASGI middleware: metrics, the request id header and the log line for every HTTP request but /metrics."""

    def __init__(self, app: Any, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        """Time the request until its last body chunk is sent; an exception counts as a 500 and is re-raised."""
        if scope["type"] != "http" or scope["path"] == METRICS_PATH:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = request_id_from(headers.get(b"x-request-id", b"").decode("latin-1"))
        # routes read it as request.state.request_id; a route may set request.state.model_version (a canary)
        scope.setdefault("state", {})["request_id"] = request_id
        status: int | str = "none"  # the client left before any answer
        recorded = False
        started = time.perf_counter()

        def record() -> None:
            nonlocal recorded
            recorded = True
            self.metrics.in_flight.dec()
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", UNMATCHED)
            version = scope["state"].get("model_version", self.metrics.model_version)
            self.metrics.observe(scope["method"], route, status, elapsed, version)
            _log_request(request_id, scope["method"], route, status, elapsed, version)

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            elif message["type"] == "http.response.body" and not message.get("more_body", False) and not recorded:
                # before the last byte leaves: a client that has its answer finds it counted and logged
                record()
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            status = 500
            raise
        finally:
            if not recorded:
                record()


class ObserveWSGI:
    """WSGI middleware: the same metrics, request id header and log line for a Flask app."""

    def __init__(self, wsgi_app: Callable, metrics: ApiMetrics) -> None:
        self.wsgi_app = wsgi_app
        self.metrics = metrics

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        """Time the request to the end of its (fully built) answer; Flask's own handlers make every fault a status."""
        if environ.get("PATH_INFO") == METRICS_PATH:
            return self.wsgi_app(environ, start_response)
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        environ["course_lib.request_id"] = request_id
        status: int | str = 500

        def start_with_id(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            nonlocal status
            status = int(status_line.split(" ", 1)[0])
            return start_response(status_line, [*headers, (REQUEST_ID_HEADER, request_id)], exc_info)

        started = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            return self.wsgi_app(environ, start_with_id)
        finally:
            self.metrics.in_flight.dec()
            elapsed = time.perf_counter() - started
            route = environ.get("course_lib.route", UNMATCHED)
            method = environ.get("REQUEST_METHOD", "")
            version = self.metrics.model_version
            self.metrics.observe(method, route, status, elapsed, version)
            _log_request(request_id, method, route, status, elapsed, version)


def instrument_fastapi(app: Any, metrics: ApiMetrics) -> None:
    """Add the middleware (outermost, so 413s and 500s count too) and GET /metrics, kept out of the OpenAPI schema."""
    from starlette.responses import Response

    @app.get(METRICS_PATH, include_in_schema=False)
    def prometheus_metrics() -> Response:
        """The app's metrics in Prometheus' text format."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(ObserveASGI, metrics=metrics)
    app.state.metrics = metrics


def instrument_flask(app: Any, metrics: ApiMetrics) -> None:
    """Wrap the WSGI app, label each request with its URL rule, and add GET /metrics."""
    from flask import Response, request

    @app.get(METRICS_PATH)
    def prometheus_metrics() -> Response:
        """The app's metrics in Prometheus' text format."""
        return Response(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)

    @app.after_request
    def remember_route(response: Response) -> Response:
        # after_request runs for error answers too (Flask's handlers turn every fault into a response)
        request.environ["course_lib.route"] = request.url_rule.rule if request.url_rule else UNMATCHED
        return response

    app.wsgi_app = ObserveWSGI(app.wsgi_app, metrics)
    app.extensions["course_lib.metrics"] = metrics


def metrics_of(app: Any) -> ApiMetrics:
    """The ApiMetrics of an instrumented Flask or FastAPI app."""
    if hasattr(app, "extensions"):
        return app.extensions["course_lib.metrics"]
    return app.state.metrics


class _Lines(logging.Handler):
    """Collects the parsed JSON records of the request log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            self.records.append(json.loads(record.getMessage()))


@contextmanager
def capture_request_log() -> Iterator[list[dict[str, Any]]]:
    """Within the block, every request log line is parsed and appended to the yielded list."""
    handler = _Lines()
    log.addHandler(handler)
    try:
        yield handler.records
    finally:
        log.removeHandler(handler)


def parse_metrics(text: str) -> dict[str, Any]:
    """A /metrics body parsed by prometheus_client's parser: {family name: Metric}."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample_value(families: dict[str, Any], sample_name: str, **labels: str) -> float:
    """The summed value of the samples called sample_name whose labels include `labels` (0 when none)."""
    return sum(
        sample.value
        for family in families.values()
        for sample in family.samples
        if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def histogram_buckets(families: dict[str, Any], name: str, **labels: str) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) pairs of a histogram, summed over the series whose labels match."""
    counts: dict[float, float] = {}
    for sample in families[name].samples:
        if sample.name == name + "_bucket" and all(sample.labels.get(k) == v for k, v in labels.items()):
            bound = float(sample.labels["le"])
            counts[bound] = counts.get(bound, 0.0) + sample.value
    return sorted(counts.items())


def bucket_of_rank(q: float, buckets: list[tuple[float, float]]) -> tuple[float, float, float, float, float]:
    """PromQL's search: (rank q·n, lower bound, lower count, upper bound, count) of the bucket that holds the rank."""
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            return rank, lower_bound, lower_count, bound, count
        lower_bound, lower_count = bound, count
    return rank, lower_bound, lower_count, float("inf"), buckets[-1][1]


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """PromQL's histogram_quantile: find the bucket holding rank q·n, interpolate linearly inside it."""
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    rank, lower_bound, lower_count, bound, count = bucket_of_rank(q, buckets)
    if bound == float("inf"):
        return lower_bound  # PromQL answers the highest finite bound
    return lower_bound + (bound - lower_bound) * (rank - lower_count) / max(count - lower_count, 1e-12)
