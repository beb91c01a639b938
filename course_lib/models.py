"""The course's iris models and deterministic training helpers (scikit-learn and PyTorch)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestClassifier
from torch import nn

from course_lib.data import Split, iris_split


def train_iris_forest(split: Split | None = None, random_state: int = 42) -> tuple[RandomForestClassifier, float]:
    """Train the source's RandomForest (n_estimators=100, random_state=42); return it and test accuracy."""
    split = split or iris_split()
    model = RandomForestClassifier(n_estimators=100, random_state=random_state)
    model.fit(split.X_train, split.y_train)
    return model, float(model.score(split.X_test, split.y_test))


class SimpleNN(nn.Module):
    """The source's iris network: 4 → 16 → 3 with a ReLU."""

    def __init__(self, input_size: int = 4, hidden_size: int = 16, num_classes: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(input_size, hidden_size)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits for a (batch, 4) tensor."""
        return self.fc2(self.relu(self.fc1(x)))


def save_state_dict(net: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Save only the weights (a state dict of tensors), the format torch.load(weights_only=True) accepts."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path


def load_simple_nn(path: str | os.PathLike[str]) -> SimpleNN:
    """Build SimpleNN and load its saved weights on the CPU; weights_only=True refuses pickled code."""
    net = SimpleNN()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval()


def train_simple_nn(split: Split | None = None, epochs: int = 300, seed: int = 0) -> tuple[SimpleNN, float]:
    """Train SimpleNN deterministically (full-batch Adam, fixed seed); return it in eval mode and test accuracy."""
    split = split or iris_split()
    with torch.random.fork_rng(devices=[]):  # seeded weights; the caller's random state stays as it was
        torch.manual_seed(seed)
        model = SimpleNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    X = torch.from_numpy(np.asarray(split.X_train, dtype=np.float32))
    y = torch.from_numpy(np.asarray(split.y_train, dtype=np.int64))
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        optimizer.zero_grad()
        loss_fn(model(X), y).backward()
        optimizer.step()
    model.eval()
    with torch.inference_mode():
        X_test = torch.from_numpy(np.asarray(split.X_test, dtype=np.float32))
        accuracy = (model(X_test).argmax(1).numpy() == split.y_test).mean()
    return model, float(accuracy)


@dataclass(frozen=True)
class IrisPredictions:
    """What a model says about rows of iris measurements, before any app shapes its answer."""

    classes: list[int]  # the class id of each probability column
    probabilities: np.ndarray  # (rows, classes)
    best: np.ndarray  # per row, the column of the most likely class

    @property
    def class_ids(self) -> np.ndarray:
        """The most likely class id of each row."""
        return np.asarray(self.classes)[self.best]


# scikit-learn's joblib wrapper swaps the process-wide warning filters inside every forest prediction
# (warnings.catch_warnings + resetwarnings, which are not thread-safe): concurrent predictions in a threaded server
# can leave another thread's copy, or an empty list, as the filters of the whole process. One at a time keeps them
# (scikit-learn models only).
_PREDICTING = threading.Lock()


def predict_iris(model: Any, rows: Any) -> IrisPredictions:
    """The one iris inference path (Flask, FastAPI and batch scoring): rows of 4 measurements → predictions."""
    X = np.asarray(rows, dtype=np.float64)
    if isinstance(model, BaseEstimator):
        with _PREDICTING:
            probabilities = np.asarray(model.predict_proba(X))
    else:  # other models run concurrently: a slow one (e.g. a shadowed candidate) never holds up the others
        probabilities = np.asarray(model.predict_proba(X))
    return IrisPredictions([int(c) for c in model.classes_], probabilities, probabilities.argmax(axis=1))
