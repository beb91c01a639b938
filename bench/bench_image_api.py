"""Image API: HTTP overhead (end-to-end p50 / in-process p50) per backend, and eager p50 / onnxruntime p50.

Measured for the model `load_classifier("auto")` picks (digits when the ImageNet weights are not cached) and for
the ResNet-50 *architecture* at 224×224 — the source's compute. Without cached ImageNet weights that network has
seeded random weights: its predictions are meaningless, but its latency is that of the real model (same layers,
same input size), and no weights are downloaded. Each backend's in-process and HTTP calls alternate one by one,
so both see the same machine load.
"""

from __future__ import annotations

import time

import numpy as np
import requests
import torch

from bench.report import Row
from course_lib.apps.image_api import create_app
from course_lib.servers import serve
from course_lib.vision import decode_image, load_classifier, prediction, sample_images
from course_lib.vision.classifier import Classifier, imagenet_weights_path

NAME = "image_api"


def resnet50_compute() -> Classifier:
    """The ImageNet classifier when its weights are cached, else ResNet-50 with seeded random weights (latency only)."""
    from torchvision.models import ResNet50_Weights, resnet50

    if imagenet_weights_path().exists():
        return load_classifier("imagenet")
    weights = ResNet50_Weights.DEFAULT
    torch.manual_seed(0)
    return Classifier(
        name="resnet50-untrained",
        model=resnet50().eval(),
        preprocess=weights.transforms(),
        categories=list(weights.meta["categories"]),
        description="ResNet-50 architecture with random weights (latency stand-in; ImageNet weights not cached)",
        input_shape=(3, 224, 224),
    )


def measure(classifier: Classifier, n: int, warmup: int = 5) -> dict[str, dict[str, np.ndarray]]:
    """Per backend: n in-process and n HTTP latencies (ms) of the same photo, alternating call by call."""
    photo = sample_images()["china.jpg"]
    files = {"file": ("china.jpg", photo, "image/jpeg")}
    out: dict[str, dict[str, np.ndarray]] = {}
    for backend_name in ("torch", "onnx"):
        app = create_app(classifier, backend=backend_name)
        backend = app.state.backend

        def in_process() -> dict:
            image = decode_image(photo)
            started = time.perf_counter()
            probs = backend.probabilities(classifier.batch([image]))[0]
            return prediction(probs, classifier.categories, 5, (time.perf_counter() - started) * 1000, classifier.name)

        local, remote = [], []
        with serve(app) as server, requests.Session() as session:
            url = server.url + "/predict"
            for i in range(warmup + n):
                t0 = time.perf_counter()
                in_process()
                t1 = time.perf_counter()
                response = session.post(url, files=files, timeout=60)
                t2 = time.perf_counter()
                response.raise_for_status()
                if i >= warmup:
                    local.append((t1 - t0) * 1000)
                    remote.append((t2 - t1) * 1000)
        out[backend_name] = {"in-process": np.array(local), "http": np.array(remote)}
    return out


def rows_for(label: str, timings: dict[str, dict[str, np.ndarray]]) -> list[Row]:
    """The goal ratios and the source-comparable figures for one model."""
    p50 = {b: {k: float(np.median(v)) for k, v in t.items()} for b, t in timings.items()}
    rows = [
        Row(NAME, f"{label}: end-to-end p50 / in-process p50 ({b})", p50[b]["http"] / p50[b]["in-process"], goal="≤ 1.10")
        for b in ("torch", "onnx")
    ]
    rows.append(
        Row(NAME, f"{label}: eager p50 / onnxruntime p50 (in-process)", p50["torch"]["in-process"] / p50["onnx"]["in-process"], goal="≥ 1.5")
    )
    http = timings["torch"]["http"]
    rows += [
        Row(NAME, f"{label}: HTTP mean, torch, 1 client (source: 125 ms)", float(http.mean()), unit="ms"),
        Row(NAME, f"{label}: HTTP p99, torch, 1 client (source: 180 ms)", float(np.percentile(http, 99)), unit="ms"),
        Row(NAME, f"{label}: HTTP p50, onnx, 1 client", p50["onnx"]["http"], unit="ms"),
    ]
    return rows


def run(quick: bool = False) -> list[Row]:
    """Measure both models with both backends; quick = fewer requests."""
    rows: list[Row] = []
    small = load_classifier("auto")
    rows += rows_for(small.name, measure(small, n=30 if quick else 200))
    if small.name != "imagenet":
        big = resnet50_compute()
        rows += rows_for(big.name, measure(big, n=8 if quick else 60, warmup=2 if quick else 5))
    return rows
