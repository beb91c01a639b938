"""Ray Serve for the course (notebook 07): Ray started quietly from a notebook or a test, the course's image API as
a Serve deployment, served on 127.0.0.1 at a free port and stopped without leaving a Ray process behind; a process
killed before it stops Ray leaves none either (`watch_ray_processes`, course_lib/ray_watchdog.py).

The deployment puts the image API that uvicorn serves (`image_api.create_app`) behind `@serve.ingress`, so one app
serves both ways: the same routes, the same answers and the same 4xx errors. Ray calls the app builder in each
replica, so every replica loads its own model and nothing large is pickled. With max_batch > 1 the app batches with
Serve's `@serve.batch` (`ServeBatching`) instead of its own MicroBatcher. Every answer names the node and replica
that made it (headers X-Ray-Node and X-Ray-Replica). `SimulatedCluster` starts a head and worker nodes on this
machine; `build_image_app` is the import path a Serve config file names.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import subprocess
import time
import warnings
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

import psutil
import requests
import torch
from fastapi import FastAPI, Request
from pydantic.warnings import PydanticDeprecatedSince20
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from tqdm import TqdmWarning

from course_lib.apps.image_api import DEFAULT_MAX_QUEUE
from course_lib.ray_watchdog import ray_descendants, start_watchdog
from course_lib.servers import free_port
from course_lib.vision import Backend, Classifier

# In a Jupyter kernel without ipywidgets, importing Ray logs "Missing packages: ['ipywidgets']" (with a timestamp)
# and tqdm warns "IProgress not found": progress bars Ray would draw in a notebook, which the course never uses.
logging.getLogger("ray.widgets.util").setLevel(logging.WARNING)
with warnings.catch_warnings():
    # Ray 2.60's own Serve config models pass extra keywords to pydantic's Field; the warning is about Ray's code,
    # printed once at import, and would otherwise sit in every notebook cell that imports this module.
    warnings.filterwarnings("ignore", category=PydanticDeprecatedSince20, module="ray")
    warnings.filterwarnings("ignore", message="IProgress not found", category=TqdmWarning)
    import ray
    from ray import serve


READY_TIMEOUT_S = 300.0  # a first deployment on a loaded 2-core machine: Ray starts workers, each imports torch
BIND_ATTEMPTS = 3
RAY_DIR = os.path.dirname(ray.__file__)  # every program and script Ray starts lives here (ray_watchdog.is_ray_process)
_watchdog: dict[int, subprocess.Popen] = {}  # by the PID of the process it watches (a forked child needs its own)


def watch_ray_processes() -> None:
    """Start, once per process, the watchdog that ends the Ray processes this process started when it dies, even by
    SIGKILL (a Jupyter "Restart kernel"): see ray_watchdog.py. It ends with this process. Not on Windows, where a
    parent's death leaves its children's parent PID unchanged (Ray ties its processes to the driver there with a job
    object)."""
    if os.name != "posix":
        return
    running = _watchdog.get(os.getpid())
    if running is None or running.poll() is not None:
        _watchdog[os.getpid()] = start_watchdog(RAY_DIR)


def start_ray(num_cpus: int | None = None, **options: Any) -> None:
    """ray.init for one machine, quiet: no dashboard, worker and Serve logs stay in Ray's log files, not in cells.
    The Ray processes it starts end with this process, also when it is killed (watch_ray_processes)."""
    watch_ray_processes()  # before ray.init: a kernel killed while Ray starts leaves nothing either
    if not ray.is_initialized():
        options.setdefault("address", "local")  # a new Ray, never one a crashed notebook left running
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            **options,
        )
    # Serve's driver-side logger prints INFO lines ("Started Serve …") to stderr, which a notebook would keep.
    logging.getLogger("ray.serve").setLevel(logging.WARNING)


class ServeBatching:
    """The image API's batching on Ray Serve: requests are decoded alone, then share network calls by @serve.batch.

    The app's own `Batching` keeps its MicroBatcher in the ASGI lifespan state, which Serve's ingress does not hand
    to requests; Serve has batching built in. Same interface as `image_api.Batching` (create_app's batching_class),
    so the routes, /health's `batching` and the answers stay the same. Queueing is Serve's: a replica takes
    `max_ongoing_requests` at a time, and Serve's router holds at most `max_queued_requests` more (beyond them it
    answers 503 itself); `image_api_deployment` sets both from max_batch and max_queue.
    """

    def __init__(self, classifier: Classifier, backend: Backend, max_batch: int, max_wait_ms: float, max_queue: int):
        self.classifier, self.backend = classifier, backend
        self.settings = {"max_batch": max_batch, "max_wait_ms": max_wait_ms, "max_queue": max_queue}
        self.batched = serve.batch(max_batch_size=max_batch, batch_wait_timeout_s=max_wait_ms / 1000)(self.run_batch)
        self.inside = self.running = self.batches = self.images = self.cancelled = 0  # inside: requests in classify

    @property
    def waiting(self) -> int:
        """Requests waiting for a batch: those in classify, less those in the running network call."""
        return self.inside - self.running

    async def run_batch(self, prepared: list[torch.Tensor]) -> list[dict[str, Any]]:
        """One network call for the whole batch, in a worker thread (the replica's event loop keeps answering)."""
        self.running = len(prepared)
        try:
            return await run_in_threadpool(self.classifier.classify_prepared, prepared, self.backend)
        finally:
            self.running = 0
            self.batches, self.images = self.batches + 1, self.images + len(prepared)

    async def classify(self, request: Request, data: bytes) -> dict[str, Any]:
        """Decode and preprocess alone (a bad image raises its ImageError here), then wait for a batch's answer."""
        prepared = await run_in_threadpool(self.classifier.prepare, data)
        self.inside += 1
        try:
            return await self.batched(prepared)
        except asyncio.CancelledError:  # Serve cancels a request whose client disconnected
            self.cancelled += 1
            raise
        finally:
            self.inside -= 1

    def status(self, request: Request) -> dict[str, Any]:
        """The settings and the counters of the replica that answered, as GET /health reports them (rejected: 0,
        since Serve's router, not the replica, refuses what is over max_queue)."""
        return {
            **self.settings,
            "queued": self.waiting,
            "batches": self.batches,
            "mean_batch_size": round(self.images / self.batches, 3) if self.batches else 0.0,
            "rejected": 0,
            "cancelled": self.cancelled,
        }

    def summary(self) -> str:
        """The settings in words, for the OpenAPI description."""
        max_batch, max_wait_ms, max_queue = self.settings.values()
        return (
            f"; dynamic batching by Ray Serve's @serve.batch: up to {max_batch} images per call, {max_wait_ms} ms"
            f" wait, {max_queue} queued by Serve"
        )

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> Any:
        """Nothing to start or stop: Serve runs the batch queue in the replica's event loop."""
        yield


class ServedBy:
    """ASGI middleware: every answer names the Ray node and the Serve replica that made it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        context = serve.get_replica_context()
        self.headers = [
            (b"x-ray-node", ray.get_runtime_context().get_node_id().encode()),
            (b"x-ray-replica", context.replica_id.unique_id.encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


def image_app_builder(model: str = "digits", **settings: Any) -> Callable[[], FastAPI]:
    """A function that builds the image API (create_app with these settings) where it is called: in a replica."""

    def build() -> FastAPI:
        from course_lib.apps.image_api import create_app
        from course_lib.vision import load_classifier

        # Replicas start side by side on shared cores, where auto's start-up timing would compare nothing useful:
        # without a backend named, a replica runs PyTorch (choose once outside, e.g. with auto_backend, and name it).
        settings.setdefault("backend", "torch")
        app = create_app(load_classifier(model, download=False), batching_class=ServeBatching, **settings)
        app.add_middleware(ServedBy)
        return app

    return build


DEPLOYMENT_OPTIONS = {
    "num_replicas",
    "ray_actor_options",
    "autoscaling_config",
    "max_ongoing_requests",
    "max_queued_requests",
}


def image_api_deployment(model: str = "digits", name: str = "image_api", **options: Any) -> serve.Deployment:
    """The image API as a Serve deployment; options are create_app's (backend, max_batch…) and Serve's deployment
    options (num_replicas, ray_actor_options, autoscaling_config, max_ongoing_requests), told apart by name.

    With batching (max_batch > 1), unless told otherwise a replica takes 2 x max_batch requests at a time (Serve's
    default, 5, would keep a batch of 8 from ever filling: one batch runs while the next one fills), and Serve's
    router queues at most max_queue more (image_api's default) and answers 503 beyond that.
    """
    deployment = {key: value for key, value in options.items() if key in DEPLOYMENT_OPTIONS}
    settings = {key: value for key, value in options.items() if key not in DEPLOYMENT_OPTIONS}
    if settings.get("max_batch", 1) > 1:
        deployment.setdefault("max_ongoing_requests", 2 * settings["max_batch"])
        deployment.setdefault("max_queued_requests", settings.get("max_queue", DEFAULT_MAX_QUEUE))
    return serve.deployment(serve.ingress(image_app_builder(model, **settings))(), name=name, **deployment)


def build_image_app(args: dict[str, Any]) -> serve.Application:
    """Serve's application builder for a config file (`import_path: course_lib.ray_serving:build_image_app`):
    args are image_api_deployment's keywords (model, name, backend, max_batch…, num_replicas…)."""
    return image_api_deployment(**args).bind()


def ray_processes() -> dict[int, str]:
    """The Ray processes this process started (raylets, GCS, agents, workers: all descend from the driver), by PID,
    with their command lines cut to 120 characters. Another notebook's or test's Ray on the same machine is not ours,
    nor is the watchdog."""
    found = {}
    for process in ray_descendants(psutil.Process(), RAY_DIR):
        with contextlib.suppress(psutil.Error):
            found[process.pid] = " ".join(process.cmdline())[:120]
    return found


def still_running(processes: dict[int, str]) -> dict[int, str]:
    """Those of `processes` (from ray_processes) that still run, wherever they were re-parented after a shutdown."""
    alive = {}
    for pid, line in processes.items():
        with contextlib.suppress(psutil.Error):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:  # Process() raises once the PID is gone
                alive[pid] = line
    return alive


class ServeServer:
    """A Serve application on 127.0.0.1 at a free port; `with` starts Ray and Serve and stops both."""

    def __init__(self, app: serve.Application, name: str = "app", num_cpus: int | None = None) -> None:
        self.app, self.name, self.num_cpus = app, name, num_cpus
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, ready_path: str = "/health", timeout_s: float = READY_TIMEOUT_S) -> ServeServer:
        """Start Ray (if needed) and Serve's HTTP proxy on this port, deploy, and wait until ready_path answers 200."""
        start_ray(self.num_cpus)
        try:
            self._start_proxy()
            serve.run(self.app, name=self.name, route_prefix="/", blocking=False)
            self._wait_ready(ready_path, timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_proxy(self) -> None:
        """serve.start on this port; if the port was taken meanwhile (Ray starts its own processes on random ports
        between free_port() and the proxy's bind), try again on another free port."""
        for attempt in range(1, BIND_ATTEMPTS + 1):
            try:
                # One proxy, on the head node: the nodes of a SimulatedCluster share this machine's ports.
                serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": self.port})
                return
            except Exception as error:  # Serve's proxy actor reports the failed bind as a RuntimeError, maybe wrapped
                if "Failed to bind" not in str(error) or attempt == BIND_ATTEMPTS:
                    raise
                with contextlib.redirect_stdout(io.StringIO()):
                    serve.shutdown()
                self.port = free_port()
                self.url = f"http://127.0.0.1:{self.port}"

    def deploy(
        self, app: serve.Application, name: str, ready_path: str = "/health", timeout_s: float = READY_TIMEOUT_S
    ) -> str:
        """Run one more application beside the first, at route prefix /<name>; its base URL once it answers."""
        serve.run(app, name=name, route_prefix=f"/{name}", blocking=False)
        self._wait_ready(f"/{name}{ready_path}", timeout_s)
        return f"{self.url}/{name}"

    def _wait_ready(self, path: str, timeout_s: float) -> None:
        """Poll path until it answers 200 (Serve reports an app ready before its proxy routes to it)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if requests.get(self.url + path, timeout=10).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"Serve app {self.name!r} did not answer {path} within {timeout_s:.0f} s")
            time.sleep(0.5)

    def stop(self) -> None:
        """Shut Serve down, then Ray (its raylet, GCS and worker processes exit with it)."""
        if ray.is_initialized():
            # serve.shutdown kills its controller while the controller's own graceful_shutdown task runs, and the
            # driver's error listener prints that as a "(raylet) Task ServeController.graceful_shutdown failed"
            # line to stdout, into whichever cell runs. It ends with ray.shutdown, which joins the listener.
            with contextlib.redirect_stdout(io.StringIO()) as printed:
                serve.shutdown()
                ray.shutdown()
            logging.getLogger(__name__).debug("printed by Ray during shutdown: %s", printed.getvalue())

    def __enter__(self) -> ServeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class SimulatedCluster:
    """A Ray cluster on this machine: a head node and worker nodes, each a raylet with its own CPUs.

    Ray's `ray.cluster_utils.Cluster` (a developer API for tests) starts them; the driver then connects as it would
    to a real cluster (`ray.init(address=...)`). `with` starts the nodes and connects; leaving it disconnects and
    stops every node.
    """

    def __init__(self, head_cpus: int = 1, worker_cpus: tuple[int, ...] = (1,)) -> None:
        self.head_cpus, self.worker_cpus = head_cpus, worker_cpus
        self.cluster: Any = None
        self.names: dict[str, str] = {}  # node id → "head", "worker-1"…

    def start(self) -> SimulatedCluster:
        """Start the head, add the workers, wait until all have registered, and connect this process."""
        from ray.cluster_utils import Cluster

        watch_ray_processes()  # the nodes are this process's children: they end with it, also when it is killed
        self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": self.head_cpus})
        try:
            self.names[self.cluster.head_node.node_id] = "head"
            for number, cpus in enumerate(self.worker_cpus, start=1):
                self.names[self.cluster.add_node(num_cpus=cpus).node_id] = f"worker-{number}"
            self.cluster.wait_for_nodes()
            start_ray(address=self.cluster.address)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def address(self) -> str:
        """The head's address: what `ray.init(address=...)` takes, here as on a real cluster."""
        return self.cluster.address

    def stop(self) -> None:
        """Disconnect (if still connected) and stop every node's processes."""
        if ray.is_initialized():
            ray.shutdown()
        if self.cluster is not None:
            self.cluster.shutdown()
            self.cluster = None

    def __enter__(self) -> SimulatedCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def running_replicas(app: str, deployment: str) -> int:
    """How many replicas of an application's deployment Serve reports RUNNING now."""
    status = serve.status().applications.get(app)
    if status is None or deployment not in status.deployments:
        return 0
    return status.deployments[deployment].replica_states.get("RUNNING", 0)


def replica_actors(app: str, deployment: str) -> list[str]:
    """The Ray actor names of a deployment's replicas (Serve names them SERVE_REPLICA::app#deployment#id)."""
    prefix = f"SERVE_REPLICA::{app}#{deployment}#"
    actors = ray.util.list_named_actors(all_namespaces=True)
    return sorted(actor["name"] for actor in actors if actor["name"].startswith(prefix))


def kill_replica(app: str, deployment: str) -> str:
    """Kill one replica's process as a crash would (no restart by Ray: Serve's controller must replace it)."""
    name = replica_actors(app, deployment)[0]
    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    return name


def wait_for_replacement(app: str, deployment: str, before: list[str], timeout_s: float = READY_TIMEOUT_S) -> float:
    """Seconds until a replica that is not in `before` (replica_actors before a kill) runs and as many replicas as
    before are RUNNING again. A killed replica's name leaves the list at once, long before Serve notices the death."""
    started = time.monotonic()
    while True:
        new = set(replica_actors(app, deployment)) - set(before)
        if new and running_replicas(app, deployment) >= len(before):
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"Serve did not replace a replica of {app}/{deployment} within {timeout_s:.0f} s")
        time.sleep(0.5)
