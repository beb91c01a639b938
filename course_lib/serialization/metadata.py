"""A small JSON metadata file saved beside a model: library versions, features, classes, date, metrics."""

from __future__ import annotations

import datetime as dt
import json
import platform
from pathlib import Path
from typing import Any

from course_lib.lock import installed_versions

LIBRARIES = ("scikit-learn", "numpy", "joblib", "torch", "onnxruntime", "skops")


def library_versions(libraries: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    """Installed versions of libraries (missing ones are left out), plus Python's."""
    return {"python": platform.python_version(), **installed_versions(libraries)}


def model_metadata(
    feature_names: list[str],
    class_names: list[str],
    metrics: dict[str, float],
    trained_at: str | None = None,
    libraries: tuple[str, ...] = LIBRARIES,
) -> dict[str, Any]:
    """Metadata for a model file; trained_at defaults to now (UTC, ISO 8601)."""
    return {
        "versions": library_versions(libraries),
        "feature_names": list(feature_names),
        "class_names": list(class_names),
        "trained_at": trained_at or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "metrics": dict(metrics),
    }


def metadata_path(model_path: str | Path) -> Path:
    """Where a model's metadata lives: model.joblib → model.joblib.meta.json."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".meta.json")


def save_metadata(model_path: str | Path, metadata: dict[str, Any]) -> Path:
    """Write metadata as JSON beside model_path and return the JSON file's path."""
    path = metadata_path(model_path)
    path.write_text(json.dumps(metadata, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def read_metadata(model_path: str | Path) -> dict[str, Any]:
    """Read the JSON metadata saved beside model_path."""
    return json.loads(metadata_path(model_path).read_text(encoding="utf-8"))


def version_mismatches(saved: dict[str, str], current: dict[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """Libraries whose saved version differs from the installed one: {name: (saved, installed)}."""
    current = library_versions(tuple(saved)) if current is None else current
    return {
        name: (version, current.get(name, "not installed"))
        for name, version in saved.items()
        if current.get(name, "not installed") != version
    }
