"""The image API served by Ray Serve answers as the uvicorn-served one does, good and bad requests alike, and a
start-stop cycle leaves no Ray process and no listening port behind (twice, in one test: Ray is started once at a
time, and the cycles must not depend on test order)."""

import time
from collections.abc import Callable

import psutil
import pytest
import requests
from hardening import differences, error_body_problem
from test_hardening import IMAGE

from course_lib.apps.image_api import create_app
from course_lib.ray_serving import ServeServer, image_api_deployment
from course_lib.servers import serve

RAY_PROCESS_NAMES = ("raylet", "gcs_server", "ray::")


def ray_processes() -> list[str]:
    """Command lines of this machine's Ray processes (raylet, GCS, workers)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        line = " ".join(process.info["cmdline"] or [])
        if any(name in line for name in RAY_PROCESS_NAMES):
            found.append(line[:120])
    return found


def listening_addresses(port: int) -> set[str]:
    """The addresses a socket on this machine listens on at port (Serve's proxy is a process of its own)."""
    listening = (c for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN)
    return {c.laddr.ip for c in listening if c.laddr.port == port}


def settled(read: Callable[[], object], expected: object, timeout_s: float = 20.0) -> bool:
    """Whether read() returns expected within timeout_s (processes take a moment to exit after a shutdown)."""
    deadline = time.monotonic() + timeout_s
    while read() != expected:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def answers(url: str) -> dict[str, list]:
    """Status and JSON body of every call of the image API's mix of good and bad requests, sent in turn."""
    out = {}
    with requests.Session() as session:
        for call in IMAGE.mix:
            response = session.request(call.method, url + call.path, timeout=60, **call.kwargs)
            problem = error_body_problem(call, response)
            assert problem is None, (call.name, problem)
            body = response.json()
            if isinstance(body, dict):
                body.pop("inference_time_ms", None)
            out[call.name] = [response.status_code, body]
    return out


def test_image_api_on_ray_serve_answers_as_on_uvicorn_and_stops_clean_twice(classifier):
    with serve(create_app(classifier)) as plain:
        expected = answers(plain.url)
    assert expected["upload a digit"][0] == 200 and expected["text file"][0] == 415, expected
    before = ray_processes()
    deployment = image_api_deployment("digits", num_replicas=1, ray_actor_options={"num_cpus": 1})
    for cycle in (1, 2):
        server = ServeServer(deployment.bind(), name="image_api", num_cpus=2)
        with server:
            got = answers(server.url)
            if cycle == 2:  # a second application beside the first, at its own route prefix
                second = server.deploy(image_api_deployment("digits", name="second").bind(), "second")
                assert not differences(answers(second), got, where="second app")
            assert ray_processes(), "no Ray process while Serve runs: the check below would prove nothing"
            assert listening_addresses(server.port) == {"127.0.0.1"}
        problems = differences(got, expected, where=f"cycle {cycle}")
        assert not problems, problems  # the same statuses (the hardening suite checks them) and the same answers
        assert listening_addresses(server.port) == set()
        assert settled(ray_processes, before), f"cycle {cycle} left Ray processes: {ray_processes()}"


def test_the_image_api_s_own_batcher_is_refused_on_ray_serve():
    """Its batcher lives in the ASGI lifespan state, which Serve's ingress does not hand to requests: every
    /predict would answer 500. The deployment refuses the setting instead, pointing at Serve's @serve.batch."""
    with pytest.raises(ValueError, match="serve.batch"):
        image_api_deployment("digits", max_batch=8)
