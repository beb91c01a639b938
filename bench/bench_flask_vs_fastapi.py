"""Flask vs FastAPI serving the same model (SimpleNN behind TorchIrisClassifier), same client, measured side by side."""

from __future__ import annotations

from tqdm.auto import tqdm

from bench.report import Row
from course_lib.apps import iris_fastapi, iris_flask
from course_lib.bench import LatencyStats, http_latency
from course_lib.models import train_simple_nn
from course_lib.servers import serve

BODY = {"features": [5.1, 3.5, 1.4, 0.2]}
CONCURRENCY = 4


def measure(n: int, rounds: int) -> dict[str, LatencyStats]:
    """Run both servers at once and alternate the frameworks each round, so background load hits both alike."""
    classifier = iris_fastapi.TorchIrisClassifier(train_simple_nn()[0])
    apps = {"Flask": iris_flask.create_app(classifier), "FastAPI": iris_fastapi.create_app(classifier)}
    samples: dict[str, list[float]] = {}
    walls: dict[str, float] = {}
    with serve(apps["Flask"]) as flask_server, serve(apps["FastAPI"]) as fastapi_server:
        urls = {"Flask": flask_server.url, "FastAPI": fastapi_server.url}
        for _ in tqdm(range(rounds), desc="Flask vs FastAPI rounds", leave=False):
            for name, url in urls.items():
                for mode, concurrency in [("sequential", 1), (f"{CONCURRENCY} clients", CONCURRENCY)]:
                    stats = http_latency(
                        "POST", url + "/predict", n=n * concurrency, concurrency=concurrency, json=BODY
                    )
                    key = f"{name} {mode}"
                    samples.setdefault(key, []).extend((stats.samples_ms / 1000).tolist())
                    walls[key] = walls.get(key, 0.0) + stats.wall_s
    return {
        key: LatencyStats.from_seconds(values, walls[key], CONCURRENCY if "clients" in key else 1)
        for key, values in samples.items()
    }


def run(quick: bool = False) -> list[Row]:
    """Median latency and throughput of both frameworks, sequential and concurrent, and FastAPI ÷ Flask ratios."""
    results = measure(n=50 if quick else 200, rounds=2 if quick else 3)
    rows = []
    for key, stats in results.items():
        rows.append(Row("flask_vs_fastapi", f"{key}: median latency", stats.p50, "ms"))
        rows.append(Row("flask_vs_fastapi", f"{key}: throughput", stats.throughput, "req/s"))
    for mode in ["sequential", f"{CONCURRENCY} clients"]:
        flask, fastapi = results[f"Flask {mode}"], results[f"FastAPI {mode}"]
        rows.append(Row("flask_vs_fastapi", f"{mode}: median latency FastAPI ÷ Flask", fastapi.p50 / flask.p50))
        throughput = fastapi.throughput / flask.throughput
        rows.append(Row("flask_vs_fastapi", f"{mode}: throughput FastAPI ÷ Flask", throughput))
    return rows


if __name__ == "__main__":
    for row in run():
        print(" | ".join(row.cells()))
