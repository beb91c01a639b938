"""Inference backends for a classifier: PyTorch eager, or onnxruntime running the same model exported to ONNX."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from course_lib.vision.classifier import Classifier

BACKENDS = ("torch", "onnx")


class TorchBackend:
    """Run the classifier's PyTorch model eagerly (inference mode is entered in the calling thread)."""

    name = "torch"

    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier

    def probabilities(self, batch: torch.Tensor) -> np.ndarray:
        """Softmax probabilities (N, classes) for a preprocessed batch."""
        return self.classifier.probabilities(batch)


class OnnxBackend:
    """Export the classifier's model to ONNX (dynamic batch) and run it with onnxruntime."""

    name = "onnx"

    def __init__(self, classifier: Classifier, path: str | Path | None = None, threads: int | None = None) -> None:
        from course_lib.serialization import export_onnx, onnx_session

        self.classifier = classifier
        if path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="course-onnx-")
            path = Path(self._tmp.name) / f"{classifier.name}.onnx"
        self.path = Path(path)
        export_onnx(classifier.model, classifier.example_input(2), self.path, dynamic_batch=True)
        self.session: Any = onnx_session(self.path, threads=threads)
        self.input_name = self.session.get_inputs()[0].name

    def probabilities(self, batch: torch.Tensor) -> np.ndarray:
        """Softmax probabilities (N, classes) computed from onnxruntime's logits."""
        (logits,) = self.session.run(None, {self.input_name: np.ascontiguousarray(batch.numpy(), dtype=np.float32)})
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)


def make_backend(classifier: Classifier, backend: str = "torch") -> TorchBackend | OnnxBackend:
    """The backend called `backend` ("torch" or "onnx") for this classifier."""
    if backend == "torch":
        return TorchBackend(classifier)
    if backend == "onnx":
        return OnnxBackend(classifier)
    raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
