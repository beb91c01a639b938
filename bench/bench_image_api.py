"""Image API: HTTP overhead (end-to-end p50 / in-process p50) per backend, and eager p50 / onnxruntime p50.

The backends are PyTorch eager ("torch"), onnxruntime fp32 ("onnx") and onnxruntime on the int8 model ("onnx-int8",
notebook 06); each has its own end-to-end / in-process row with the same goal.

Measured for the model `load_classifier("auto")` picks (digits when the ImageNet weights are not cached) and for
the ResNet-50 *architecture* at 224×224 — the source's compute. Without cached ImageNet weights that network has
seeded random weights: its predictions are meaningless, but its latency is that of the real model (same layers,
same input size), and no weights are downloaded. In process means `classifier.classify(photo, backend)`, the call
each /predict request makes. Each backend's in-process and HTTP calls alternate, and so do eager and onnxruntime, in
blocks of BLOCK calls, so both sides of a ratio see the same machine load (why blocks: `course_lib.bench.paired_calls`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import requests
import torch

from bench.report import Goal, Row
from course_lib.apps.image_api import backend_of, create_app
from course_lib.bench import LatencyStats, paired_calls
from course_lib.servers import serve
from course_lib.vision import Backend, Classifier, benchmark_resnet50, load_classifier, sample_images
from course_lib.vision.backends import OnnxBackend

NAME = "image_api"
BLOCK = 10  # the two sides of each ratio alternate in blocks of this many timed calls
BACKENDS = ("torch", "onnx", "onnx-int8")  # each gets its own end-to-end / in-process row


def in_process_call(classifier: Classifier, backend: Backend, photo: bytes) -> Callable[[], dict]:
    """What the /predict endpoint does, without HTTP: `classifier.classify(photo, backend)`."""
    return partial(classifier.classify, photo, backend)


def measure(classifier: Classifier, n: int, warmup: int = 5) -> dict[str, LatencyStats]:
    """In-process vs HTTP per backend, and eager vs onnxruntime in process (all and 1 threads), pairs alternating."""
    photo = sample_images()["china.jpg"]
    files = {"file": ("china.jpg", photo, "image/jpeg")}
    out: dict[str, LatencyStats] = {}
    backends = {}
    for backend_name in BACKENDS:
        app = create_app(classifier, backend=backend_name)
        backends[backend_name] = backend = backend_of(app)
        with serve(app) as server, requests.Session() as session:  # keep-alive, as a real client would
            url = server.url + "/predict"

            def over_http(session: requests.Session = session, url: str = url) -> None:
                session.post(url, files=files, timeout=60).raise_for_status()

            local, remote = paired_calls(
                in_process_call(classifier, backend, photo),
                over_http,
                n=n,
                warmup=warmup,
                block=BLOCK,
                progress=True,
                desc=f"{backend_name}: in-process vs HTTP",
            )
        out[f"{backend_name} in-process"], out[f"{backend_name} http"] = local, remote
    eager, onnx = (in_process_call(classifier, backends[b], photo) for b in ("torch", "onnx"))
    out["eager"], out["onnxruntime"] = paired_calls(
        eager, onnx, n=n, warmup=warmup, block=BLOCK, progress=True, desc="eager vs onnxruntime"
    )
    threads = torch.get_num_threads()
    onnx_1 = in_process_call(classifier, OnnxBackend(classifier, threads=1), photo)
    torch.set_num_threads(1)
    try:
        out["eager 1 thread"], out["onnxruntime 1 thread"] = paired_calls(
            eager, onnx_1, n=n, warmup=warmup, block=BLOCK, progress=True, desc="eager vs onnxruntime, 1 thread"
        )
    finally:
        torch.set_num_threads(threads)
    return out


def rows_for(label: str, t: dict[str, LatencyStats]) -> list[Row]:
    """The goal ratios, the thread-setting variant, and the source-comparable figures for one model."""
    p50 = {key: stats.p50 for key, stats in t.items()}
    rows = [
        Row(
            NAME,
            f"{label}: end-to-end p50 / in-process p50 ({b})",
            p50[f"{b} http"] / p50[f"{b} in-process"],
            goal=Goal("<=", 1.10),
        )
        for b in BACKENDS
    ]
    rows += [
        Row(
            NAME,
            f"{label}: eager p50 / onnxruntime p50 (in-process)",
            p50["eager"] / p50["onnxruntime"],
            goal=Goal(">=", 1.5),
        ),
        Row(
            NAME,
            f"{label}: eager p50 / onnxruntime p50, 1 intra-op thread each",
            p50["eager 1 thread"] / p50["onnxruntime 1 thread"],
        ),
        Row(NAME, f"{label}: in-process p50, eager", p50["eager"], unit="ms"),
        Row(NAME, f"{label}: in-process p50, onnxruntime", p50["onnxruntime"], unit="ms"),
        Row(
            NAME,
            f"{label}: HTTP mean, torch, 1 client (source: 125 ms)",
            float(t["torch http"].samples_ms.mean()),
            unit="ms",
        ),
        Row(NAME, f"{label}: HTTP p99, torch, 1 client (source: 180 ms)", t["torch http"].p99, unit="ms"),
        Row(NAME, f"{label}: HTTP p50, onnx, 1 client", p50["onnx http"], unit="ms"),
    ]
    return rows


def run(quick: bool = False) -> list[Row]:
    """Measure both models with both backends; quick = fewer requests."""
    rows: list[Row] = []
    small = load_classifier("auto")
    rows += rows_for(small.name, measure(small, n=30 if quick else 200))
    if small.name != "imagenet":
        big = benchmark_resnet50()
        rows += rows_for(big.name, measure(big, n=8 if quick else 60, warmup=2 if quick else 5))
    return rows
