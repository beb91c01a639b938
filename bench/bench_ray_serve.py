"""Ray Serve (notebook 07): what Serve's proxy adds to a request, and what a second replica adds to throughput.

The same app both ways: the image API's `create_app` served by uvicorn in this process, and behind `@serve.ingress`
in Ray Serve replicas (`course_lib.ray_serving`), the digits model on the torch backend, the sample photo uploaded.
- Overhead: one client; a uvicorn request and a Serve request alternate in blocks (`paired_calls`), so both see the
  same machine load. The row is the p50 difference in ms and the p50 ratio.
- Replicas: 8 clients against an app with 1 replica and an app with 2 replicas, deployed side by side (each replica
  asks Ray for half a CPU so that three fit on 2 cores), measured in alternating rounds and pooled.
  On 2 cores a second replica competes for the same cores as the first, the proxy and the clients: the ratio says
  what it adds here, not what it adds on a machine with cores to spare.
- Batching: 8 clients against 1 replica batching with @serve.batch (max_batch 8) and the 1-replica app without,
  measured in the same alternating rounds.
"""

from __future__ import annotations

import requests

from bench.report import Row
from course_lib.apps.image_api import create_app
from course_lib.bench import LatencyStats, http_latency, paired_calls, pooled
from course_lib.ray_serving import ServeServer, image_api_deployment
from course_lib.servers import serve
from course_lib.vision import load_classifier, sample_images

NAME = "ray_serve"
CLIENTS = 8
REPLICA_CPUS = {"num_cpus": 0.5}
BATCHING = {"max_batch": 8, "max_wait_ms": 5.0}
BATCHED = f"@serve.batch (max_batch {BATCHING['max_batch']})"


def rows_for(
    uvicorn: LatencyStats, ray_serve: LatencyStats, one: LatencyStats, two: LatencyStats, batched: LatencyStats
) -> list[Row]:
    """Serve's p50 overhead over uvicorn (ms, ratio), 2-replica over 1-replica and batched over unbatched
    throughput, with the figures."""
    return [
        Row(NAME, "digits, 1 client: Ray Serve p50 - uvicorn p50", ray_serve.p50 - uvicorn.p50, unit="ms"),
        Row(NAME, "digits, 1 client: Ray Serve p50 / uvicorn p50", ray_serve.p50 / uvicorn.p50),
        Row(NAME, f"digits, {CLIENTS} clients: throughput 2 replicas / 1 replica", two.throughput / one.throughput),
        Row(
            NAME,
            f"digits, {CLIENTS} clients, 1 replica: throughput {BATCHED} / unbatched",
            batched.throughput / one.throughput,
        ),
        Row(NAME, "digits, 1 client: uvicorn p50", uvicorn.p50, unit="ms"),
        Row(NAME, "digits, 1 client: Ray Serve p50", ray_serve.p50, unit="ms"),
        Row(NAME, f"digits, {CLIENTS} clients: throughput, 1 replica", one.throughput, unit="req/s"),
        Row(NAME, f"digits, {CLIENTS} clients: throughput, 2 replicas", two.throughput, unit="req/s"),
        Row(NAME, f"digits, {CLIENTS} clients: throughput, 1 replica batched", batched.throughput, unit="req/s"),
    ]


def run(quick: bool = False) -> list[Row]:
    """Start Ray Serve with a 1-replica and a 2-replica app beside a uvicorn server; measure; stop everything."""
    photo = sample_images()["china.jpg"]
    files = {"file": ("china.jpg", photo, "image/jpeg")}
    n, n_load, rounds = (20, 24, 1) if quick else (200, 96, 3)
    one_replica = image_api_deployment("digits", name="one", num_replicas=1, ray_actor_options=REPLICA_CPUS)
    two_replicas = image_api_deployment("digits", name="two", num_replicas=2, ray_actor_options=REPLICA_CPUS)
    batched = image_api_deployment("digits", name="batched", ray_actor_options=REPLICA_CPUS, **BATCHING)
    with (
        serve(create_app(load_classifier("digits"), backend="torch")) as plain,
        ServeServer(one_replica.bind(), "one", 2) as ray,
    ):
        two_url = ray.deploy(two_replicas.bind(), "two")
        batched_url = ray.deploy(batched.bind(), "batched")
        with requests.Session() as a, requests.Session() as b:
            uvicorn, ray_serve = paired_calls(
                lambda: a.post(plain.url + "/predict", files=files, timeout=60).raise_for_status(),
                lambda: b.post(ray.url + "/predict", files=files, timeout=60).raise_for_status(),
                n=n,
                warmup=5,
                block=10,
            )
        one, two, batch = [], [], []
        for _ in range(rounds):
            for url, runs in ((ray.url, one), (two_url, two), (batched_url, batch)):
                runs.append(http_latency("POST", url + "/predict", n=n_load, concurrency=CLIENTS, files=files))
    return rows_for(uvicorn, ray_serve, pooled(one), pooled(two), pooled(batch))
