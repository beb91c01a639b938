"""Dynamic batching (notebook 06): served throughput with 8 clients against the in-process throughput limit.

The goal: with 8 concurrent clients, the image API serving ResNet-50 on the int8 backend reaches at least 0.9 × the
throughput the same backend reaches in process, each side at its best batch size, on all cores.

- In process, one batch of b images is what the server does for b requests: `classifier.prepare(photo)` for each
  image (decode and preprocess, since every /predict request decodes and preprocesses its own upload), then
  `classifier.classify_prepared(prepared, backend)` as one network call. Timed repeatedly with `time_calls`;
  throughput = b / p50. A limit that left out the per-image decoding would ask the server to beat work it cannot skip.
- Served, `http_latency` sends /predict requests from 8 clients at once to the API built with `max_batch` = b
  (`create_app(classifier, backend=…, max_batch=b)`); throughput = requests / wall time (`LatencyStats.throughput`).
- The limit is the best in-process throughput over the batch sizes, the served figure the best over max_batch.
  The in-process figure comes from one calling thread, which decodes and then runs the network in turn; the server
  decodes some requests while the network runs others, so served can exceed it (a ratio above 1).

The backend is built once (`make_backend`) and handed to every app, so no setting re-exports or re-quantizes. Both
sides see the same machine load as far as one run allows: the measurement goes in rounds (three; one when quick),
and in each round every batch size is timed in process immediately before its server is measured; each side pools
its samples (and its wall time) over the rounds, so a change of load during the run lands on both sides alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench.report import Goal, Row
from course_lib.apps.image_api import create_app
from course_lib.bench import LatencyStats, http_latency, pooled, time_calls
from course_lib.servers import serve
from course_lib.vision import Backend, Classifier, benchmark_resnet50, sample_images
from course_lib.vision.backends import make_backend

NAME = "batching"
BATCH_SIZES = (1, 4, 8)  # in-process batch sizes, and the served max_batch settings
CLIENTS = 8
LABEL = "ResNet-50 int8"


@dataclass(frozen=True)
class Measured:
    """Per batch size: the in-process time of one batch, and the served requests' latencies with their wall time."""

    in_process: dict[int, LatencyStats]
    served: dict[int, LatencyStats]


def in_process_batch(
    classifier: Classifier, backend: Backend, photo: bytes, batch: int, n: int, warmup: int
) -> LatencyStats:
    """Time n batches of `batch` images, each image prepared from its bytes as a request's is, then one network call."""

    def one_batch() -> None:
        classifier.classify_prepared([classifier.prepare(photo) for _ in range(batch)], backend)

    return time_calls(one_batch, n=n, warmup=warmup)


def served_run(
    classifier: Classifier, backend: Backend, photo: bytes, max_batch: int, n: int, warmup: int
) -> LatencyStats:
    """n /predict requests of the photo from CLIENTS clients at once to the API with this max_batch; then it stops."""
    files = {"file": ("china.jpg", photo, "image/jpeg")}
    with serve(create_app(classifier, backend=backend, max_batch=max_batch)) as server:
        return http_latency("POST", server.url + "/predict", n=n, concurrency=CLIENTS, warmup=warmup, files=files)


def measure(
    classifier: Classifier,
    backend: Backend,
    photo: bytes,
    n_in_process: int,
    n_served: int,
    rounds: int = 1,
    warmup: int = 1,
    sizes: Sequence[int] = BATCH_SIZES,
) -> Measured:
    """In-process batches and served runs for every size, in rounds, each size in process just before its server."""
    in_process: dict[int, list[LatencyStats]] = {b: [] for b in sizes}
    served: dict[int, list[LatencyStats]] = {b: [] for b in sizes}
    for _ in range(rounds):
        for b in sizes:
            in_process[b].append(in_process_batch(classifier, backend, photo, b, n_in_process, warmup))
            served[b].append(served_run(classifier, backend, photo, b, n_served, warmup))
    return Measured({b: pooled(in_process[b]) for b in sizes}, {b: pooled(served[b]) for b in sizes})


def in_process_throughput(batch: int, stats: LatencyStats) -> float:
    """Images per second of one batch size in process: batch / p50 seconds."""
    return batch / (stats.p50 / 1000.0)


def rows_for(
    label: str,
    in_process: Mapping[int, float],
    served: Mapping[int, float],
    served_ms: Mapping[int, tuple[float, float]],
) -> list[Row]:
    """The goal row (best served / best in-process), every throughput, and the served p50 and p99 at the best setting.

    in_process: images/s per batch size; served: images/s per max_batch; served_ms: (p50, p99) per max_batch.
    """
    best_batch = max(in_process, key=in_process.__getitem__)
    best_max = max(served, key=served.__getitem__)
    clients = f"{label}, {CLIENTS} clients"
    rows = [
        Row(
            NAME,
            f"{clients}: served throughput (best max_batch={best_max}) / in-process limit (best batch={best_batch})",
            served[best_max] / in_process[best_batch],
            goal=Goal(">=", 0.9),
        )
    ]
    rows += [Row(NAME, f"{label}: in-process throughput, batch={b}", v, unit="img/s") for b, v in in_process.items()]
    rows += [Row(NAME, f"{clients}: served throughput, max_batch={b}", v, unit="img/s") for b, v in served.items()]
    p50, p99 = served_ms[best_max]
    rows += [
        Row(NAME, f"{clients}: served p50, max_batch={best_max}", p50, unit="ms"),
        Row(NAME, f"{clients}: served p99, max_batch={best_max}", p99, unit="ms"),
    ]
    return rows


def rows_from(label: str, measured: Measured) -> list[Row]:
    """rows_for with the measured figures turned into images/s and milliseconds."""
    return rows_for(
        label,
        {b: in_process_throughput(b, stats) for b, stats in measured.in_process.items()},
        {b: stats.throughput for b, stats in measured.served.items()},
        {b: (stats.p50, stats.p99) for b, stats in measured.served.items()},
    )


def run(quick: bool = False) -> list[Row]:
    """ResNet-50 on the int8 backend, built once; quick = one round of few calls."""
    classifier = benchmark_resnet50()
    backend = make_backend(classifier, "onnx-int8")
    photo = sample_images()["china.jpg"]
    if quick:
        measured = measure(classifier, backend, photo, n_in_process=3, n_served=16, rounds=1)
    else:
        measured = measure(classifier, backend, photo, n_in_process=10, n_served=64, rounds=3, warmup=2)
    return rows_from(LABEL, measured)
