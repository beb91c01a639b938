"""Ray Serve for the course: Ray started quietly from a notebook or a test, and the course's image API as a Serve
deployment, served on 127.0.0.1 at a free port and stopped without leaving a Ray process behind.

The deployment puts the image API that uvicorn serves (`image_api.create_app`) behind `@serve.ingress`, so one app
serves both ways: the same routes, the same answers and the same 4xx errors. Ray calls the app builder in each
replica, so every replica loads its own model and nothing large is pickled.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from typing import Any

import requests
from fastapi import FastAPI
from pydantic.warnings import PydanticDeprecatedSince20

with warnings.catch_warnings():
    # Ray 2.60's own Serve config models pass extra keywords to pydantic's Field; the warning is about Ray's code,
    # printed once at import, and would otherwise sit in every notebook cell that imports this module.
    warnings.filterwarnings("ignore", category=PydanticDeprecatedSince20, module="ray")
    import ray
    from ray import serve

from course_lib.servers import free_port

READY_TIMEOUT_S = 300.0  # a first deployment on a loaded 2-core machine: Ray starts workers, each imports torch


def start_ray(num_cpus: int | None = None, **options: Any) -> None:
    """ray.init for one machine, quiet: no dashboard, worker and Serve logs stay in Ray's log files, not in cells."""
    if not ray.is_initialized():
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            **options,
        )
    # Serve's driver-side logger prints INFO lines ("Started Serve …") to stderr, which a notebook would keep.
    logging.getLogger("ray.serve").setLevel(logging.WARNING)


def image_app_builder(model: str = "digits", **settings: Any) -> Callable[[], FastAPI]:
    """A function that builds the image API (create_app with these settings) where it is called: in a replica."""

    def build() -> FastAPI:
        from course_lib.apps.image_api import create_app
        from course_lib.vision import load_classifier

        return create_app(load_classifier(model, download=False), **settings)

    return build


def image_api_deployment(model: str = "digits", name: str = "image_api", **options: Any) -> serve.Deployment:
    """The image API as a Serve deployment; options are create_app's (backend, max_batch…) and Serve's deployment
    options (num_replicas, ray_actor_options, autoscaling_config…), told apart by name."""
    deployment_keys = {"num_replicas", "ray_actor_options", "autoscaling_config", "max_ongoing_requests"}
    deployment = {key: value for key, value in options.items() if key in deployment_keys}
    settings = {key: value for key, value in options.items() if key not in deployment_keys}
    if settings.get("max_batch", 1) > 1:
        # The app's MicroBatcher travels in the ASGI lifespan state, which Serve's ingress does not pass on to
        # requests: every /predict would fail. Serve batches with its own @serve.batch.
        raise ValueError("max_batch > 1: on Ray Serve, batch with Serve's own @serve.batch, not the app's batcher")
    return serve.deployment(serve.ingress(image_app_builder(model, **settings))(), name=name, **deployment)


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
            serve.start(http_options={"host": "127.0.0.1", "port": self.port})
            serve.run(self.app, name=self.name, route_prefix="/", blocking=False)
            self._wait_ready(ready_path, timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

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
            serve.shutdown()
            ray.shutdown()

    def __enter__(self) -> ServeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
