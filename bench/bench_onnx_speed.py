"""ResNet-50 at 224×224: PyTorch eager vs onnxruntime fp32 vs onnxruntime int8 (static QDQ), and what int8 costs
the digits model in accuracy.

ResNet-50 is `benchmark_resnet50()`: the ImageNet weights when cached, else seeded random weights (the latency of a
forward pass does not depend on the weight values). The input is a sample photo preprocessed as the API does it;
only the network is timed (no decode, no preprocessing: they would add the same milliseconds to both sides and
pull every ratio towards 1). Each ratio is measured side by side: its two calls alternate (`paired_calls`) in
blocks of BLOCK timed calls after an untimed one, so the other runtime's spinning threads are idle when timing
starts. onnxruntime runs the image API's settings (`OnnxBackend`: every graph optimization, one intra-op thread
per physical core, no spin-waiting); eager runs on torch's default threads (all cores), then both on 1 thread.
Two report-only rows show what the settings are worth, each against the served session side by side: spinning
on, and ORT_ENABLE_EXTENDED (every optimization but the NCHWc layout that ORT_ENABLE_ALL adds for the CPU's
vector width). The int8 speed-up depends on the CPU: the rows name whether it has VNNI (`describe_vnni`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch

from bench.report import Goal, Row
from course_lib.bench import paired_calls
from course_lib.serialization import onnx_session
from course_lib.serialization.onnx_export import SPINNING_KEY
from course_lib.vision import benchmark_resnet50, decode_image, load_classifier, sample_images
from course_lib.vision.backends import OnnxInt8Backend
from course_lib.vision.quantize import accuracy_cost, describe_vnni

NAME = "onnx_speed"
BLOCK = 5
SPINNING = False  # as OnnxBackend serves


def eager_call(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    """One eager forward pass in inference mode."""

    def call() -> Any:
        with torch.inference_mode():
            return model(x)

    return call


def ort_call(session: Any, x: np.ndarray) -> Callable[[], Any]:
    """One onnxruntime run on x."""
    name = session.get_inputs()[0].name
    return lambda: session.run(None, {name: x})


def measure(
    model: torch.nn.Module, paths: dict[str, Path], x: torch.Tensor, n: int, warmup: int, threads: int | None
) -> dict[str, float]:
    """p50 (ms) of eager model(x) beside onnxruntime on each file in paths ({"fp32": …, "int8": …}), pair by pair.

    threads=None: torch's and onnxruntime's default thread counts (all cores); else both on `threads`. The key
    "eager (<kind> pair)" holds the eager p50 measured beside that file's.
    """
    sessions = {kind: onnx_session(path, threads=threads, spinning=SPINNING) for kind, path in paths.items()}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    p50: dict[str, float] = {}
    try:
        eager = eager_call(model, x)
        for kind, session in sessions.items():
            desc = f"eager vs onnxruntime {kind}, {threads or 'all'} thread(s)"
            e, o = paired_calls(eager, ort_call(session, x.numpy()), n=n, warmup=warmup, block=BLOCK, desc=desc)
            p50[f"eager ({kind} pair)"], p50[kind] = e.p50, o.p50
    finally:
        torch.set_num_threads(previous)
    return p50


def speed_rows(label: str, p50: dict[str, float], goals: bool, cpu: str = "") -> list[Row]:
    """eager/fp32 and eager/int8 ratios (goals at all cores), fp32/int8, and the p50s; cpu labels the int8 rows."""
    fp32_goal, int8_goal, no_slower_goal = (Goal(">=", 1.5), Goal(">=", 4.0), Goal(">=", 1.0)) if goals else (None,) * 3
    int8 = f"int8{f' ({cpu})' if cpu else ''}"
    return [
        Row(NAME, f"{label}: eager p50 / onnxruntime fp32 p50", p50["eager (fp32 pair)"] / p50["fp32"], goal=fp32_goal),
        Row(
            NAME, f"{label}: eager p50 / onnxruntime {int8} p50", p50["eager (int8 pair)"] / p50["int8"], goal=int8_goal
        ),
        Row(NAME, f"{label}: onnxruntime fp32 p50 / {int8} p50", p50["fp32"] / p50["int8"], goal=no_slower_goal),
        Row(NAME, f"{label}: eager p50 (beside fp32)", p50["eager (fp32 pair)"], unit="ms"),
        Row(NAME, f"{label}: onnxruntime fp32 p50", p50["fp32"], unit="ms"),
        Row(NAME, f"{label}: onnxruntime int8 p50", p50["int8"], unit="ms"),
    ]


def accuracy_rows(backend: OnnxInt8Backend, goals: bool) -> list[Row]:
    """int8 vs fp32: accuracy drop and agreement on the held-out digits (goals), agreement on photo crops."""
    cost = accuracy_cost(backend.classifier, backend.fp32_path, backend.path)
    label = f"{backend.classifier.name} int8 vs fp32 on {cost.inputs}"
    rows = [Row(NAME, f"{label}: top-1 agreement", cost.agreement * 100, "%", Goal(">=", 99.0) if goals else None)]
    if cost.drop_points is not None:
        drop = Row(NAME, f"{label}: accuracy drop", cost.drop_points, "points", Goal("<=", 0.5) if goals else None)
        rows += [
            drop,
            Row(NAME, f"{label}: fp32 accuracy", cost.fp32_accuracy * 100, "%"),
            Row(NAME, f"{label}: int8 accuracy", cost.int8_accuracy * 100, "%"),
        ]
    return rows


def settings_rows(fp32_path: Path, x: np.ndarray, n: int, warmup: int) -> list[Row]:
    """p50 of a session with one setting changed ÷ p50 of the served one, side by side, all cores (report only)."""
    served = ort_call(onnx_session(fp32_path, spinning=SPINNING), x)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.add_session_config_entry(SPINNING_KEY, "1" if SPINNING else "0")
    extended = onnxruntime.InferenceSession(str(fp32_path), sess_options=options, providers=["CPUExecutionProvider"])
    variants = {
        "intra-op spinning on": ort_call(onnx_session(fp32_path, spinning=not SPINNING), x),
        "ORT_ENABLE_EXTENDED instead of ORT_ENABLE_ALL": ort_call(extended, x),
    }
    rows = []
    for label, call in variants.items():
        other, base = paired_calls(call, served, n=n, warmup=warmup, block=BLOCK, desc=label)
        metric = f"onnxruntime fp32, all cores: p50 with {label} / p50 as served (> 1: served faster)"
        rows.append(Row(NAME, metric, other.p50 / base.p50))
    return rows


def run(quick: bool = False) -> list[Row]:
    """ResNet-50 speed on all cores and on 1 thread, and the int8 accuracy cost (digits; ImageNet when cached)."""
    resnet = OnnxInt8Backend(benchmark_resnet50())
    x = resnet.classifier.batch([decode_image(sample_images()["china.jpg"])])
    n, warmup = (10, 2) if quick else (60, 5)
    paths = {"fp32": resnet.fp32_path, "int8": resnet.path}
    rows: list[Row] = []
    for threads in (None, 1):
        label = f"{resnet.classifier.name} 224×224 batch 1, {'all cores' if threads is None else '1 thread'}"
        p50 = measure(resnet.classifier.model, paths, x, n, warmup, threads)
        rows += speed_rows(label, p50, goals=threads is None, cpu=describe_vnni() if threads is None else "")
    rows += settings_rows(resnet.fp32_path, x.numpy(), n, warmup)
    rows += accuracy_rows(OnnxInt8Backend(load_classifier("digits")), goals=True)
    if resnet.classifier.name == "imagenet":
        rows += accuracy_rows(resnet, goals=False)
    return rows
