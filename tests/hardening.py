"""Shared checks of the hardening tests: error bodies, size limits on every route, start/stop cycles."""

from __future__ import annotations

import math
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import requests
from fastapi.routing import iter_route_contexts
from helpers import open_fds, settled_thread_count
from soak import Call

from course_lib.servers import serve

# What a traceback or a server-side path looks like inside a response body.
LEAKS = re.compile(
    r'Traceback \(most recent call last\)|File "[^"]+", line \d+|site-packages|\.py", line|'
    r"(?<![\w.])/(?:home|root|tmp|usr|work|check|Users|var)/\w"
)


def leaks(text: str) -> list[str]:
    """Tracebacks and file paths found in a response body."""
    return [m.group(0) for m in LEAKS.finditer(text)]


def error_body_problem(call: Call, response: requests.Response) -> str | None:
    """A 4xx/5xx answer must be JSON and must not show a traceback or a server path; None when it is fine."""
    if response.ok:
        return None
    if not response.headers.get("content-type", "").startswith("application/json"):
        return f"{response.status_code} answered with {response.headers.get('content-type')!r}, not JSON"
    found = leaks(response.text)
    return f"{response.status_code} body shows {found}" if found else None


def reference_answers(base_url: str, mix: Sequence[Call]) -> dict[str, Any]:
    """The JSON answer of each good POST of the mix, sent alone before any load."""
    answers = {}
    with requests.Session() as session:
        for call in mix:
            if call.good and call.method == "POST":
                response = session.request(call.method, base_url + call.path, timeout=30, **call.kwargs)
                assert response.ok, response.text
                answers[call.name] = response.json()
    return answers


def differences(got: Any, expected: Any, where: str = "answer", tol: float = 1e-5) -> list[str]:
    """Where got differs from expected: same keys and items, equal strings, numbers within tol (absolute)."""
    if isinstance(expected, dict) and isinstance(got, dict):
        if set(got) != set(expected):
            return [f"{where}: keys {sorted(got)} instead of {sorted(expected)}"]
        return [d for key in expected for d in differences(got[key], expected[key], f"{where}.{key}", tol)]
    if isinstance(expected, list) and isinstance(got, list):
        if len(got) != len(expected):
            return [f"{where}: {len(got)} items instead of {len(expected)}"]
        pairs = enumerate(zip(got, expected, strict=True))
        return [d for i, (g, e) in pairs for d in differences(g, e, f"{where}[{i}]", tol)]
    if isinstance(got, bool) or isinstance(expected, bool):  # True is not 1 in an answer
        return [] if got is expected else [f"{where}: {got!r} instead of {expected!r}"]
    if isinstance(expected, (int, float)) and isinstance(got, (int, float)):
        return [] if math.isclose(got, expected, rel_tol=0, abs_tol=tol) else [f"{where}: {got} instead of {expected}"]
    return [] if got == expected else [f"{where}: {got!r} instead of {expected!r}"]


def same_answers_under_load(
    reference: dict[str, Any], volatile: Sequence[str] = ()
) -> Callable[[Call, requests.Response], str | None]:
    """A soak check: each good answer equals the answer its request got alone (but for volatile keys such as
    timings), so an answer mixed up between clients shows; errors must be clean JSON (error_body_problem)."""

    def check(call: Call, response: requests.Response) -> str | None:
        if call.good and response.ok and call.name in reference:
            body = response.json()
            if isinstance(body, dict):
                body = {key: value for key, value in body.items() if key not in volatile}
            expected = {key: value for key, value in reference[call.name].items() if key not in volatile}
            found = differences(body, expected)
            if found:
                return "differs from the same request sent alone: " + "; ".join(found[:3])
        return error_body_problem(call, response)

    return check


def routes(app: Any) -> Iterator[tuple[str, str]]:
    """(method, concrete path) of every route of a Flask or FastAPI app; path parameters filled with 'x'."""
    if hasattr(app, "url_map"):
        for rule in app.url_map.iter_rules():
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                yield method, re.sub(r"<[^>]+>", "x", rule.rule)
    else:
        for route in iter_route_contexts(app.routes):  # also the routes of a router added by include_router
            for method in sorted(getattr(route, "methods", None) or {"GET"}):
                if method != "HEAD":
                    yield method, re.sub(r"\{[^}]+\}", "x", route.path)


def oversized_answers(app: Any, limit: int) -> dict[str, int]:
    """Status of every route when sent a body declared 4 × over the limit (the body itself is never read whole)."""
    statuses = {}
    body = b"{" + b" " * (4 * limit) + b"}"
    with serve(app) as server, requests.Session() as session:
        for method, path in routes(app):
            response = session.request(
                method, server.url + path, data=body, headers={"Content-Type": "application/json"}, timeout=30
            )
            statuses[f"{method} {path}"] = response.status_code
            assert not leaks(response.text), response.text
        assert session.get(server.url + "/health", timeout=10).ok
    return statuses


def hold_a_request_open(url: str) -> socket.socket:
    """A client that sent headers and half its body and is waiting: an in-flight request at stop time."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 40\r\n\r\n{"features": [5.1,'
    )
    return sock


def start_stop_cycles(
    make_server: Callable[[], Any], good: Callable[[str], requests.Response], cycles: int
) -> dict[str, int]:
    """Start and stop a server many times, every other time with requests in flight; return resource counts.

    In flight: a slow client holding a half-sent body, and a good request running in another thread.
    """
    warm = make_server()  # one warm-up cycle: lazily created module state is not a leak
    with warm as server:
        assert good(server.url).ok
    threads, fds = settled_thread_count(threading.active_count()), open_fds()
    ports, outcomes = [], []
    for i in range(cycles):
        server = make_server().start()
        ports.append(server.port)
        assert good(server.url).ok
        if i % 2:
            slow = hold_a_request_open(server.url)
            worker = threading.Thread(target=lambda url=server.url: outcomes.append(_answer_or_error(good, url)))
            worker.start()
            started = time.monotonic()
            server.stop()
            worker.join(30)
            slow.close()
            assert not worker.is_alive(), "a request in flight was left hanging after stop()"
            assert time.monotonic() - started < 30
        else:
            server.stop()
        server.stop()  # a second stop is harmless
    return {
        "threads_before": threads,
        "threads_after": settled_thread_count(threads),
        "fds_before": fds,
        "fds_after": _settled_fds(fds),
        "ports_still_listening": len(set(ports) & listening_ports()),
        "in_flight_requests": len(outcomes),
    }


def assert_lifecycle_clean(counts: dict[str, int], cycles: int) -> None:
    """No thread, file descriptor or listening port left behind, and every in-flight request came to an end."""
    assert counts["threads_after"] <= counts["threads_before"], counts
    assert counts["fds_after"] <= counts["fds_before"], counts
    assert counts["ports_still_listening"] == 0 and counts["in_flight_requests"] == cycles // 2, counts


def _answer_or_error(good: Callable[[str], requests.Response], url: str) -> object:
    """The status of a request, or the exception that cut it off."""
    try:
        return good(url).status_code
    except requests.RequestException as exc:
        return type(exc).__name__


def _settled_fds(baseline: int, timeout: float = 5.0) -> int:
    """Open file descriptors once closing sockets have been released, or after timeout."""
    deadline = time.monotonic() + timeout
    while open_fds() > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    return open_fds()


def listening_ports() -> set[int]:
    """Ports this process listens on (a stopped server's port must not be among them)."""
    import psutil

    return {c.laddr.port for c in psutil.Process().net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}


def bound_address(server: Any) -> str:
    """The address the server's listening socket is bound to, as the OS reports it."""
    import psutil

    for conn in psutil.Process().net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == server.port:
            return conn.laddr.ip
    raise AssertionError(f"nothing listens on port {server.port}")
