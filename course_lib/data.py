"""Offline data sets for the course: everything here ships with scikit-learn or is generated."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

IRIS_FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
IRIS_CLASSES = ["setosa", "versicolor", "virginica"]


class Split(NamedTuple):
    """A train/test split of features X and labels y."""

    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


def iris_split(test_size: float = 0.2, random_state: int = 42) -> Split:
    """Iris as the source splits it: 80/20, random_state=42, float32 features."""
    iris = load_iris()
    X = iris.data.astype(np.float32)
    return Split(*train_test_split(X, iris.target, test_size=test_size, random_state=random_state))


def iris_rows(n: int, seed: int = 0) -> np.ndarray:
    """n plausible iris feature rows (resampled with small noise) for batch and load tests."""
    rng = np.random.default_rng(seed)
    X = load_iris().data
    rows = X[rng.integers(0, len(X), n)] + rng.normal(0.0, 0.05, (n, X.shape[1]))
    return np.clip(rows, 0.0, None).round(2).astype(np.float32)
