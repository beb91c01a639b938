"""onnxruntime vs PyTorch eager: p50 latency ratio for the iris SimpleNN and a torchvision ResNet-18.

Both runtimes score the same input, alternately (course_lib.bench.paired_calls) in blocks of BLOCK timed calls after
an untimed one — bench_onnx_speed's method for the same ratio — so they see the same machine load.
The ResNet-18 has seeded random weights (no download): its predictions mean nothing, its latency is the real network's.
onnxruntime runs the file export_onnx writes. Each pair is measured twice: with 1 intra-op thread in both
runtimes, and with both at all cores. On a machine shared with other work, torch's OpenMP threads wait for each
other at every layer when a core is busy elsewhere, so the all-cores figures swing much more than the 1-thread
ones. onnxruntime's thread-pool spin-waiting is turned off (`onnx_session(..., spinning=False)`) so that it does
not steal the core from the eager call that follows it. ResNet-50 with int8 is bench_onnx_speed's.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime
import torch
import torchvision

from bench.bench_onnx_speed import BLOCK
from bench.report import Row
from course_lib.bench import paired_calls
from course_lib.data import iris_rows
from course_lib.models import train_simple_nn
from course_lib.serialization import export_onnx, onnx_run, onnx_session

NAME = "onnx_vs_eager"


def paired_p50(
    model: torch.nn.Module, onnx_path: Path, x: torch.Tensor, n: int, threads: int, warmup: int = 5
) -> tuple[float, float]:
    """p50 (ms) of eager model(x) and of onnxruntime on x, alternating, both on `threads` threads.

    They alternate in blocks of BLOCK after an untimed call, as bench_onnx_speed does: torch's OpenMP threads keep
    spinning for a moment after a call and would slow down onnxruntime's next one.
    """
    session = onnx_session(onnx_path, threads=threads, spinning=False)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _alternate(model, session, x, n, warmup, block=BLOCK)
    finally:
        torch.set_num_threads(previous)


def _alternate(
    model: torch.nn.Module, session: onnxruntime.InferenceSession, x: torch.Tensor, n: int, warmup: int, block: int
) -> tuple[float, float]:
    """Time eager and onnxruntime calls alternately (course_lib.bench.paired_calls); return both p50s in ms."""
    x_np = x.numpy()
    with torch.inference_mode():
        np.testing.assert_allclose(onnx_run(session, x_np)[0], model(x).numpy(), atol=1e-3)  # same model, checked
        eager, ort = paired_calls(
            lambda: model(x),
            lambda: onnx_run(session, x_np),
            n=n,
            warmup=warmup,
            block=block,
            progress=True,
            desc=f"eager vs onnxruntime, {tuple(x.shape)}",
        )
    return eager.p50, ort.p50


def rows_for(label: str, eager_ms: float, ort_ms: float) -> list[Row]:
    """The ratio and both p50s (in µs below 1 ms) for one model and batch size."""
    scale, unit = (1000.0, "µs") if max(eager_ms, ort_ms) < 1 else (1.0, "ms")
    return [
        Row(NAME, f"{label}: eager p50 / onnxruntime p50 (> 1: onnxruntime faster)", eager_ms / ort_ms),
        Row(NAME, f"{label}: eager p50", eager_ms * scale, unit=unit),
        Row(NAME, f"{label}: onnxruntime p50", ort_ms * scale, unit=unit),
    ]


def run(quick: bool = False) -> list[Row]:
    """Measure SimpleNN at batch 1 and 64, ResNet-18 (224×224) at batch 1, on 1 thread and on all cores."""
    rows: list[Row] = []
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        net, _ = train_simple_nn()
        nn_path = export_onnx(net, torch.zeros(1, 4), Path(tmp) / "simple_nn.onnx")
        torch.manual_seed(0)
        resnet = torchvision.models.resnet18(weights=None).eval()
        resnet_path = export_onnx(resnet, torch.zeros(1, 3, 224, 224), Path(tmp) / "resnet18.onnx")
        image = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        for threads in sorted({1, cores}):
            for batch in (1, 64):
                x = torch.from_numpy(iris_rows(batch, seed=batch))
                p50s = paired_p50(net, nn_path, x, n=200 if quick else 2000, threads=threads)
                rows += rows_for(f"SimpleNN batch {batch}, {threads} thread(s)", *p50s)
            p50s = paired_p50(
                resnet, resnet_path, image, n=8 if quick else 40, threads=threads, warmup=2 if quick else 5
            )
            rows += rows_for(f"ResNet-18 224×224 batch 1, {threads} thread(s)", *p50s)
    return rows
