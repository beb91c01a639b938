"""ONNX export (PyTorch with the dynamo exporter, scikit-learn with skl2onnx) and onnxruntime sessions."""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch

# Loggers of the exporter's toolchain that log INFO/WARNING lines while optimising a graph.
SPINNING_KEY = "session.intra_op.allow_spinning"  # onnxruntime's session config entry for the intra-op pool
_EXPORTER_LOGGERS = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "onnx_ir", "skl2onnx")


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Keep the exporter's progress prints, log lines and warnings out of a notebook cell."""
    loggers = [logging.getLogger(name) for name in _EXPORTER_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def export_onnx(
    model: torch.nn.Module,
    example: torch.Tensor,
    path: str | Path,
    dynamic_batch: bool = True,
    input_names: list[str] | None = None,
    output_names: list[str] | None = None,
) -> Path:
    """Export model to one self-contained .onnx file with torch.onnx.export(dynamo=True); batch axis dynamic.

    input_names / output_names name the graph's input and outputs (default: forward's argument name and the
    exporter's node names); dynamic_shapes always keys on forward's argument name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    arg_name = first_forward_arg(model)
    dynamic_shapes = {arg_name: {0: "batch"}} if dynamic_batch else None
    with _quiet_exporter(), torch.inference_mode(False):
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            dynamic_shapes=dynamic_shapes,
            input_names=input_names,
            output_names=output_names,
            verbose=False,
        )
        strip_source_paths(program)
        # external_data=False: weights inside the .onnx file (fine below protobuf's 2 GB limit), so one file is
        # all there is to copy; a separate .onnx.data file is only needed for models larger than that.
        program.save(path, external_data=False)
    data_file = path.with_name(path.name + ".data")
    if data_file.exists():
        data_file.unlink()
    return path


def strip_source_paths(program: torch.onnx.ONNXProgram) -> torch.onnx.ONNXProgram:
    """Drop the per-node Python stack traces (absolute paths of the exporting machine) before saving."""
    import onnx_ir

    for node in onnx_ir.traversal.RecursiveGraphIterator(program.model.graph):
        node.metadata_props.pop("pkg.torch.onnx.stack_trace", None)
    return program


def first_forward_arg(model: torch.nn.Module) -> str:
    """Name of forward()'s first parameter (the key dynamic_shapes expects)."""
    params = [p for p in inspect.signature(model.forward).parameters.values() if p.kind is not p.VAR_KEYWORD]
    if not params:
        raise ValueError("model.forward takes no positional input")
    return params[0].name


def onnx_session(
    path: str | Path, threads: int | None = None, spinning: bool | None = None
) -> onnxruntime.InferenceSession:
    """An onnxruntime CPU session for path, with every graph optimization (ORT_ENABLE_ALL, onnxruntime's default).

    threads: intra-op threads (None: onnxruntime's default, one per physical core). spinning: whether the pool's
    threads spin-wait for the next piece of work instead of sleeping (None: onnxruntime's default, on) — spinning
    saves the wake-up between operators, but a spinning thread keeps its core busy after a run, so turn it off when
    the process shares its cores with other work (another runtime, server threads, other processes).
    """
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = threads
    if spinning is not None:
        options.add_session_config_entry(SPINNING_KEY, "1" if spinning else "0")
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def onnx_run(session: onnxruntime.InferenceSession, x: np.ndarray | torch.Tensor) -> list[np.ndarray]:
    """Run session on one input array (float32) and return all outputs."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(x, dtype=np.float32)})


def export_sklearn_onnx(model: Any, path: str | Path, n_features: int = 4) -> Path:
    """Convert a fitted scikit-learn classifier with skl2onnx (zipmap off: outputs label, probabilities)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_exporter():
        onx = convert_sklearn(
            model,
            initial_types=[("input", FloatTensorType([None, n_features]))],
            options={id(model): {"zipmap": False}},
        )
    path.write_bytes(onx.SerializeToString())
    return path
