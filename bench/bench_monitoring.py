"""What notebook 08's release machinery costs a client: the iris FastAPI app answering alone, with a shadow candidate
as fast as itself, with one half a second slow and with one that raises on every copy (neither may slow anyone),
measured side by side in alternating rounds on one server. Also the time of one /metrics scrape."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from bench.report import Row
from course_lib.apps import iris_fastapi
from course_lib.apps.iris_fastapi import TorchIrisClassifier
from course_lib.bench import LatencyStats, http_latency
from course_lib.models import train_simple_nn
from course_lib.releases import ModelVersion
from course_lib.servers import serve

BODY = {"features": [5.1, 3.5, 1.4, 0.2]}
SLOW_S = 0.5
MODES = ("no shadow", "shadow, same model", "shadow, slow model", "shadow, crashing model")


class SlowCandidate:
    """The same network SLOW_S seconds late: a much heavier candidate (its copies queue up and are dropped)."""

    def __init__(self, classifier: TorchIrisClassifier) -> None:
        self.inner, self.classes_ = classifier, classifier.classes_

    def predict_proba(self, X: Any) -> np.ndarray:
        time.sleep(SLOW_S)
        return self.inner.predict_proba(X)


class CrashingCandidate:
    """A candidate whose every prediction raises (its errors are recorded, never seen by a client)."""

    classes_ = np.arange(3)

    def predict_proba(self, X: Any) -> np.ndarray:
        raise RuntimeError("the candidate is broken")


def measure(n: int, rounds: int, concurrency: int) -> tuple[dict[str, LatencyStats], float]:
    """Latency per mode (modes alternate within each round) and the median time of a /metrics scrape in ms."""
    classifier = TorchIrisClassifier(train_simple_nn()[0])
    app = iris_fastapi.create_app(classifier, model_version="v1")
    release = iris_fastapi.release_of(app)
    candidates = {
        "shadow, same model": ModelVersion("SimpleNN", "same", TorchIrisClassifier(train_simple_nn(seed=1)[0])),
        "shadow, slow model": ModelVersion("SimpleNN", "slow", SlowCandidate(classifier)),
        "shadow, crashing model": ModelVersion("Crashing", "crashing", CrashingCandidate()),
    }
    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
    walls = dict.fromkeys(MODES, 0.0)
    with serve(app) as server:
        url = server.url + "/predict"
        for _ in tqdm(range(rounds), desc="shadow rounds", leave=False):
            for mode in MODES:
                if mode in candidates:
                    release.start_shadow(candidates[mode])
                else:
                    release.rollback()
                stats = http_latency("POST", url, n=n, concurrency=concurrency, json=BODY)
                samples[mode].extend((stats.samples_ms / 1000).tolist())
                walls[mode] += stats.wall_s
        release.close()
        scrape = http_latency("GET", server.url + "/metrics", n=50)
    results = {mode: LatencyStats.from_seconds(samples[mode], walls[mode], concurrency) for mode in MODES}
    return results, scrape.p50


def rows_for(results: dict[str, LatencyStats], scrape_ms: float, label: str) -> list[Row]:
    """Each mode's p50, the shadows' p50 and p99 over no shadow, and the scrape time (report only: no goal)."""
    base = results["no shadow"]
    rows = [Row("monitoring", f"iris FastAPI, {label}: {mode} p50", stats.p50, "ms") for mode, stats in results.items()]
    for mode in MODES[1:]:
        rows.append(Row("monitoring", f"iris FastAPI, {label}: p50 {mode} / no shadow", results[mode].p50 / base.p50))
        rows.append(Row("monitoring", f"iris FastAPI, {label}: p99 {mode} / no shadow", results[mode].p99 / base.p99))
    rows.append(Row("monitoring", "GET /metrics p50", scrape_ms, "ms"))
    return rows


def run(quick: bool = False) -> list[Row]:
    """Sequential and 4-client rounds; the ratios say what a shadow adds to a client's latency."""
    rows = []
    for concurrency in (1, 4):
        results, scrape_ms = measure(n=50 if quick else 300, rounds=2 if quick else 4, concurrency=concurrency)
        label = "1 client" if concurrency == 1 else f"{concurrency} clients"
        rows += [row for row in rows_for(results, scrape_ms, label) if concurrency == 1 or "metrics" not in row.metric]
    return rows


if __name__ == "__main__":
    for row in run():
        print(" | ".join(row.cells()))
