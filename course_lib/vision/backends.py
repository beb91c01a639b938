"""Inference backends for a classifier: PyTorch eager, onnxruntime on the model exported to ONNX, and onnxruntime
on that model quantized to int8 (checked against fp32 when it starts)."""

from __future__ import annotations

import shutil
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch

from course_lib.scratch import process_temp_dir
from course_lib.vision.classifier import Classifier

BACKENDS = ("torch", "onnx", "onnx-int8")


class TorchBackend:
    """Run the classifier's PyTorch model eagerly (inference mode is entered in the calling thread)."""

    name = "torch"

    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier

    def probabilities(self, batch: torch.Tensor) -> np.ndarray:
        """Softmax probabilities (N, classes) for a preprocessed batch."""
        return self.classifier.probabilities(batch)


class OnnxBackend:
    """Export the classifier's model to ONNX (dynamic batch) and run it with onnxruntime (`onnx_session`).

    path: where the .onnx file goes (default: a temporary directory that lives as long as the backend).
    threads, spinning: the session's intra-op threads (default: one per physical core) and spin-waiting, as
    `onnx_session` takes them. Spinning is off by default: a server's cores also decode, preprocess and run the event
    loop, and a pool that keeps spinning after each run takes the core from them (on a loaded 2-core machine,
    ResNet-50 ran 1.6× faster with spinning off; on 1 thread there is no pool and no difference).
    """

    name = "onnx"

    def __init__(
        self,
        classifier: Classifier,
        path: str | Path | None = None,
        threads: int | None = None,
        spinning: bool = False,
    ) -> None:
        from course_lib.serialization import export_onnx

        self.classifier = classifier
        if path is None:
            folder = process_temp_dir("course-onnx-")  # a killed process's folder is removed by the next one
            weakref.finalize(self, shutil.rmtree, folder, ignore_errors=True)  # removed with the backend, or at exit
            path = folder / f"{classifier.name}.onnx"
        self.fp32_path = Path(path)
        export_onnx(classifier.model, classifier.example_input(2), self.fp32_path, dynamic_batch=True)
        self.threads, self.spinning = threads, spinning
        self.open(self.fp32_path)

    def open(self, path: Path) -> None:
        """Serve the ONNX file at `path` from now on, with this backend's threads and spinning."""
        from course_lib.serialization import onnx_session

        self.path = path
        self.session: Any = onnx_session(path, threads=self.threads, spinning=self.spinning)
        self.input_name = self.session.get_inputs()[0].name

    def probabilities(self, batch: torch.Tensor) -> np.ndarray:
        """Softmax probabilities (N, classes) computed from onnxruntime's logits."""
        (logits,) = self.session.run(None, {self.input_name: np.ascontiguousarray(batch.numpy(), dtype=np.float32)})
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)


class OnnxInt8Backend(OnnxBackend):
    """The fp32 export quantized to int8 (`quantize_classifier`, cached), checked against fp32 before it serves.

    At start-up the int8 and fp32 models classify a fixed set of inputs (`parity_inputs`); when their top-1 classes
    agree on less than `min_agreement` of them (default: `required_agreement`), QuantizationParityError is raised
    and nothing is served.
    int8_path: an already quantized file to use instead (it is checked all the same); reduce_range: see
    `quantize_onnx`. fp32: an OnnxBackend of the same classifier whose export is quantized and compared against,
    instead of exporting again (`auto` builds both). `parity` holds the measured agreement.
    """

    name = "onnx-int8"

    def __init__(
        self,
        classifier: Classifier,
        path: str | Path | None = None,
        *,
        fp32: OnnxBackend | None = None,
        int8_path: str | Path | None = None,
        reduce_range: bool | None = None,
        min_agreement: float | None = None,
        **session_options: Any,
    ) -> None:
        from course_lib.vision import quantize

        self.fp32 = fp32  # kept when given: its temporary folder holds the file fp32_path names
        if fp32 is None:
            super().__init__(classifier, path, **session_options)
            fp32_session = self.session
        else:
            if fp32.classifier is not classifier:
                raise ValueError("fp32 must be an OnnxBackend of the same classifier")
            self.classifier, self.fp32_path, fp32_session = classifier, fp32.fp32_path, fp32.session
            self.threads, self.spinning = session_options.get("threads"), session_options.get("spinning", False)
        int8_file = int8_path or quantize.quantize_classifier(classifier, self.fp32_path, reduce_range)
        self.open(Path(int8_file))
        threshold = quantize.required_agreement(classifier) if min_agreement is None else min_agreement
        self.parity = quantize.check_parity(fp32_session, self.session, quantize.parity_inputs(classifier), threshold)


def make_backend(classifier: Classifier, backend: str = "torch") -> TorchBackend | OnnxBackend:
    """The backend called `backend` ("torch", "onnx" or "onnx-int8") for this classifier."""
    if backend == "torch":
        return TorchBackend(classifier)
    if backend == "onnx":
        return OnnxBackend(classifier)
    if backend == "onnx-int8":
        return OnnxInt8Backend(classifier)
    raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
