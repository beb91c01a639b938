"""The image API served by Ray Serve answers as the uvicorn-served one does, good and bad requests alike, batched
with @serve.batch or not; a start-stop cycle leaves no Ray process and no listening port behind (twice, in one test:
Ray is started once at a time, and the cycles must not depend on test order); on a simulated two-node cluster both
nodes serve, and a killed replica is replaced."""

import contextlib
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psutil
import requests
from hardening import differences, error_body_problem
from test_hardening import BATCHED, IMAGE

from course_lib.apps.image_api import create_app
from course_lib.ray_serving import (
    ServeServer,
    SimulatedCluster,
    image_api_deployment,
    kill_replica,
    ray_processes,
    replica_actors,
    running_replicas,
    still_running,
    wait_for_replacement,
)
from course_lib.servers import bind_socket, serve
from course_lib.vision import sample_images

BATCH_COUNTERS = ("queued", "batches", "mean_batch_size", "rejected", "cancelled")  # differ with the traffic


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
                for counter in BATCH_COUNTERS:
                    (body.get("batching") or {}).pop(counter, None)
            out[call.name] = [response.status_code, body]
    return out


def predict_concurrently(url: str, n: int, clients: int) -> list[requests.Response]:
    """n uploads of a digit from `clients` threads at once."""
    files = {"file": ("digit_2.png", sample_images()["digit_2.png"], "image/png")}
    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(lambda _: requests.post(url + "/predict", files=files, timeout=120), range(n)))


def test_image_api_on_ray_serve_answers_as_on_uvicorn_and_stops_clean_twice(classifier):
    with (
        serve(create_app(classifier, backend="torch")) as plain,
        serve(create_app(classifier, backend="torch", **BATCHED)) as batched,
    ):
        expected, expected_batched = answers(plain.url), answers(batched.url)
    assert expected["upload a digit"][0] == 200 and expected["text file"][0] == 415, expected
    assert expected_batched["health"][1]["batching"]["max_batch"] == BATCHED["max_batch"], expected_batched
    assert ray_processes() == {}  # none of this test process's own (another worker's Ray is not counted)
    deployment = image_api_deployment("digits", num_replicas=1, ray_actor_options={"num_cpus": 1})
    for cycle in (1, 2):
        server = ServeServer(deployment.bind(), name="image_api", num_cpus=2)
        taken = server.port
        with contextlib.ExitStack() as stack:
            if cycle == 1:  # the chosen port taken before Serve binds it: Serve moves to another free port
                stack.enter_context(bind_socket("127.0.0.1", taken))
            stack.enter_context(server)
            assert (server.port != taken) == (cycle == 1)
            got = answers(server.url)
            if cycle == 2:  # a second application beside the first, at its own route prefix, batched
                second = server.deploy(image_api_deployment("digits", name="second", **BATCHED).bind(), "second")
                assert not differences(answers(second), expected_batched, where="batched app")
                batching_counters_move(second)
            started = ray_processes()
            assert started, "no Ray process while Serve runs: the check below would prove nothing"
            assert listening_addresses(server.port) == {"127.0.0.1"}
        problems = differences(got, expected, where=f"cycle {cycle}")
        assert not problems, problems  # the same statuses (the hardening suite checks them) and the same answers
        assert listening_addresses(server.port) == set()
        assert settled(lambda: still_running(started), {}), f"cycle {cycle} left {still_running(started)}"  # noqa: B023
        assert ray_processes() == {}


def test_a_batched_deployment_lets_a_batch_fill_and_bounds_serve_s_queue():
    """Serve's default of 5 requests per replica would keep a batch of 8 from filling; the router's queue is the
    app's max_queue; what is given explicitly wins; without batching Serve's defaults stay."""
    batched = image_api_deployment("digits", max_batch=8)
    assert (batched.max_ongoing_requests, batched.max_queued_requests) == (16, 64)
    chosen = image_api_deployment("digits", max_batch=8, max_queue=20, max_ongoing_requests=4)
    assert (chosen.max_ongoing_requests, chosen.max_queued_requests) == (4, 20)
    plain = image_api_deployment("digits")
    assert (plain.max_ongoing_requests, plain.max_queued_requests) == (5, -1)


def batching_counters_move(url: str) -> None:
    """16 concurrent clients share @serve.batch calls: the one replica's /health counts fewer calls than images."""
    before = requests.get(url + "/health", timeout=10).json()["batching"]
    responses = predict_concurrently(url, n=64, clients=16)
    assert [r.status_code for r in responses] == [200] * 64
    assert {r.json()["top_class"] for r in responses} == {"2"}
    after = requests.get(url + "/health", timeout=10).json()["batching"]
    images = after["batches"] * after["mean_batch_size"] - before["batches"] * before["mean_batch_size"]
    assert round(images) == 64, (before, after)  # every request went through the batch function, once
    assert after["batches"] - before["batches"] < 64, (before, after)  # and some calls took several
    assert after["queued"] == 0, after


def test_replicas_spread_over_a_simulated_cluster_and_a_killed_replica_is_replaced():
    with SimulatedCluster(head_cpus=1, worker_cpus=(1,)) as cluster:
        deployment = image_api_deployment("digits", name="spread", num_replicas=2, ray_actor_options={"num_cpus": 1})
        with ServeServer(deployment.bind(), "spread") as server:
            served_by = Counter(cluster.names[r.headers["X-Ray-Node"]] for r in predict_concurrently(server.url, 48, 8))
            assert set(served_by) == {"head", "worker-1"}, served_by  # one replica per node: each fits one only
            assert sum(served_by.values()) == 48

            replicas = replica_actors("spread", "spread")
            killed = kill_replica("spread", "spread")
            wait_for_replacement("spread", "spread", replicas)
            now = replica_actors("spread", "spread")
            assert killed in replicas and killed not in now and len(now) == 2, (replicas, killed, now)
            assert running_replicas("spread", "spread") == 2
            responses = predict_concurrently(server.url, 16, 4)
            assert [r.status_code for r in responses] == [200] * 16
            started = ray_processes()
            assert sum("raylet" in line for line in started.values()) == 2, started  # a raylet per node
    assert settled(lambda: still_running(started), {}), f"the cluster left Ray processes: {still_running(started)}"
    assert ray_processes() == {}
