"""Notebook 01's three deployment patterns, measured on one iris model: batch file scoring, and the summary table/plot.

Real-time scoring goes through ``course_lib.apps.iris_flask`` and ``course_lib.bench.http_latency``; edge scoring
through an ONNX export (``course_lib.serialization``) and ``course_lib.bench.time_calls``; the stages of one request
are timed in turn by ``course_lib.bench.interleaved_calls``. This module adds what is specific to the comparison: a
generated batch file, a batch job, a Japanese summary of latency, and the table and plot next to the source's orders
of magnitude.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from course_lib.bench import LatencyStats
from course_lib.data import IRIS_CLASSES, IRIS_FEATURES, iris_rows
from course_lib.models import predict_iris

__all__ = [
    "SOURCE_ORDERS",
    "BatchResult",
    "write_batch_file",
    "score_batch_file",
    "describe_latency",
    "format_ms",
    "pattern_table",
    "table_for_reading",
    "plot_patterns",
]

# The source's typical latency per pattern: a range in ms for the plot, and the source's words (Japanese, shown
# to learners): minutes–hours / tens of ms–seconds / milliseconds.
SOURCE_ORDERS: dict[str, tuple[float, float, str]] = {
    "batch": (60_000.0, 3_600_000.0 * 3, "数分〜数時間（ジョブ全体）"),
    "real-time": (10.0, 3_000.0, "数十ms〜数秒（1 リクエスト）"),  # 数秒 drawn as 3 s, as 数時間 is 3 h
    "edge": (1.0, 10.0, "数ms（1 回の推論）"),
}
REFERENCE = "(reference) scikit-learn in process"
# Row and column labels of the table as a learner reads it (the table itself keeps identifier-like keys).
PATTERN_LABELS = {
    "batch": "バッチ",
    "real-time": "リアルタイム",
    "edge": "エッジ",
    REFERENCE: "（参考）scikit-learn",
}
COLUMN_LABELS = {
    "how": "測り方",
    "wait_ms": "答えまでの時間",
    "p95_ms": "p95",
    "ms_per_prediction": "1 推論あたり",
    "predictions_per_s": "推論/秒",
    "source_order": "教科書の目安",
}


@dataclass(frozen=True)
class BatchResult:
    """What a batch job did: rows scored, wall time from reading the input to writing the output."""

    rows: int
    seconds: float
    output: Path

    @property
    def rows_per_s(self) -> float:
        """Throughput in rows per second."""
        return self.rows / self.seconds

    @property
    def ms_per_row(self) -> float:
        """Amortised cost of one prediction in ms."""
        return self.seconds * 1000.0 / self.rows


def write_batch_file(path: str | Path, n_rows: int, seed: int = 0) -> Path:
    """Write n_rows generated iris measurements (an id column plus the four features) as CSV."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(iris_rows(n_rows, seed=seed), columns=IRIS_FEATURES)
    frame.insert(0, "id", np.arange(n_rows))
    frame.to_csv(path, index=False, float_format="%.2f")
    return path


def score_batch_file(model: Any, in_path: str | Path, out_path: str | Path, chunk_rows: int = 50_000) -> BatchResult:
    """Score a CSV of iris rows in chunks and write id, prediction, class_id and one probability column per class."""
    started = time.perf_counter()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with pd.read_csv(in_path, chunksize=chunk_rows) as reader:
        for i, chunk in enumerate(reader):
            predictions = predict_iris(model, chunk[IRIS_FEATURES].to_numpy())
            class_ids = predictions.class_ids
            result = pd.DataFrame(
                {"id": chunk["id"].to_numpy(), "prediction": np.asarray(IRIS_CLASSES)[class_ids], "class_id": class_ids}
            )
            for j, c in enumerate(predictions.classes):
                result[f"p_{IRIS_CLASSES[c]}"] = predictions.probabilities[:, j].round(4)
            result.to_csv(out_path, mode="w" if i == 0 else "a", header=i == 0, index=False)
            rows += len(chunk)
    return BatchResult(rows, time.perf_counter() - started, out_path)


def describe_latency(stats: LatencyStats) -> str:
    """LatencyStats as one Japanese line for learners: the source's statistics, each time with its unit."""
    s = stats.summary()
    line = (
        f"{stats.n} 回: 平均 {format_ms(s['mean_ms'])}、中央値 {format_ms(s['median_ms'])}、"
        f"p95 {format_ms(s['p95_ms'])}、p99 {format_ms(s['p99_ms'])}、最小 {format_ms(s['min_ms'])}、"
        f"最大 {format_ms(s['max_ms'])}、標準偏差 {format_ms(s['std_ms'])}"
    )
    return line + (f"、1 秒あたり {stats.throughput:,.0f} 回" if np.isfinite(stats.throughput) else "")


def pattern_table(
    batch: BatchResult, realtime: LatencyStats, edge: LatencyStats, in_process: LatencyStats | None = None
) -> pd.DataFrame:
    """One row per pattern: what the client waits for, per-prediction cost, throughput, and the source's range."""
    rows = [
        {
            "pattern": "batch",
            "how": f"{batch.rows:,} 行の CSV ファイルを 1 回のジョブで",
            "wait_ms": batch.seconds * 1000.0,
            "p95_ms": float("nan"),
            "ms_per_prediction": batch.ms_per_row,
            "predictions_per_s": batch.rows_per_s,
        },
        {
            "pattern": "real-time",
            "how": f"HTTP の POST /predict を 1 件ずつ順番に {realtime.n} 回",
            "wait_ms": realtime.p50,
            "p95_ms": realtime.p95,
            "ms_per_prediction": realtime.p50,
            "predictions_per_s": realtime.throughput,
        },
        {
            "pattern": "edge",
            "how": f"ONNX Runtime をプロセス内で 1 行ずつ {edge.n} 回",
            "wait_ms": edge.p50,
            "p95_ms": edge.p95,
            "ms_per_prediction": edge.p50,
            "predictions_per_s": edge.throughput,
        },
    ]
    if in_process is not None:
        rows.append(
            {
                "pattern": REFERENCE,
                "how": f"scikit-learn をプロセス内で 1 行ずつ {in_process.n} 回",
                "wait_ms": in_process.p50,
                "p95_ms": in_process.p95,
                "ms_per_prediction": in_process.p50,
                "predictions_per_s": in_process.throughput,
            }
        )
    table = pd.DataFrame(rows).set_index("pattern")
    table["source_order"] = [SOURCE_ORDERS.get(name, (0, 0, "—"))[2] for name in table.index]
    return table


def table_for_reading(table: pd.DataFrame) -> pd.DataFrame:
    """The pattern table as a learner reads it: Japanese labels, each time with its unit, rates with separators."""
    shown = pd.DataFrame(
        {
            "how": table["how"],
            "wait_ms": table["wait_ms"].map(format_ms),
            "p95_ms": table["p95_ms"].map(lambda ms: format_ms(ms) if np.isfinite(ms) else "—"),
            "ms_per_prediction": table["ms_per_prediction"].map(format_ms),
            "predictions_per_s": table["predictions_per_s"].map("{:,.0f}".format),
            "source_order": table["source_order"],
        }
    )
    return shown.rename(index=PATTERN_LABELS, columns=COLUMN_LABELS).rename_axis("パターン")


def plot_patterns(table: pd.DataFrame) -> Any:
    """Two log-scale panels: the measured wait (p50 → p95) over the source's range, and predictions per second."""
    import matplotlib.pyplot as plt

    from course_lib.plotting import use_japanese_font

    use_japanese_font()

    fig, (wait_ax, rate_ax) = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    names = list(table.index)
    values = []
    for y, name in enumerate(names):
        low, high, _ = SOURCE_ORDERS.get(name, (np.nan, np.nan, ""))
        if np.isfinite(low):
            wait_ax.barh(
                y,
                high - low,
                left=low,
                height=0.6,
                color="tab:blue",
                alpha=0.15,
                label="教科書の目安（桁）" if y == 0 else None,
            )
            values += [low, high]
        wait, p95 = table.loc[name, "wait_ms"], table.loc[name, "p95_ms"]
        if np.isfinite(p95):
            wait_ax.plot([wait, p95], [y, y], color="tab:red", lw=2)
            values.append(p95)
        wait_ax.plot(wait, y, "o", color="tab:red", label="このマシンの測定（p50 → p95）" if y == 0 else None)
        wait_ax.annotate(format_ms(wait), (wait, y), textcoords="offset points", xytext=(4, 7), fontsize=9)
        values.append(wait)
    wait_ax.set_xscale("log")
    wait_ax.set_xlim(min(values) / 3, max(values) * 3)
    wait_ax.set_yticks(range(len(names)), [PATTERN_LABELS.get(name, name) for name in names])
    wait_ax.invert_yaxis()
    wait_ax.set_xlabel("答えが出るまでの時間（ms、対数目盛）")
    wait_ax.set_title("1 件の答えを待つ時間（バッチはジョブ全体）")
    wait_ax.legend(loc="lower right", fontsize=8)
    rates = table["predictions_per_s"].to_numpy(dtype=float)
    rate_ax.barh(range(len(names)), rates, color="tab:green", alpha=0.7)
    for y, rate in enumerate(rates):
        rate_ax.annotate(f"{rate:,.0f}/s", (rate, y), textcoords="offset points", xytext=(4, -3), fontsize=9)
    rate_ax.set_xscale("log")
    rate_ax.set_xlim(rates.min() / 3, rates.max() * 30)
    rate_ax.set_yticks(range(len(names)), [""] * len(names))
    rate_ax.invert_yaxis()
    rate_ax.set_xlabel("1 秒あたりの予測数（対数目盛）")
    rate_ax.set_title("スループット（1 クライアント）")
    fig.tight_layout()
    return fig


def format_ms(ms: float) -> str:
    """A duration in ms as a short string with its unit: s, ms or µs (a difference of two durations may be negative)."""
    if ms < 0:
        return "-" + format_ms(-ms)
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    if ms >= 1:
        return f"{ms:.1f} ms"
    us = ms * 1000
    return f"{us:.1f} µs" if us < 100 else f"{us:.0f} µs"
