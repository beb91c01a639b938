"""Image API: HTTP overhead (end-to-end p50 / in-process p50) per backend, and `--backend auto` against the best.

The backends are PyTorch eager ("torch"), onnxruntime fp32 ("onnx") and onnxruntime on the int8 model ("onnx-int8",
notebook 06); each has its own end-to-end / in-process row with the same goal. Then `auto` (which times the three
at start-up and serves the one it chose) is served beside the backend with the lowest HTTP p50, their requests
alternating: auto's p50 must be within 5 % of the best single backend's. Eager ÷ onnxruntime of the network alone
is bench_onnx_speed's (one method for that ratio: the network timed without decoding, in blocks).

Measured for the model `load_classifier("auto")` picks (digits when the ImageNet weights are not cached) and for
the ResNet-50 *architecture* at 224×224 — the source's compute. Without cached ImageNet weights that network has
seeded random weights: its predictions are meaningless, but its latency is that of the real model (same layers,
same input size), and no weights are downloaded. In process means `classifier.classify(photo, backend)`, the call
each /predict request makes. The two sides of each ratio alternate in blocks of BLOCK calls, so both see the same
machine load (why blocks: `course_lib.bench.paired_calls`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import requests

from bench.report import Goal, Row
from course_lib.apps.image_api import backend_of, create_app
from course_lib.bench import LatencyStats, paired_calls
from course_lib.servers import serve
from course_lib.vision import Backend, Classifier, benchmark_resnet50, load_classifier, sample_images
from course_lib.vision.auto_backend import AUTO

NAME = "image_api"
BLOCK = 10  # the two sides of each ratio alternate in blocks of this many timed calls
BACKENDS = ("torch", "onnx", "onnx-int8")  # each gets its own end-to-end / in-process row


def in_process_call(classifier: Classifier, backend: Backend, photo: bytes) -> Callable[[], dict]:
    """What the /predict endpoint does, without HTTP: `classifier.classify(photo, backend)`."""
    return partial(classifier.classify, photo, backend)


def http_call(session: requests.Session, url: str, files: dict) -> Callable[[], None]:
    """One upload to url over a keep-alive session, as a real client sends it."""
    return lambda: session.post(url, files=files, timeout=60).raise_for_status()


def measure(classifier: Classifier, n: int, warmup: int = 5) -> tuple[dict[str, LatencyStats], dict[str, str]]:
    """In-process vs HTTP per backend, then `auto` served beside the backend served fastest; pairs alternate.

    Returns the timings and {"auto": the backend auto chose, "best": the backend with the lowest HTTP p50}.
    """
    photo = sample_images()["china.jpg"]
    files = {"file": ("china.jpg", photo, "image/jpeg")}
    out: dict[str, LatencyStats] = {}
    for backend_name in BACKENDS:
        app = create_app(classifier, backend=backend_name)
        with serve(app) as server, requests.Session() as session:
            out[f"{backend_name} in-process"], out[f"{backend_name} http"] = paired_calls(
                in_process_call(classifier, backend_of(app), photo),
                http_call(session, server.url + "/predict", files),
                n=n,
                warmup=warmup,
                block=BLOCK,
                progress=True,
                desc=f"{backend_name}: in-process vs HTTP",
            )
    best = min(BACKENDS, key=lambda b: out[f"{b} http"].p50)
    auto_app = create_app(classifier, backend=AUTO)
    names = {"auto": backend_of(auto_app).choice.chosen, "best": best}
    with (
        serve(auto_app) as auto_server,
        serve(create_app(classifier, backend=best)) as best_server,
        requests.Session() as session,
    ):
        out["auto http"], out["best http"] = paired_calls(
            http_call(session, auto_server.url + "/predict", files),
            http_call(session, best_server.url + "/predict", files),
            n=n,
            warmup=warmup,
            block=BLOCK,
            progress=True,
            desc=f"auto ({names['auto']}) vs {best}, over HTTP",
        )
    return out, names


def rows_for(label: str, t: dict[str, LatencyStats], names: dict[str, str]) -> list[Row]:
    """The goal ratios (HTTP overhead per backend, auto against the best backend) and the figures behind them."""
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
    rows += [Row(NAME, f"{label}: HTTP p50, {b}, 1 client", p50[f"{b} http"], unit="ms") for b in BACKENDS]
    rows += [
        Row(
            NAME,
            f"{label}: HTTP p50, auto (chose {names['auto']}) / the fastest backend ({names['best']}), side by side",
            p50["auto http"] / p50["best http"],
            goal=Goal("<=", 1.05),
        ),
        Row(NAME, f"{label}: HTTP p50, auto (chose {names['auto']}), 1 client", p50["auto http"], unit="ms"),
        Row(
            NAME,
            f"{label}: HTTP mean, torch, 1 client (source: 125 ms)",
            float(t["torch http"].samples_ms.mean()),
            unit="ms",
        ),
        Row(NAME, f"{label}: HTTP p99, torch, 1 client (source: 180 ms)", t["torch http"].p99, unit="ms"),
    ]
    return rows


def run(quick: bool = False) -> list[Row]:
    """Measure both models with both backends; quick = fewer requests."""
    rows: list[Row] = []
    small = load_classifier("auto")
    rows += rows_for(small.name, *measure(small, n=30 if quick else 200))
    if small.name != "imagenet":
        big = benchmark_resnet50()
        rows += rows_for(big.name, *measure(big, n=8 if quick else 60, warmup=2 if quick else 5))
    return rows
