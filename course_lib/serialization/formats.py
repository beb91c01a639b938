"""Every format the course compares: how to save, how to load, and what loading needs and risks.

The scikit-learn formats store any fitted classifier; the PyTorch ones store the course's SimpleNN (4 features).
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import torch

from course_lib.models import load_simple_nn, save_state_dict
from course_lib.serialization.onnx_export import (
    export_onnx,
    export_sklearn_onnx,
    first_forward_arg,
    onnx_run,
    onnx_session,
)

Predictor = Callable[[np.ndarray], np.ndarray]
"""A loaded model as a function: float32 rows (n, features) → scores (n, classes)."""

SKOPS_TRUSTED_FOREST = ["sklearn.tree._tree.Tree"]
"""The one type a RandomForest file needs beyond skops' defaults; trust it only for files you made."""


@dataclass(frozen=True)
class Format:
    """One serialization format: save/load functions and the facts the comparison table reports.

    The last three fields are what notebook 04's table shows a learner, so they are written in Japanese.
    """

    name: str
    family: str  # "sklearn" or "torch": which model it stores
    suffix: str
    save: Callable[[Any, Path], None]
    load: Callable[[Path], Predictor]
    needs_to_load: str  # what the loading side must have installed or importable
    untrusted_safe: str  # may a file from a stranger be loaded?
    runtimes: str  # which languages/runtimes can load it


def sklearn_predictor(model: Any) -> Predictor:
    """Scores of a scikit-learn classifier: predict_proba."""
    return lambda X: model.predict_proba(X)


def torch_predictor(module: Callable[[torch.Tensor], torch.Tensor]) -> Predictor:
    """Scores of a PyTorch module (logits), computed without autograd."""

    def predict(X: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))).numpy()

    return predict


# --- scikit-learn ------------------------------------------------------------------------------------------


def _pickle_save(model: Any, path: Path) -> None:
    """Save with pickle.dump."""
    with open(path, "wb") as f:
        pickle.dump(model, f)  # the default protocol, as the source writes it


def _pickle_load(path: Path) -> Predictor:
    """Load with pickle.load: runs any code the file names, so only for files you trust."""
    with open(path, "rb") as f:
        return sklearn_predictor(pickle.load(f))  # runs any code the file names: trusted files only


def _joblib_save(compress: int) -> Callable[[Any, Path], None]:
    """A joblib.dump saver with this compression level (0 = none)."""

    def save(model: Any, path: Path) -> None:
        """Save with joblib.dump."""
        joblib.dump(model, path, compress=compress)

    return save


def _joblib_load(path: Path) -> Predictor:
    """Load with joblib.load: pickle inside runs code, so only for files you trust."""
    return sklearn_predictor(joblib.load(path))


def _skops_save(model: Any, path: Path) -> None:
    """Save with skops.io.dump."""
    import skops.io as sio

    sio.dump(model, path)


def _skops_load(path: Path) -> Predictor:
    """Load with skops.io.load, trusting only the forest's Tree type."""
    import skops.io as sio

    return sklearn_predictor(sio.load(path, trusted=SKOPS_TRUSTED_FOREST))


def _sklearn_onnx_save(model: Any, path: Path) -> None:
    """Convert with skl2onnx (zipmap off)."""
    export_sklearn_onnx(model, path, n_features=model.n_features_in_)


def _sklearn_onnx_load(path: Path) -> Predictor:
    """An onnxruntime session returning the probabilities output."""
    session = onnx_session(path)
    return lambda X: onnx_run(session, X)[1]  # outputs: label, probabilities


# --- PyTorch -----------------------------------------------------------------------------------------------


def _state_dict_load(path: Path) -> Predictor:
    """Rebuild SimpleNN (the Python class is needed) and load its weights with weights_only=True."""
    return torch_predictor(load_simple_nn(path))


def torchscript_save(model: torch.nn.Module, path: str | Path, example: torch.Tensor | None = None) -> Path:
    """torch.jit.trace + torch.jit.save (deprecated in current PyTorch; warnings silenced here)."""
    example = torch.zeros(2, 4) if example is None else example
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=FutureWarning)
        traced = torch.jit.trace(model.eval(), example)
        torch.jit.save(traced, str(path))
    return Path(path)


def torchscript_load(path: str | Path) -> torch.nn.Module:
    """torch.jit.load (deprecated in current PyTorch; the warning is silenced here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=FutureWarning)
        return torch.jit.load(str(path))


def torch_export_save(model: torch.nn.Module, path: str | Path, example: torch.Tensor | None = None) -> Path:
    """torch.export.export with a dynamic batch axis, then torch.export.save to a .pt2 file."""
    example = torch.zeros(2, 4) if example is None else example  # batch ≥ 2: a batch of 1 would be specialised
    batch = torch.export.Dim("batch")
    arg_name = first_forward_arg(model)
    program = torch.export.export(model.eval(), (example,), dynamic_shapes={arg_name: {0: batch}})
    torch.export.save(program, path)
    return Path(path)


def torch_export_load(path: str | Path) -> torch.nn.Module:
    """torch.export.load + .module(): a callable module, without the Python model class."""
    return torch.export.load(path).module()


def _torch_onnx_save(model: torch.nn.Module, path: Path) -> None:
    """Export with export_onnx (dynamic batch, one file, the source's input and output names)."""
    export_onnx(model, torch.zeros(1, 4), path, input_names=["features"], output_names=["logits"])


def _torch_onnx_load(path: Path) -> Predictor:
    """An onnxruntime session returning the logits."""
    session = onnx_session(path)
    return lambda X: onnx_run(session, X)[0]


_PY_SKLEARN = "Python + 保存時と同じ版の scikit-learn + モデルのクラス"
_RUNS_CODE = "いいえ — 読み込むとコードが動く"
_LIKE_CODE = "いいえ — コードとして扱う"
_GRAPH_ONLY = "はい — グラフだけでコードを含まない"
_ONNX_RUNTIMES = "Python・C/C++・C#・Java・JavaScript・モバイル"

FORMATS: list[Format] = [
    Format("pickle", "sklearn", ".pkl", _pickle_save, _pickle_load, _PY_SKLEARN, _RUNS_CODE, "Python"),
    Format("joblib", "sklearn", ".joblib", _joblib_save(0), _joblib_load, _PY_SKLEARN, _RUNS_CODE, "Python"),
    Format(
        "joblib (compress=3)", "sklearn", ".joblib", _joblib_save(3), _joblib_load, _PY_SKLEARN, _RUNS_CODE, "Python"
    ),
    Format(
        "skops",
        "sklearn",
        ".skops",
        _skops_save,
        _skops_load,
        _PY_SKLEARN,
        "trusted= に名指しした型だけなら、はい",
        "Python",
    ),
    Format(
        "ONNX (skl2onnx)",
        "sklearn",
        ".onnx",
        _sklearn_onnx_save,
        _sklearn_onnx_load,
        "onnxruntime だけ",
        _GRAPH_ONLY,
        _ONNX_RUNTIMES,
    ),
    Format(
        "state_dict",
        "torch",
        ".pt",
        save_state_dict,
        _state_dict_load,
        "PyTorch + モデルのクラス",
        "はい — weights_only=True（既定）なら",
        "Python",
    ),
    Format(
        "TorchScript",
        "torch",
        ".ts",
        torchscript_save,
        lambda p: torch_predictor(torchscript_load(p)),
        "PyTorch だけ（クラスは不要）",
        _LIKE_CODE,
        "Python・C++（LibTorch）",
    ),
    Format(
        "torch.export",
        "torch",
        ".pt2",
        torch_export_save,
        lambda p: torch_predictor(torch_export_load(p)),
        "PyTorch だけ（クラスは不要）",
        _LIKE_CODE,
        "Python（C++ からは AOTInductor でコンパイルしたパッケージにしてから）",
    ),
    Format(
        "ONNX (torch.onnx)",
        "torch",
        ".onnx",
        _torch_onnx_save,
        _torch_onnx_load,
        "onnxruntime だけ",
        _GRAPH_ONLY,
        _ONNX_RUNTIMES,
    ),
]


def get_format(name: str) -> Format:
    """The Format called name (as in FORMATS)."""
    for fmt in FORMATS:
        if fmt.name == name:
            return fmt
    raise KeyError(f"unknown format {name!r}; known: {[f.name for f in FORMATS]}")
