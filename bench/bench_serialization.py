"""Serialization formats side by side: size, load time and batch-1 latency of each format, as ratios.

Every format of course_lib.serialization.FORMATS is saved, loaded and timed in the same run (notebook 04 shows
the full table). scikit-learn formats are compared with pickle (the source's baseline), PyTorch formats with
the state dict that notebook 03 saves. Load times are the median of several loads of a file that is already in
the page cache, so they measure deserialisation, not the disk.
"""

from __future__ import annotations

import tempfile

from tqdm.auto import tqdm

from bench.report import Row
from course_lib.data import iris_rows
from course_lib.models import train_iris_forest, train_simple_nn
from course_lib.serialization import FORMATS, Measurement, measure_format

NAME = "serialization"
BASELINE = {"sklearn": "pickle", "torch": "state_dict"}


def ratio_rows(measurements: list[Measurement], families: dict[str, str]) -> list[Row]:
    """Size, load-time and batch-1 p50 of each format divided by its family's baseline format."""
    by_name = {m.format: m for m in measurements}
    rows: list[Row] = []
    for m in measurements:
        base = by_name[BASELINE[families[m.format]]]
        if m is base:
            rows.append(Row(NAME, f"{m.format} ({m.model}): size", m.size_kb, "KiB"))
            rows.append(Row(NAME, f"{m.format} ({m.model}): load", m.load_ms, "ms"))
            continue
        label = f"{m.format} / {base.format}"
        rows.append(Row(NAME, f"{label}: file size", m.size_kb / base.size_kb))
        rows.append(Row(NAME, f"{label}: load time", m.load_ms / base.load_ms))
        rows.append(Row(NAME, f"{label}: batch-1 p50", m.p50_batch1_ms / base.p50_batch1_ms))
    return rows


def run(quick: bool = False) -> list[Row]:
    """Measure every format on the iris RandomForest or SimpleNN and return the ratio rows."""
    forest, _ = train_iris_forest()
    net, _ = train_simple_nn()
    X = iris_rows(200, seed=0)
    measurements = []
    with tempfile.TemporaryDirectory() as folder:
        for fmt in tqdm(FORMATS, desc="formats", leave=False):
            model = forest if fmt.family == "sklearn" else net
            measurements.append(
                measure_format(fmt, model, folder, X, n=50 if quick else 300, load_repeats=3 if quick else 9)
            )
    return ratio_rows(measurements, {fmt.name: fmt.family for fmt in FORMATS})
