"""Measure each format: file size, load time, latency p50 at batch 1 and 64, parity with the original model."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from course_lib.bench import time_calls
from course_lib.serialization.formats import FORMATS, Format, Predictor, sklearn_predictor, torch_predictor


@dataclass(frozen=True)
class Parity:
    """How far a loaded model's scores are from the original's on the same rows."""

    max_abs_diff: float
    labels_equal: bool
    n: int


def parity(loaded: Predictor, reference: Predictor, X: np.ndarray) -> Parity:
    """Max absolute score difference and whether argmax labels agree on X."""
    got, want = np.asarray(loaded(X)), np.asarray(reference(X))
    if got.shape != want.shape:
        raise AssertionError(f"output shape {got.shape} differs from the original's {want.shape}")
    return Parity(float(np.abs(got - want).max()), bool((got.argmax(1) == want.argmax(1)).all()), len(X))


@dataclass(frozen=True)
class Measurement:
    """One row of the comparison table (size_kb is in KiB, 1,024 bytes, as the notebook labels it)."""

    format: str
    model: str
    size_kb: float
    load_ms: float
    p50_batch1_ms: float
    p50_batch64_ms: float
    max_abs_diff: float
    labels_equal: bool
    needs_to_load: str
    untrusted_safe: str
    runtimes: str


def load_time_ms(fmt: Format, path: Path, repeats: int = 5) -> tuple[float, Predictor]:
    """Median time of fmt.load(path) over repeats (the first load, with imports, is a warm-up)."""
    fmt.load(path)
    durations = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predictor = fmt.load(path)
        durations.append(time.perf_counter() - t0)
    return float(np.median(durations)) * 1000.0, predictor


@contextlib.contextmanager
def torch_thread_count(threads: int | None) -> Iterator[None]:
    """Run the block with PyTorch's intra-op thread count set to threads (None: leave it as it is).

    One thread times the format rather than how the scheduler serves OpenMP's threads on a busy machine (why a
    thread pool distorts timings: `course_lib.bench.interleaved_calls`).
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def measure_format(
    fmt: Format,
    model: Any,
    folder: str | Path,
    X: np.ndarray,
    n: int = 200,
    load_repeats: int = 5,
    torch_threads: int | None = None,
) -> Measurement:
    """Save model in fmt under folder, then measure size, load time, latency (batch 1 and 64) and parity on X.

    torch_threads sets PyTorch's intra-op threads while measuring (see `torch_thread_count`; None leaves them as is).
    """
    with torch_thread_count(torch_threads):
        return _measure(fmt, model, folder, X, n, load_repeats)


def _measure(fmt: Format, model: Any, folder: str | Path, X: np.ndarray, n: int, load_repeats: int) -> Measurement:
    """measure_format without the thread setting."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    if len(X) < 64:
        raise ValueError("X needs at least 64 rows (batch 64 is measured)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^a-z0-9]+", "_", fmt.name.lower()).strip("_")
    path = folder / f"{fmt.family}_{stem}{fmt.suffix}"
    fmt.save(model, path)
    load_ms, predictor = load_time_ms(fmt, path, load_repeats)
    reference = sklearn_predictor(model) if fmt.family == "sklearn" else torch_predictor(model.eval())
    one, batch = X[:1], X[:64]
    p50_1 = time_calls(lambda: predictor(one), n=n, warmup=5).p50
    p50_64 = time_calls(lambda: predictor(batch), n=n, warmup=5).p50
    p = parity(predictor, reference, X)
    return Measurement(
        fmt.name,
        type(model).__name__,
        path.stat().st_size / 1024,
        load_ms,
        p50_1,
        p50_64,
        p.max_abs_diff,
        p.labels_equal,
        fmt.needs_to_load,
        fmt.untrusted_safe,
        fmt.runtimes,
    )


def compare_formats(
    folder: str | Path,
    sklearn_model: Any,
    torch_model: Any,
    X: np.ndarray,
    n: int = 200,
    load_repeats: int = 5,
    formats: list[Format] | None = None,
    torch_threads: int | None = None,
) -> Any:
    """Measure every format (default: FORMATS) and return a pandas DataFrame, one row per format."""
    import pandas as pd

    rows = []
    for fmt in formats or FORMATS:
        model = sklearn_model if fmt.family == "sklearn" else torch_model
        measurement = measure_format(fmt, model, folder, X, n=n, load_repeats=load_repeats, torch_threads=torch_threads)
        rows.append(asdict(measurement))
    return pd.DataFrame(rows).set_index("format")
